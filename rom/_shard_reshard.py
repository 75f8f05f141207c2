"""Resharding: move a sharded model's rows from its stored shard count to another.

``python -m rom reshard myapp.models:User --shards 64 [--dry-run]`` (``rom._shard_cli``).

Protocol (a documented **pause**: application processes refuse the model while it runs):

1. ``{<base>}:shards`` becomes ``'resharding <old> <new>'``: every process that checks the
   model's metadata (first use per process) raises ``ORMError`` until the job is done;
   processes that already use the model must be stopped (or kept from writing) first.
2. For the ids ``1 .. <id counter>`` in blocks, each row whose shard changes
   (``id % old != id % new``) is written into its new shard (one atomic script call: row,
   indexes, per-shard unique index), then deleted from its old shard (another one). A crash
   between the two leaves the row in both; running the job again (``{<base>}:shards`` still
   says which move) moves it again and deletes the old copy, so the job is re-runnable.
3. ``{<base>}:shards`` becomes the new count. Declare ``_shards = <new>`` and restart.

Global unique claims name ids, not shards, and the id counter is global: neither moves.
"""
from __future__ import annotations

from typing import Any, Iterator, List, NamedTuple, Optional, Tuple

from . import _shard_unique
from ._connect import connect, to_text
from ._limits import MAX_BLOCK_SIZE, MAX_SHARDS, size_problem
from ._shard import meta_key, shard_class
from ._write_plan import plan_write
from ._write_script import run_plans
from .exceptions import ORMError

__all__ = ['ReshardSummary', 'reshard', 'stored_layout']


class ReshardSummary(NamedTuple):
    """What a reshard moved (or, dry run, would move)."""
    old: int
    new: int
    rows: int   # rows seen
    moved: int  # rows whose shard changed


def stored_layout(public: Any, conn: Any) -> Tuple[int, Optional[int]]:
    """``(shards the data is in, target of an unfinished reshard or None)``."""
    raw = conn.get(meta_key(public))
    if raw is None:
        return len(public._shard_models), None
    text = to_text(raw)
    if text.startswith('resharding '):
        _, old, new = text.split()
        return int(old), int(new)
    return int(text), None


def _move(conn: Any, entity: Any, target: Any) -> None:
    data = dict(entity._data)
    _shard_unique._state.preview = True  # the global claims name the id: they stay
    try:
        write = plan_write(target, {}, data, full=True, is_new=True, force=True)
        remove = plan_write(type(entity), entity._last, {}, delete=True)
    finally:
        _shard_unique._state.preview = False
    for plan in (write, remove):  # write the new copy first: a crash leaves two, never none
        _, failure = run_plans(conn, [plan])
        if failure is not None:
            raise failure


def reshard(public: Any, shards: int, dry_run: bool = False, block_size: int = 500,
            summary: Optional[List[ReshardSummary]] = None) -> Iterator[Tuple[int, int]]:
    """Move ``public``'s rows to ``shards`` shards; yields ``(ids done, ids total)``.

    With ``summary`` (a list), the :class:`ReshardSummary` is appended to it at the end.
    """
    for what, value, high in (('the shard count', shards, MAX_SHARDS),
                              ('block_size', block_size, MAX_BLOCK_SIZE)):
        problem = size_problem(value, high)
        if problem:
            raise ORMError('reshard: %s %s' % (what, problem))
    conn = connect(public)
    old, pending = stored_layout(public, conn)
    if pending is not None and pending != shards:
        raise ORMError('%s: an unfinished reshard from %d to %d shards; finish it first (run '
                       'it again with --shards %d)' % (public.__name__, old, pending, pending))
    key = meta_key(public)
    if not dry_run and old != shards:
        conn.set(key, 'resharding %d %d' % (old, shards))
    last = int(conn.get('%s:%s:' % (public._namespace, public._pkey)) or 0)
    rows = moved = 0
    from ._session import session
    for start in range(1, last + 1, block_size):
        by_shard: dict = {}
        for ident in range(start, min(start + block_size, last + 1)):
            by_shard.setdefault(ident % old, []).append(ident)
        for k, shard_ids in by_shard.items():
            for entity in shard_class(public, k)._fetch(shard_ids, track=False):
                if entity is None:
                    continue
                rows += 1
                session.forget(entity)
                target = shard_class(public, entity.id % shards)
                if target is type(entity):
                    continue
                moved += 1
                if not dry_run:
                    _move(conn, entity, target)
        yield min(start + block_size - 1, last), last
    if not dry_run:
        conn.set(key, shards)
    if summary is not None:
        summary.append(ReshardSummary(old, shards, rows, moved))
