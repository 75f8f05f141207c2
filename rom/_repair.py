"""``python -m rom check --fix``: repair what an audit found, never touching row data.

From an :class:`~rom._audit_report.AuditReport`, :func:`repair_model`:

* rewrites the index entries of rows whose entries are missing, mis-scored or unclaimed, or
  whose bookkeeping is out of date (the reindex engine, ``rom._reindex``: row fields stay);
* removes index entries and unique claims that point at missing rows, and entries or claims
  that their row no longer calls for (``scripts/repair_entries.lua`` checks each removal
  again at the moment it happens), and legacy ``<ns>::`` bookkeeping of missing rows;
* for a reference to a missing row, applies the column's ``on_delete`` (``cascade`` deletes
  the referencing entity, ``set null`` / ``set default`` save it with the reference cleared
  or defaulted; ``no action`` and ``restrict`` leave it and say so);
* lists what it cannot decide for the user (two rows holding one unique value, index keys
  the model does not declare, rows that cannot be loaded).

With ``dry_run=True`` nothing is written and the summary lists what would be done.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from ._audit_report import (BAD_ROW, BOOKKEEPING, DANGLING, DANGLING_REFERENCE, MISSING, STALE,
                            UNIQUE_DUPLICATE, UNIQUE_MISSING, UNIQUE_STALE, UNKNOWN_INDEX,
                            WRONG_SCORE, AuditReport, Finding)
from ._connect import connect, to_text
from ._registry import NULL
from ._reindex import ReindexSummary, read_rows, reindex_ids, untracked
from ._scripts import lua

__all__ = ['RepairSummary', 'repair_model']

_REINDEX_KINDS = (MISSING, WRONG_SCORE, BOOKKEEPING, UNIQUE_MISSING)
_MANUAL_KINDS = (UNIQUE_DUPLICATE, UNKNOWN_INDEX, BAD_ROW)
_BLOCK = 500


@dataclass
class RepairSummary:
    """What ``check --fix`` did (or, in a dry run, would do) for one model."""

    namespace: str
    dry_run: bool = False
    #: action -> count (rows reindexed, entries removed, references fixed, ...)
    done: Dict[str, int] = field(default_factory=dict)
    #: findings left for a person to decide, with the reason
    left: List[Tuple[Finding, str]] = field(default_factory=list)
    reindex: ReindexSummary = field(default_factory=ReindexSummary)

    def count(self, action: str, n: int = 1) -> None:
        if n:
            self.done[action] = self.done.get(action, 0) + n

    def lines(self) -> List[str]:
        """The summary as text lines."""
        verb = 'would ' if self.dry_run else ''
        out = ['%s: %s%s: %d' % (self.namespace, verb, action, n)
               for action, n in sorted(self.done.items())]
        out += ['%s: %s' % (self.namespace, line) for line in self.reindex.lines()]
        out += ['%s: left as is: %s (%s)' % (self.namespace, finding.message, reason)
                for finding, reason in self.left]
        if not out:
            out.append('%s: nothing to repair' % (self.namespace,))
        return out


def _row_ids(findings: List[Finding]) -> List[int]:
    return sorted({int(f.id) for f in findings if f.id is not None and f.id.isdigit()})


def repair_model(model: Any, report: AuditReport, dry_run: bool = False,
                 progress: Optional[Callable[[int, int], Any]] = None) -> RepairSummary:
    """Repair the findings of ``report`` (an audit of ``model``); see the module docs."""
    summary = RepairSummary(model._namespace, dry_run)
    by_kind: Dict[str, List[Finding]] = {}
    for finding in report.findings:
        by_kind.setdefault(finding.kind, []).append(finding)
    total = len(report.findings)
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total)

    # 1. references to missing rows: the column's on_delete, chosen by the user's model
    refs = by_kind.get(DANGLING_REFERENCE, [])
    _apply_on_delete(model, refs, summary)
    step(len(refs))
    # 2. rows whose own entries are wrong or missing: write them from their stored values
    stale = by_kind.get(STALE, []) + by_kind.get(UNIQUE_STALE, [])
    ids = _row_ids([f for kind in _REINDEX_KINDS for f in by_kind.get(kind, [])] + stale)
    for start in range(0, len(ids), _BLOCK):
        block = ids[start:start + _BLOCK]
        if dry_run:
            summary.count('rows reindexed', len(block))
        else:
            summary.count('rows reindexed', reindex_ids(model, block, summary.reindex))
    step(sum(len(by_kind.get(kind, [])) for kind in _REINDEX_KINDS))
    # 3. entries pointing at missing rows, entries and claims their row does not call for
    _remove_entries(model, by_kind.get(DANGLING, []) + stale, summary)
    step(len(by_kind.get(DANGLING, [])) + len(stale))
    for kind in _MANUAL_KINDS:
        for finding in by_kind.get(kind, []):
            summary.left.append((finding, {
                UNIQUE_DUPLICATE: 'decide which row keeps the value and change the other',
                UNKNOWN_INDEX: 'not an index of this model: delete it by hand if unused',
                BAD_ROW: 'fix or delete the row by hand'}[kind]))
        step(len(by_kind.get(kind, [])))
    return summary


def _apply_on_delete(model: Any, findings: List[Finding], summary: RepairSummary) -> None:
    for finding in findings:
        attr = finding.member or ''
        col = model._columns[attr]
        policy = col._on_delete
        if policy not in ('cascade', 'set null', 'set default'):
            summary.left.append((finding, "on_delete is %r: the reference is kept" % (policy,)))
            continue
        action = {'cascade': 'rows deleted (on_delete cascade)',
                  'set null': 'references cleared (on_delete set null)',
                  'set default': 'references set to the default (on_delete set default)'}[policy]
        if summary.dry_run:
            summary.count(action)
            continue
        with untracked():
            entity = model.get(int(finding.id or 0))
            if entity is None or getattr(entity, attr) is not None:
                continue  # deleted, or its reference changed since the check
            if policy == 'cascade':
                entity.delete()
            else:
                default = col._default
                if policy == 'set default' and default is not NULL and default is not None:
                    setattr(entity, attr, default() if callable(default) else default)
                else:
                    entity._data.pop(attr, None)  # clear it: the save deletes the field
                    entity._modified = True
                entity.save()
        summary.count(action)


def _remove_entries(model: Any, findings: List[Finding], summary: RepairSummary) -> None:
    ns = model._namespace
    conn = connect(model)
    ops: List[str] = []
    legacy: List[str] = []
    stale_uidx = [f for f in findings if f.repair and f.repair[0] == 'stale-uidx']
    tokens = _unique_tokens(model, stale_uidx)
    for finding in findings:
        if finding.repair is None or finding.id is None:
            continue
        op, member, name, token = finding.repair
        if op == 'legacy':
            legacy.append(finding.id)
            continue
        if op == 'stale-uidx':
            token = tokens.get((finding.id, name), '')
            if not token:
                continue  # the row is gone or cannot be read: a later check tells
        ops += [op, finding.key, member, finding.id, name, token]
    what = 'index entries removed (stale, or pointing at missing rows)'
    if summary.dry_run:
        summary.count(what, len(ops) // 6)
        summary.count('legacy bookkeeping fields removed', len(legacy))
        return
    for start in range(0, len(ops), 6 * _BLOCK):
        summary.count(what, int(lua('repair_entries')(conn, (), [ns] + ops[start:start + 6 * _BLOCK])))
    if legacy:
        summary.count('legacy bookkeeping fields removed',
                      int(lua('clean_legacy')(conn, (), [ns] + legacy)))


def _unique_tokens(model: Any, findings: List[Finding]) -> Dict[Tuple[str, str], str]:
    """(row id, constraint) -> JSON of the stored texts of the constraint's columns, read
    now: the claim is released only if the row still holds them then."""
    ids = _row_ids(findings)
    if not ids:
        return {}
    rows = dict(read_rows(model, ids))
    out = {}
    for finding in findings:
        if finding.repair is None or finding.id is None:
            continue
        name = finding.repair[2]
        row = rows.get(int(finding.id))
        if row is None:
            continue
        values = []
        try:
            for column in name.split(':'):
                value = row.get(column.encode(), row.get(column))
                values.append(None if value is None else to_text(value))
        except UnicodeDecodeError:
            continue  # not representable in the script's JSON: left for a person
        out[(finding.id, name)] = json.dumps(values)
    return out
