"""Maintenance jobs: rebuild indexes, clean up data left by deleted rows, show progress.

``refresh_indices`` rewrites the index entries and ``-index-data-`` of every row of a
model from its stored values (migrating legacy ``<ns>::`` bookkeeping; see ``_reindex``); ``clean_old_index`` removes
legacy bookkeeping and unique-index fields of rows that are gone; ``clean_unsafe_cols``
deletes ``UnsafeColumn`` keys of rows that are gone. The long jobs are generators of
``(done, total)`` pairs; ``show_progress`` displays them. Every helper works with clients
that decode responses (``str`` replies) as well as with byte clients, and compares cursors
numerically.
"""
from __future__ import annotations

import re
import sys
from concurrent.futures import ThreadPoolExecutor
import time
import warnings
from typing import (Any, Callable, Generator, Iterable, Iterator, List, Optional, TextIO,
                    Tuple)

from redis.exceptions import ResponseError

from ._cluster import is_cluster_client
from ._connect import connect, to_text
from ._scripts import lua
from ._session import session
from ._registry import MODELS
from ._maint_io import usable
from ._reindex import ReindexSummary, job_expecter, read_ahead, read_rows, reindex_ids

__all__ = [
    'refresh_indices', 'refresh_all_indexes', 'clean_old_index', 'clean_unsafe_cols',
    'show_progress', '_get_row_ids', 'ProgressLine', 'scan_pattern', 'row_id_of',
]

_DIGITS = re.compile(r'[0-9]+\Z')
_INDEX_SUFFIXES = ('idx', 'uidx', 'pre', 'suf', 'geo')
_GLOB_SPECIALS = re.compile(r'([*?\[\]\\])')


# --------------------------------------------------------------------------- small helpers

def scan_pattern(namespace: str) -> str:
    """The SCAN MATCH pattern ``<ns>:*`` with glob characters of the namespace escaped."""
    return _GLOB_SPECIALS.sub(r'\\\1', namespace) + ':*'


def _key_text(key: Any) -> Optional[str]:
    """A key name as text, or None when it is not valid UTF-8 (then it is none of ours)."""
    try:
        return to_text(key)
    except UnicodeDecodeError:
        return None


def row_id_of(key: Any, prefix: str) -> Optional[int]:
    """The id of a row key ``<ns>:<digits>`` (``prefix`` is ``'<ns>:'``), else None."""
    text = _key_text(key)
    if text is None or not text.startswith(prefix):
        return None
    rest = text[len(prefix):]
    return int(rest) if _DIGITS.match(rest) else None


def _counter(conn: Any, model: Any) -> int:
    """The model's id counter ``<ns>:<pk>:`` (0 when missing)."""
    value = conn.get('%s:%s:' % (model._namespace, model._pkey))
    return int(value) if value else 0


def _scan_pages(conn: Any, match: str, count: int) -> Iterator[List[Any]]:
    """Every SCAN page (possibly empty) from cursor 0 until the cursor returns to 0.

    On a Redis Cluster client, every master is scanned in turn (each with its own cursor).
    """
    nodes = conn.get_primaries() if is_cluster_client(conn) else [None]
    for node in nodes:
        extra = {} if node is None else {'target_nodes': node}
        cursor = 0
        while True:
            cursor, keys = conn.scan(cursor, match=match, count=count, **extra)
            if isinstance(cursor, dict):  # a cluster client keys cursors by node name
                cursor = next(iter(cursor.values()))
            yield list(keys)
            if int(cursor) == 0:
                break


# --------------------------------------------------------------------------- row ids

