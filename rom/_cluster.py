"""Redis Cluster support: cluster-mode models (one hash tag per model) and client detection.

A model declared with ``_cluster = True`` keeps every key it uses in one hash slot: its
namespace carries a Redis hash tag (``{...}``) in its first ``:``-separated segment, and
every key rom derives for it (rows, indexes, unique hashes, the id counter, temporary query
keys, cached results, ``EntityLock`` keys) starts with that namespace, or with its first
segment. Without ``_namespace`` the namespace of a cluster model is ``'{<ClassName>}'``, or
``'{<tag>}:<ClassName>'`` with ``_cluster = '<tag>'`` (handy for a group of related models).
Models without ``_cluster`` keep rom 1.1.2's keys exactly.

A cluster model may be related (``ManyToOne``/``OneToMany``) to any cluster model: with the
same hash tag an operation across them is one script call, with another tag it is one
atomic call per slot in a crash-safe order (``rom._cross_slot``). A relation between a
cluster model and a plain one is refused (checked when the second model is declared).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import redis

from .exceptions import ORMError

try:  # redis-py >= 4.1
    from redis.cluster import ClusterPipeline, RedisCluster
except ImportError:  # pragma: no cover - rom requires redis >= 4.5.5
    ClusterPipeline = RedisCluster = ()  # type: ignore[assignment,misc]

__all__ = ['cluster_namespace', 'hash_tag', 'is_cluster_client', 'is_cluster_pipeline',
           'check_cluster_relations', 'route_keys', 'temp_key_prefix']


def hash_tag(key: str) -> Optional[str]:
    """The part of ``key`` Redis Cluster hashes when it is not the whole key, else None.

    Redis's rule: the text between the first ``{`` and the first ``}`` after it, when that
    text is not empty.
    """
    start = key.find('{')
    if start < 0:
        return None
    end = key.find('}', start + 1)
    if end < 0 or end == start + 1:
        return None
    return key[start + 1:end]


def cluster_namespace(name: str, declared: Optional[str], cluster: Any
                      ) -> Tuple[str, Optional[str]]:
    """``(namespace, tag)`` for a model declaration; tag is None for a non-cluster model.

    Raises ``ORMError`` when a cluster model's namespace has no usable hash tag in its first
    segment (some keys, e.g. prefix-scan scratch keys, start with the first segment only).
    """
    if not cluster:
        return declared or name, None
    if isinstance(cluster, str) and not declared:
        if '{' in cluster or '}' in cluster:
            raise ORMError('%s._cluster: a tag name without braces, got %r' % (name, cluster))
        declared = '{%s}:%s' % (cluster, name)
    elif cluster is not True and not isinstance(cluster, str):
        raise ORMError('%s._cluster must be True or a hash tag name (str), not %r'
                       % (name, cluster))
    namespace = declared or '{%s}' % (name,)
    first = namespace.partition(':')[0]
    tag = hash_tag(first)
    if tag is None or hash_tag(namespace) != tag:
        raise ORMError(
            '%s: a model with _cluster = True needs a Redis hash tag in the first segment of '
            'its namespace (e.g. _namespace = "{app}:%s" or no _namespace, which gives '
            '"{%s}"), so that all its keys share one hash slot; got %r'
            % (name, name, name, namespace))
    return namespace, tag


def _tag_of(model: Any) -> Optional[str]:
    return getattr(model, '_cluster_tag', None)


def check_cluster_relations(model: Any, models: Any, referenced: Any) -> None:
    """Refuse relations between a cluster model and a model that is not in cluster mode.

    ``models`` is the registry, ``referenced`` maps a target name to its
    ``(namespace, attr, on_delete)`` references. Checks both directions for ``model``.
    Cluster models with different hash tags may be related (``rom._cross_slot``).
    """
    pairs = []
    for attr, col in model._columns.items():
        target = models.get(getattr(col, '_ftable', None) or '')
        if target is not None and target is not model:
            pairs.append((model, attr, target))
    for key in {model.__name__, model._namespace}:
        for namespace, attr, _ in referenced.get(key, ()):
            source = models.get(namespace)
            if source is not None and source is not model:
                pairs.append((source, attr, model))
    for source, attr, target in pairs:
        a, b = _tag_of(source), _tag_of(target)
        if (a is None) != (b is None):
            raise ORMError(
                '%s.%s relates %s (%s) and %s (%s): a cluster-mode model can only be related '
                'to cluster-mode models (a plain model has no hash tag, so its keys and the '
                'on_delete work across the two could not be placed on a cluster); declare both '
                'with _cluster (any hash tags, e.g. _namespace = "{app}:%s" and "{app}:%s")'
                % (source.__name__, attr, source.__name__, _describe(a), target.__name__,
                   _describe(b), source.__name__, target.__name__))


def _describe(tag: Optional[str]) -> str:
    return 'not in cluster mode' if tag is None else 'hash tag %r' % (tag,)


# rom runs MULTI/EXEC on one slot through ``RedisCluster.pipeline(transaction=True)``, which
# redis-py supports from 6.1.0 on (older versions raise "transaction is deprecated").
CLUSTER_MIN_REDIS_PY = (6, 1, 0)


def cluster_support_error(version: str) -> Optional[str]:
    """Why redis-py ``version`` cannot drive rom on Redis Cluster, or None when it can."""
    parts = []
    for piece in version.split('.')[:3]:
        digits = ''.join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    if tuple(parts) >= CLUSTER_MIN_REDIS_PY:
        return None
    return ('rom on Redis Cluster needs redis-py >= %s (transactions in cluster pipelines); '
            'this is redis-py %s' % ('.'.join(map(str, CLUSTER_MIN_REDIS_PY)), version))


def is_cluster_client(conn: Any) -> bool:
    """True for a ``redis.cluster.RedisCluster`` client or one of its pipelines.

    Raises ``ORMError`` for a cluster client when the installed redis-py is too old to run
    rom's per-slot transactions (see ``CLUSTER_MIN_REDIS_PY``), before anything is sent.
    """
    if not (bool(RedisCluster) and isinstance(conn, RedisCluster)):
        return False
    problem = cluster_support_error(redis.__version__)
    if problem:
        raise ORMError(problem)
    return True


def is_cluster_pipeline(conn: Any) -> bool:
    """True for a ``redis.cluster.ClusterPipeline``."""
    return bool(ClusterPipeline) and isinstance(conn, ClusterPipeline)


def node_name(conn: Any, key: Any) -> str:
    """``'host:port'`` of the master a cluster client sends ``key``'s commands to now."""
    return str(conn.get_node_from_key(key).name)


