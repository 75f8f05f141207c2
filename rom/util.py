"""Connections, the session, locks, maintenance jobs and helpers (the rom 1.1.2 ``rom.util``).

This module is the single home of the user-patchable connection state: assign
``rom.util.CONNECTION``, call ``set_connection_settings(...)`` or monkey-patch
``rom.util.get_connection`` at any time; rom looks them up here on every call. The async
API's client follows ``CONNECTION`` (``get_async_connection()``, one per event loop).
"""
from __future__ import annotations

import os
from typing import Any

import redis

from ._cluster import PendingClusterClient, cluster_requested
from ._helpers import (ClassProperty, _bigint_to_float, _encode_unique_constraint, _epoch,
                       _epochd, _prefix_score, _random_hex, _to_score, dt2ts, t2ts, ts2dt, ts2t)
from ._keygen import (CASE_INSENSITIVE, FULL_TEXT, IDENTITY, IDENTITY_CI, IDENTITY_STRING,
                      IDENTITY_STRING_CI, SIMPLE, SIMPLE_CI, STRING_INDEX_KEYGENS,
                      STRING_INDEX_KEYGENS_STR, STRING_SORT_KEYGENS, STRING_SORT_KEYGENS_STR,
                      _boolean_keygen, _many_to_one_keygen, _numeric_keygen, _string_keygen)
from ._lock import EntityLock, Lock
from ._maintenance import (_get_row_ids, clean_old_index, clean_unsafe_cols, refresh_all_indexes,
                           refresh_indices, show_progress)
from ._registry import MODELS
from ._scripts import NO_SCRIPT_MESSAGES, _script_load
from ._session import Session, session

__all__ = [
    'CASE_INSENSITIVE', 'CONNECTION', 'ClassProperty', 'EntityLock', 'FULL_TEXT', 'IDENTITY',
    'IDENTITY_CI', 'IDENTITY_STRING', 'IDENTITY_STRING_CI', 'Lock', 'NO_SCRIPT_MESSAGES',
    'NULL_SESSION', 'REDIS_URI', 'SIMPLE', 'SIMPLE_CI', 'STRING_INDEX_KEYGENS',
    'STRING_INDEX_KEYGENS_STR', 'STRING_SORT_KEYGENS', 'STRING_SORT_KEYGENS_STR', 'Session',
    'clean_old_index', 'clean_unsafe_cols', 'get_connection', 'refresh_all_indexes',
    'refresh_indices', 'session', 'set_connection_settings', 'show_progress',
    'use_null_session', 'use_rom_session',
]

#: the default server, from the environment variable ``ROM_REDIS_URI``
REDIS_URI: str = os.environ.get('ROM_REDIS_URI', 'redis://localhost:6379/0')
#: ``ROM_REDIS_CLUSTER=1`` in the environment: ``ROM_REDIS_URI`` names a node of a Redis Cluster
REDIS_CLUSTER: bool = cluster_requested(os.environ.get('ROM_REDIS_CLUSTER'))
#: the default client (connects lazily; reassign it to redirect every model without ``_conn``);
#: with ``REDIS_CLUSTER`` a placeholder that ``get_connection()`` turns into a ``RedisCluster``
CONNECTION: Any = (PendingClusterClient(REDIS_URI) if REDIS_CLUSTER
                   else redis.Redis.from_url(REDIS_URI))

# public beyond rom 1.1.2's ``__all__`` (which stays as it was): get_async_connection,
# aclose_connections

#: when True, sessions track nothing (``session.null_session`` may override it per thread)
NULL_SESSION: bool = False


def set_connection_settings(*args: Any, **kwargs: Any) -> None:
    """Replace ``CONNECTION`` with ``redis.Redis(*args, **kwargs)``.

    The async API follows: ``get_async_connection()`` builds, once per event loop, a
    ``redis.asyncio`` client with the same settings.
    """
    global CONNECTION
    CONNECTION = redis.Redis(*args, **kwargs)


async def aclose_connections() -> None:
    """Close the ``redis.asyncio`` clients rom built for the running event loop.

    Call it before the loop ends (an application's shutdown hook): a client belongs to the
    loop it was built in. Clients named by a model's ``_aconn`` are the application's own
    and are left open.
    """
    from ._aconnect import aclose_loop_clients
    await aclose_loop_clients()


def get_async_connection() -> Any:
    """The default ``redis.asyncio`` client of the running event loop; may be monkey-patched.

    Models without ``_aconn``, ``_conn`` or ``CONN`` use it in async code. It is built once
    per event loop (an asyncio client belongs to one loop) and closed by
    ``rom._aconnect.aclose_loop_clients()``. It goes where ``CONNECTION`` goes: the server,
    database, credentials and ``decode_responses`` of ``CONNECTION`` (set by
    ``set_connection_settings(...)``, ``ROM_REDIS_URI`` or assigned), a
    ``redis.asyncio.cluster.RedisCluster`` with ``ROM_REDIS_CLUSTER`` or a cluster client.
    Its pool holds as many connections as the blocking client's; a task wanting one more
    waits for a free one. It never calls ``get_connection()`` nor does any I/O, so it never
    blocks the event loop. Must be called inside a running event loop.
    """
    from ._aconnect import default_client
    return default_client()


def get_connection() -> Any:
    """The current default client (``CONNECTION``); may be monkey-patched."""
    global CONNECTION
    if isinstance(CONNECTION, PendingClusterClient):
        CONNECTION = CONNECTION.connect()
    return CONNECTION


def _connect(obj: Any) -> Any:
    """The client for a model, an entity or anything else (``_conn``, ``CONN``, default)."""
    if isinstance(obj, MODELS['Model']):
        obj = type(obj)
    if hasattr(obj, '_conn'):
        return obj._conn
    if hasattr(obj, 'CONN'):
        return obj.CONN
    return get_connection()


def use_null_session() -> None:
    """Make every thread without an override use the null session (track nothing)."""
    global NULL_SESSION
    NULL_SESSION = True


def use_rom_session() -> None:
    """Make every thread without an override use the normal session."""
    global NULL_SESSION
    NULL_SESSION = False


_REEXPORTED = (ClassProperty, _bigint_to_float, _encode_unique_constraint, _epoch, _epochd,
               _prefix_score, _random_hex, _to_score, dt2ts, t2ts, ts2dt, ts2t, _boolean_keygen,
               _many_to_one_keygen, _numeric_keygen, _string_keygen, _get_row_ids,
               _script_load, Session, session)