def _get_row_ids(model: Any, block_size: int) -> Iterator[List[int]]:
    """Yield lists of the ids of existing rows of ``model``, found with SCAN.

    Keeps scanning until the cursor comes back to 0, skipping pages that matched nothing
    (fix of reference bug util #3). SCAN may repeat keys, so ids can repeat.
    """
    conn = connect(model)
    prefix = model._namespace + ':'
    raw = prefix.encode('utf-8')
    start = len(raw)
    for keys in _scan_pages(conn, scan_pattern(model._namespace), block_size):
        ids = []
        for key in keys:
            if type(key) is bytes:  # the usual reply: ASCII digits after the prefix
                if key.startswith(raw) and key[start:].isdigit():
                    ids.append(int(key[start:]))
                continue
            i = row_id_of(key, prefix)
            if i is not None:
                ids.append(i)
        if ids:
            yield ids


# --------------------------------------------------------------------------- refresh

def _commit_pending() -> None:
    """Commit what the calling thread's session tracks (compat: rom 1.1.2's reindex commits
    the whole session after each block)."""
    if not session.null_session and session.known:
        session.commit(all=True)


def refresh_indices(model: Any, block_size: int = 100, scan: bool = True,
                    summary: Optional[ReindexSummary] = None) -> Iterator[Tuple[int, int]]:
    """Rebuild the index entries of every row of ``model``; yields ``(done, total)``.

    Each row is read as stored and only its index entries and ``-index-data-`` are
    rewritten: no stored field changes, except that a field the row lacks is given its
    column's declared default (what a re-save stores). A reference to a missing row stays
    in the row and loses its index entry. Rows changed by a concurrent writer are retried,
    rows deleted meanwhile skipped; pass a :class:`~rom._reindex.ReindexSummary` as
    ``summary`` to learn about all of these.

    ``total`` is the id counter. With ``scan=True`` the rows are found with SCAN and
    ``done`` counts the ids handled so far (it may exceed ``total``); with ``scan=False``
    the ids ``1..total`` are walked in blocks. Anything the calling thread's session
    tracks is committed after each block (rom 1.1.2 compatibility).
    """
    conn = connect(model)
    pipe = conn.pipeline(False)
    pipe.get('%s:%s:' % (model._namespace, model._pkey))
    pipe.exists(model._namespace + '::')
    counter, legacy = pipe.execute()
    total = int(counter) if counter else 0
    block_size = max(block_size, 10)
    if summary is None:
        summary = ReindexSummary()
    if scan:
        done = 0
        fast = None if legacy or not usable(conn) else job_expecter(model, summary)

        def load(ids: List[int]) -> Tuple[Any, Any]:
            # rows as values for the fast path, unless the job is writing every row
            if fast is not None and summary.write_blocks == 0:
                return None, fast.read(conn, ids)
            return read_rows(model, ids), None

        with ThreadPoolExecutor(max_workers=1) as pool:
            for block, (rows, values) in read_ahead(pool, _get_row_ids(model, block_size),
                                                    load):
                reindex_ids(model, block, summary, bool(legacy), rows, values)
                _commit_pending()
                done += len(block)
                yield done, total
        return
    for k, start in enumerate(range(1, total + 1, block_size)):
        reindex_ids(model, range(start, min(start + block_size, total + 1)), summary,
                    bool(legacy))
        _commit_pending()
        # Fix of reference bug util #4: progress from the id offset, not the block number.
        yield min((k + 1) * block_size, total), total


def refresh_all_indexes() -> None:
    """Refresh the indexes of every registered model, showing progress on stdout."""
    for model in list(MODELS.values()):
        print('Updating indexes of model %s' % (model._namespace,))
        show_progress(refresh_indices(model))


# --------------------------------------------------------------------------- clean_old_index

def _server_has_hscan(conn: Any) -> bool:
    try:
        info = conn.info('server')
    except ResponseError:  # INFO disabled (some hosted servers): every current Redis has HSCAN
        return True
    version = to_text(info.get('redis_version', '0.0'))
    parts = (str(version).split('.') + ['0', '0'])[:2]
    try:
        major, minor = int(parts[0]), int(parts[1])
    except ValueError:
        return True
    return (major, minor) >= (2, 8)


