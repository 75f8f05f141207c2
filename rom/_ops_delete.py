"""Delete operations (pure core, no client): an entity with on_delete and hooks, and the
session's bulk delete.

``Model.delete`` is ``run(op_delete(...))``, ``Model.adelete`` ``await arun(op_delete(...))``
(``rom._io``); likewise ``Session.delete`` / ``adelete`` with ``op_delete_many``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ._cross_slot import op_delete_across_slots
from ._io import Batch, Client, ClientOf, Operation
from ._on_delete import op_plan_on_delete
from ._write import op_save_entities
from ._registry import MODELS_REFERENCED, SKIP_ON_DELETE
from ._session import session
from ._ttl import StillAlive
from ._write_plan import plan_write
from ._write_script import op_apply_plans, write_step
from .exceptions import ColumnError, ORMError

__all__ = ['op_delete', 'op_delete_many']


def op_delete(entity: Any, kwargs: Dict[str, Any], sweep: bool = True) -> Operation[Any]:
    """Operation: delete ``entity`` (``Model.delete(**kwargs)``: on_delete, hooks).
    ``sweep=False``: the expiry cleanup's own removal (its saves do not sweep again)."""
    if not entity._last.get(entity._pkey):
        raise ColumnError('cannot delete %r: it has never been saved, so there is nothing '
                          'to delete (forget it with session.forget() instead)' % (entity,))
    skip = kwargs.get('skip_on_delete_i_really_mean_it') is SKIP_ON_DELETE
    conn = kwargs.get('_conn')
    # removal by rom._expiry: on_delete applies, no hooks; returns whether it was removed
    expired = kwargs.get('_rom_expired', False)
    cascaded: List[Any] = []
    to_save: List[Any] = []
    if not skip:
        if not expired:
            entity._before_delete()
        cascaded, to_save = yield from op_plan_on_delete(entity)
    session.forget(entity)
    if type(entity)._cluster_tag is not None:  # Redis Cluster: per-slot calls, safe order
        return (yield from op_delete_across_slots(
            entity, cascaded, to_save, Client(conn) if conn is not None else entity, skip,
            expired, sweep))
    # spec §3.5: delete the whole list in order (entity first), then save the entities
    # whose references were set to null/default. Deletes sharing entity's client go in
    # one script call (atomic together); others follow one by one.
    together = [entity]
    if cascaded:
        own = yield ClientOf(entity)
        for doomed in cascaded:
            if (yield ClientOf(doomed)) is own:
                together.append(doomed)
    plans = [plan_write(type(d), d._last, {}, delete=True) for d in together]
    if expired:
        plans[0] = plans[0]._replace(expiry=('due', ''))
    done, failure = yield from op_apply_plans(Client(conn) if conn is not None else entity,
                                              plans)
    if failure is not None:
        if expired and isinstance(failure, StillAlive):
            return False
        raise failure
    for doomed in together:
        session.forget(doomed)
        doomed._modified = True
        doomed._deleted = True
    for doomed in cascaded:
        if not doomed._deleted:
            yield from op_delete(doomed, {'skip_on_delete_i_really_mean_it': SKIP_ON_DELETE})
    if to_save:
        yield from op_save_entities(to_save, False, False, False, sweep)
    if not skip and not expired:
        entity._after_delete()
    return True if expired else None


def op_delete_many(selected: List[Any]) -> Operation[None]:
    """Operation: ``Session.delete`` of the selected entities (no on_delete): one
    MULTI/EXEC round trip per Redis client (and hash slot)."""
    for obj in selected:
        cls = type(obj)
        if (not cls._no_fk or cls._namespace in MODELS_REFERENCED
                or cls.__name__ in MODELS_REFERENCED):
            raise ORMError(
                'cannot delete %s entities in bulk: the model takes part in foreign-key '
                'relationships; delete them one by one' % (cls._namespace,))
    groups: List[Tuple[Any, Optional[str], List[Any]]] = []  # (client, slot tag, entities)
    clients: Dict[Any, Any] = {}
    for obj in selected:
        if not obj._deleted:
            obj._before_delete()
        session.forget(obj)
        obj._modified = True
        obj._deleted = True
        model = type(obj)
        if model not in clients:
            clients[model] = yield ClientOf(model)
        conn, tag = clients[model], model._cluster_tag  # a cluster: one transaction per slot
        for group in groups:
            if group[0] is conn and group[1] == tag:
                group[2].append(obj)
                break
        else:
            groups.append((conn, tag, [obj]))
    for _, _, entities in groups:
        # one script call in a transaction deletes the whole batch of this client
        plans = [plan_write(type(e), e._last, {}, delete=True) for e in entities]
        yield Batch(entities[0], (write_step(entities[0], plans),), True)
    for obj in selected:
        if obj._deleted == 1:
            obj._after_delete()
            obj._deleted = 2
        session.forget(obj)
