"""The asyncio driver of rom's operations: one step of ``rom._io`` awaited on an async client.

``aconnect(via)`` finds the ``redis.asyncio`` client of a model or entity; a script call is
EVALSHA with an EVAL fallback on NOSCRIPT (EVAL inside a batch), as the blocking driver does.
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any, Awaitable, Callable, Dict, Union

from redis.exceptions import ResponseError

from ._aconnect import is_async_cluster
from ._io import Batch, Client, ClientOf, Command, Resend, Scatter, Script, Sleep, Step

__all__ = ['aconnect', 'arun_step']


def aconnect(via: Any) -> Any:
    """The asyncio client a step goes to (``rom._aconnect.aconnect`` at call time)."""
    if isinstance(via, Client):
        from ._aconnect import client_for_given
        return client_for_given(via.conn)
    from ._aconnect import aconnect as find
    return find(via)


_SHA: Dict[bytes, str] = {}


def _source(name: str) -> bytes:
    from ._scripts import lua
    return lua(name).script  # type: ignore[attr-defined,no-any-return]


def _sha(source: bytes) -> str:
    sha = _SHA.get(source)
    if sha is None:
        sha = _SHA[source] = hashlib.sha1(source).hexdigest()
    return sha


def _keys(conn: Any, step: Script) -> tuple:
    from ._cluster import route_keys
    return tuple(route_keys(conn, step.keys, step.route, is_async_cluster(conn)))


def _queue(pipe: Any, step: Union[Command, Script]) -> None:
    if isinstance(step, Command):
        pipe.execute_command(*step.args)
        return
    keys = _keys(pipe, step)
    pipe.execute_command('EVAL', _source(step.name), len(keys), *keys, *step.args)


async def _script(conn: Any, step: Script) -> Any:
    keys = _keys(conn, step)
    if not (keys and is_async_cluster(conn)):
        return await _script_once(conn, step, keys)
    # on a cluster: sent again while its slot is being moved (see rom._scripts)
    return await _while_slot_moves(lambda: _script_once(conn, step, keys))


async def _while_slot_moves(attempt: Callable[[], Awaitable[Any]]) -> Any:
    """``await attempt()``, again while the cluster refuses it (``TRYAGAIN``: nothing ran)
    because its slot is being moved, for up to ``SLOT_MOVE_WAIT`` seconds."""
    from redis.exceptions import ClusterError, TryAgainError
    from ._scripts import SLOT_MOVE_WAIT, slot_move_pause
    deadline = time.monotonic() + SLOT_MOVE_WAIT
    pause = 0.0
    while True:
        try:
            return await attempt()
        except (TryAgainError, ClusterError) as err:
            pause = slot_move_pause(err, deadline, pause)
        await asyncio.sleep(pause)


async def _batch(conn: Any, step: Batch) -> Any:
    if not step.transaction:
        return await _batch_once(conn, step)
    from ._aconnect import check_async_transactions
    check_async_transactions(conn)
    if not is_async_cluster(conn):
        return await _batch_once(conn, step)

    async def attempt() -> Any:
        if getattr(conn, '_initialize', False):
            # a client due to (re)load its slot map (new, or after MOVED/TRYAGAIN) does it
            # here, in the running loop: some redis-py versions queue a transaction's
            # commands through a thread with an event loop of its own, and would load it
            # there (its connections then belong to that loop: "attached to a different loop")
            await conn.initialize()
        return await _batch_once(conn, step)

    # a refused MULTI/EXEC (TRYAGAIN while its slot moves) ran nothing: send it again
    return await _while_slot_moves(attempt)


async def _batch_once(conn: Any, step: Batch) -> Any:
    pipe = conn.pipeline(transaction=step.transaction)
    try:
        for item in step.steps:
            _queue(pipe, item)
        return await pipe.execute(raise_on_error=step.raise_on_error)
    finally:
        await pipe.reset()


async def _script_once(conn: Any, step: Script, keys: tuple) -> Any:
    from ._scripts import _is_no_script
    source = _source(step.name)
    if not step.force_eval:
        try:
            return await conn.execute_command('EVALSHA', _sha(source), len(keys), *keys,
                                              *step.args)
        except ResponseError as err:
            if not _is_no_script(err):
                raise
    return await conn.execute_command('EVAL', source, len(keys), *keys, *step.args)


async def arun_step(step: Step) -> Any:
    """Await one step on the asyncio client; returns the reply."""
    if isinstance(step, Sleep):
        await asyncio.sleep(step.seconds)
        return None
    if isinstance(step, Scatter):
        from ._shard_abatch import aserve
        return await aserve(list(step.groups))
    conn = aconnect(step.via)
    if isinstance(step, Command):
        return await conn.execute_command(*step.args)
    if isinstance(step, Script):
        return await _script(conn, step)
    if isinstance(step, Batch):
        return await _batch(conn, step)
    if isinstance(step, ClientOf):
        return conn
    if isinstance(step, Resend):
        from ._shard_abatch import aagain
        return await aagain(conn, step.job)
    raise TypeError('not a rom I/O step: %r' % (step,))