def _unique_names(model: Any) -> List[str]:
    names = list(model._unique or ())
    names.extend(':'.join(cols) for cols in (model._cunique or ()))
    return names


def clean_old_index(model: Any, block_size: int = 100, **kwargs: Any
                    ) -> Iterator[Tuple[int, int]]:
    """Remove index data of rows that no longer exist; yields ``(done, total)``.

    Cleans the legacy ``<ns>::`` bookkeeping (removing the index entries it lists, geo
    members included) and the unique-index fields that map to missing rows. The keyword
    ``force_hscan`` (default ``False``) forces the HSCAN path when true and forces the
    fallback path (legacy data only) when ``None``.
    """
    force_hscan = kwargs.get('force_hscan', False)
    conn = connect(model)
    ns = model._namespace
    legacy = ns + '::'
    block_size = max(block_size, 10)
    has_hscan = _server_has_hscan(conn)
    if (has_hscan or force_hscan) and force_hscan is not None:
        yield from _clean_hscan(conn, model, ns, legacy, block_size)
        return
    if _unique_names(model):
        if has_hscan:
            reason = 'HSCAN use was turned off (force_hscan=None)'
        else:
            reason = 'the Redis server is older than 2.8 and has no HSCAN'
        warnings.warn('clean_old_index(%s): stale unique index entries will not be cleaned '
                      'because %s' % (ns, reason), UserWarning, stacklevel=2)
    total = _counter(conn, model)
    for start in range(1, total + 1, block_size):
        ids = list(range(start, min(start + block_size, total + 1)))
        pipe = conn.pipeline(True)
        for i in ids:
            pipe.exists('%s:%d' % (ns, i))
            pipe.hexists(legacy, str(i))
        replies = pipe.execute()
        orphans = [i for n, i in enumerate(ids)
                   if not replies[2 * n] and replies[2 * n + 1]]
        if orphans:
            lua('clean_legacy')(conn, (), [ns] + orphans, route=legacy)
        yield min(start + block_size, total - 1), total
    yield total, total


def _clean_hscan(conn: Any, model: Any, ns: str, legacy: str, block_size: int
                 ) -> Iterator[Tuple[int, int]]:
    total = int(conn.hlen(legacy))

    def legacy_page(cursor: Any) -> Any:
        cursor, missing = lua('hscan_missing_rows')(conn, [legacy], [cursor, block_size, ns])
        if missing:
            lua('clean_legacy')(conn, (), [ns] + list(missing), route=legacy)
        return cursor

    done, total = yield from _cursor_pages(legacy_page, block_size, 0, total)
    for name in _unique_names(model):
        key = '%s:%s:uidx' % (ns, name)

        def unique_page(cursor: Any, key: str = key) -> Any:
            return lua('clean_unique')(conn, [key], [cursor, block_size, ns])[0]

        done, total = yield from _cursor_pages(unique_page, block_size, done, total)
    yield total, total


def _cursor_pages(run_page: Callable[[Any], Any], block_size: int, done: int, total: int
                  ) -> Generator[Tuple[int, int], None, Tuple[int, int]]:
    """Run ``run_page(cursor)`` (returns the next cursor) from cursor 0 until it returns 0,
    yielding progress ``(done, total)`` after each page; returns the final pair."""
    cursor: Any = 0
    while True:
        cursor = run_page(cursor)
        done += block_size
        if done > total:
            total = done + 1
        yield done, total
        if int(cursor) == 0:
            return done, total


# --------------------------------------------------------------------------- clean_unsafe_cols

def _unsafe_candidate(key: Any, prefix: str) -> Optional[Tuple[str, str]]:
    """``(key text, row key)`` when ``key`` is ``<ns>:<id>:<attr>`` for this namespace."""
    text = _key_text(key)
    if text is None or not text.startswith(prefix):
        return None
    parts = text[len(prefix):].split(':')
    if len(parts) != 2 or not _DIGITS.match(parts[0]):
        return None
    if not parts[1] or parts[1] in _INDEX_SUFFIXES:
        return None
    return text, prefix + parts[0]


