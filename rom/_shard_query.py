"""Queries over sharded models: the same builder, scattered to every shard and gathered.

``User.query`` of a sharded model is a :class:`ShardedQuery`: it builds and validates like a
``Query`` (it wraps one over the public class) and runs each terminal call on every shard:

* the per-shard work is the unsharded model's own (``GeneralIndex`` of each shard class),
  recorded and sent in one round trip per master, masters in parallel (``rom._shard_batch``);
* ``count`` sums the shards' counts;
* results are merged by the order the unsharded query has: each shard returns its working
  set's ``(score, member)`` pairs (``ZRANGE ... WITHSCORES``) and a k-way merge orders them
  by score, then member bytes, as one sorted set would. With ``limit(offset, count)`` each
  shard returns at most ``offset + count`` entries (deep offsets cost S x (offset + count));
  :meth:`ShardedQuery.page` pages by cursor at a cost independent of the depth.
"""
from __future__ import annotations

import heapq
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from . import _session
from ._connect import connect, to_text
from ._helpers import MAX_RANK
from ._keyset import Page, parse_cursor
from ._ops_query import _need_filters
from ._records import Geofilter, Pattern, Prefix, Suffix
from ._shard_batch import Job, build_all, record_op, record_script, record_steps, run_jobs
from ._select import _get_column_data, _select_generator
from .exceptions import QueryError, ShardedAsyncError

_NO_LIMIT = 2 ** 64
_ASYNC = ('acount', 'acached_result', 'aall', 'aexecute', 'aselect', 'afirst', 'aexists',
          'apage', 'adelete', 'aiter_result')
_BUILDERS = ('filter', 'startswith', 'endswith', 'like', 'near', 'order_by', 'limit', 'select',
             'replace')


def _pairs(reply: Sequence[Any]) -> List[Tuple[float, bytes, Any]]:
    """``(score, member bytes, member)`` of a ``WITHSCORES`` reply (flat, or as pairs when
    the client parsed it)."""
    if reply and isinstance(reply[0], (list, tuple)):
        items: List[Any] = [(m, s) for m, s in reply]
    else:
        items = [(reply[i], reply[i + 1]) for i in range(0, len(reply), 2)]
    out = []
    for member, score in items:
        raw = member.encode('utf-8') if isinstance(member, str) else member
        out.append((float(score), raw, member))
    return out


def _direct_jobs(shards: Sequence[Any], filters: Sequence[Any], order_by: Optional[str],
                 size: int) -> Optional[List[Job]]:
    """Jobs reading each shard's first ``size`` entries straight from one scored index (an
    ``order_by`` without filters, or one range filter), or None when the query needs a
    working set."""
    jobs: List[Job] = []
    for shard in shards:
        plan = shard._gindex._direct(filters, order_by)
        if plan is None:
            return None
        jobs.append((shard, record_script('shard_top', [plan.key], [
            plan.lo, plan.hi, '1' if plan.desc else '0', size]), False))
    return jobs


def _scored_all(conn: Any, shards: Sequence[Any], filters: Sequence[Any],
                order_by: Optional[str], size: Optional[int]) -> List[List[Any]]:
    """Per shard: the first ``size`` (None: all) entries of its result with their scores,
    as ``(score, member bytes, member)`` in the shard's result order."""
    jobs = _direct_jobs(shards, filters, order_by, size) if size is not None else None
    if jobs is not None:
        sign = -1.0 if order_by and order_by.startswith('-') else 1.0
        return [[(sign * score, raw, member) for score, raw, member in _pairs(reply)]
                for reply in run_jobs(conn, jobs)]
    end = -1 if size is None else min(size - 1, MAX_RANK)

    def build(shard: Any, client: Any) -> List[Any]:
        work, temp = record_op(client, shard._gindex.op_build(shard, filters, order_by))
        work.command('ZRANGE', temp, 0, end, 'WITHSCORES')
        work.command('DEL', temp)
        return record_steps(work.steps)

    bodies = build_all(conn, shards, build)
    replies = run_jobs(conn, [(shard, body, True) for shard, body in zip(shards, bodies)])
    return [_pairs(reply[-2]) for reply in replies]


