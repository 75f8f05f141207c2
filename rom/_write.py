"""Save entities: hooks, ids and entity state around planned writes, batched in few calls.

``save_entities`` plans each entity's write (``rom._write_plan``), sends the plans in as
few calls of the write script as the limits below allow (``rom._write_script``), runs the
after-hooks of the written ones and marks them clean.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from ._connect import connect
from ._cross_slot import save_order
from ._ids import take_ids
from ._registry import PENDING_ID, is_entity
from ._session import session
from ._ttl import write_op
from ._write_plan import WritePlan, plan_write
from ._write_script import Replan, plan_args, run_plans
from .exceptions import EntityDeletedError

_MAX_BLOCKS_PER_CALL = 500
#: most items (arguments) one write script call carries: Redis < 7 refuses more than 1,048,576
#: arguments per command, and a smaller call keeps the server's time in one script short
MAX_ARGS_PER_CALL = 100_000


def _take_pending_ids(entities: List[Any]) -> None:
    """Give the new entities whose id is still pending their ids, one reservation per model."""
    pending: Dict[Tuple[Any, int], List[Any]] = {}
    for entity in entities:
        if entity._data.get(entity._pkey) is PENDING_ID:
            conn = connect(entity)
            pending.setdefault((type(entity), id(conn)), []).append((entity, conn))
    if not pending:
        return
    moves: List[Tuple[Any, str]] = []
    for (model, _), group in pending.items():
        ids = take_ids(model, group[0][1], len(group))
        for (entity, _), new_id in zip(group, ids):
            moves.append((entity, entity._session_key))
            entity._data[entity._pkey] = new_id
    session._rekey_many(moves)


def _refers_to_new(entity: Any) -> bool:
    """Whether a reference column of ``entity`` holds another entity that is still new."""
    return any(is_entity(value) and value is not entity and value._new
               for value in entity._data.values())


def save_entities(entities: Iterable[Any], full: bool, force: bool, all: bool = True) -> int:
    """Save entities in order with as few round trips as possible.

    On failure the entities before the failing one are written (and their after-hooks run),
    the failing one and those after it are not, and the failure is raised.
    """
    total = 0
    entities = save_order(list(entities))  # on a cluster: per slot, targets' slots first
    _take_pending_ids(entities)
    batch: List[Tuple[Any, WritePlan, bool]] = []
    blocks: List[List[Any]] = []
    queued: Set[int] = set()
    batch_conn: Any = None
    batch_tag: Optional[str] = None
    batch_args = 0

    def flush() -> None:
        nonlocal total, batch, blocks, batch_conn, batch_args
        pending, pending_blocks, conn = batch, blocks, batch_conn
        batch, blocks, batch_conn, batch_args = [], [], None, 0
        queued.clear()
        if not pending:
            return
        for entity, _, _ in pending:
            # a write that may have reached the server: a later save must not assume that
            # nothing was written (its reply can be lost after the script ran)
            entity._write_sent = True
        while True:
            done, failure = run_plans(conn, [plan for _, plan, _ in pending], pending_blocks)
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
            if expiring:  # models with ``_ttl``: a little expiry cleanup after their writes
                from ._expiry import after_write
                after_write(expiring)
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

    for entity in entities:
        # deleted entities are filtered by Session.save; Model.save() of a deleted entity
        # must reach the race check (EntityDeletedError) or, with force=True, recreate it
        if not (all or entity._modified):
            continue
        if id(entity) in queued or (batch and _refers_to_new(entity)):
            # a new referenced entity is saved while this one's plan is made (ManyToOne
            # storage): write the queued ones first, as a one-by-one loop would, so a queued
            # target is not written twice and the writes keep their order
            flush()
        try:
            was_new = entity._new
            if was_new:
                entity._before_insert()
            else:
                entity._before_update()
            if entity._data.get(entity._pkey) is PENDING_ID:
                entity._allocate_id()  # a hook made it new again, or it was never planned
            plan = plan_write(type(entity), entity._last, entity._save_data(),
                              full=full or was_new or force, is_new=was_new or force,
                              fresh=was_new and not force and not entity.__dict__.get(
                                  '_write_sent', False),
                              force=force)
            if plan.expiry is not None:  # models with ``_ttl``
                plan = plan._replace(expiry=write_op(entity, was_new, force))
            conn = connect(entity)
        except BaseException:
            flush()
            raise
        block = plan_args(plan)
        if batch and (conn is not batch_conn or len(batch) >= _MAX_BLOCKS_PER_CALL
                      or batch_args + len(block) > MAX_ARGS_PER_CALL
                      or type(entity)._cluster_tag != batch_tag):
            flush()  # one script call per client and (on a cluster) per hash slot
        batch_conn, batch_tag = conn, type(entity)._cluster_tag
        batch.append((entity, plan, was_new))
        blocks.append(block)
        batch_args += len(block)
        queued.add(id(entity))
    flush()
    return total
