"""Call-time access to the user-patchable connection state that lives in ``rom.util``.

Users reassign ``rom.util.CONNECTION`` and monkey-patch ``rom.util.get_connection`` /
``rom.util._connect``; every internal module asks this module, which looks the names up in
``rom.util`` on each call, so such patches take effect at once.
"""
from __future__ import annotations

import sys
from typing import Any, Union


def util_module() -> Any:
    """The ``rom.util`` module (imported by the package before any call can happen)."""
    return sys.modules['rom.util']


def connect(obj: Any) -> Any:
    """The Redis client for a model class or entity (``rom.util._connect`` at call time)."""
    return sys.modules['rom.util']._connect(obj)


def decodes_responses(conn: Any) -> bool:
    """True when the client already returns ``str`` replies (``decode_responses=True``)."""
    pool = getattr(conn, 'connection_pool', None)
    if pool is None:  # redis.cluster.RedisCluster: its nodes' connection settings
        pool = getattr(conn, 'nodes_manager', None)
    kwargs = getattr(pool, 'connection_kwargs', None)
    return isinstance(kwargs, dict) and bool(kwargs.get('decode_responses'))


def to_text(value: Union[str, bytes]) -> str:
    """Decode a reply item as UTF-8 when it is bytes."""
    return value.decode('utf-8') if isinstance(value, bytes) else value