class ShardedQuery:
    """A ``Query`` over a sharded model (``Model.query`` when the model sets ``_shards``)."""

    __slots__ = ('_query',)

    def __init__(self, query: Any) -> None:
        self._query = query

    def __repr__(self) -> str:
        return '<Sharded%s' % (repr(self._query)[1:],)

    def __getattr__(self, name: str) -> Any:
        if name in _BUILDERS:
            method = getattr(self._query, name)

            def build(*args: Any, **kwargs: Any) -> ShardedQuery:
                # the builder's warnings name the caller's line, as on an unsharded query
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter('always')
                    built = method(*args, **kwargs)
                for warning in caught:
                    warnings.warn(warning.message, warning.category, stacklevel=2)
                return ShardedQuery(built)
            return build
        if name in ('_model', '_filters', '_order_by', '_limit', '_select'):
            return getattr(self._query, name)
        if name in _ASYNC or name == 'prefetch':
            raise ShardedAsyncError('%s.query.%s(): not supported on sharded models yet; use '
                                    'the blocking query' % (self._query._model.__name__, name))
        raise AttributeError(name)

    def __aiter__(self) -> Any:
        raise ShardedAsyncError('async for over a query of the sharded model %s: not supported '
                                'yet; iterate the blocking query' % (self._query._model.__name__,))

    # -- helpers ---------------------------------------------------------------------------
    @property
    def _shards(self) -> Sequence[Any]:
        return self._query._model._shard_models

    def _conn(self) -> Any:
        from ._shard import check_metadata
        model = self._query._model
        conn = connect(model)
        check_metadata(model, conn)
        return conn

    def _geo_resolved(self) -> 'ShardedQuery':
        """The query with each ``near(..., count)`` made global: every shard's ``count``
        nearest are read (one round), and the filter becomes a radius up to the ``count``-th
        nearest of them all (entities at that very distance, to 0.0001 units, all match)."""
        filters = list(self._query._filters)
        spots = [i for i, f in enumerate(filters) if isinstance(f, Geofilter) and f.count and
                 f.count > 0]
        if not spots:
            return self
        conn = self._conn()
        for i in spots:
            flt = filters[i]
            jobs: List[Job] = [(shard, [(
                'GEORADIUS', '%s:%s:geo' % (shard._namespace, flt.name), repr(flt.lon),
                repr(flt.lat), flt.radius, flt.measure, 'WITHDIST', 'COUNT', flt.count, 'ASC')],
                False) for shard in self._shards]
            dists = sorted(float(d) for reply in run_jobs(conn, jobs) for _, d in reply)
            radius = flt.radius if len(dists) < flt.count else min(
                float(flt.radius), dists[flt.count - 1] + 0.0001)
            filters[i] = flt._replace(radius=radius, count=None)
        return ShardedQuery(self._query.replace(filters=tuple(filters)))

    def _bounds(self) -> Tuple[int, int]:
        offset, count = self._query._bounds()
        return max(offset, 0), count

    def _merged(self, size: Optional[int]) -> List[Any]:
        """The ids of the whole result in result order (the first ``size`` only)."""
        query, conn = self._query, self._conn()
        parts = _scored_all(conn, self._shards, query._filters, query._order_by, size)
        out = []
        for _score, _raw, member in heapq.merge(*parts, key=lambda e: (e[0], e[1])):
            out.append(member)
            if size is not None and len(out) >= size:
                break
        return out

    def _items(self, ids: Sequence[Any]) -> List[Any]:
        """Entities (or select rows) of ``ids``, in that order, missing rows dropped."""
        if not ids:
            return []
        model = self._query._model
        select = self._query._select
        if select is None:
            return [obj for obj in model._fetch(ids, track=False) if obj is not None]
        from ._shard import shard_of
        conn = connect(model)
        names = select[0]
        pk_at = list(names).index(model._pkey)
        groups: Dict[Any, List[Any]] = {}
        for ident in ids:
            groups.setdefault(shard_of(model, to_text(ident)), []).append(ident)
        rows: Dict[str, List[Any]] = {}
        for shard, shard_ids in groups.items():
            for row in _get_column_data(conn, shard, names, ids=shard_ids)[1]:
                rows[to_text(row[pk_at])] = row
        wanted = [str(i) if isinstance(i, int) else to_text(i) for i in ids]  # (probe: ints)
        ordered = [rows[i] for i in wanted if i in rows]
        return list(_select_generator(model, select, ordered))

    # -- terminal calls ----------------------------------------------------------------------
    def count(self) -> int:
        """The number of matches: the sum of the shards' counts."""
        self = self._geo_resolved()
        query = self._query
        if not query._filters and not query._order_by:
            self._conn()
            return int(query.count())  # the global id counter, as unsharded
        filters = list(query._filters)
        if query._order_by:
            filters.append(query._order_by.lstrip('-'))
        conn = self._conn()
        real = [f for f in filters if not (isinstance(f, list) and not f)]
        shards = self._shards
        if shards[0]._gindex._fast_count(shards[0], real) is not None and \
                not isinstance(real[0], (Prefix, Suffix, Pattern)):
            jobs: List[Job] = [(shard, record_steps([shard._gindex._fast_count(shard, real)]),
                                False) for shard in shards]
            return sum(int(reply) for reply in run_jobs(conn, jobs))

        def build(shard: Any, client: Any) -> List[Any]:
            work, temp = record_op(client, shard._gindex._op_prepare(shard, filters))
            work.command('ZCARD', temp)
            work.command('DEL', temp)
            return record_steps(work.steps)

        bodies = build_all(conn, shards, build)
        replies = run_jobs(conn, [(shard, body, True) for shard, body in zip(shards, bodies)])
        return sum(int(reply[-2]) for reply in replies)

    def _ids(self) -> List[Any]:
        self = self._geo_resolved()
        query = self._query
        _need_filters(query, 'this query')
        offset, count = self._bounds()
        if count <= 0:
            return []
        size = None if count >= _NO_LIMIT else offset + count
        return self._merged(size)[offset:]

    def _search(self) -> List[Any]:
        """The matching ids in result order, honouring the limit."""
        return self._ids()

    def iter_result(self, timeout: int = 30, pagesize: int = 100,
                    no_hscan: bool = False) -> Iterator[Any]:
        """Iterate over the matches, ``pagesize`` at a time. A limited query gathers its
        window first; an unlimited one keeps each shard's result for ``timeout`` seconds
        and merges them as it goes (``pagesize`` entries per shard per read)."""
        if pagesize <= 0:
            return
        self = self._geo_resolved()  # (a generator: no I/O before the first item is read)
        if not self._query._filters and not self._query._order_by:
            yield from self._iter_probe(pagesize)
            return
        offset, count = self._bounds()
        if count >= _NO_LIMIT:
            yield from self._iter_stream(int(timeout), pagesize, offset)
            return
        yield from self._iter_ids(self._ids(), pagesize)

    def _iter_stream(self, timeout: int, pagesize: int, skip: int) -> Iterator[Any]:
        query = self._query
        _need_filters(query, 'iter_result()')
        conn = self._conn()
        shards = self._shards
        temps: Dict[Any, str] = {}

        def build(shard: Any, client: Any) -> List[Any]:
            work, temps[shard] = record_op(client, shard._gindex.op_build(
                shard, query._filters, query._order_by))
            work.command('EXPIRE', temps[shard], max(timeout, 1))
            work.command('ZRANGE', temps[shard], 0, pagesize - 1, 'WITHSCORES')
            return record_steps(work.steps)

        bodies = build_all(conn, shards, build)
        firsts = run_jobs(conn, [(shard, body, True) for shard, body in zip(shards, bodies)])
        buffers = [_pairs(reply[-1]) for reply in firsts]
        ranks = [len(b) for b in buffers]
        heap = [(b[0][0], b[0][1], i, 0) for i, b in enumerate(buffers) if b]
        heapq.heapify(heap)
        page: List[Any] = []
        try:
            while heap:
                _, _, i, at = heapq.heappop(heap)
                if skip:
                    skip -= 1
                else:
                    page.append(buffers[i][at][2])
                at += 1
                if at == len(buffers[i]) and len(buffers[i]) == pagesize:
                    # this shard's buffer is used up: read its next entries
                    temp = temps[shards[i]]
                    reply = run_jobs(conn, [(shards[i], [
                        ('ZRANGE', temp, ranks[i], ranks[i] + pagesize - 1, 'WITHSCORES'),
                        ('EXPIRE', temp, max(timeout, 1))], True)])[0]
                    buffers[i] = _pairs(reply[0])
                    ranks[i] += len(buffers[i])
                    at = 0
                if at < len(buffers[i]):
                    heapq.heappush(heap, (buffers[i][at][0], buffers[i][at][1], i, at))
                if len(page) >= pagesize:
                    yield from self._items(page)
                    page = []
            if page:
                yield from self._items(page)
        finally:
            run_jobs(conn, [(shard, [('DEL', temps[shard])], False) for shard in shards])

    def _iter_ids(self, ids: List[Any], pagesize: int) -> Iterator[Any]:
        for start in range(0, len(ids), pagesize):
            yield from self._items(ids[start:start + pagesize])

    def _iter_probe(self, pagesize: int) -> Iterator[Any]:
        model = self._query._model
        conn = self._conn()
        offset, count = self._bounds()
        last = int(conn.get('%s:%s:' % (model._namespace, model._pkey)) or 0)
        skip = offset
        start = 1
        while start <= last and count > 0:
            ids = list(range(start, min(start + pagesize, last + 1)))
            start += pagesize
            for item in self._items(ids):
                if skip:
                    skip -= 1
                    continue
                yield item
                count -= 1
                if count <= 0:
                    return

    def __iter__(self) -> Iterator[Any]:
        return self.iter_result()

    def execute(self) -> List[Any]:
        """All results as a list."""
        return list(self)

    def all(self) -> List[Any]:
        """All results as a list."""
        return list(self)

    def first(self) -> Any:
        """The first result, or None (with filters or an order: the first id's entity,
        tracked by the session, None when its row is gone -- as unsharded)."""
        offset, count = self._bounds()
        one = ShardedQuery(self._query.replace(limit=(offset, 1)))
        if not self._query._filters and not self._query._order_by:
            for item in ShardedQuery(self._query.replace(limit=(offset, min(count, 1)))):
                return item
            return None
        ids = one._ids()
        if not ids:
            return None
        if self._query._select is not None:
            for row in one._items(ids[:1]):
                return row
            return None
        return self._query._model.get(ids[0])

    def exists(self) -> bool:
        """Whether the query has a result."""
        if not self._query._filters and not self._query._order_by:
            return self.first() is not None
        return self.count() > self._bounds()[0]

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return ShardedQuery(self._query[index])
        window = self._query[index:index + 1] if isinstance(index, int) and \
            not isinstance(index, bool) and index >= 0 else self._query[index]
        for item in ShardedQuery(window):
            return item
        raise IndexError('query result index %d out of range' % (index,))

    def cached_result(self, timeout: int) -> List[str]:
        """Run the query on every shard and keep each shard's result ZSET for ``timeout``
        seconds; returns their keys (one per shard, in shard order; each in its shard's
        slot, so there is no single key of the merged result)."""
        self = self._geo_resolved()
        query = self._query
        _need_filters(query, 'cached_result()')
        timeout = int(timeout)
        if timeout < 1:
            raise QueryError('cached_result(): timeout must be at least 1 second, got %r'
                             % (timeout,))
        conn = self._conn()
        temps: Dict[Any, str] = {}

        def build(shard: Any, client: Any) -> List[Any]:
            work, temps[shard] = record_op(client, shard._gindex.op_build(
                shard, query._filters, query._order_by))
            work.command('EXPIRE', temps[shard], timeout)
            return record_steps(work.steps)

        bodies = build_all(conn, self._shards, build)
        run_jobs(conn, [(shard, body, True) for shard, body in zip(self._shards, bodies)])
        return [temps[shard] for shard in self._shards]

    def page(self, count: int, after: Optional[str] = None) -> Page[Any]:
        """Keyset pagination: ``count`` results after cursor ``after`` (None: the first
        page). Each shard returns at most ``count`` entries after the cursor."""
        self = self._geo_resolved()
        query = self._query
        if not query._order_by:
            raise QueryError('page() needs an order_by() to page through')
        if query._limit is not None:
            raise QueryError('page() pages by cursor: remove the limit() (or slice) from the query')
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise QueryError('page(): the page size must be a positive integer, got %r'
                             % (count,))
        score, member = parse_cursor(after) if after is not None else ('0', '')
        conn = self._conn()
        shards = self._shards
        plans = [shard._gindex._direct(query._filters, query._order_by) for shard in shards]
        if all(plan is not None for plan in plans):
            # straight from each shard's index: O(log(n)^2 + count) per shard at any depth
            # (the cursor holds the index's own score, as on an unsharded model's direct path)
            desc = query._order_by.startswith('-')
            jobs: List[Job] = [(shard, record_script('shard_keyset', [plan.key], [
                plan.lo, plan.hi, '1' if desc else '0', score, member, count]), False)
                for shard, plan in zip(shards, plans)]
            sign = -1.0 if desc else 1.0
            parts = [[(sign * s, raw, m) for s, raw, m in _pairs(reply)]
                     for reply in run_jobs(conn, jobs)]
        else:  # (the cursor holds the working set's score, negated for descending orders)
            sign = 1.0

            def build(shard: Any, client: Any) -> List[Any]:
                work, temp = record_op(client, shard._gindex.op_build(
                    shard, query._filters, query._order_by))
                work.script('shard_page', [temp], [score, member, count])
                work.command('DEL', temp)
                return record_steps(work.steps)

            bodies = build_all(conn, shards, build)
            replies = run_jobs(conn, [(shard, body, True) for shard, body in zip(shards, bodies)])
            parts = [_pairs(reply[-2]) for reply in replies]
        merged = list(heapq.merge(*parts, key=lambda e: (e[0], e[1])))[:count]
        ids = [m for _, _, m in merged]
        cursor = None
        if len(merged) == count:
            cursor = '%s:%s' % (repr(sign * merged[-1][0] + 0.0), to_text(merged[-1][2]))
        return Page(self._items(ids), cursor)

    def delete(self, blocksize: int = 100) -> None:
        """Delete every matching entity (one script call per shard and block; models
        without foreign keys only, as for unsharded models)."""
        model = self._query._model
        if not model._no_fk:
            raise QueryError('Query.delete(): %s takes part in foreign-key relationships; '
                             'delete its entities one by one' % (model.__name__,))
        batch: List[Any] = []
        for entity in ShardedQuery(self._query.replace(select=None)).iter_result(
                pagesize=blocksize):
            batch.append(entity)
            if len(batch) >= blocksize:
                _delete(batch)
                batch = []
        _delete(batch)


def _delete(entities: List[Any]) -> None:
    by_shard: Dict[Any, List[Any]] = {}
    for entity in entities:
        by_shard.setdefault(type(entity), []).append(entity)
    for shard, group in by_shard.items():
        if shard._unique:
            for entity in group:
                entity.delete()
        else:
            _session.session.delete(group)
