"""Model class creation: the metaclass that checks declarations and records model facts.

It fills the class attributes other modules read (``_namespace``, ``_columns``, ``_pkey``,
``_index``, ``_unique``, ``_cunique``, ``_prefix``, ``_suffix``, ``_geo``, ``_gindex``,
``_no_fk``, ``_cluster_tag``) and registers the model in ``MODELS`` / ``MODELS_REFERENCED``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Set, Tuple

from ._cluster import check_cluster_relations, cluster_namespace
from ._coltypes import Column, PrimaryKey
from ._limits import MAX_IDS_PER_BLOCK, size_problem
from ._records import GeoIndex
from ._registry import MODELS, MODELS_REFERENCED, EntityMeta
from ._relations import ManyToOne, OneToMany, UnsafeColumn
from ._search import GeneralIndex
from ._shard import check_relations as check_shard_relations
from ._shard import declared_shards, setup_shards, sharded_namespace
from ._ttl import check_model
from .exceptions import ColumnError, ORMError

_CLASS_FLAGS = ('_required', '_index', '_prefix', '_suffix', '_unique')


class _ModelMetaclass(EntityMeta):
    """Metaclass of ``rom.Model``: validates a model declaration and registers the model."""

    def __new__(mcs, name: str, bases: Tuple[type, ...], body: Dict[str, Any]) -> Any:
        body = dict(body)
        is_root = name == 'Model' and 'Model' not in MODELS and not any(
            isinstance(b, _ModelMetaclass) for b in bases)
        namespace = body.pop('_namespace', None)
        if namespace and not isinstance(namespace, str):
            raise ORMError('%s._namespace must be a string, not %s'
                           % (name, type(namespace).__name__))
        wants_cluster = body.get('_cluster', next(
            (getattr(b, '_cluster') for b in bases if getattr(b, '_cluster', False)), False))
        # -- sharding hook (rom._shard): a sharded model's public namespace is '{<base>}'
        shards = 0 if is_root else declared_shards(name, body, bases)
        if shards:
            namespace, wants_cluster = sharded_namespace(name, namespace), True
        # -- end sharding hook
        namespace, cluster_tag = cluster_namespace(name, namespace,
                                                   False if is_root else wants_cluster)
        block = body.get('_ids_per_block')
        problem = None if block is None else size_problem(block, MAX_IDS_PER_BLOCK)
        if problem:
            raise ORMError('%s._ids_per_block (None: adaptive) %s' % (name, problem))
        if not is_root and (name in MODELS or namespace in MODELS):
            raise ORMError('cannot define model %s (namespace %r): a model with that name or '
                           'namespace already exists' % (name, namespace))

        merged: Dict[str, Any] = OrderedDict()
        for base in reversed(bases):
            base_columns = getattr(base, '_columns', None)
            if base_columns and not getattr(base, '_is_root_model', False):
                merged.update(base_columns)
        merged.update(body)
        if not any(isinstance(v, PrimaryKey) for v in merged.values()):
            if 'id' in merged:
                raise ColumnError('%s: an attribute named id is only allowed when the model '
                                  'declares an explicit PrimaryKey()' % (name,))
            merged['id'] = PrimaryKey()

        columns: Dict[str, Any] = OrderedDict()
        flags: Dict[str, Set[str]] = {flag: set() for flag in _CLASS_FLAGS}
        pkey = None
        refs_by_target: Dict[str, List[str]] = {}
        for attr, value in merged.items():
            if isinstance(value, Column):
                if isinstance(value, PrimaryKey):
                    if pkey is not None:
                        raise ColumnError('%s: only one primary key is allowed (%s and %s)'
                                          % (name, pkey, attr))
                    pkey = attr
                if value._attr is None:
                    value._attr = attr
                columns[attr] = value
                for flag in _CLASS_FLAGS:
                    if getattr(value, flag):
                        flags[flag].add(attr)
                if isinstance(value, OneToMany) and not value._column:
                    target = MODELS.get(value._ftable)
                    if target is not None and len([
                            c for c in target._columns.values()
                            if isinstance(c, ManyToOne) and c._ftable == name]) > 1:
                        raise ColumnError('%s.%s: OneToMany needs the column argument (%s has '
                                          'several references to %s)'
                                          % (name, attr, value._ftable, name))
                if isinstance(value, ManyToOne):
                    refs_by_target.setdefault(value._ftable, []).append(attr)
            elif isinstance(value, UnsafeColumn):
                value._set_name(attr)
                columns[attr] = value

        for target_name, attrs in refs_by_target.items():
            target = MODELS.get(target_name)
            if target is None or len(attrs) < 2:
                continue
            for tattr, tcol in target._columns.items():
                if isinstance(tcol, OneToMany) and tcol._ftable == name and not tcol._column:
                    raise ColumnError('%s.%s: OneToMany needs the column argument (%s has several '
                                      'references to %s)' % (target_name, tattr, name, target_name))

        geo = _geo_indexes(name, body.get('geo_index'))
        cunique = _unique_together(name, body.get('unique_together'), columns, pkey)

        merged['_namespace'] = namespace
        merged['_columns'] = columns
        merged['_pkey'] = pkey
        for flag in _CLASS_FLAGS:
            merged[flag] = flags[flag]
        merged['_cunique'] = cunique
        merged['_geo'] = geo
        merged['_gindex'] = GeneralIndex(namespace, cluster_tag is not None)
        merged['_no_fk'] = not any(isinstance(c, ManyToOne) for c in columns.values())
        wants_deferred = merged.get('_defer_ids', any(getattr(b, '_defer_ids', False)
                                                      for b in bases))
        merged['_defer_id'] = bool(wants_deferred) and _can_defer_id(columns, pkey, geo)
        merged['_is_root_model'] = is_root
        merged['_cluster_tag'] = cluster_tag
        cls = super().__new__(mcs, name, bases, merged)
        if not is_root:
            check_cluster_relations(cls, MODELS, MODELS_REFERENCED)
            check_shard_relations(cls)  # sharding hook: a referenced sharded model
        check_model(cls)  # expiry declarations (_ttl, _ttl_renew)
        for attr, col in columns.items():
            if isinstance(col, ManyToOne):
                MODELS_REFERENCED.setdefault(col._ftable, []).append(
                    (namespace, attr, col._on_delete))
        MODELS[namespace] = MODELS[name] = cls
        if shards:  # sharding hook: build the hidden shard classes
            setup_shards(cls, shards)
        return cls


def _can_defer_id(columns: Dict[str, Any], pkey: Any, geo: Dict[str, Any]) -> bool:
    """Whether nothing but rom itself can read a new entity's id before its first save.

    Used for models that opt in with ``_defer_ids = True``: their new entities take their id
    (from the process's block of ids, ``rom._ids``) when it is first read or just before the
    first save, so an entity that is never read nor saved consumes no id. Models that keep
    the default take the id at construction, as rom 1.1.2 does.

    Geo callbacks and two-argument keygens see the whole entity data (the id included), and
    an indexed primary key needs its id in the index; such models allocate ids at creation.
    """
    if geo or columns[pkey]._index:
        return False
    for col in columns.values():
        keygen = getattr(col, '_keygen', None)
        if keygen is not None and not getattr(keygen, '_rom_own_column_only', False):
            return False
    return True


def _geo_indexes(name: str, declared: Any) -> Dict[str, Any]:
    if declared is None:
        return {}
    if not isinstance(declared, list) or not all(isinstance(g, GeoIndex) for g in declared):
        raise ORMError('%s.geo_index must be a list of rom.GeoIndex(name, callback) items'
                       % (name,))
    geo: Dict[str, Any] = {}
    for item in declared:
        if item.name in geo:
            raise ColumnError('%s: duplicate geo index name %r' % (name, item.name))
        geo[item.name] = item
    return geo


def _unique_together(name: str, declared: Any, columns: Dict[str, Any],
                     pkey: Any) -> Set[Tuple[str, ...]]:
    if not declared:
        return set()
    groups = [declared] if isinstance(declared[0], str) else list(declared)
    seen: Dict[Tuple[str, ...], Any] = {}
    for group in groups:
        key = tuple(sorted(set(group)))
        if len(key) == 1:
            raise ColumnError('%s.unique_together group %r has one column: use unique=True on '
                              'that column instead' % (name, group))
        if key in seen:
            raise ColumnError('%s.unique_together groups %r and %r are the same'
                              % (name, seen[key], group))
        for col in key:
            if col not in columns:
                raise ColumnError('%s.unique_together group %r names an unknown column %r'
                                  % (name, group, col))
            if col == pkey:
                raise ColumnError('%s.unique_together group %r: the primary key cannot take part'
                                  % (name, group))
        seen[key] = group
    return set(seen)
