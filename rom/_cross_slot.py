"""Operations across hash slots (Redis Cluster): which script calls, in which order.

A script call touches keys of one hash slot, so an operation over cluster models with
different hash tags is sent as one atomic call per slot. The calls are ordered so that
stopping after any of them (a crash, a lost connection, a failed write) leaves only states
that read correctly, i.e. no row whose reference names a deleted row:

* ``delete_steps``: ``Model.delete()`` with its ``on_delete`` work. The referencing rows
  whose reference is set to null or to its default are saved first (one call per slot),
  then the rows are deleted, each no later than the rows it references (children before
  their parent), in as few per-slot calls as that order allows.
* ``save_order``: a ``session.commit()`` (or ``session.save()``) of entities of several
  slots, grouped per slot, the slots holding new reference targets before the slots of
  the rows referring to them (a new target is written before its referrer in any case).

The planning functions are pure (no I/O): they read the entities' stored values
(``_last``) and a ``slot`` function, by default ``(id(client), hash tag)``.
``op_run_delete_steps`` sends a plan; ``op_delete_across_slots`` is the hook of the delete
operation (``rom._ops_delete``), run by ``Model.delete()`` and ``Model.adelete()``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Hashable, Iterator, List, Optional, Sequence, Set, Tuple

from ._connect import connect
from ._io import ClientOf, Operation
from ._registry import MODELS, is_entity

__all__ = ['Step', 'slot_key', 'spans_slots', 'delete_steps', 'save_order',
           'op_run_delete_steps', 'op_delete_across_slots']

#: one script call: ``('save' | 'delete', entities of one slot, in order)``
Step = Tuple[str, List[Any]]
SlotOf = Callable[[Any], Hashable]


def slot_key(entity: Any) -> Tuple[int, Optional[str]]:
    """What one script call can cover: the client and (on a cluster) the hash tag."""
    return id(connect(entity)), type(entity)._cluster_tag


def spans_slots(entities: Sequence[Any]) -> bool:
    """Whether cluster-mode entities of more than one hash tag are among ``entities``."""
    tags = {type(entity)._cluster_tag for entity in entities}
    return len(tags) > 1 and None not in tags


def references(entity: Any) -> Iterator[str]:
    """Row keys (``<ns>:<id>``) named by the stored ``ManyToOne`` values of ``entity``."""
    stored = entity._last
    for attr, col in type(entity)._columns.items():
        ftable = getattr(col, '_ftable', None)
        if ftable is None or not hasattr(col, '_on_delete'):
            continue  # not a ManyToOne/OneToOne
        value = stored.get(attr)
        target = MODELS.get(ftable)
        if value is None or value == '' or target is None:
            continue
        if isinstance(value, bytes):
            value = value.decode('latin-1')
        if target.__dict__.get('_shard_models'):  # sharding hook: the row's shard
            target = target._shard_models[int(value) % len(target._shard_models)]
        yield '%s:%s' % (target._namespace, value)


def _by_slot(entities: Sequence[Any], slot: SlotOf) -> List[List[Any]]:
    """``entities`` grouped per slot, groups and members in order of first appearance."""
    groups: Dict[Hashable, List[Any]] = {}
    for entity in entities:
        groups.setdefault(slot(entity), []).append(entity)
    return list(groups.values())


def _topological(count: int, before: List[Set[int]]) -> List[int]:
    """Positions ordered so that each comes after those in ``before[i]``; ties (and cycles,
    which cannot be honoured) go by position."""
    after: List[List[int]] = [[] for _ in range(count)]
    waiting = [0] * count
    for i, preds in enumerate(before):
        for p in preds:
            after[p].append(i)
            waiting[i] += 1
    order: List[int] = []
    placed = [False] * count
    ready = [i for i in range(count) if not waiting[i]]
    while len(order) < count:
        if not ready:  # a cycle: place the first one left
            ready = [next(i for i in range(count) if not placed[i])]
        ready.sort(reverse=True)
        i = ready.pop()
        if placed[i]:
            continue
        placed[i] = True
        order.append(i)
        for j in after[i]:
            waiting[j] -= 1
            if not waiting[j] and not placed[j]:
                ready.append(j)
    return order


def _delete_groups(doomed: Sequence[Any], slot: SlotOf) -> List[List[Any]]:
    """Per-slot groups of ``doomed``: a row is in the group of, or in a group before, every
    row it references; as few groups as this greedy choice finds."""
    count = len(doomed)
    position = {entity._pk: i for i, entity in enumerate(doomed)}
    before: List[Set[int]] = [set() for _ in range(count)]
    for i, entity in enumerate(doomed):
        for key in references(entity):
            j = position.get(key)
            if j is not None and j != i:
                before[j].add(i)  # i refers to j: delete i no later than j
    order = _topological(count, before)
    rank = {i: r for r, i in enumerate(order)}
    # the longest chain of rows that must wait for each row: the deepest ones go first
    tail = [0] * count
    for i in reversed(order):
        for p in before[i]:
            if rank[p] < rank[i]:
                tail[p] = max(tail[p], tail[i] + 1)
    slots = [slot(entity) for entity in doomed]
    remaining = set(range(count))
    done: Set[int] = set()
    groups: List[List[Any]] = []
    while remaining:
        seen: List[Hashable] = []
        for i in sorted(remaining, key=rank.__getitem__):
            if slots[i] not in seen:
                seen.append(slots[i])
        best: Set[int] = set()
        best_score = (-1, False, 0)
        for where in seen:
            members = {i for i in remaining if slots[i] == where}
            group = set(members)
            changed = True
            while changed:  # keep the rows whose referrers are deleted before or with them
                changed = False
                for i in list(group):
                    if before[i] - done - group:
                        group.discard(i)
                        changed = True
            if not group:
                continue
            # the longest chain first, then a whole slot at once, then the largest group
            score = (max(tail[i] for i in group), group == members, len(group))
            if score > best_score:
                best, best_score = group, score
        if not best:  # a reference cycle across slots: no order is safe, take the first
            best = {min(remaining, key=rank.__getitem__)}
        groups.append([doomed[i] for i in sorted(best, key=rank.__getitem__)])
        done |= best
        remaining -= best
    return groups


def delete_steps(root: Any, cascaded: Sequence[Any], to_save: Sequence[Any],
                 root_first: bool = False, slot: SlotOf = slot_key) -> List[Step]:
    """The calls of ``root.delete()``: saves of ``to_save`` (references set to null or a
    default), then the deletes of ``root`` and ``cascaded`` in dependency order.

    ``root_first`` (an expiring row whose delete checks that it is due): the root's delete
    comes first and alone, so that nothing else is written when it is not due; a crash
    after it leaves references to it, which ``check --fix`` resolves by their on_delete.
    """
    steps: List[Step] = []
    doomed = [root] + list(cascaded)
    if root_first:
        steps.append(('delete', [root]))
        doomed = doomed[1:]
    steps += [('save', group) for group in _by_slot(to_save, slot)]
    steps += [('delete', group) for group in _delete_groups(doomed, slot)]
    return steps


def save_order(entities: List[Any], slot: SlotOf = slot_key) -> List[Any]:
    """``entities`` grouped per slot when they span several cluster slots (else as given):
    groups in order of first appearance, except that the slot of a new entity referenced by
    another comes before the referrer's slot (cycles keep the first-appearance order)."""
    if len(entities) < 2 or not spans_slots(entities):
        return entities
    groups = _by_slot(entities, slot)
    index = {slot(group[0]): g for g, group in enumerate(groups)}
    before: List[Set[int]] = [set() for _ in groups]
    for g, group in enumerate(groups):
        for entity in group:
            for value in entity._data.values():
                if is_entity(value) and value is not entity and value._new:
                    t = index.get(slot(value))
                    if t is not None and t != g:
                        before[g].add(t)
    return [entity for g in _topological(len(groups), before) for entity in groups[g]]


