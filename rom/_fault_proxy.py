"""A fault-injecting TCP proxy in front of a Redis server, for tests (``rom.testing.FaultProxy``).

The proxy forwards whole commands from clients to the server and whole replies back, so it
knows which reply answers which command. A fault is armed for the next command with a given
name (``EVALSHA``, ``GET``...; any command when no name is given) and fires once, on whichever
proxied connection sends that command first:

* ``drop_reply``: the server runs the command, its reply (and everything after it on that
  connection) never reaches the client, which times out: a lost reply.
* ``delay_reply``: the reply is held back for some seconds, then delivered.
* ``cut_request``: only the first N bytes of the command reach the server, then both sides of
  the connection are closed: the server never runs it.
* ``cut_reply``: the server runs the command, the client gets the first N bytes of the reply,
  then both sides are closed.

``disconnect_all()`` closes every open connection at once (a network reset). Each fault is a
:class:`Fault` whose ``wait()`` returns once it has fired, so a test never has to guess when
the server has run a command. Limits: RESP2/RESP3 request/reply traffic only (no pub/sub or
client tracking on proxied connections), no TLS.
"""
from __future__ import annotations

import collections
import selectors
import socket
import threading
import time
from typing import Any, Deque, Iterable, List, Optional, Set, Tuple, Union
from urllib.parse import parse_qs, urlsplit

import redis

__all__ = ['Fault', 'FaultProxy']

_Names = Union[None, str, Iterable[str]]
_CHUNK = 65536


class Fault:
    """One armed fault of a :class:`FaultProxy`; fires once, on the first matching command."""

    def __init__(self, kind: str, commands: Optional[Set[bytes]], amount: float) -> None:
        self.kind = kind
        self.commands = commands
        self.amount = amount
        self._fired = threading.Event()

    def matches(self, name: bytes) -> bool:
        return self.commands is None or name in self.commands

    def fire(self) -> None:
        self._fired.set()

    @property
    def fired(self) -> bool:
        """True once the fault has happened (see :meth:`wait`)."""
        return self._fired.is_set()

    def wait(self, timeout: float = 10.0) -> bool:
        """Block until the fault has happened; False if it has not within ``timeout`` seconds.

        A dropped or cut reply has happened once the server's reply reached the proxy (so
        the server has run the command); a delayed reply once it was delivered; a cut
        request once the connection was closed.
        """
        return self._fired.wait(timeout)

    def __repr__(self) -> str:
        names = sorted(n.decode() for n in self.commands) if self.commands else 'any'
        return '<Fault %s %s %s%s>' % (self.kind, names, self.amount,
                                       ' fired' if self.fired else '')


# --------------------------------------------------------------------------- RESP framing

def _line_end(buf: bytearray, pos: int) -> int:
    """Index of the ``\\r\\n`` ending the line at ``pos``, or -1 when incomplete."""
    return buf.find(b'\r\n', pos)


def _command_frame(buf: bytearray) -> Optional[Tuple[int, bytes]]:
    """(length, upper-cased name) of the first complete command in ``buf``, or None."""
    if not buf:
        return None
    if buf[0:1] != b'*':                       # inline command: one line
        eol = buf.find(b'\n')
        if eol < 0:
            return None
        words = bytes(buf[:eol]).split()
        return eol + 1, (words[0].upper() if words else b'')
    eol = _line_end(buf, 0)
    if eol < 0:
        return None
    count = int(buf[1:eol])
    pos = eol + 2
    name = b''
    for i in range(max(count, 0)):
        eol = _line_end(buf, pos)
        if eol < 0:
            return None
        size = int(buf[pos + 1:eol])
        end = eol + 2 + size + 2
        if end > len(buf):
            return None
        if i == 0:
            name = bytes(buf[eol + 2:eol + 2 + size]).upper()
        pos = end
    return pos, name


_SIMPLE = frozenset(b'+-:_,#(')
_BULK = frozenset(b'$!=')
_AGGREGATE = {ord('*'): 1, ord('~'): 1, ord('>'): 1, ord('%'): 2, ord('|'): 2}


def _reply_end(buf: bytearray, pos: int = 0) -> int:
    """End index of the complete RESP2/RESP3 value starting at ``pos``, or -1."""
    todo = 1                                   # values still to read at this point
    while todo:
        if pos >= len(buf):
            return -1
        kind = buf[pos]
        eol = _line_end(buf, pos)
        if eol < 0:
            return -1
        todo -= 1
        if kind in _SIMPLE:
            pos = eol + 2
        elif kind in _BULK:
            size = int(buf[pos + 1:eol])
            pos = eol + 2 if size < 0 else eol + 2 + size + 2
            if pos > len(buf):
                return -1
        elif kind in _AGGREGATE:
            count = int(buf[pos + 1:eol])
            pos = eol + 2
            todo += max(count, 0) * _AGGREGATE[kind]
            if kind == ord('|'):               # attributes precede the value they annotate
                todo += 1
        else:
            raise ValueError('not a RESP reply: %r' % bytes(buf[pos:pos + 20]))
    return pos


