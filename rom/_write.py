"""Save entities (pure core, no client): hooks, ids and entity state around planned writes.

Operations are generators of ``rom._io`` steps, run by ``rom._io.run`` (blocking) or
``await rom._io.arun`` (asyncio): ``Model.save`` is ``run(op_save_entities(...))`` and
``Model.asave`` is ``await arun(op_save_entities(...))``. Each entity's write is planned by
``rom._write_plan``; plans go out in as few calls of the write script as the limits below
allow (``rom._write_script``); the after-hooks of the written entities run and they are
marked clean.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from ._cross_slot import save_order, spans_slots
from ._ids import op_take_ids
from ._io import ClientOf, Operation, run
from ._registry import PENDING_ID, SAVING_TARGETS, is_entity
from ._session import session
from ._ttl import write_op
from ._write_plan import WritePlan, plan_write
from ._write_script import Replan, op_run_plans, plan_args
from .exceptions import EntityDeletedError

__all__ = ['op_save_entities', 'op_take_pending_ids', 'op_get_one', 'save_entities',
           'MAX_ARGS_PER_CALL']

_MAX_BLOCKS_PER_CALL = 500
#: most items (arguments) one write script call carries: Redis < 7 refuses more than 1,048,576
#: arguments per command, and a smaller call keeps the server's time in one script short
MAX_ARGS_PER_CALL = 100_000


def op_get_one(model: Any, ident: Any) -> Operation[Any]:
    """Operation: the entity of ``model`` with id ``ident`` (``model.get(ident)``), or None."""
    from ._ops_read import op_get
    return (yield from op_get(model, ident))


def op_slot_function(entities: Iterable[Any]) -> Operation[Any]:
    """Operation: ``rom._cross_slot``'s ``slot`` function for ``entities`` and the entities
    they refer to: (the client of the model, its hash tag), clients asked of the driver."""
    clients: Dict[Any, Any] = {}
    for entity in entities:
        for each in [entity] + [v for v in entity._data.values() if is_entity(v)]:
            model = type(each)
            if model not in clients:
                clients[model] = yield ClientOf(model)
    return lambda entity: (id(clients.get(type(entity))), type(entity)._cluster_tag)


def op_take_pending_ids(entities: List[Any]) -> Operation[None]:
    """Give the new entities whose id is still pending their ids, one reservation per model."""
    pending: Dict[Any, List[Any]] = {}
    for entity in entities:
        if entity._data.get(entity._pkey) is PENDING_ID:
            pending.setdefault(type(entity), []).append(entity)
    if not pending:
        return
    moves: List[Tuple[Any, str]] = []
    for model, group in pending.items():
        ids = yield from op_take_ids(model, group[0], len(group))
        for entity, new_id in zip(group, ids):
            if entity._data.get(entity._pkey) is PENDING_ID:
                moves.append((entity, entity._session_key))
                entity._data[entity._pkey] = new_id
    session._rekey_many(moves)


def _op_resolve_references(entity: Any) -> Operation[None]:
    """Look up the references loaded as ids (a save writes the entities they name; one
    that names no entity becomes None), without blocking."""
    from ._relations import _Unresolved
    data = entity._data
    for attr, value in list(data.items()):
        if isinstance(value, _Unresolved) and data.get(attr) is value:
            target = entity._columns[attr]._target(entity._namespace)
            data[attr] = yield from op_get_one(target, value.id)


def _new_targets(entity: Any) -> List[Any]:
    """The new entities a reference column of ``entity`` holds (saved before it), but for
    those whose save is in progress (a cycle of new entities: their ids are known)."""
    return [value for value in entity._data.values()
            if is_entity(value) and value is not entity and value._new
            and not value.__dict__.get(SAVING_TARGETS, False)]


def _op_save_targets(entity: Any, sweep: bool) -> Operation[None]:
    """Look up ``entity``'s references loaded as ids and save the new entities it refers
    to, before its own plan is made (which then only needs their ids)."""
    yield from _op_resolve_references(entity)
    entity.__dict__[SAVING_TARGETS] = True  # a target referring back does not save it
    try:
        for target in _new_targets(entity):
            if target._new and not target.__dict__.get(SAVING_TARGETS, False):
                yield from op_save_entities([target], False, False, sweep=sweep)
    finally:
        entity.__dict__.pop(SAVING_TARGETS, None)


def op_save_entities(entities: Iterable[Any], full: bool, force: bool, all: bool = True,
                     sweep: bool = True) -> Operation[int]:
    """Operation: save entities in order with as few round trips as possible.

    On failure the entities before the failing one are written (and their after-hooks run),
    the failing one and those after it are not, and the failure is raised. ``sweep``: run
    the expiry cleanup after writes of models with ``_ttl`` (``rom._expiry.op_after_write``;
    False for the writes of that cleanup itself).
    """
    total = 0
    entities = list(entities)
    if len(entities) > 1 and spans_slots(entities):
        # on a cluster: per slot, targets' slots first
        slot = yield from op_slot_function(entities)
        entities = save_order(entities, slot)
    yield from op_take_pending_ids(entities)
    batch: List[Tuple[Any, WritePlan, bool]] = []
    blocks: List[List[Any]] = []
    queued: Set[int] = set()
    clients: Dict[Any, Any] = {}  # model -> its client (asked only when models mix)
    batch_model: Any = None
    batch_tag: Optional[str] = None
    batch_args = 0

    def flush() -> Operation[None]:
        nonlocal total, batch, blocks, batch_model, batch_args
        pending, pending_blocks = batch, blocks
        batch, blocks, batch_model, batch_args = [], [], None, 0
        queued.clear()
        if not pending:
            return
        for entity, _, _ in pending:
            # a write that may have reached the server: a later save must not assume that
            # nothing was written (its reply can be lost after the script ran)
            entity._write_sent = True
        while True:
            done, failure = yield from op_run_plans(
                pending[0][0], [plan for _, plan, _ in pending], pending_blocks)
            if isinstance(failure, EntityDeletedError) and pending[done][0]._deleted:
                failure = EntityDeletedError(
                    'entity %s:%s was deleted by its own delete(); use save(force=True) to '
                    'recreate it' % failure.args[1:], *failure.args[1:])
            expiring: List[WritePlan] = []
            for entity, plan, was_new in pending[:done]:
                entity._last = plan.stored
                entity._new = entity._modified = entity._deleted = False
                total += plan.changes
                if plan.expiry is not None:  # models with ``_ttl``: the request was written
                    entity.__dict__.pop('_rom_expiry', None)
                    expiring.append(plan)
            for entity, _, was_new in pending[:done]:
                if was_new:
                    entity._after_insert()
                else:
                    entity._after_update()
            if expiring and sweep:  # models with ``_ttl``: a little expiry cleanup
                from ._expiry import op_after_write
                yield from op_after_write(expiring)
            if not isinstance(failure, Replan):
                break
            # an incremental update the script could not trust: plan it in full, go on
            entity, plan, was_new = pending[done]
            again = plan_write(type(entity), entity._last, entity._save_data(),
                               incremental=False)._replace(expiry=plan.expiry)
            pending = [(entity, again, was_new)] + pending[done + 1:]
            pending_blocks = [plan_args(again)] + pending_blocks[done + 1:]
        if failure is not None:
            raise failure

    def same_client(model: Any) -> Operation[bool]:
        """Whether ``model`` writes through the client of the batch's model."""
        for each in (model, batch_model):
            if each not in clients:
                clients[each] = yield ClientOf(each)
        return clients[model] is clients[batch_model]

    for entity in entities:
        # deleted entities are filtered by Session.save; Model.save() of a deleted entity
        # must reach the race check (EntityDeletedError) or, with force=True, recreate it
        if not (all or entity._modified):
            continue
        if id(entity) in queued or (batch and not entity._no_fk and _new_targets(entity)):
            # a new referenced entity is saved before this one's plan is made: write the
            # queued ones first, as a one-by-one loop would, so a queued target is not
            # written twice and the writes keep their order
            yield from flush()
        try:
            was_new = entity._new
            if was_new:
                entity._before_insert()
            else:
                entity._before_update()
            # (no I/O step inside this try: a closed operation must not yield again)
        except BaseException:
            yield from flush()
            raise
        try:
            # a hook made it new again, or it was never planned: its id; references
            # loaded as ids looked up; new referenced entities saved first
            if entity._data.get(entity._pkey) is PENDING_ID:
                yield from op_take_pending_ids([entity])
            if not entity._no_fk:
                yield from _op_save_targets(entity, sweep)
        except GeneratorExit:
            raise
        except BaseException:
            yield from flush()
            raise
        try:
            plan = plan_write(type(entity), entity._last, entity._save_data(),
                              full=full or was_new or force, is_new=was_new or force,
                              fresh=was_new and not force and not entity.__dict__.get(
                                  '_write_sent', False),
                              force=force)
            if plan.expiry is not None:  # models with ``_ttl``
                plan = plan._replace(expiry=write_op(entity, was_new, force))
        except BaseException:
            yield from flush()
            raise
        block = plan_args(plan)
        model = type(entity)
        if batch and (len(batch) >= _MAX_BLOCKS_PER_CALL
                      or batch_args + len(block) > MAX_ARGS_PER_CALL
                      or model._cluster_tag != batch_tag
                      or (model is not batch_model and not (yield from same_client(model)))):
            yield from flush()  # one script call per client and (on a cluster) per hash slot
        if not batch:
            batch_model, batch_tag = model, model._cluster_tag
        batch.append((entity, plan, was_new))
        blocks.append(block)
        batch_args += len(block)
        queued.add(id(entity))
    yield from flush()
    return total


def save_entities(entities: Iterable[Any], full: bool, force: bool, all: bool = True) -> int:
    """``op_save_entities`` run with the blocking client."""
    return run(op_save_entities(entities, full, force, all))
