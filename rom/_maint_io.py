"""Lean Redis I/O for the maintenance jobs: native commands pipelined and packed by hand.

``check`` and ``reindex`` read every row and look up every index entry. Through a Lua
script each row read costs the server several times what the plain command costs, and
redis-py's pipeline costs the client several microseconds per command; here the commands
(``HMGET`` of a row's fields, ``SMISMEMBER`` / ``ZMSCORE`` / ``HMGET`` of an index key with
many members) are packed once into one buffer, sent in one write and their replies read
back in order, in blocks (the server handles each command on its own: no long call).

Only for a plain ``redis.Redis`` client that returns bytes (:func:`usable`); the callers
keep their script-based path for cluster clients and ``decode_responses=True`` clients.
"""
from __future__ import annotations

from typing import Any, List, Sequence

import redis

from ._cluster import is_cluster_client
from ._connect import decodes_responses

__all__ = ['usable', 'pack', 'run_packed', 'bulk']


def usable(conn: Any) -> bool:
    """Whether ``conn`` is a single-server client returning bytes (then this module works)."""
    return (isinstance(conn, redis.Redis) and not is_cluster_client(conn)
            and hasattr(conn, 'connection_pool') and not decodes_responses(conn))


def bulk(arg: bytes) -> bytes:
    """One RESP bulk string."""
    return b'$%d\r\n%s\r\n' % (len(arg), arg)


def pack(args: Sequence[bytes]) -> bytes:
    """One command (its name and arguments, as bytes) in RESP."""
    return b'*%d\r\n%s' % (len(args), b''.join([b'$%d\r\n%s\r\n' % (len(a), a) for a in args]))


def pooled_connection(pool: Any) -> Any:
    """A connection taken from a redis-py connection pool (any redis-py version)."""
    try:
        return pool.get_connection()
    except TypeError:  # redis-py < 5 needs a command name
        return pool.get_connection('HMGET')


def run_packed(conn: Any, commands: List[bytes]) -> List[Any]:
    """Send the packed ``commands`` in one write; their replies, in order.

    An error reply raises (as the command would); the connection is then dropped, since
    later replies are still unread.
    """
    if not commands:
        return []
    pool = conn.connection_pool
    connection = pooled_connection(pool)
    try:
        connection.send_packed_command([b''.join(commands)])
        read = connection.read_response
        return [read() for _ in commands]
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)
