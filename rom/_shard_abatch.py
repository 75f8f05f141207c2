"""The asyncio transport of a scatter (``rom._shard_batch.op_jobs``): each master's jobs in one
packed write on one of its connections, the masters served concurrently (``asyncio.gather``
over the nodes of a ``redis.asyncio.cluster.RedisCluster``, or the one server of a plain
``redis.asyncio.Redis``). The logic (grouping, NOSCRIPT and redirections, errors) is
``op_jobs``'s, shared with the blocking transport.
"""
from __future__ import annotations

import asyncio
import inspect
from typing import Any, List, Sequence, Tuple

from redis.exceptions import ResponseError

from ._aconnect import is_async_cluster
from ._shard_batch import Job, Sends, op_jobs, packed_jobs, split_replies

__all__ = ['arun_jobs']


def _node_client(conn: Any, shard: Any) -> Tuple[str, Any]:
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


async def _aagain(conn: Any, job: Job) -> Any:
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


async def arun_jobs(conn: Any, jobs: Sequence[Job]) -> List[Any]:
    """The replies of ``jobs`` with the asyncio client ``conn``: one round trip per master,
    masters concurrently."""
    operation = op_jobs(jobs, lambda shard: _node_client(conn, shard))
    reply: Any = None
    error: Any = None
    while True:
        try:
            request = operation.send(reply) if error is None else operation.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            if type(request) is Sends:
                reply = await asyncio.gather(*(_asend(*group) for group in request.groups))
            else:  # Again
                reply = await _aagain(conn, request.job)
            error = None
        except ResponseError as exc:
            reply, error = None, exc