# --------------------------------------------------------------------------- the proxy

def _upstream_address(target: str) -> Tuple[Any, Any, str, Optional[str]]:
    """(socket family, address, db, userinfo) of a ``redis://`` or ``unix://`` URL."""
    parts = urlsplit(target)
    query = parse_qs(parts.query)
    userinfo = parts.netloc.rpartition('@')[0] if '@' in parts.netloc else None
    if parts.scheme == 'unix':
        return socket.AF_UNIX, parts.path, (query.get('db') or ['0'])[0], userinfo
    if parts.scheme == 'redis':
        db = parts.path.strip('/') or (query.get('db') or ['0'])[0]
        return socket.AF_INET, (parts.hostname or '127.0.0.1', parts.port or 6379), db, userinfo
    raise ValueError('FaultProxy needs a redis:// or unix:// URL, not %r' % (target,))


class FaultProxy:
    """A TCP proxy on ``127.0.0.1`` in front of the Redis server at ``target`` (a URL).

    ``url`` is the proxy's own URL (same database and credentials as ``target``);
    :meth:`client` makes a redis-py client connected through it. Arm faults with
    :meth:`drop_reply`, :meth:`delay_reply`, :meth:`cut_request` and :meth:`cut_reply`
    (``command`` names the command(s) to hit: ``'EVALSHA'`` or ``('EVAL', 'EVALSHA')``;
    ``None`` hits the next command of any kind). Usable as a context manager; :meth:`close`
    stops it.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self._family, self._address, db, userinfo = _upstream_address(target)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(('127.0.0.1', 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self.url = 'redis://%s127.0.0.1:%d/%s' % (userinfo + '@' if userinfo else '',
                                                 self.port, db)
        self._lock = threading.Lock()
        self._faults: List[Fault] = []
        self._links: List[_Link] = []
        self._closed = False
        self.connections = 0
        self._thread = threading.Thread(target=self._accept_loop, name='rom-fault-proxy',
                                        daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ faults

    def _arm(self, kind: str, command: _Names, amount: float) -> Fault:
        if isinstance(command, str):
            command = [command]
        names = None if command is None else {c.upper().encode() for c in command}
        fault = Fault(kind, names, amount)
        with self._lock:
            self._faults.append(fault)
        return fault

    def drop_reply(self, command: _Names = None) -> Fault:
        """The next matching command runs; its reply and all later traffic to that client
        are discarded (the client's read times out)."""
        return self._arm('drop', command, 0)

    def delay_reply(self, seconds: float, command: _Names = None) -> Fault:
        """The reply to the next matching command reaches the client ``seconds`` late."""
        if not seconds >= 0:
            raise ValueError('seconds must be >= 0')
        return self._arm('delay', command, seconds)

    def cut_request(self, after_bytes: int, command: _Names = None) -> Fault:
        """Only the first ``after_bytes`` bytes of the next matching command reach the server,
        then the connection is closed (the server does not run the command)."""
        if after_bytes < 0:
            raise ValueError('after_bytes must be >= 0')
        return self._arm('cut_request', command, after_bytes)

    def cut_reply(self, after_bytes: int, command: _Names = None) -> Fault:
        """The next matching command runs; the client gets the first ``after_bytes`` bytes of
        its reply, then the connection is closed."""
        if after_bytes < 0:
            raise ValueError('after_bytes must be >= 0')
        return self._arm('cut_reply', command, after_bytes)

    def clear(self) -> None:
        """Disarm every fault that has not fired yet."""
        with self._lock:
            self._faults.clear()

    def disconnect_all(self) -> int:
        """Close every open proxied connection (both sides) now; returns how many."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()
        return len(links)

    def _take(self, name: bytes) -> Optional[Fault]:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.matches(name):
                    del self._faults[i]
                    return fault
        return None

    # ------------------------------------------------------------------ plumbing

    def client(self, **kwargs: Any) -> redis.Redis:
        """``redis.Redis.from_url(self.url, **kwargs)``."""
        return redis.Redis.from_url(self.url, **kwargs)

    def _accept_loop(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return                                  # listener closed
            upstream = socket.socket(self._family, socket.SOCK_STREAM)
            try:
                upstream.connect(self._address)
            except OSError:
                downstream.close()
                upstream.close()
                continue
            for sock in (downstream, upstream):
                if sock.family != socket.AF_UNIX:   # no Nagle delay on small replies
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(self, downstream, upstream)
            with self._lock:
                if self._closed:
                    link.close()
                    return
                self._links.append(link)
                self.connections += 1
            threading.Thread(target=link.run, name='rom-fault-proxy-link', daemon=True).start()

    def _forget(self, link: _Link) -> None:
        with self._lock:
            if link in self._links:
                self._links.remove(link)

    def close(self) -> None:
        """Stop accepting, close every connection. Idempotent."""
        with self._lock:
            self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:  # pragma: no cover
            pass
        self._listener.close()
        self.disconnect_all()
        self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return '<FaultProxy %s -> %s>' % (self.url, self.target)


class _Link:
    """One client connection and its connection to the server, pumped by one thread."""

    def __init__(self, proxy: FaultProxy, downstream: socket.socket,
                 upstream: socket.socket) -> None:
        self.proxy = proxy
        self.down = downstream
        self.up = upstream
        self.requests = bytearray()
        self.replies = bytearray()
        self.pending: Deque[Optional[Fault]] = collections.deque()
        self.outbox: Deque[Tuple[float, bytes, Optional[Fault]]] = collections.deque()
        self.blackhole = False
        self.closed = False
        self._close_lock = threading.Lock()

    def close(self) -> None:
        with self._close_lock:
            if self.closed:
                return
            self.closed = True
        for _, _, fault in self.outbox:             # delayed replies that cannot arrive now
            if fault is not None:
                fault.fire()
        for sock in (self.down, self.up):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            selector.register(self.down, selectors.EVENT_READ, 'down')
            selector.register(self.up, selectors.EVENT_READ, 'up')
            while not self.closed:
                timeout = None
                if self.outbox:
                    timeout = max(0.0, self.outbox[0][0] - time.monotonic())
                for key, _ in selector.select(timeout):
                    data = key.fileobj.recv(_CHUNK)  # type: ignore[union-attr]
                    if not data:               # one side closed: deliver what is due, end
                        if key.data == 'up':
                            self._flush(final=True)
                        return
                    if key.data == 'down':
                        self._from_client(data)
                    else:
                        self._from_server(data)
                    if self.closed:
                        return
                self._flush()
        except (OSError, ValueError):
            pass
        finally:
            selector.close()
            self.close()
            self.proxy._forget(self)

    def _from_client(self, data: bytes) -> None:
        self.requests += data
        while not self.closed:
            frame = _command_frame(self.requests)
            if frame is None:
                return
            size, name = frame
            command = bytes(self.requests[:size])
            del self.requests[:size]
            fault = self.proxy._take(name)
            if fault is not None and fault.kind == 'cut_request':
                self.up.sendall(command[:int(fault.amount)])
                fault.fire()                        # before the client can see the close
                self.close()
                return
            self.up.sendall(command)
            self.pending.append(fault)

    def _from_server(self, data: bytes) -> None:
        if self.blackhole:
            return
        self.replies += data
        while not self.closed:
            end = _reply_end(self.replies)
            if end < 0:
                return
            reply = bytes(self.replies[:end])
            del self.replies[:end]
            if reply[:1] == b'>':                   # RESP3 push: not an answer
                self._send(reply, 0.0, None)
                continue
            fault = self.pending.popleft() if self.pending else None
            if fault is None:
                self._send(reply, 0.0, None)
            elif fault.kind == 'drop':
                self.blackhole = True
                self.replies.clear()
                fault.fire()
                return
            elif fault.kind == 'delay':
                self._send(reply, fault.amount, fault)
            else:                                   # cut_reply
                self._flush(final=True)
                fault.fire()
                self.down.sendall(reply[:int(fault.amount)])
                self.close()
                return

    def _send(self, data: bytes, delay: float, fault: Optional[Fault]) -> None:
        release = time.monotonic() + delay
        if self.outbox:                             # keep replies in order
            release = max(release, self.outbox[-1][0])
        self.outbox.append((release, data, fault))
        self._flush()

    def _flush(self, final: bool = False) -> None:
        while self.outbox and not self.closed:
            release, data, fault = self.outbox[0]
            wait = release - time.monotonic()
            if wait > 0:
                if not final:
                    return
                time.sleep(wait)
            self.outbox.popleft()
            if fault is not None:
                fault.fire()
            self.down.sendall(data)
