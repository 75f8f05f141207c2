"""The asyncio clients (``redis.asyncio``) of models and entities.

A model names its own async client with ``_aconn`` (as ``_conn`` names the blocking one).
Otherwise rom builds one ``redis.asyncio`` client per event loop:

* for a model with ``_conn`` / ``CONN``: to the same server, database, credentials and
  ``decode_responses`` as that blocking client;
* else ``rom.util.get_async_connection()``: the same for ``rom.util.CONNECTION`` (set by
  ``set_connection_settings(...)``, ``ROM_REDIS_URI`` or assigned; a ``RedisCluster``
  with ``ROM_REDIS_CLUSTER``).

Nothing here calls the blocking client factory (``rom.util._connect`` /
``get_connection``) nor does I/O: finding a client never blocks the event loop. A client
is bound to the loop it was built in (its connections are), hence one per loop;
``aclose_loop_clients()`` closes those of the running loop.
"""
from __future__ import annotations

import asyncio
import inspect
import weakref
from typing import Any, Callable, Dict, Set, Tuple

from ._cluster import PendingClusterClient
from ._connect import util_module
from ._registry import MODELS
from .exceptions import ORMError

__all__ = ['aconnect', 'aclose_loop_clients', 'async_client_for', 'check_async_transactions',
           'default_client', 'is_async_client', 'is_async_cluster']

# event loop -> {key: (source object, async client)}
_PER_LOOP: 'weakref.WeakKeyDictionary[Any, Dict[Any, Tuple[Any, Any]]]' = \
    weakref.WeakKeyDictionary()


def is_async_client(conn: Any) -> bool:
    """True for a ``redis.asyncio`` client (plain or cluster)."""
    return type(conn).__module__.startswith('redis.asyncio') or inspect.iscoroutinefunction(
        getattr(conn, 'execute_command', None))


def is_async_cluster(conn: Any) -> bool:
    """True for a ``redis.asyncio.cluster.RedisCluster`` (or one of its pipelines)."""
    try:
        from redis.asyncio.cluster import ClusterPipeline, RedisCluster
    except ImportError:  # pragma: no cover - redis-py without async cluster
        return False
    return isinstance(conn, (RedisCluster, ClusterPipeline))


def check_async_transactions(conn: Any) -> None:
    """``ORMError`` for an async cluster client whose redis-py cannot run MULTI/EXEC in a
    cluster pipeline (rom's per-slot transactions), before anything is sent."""
    if not is_async_cluster(conn):
        return
    import redis
    from redis.asyncio import cluster
    if not hasattr(cluster, 'TransactionStrategy'):
        raise ORMError('rom on Redis Cluster from asyncio code needs a redis-py whose '
                       'redis.asyncio cluster pipelines run transactions (this is redis-py '
                       '%s); use the blocking API or upgrade redis-py' % (redis.__version__,))


def _cluster_from(conn: Any) -> Any:
    """An async ``RedisCluster`` to the cluster of the blocking ``RedisCluster`` ``conn``."""
    try:
        from redis.asyncio.cluster import ClusterNode, RedisCluster
    except ImportError:  # pragma: no cover
        raise ORMError('this redis-py has no redis.asyncio.cluster: rom cannot reach a Redis '
                       'Cluster from asyncio code')
    manager = conn.nodes_manager
    kwargs = dict(getattr(manager, 'connection_kwargs', {}) or {})
    for name in ('host', 'port', 'retry', 'connection_pool', 'connection_class'):
        kwargs.pop(name, None)
    nodes = [ClusterNode(node.host, node.port) for node in manager.startup_nodes.values()]
    accepted = _accepted(RedisCluster)
    if accepted is not None:
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    return RedisCluster(startup_nodes=nodes, **kwargs)


def async_client_for(conn: Any) -> Any:
    """A ``redis.asyncio`` client to the same server as the blocking client ``conn``."""
    import redis.asyncio as aredis
    from redis.asyncio import connection as aconn
    from ._cluster import is_cluster_client
    if is_async_client(conn):
        return conn
    if isinstance(conn, PendingClusterClient):
        from redis.asyncio.cluster import RedisCluster
        return RedisCluster.from_url(conn.url)
    if is_cluster_client(conn):
        return _cluster_from(conn)
    pool = getattr(conn, 'connection_pool', None)
    kwargs = dict(getattr(pool, 'connection_kwargs', {}) or {})
    connection_class = aconn.Connection
    for klass in getattr(getattr(pool, 'connection_class', None), '__mro__', ()):
        if klass.__module__.startswith('redis.') and hasattr(aconn, klass.__name__):
            # the redis-py class it is (or derives from: instrumented subclasses)
            connection_class = getattr(aconn, klass.__name__)
            break
    accepted = _accepted(connection_class)
    if accepted is not None:  # options of the blocking class the asyncio one does not take
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    kwargs.pop('retry', None)  # a blocking Retry object: the asyncio client makes its own
    # as many connections as the blocking pool; more tasks wait for one (not an error)
    size = getattr(pool, 'max_connections', None) or 100
    return aredis.Redis(connection_pool=aredis.BlockingConnectionPool(
        connection_class=connection_class, max_connections=min(size, 1000), timeout=None,
        **kwargs))


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


def per_loop(source: Any, build: Callable[[], Any]) -> Any:
    """The async client of the running loop made for ``source`` (built once per loop)."""
    loop = asyncio.get_running_loop()
    clients = _PER_LOOP.get(loop)
    if clients is None:
        clients = _PER_LOOP[loop] = {}
    entry = clients.get(id(source))
    if entry is None or entry[0] is not source:
        entry = clients[id(source)] = (source, build())
    return entry[1]


def default_client() -> Any:
    """The default async client of the running loop (see ``rom.util.get_async_connection``)."""
    conn = util_module().CONNECTION
    return per_loop(conn, lambda: async_client_for(conn))


def aconnect(obj: Any) -> Any:
    """The asyncio client for a model class or entity (``_aconn``, else built per loop)."""
    model = type(obj) if isinstance(obj, MODELS['Model']) else obj
    own = getattr(model, '_aconn', None)
    if own is not None:
        return own
    if hasattr(model, '_conn'):
        conn = model._conn
    elif hasattr(model, 'CONN'):
        conn = model.CONN
    else:
        return util_module().get_async_connection()
    return per_loop(conn, lambda: async_client_for(conn))


def client_for_given(conn: Any) -> Any:
    """The async client for a client the caller gave (a blocking one: its async twin)."""
    if is_async_client(conn):
        return conn
    return per_loop(conn, lambda: async_client_for(conn))


async def aclose_loop_clients() -> None:
    """Close the async clients rom built for the running event loop (before it closes)."""
    clients = _PER_LOOP.pop(asyncio.get_running_loop(), {})
    for _, client in clients.values():
        await client.aclose() if hasattr(client, 'aclose') else await client.close()
        pool = getattr(client, 'connection_pool', None)
        if pool is not None:  # a client given its pool does not close the pool itself
            await pool.disconnect()
