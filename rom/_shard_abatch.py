"""The asyncio transport of a scatter (``rom._shard_batch.op_scatter``): each master's jobs in
one packed write on one of its connections, the masters served concurrently (``asyncio.gather``
over the nodes of a ``redis.asyncio.cluster.RedisCluster``, or the one server of a plain
``redis.asyncio.Redis``). The logic (grouping, NOSCRIPT and redirections, errors) is
``op_scatter``'s, shared with the blocking transport.
"""
from __future__ import annotations

import asyncio
import inspect
from typing import Any, List, Sequence, Tuple

from redis.exceptions import ResponseError, TryAgainError

from ._aconnect import is_async_cluster
from ._shard_batch import Job, packed_jobs, split_replies

__all__ = ['aagain', 'aserve', 'node_client']


def node_client(conn: Any, shard: Any) -> Tuple[str, Any]:
    """(name, node or client) of the master holding ``shard``'s slot (by the client's slot
    map: it may be out of date, which the scatter's redirections then correct)."""
    if is_async_cluster(conn):
        node = _master_of(conn, shard)
        return node.name, node
    return '', conn


def _master_of(conn: Any, shard: Any) -> Any:
    return conn.get_node_from_key(shard._namespace)


async def _maybe(value: Any) -> Any:
    return (await value) if inspect.isawaitable(value) else value


async def _acquire(target: Any) -> Tuple[Any, Any]:
    """A connection of a cluster node or of a plain client's pool, and its releaser."""
    if hasattr(target, 'acquire_connection'):  # a ClusterNode
        connection = target.acquire_connection()
        release = getattr(target, 'release', None) or target._free.append
        return connection, release
    pool = target.connection_pool
    try:
        connection = await pool.get_connection()
    except TypeError:  # redis-py < 5 needs a command name
        connection = await pool.get_connection('HMGET')
    return connection, pool.release


async def _asend(target: Any, jobs: List[Job], sha: bool) -> List[Any]:
    """One master's jobs in one packed write; one reply (or error) per job. Cancelled or
    failed mid-way, the connection is dropped (its later replies are unread)."""
    packed = packed_jobs(jobs, sha)
    connection, release = await _acquire(target)
    replies: List[Any] = []
    try:
        await connection.send_packed_command(connection.pack_commands(packed))
        for _ in packed:
            try:
                replies.append(await connection.read_response())
            except ResponseError as err:
                replies.append(err)
    except BaseException:
        try:
            await connection.disconnect(nowait=True)
        finally:
            await _maybe(release(connection))
        raise
    await _maybe(release(connection))
    return split_replies(jobs, replies)


async def aagain(conn: Any, job: Job) -> Any:
    """A job whose slot moved, sent again (the async form of the blocking transport's resend
    through the cluster client): the slot map reloaded, then the job to the master holding
    its slot now, again while the slot keeps moving (up to ``SLOT_MOVE_WAIT``).

    Not through redis-py's async cluster pipeline: some versions queue a transaction's
    commands through a thread with an event loop of its own, where ``ZUNIONSTORE``'s keys
    are looked up on a connection of this loop ("attached to a different loop")."""
    if not is_async_cluster(conn):
        reply = (await _asend(conn, [job], False))[0]
        if isinstance(reply, ResponseError):
            raise reply
        return reply
    from ._aio_driver import _while_slot_moves
    from ._shard_batch import _redirected

    async def attempt() -> Any:
        await conn.nodes_manager.initialize()
        reply = (await _asend(_master_of(conn, job[0]), [job], False))[0]
        if isinstance(reply, ResponseError):
            # moved again (or still moving): TRYAGAIN, retried; anything else raises
            raise TryAgainError(str(reply)) if _redirected(reply) else reply
        return reply

    return await _while_slot_moves(attempt)


async def aserve(groups: List[Tuple[Any, List[Job], bool]]) -> List[List[Any]]:
    """A :class:`~rom._io.Scatter` with asyncio clients: ``_asend`` of each group, the
    masters concurrently."""
    return list(await asyncio.gather(*(_asend(*group) for group in groups)))
