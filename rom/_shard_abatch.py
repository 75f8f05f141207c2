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

from redis.exceptions import ResponseError

from ._aconnect import is_async_cluster
from ._shard_batch import Job, packed_jobs, split_replies

__all__ = ['aagain', 'aserve', 'node_client']


def node_client(conn: Any, shard: Any) -> Tuple[str, Any]:
    """(name, node or client) of the master holding ``shard``'s slot."""
    if is_async_cluster(conn):
        node = conn.get_node_from_key(shard._namespace)
        return node.name, node
    return '', conn


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
    """A job sent through the cluster client itself (it follows MOVED/ASK)."""
    _, commands, transaction = job
    pipe = conn.pipeline(transaction=transaction)
    try:
        for command in commands:
            pipe.execute_command(*command)
        replies = await pipe.execute()
    finally:
        await pipe.reset()
    return replies if transaction else replies[0]


async def aserve(groups: List[Tuple[Any, List[Job], bool]]) -> List[List[Any]]:
    """A :class:`~rom._io.Scatter` with asyncio clients: ``_asend`` of each group, the
    masters concurrently."""
    return list(await asyncio.gather(*(_asend(*group) for group in groups)))
