"""Ids of new entities, reserved in blocks (hi/lo): one ``INCRBY`` hands out many ids.

Every model's ids come from its counter ``<ns>:<pk>:``, as in rom 1.1.2. Instead of one
``INCR`` per new entity, a process reserves a block of ids with one ``INCRBY <n>`` (the
counter's new value ``hi`` means ``hi - n + 1 .. hi`` are this process's) and hands them out
without further round trips. Writers using plain ``INCR`` on the same counter (rom 1.1.2,
or a model with ``_ids_per_block = 1``) never get an id of a block, and the other way round:
both move the counter past every id they take.

Block size (per counter, per process): a model's ``_ids_per_block`` when it sets one (a
positive integer; ``1`` is rom 1.1.2's one ``INCR`` per entity); by default it adapts to how
fast the process creates entities: the first block holds one id, the next one twice as
many when the previous block was used up within ``REFILL_SECONDS``, half as many when it
lasted longer, up to ``MAX_BLOCK``. Ids of a block that are never handed out (the process
exits, forks or its database is flushed) are gaps in the sequence, like the id of an entity
that is constructed and never saved.

In a coroutine (a running event loop in the thread) a new entity takes an id of a held
block at once, without I/O; when none is held its id stays pending until its first
``asave()``/``acommit()``, which reserves one block for all the pending entities of a
model (``op_take_ids``; the counter's lock is never held across an ``await``), or until
``await entity.aid()``. ``await Model.areserve_ids(n)`` (``op_reserve_ids``) reserves ids
ahead, so that the next entities built in coroutines get theirs at once.

Thread-safe (one lock per counter); fork-safe: a child process drops the blocks it
inherited (their ids belong to the parent) and reserves its own.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from ._aconnect import is_async_client
from ._io import Client, ClientOf, Command, Operation, run
from .exceptions import ORMError

#: largest block the adaptive size reaches (a model's ``_ids_per_block`` may be larger)
MAX_BLOCK = 1024
#: a block used up faster than this makes the next one twice as large
REFILL_SECONDS = 1.0


class _Counter:
    """The ids a process holds of one counter of one database."""

    __slots__ = ('lock', 'next', 'last', 'size', 'refilled', 'pid')

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next = 1
        self.last = 0  # next > last: nothing held
        self.size = 0  # the adaptive size of the last reservation (0: none yet)
        self.refilled = 0.0
        self.pid = os.getpid()


_counters: Dict[Tuple[str, Any], _Counter] = {}
_registry_lock = threading.Lock()


def _database(conn: Any) -> Any:
    """What identifies the database a client talks to: clients of the same database share
    their blocks (a block is a range of that database's counter)."""
    kwargs = getattr(getattr(conn, 'connection_pool', None), 'connection_kwargs', None)
    if not isinstance(kwargs, dict):
        return ('client', conn)  # an unknown kind of client: blocks of its own
    return tuple(str(kwargs.get(name)) for name in ('host', 'port', 'path', 'db', 'username'))


def _counter(key: str, conn: Any) -> _Counter:
    slot = (key, _database(conn))
    state = _counters.get(slot)
    if state is None or state.pid != os.getpid():
        with _registry_lock:
            state = _counters.get(slot)
            if state is None or state.pid != os.getpid():
                state = _counters[slot] = _Counter()
    return state


def _next_size(state: _Counter, fixed: Optional[int], wanted: int) -> int:
    if fixed:
        return max(fixed, wanted)
    now = time.monotonic()
    if not state.size:
        size = 1
    elif now - state.refilled < REFILL_SECONDS:
        size = min(state.size * 2, MAX_BLOCK)
    else:
        size = max(state.size // 2, 1)
    state.size = size
    state.refilled = now
    return max(size, wanted)


def _held(state: _Counter, count: int) -> Optional[List[int]]:
    """``count`` ids from the block ``state`` holds (caller holds ``state.lock``), or None."""
    if state.last - state.next + 1 >= count:
        first = state.next
        state.next += count
        return list(range(first, first + count))
    return None


def _refill(state: _Counter, model: Any, count: int) -> Tuple[List[int], int, int]:
    """(ids still held, ids needed from a new block, the block's size); takes the held ones
    (caller holds ``state.lock``)."""
    taken = list(range(state.next, state.last + 1))
    state.next = state.last + 1
    needed = count - len(taken)
    return taken, needed, _next_size(state, getattr(model, '_ids_per_block', None), needed)


def _refilled(state: _Counter, taken: List[int], needed: int, size: int, hi: Any,
              keep: bool) -> List[int]:
    """The ids once the block ending at ``hi`` is reserved; its rest is held when ``keep``."""
    hi = int(hi)
    lo = hi - size + 1
    taken.extend(range(lo, lo + needed))
    if keep:
        state.next, state.last = lo + needed, hi
    return taken


def op_take_ids(model: Any, via: Any, count: int = 1) -> Operation[List[int]]:
    """Operation: ``count`` new ids of ``model`` (in increasing order), reserving a block
    with one ``INCRBY`` on the client of ``via`` when the held ids do not suffice.

    With a blocking client the counter's lock is held across the ``INCRBY`` (threads leave
    no gaps). An asyncio task must not hold it while it waits (the other tasks of its
    thread would block on it): when another task refilled the counter meanwhile, the rest
    of its block is not kept (gaps, like the ids of a process that exits).
    """
    key = '%s:%s:' % (model._namespace, model._pkey)
    conn = yield ClientOf(via)
    state = _counter(key, conn)
    hold = not is_async_client(conn)
    state.lock.acquire()
    locked = True
    try:
        taken = _held(state, count)
        if taken is not None:
            return taken
        taken, needed, size = _refill(state, model, count)
        if not hold:
            state.lock.release()
            locked = False
        hi = yield Command(via, ('INCRBY', key, size))
        if not locked:
            state.lock.acquire()
            locked = True
        return _refilled(state, taken, needed, size, hi, hold or state.next > state.last)
    finally:
        if locked:
            state.lock.release()


def check_count(count: Any) -> int:
    """The number of ids ``Model.areserve_ids(count)`` makes sure are held (None: 1)."""
    if count is None:
        return 1
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError('the number of ids to reserve must be an int, not %s'
                        % (type(count).__name__,))
    if count < 1:
        raise ValueError('the number of ids to reserve must be at least 1, got %d' % (count,))
    from ._limits import MAX_IDS_PER_BLOCK
    if count > MAX_IDS_PER_BLOCK:  # as _ids_per_block: unused ids are gaps, the counter 64-bit
        raise ValueError('the number of ids to reserve must be at most %d, got %d'
                         % (MAX_IDS_PER_BLOCK, count))
    return count


def op_reserve_ids(model: Any, via: Any, count: int = 1) -> Operation[int]:
    """Operation: make the process hold at least ``count`` ids of ``model`` (without taking
    any), reserving a block with one ``INCRBY`` on the client of ``via`` when fewer are
    held; returns how many it holds.

    The counter's lock is never held across the ``INCRBY``. The new block extends the held
    ids when it follows them; otherwise the larger of the two is kept (the other one's ids
    become gaps, like the ids of a process that exits).
    """
    if getattr(model, '_rom_take_ids', None) is not None:  # a shard class (rom._shard)
        raise ORMError('reserve the ids of %s through its public model' % (model.__name__,))
    key = '%s:%s:' % (model._namespace, model._pkey)
    state = _counter(key, (yield ClientOf(via)))
    with state.lock:
        held = state.last - state.next + 1
        if held >= count:
            return held
        size = _next_size(state, getattr(model, '_ids_per_block', None), count)
    hi = int((yield Command(via, ('INCRBY', key, size))))
    lo = hi - size + 1
    with state.lock:
        held = max(state.last - state.next + 1, 0)
        if held and state.last + 1 == lo:
            state.last = hi  # the new block follows the held ids
        elif held < size:
            state.next, state.last = lo, hi
        return state.last - state.next + 1


def take_ids(model: Any, conn: Any, count: int = 1) -> List[int]:
    """``count`` new ids of ``model`` (in increasing order), reserving a block when needed."""
    hook = getattr(model, '_rom_take_ids', None)  # sharding hook: shard classes (rom._shard)
    if hook is not None:
        return hook(conn, count)  # type: ignore[no-any-return]
    state = _counter('%s:%s:' % (model._namespace, model._pkey), conn)
    with state.lock:
        taken = _held(state, count)
    if taken is not None:
        return taken
    return run(op_take_ids(model, Client(conn), count))


def held_id(model: Any, conn: Any) -> Optional[int]:
    """One id of ``model`` from a block already held (no I/O), or None when none is held."""
    state = _counter('%s:%s:' % (model._namespace, model._pkey), conn)
    with state.lock:
        taken = _held(state, 1)
    return None if taken is None else taken[0]


def take_id(model: Any, conn: Any) -> int:
    """One new id of ``model`` (no round trip while the process holds a block)."""
    return take_ids(model, conn, 1)[0]


def forget_blocks() -> None:
    """Drop every held block (their unused ids become gaps).

    Needed after the counters were reset behind rom's back (FLUSHDB, a restored backup):
    a held block would hand out ids the counter hands out again. ``rom.testing`` calls it
    for every clean slate.
    """
    with _registry_lock:
        _counters.clear()


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()  # may have been held by another thread at the fork
    _counters.clear()


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_after_fork_in_child)
