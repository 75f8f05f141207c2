"""Index-only rewrite of stored rows: the engine of ``refresh_indices`` and ``check --fix``.

A reindex reads each row as stored, loads it the way ``Model.get`` does and writes only the
index entries (and the ``-index-data-`` bookkeeping) those values call for, through the
normal write planning (``rom._write_plan.plan_write``) and the atomic write script. It never
rewrites or deletes a stored field: the only fields it adds are those a row lacks and whose
column declares a default (what a re-save of the loaded entity stores, spec §6.2). A
reference to a row that no longer exists is kept in the row (rom 1.1.2 keeps it too) and
only loses its index entry; it is counted in the summary and reported by ``check``.

Rows are verified before anything is written: a row whose bookkeeping and entries are
right is left alone. For the models ``rom._expect_fast`` handles, that verification uses the
row's stored texts (read with pipelined ``HMGET`` by ``refresh_indices``; a block's
entries computed together by ``rom._expect_block``) and native commands
(``rom._verify``); only the rows to write are read whole and loaded.

Each row's write is checked against the stored values it was computed from: a row changed
by a concurrent writer is read again and retried, a row deleted meanwhile is skipped, and
both are reported instead of stopping the job.
"""
from __future__ import annotations

from concurrent.futures import Executor, Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from ._connect import connect, to_text
from ._loader import mapping_builder
from ._relations import ManyToOne, _Unresolved
from ._scripts import lua
from ._session import session
from ._expect_block import bookkeeping_matches
from ._expect_fast import fast_expecter
from ._expect import (bookkeeping_problem, expected_entries, stored_bookkeeping_problem,
                      verify_entries)
from ._registry import NULL
from ._ttl import EXPIRY_FIELD
from ._write_plan import WritePlan, plan_write
from ._write_script import run_plans
from .exceptions import DataRaceError, EntityDeletedError, UniqueKeyViolation

__all__ = ['ReindexSummary', 'reindex_ids', 'job_expecter', 'read_rows', 'read_ahead', 'entity_from_row',
           'untracked', 'dangling_references']

_RETRIES = 5
_WRITE_BLOCKS = 20
_WRITES_PER_CALL = 200


@dataclass
class ReindexSummary:
    """What a reindex did besides rebuilding index entries (filled while the job runs)."""

    #: rows whose index entries were rewritten
    rows: int = 0
    #: column -> rows that lacked the field and got the column's declared default
    defaults: Dict[str, int] = field(default_factory=dict)
    #: reference column -> rows whose stored reference names a missing row (kept, not indexed)
    dangling: Dict[str, int] = field(default_factory=dict)
    #: rows written again after a concurrent writer changed them
    retried: int = 0
    #: ``(row key, reason)`` of rows left as they were
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    #: blocks left before rows are verified again instead of written outright (while most
    #: rows need writing, as when indexes are rebuilt from nothing, verifying is wasted)
    write_blocks: int = field(default=0, repr=False)
    #: the job's FastExpecter (False for a model without one; None before the first block)
    expecter: Any = field(default=None, repr=False, compare=False)

    def lines(self) -> List[str]:
        """Human-readable notes, one per kind of change (empty when there is nothing to say)."""
        out = []
        for attr, n in sorted(self.defaults.items()):
            out.append('%d row(s) lacked %r: its declared default was written' % (n, attr))
        for attr, n in sorted(self.dangling.items()):
            out.append('%d row(s) reference a missing row in %r: kept in the row, not indexed '
                       '(see check --fix)' % (n, attr))
        if self.retried:
            out.append('%d row(s) changed by a concurrent writer were read again and '
                       'reindexed' % (self.retried,))
        for key, reason in self.skipped:
            out.append('skipped %s: %s' % (key, reason))
        return out


@contextmanager
def untracked() -> Iterator[None]:
    """Run with this thread's session null, so loading references tracks nothing."""
    before = session.null_session
    session.null_session = True
    try:
        yield
    finally:
        del session.null_session
        if bool(session.null_session) != bool(before):
            session.null_session = before


def read_rows(model: Any, ids: Sequence[int]) -> List[Tuple[int, Dict[Any, Any]]]:
    """``(id, raw row)`` of the ids whose row exists, read in one atomic script call."""
    ns = model._namespace
    replies = lua('get_rows')(connect(model), ['%s:%d' % (ns, i) for i in ids], [0, 0])
    out = []
    for i, flat in zip(ids, replies):
        if flat:
            out.append((i, dict(zip(flat[::2], flat[1::2]))))
    return out


