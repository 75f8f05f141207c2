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
from ._scripts import lua
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

    def _acquire(self) -> bool:
        """One atomic attempt: take the free lock, or renew it when we hold it."""
        if not self.identifier:
            # The text "b'<32 hex>'" (the repr of bytes) is the observable identifier form.
            self.identifier = str(_random_hex(16))
        reply = lua('lock_acquire')(
            self.conn, [self.lockname], [self.lock_timeout, self.identifier])
        # Fix of reference bug util #8: status 'OK' arrives as bytes on non-decoding clients.
        return reply in _SUCCESS

    def acquire(self) -> bool:
        """Try until ``acquire_timeout`` seconds have passed (at least once); return whether
        the lock is held."""
        deadline = time.monotonic() + self.acquire_timeout
        acquired = self._acquire()
        while not acquired and time.monotonic() < deadline:
            time.sleep(0.001)
            acquired = self._acquire()
        return acquired

    def refresh(self) -> bool:
        """Renew the lock's TTL (re-taking it if it lapsed); on failure forget the identifier."""
        acquired = self._acquire()
        if not acquired:
            self.identifier = None
        return acquired

    def release(self) -> bool:
        """Delete the lock key if it still holds our identifier; return whether it did."""
        reply = lua('lock_release')(self.conn, [self.lockname], [self.identifier or ''])
        return bool(reply)

    def __enter__(self) -> 'Lock':
        if not self.acquire():
            raise DataRaceError('could not acquire lock %r: it is held by someone else'
                                % (self.lockname,))
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        return '<Lock %s held_by=%r>' % (self.lockname, self.identifier)


def EntityLock(entity: Any, acquire_timeout: float, lock_timeout: float) -> Lock:
    """A ``Lock`` named after the entity (key ``lock:<ns>:<id>``) on the entity's client."""
    return Lock(entity._connection, entity._pk, acquire_timeout, lock_timeout)
