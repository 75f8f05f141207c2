"""Loading relations as operations: ``entity.aload(name)`` and ``Query.prefetch(...)``.

A ``ManyToOne``/``OneToOne`` reference read from Redis holds the referenced id until it is
first read; a ``OneToMany`` is a lookup on the other model's reference column. Reading one
of those in sync code loads it there and then; in async code that would block the event
loop, so it is loaded ahead: :func:`op_load` for one entity, :func:`op_prefetch` for a page
of query results (one round trip per relation, whatever the number of entities).
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

from ._helpers import _to_score
from ._io import Batch, Client, ClientOf, Operation
from ._ops_read import op_fetch, op_get, op_get_by, range_step
from ._relations import LOADED, ManyToOne, OneToMany, _Unresolved
from .exceptions import QueryError

__all__ = ['relation_column', 'op_load', 'op_prefetch']


def relation_column(model: Any, name: str, what: str) -> Any:
    """The ``ManyToOne``/``OneToOne``/``OneToMany`` column ``name`` of ``model``."""
    column = model._columns.get(name)
    if not isinstance(column, (ManyToOne, OneToMany)):
        raise QueryError('%s: %s.%s is not a ManyToOne, OneToOne or OneToMany relation'
                         % (what, model.__name__, name))
    return column


def _loaded(entity: Any) -> Dict[str, Any]:
    loaded = entity.__dict__.get(LOADED)
    if loaded is None:
        loaded = entity.__dict__[LOADED] = {}
    return loaded


def op_load(entity: Any, name: str) -> Operation[Any]:
    """Load relation ``name`` of ``entity`` (reading it afterwards does no I/O); returns
    its value: the referenced entity or None, or the list of referring entities."""
    model = type(entity)
    column = relation_column(model, name, 'aload()')
    if isinstance(column, OneToMany):
        if entity._id_pending:  # not saved yet: nothing can refer to it
            found: Any = []
        else:
            target = column._target(model._namespace)
            found = yield from op_get_by(target, {
                column.back_column(model._namespace): entity._data[model._pkey]})
        _loaded(entity)[name] = found
        return found
    value = entity._data.get(name)
    if isinstance(value, _Unresolved):
        value = yield from op_get(column._target(model._namespace), value.id)
        entity._data[name] = value
    return value


def op_prefetch(entities: List[Any], names: Sequence[str]) -> Operation[None]:
    """Load relations ``names`` of ``entities`` (all of one model)."""
    model = type(entities[0])
    for name in names:
        column = relation_column(model, name, 'prefetch()')
        target = column._target(model._namespace)
        if isinstance(column, OneToMany):
            yield from _op_referring(entities, name, target,
                                     column.back_column(model._namespace))
            continue
        waiting = [(e, e._data.get(name)) for e in entities
                   if isinstance(e._data.get(name), _Unresolved)]
        ids = list(dict.fromkeys(ref.id for _, ref in waiting))
        if not ids:
            continue
        found = dict(zip(ids, (yield from op_fetch(target, ids))))
        for entity, ref in waiting:
            entity._data[name] = found[ref.id]


def _op_referring(entities: List[Any], name: str, target: Any, column: str
                  ) -> Operation[None]:
    """OneToMany ``name``: per entity, what ``target.get_by(column=id)`` returns."""
    parents = [e for e in entities if not e._id_pending]
    for entity in entities:
        if entity._id_pending:
            _loaded(entity)[name] = []
    if not parents:
        return
    pkey = type(parents[0])._pkey
    if target._ttl is not None or column in target._unique:  # (rare: one lookup each)
        for entity in parents:
            _loaded(entity)[name] = yield from op_get_by(target, {column: entity._data[pkey]})
        return
    conn = yield ClientOf(target)
    fields = target._row_fields(conn)
    steps = []
    for entity in parents:
        score = _to_score(int(entity._data[pkey]))
        steps.append(range_step(target, target, column, score, score, None, fields))
    replies = yield Batch(Client(conn), tuple(steps), transaction=False)
    for entity, reply in zip(parents, replies):
        _loaded(entity)[name] = target._entities_from_reply(reply, fields[0] != 0)