#: appended to a keyless script's route key: a second key of the slot that never exists
SLOT_GUARD_SUFFIX = '\x00rom-slot-guard'


def route_keys(conn: Any, keys: Sequence[Any], route: Any,
               cluster: Optional[bool] = None) -> Sequence[Any]:
    """Keys to send with a script call: ``keys``, or, when a script that names no key goes
    to a cluster, ``(route, route + SLOT_GUARD_SUFFIX)``.

    The client routes a call by its keys' slot. A keyless script reads and writes keys it
    does not declare, which Redis cannot check while the slot is being moved to another
    node (some keys already there, some not). Two distinct keys of which one never exists
    make Redis refuse the call with ``TRYAGAIN`` during the whole move, on both nodes,
    instead of running it on a partial copy; ``rom._scripts`` retries it. ``cluster``:
    whether ``conn`` is a cluster client, when the caller knows (asyncio clients).
    """
    if not keys and route and (is_cluster_client(conn) if cluster is None else cluster):
        text = route.decode('latin-1') if isinstance(route, bytes) else str(route)
        if hash_tag(text) is None:
            raise ORMError('%r is not a key of a cluster-mode model: on Redis Cluster, declare '
                           'the model with _cluster = True (see the "Running on Redis Cluster" '
                           'guide)' % (text,))
        return (route, text + SLOT_GUARD_SUFFIX)
    return keys


def temp_key_prefix(model_namespace: str, cluster_tag: Optional[str]) -> str:
    """Prefix of a bare temporary key: ``''`` (rom 1.1.2) or ``'<ns>:'`` for cluster models."""
    return model_namespace + ':' if cluster_tag is not None else ''


class PendingClusterClient:
    """``rom.util.CONNECTION`` before first use when ``ROM_REDIS_CLUSTER`` is set.

    A ``RedisCluster`` contacts the cluster when it is built; this placeholder defers that
    from ``import rom`` to the first call of ``rom.util.get_connection()``, which replaces
    ``rom.util.CONNECTION`` with ``redis.cluster.RedisCluster.from_url(url)``.
    """

    def __init__(self, url: str) -> None:
        self.url = url

    def connect(self) -> Any:
        """The real cluster client."""
        return RedisCluster.from_url(self.url)

    def __repr__(self) -> str:
        return '<PendingClusterClient %s (connects on first use)>' % (self.url,)


def cluster_requested(value: Optional[str]) -> bool:
    """Whether an environment value such as ``ROM_REDIS_CLUSTER`` says yes."""
    return (value or '').strip().lower() not in ('', '0', 'false', 'no', 'off')