def read_ahead(pool: Executor, blocks: Iterable[Any], load: Callable[[Any], Any]
               ) -> Iterator[Tuple[Any, Any]]:
    """``(block, load(block))`` for each block, loading the next block in ``pool`` while the
    caller works on the current one (Redis and the network work while Python computes)."""
    previous: Optional[Tuple[Any, Future[Any]]] = None
    for block in blocks:
        future = pool.submit(load, block)
        if previous is not None:
            yield previous[0], previous[1].result()
        previous = (block, future)
    if previous is not None:
        yield previous[0], previous[1].result()


def entity_from_row(model: Any, row: Dict[Any, Any]) -> Any:
    """The entity ``Model.get`` builds from a raw ``HGETALL`` reply (not in the session).

    Raises what loading raises (``InvalidColumnValue`` for a value that does not convert,
    ``UnicodeDecodeError`` for a field name that is not UTF-8).
    """
    entity = None
    if row and isinstance(next(iter(row)), bytes):
        try:
            entity = mapping_builder(model)(model, row)
        except Exception:
            entity = None  # load_row below names the column and the value
    if entity is None:
        columns = model._columns
        values = {}
        for name, value in row.items():
            name = to_text(name)  # a field name that is not UTF-8 makes the row unloadable
            if name in columns:
                values[name] = to_text(value)
        entity = model(_loading=True, _bypass_session_entirely=True, **values)
    return entity


def _reference_columns(model: Any) -> List[Tuple[str, Any]]:
    cached = model.__dict__.get('_rom_reference_columns')
    if cached is None:
        cached = [(attr, col) for attr, col in model._columns.items()
                  if isinstance(col, ManyToOne)]
        setattr(model, '_rom_reference_columns', cached)
    return cached


def dangling_references(model: Any, entities: Sequence[Any]) -> List[Tuple[Any, str, str]]:
    """``(entity, attr, stored id)`` of every loaded reference naming a missing row.

    Resolves the block's references with one pipelined ``EXISTS`` per target row, and
    replaces a dangling reference by None in the entity's values (as loading it would),
    so that the index entries computed next leave it out.
    """
    refs = _reference_columns(model)
    if not refs:
        return []
    wanted: List[Tuple[Any, str, Any, str]] = []
    for entity in entities:
        for attr, col in refs:
            value = entity._data.get(attr)
            if isinstance(value, _Unresolved):
                target = col.get_related_model()
                if target is not None:
                    if target.__dict__.get('_shard_models'):  # sharding hook: its shard
                        target = target._shard_models[int(value.id) % len(target._shard_models)]
                    wanted.append((entity, attr, target, '%s:%s' % (target._namespace, value.id)))
    if not wanted:
        return []
    pipe = connect(model).pipeline(False)
    for _entity, _attr, target, key in wanted:
        pipe.exists(key)
    out = []
    for (entity, attr, _target, key), exists in zip(wanted, pipe.execute()):
        if not exists:
            entity._data[attr] = None
            out.append((entity, attr, key.rpartition(':')[2]))
    return out


def _index_only_plan(model: Any, entity: Any, row_fields: Sequence[str]) -> WritePlan:
    """The write of ``entity``'s index entries that changes none of its stored fields."""
    plan = plan_write(model, entity._last, entity._save_data(), incremental=False)
    stored = set(row_fields)
    defaults = [(attr, value) for attr, value in plan.hset if attr not in stored]
    absent = list(plan.absent)
    absent += [attr for attr, _ in defaults if attr not in absent]
    return plan._replace(hset=defaults, hdel=[], releases=[], absent=absent,
                         changes=len(defaults))


def _row_fields(row: Dict[Any, Any]) -> List[str]:
    return [to_text(name) for name in row]


def _unexpired(model: Any, conn: Any, rows: List[Tuple[int, Dict[Any, Any]]]
               ) -> List[Tuple[int, Dict[Any, Any]]]:
    """The rows that have not expired (models with ``_ttl``): an expired entity is invisible
    and waits for its removal; a reindex leaves it alone (and never changes expiry times)."""
    if getattr(model, '_ttl', None) is None or not rows:
        return rows
    from ._expiry_audit import is_expired, server_ms  # (imports this module's importer)
    now = server_ms(conn)

    def expired(row: Dict[Any, Any]) -> bool:
        value = row.get(EXPIRY_FIELD.encode(), row.get(EXPIRY_FIELD))
        return value is not None and is_expired({EXPIRY_FIELD: value}, now)

    return [(i, row) for i, row in rows if not expired(row)]


def _default_columns(model: Any) -> List[str]:
    """The stored columns whose declared default a load applies to a missing field."""
    cached = model.__dict__.get('_rom_default_columns')
    if cached is None:
        cached = [attr for attr, col in model._columns.items()
                  if getattr(col, '_default', NULL) not in (NULL, None)]
        setattr(model, '_rom_default_columns', cached)
    return cached


