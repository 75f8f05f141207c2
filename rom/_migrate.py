"""Copy a model's rows from its old (non-cluster) keys into its cluster-mode layout.

The engine of ``python -m rom migrate``. The model class is the one declared with
``_cluster`` (namespace ``{tag}...``); its old rows are ``<old ns>:<id>`` hashes (``old ns``
is the class name by default, rom 1.1.2's namespace) on a *source* client, which may be
another server than the model's own (a single server when the model now lives on a cluster).

Each row is written with its id unchanged through rom's own write path
(:func:`rom._write_plan.plan_write` and the atomic write script), so its index entries,
unique claims and ``-index-data-`` bookkeeping are exactly what a save makes; references
(``ManyToOne`` ids) are copied as stored. Rows go in blocks: one pipelined read of the
source, one script call reading the destination, one write script call for the rows that
differ. A row whose destination already holds the same fields is left alone, so running
the job again after a crash finishes it without duplicating anything (idempotent). The
destination's id counter is raised to at least the source's. ``UnsafeColumn`` keys
(``<ns>:<id>:<attr>``) are copied as well. The old keys are never changed.

:meth:`Migration.audit` compares both sides row by row and audits the destination's indexes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ._audit import audit_model
from ._audit_report import AuditReport
from ._connect import connect, to_text
from ._limits import MAX_BLOCK_SIZE, size_problem
from ._maintenance import _scan_pages, row_id_of, scan_pattern
from ._reindex import entity_from_row, read_rows, untracked
from ._relations import UnsafeColumn
from ._write_plan import WritePlan, plan_write
from ._write_script import run_plans
from .exceptions import DataRaceError, EntityDeletedError, ORMError

__all__ = ['Migration', 'MigrationSummary', 'MigrationAudit']

_RETRIES = 5
_WRITES_PER_CALL = 200
Row = Dict[str, str]


@dataclass
class MigrationSummary:
    """What a run did (or, in a dry run, would do)."""

    source_rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    unsafe_keys: int = 0
    #: destination rows without a source row deleted (``delete_extra``)
    deleted: int = 0
    #: source rows that vanished between the scan and their copy
    vanished: int = 0
    counter: Tuple[int, int] = (0, 0)  # destination id counter before, after
    counter_raised: bool = field(default=False, repr=False)
    #: ``(id, reason)`` of rows not copied
    failed: List[Tuple[int, str]] = field(default_factory=list)

    def line(self, dry_run: bool) -> str:
        """One line summary."""
        verb = ('would create %d, update %d' if dry_run else 'created %d, updated %d') % (
            self.created, self.updated)
        text = '%d source rows: %s, %d already copied' % (self.source_rows, verb, self.unchanged)
        if self.unsafe_keys:
            text += ', %d UnsafeColumn keys copied' % (self.unsafe_keys,)
        if self.vanished:
            text += ', %d deleted at the source meanwhile' % (self.vanished,)
        if self.deleted:
            text += ', %s %d destination-only rows' % ('would delete' if dry_run else 'deleted',
                                                       self.deleted)
        if self.failed:
            text += ', %d FAILED' % (len(self.failed),)
        return text + '; id counter %d -> %d' % self.counter


@dataclass
class MigrationAudit:
    """The final comparison of source and destination (see :meth:`Migration.audit`)."""

    missing: List[int] = field(default_factory=list)  # source rows absent at the destination
    different: List[int] = field(default_factory=list)  # copied rows whose fields differ
    extra: List[int] = field(default_factory=list)  # destination rows with no source row
    index: Optional[AuditReport] = None

    @property
    def ok(self) -> bool:
        """True when every source row is copied exactly and the indexes audit clean."""
        return not (self.missing or self.different or self.extra) and (
            self.index is None or self.index.ok)

    def lines(self) -> List[str]:
        """Human-readable findings (one line per kind) and the index audit summary."""
        out = []
        for name, ids in (('missing at the destination', self.missing),
                          ('different at the destination', self.different),
                          ('at the destination only', self.extra)):
            if ids:
                out.append('%d row(s) %s: ids %s%s' % (
                    len(ids), name, ', '.join(map(str, ids[:10])), ' ...' if len(ids) > 10
                    else ''))
        if self.index is not None:
            for finding in self.index.findings:
                out.append('%s: %s' % (finding.kind, finding.message))
            out.append('index audit: ' + self.index.summary())
        return out


_READERS = {'string': 'get', 'hash': 'hgetall', 'list': 'lrange', 'set': 'smembers',
            'zset': 'zrange'}


def _read_keys(conn: Any, keys: Sequence[str]) -> List[Tuple[str, Any]]:
    """``(type, value)`` of each key (``('none', None)`` when missing), in two round trips;
    values are comparable (sets as sets, sorted sets as ``[(member, score)]``)."""
    pipe = conn.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    kinds = [to_text(kind) for kind in pipe.execute()]
    pipe = conn.pipeline(transaction=False)
    for key, kind in zip(keys, kinds):
        if kind in ('list', 'zset'):
            getattr(pipe, _READERS[kind])(key, 0, -1, **({'withscores': True}
                                                         if kind == 'zset' else {}))
        elif kind in _READERS:
            getattr(pipe, _READERS[kind])(key)
    values = iter(pipe.execute())
    out: List[Tuple[str, Any]] = []
    for kind in kinds:
        if kind not in _READERS:
            out.append(('none', None))
            continue
        value = next(values)
        if kind == 'zset':
            value = [tuple(pair) for pair in value]
        out.append((kind, value))
    return out


def _row_ids(conn: Any, namespace: str) -> List[int]:
    """The ids of the rows ``<namespace>:<id>`` (SCAN; every master of a cluster)."""
    prefix = namespace + ':'
    found = set()
    for keys in _scan_pages(conn, scan_pattern(namespace), 1000):
        for key in keys:
            i = row_id_of(key, prefix)
            if i is not None:
                found.add(i)
    return sorted(found)


def _text_row(raw: Dict[Any, Any]) -> Row:
    return {to_text(k): to_text(v) for k, v in raw.items()}


class Migration:
    """Copy ``model``'s rows from ``<from_namespace>:<id>`` on ``source`` into its own layout.

    ``model`` must be a cluster-mode model (``_cluster``); ``from_namespace`` defaults to the
    class name; ``source`` defaults to the model's own client. ``block_size`` rows are read
    and written per round trip. Models with ``_ttl`` are refused (their expiry times would
    need copying too).
    """

    def __init__(self, model: Any, source: Any = None, from_namespace: Optional[str] = None,
                 block_size: int = 500) -> None:
        if getattr(model, '_cluster_tag', None) is None:
            raise ORMError('%s is not a cluster-mode model: declare it with _cluster = True '
                           'first (see the "Running on Redis Cluster" guide)' % (model.__name__,))
        if getattr(model, '_ttl', None) is not None:
            raise ORMError('%s: models with _ttl cannot be migrated by this job (expiry times '
                           'are not copied)' % (model.__name__,))
        self.model = model
        self.dest = connect(model)
        self.source = source if source is not None else self.dest
        self.old = from_namespace or model.__name__
        if self.old == model._namespace:
            raise ORMError('%s: the old namespace %r is the model\'s own namespace'
                           % (model.__name__, self.old))
        problem = size_problem(block_size, MAX_BLOCK_SIZE)
        if problem:
            raise ORMError('Migration: block_size %s' % (problem,))
        self.block_size = block_size
        self.unsafe = [attr for attr, col in model._columns.items()
                       if isinstance(col, UnsafeColumn)]
        self._ids: Optional[List[int]] = None

    # ----------------------------------------------------------------------- reading
    def ids(self) -> List[int]:
        """The ids of the source rows (SCAN of ``<old ns>:*``, every master of a cluster)."""
        if self._ids is None:
            self._ids = _row_ids(self.source, self.old)
        return self._ids

    def _source_rows(self, ids: Sequence[int]) -> List[Tuple[int, Row]]:
        pipe = self.source.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall('%s:%d' % (self.old, i))
        return [(i, _text_row(raw)) for i, raw in zip(ids, pipe.execute()) if raw]

    def _dest_rows(self, ids: Sequence[int]) -> Dict[int, Row]:
        if not ids:
            return {}
        return {i: _text_row(raw) for i, raw in read_rows(self.model, list(ids))}

    # ----------------------------------------------------------------------- copying
    def _plan(self, row: Row, have: Optional[Row]) -> WritePlan:
        """The write of the source ``row`` over the destination row ``have`` (or none)."""
        entity = entity_from_row(self.model, row)  # defaults apply, as for a load and save
        # references stay as stored ids (an unresolved reference stores its id text)
        return plan_write(self.model, have or {}, dict(entity._data), full=True,
                          is_new=have is None, incremental=False)

    def _columns(self, row: Row) -> Row:
        """The fields of a stored row that are column values (no bookkeeping)."""
        columns = self.model._columns
        return {k: v for k, v in row.items() if k in columns}

    def run(self, summary: MigrationSummary, dry_run: bool = False,
            delete_extra: bool = False) -> Iterator[Tuple[int, int]]:
        """Copy every source row (``dry_run``: only count); yields ``(done, total)``.

        ``delete_extra``: then delete (with their index entries) the destination rows whose
        source row no longer exists, as a final sync before the application switches over
        (never after: rows it created in the new layout have no source row either).
        """
        ids = self.ids()
        summary.source_rows = len(ids)
        self._raise_counter(summary, dry_run)
        done = 0
        yield 0, len(ids)
        for start in range(0, len(ids), self.block_size):
            block = ids[start:start + self.block_size]
            self._copy_block(block, summary, dry_run)
            if self.unsafe and not dry_run:
                summary.unsafe_keys += self._copy_unsafe(block)
            done += len(block)
            yield done, len(ids)
        self._raise_counter(summary, dry_run)
        if delete_extra:
            self._delete_extra(summary, dry_run)

    def _dest_ids(self) -> List[int]:
        """The ids of the destination's rows."""
        return _row_ids(self.dest, self.model._namespace)

    def _delete_extra(self, summary: MigrationSummary, dry_run: bool) -> None:
        known = set(self.ids())
        extra = [i for i in self._dest_ids() if i not in known]
        for start in range(0, len(extra), self.block_size):
            block = extra[start:start + self.block_size]
            with untracked():
                rows = self._dest_rows(block)
                plans = [(i, plan_write(self.model, row, {}, delete=True), False)
                         for i, row in sorted(rows.items())]
            if dry_run:
                summary.deleted += len(plans)
                continue
            done, raced = self._apply(plans, summary)
            summary.deleted += len(done)
            for i in raced:  # changed meanwhile: left alone, reported
                summary.failed.append((i, 'destination-only row changed while deleting it'))
            if self.unsafe and done:  # (one slot: one DEL)
                self.dest.delete(*['%s:%d:%s' % (self.model._namespace, i, a)
                                   for i, _, _ in done for a in self.unsafe])

    def _counter_key(self, namespace: str) -> str:
        return '%s:%s:' % (namespace, self.model._pkey)

    def _raise_counter(self, summary: MigrationSummary, dry_run: bool) -> None:
        want = int(self.source.get(self._counter_key(self.old)) or 0)
        if self.ids():
            want = max(want, self.ids()[-1])
        key = self._counter_key(self.model._namespace)
        have = int(self.dest.get(key) or 0)
        after = have
        if want > have:
            # INCRBY, not SET: never moves the counter back past ids taken meanwhile
            after = want if dry_run else int(self.dest.incrby(key, want - have))
        first = summary.counter if summary.counter_raised else (have, have)
        summary.counter = (first[0], max(after, first[1]))
        summary.counter_raised = True

    def _copy_block(self, ids: Sequence[int], summary: MigrationSummary, dry_run: bool) -> None:
        todo = list(ids)
        for _attempt in range(_RETRIES):
            if not todo:
                return
            plans: List[Tuple[int, WritePlan, bool]] = []
            with untracked():
                source = self._source_rows(todo)
                summary.vanished += len(todo) - len(source)
                dest = self._dest_rows([i for i, _ in source])
                for i, row in source:
                    have = dest.get(i)
                    try:
                        plan = self._plan(row, have)
                    except Exception as exc:
                        summary.failed.append((i, '%s: %s' % (type(exc).__name__, exc)))
                        continue
                    if have is not None and self._columns(have) == plan.stored:
                        summary.unchanged += 1
                        continue
                    plans.append((i, plan, have is None))
            if dry_run:
                summary.created += sum(1 for _, _, new in plans if new)
                summary.updated += sum(1 for _, _, new in plans if not new)
                return
            done, todo = self._apply(plans, summary)
            summary.created += sum(1 for _, _, new in done if new)
            summary.updated += sum(1 for _, _, new in done if not new)
        summary.failed.extend((i, 'changed by concurrent writers %d times in a row' % _RETRIES)
                              for i in todo)

    def _apply(self, plans: List[Tuple[int, WritePlan, bool]], summary: MigrationSummary
               ) -> Tuple[List[Tuple[int, WritePlan, bool]], List[int]]:
        """Run the plans; returns those applied and the ids to read and plan again (a
        concurrent change). Other failures go to ``summary.failed``."""
        done: List[Tuple[int, WritePlan, bool]] = []
        again: List[int] = []
        pending = plans
        while pending:
            chunk = pending[:_WRITES_PER_CALL]
            applied, failure = run_plans(self.dest, [plan for _, plan, _ in chunk])
            done.extend(chunk[:applied])
            if failure is None:
                pending = pending[applied:]
                continue
            failed = chunk[applied][0]
            if isinstance(failure, (DataRaceError, EntityDeletedError)):
                again.append(failed)
            else:  # a unique value claimed by another row at the destination
                summary.failed.append((failed, '%s: %s' % (type(failure).__name__, failure)))
            pending = pending[applied + 1:]
        return done, again

    def _copy_unsafe(self, ids: Sequence[int]) -> int:
        """Copy the ``UnsafeColumn`` keys of ``ids`` whose copy differs (replacing it);
        returns how many were written or removed."""
        names = [('%s:%d:%s' % (self.old, i, a), '%s:%d:%s' % (self.model._namespace, i, a))
                 for i in ids for a in self.unsafe]
        old = _read_keys(self.source, [o for o, _ in names])
        new = _read_keys(self.dest, [n for _, n in names])
        write = self.dest.pipeline(transaction=True)  # one slot: the model's tag
        changed = 0
        for (_, key), have, want in zip(names, new, old):
            if have == want:
                continue
            changed += 1
            write.delete(key)
            kind, value = want
            if kind == 'string':
                write.set(key, value)
            elif kind == 'hash' and value:
                write.hset(key, mapping=value)
            elif kind == 'list' and value:
                write.rpush(key, *value)
            elif kind == 'set' and value:
                write.sadd(key, *value)
            elif kind == 'zset' and value:
                write.zadd(key, dict(value))
        if changed:
            write.execute()
        return changed

    # ----------------------------------------------------------------------- audit
    def audit(self, block_size: int = 1000) -> MigrationAudit:
        """Compare every source row with its copy, list destination-only rows, and audit
        the destination's indexes (:func:`rom._audit.audit_model`)."""
        result = MigrationAudit()
        self._ids = None  # rows may have been added at the source since the run
        ids = self.ids()
        with untracked():
            for start in range(0, len(ids), block_size):
                block = ids[start:start + block_size]
                source = self._source_rows(block)
                dest = self._dest_rows([i for i, _ in source])
                for i, row in source:
                    if i not in dest:
                        result.missing.append(i)
                    elif self._columns(dest[i]) != self._plan(row, None).stored:
                        result.different.append(i)
            known = set(ids)
            result.extra = [i for i in self._dest_ids() if i not in known]
        result.extra.sort()
        result.index = audit_model(self.model, block_size=max(10, block_size))
        return result