def clean_unsafe_cols(*models: Any, block_size: int = 1000) -> Tuple[int, int]:
    """Delete ``UnsafeColumn`` keys whose entity row is gone; returns ``(examined, deleted)``.

    Raises:
        ValueError: when no model is given.
    """
    if not models:
        raise ValueError('clean_unsafe_cols() needs at least one model to clean')
    block_size = max(block_size, 1)
    examined = deleted = 0
    for model in models:
        conn = connect(model)
        prefix = model._namespace + ':'
        for keys in _scan_pages(conn, scan_pattern(model._namespace), block_size):
            examined += len(keys)
            args: List[str] = []
            for key in keys:
                candidate = _unsafe_candidate(key, prefix)
                if candidate is not None:
                    args.extend(candidate)
            if args:
                deleted += int(lua('clean_unsafe')(conn, (), args, route=prefix))
    return examined, deleted


# --------------------------------------------------------------------------- progress

class ProgressLine:
    """Renders ``(done, total)`` pairs on one terminal line, rewritten in place.

    Each display shows the percentage, elapsed seconds and estimated remaining seconds
    (one decimal each), the counts and the rate; ``bar`` adds a bar of that many cells and
    ``label`` a leading text. ``stream`` defaults to the current ``sys.stdout``.
    """

    def __init__(self, stream: Optional[TextIO] = None, bar: int = 0,
                 interval: float = 0.1, label: str = '') -> None:
        self.stream = stream
        self.bar = bar
        self.label = label
        self.interval = interval
        self.start = time.time()
        self.last_shown: Optional[float] = None
        self.width = 0
        self.rate_done: Optional[Tuple[int, int]] = None

    def update(self, done: int, total: int, final: bool = False) -> bool:
        """Show the pair when 0.1 s passed since the last display or it is complete."""
        now = time.time()
        due = self.last_shown is None or now - self.last_shown > self.interval
        if not (due or done >= total):
            if not final:
                self.rate_done = (done, total)
            return False
        self.last_shown = now
        if not final:
            self.rate_done = (done, total)
        self.show(done, total, now)
        return True

    def line(self, done: int, total: int, now: float) -> str:
        """The text of one display (without the carriage return)."""
        elapsed = max(now - self.start, 0.0001)
        percent = 100.0 * done / (total or 1)
        remaining = total * elapsed / (done or 1) - elapsed
        # The closing (1, 1) display keeps the counts and rate of the job's last pair.
        counts = self.rate_done or (done, total)
        rate = counts[0] / elapsed
        text = '%.1f%% done, %.1fs elapsed, %.1fs remaining (%d/%d, %.1f/s)' % (
            percent, elapsed, remaining, counts[0], counts[1], rate)
        if self.bar:
            filled = int(round(self.bar * min(max(percent, 0.0), 100.0) / 100.0))
            text = '[%s%s] %s' % ('#' * filled, '-' * (self.bar - filled), text)
        return self.label + text if self.label else text

    def show(self, done: int, total: int, now: Optional[float] = None) -> None:
        """Write one display, padded over the previous one, ending with a carriage return."""
        text = self.line(done, total, time.time() if now is None else now)
        padding = ' ' * max(self.width - len(text), 0)
        self.width = len(text)
        stream = self.stream if self.stream is not None else sys.stdout
        stream.write(text + padding + '\r')
        stream.flush()

    def finish(self) -> None:
        """Show the final 100 % display and end the line."""
        self.update(1, 1, final=True)
        stream = self.stream if self.stream is not None else sys.stdout
        stream.write('\n')
        stream.flush()


def show_progress(job: Iterable[Tuple[int, int]]) -> None:
    """Consume ``(done, total)`` pairs, showing percent, elapsed and remaining on stdout."""
    progress = ProgressLine()
    for done, total in job:
        progress.update(done, total)
    progress.finish()