def _sort_values(model: Any, conn: Any, fast: Any, values: List[Tuple[int, List[Any]]],
                 checks: List[Tuple[str, Any]], known: Dict[int, Optional[Dict[Any, Any]]]
                 ) -> Tuple[List[int], Any]:
    """Rows read as values: healthy-looking ones go to ``checks`` (to verify in Redis) and
    ``known``; returns the ids to read whole (to write, or for the entity path to judge)
    and ``(id texts, entries)`` of the rows computed as one block (their entries in a
    :class:`rom._verify.Block`, to verify with ``checks``; None when there is none)."""
    now = None
    if getattr(model, '_ttl', None) is not None:
        from ._expiry_audit import is_expired, server_ms  # (imports this module's importer)
        now = server_ms(conn)
    slow = []
    pkey, index, expiry = fast.pkey_pos, fast.index_pos, fast.expiry_pos
    rows = []
    for i, row in values:
        if row[pkey] is None:
            slow.append(i)  # missing, or lacking its primary key
            continue
        if now is not None and row[expiry] is not None and is_expired(
                {EXPIRY_FIELD: row[expiry]}, now):
            continue  # expired: left alone (see _unexpired)
        if fast.lacks_default(row):
            slow.append(i)
        else:
            rows.append((i, row))
    computed = fast.expect_block(rows) if rows else None
    if computed is not None and bookkeeping_matches(computed[0], [row[index] for _i, row in rows],
                                                    computed[1]):
        for i, _row in rows:
            known[i] = None
        return slow, computed
    for i, row in rows:  # row by row: which rows' bookkeeping calls for a write
        exp = fast.expect(row)
        if exp is not None and stored_bookkeeping_problem(row[index], exp) is None:
            checks.append((str(i), exp))
            known[i] = None
        else:
            slow.append(i)
    return slow, None


def _lacks_default(model: Any, row: Dict[Any, Any]) -> bool:
    """Whether the row lacks a field whose column declares a default (a reindex writes it)."""
    for attr in _default_columns(model):
        if attr.encode() not in row and attr not in row:
            return True
    return False


def job_expecter(model: Any, summary: ReindexSummary) -> Any:
    """The job's :class:`~rom._expect_fast.FastExpecter` (None for models without one)."""
    if summary.expecter is None:
        summary.expecter = fast_expecter(model) or False
    return summary.expecter or None


def _entities(model: Any, rows: Sequence[Tuple[int, Dict[Any, Any]]], summary: ReindexSummary
              ) -> List[Tuple[int, Any, Dict[Any, Any]]]:
    """``(id, entity, row)`` of the rows that load; the others go to ``summary.skipped``."""
    out = []
    for i, row in rows:
        try:
            out.append((i, entity_from_row(model, row), row))
        except Exception as exc:
            summary.skipped.append(('%s:%d' % (model._namespace, i), 'cannot be loaded: %s: %s'
                                    % (type(exc).__name__, exc)))
    return out


def _needs_write(model: Any, i: int, row: Dict[Any, Any], entity: Any, legacy: bool,
                 checks: List[Tuple[str, Any]]) -> bool:
    """Whether the row's bookkeeping (or a missing defaulted field) calls for a write; when
    not, its expected entries go to ``checks`` to be verified in Redis."""
    if legacy or _lacks_default(model, row):
        return True  # legacy ``<ns>::`` bookkeeping: the write migrates it
    exp = expected_entries(model, entity, str(i))
    if bookkeeping_problem(row, None, exp) is not None:
        return True
    checks.append((str(i), exp))
    return False


def _apply(conn: Any, ns: str, plans: List[Tuple[int, WritePlan]], summary: ReindexSummary
           ) -> Tuple[int, List[int]]:
    """Run the plans (one script call when nothing fails); returns the rows written and the
    ids a concurrent writer changed since they were read (to read and plan again)."""
    written = 0
    raced: List[int] = []
    pending = plans
    while pending:
        # at most _WRITES_PER_CALL rows per script call: a long call would delay every
        # other client of the server
        applied, failure = run_plans(conn, [plan for _, plan in pending[:_WRITES_PER_CALL]])
        for _i, plan in pending[:applied]:
            for attr, _value in plan.hset:
                summary.defaults[attr] = summary.defaults.get(attr, 0) + 1
        written += applied
        if failure is None:
            pending = pending[applied:]
            continue
        failed = pending[applied][0]
        key = '%s:%d' % (ns, failed)
        if isinstance(failure, EntityDeletedError):
            summary.skipped.append((key, 'deleted by a concurrent writer while reindexing'))
        elif isinstance(failure, DataRaceError):
            raced.append(failed)
        elif isinstance(failure, UniqueKeyViolation):
            summary.skipped.append((key, 'not reindexed: %s' % (failure,)))
        else:  # pragma: no cover - run_plans returns only the errors above
            raise failure
        pending = pending[applied + 1:]
    return written, raced