def op_run_delete_steps(root: Any, steps: Sequence[Step], via: Any, expired: bool,
                        sweep: bool = True) -> Operation[bool]:
    """Operation: send ``steps`` (see ``delete_steps``) in order; ``via`` reaches the root's
    client (the root, or ``rom._io.Client`` of a client the caller gave).

    Marks each deleted entity as such as soon as its call returns. Returns False when
    ``expired`` and the root turned out not to be due (nothing written); raises the first
    failure (the calls before it are written, the ones after it are not).
    """
    from ._session import session
    from ._ttl import StillAlive
    from ._write import op_save_entities
    from ._write_plan import plan_write
    from ._write_script import op_apply_plans

    root_client = yield ClientOf(root)
    for kind, group in steps:
        if kind == 'save':
            yield from op_save_entities(group, False, False, False, sweep)
            continue
        client = yield ClientOf(group[0])
        plans = [plan_write(type(d), d._last, {}, delete=True) for d in group]
        if expired and group[0] is root:
            plans[0] = plans[0]._replace(expiry=('due', ''))
        done, failure = yield from op_apply_plans(
            via if client is root_client else group[0], plans)
        for doomed in group[:done]:
            session.forget(doomed)
            doomed._modified = True
            doomed._deleted = True
        if failure is not None:
            if expired and group[0] is root and isinstance(failure, StillAlive):
                return False
            raise failure
    return True


def op_delete_across_slots(root: Any, cascaded: Sequence[Any], to_save: Sequence[Any],
                           via: Any, skip: bool, expired: bool,
                           sweep: bool = True) -> Operation[Any]:
    """Operation: the writes of ``root.delete()`` for a cluster-mode model, after its
    ``on_delete`` planning; returns what ``delete()`` returns (see ``Model.delete``)."""
    from ._write import op_slot_function
    slot = yield from op_slot_function([root] + list(cascaded) + list(to_save))
    steps = delete_steps(root, cascaded, to_save, root_first=expired, slot=slot)
    if not (yield from op_run_delete_steps(root, steps, via, expired, sweep)):
        return False
    if not skip and not expired:
        root._after_delete()
    return True if expired else None
