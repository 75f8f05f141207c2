"""The asyncio clients (``redis.asyncio``) of models and entities.

A model names its own async client with ``_aconn`` (as ``_conn`` names the blocking one).
Otherwise rom builds one ``redis.asyncio`` client per event loop from the blocking client
the model would use (``_conn``, ``CONN`` or ``rom.util.get_connection()``): same server,
database, credentials and ``decode_responses``. A client is bound to the loop it was built
in (its connections are), hence one per loop.
"""
from __future__ import annotations

import asyncio
import inspect
import weakref
from typing import Any, Dict, Set

from ._connect import connect
from ._registry import MODELS

__all__ = ['aconnect', 'aclose_loop_clients', 'async_client_for']

# event loop -> {id(blocking client): (blocking client, async client)}
_PER_LOOP: 'weakref.WeakKeyDictionary[Any, Dict[int, Any]]' = weakref.WeakKeyDictionary()


def async_client_for(conn: Any) -> Any:
    """A ``redis.asyncio`` client to the same server as the blocking client ``conn``."""
    import redis.asyncio as aredis
    from redis.asyncio import connection as aconn
    pool = getattr(conn, 'connection_pool', None)
    kwargs = dict(getattr(pool, 'connection_kwargs', {}) or {})
    name = getattr(getattr(pool, 'connection_class', None), '__name__', 'Connection')
    connection_class = getattr(aconn, name, aconn.Connection)
    accepted = _accepted(connection_class)
    if accepted is not None:  # options of the blocking class the asyncio one does not take
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    kwargs.pop('retry', None)  # a blocking Retry object: the asyncio client makes its own
    return aredis.Redis(connection_pool=aredis.ConnectionPool(
        connection_class=connection_class, **kwargs))


def _accepted(cls: Any) -> Any:
    """The keyword names ``cls(...)`` takes along its MRO, or None when it takes **kwargs."""
    names: Set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names.update(p.name for p in params if p.kind is p.KEYWORD_ONLY
                     or p.kind is p.POSITIONAL_OR_KEYWORD)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names
    return None


def aconnect(obj: Any) -> Any:
    """The asyncio client for a model class or entity (``_aconn``, else derived, per loop)."""
    model = type(obj) if isinstance(obj, MODELS['Model']) else obj
    own = getattr(model, '_aconn', None)
    if own is not None:
        return own
    conn = connect(obj)
    loop = asyncio.get_running_loop()
    clients = _PER_LOOP.get(loop)
    if clients is None:
        clients = _PER_LOOP[loop] = {}
    entry = clients.get(id(conn))
    if entry is None or entry[0] is not conn:
        entry = clients[id(conn)] = (conn, async_client_for(conn))
    return entry[1]


async def aclose_loop_clients() -> None:
    """Close the async clients rom built for the running event loop (before it closes)."""
    clients = _PER_LOOP.pop(asyncio.get_running_loop(), {})
    for _, client in clients.values():
        await client.aclose() if hasattr(client, 'aclose') else await client.close()
