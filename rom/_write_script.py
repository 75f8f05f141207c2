"""Run write plans as one atomic call of ``scripts/write.lua``.

``plan_args`` encodes a plan as the script's arguments, ``write_step`` is the script call
applying one or many plans (an I/O step of ``rom._io``; ``op_run_plans`` runs it,
``run_plans`` on a given blocking client or pipeline), and ``_failure`` maps the script's
reply to typed exceptions in one place.
"""
from __future__ import annotations

import json
from typing import Any, List, Optional, Sequence, Tuple

from redis.client import Pipeline

from ._cluster import is_cluster_pipeline
from ._connect import to_text
from ._io import Client, Operation, Script
from ._scripts import lua
from ._ttl import expiry_failure
from ._write_plan import WritePlan
from .exceptions import DataRaceError, EntityDeletedError, UniqueKeyViolation

#: item types sent as one JSON argument (anything else, e.g. bytes from a custom column, is
#: sent as separate arguments, encoded by redis-py)
_JSON_SAFE = frozenset([str, int])


def plan_args(plan: WritePlan) -> List[Any]:
    """The plan as ``write.lua`` arguments (one entity block)."""
    out: List[Any] = [plan.namespace, plan.id]
    if plan.expiry is None:
        out.append(plan.mode)
    else:  # models with ``_ttl`` only
        out += (plan.mode + 'e', str(plan.expiry[0]), str(plan.expiry[1]))
    out.append(len(plan.race))
    for pair in plan.race:
        out += pair
    out.append(len(plan.absent))
    out += plan.absent
    for items in (plan.claims, plan.releases, plan.current):
        out.append(len(items))
        for pair in items:
            out += pair
    out.append(len(plan.hdel))
    out += plan.hdel
    out.append(len(plan.hset))
    for pair in plan.hset:
        out += pair
    out.append(len(plan.unsafe))
    out += plan.unsafe
    entries = plan.entries
    out.append(len(entries.keys))
    out += entries.keys
    out.append(len(entries.scores))
    for pair in entries.scores.items():
        out += pair
    triples: Sequence[Sequence[Tuple[str, str, str]]] = (entries.prefix, entries.suffix, entries.geo)
    for group in triples:
        out.append(len(group))
        for triple in group:
            out += triple
    return out


class Replan(Exception):
    """The script found a row whose bookkeeping an incremental update cannot trust: the
    update is planned again in full (nothing of it was written)."""


def _failure(plan: WritePlan, kind: str, details: Sequence[Any]) -> Exception:
    ns, id_text = plan.namespace, plan.id
    if kind == 'replan':
        return Replan()
    if kind in ('expired', 'alive'):  # models with ``_ttl``
        return expiry_failure(kind, ns, id_text)
    if kind == 'unique':
        name = to_text(details[0])
        value = dict(plan.claims).get(name)
        return UniqueKeyViolation(
            'value %r is already taken in unique index %s:%s:uidx (saving %s:%s)'
            % (value, ns, name, ns, id_text), ns, id_text)
    fields = [to_text(f) for f in details]
    pkey = plan.race[0][0] if plan.race else None
    if pkey in fields:
        return EntityDeletedError(
            'entity %s:%s was deleted by a concurrent writer; use save(force=True) to recreate '
            'it' % (ns, id_text), ns, id_text)
    return DataRaceError(
        'save of %s:%s cancelled: a concurrent writer changed column(s) %s'
        % (ns, id_text, ', '.join(fields)), ns, id_text)


def write_step(via: Any, plans: Sequence[WritePlan],
               blocks: Optional[Sequence[List[Any]]] = None) -> Script:
    """The write script call applying ``plans`` in order (``blocks``: their ``plan_args``)."""
    args: List[Any] = [len(plans)]
    if any(plan.expiry is not None for plan in plans):  # models with ``_ttl``: see write.lua
        args[0] = -len(plans)
    for block in (blocks if blocks is not None else [plan_args(plan) for plan in plans]):
        args += block
    if {type(item) for item in args} <= _JSON_SAFE:
        # one JSON argument: redis-py encodes each argument in Python, JSON does it in C
        args = [json.dumps(args, ensure_ascii=False, separators=(',', ':'))]
    # a cluster client routes the keyless script by a key of the model's slot
    return Script(via, 'write', (), args, route=plans[0].namespace + ':' if plans else None)


def write_result(plans: Sequence[WritePlan], reply: Any) -> Tuple[int, Optional[Exception]]:
    """(number of plans applied, failure or None) from the write script's reply."""
    applied = int(reply[0])
    kind = to_text(reply[1])
    if kind == 'ok':
        return applied, None
    details = reply[3:3 + int(reply[2])]
    return applied, _failure(plans[applied], kind, details)


def is_pipeline(conn: Any) -> bool:
    """True for a blocking pipeline (calls are queued, replies come with its execute())."""
    return isinstance(conn, Pipeline) or is_cluster_pipeline(conn)


def op_run_plans(via: Any, plans: Sequence[WritePlan],
                 blocks: Optional[Sequence[List[Any]]] = None
                 ) -> Operation[Tuple[int, Optional[Exception]]]:
    """Operation: apply plans in order in one script call; (number applied, failure)."""
    reply = yield write_step(via, plans, blocks)
    return write_result(plans, reply)


def op_apply_plans(via: Any, plans: Sequence[WritePlan]
                   ) -> Operation[Tuple[int, Optional[Exception]]]:
    """``op_run_plans``, or on a blocking pipeline given as ``Client(pipe)`` the call queued
    (no I/O; ``(len(plans), None)``, unchecked)."""
    if isinstance(via, Client) and is_pipeline(via.conn):
        return run_plans(via.conn, plans)
    return (yield from op_run_plans(via, plans))


def run_plans(conn: Any, plans: Sequence[WritePlan],
              blocks: Optional[Sequence[List[Any]]] = None) -> Tuple[int, Optional[Exception]]:
    """Apply plans in order in one script call on the blocking client or pipeline ``conn``.

    Returns (number applied, failure or None). With a pipeline the call is queued and
    ``(len(plans), None)`` is returned unchecked.
    """
    step = write_step(Client(conn), plans, blocks)
    reply = lua('write')(conn, step.keys, step.args, route=step.route)
    if is_pipeline(conn):
        return len(plans), None
    return write_result(plans, reply)
