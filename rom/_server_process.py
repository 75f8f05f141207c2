"""Server processes of rom.testing: start, watch and stop ``redis-server`` processes.

:class:`ServerProcess` is one server started from a config file it writes (persistence
off, logging to a file); :class:`TempServers` is the owner of a temporary directory and
the servers in it (:class:`rom.testing.EmbeddedRedis`, :class:`rom.testing.LocalCluster`):
``stop()`` ends them and removes the directory, is idempotent, runs at interpreter exit,
does nothing in a forked child, and ends a ``with`` block.
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Optional, Sequence, TypeVar

import redis

__all__ = ['ServerProcess', 'TempServers']

_T = TypeVar('_T', bound='TempServers')


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to SIGTERM the server if the process that started it dies abruptly."""
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except Exception:
        pass


class ServerProcess:
    """One ``redis-server`` process whose config (``settings`` plus no persistence, no
    daemon, a log file) and log live in ``directory`` (which must exist)."""

    def __init__(self, executable: str, directory: str, settings: Sequence[str]) -> None:
        self.executable = executable
        self.directory = directory
        self.log_path = os.path.join(directory, 'redis.log')
        conf = os.path.join(directory, 'redis.conf')
        with open(conf, 'w') as f:
            f.write('\n'.join(list(settings) + [
                'dir %s' % directory, 'save ""', 'appendonly no', 'daemonize no',
                'logfile %s' % self.log_path, '']))
        self.process: Optional[subprocess.Popen[bytes]] = subprocess.Popen(
            [executable, conf], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, close_fds=True,
            preexec_fn=_die_with_parent if sys.platform.startswith('linux') else None)

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the process (a crash, for failover tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def terminate(self) -> None:
        """End the process (SIGTERM, then SIGKILL after 10 s); idempotent."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def wait_for(self, deadline: float, check: Callable[..., Any], what: str) -> None:
        """Call ``check()`` until it returns true (connection, response and timeout errors
        count as false) before ``time.monotonic()`` reaches ``deadline``; RuntimeError with
        the log's tail when the process exits or time runs out."""
        last: Optional[BaseException] = None
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError('%s exited (code %s):\n%s' % (
                    self._label(), None if self.process is None else self.process.returncode,
                    self.log_tail()))
            try:
                if check():
                    return
            except (redis.ConnectionError, redis.ResponseError, redis.TimeoutError) as exc:
                last = exc  # (includes BusyLoadingError)
            time.sleep(0.02)
        raise RuntimeError('%s did not %s in time (%r):\n%s'
                           % (self._label(), what, last, self.log_tail()))

    def _label(self) -> str:
        return 'server %s in %s' % (self.executable, self.directory)

    def log_tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of the server's log."""
        try:
            with open(self.log_path, errors='replace') as f:
                return ''.join(f.readlines()[-lines:])
        except OSError:
            return '(no log)'


class TempServers:
    """Base of what owns servers in a temporary directory (see the module docstring).

    A subclass calls :meth:`_own` first in ``__init__`` and implements
    :meth:`_stop_servers`.
    """

    directory: str

    def _own(self, prefix: str) -> None:
        self.directory = tempfile.mkdtemp(prefix=prefix)
        self._owner_pid = os.getpid()
        self._stop_lock = threading.Lock()
        atexit.register(self.stop)

    def _stop_servers(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the servers and delete the directory. Safe to call repeatedly."""
        with self._stop_lock:
            if os.getpid() != self._owner_pid:
                return  # a forked child must not stop its parent's servers
            self._stop_servers()
            shutil.rmtree(self.directory, ignore_errors=True)
        try:
            atexit.unregister(self.stop)
        except Exception:  # pragma: no cover
            pass

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
