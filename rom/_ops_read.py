"""Reads as operations (``rom._io``): ``Model.get``, ``get_by``, ``refresh``.

Each ``op_*`` yields its Redis work and interprets the replies; ``Model.get(...)`` is
``run(op_get(...))`` and ``await Model.aget(...)`` is ``await arun(op_get(...))``. The
identity map (``rom._session.session``) is consulted first, as everywhere.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

from ._bounds import NUMERIC_TYPES, _bound
from ._coltypes import IndexOnly
from ._helpers import _encode_unique_constraint, _to_score, short_repr
from ._io import Client, ClientOf, Command, Operation, Script
from ._loader import row_builder
from ._registry import MODELS, is_entity
from ._relations import LOADED
from ._session import session
from .exceptions import InvalidOperation, ORMError, QueryError

__all__ = ['op_get', 'op_fetch', 'op_get_by', 'op_refresh', 'op_refresh_objects',
           'range_step', 'unique_lookups']

_IDS = (list, tuple, set, frozenset)


def op_get(cls: Any, ids: Any) -> Operation[Any]:
    """One entity (or None) for one id; a list of the existing entities for a list of ids."""
    if cls.__dict__.get('_shard_models'):  # sharding hook: a sharded model's row is in a shard
        from ._shard import op_check_metadata, shard_of
        if not isinstance(ids, _IDS):
            yield from op_check_metadata(cls)
            return (yield from op_get(shard_of(cls, int(ids)), ids))
    if not isinstance(ids, _IDS):
        if cls._ttl is not None:  # (one call: the row and whether it has expired)
            return (yield from op_fetch(cls, [ids]))[0]
        pk = '%s:%s' % (cls._namespace, int(ids))
        obj = session.get(pk)
        if obj is None:
            row = yield Command(cls, ('HGETALL', pk))
            if row:
                obj = cls._from_stored(row)
        return obj
    return [obj for obj in (yield from op_fetch(cls, ids)) if obj is not None]


def op_fetch(cls: Any, ids: Iterable[Any], track: bool = True) -> Operation[List[Any]]:
    """Per id: the session's entity, else one built from its row (None when missing).

    Rows come from one HGETALL or one atomic script call. ``track=False`` (queries)
    leaves the entities built here out of the session and forgets the ones it held only
    in ``wknown``.
    """
    if cls.__dict__.get('_shard_models'):  # sharding hook: read shard by shard
        from ._shard import op_public_fetch
        return (yield from op_public_fetch(cls, ids, track))
    ns = cls._namespace
    pks = ['%s:%s' % (ns, int(i)) for i in ids]
    result: List[Any] = [session.get(pk) for pk in pks]
    if not track:  # a query: what the session held only weakly is forgotten (spec §3.3)
        known, wknown = session.known, session.wknown
        for pk, obj in zip(pks, result):
            if obj is not None and known.get(pk) is not obj:
                wknown.pop(pk, None)
    missing = [position for position, obj in enumerate(result) if obj is None]
    if cls._ttl is not None:  # expired entities are gone: rows and expiry in one call
        from ._expiry import op_fetch_visible
        fields = cls._row_fields((yield ClientOf(cls))) if missing else [0, 0]
        return (yield from op_fetch_visible(cls, pks, result, missing, track, fields))
    if len(missing) == 1:
        row = yield Command(cls, ('HGETALL', pks[missing[0]]))
        if row:
            result[missing[0]] = cls._from_stored(row, None, track)
    elif missing:
        conn = yield ClientOf(cls)
        fields = cls._row_fields(conn)
        # one atomic call for every row the session lacks
        rows = yield Script(Client(conn), 'get_rows', [pks[position] for position in missing],
                            fields)
        if fields[0] == 0:
            for position, row in zip(missing, rows):
                if row:  # [] for a missing row
                    result[position] = cls._from_script_row(row, False, track)
            return result
        # the compiled builder, inlined: this loop is most of the time of a large get
        build = row_builder(cls)
        add = session._add_loaded
        pkey = cls._pkey
        for position, row in zip(missing, rows):
            if not row:  # None for a missing row
                continue
            try:
                obj = build(cls, row)
            except (ValueError, TypeError, ArithmeticError, OSError):
                obj = None
            if obj is None:  # defaults, checks or a bad value: the full path
                obj = cls._from_values(row, track)
            elif track:
                add(obj, '%s:%s' % (ns, obj._data[pkey]))
            result[position] = obj
    return result


def range_step(via: Any, cls: Any, attr: str, lo: Any, hi: Any, limit: Any,
               fields: List[Any]) -> Script:
    """The ``get_range.lua`` step: ids of index ``attr`` scored ``lo..hi`` and their rows
    (reply for ``Model._entities_from_reply``)."""
    key = '%s:%s:idx' % (cls._namespace, attr)
    return Script(via, 'get_range', (), [key, cls._namespace, lo, hi, limit[0] if limit else 0,
                                         limit[1] if limit else ''] + fields, key)


def op_get_by(cls: Any, kwargs: Dict[str, Any]) -> Operation[Any]:
    """Look entities up by one unique or indexed column (value, list or (lo, hi) range)."""
    kwargs = dict(kwargs)
    limit = kwargs.pop('_limit', None)
    numeric = kwargs.pop('_numeric', False)
    if limit:
        if len(limit) != 2:
            raise QueryError('_limit needs both an offset and a count')
        if not all(isinstance(x, int) for x in limit):
            raise QueryError('_limit offset and count must both be integers')
    group = tuple(sorted(kwargs))
    if len(group) > 1 and group in (cls._cunique or ()):
        return (yield from _op_get_by_group(cls, group, kwargs))
    if len(kwargs) != 1:
        raise QueryError('get_by() takes exactly one attribute lookup, got %i' % (len(kwargs),))
    (attr, value), = kwargs.items()
    plain = attr.partition(':')[0]
    if isinstance(value, tuple) and len(value) != 2:
        raise QueryError('%s.%s: a range needs exactly two endpoints'
                         % (cls._namespace, attr))
    sharded = cls.__dict__.get('_shard_models')  # sharding hook: claims, scattered queries
    if attr in cls._unique and not (numeric and plain in cls._index):
        if isinstance(value, tuple):
            raise QueryError('%s.%s: a unique index cannot be queried by range'
                             % (cls._namespace, attr))
        if sharded:
            from ._shard import op_sharded_get_by
            return (yield from op_sharded_get_by(cls, attr, value, None))
        return (yield from _op_get_by_unique(cls, attr, value))
    if plain not in cls._index:
        raise QueryError('%s.%s has no index to look up by' % (cls._namespace, plain))
    if isinstance(value, NUMERIC_TYPES) and not isinstance(value, bool):
        value = (value, value)
    if sharded:
        from ._shard import op_sharded_get_by
        return (yield from op_sharded_get_by(cls, attr, value, limit or ()))
    if isinstance(value, tuple) and cls._ttl is None:  # (with _ttl: _limit skips expired)
        # endpoints as score texts; QueryError for NaN and text that is not a number
        lo, hi = (_to_score(_bound(cls, attr, end, 'get_by')) if end is not None else inf
                  for end, inf in zip(value, ('-inf', 'inf')))
        # one round trip: the ids in the range and their rows (identity map still wins)
        conn = yield ClientOf(cls)
        fields = cls._row_fields(conn)
        reply = yield range_step(Client(conn), cls, attr, lo, hi, limit, fields)
        return cls._entities_from_reply(reply, fields[0] != 0)
    from ._ops_query import op_all
    query = cls.query.filter(**{attr: value})
    if limit:
        query = query.limit(*limit)
    return (yield from op_all(query))


def unique_lookups(cls: Any, attr: str, values: List[Any]) -> List[Any]:
    """The texts the unique index of ``attr`` holds for ``values`` (QueryError for values
    it cannot hold)."""
    col = cls._columns[attr]
    lookups: List[Any] = []
    for item in values:
        if isinstance(col, IndexOnly):
            lookups.append(item.decode('latin-1') if isinstance(item, bytes) else str(item))
            continue
        try:
            text = col._to_redis(item)
            if isinstance(text, (int, float)) and not isinstance(text, bool):
                text = repr(text)  # what redis-py sends for a number (rom 1.1.2)
            if not isinstance(text, (str, bytes)):
                raise TypeError('not a value the unique index holds')
            lookups.append(text)
        except (TypeError, ValueError, AttributeError, OverflowError) as err:
            raise QueryError('get_by(): %s cannot be looked up in the unique index of %s.%s '
                             '(%s)' % (short_repr(item), cls._namespace, attr, err)) from err
    return lookups


def group_lookup(cls: Any, group: Tuple[str, ...], values: Dict[str, Any]) -> Optional[str]:
    """The field of ``unique_together`` group ``group``'s unique index for ``values`` (None
    when a value is None: such rows claim nothing); QueryError for values it cannot hold."""
    texts = []
    for attr in group:
        value = values[attr]
        if isinstance(value, (list, tuple)):
            raise QueryError('get_by() on the unique_together columns %s takes one value per '
                             'column, got %s for %s' % (', '.join(group), short_repr(value), attr))
        if value is None:
            return None
        try:
            texts.append(cls._columns[attr]._to_redis(value))
        except (TypeError, ValueError, AttributeError, OverflowError) as err:
            raise QueryError('get_by(): %s cannot be looked up in the unique index of %s.%s '
                             '(%s)' % (short_repr(value), cls._namespace, attr, err)) from err
    return _encode_unique_constraint(texts)


def _op_get_by_group(cls: Any, group: Tuple[str, ...], values: Dict[str, Any]
                     ) -> Operation[Any]:
    """``get_by`` on every column of a ``unique_together`` group: the entity or None."""
    if cls.__dict__.get('_shard_models'):  # sharding hook: the group's global claims
        from ._shard import op_sharded_get_by
        return (yield from op_sharded_get_by(cls, group, values, None))
    field = group_lookup(cls, group, values)
    if field is None:
        return None
    return (yield from _op_get_by_unique(cls, ':'.join(group), field, [field]))


def _op_get_by_unique(cls: Any, attr: str, value: Any,
                      lookups: Optional[List[Any]] = None) -> Operation[Any]:
    if lookups is None:
        lookups = unique_lookups(cls, attr, value if isinstance(value, list) else [value])
    if not lookups:
        return []
    # one round trip: the unique hash lookups and the rows (identity map still wins)
    conn = yield ClientOf(cls)
    fields = cls._row_fields(conn)
    args = ['%s:%s:uidx' % (cls._namespace, attr), cls._namespace] + fields + lookups
    if cls._ttl is None:
        reply = yield Script(Client(conn), 'get_unique', (), args, args[0])
    else:  # with the expiry state of the ids found, in one transaction
        from ._expiry import op_unique_visible
        reply = yield from op_unique_visible(cls, args, lookups)
    found = cls._entities_from_reply(reply, fields[0] != 0)
    if isinstance(value, list):
        return found
    return found[0] if found else None


def _decoded(row: Dict[Any, Any]) -> Dict[str, Any]:
    if type(next(iter(row), None)) is not bytes:
        return row
    return {k.decode('utf-8'): v.decode('utf-8') for k, v in row.items()}


def op_refresh(entity: Any, force: bool = False) -> Operation[None]:
    """Reload the entity from Redis, discarding local changes (``force`` for modified ones)."""
    if entity._deleted:
        return
    key = entity._session_key  # (a pending id is not taken for a message)
    if entity._modified and not force:
        raise InvalidOperation('%s: a modified entity can only be refreshed with force=True, '
                               'which discards the changes' % (key,))
    if entity._new:
        raise InvalidOperation('%s: a new entity cannot be refreshed' % (key,))
    row = _decoded((yield Command(entity, ('HGETALL', entity._pk))))
    if type(entity)._ttl is not None:
        from ._expiry import op_visible
        if not (yield from op_visible(type(entity), [entity]))[0]:
            row = {}  # an expired entity reads as a deleted one
    entity.__dict__.pop(LOADED, None)  # relations loaded by aload()/prefetch() are reread
    entity.__init__(_loading=True, **row)


def op_refresh_objects(objects: Iterable[Any], force: Any = None,
                       own_refresh: bool = False) -> Operation[None]:
    """``session.refresh(*objects)``: reload entities (nested lists/tuples allowed); new
    ones are tracked; ``InvalidOperation`` for modified ones unless ``force``.

    ``own_refresh`` (the blocking ``session.refresh``): an entity whose class overrides
    ``refresh`` is reloaded by calling it, as rom 1.1.2's session does.
    """
    for obj in objects:
        if isinstance(obj, (list, tuple)):
            yield from op_refresh_objects(obj, force, own_refresh)
        elif not is_entity(obj):
            raise ORMError('cannot refresh %r: only rom model instances can be refreshed'
                           % (obj,))
        elif obj._new:
            session.add(obj)
        elif own_refresh and type(obj).refresh is not MODELS['Model'].refresh:
            obj.refresh(force=force)
        else:
            yield from op_refresh(obj, bool(force))