def reindex_ids(model: Any, ids: Sequence[int], summary: ReindexSummary,
                legacy: bool = True,
                rows: Optional[List[Tuple[int, Dict[Any, Any]]]] = None,
                values: Optional[List[Tuple[int, List[Any]]]] = None) -> int:
    """Rewrite the index entries of the rows ``ids`` that need it (missing rows are skipped).

    A row whose ``-index-data-`` already lists what its values call for and whose entries
    are all in Redis with the right scores is left alone (writing it would change nothing);
    the others are written. ``legacy=False`` says the model has no legacy ``<ns>::``
    bookkeeping (then rows can be verified instead of rewritten). Two or three round trips
    per call when nothing races; returns the rows handled. Never raises for one row's
    trouble: it goes into ``summary.skipped``. ``rows`` are the rows of ``ids`` when the
    caller read them already (:func:`read_rows`), or ``values`` their values as
    :meth:`~rom._expect_fast.FastExpecter.read` reads them.
    """
    conn = connect(model)
    ns = model._namespace
    written = 0
    todo = list(ids)
    attempt = 0
    while todo and attempt < _RETRIES:
        attempt += 1
        with untracked():
            write_all = legacy or summary.write_blocks > 0
            if summary.write_blocks > 0 and attempt == 1:
                summary.write_blocks -= 1
            fast = None if write_all else job_expecter(model, summary)
            checks: List[Tuple[str, Any]] = []
            block = None
            known: Dict[int, Optional[Dict[Any, Any]]] = {}  # verified in Redis below
            if fast is not None and values is not None and attempt == 1:
                slow_ids, block = _sort_values(model, conn, fast, values, checks, known)
                rows = read_rows(model, slow_ids) if slow_ids else []
                slow = _unexpired(model, conn, rows)
            else:
                if rows is None or attempt > 1:
                    rows = read_rows(model, todo)
                rows = _unexpired(model, conn, rows)
                slow = rows
                if fast is not None:
                    slow = []
                    for i, row in rows:
                        row_values = fast.values(row)
                        exp = None if fast.lacks_default(row_values) else fast.expect(row_values)
                        if exp is None:
                            slow.append((i, row))
                        elif stored_bookkeeping_problem(row_values[fast.index_pos], exp) is None:
                            checks.append((str(i), exp))
                            known[i] = row
                        else:
                            slow.append((i, row))  # written: built as an entity below
            entities = _entities(model, slow, summary)
            dangling = dangling_references(model, [e for _, e, _ in entities])
            writes = []
            for i, entity, row in entities:
                try:
                    if write_all or _needs_write(model, i, row, entity, legacy, checks):
                        writes.append((i, entity, row))
                except Exception as exc:
                    summary.skipped.append(('%s:%d' % (ns, i), 'cannot be indexed: %s: %s'
                                            % (type(exc).__name__, exc)))
            wrong = {int(problem[1]) for problem in verify_entries(
                conn, ns, checks, block=block[1] if block else None)}
            written += len(checks) + (len(block[0]) if block else 0) - len(wrong)
            writes += [(i, entity, row) for i, entity, row in entities if i in wrong]
            wrong_known = sorted(i for i in wrong if i in known)
            reread = [i for i in wrong_known if known[i] is None]
            again = dict(read_rows(model, reread)) if reread else {}
            writes += _entities(model, [(i, known[i] or again[i]) for i in wrong_known
                                        if known[i] is not None or i in again], summary)
            if not write_all and len(writes) * 2 > len(todo) >= 10:
                summary.write_blocks = _WRITE_BLOCKS
            plans: List[Tuple[int, WritePlan]] = []
            for i, entity, row in writes:
                try:
                    plans.append((i, _index_only_plan(model, entity, _row_fields(row))))
                except Exception as exc:
                    summary.skipped.append(('%s:%d' % (ns, i), 'cannot be indexed: %s: %s'
                                            % (type(exc).__name__, exc)))
        applied, raced = _apply(conn, ns, plans, summary)
        written += applied
        done_ids = set(todo) - set(raced)
        for entity, attr, _stored in dangling:
            if int(entity._data[entity._pkey]) in done_ids:
                summary.dangling[attr] = summary.dangling.get(attr, 0) + 1
        summary.retried += len(raced)
        todo = raced
    for i in todo:
        summary.skipped.append(('%s:%d' % (ns, i), 'changed by concurrent writers %d times '
                                'in a row; not reindexed' % (_RETRIES,)))
    summary.rows += written
    return written
