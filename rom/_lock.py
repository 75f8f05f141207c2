"""Advisory locks stored in Redis: ``Lock`` and ``EntityLock``.

A lock is the string key ``lock:<lockname>`` holding its owner's identifier with a TTL of
``lock_timeout`` whole seconds. Taking, renewing and releasing are single atomic script calls
(``rom/scripts/lock_acquire.lua`` and ``lock_release.lua``). rom's own saves and deletes never
look at lock keys: the locks only coordinate code that uses them.
"""
from __future__ import annotations

import math
import time
from typing import Any, Optional

from ._helpers import _random_hex
from ._io import Client, Operation, Script, Sleep, arun, run
from .exceptions import DataRaceError

__all__ = ['Lock', 'EntityLock']

_SUCCESS = ('OK', b'OK', 1)


def _whole_seconds(name: str, value: float) -> int:
    try:
        return int(math.ceil(value))
    except (ValueError, OverflowError, TypeError):
        raise ValueError('Lock: %s must be a finite number of seconds, not %r' % (name, value))


class Lock:
    """A named lock on ``conn`` (key ``lock:<lockname>``), usable as a context manager.

    Args:
        conn: the redis client holding the lock key.
        lockname: the lock's name; the key is ``'lock:' + lockname``.
        acquire_timeout: seconds ``acquire()`` keeps retrying (rounded up); with 0 it
            makes exactly one attempt.
        lock_timeout: the key's TTL in seconds (rounded up); must be positive.

    Raises ``ValueError`` for a timeout that is not a finite number or a ``lock_timeout``
    that is not positive (Redis cannot give a key such a TTL).

    In async code use ``async with lock:`` or ``await lock.aacquire()`` /
    ``await lock.arefresh()`` / ``await lock.arelease()``; ``conn`` may then be a
    ``redis.asyncio`` client, or a blocking one (its asyncio twin on the same server is used).
    """

    __slots__ = ('identifier', 'conn', 'lockname', 'lock_timeout', 'acquire_timeout')

    def __init__(self, conn: Any, lockname: str, acquire_timeout: float,
                 lock_timeout: float) -> None:
        self.identifier: Optional[str] = None
        self.conn = conn
        self.lockname = 'lock:' + lockname
        self.lock_timeout = _whole_seconds('lock_timeout', lock_timeout)
        self.acquire_timeout = _whole_seconds('acquire_timeout', acquire_timeout)
        if self.lock_timeout <= 0:
            raise ValueError('Lock %r: lock_timeout must be positive (it is the TTL of the '
                             'lock key), not %r' % (lockname, lock_timeout))

    def _op_attempt(self) -> Operation[bool]:
        """One atomic attempt: take the free lock, or renew it when we hold it."""
        if not self.identifier:
            # The text "b'<32 hex>'" (the repr of bytes) is the observable identifier form.
            self.identifier = str(_random_hex(16))
        reply = yield Script(self._via(), 'lock_acquire', (self.lockname,),
                             (self.lock_timeout, self.identifier))
        # Fix of reference bug util #8: status 'OK' arrives as bytes on non-decoding clients.
        return reply in _SUCCESS

    def _op_acquire(self) -> Operation[bool]:
        deadline = time.monotonic() + self.acquire_timeout
        acquired = yield from self._op_attempt()
        while not acquired and time.monotonic() < deadline:
            yield Sleep(0.001)
            acquired = yield from self._op_attempt()
        return acquired

    def _op_refresh(self) -> Operation[bool]:
        acquired = yield from self._op_attempt()
        if not acquired:
            self.identifier = None
        return acquired

    def _op_release(self) -> Operation[bool]:
        reply = yield Script(self._via(), 'lock_release', (self.lockname,),
                             (self.identifier or '',))
        return bool(reply)

    def _via(self) -> Any:
        return Client(self.conn)

    def _acquire(self) -> bool:
        """One atomic attempt: take the free lock, or renew it when we hold it."""
        return run(self._op_attempt())

    def acquire(self) -> bool:
        """Try until ``acquire_timeout`` seconds have passed (at least once); return whether
        the lock is held."""
        return run(self._op_acquire())

    async def aacquire(self) -> bool:
        """Async ``acquire()`` (waits with ``asyncio.sleep`` between attempts)."""
        return await arun(self._op_acquire())

    def refresh(self) -> bool:
        """Renew the lock's TTL (re-taking it if it lapsed); on failure forget the identifier."""
        return run(self._op_refresh())

    async def arefresh(self) -> bool:
        """Async ``refresh()``."""
        return await arun(self._op_refresh())

    def release(self) -> bool:
        """Delete the lock key if it still holds our identifier; return whether it did."""
        return run(self._op_release())

    async def arelease(self) -> bool:
        """Async ``release()``."""
        return await arun(self._op_release())

    def _not_acquired(self) -> DataRaceError:
        return DataRaceError('could not acquire lock %r: it is held by someone else'
                             % (self.lockname,))

    def __enter__(self) -> 'Lock':
        if not self.acquire():
            raise self._not_acquired()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.release()

    async def __aenter__(self) -> 'Lock':
        """``async with lock:`` takes the lock (``aacquire``) or raises, and releases it after."""
        if not await self.aacquire():
            raise self._not_acquired()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.arelease()

    def __repr__(self) -> str:
        return '<Lock %s held_by=%r>' % (self.lockname, self.identifier)


class _EntityLock(Lock):
    """The ``Lock`` of ``EntityLock``: on the entity's client, found when first needed (the
    blocking one, or the asyncio one with ``async with`` / ``aacquire()``)."""

    __slots__ = ('_entity', '_conn')

    def __init__(self, entity: Any, acquire_timeout: float, lock_timeout: float) -> None:
        self._entity = entity
        self._conn = None
        Lock.__init__(self, None, entity._pk, acquire_timeout, lock_timeout)

    @property  # type: ignore[override]
    def conn(self) -> Any:
        """The blocking client holding the lock key (the entity's, or the one assigned)."""
        if self._conn is None and self._entity is not None:
            self._conn = self._entity._connection
        return self._conn

    @conn.setter
    def conn(self, value: Any) -> None:
        self._conn = value
        if value is not None:
            self._entity = None

    def _via(self) -> Any:
        return self._entity if self._entity is not None else Client(self._conn)


def EntityLock(entity: Any, acquire_timeout: float, lock_timeout: float) -> Lock:
    """A ``Lock`` named after the entity (key ``lock:<ns>:<id>``) on the entity's client
    (the blocking one, or the asyncio one with ``async with`` / ``aacquire()``)."""
    return _EntityLock(entity, acquire_timeout, lock_timeout)
