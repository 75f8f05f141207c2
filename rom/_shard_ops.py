"""Sharded queries as operations (``rom._io``): scatter to every shard, gather, merge.

Each terminal call of a :class:`~rom._shard_query.ShardedQuery` is one operation here, run by
the blocking driver (``q.all()``) or the asyncio driver (``await q.aall()``). The per-shard
work is the unsharded model's own (``GeneralIndex`` of each shard class), recorded, and sent
with ``op_scatter`` (a :class:`~rom._io.Scatter` step): one packed write per master, masters
in parallel
(threads or asyncio tasks, as the driver is). Results are merged by the order the unsharded
query has: each shard returns its working set's ``(score, member)`` pairs and a k-way merge
orders them by score, then member bytes, as one sorted set would.
"""
from __future__ import annotations

import heapq
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ._connect import to_text
from ._helpers import MAX_RANK
from ._io import Command, Operation
from ._keyset import Page, parse_cursor
from ._ops_query import Chunk, _need_filters, _op_first_item, next_chunk
from ._records import Geofilter, Pattern, Prefix, Suffix
from ._select import _select_generator, _split_reply, column_data_step
from ._shard import op_check_metadata, op_public_fetch, shard_of
from ._shard_batch import (Job, NeedEstimates, RecordingClient, op_scatter, record_op,
                           record_script, record_steps)
from .exceptions import QueryError

__all__ = ['Abandoned', 'op_abandon', 'op_all', 'op_cached_result', 'op_chunks', 'op_count',
           'op_delete', 'op_exists', 'op_first', 'op_ids', 'op_page']

_NO_LIMIT = 2 ** 64
Build = Callable[[Any, RecordingClient], List[Any]]


class Abandoned(Exception):
    """Thrown into :func:`op_chunks` when its reader stops early (see :func:`op_abandon`)."""


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


def _shards(query: Any) -> Sequence[Any]:
    return query._model._shard_models  # type: ignore[no-any-return]


def _bounds(query: Any) -> Tuple[int, int]:
    offset, count = query._bounds()
    return max(offset, 0), count


def op_build_all(model: Any, shards: Sequence[Any], build: Build) -> Operation[List[Any]]:
    """Each shard's transaction body from ``build(shard, client)``; when the build needs the
    filters' work estimates, they are fetched first (one round trip per master)."""
    try:
        return [build(shard, RecordingClient()) for shard in shards]
    except NeedEstimates:
        pass
    wanted: List[Job] = []
    for shard in shards:
        try:
            build(shard, RecordingClient())
        except NeedEstimates as need:
            wanted.append((shard, need.commands, True))
    sizes = yield from op_scatter(model, wanted)
    # every shard orders its filters by the estimates summed over the shards: one order
    # (the unsharded model's), so the working sets' scores, and the merged order, agree
    total = [sum(abs(int(found[i])) for found in sizes) for i in range(len(sizes[0]))]
    return [build(shard, RecordingClient(list(total))) for shard in shards]


def _op_built(query: Any, build: Build) -> Operation[List[Any]]:
    """The replies of each shard's transaction made by ``build`` (one round per master)."""
    model, shards = query._model, _shards(query)
    bodies = yield from op_build_all(model, shards, build)
    jobs: List[Job] = [(shard, body, True) for shard, body in zip(shards, bodies)]
    return (yield from op_scatter(model, jobs))


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


def _op_scored_all(query: Any, size: Optional[int]) -> Operation[List[List[Any]]]:
    """Per shard: the first ``size`` (None: all) entries of its result with their scores,
    as ``(score, member bytes, member)`` in the shard's result order."""
    filters, order_by = query._filters, query._order_by
    jobs = _direct_jobs(_shards(query), filters, order_by, size) if size is not None else None
    if jobs is not None:
        sign = -1.0 if order_by and order_by.startswith('-') else 1.0
        return [[(sign * score, raw, member) for score, raw, member in _pairs(reply)]
                for reply in (yield from op_scatter(query._model, jobs))]
    end = -1 if size is None else min(size - 1, MAX_RANK)

    def build(shard: Any, client: Any) -> List[Any]:
        work, temp = record_op(client, shard._gindex.op_build(shard, filters, order_by))
        work.command('ZRANGE', temp, 0, end, 'WITHSCORES')
        work.command('DEL', temp)
        return record_steps(work.steps)

    return [_pairs(reply[-2]) for reply in (yield from _op_built(query, build))]


def op_geo_resolved(query: Any) -> Operation[Any]:
    """The query with each ``near(..., count)`` made global: every shard's ``count``
    nearest are read (one round), and the filter becomes a radius up to the ``count``-th
    nearest of them all (entities at that very distance, to 0.0001 units, all match)."""
    filters = list(query._filters)
    spots = [i for i, f in enumerate(filters) if isinstance(f, Geofilter) and f.count and
             f.count > 0]
    if not spots:
        return query
    yield from op_check_metadata(query._model)
    for i in spots:
        flt = filters[i]
        jobs: List[Job] = [(shard, [(
            'GEORADIUS', '%s:%s:geo' % (shard._namespace, flt.name), repr(flt.lon),
            repr(flt.lat), flt.radius, flt.measure, 'WITHDIST', 'COUNT', flt.count, 'ASC')],
            False) for shard in _shards(query)]
        dists = sorted(float(d) for reply in (yield from op_scatter(query._model, jobs))
                       for _, d in reply)
        radius = flt.radius if len(dists) < flt.count else min(
            float(flt.radius), dists[flt.count - 1] + 0.0001)
        filters[i] = flt._replace(radius=radius, count=None)
    return query.replace(filters=tuple(filters))


def op_items(query: Any, ids: Sequence[Any]) -> Operation[List[Any]]:
    """Entities (or select rows) of ``ids``, in that order, missing rows dropped; the
    query's ``prefetch`` relations are loaded with the entities."""
    if not ids:
        return []
    model = query._model
    select = query._select
    if select is None:
        found = [obj for obj in (yield from op_public_fetch(model, ids, False))
                 if obj is not None]
        if query._prefetch and found:
            from ._ops_relations import op_prefetch
            yield from op_prefetch(found, query._prefetch)
        return found
    names = select[0]
    pk_at = list(names).index(model._pkey)
    groups: Dict[Any, List[Any]] = {}
    for ident in ids:
        groups.setdefault(shard_of(model, to_text(ident)), []).append(ident)
    rows: Dict[str, List[Any]] = {}
    for shard, shard_ids in groups.items():
        reply = yield column_data_step(model, shard, names, ids=shard_ids)
        for row in _split_reply(reply)[1]:
            rows[to_text(row[pk_at])] = row
    wanted = [str(i) if isinstance(i, int) else to_text(i) for i in ids]  # (probe: ints)
    ordered = [rows[i] for i in wanted if i in rows]
    return list(_select_generator(model, select, ordered))


def op_count(query: Any) -> Operation[int]:
    """The number of matches: the sum of the shards' counts."""
    from ._ops_query import op_count as op_plain_count
    query = yield from op_geo_resolved(query)
    model = query._model
    if not query._filters and not query._order_by:
        yield from op_check_metadata(model)
        return int((yield from op_plain_count(query)))  # the global id counter, as unsharded
    filters = list(query._filters)
    if query._order_by:
        filters.append(query._order_by.lstrip('-'))
    yield from op_check_metadata(model)
    real = [f for f in filters if not (isinstance(f, list) and not f)]
    shards = _shards(query)
    if shards[0]._gindex._fast_count(shards[0], real) is not None and \
            not isinstance(real[0], (Prefix, Suffix, Pattern)):
        jobs: List[Job] = [(shard, record_steps([shard._gindex._fast_count(shard, real)]),
                            False) for shard in shards]
        return sum(int(reply) for reply in (yield from op_scatter(model, jobs)))

    def build(shard: Any, client: Any) -> List[Any]:
        work, temp = record_op(client, shard._gindex._op_prepare(shard, filters))
        work.command('ZCARD', temp)
        work.command('DEL', temp)
        return record_steps(work.steps)

    return sum(int(reply[-2]) for reply in (yield from _op_built(query, build)))


def op_ids(query: Any) -> Operation[List[Any]]:
    """The matching ids in result order, honouring the limit."""
    query = yield from op_geo_resolved(query)
    _need_filters(query, 'this query')
    offset, count = _bounds(query)
    if count <= 0:
        return []
    size = None if count >= _NO_LIMIT else offset + count
    yield from op_check_metadata(query._model)
    parts = yield from _op_scored_all(query, size)
    out = []
    for _score, _raw, member in heapq.merge(*parts, key=lambda e: (e[0], e[1])):
        out.append(member)
        if size is not None and len(out) >= size:
            break
    return out[offset:]


def op_chunks(query: Any, timeout: int = 30, pagesize: int = 100) -> Any:
    """The results, page by page, as :class:`~rom._ops_query.Chunk` markers (run it with
    ``next_chunk``). A limited query gathers its window first; an unlimited one keeps each
    shard's result for ``timeout`` seconds and merges them as it goes (``pagesize``
    entries per shard per read)."""
    if pagesize <= 0:
        return
    query = yield from op_geo_resolved(query)
    if not query._filters and not query._order_by:
        yield from _op_probe(query, pagesize)
        return
    offset, count = _bounds(query)
    if count >= _NO_LIMIT:
        yield from _op_stream(query, int(timeout), pagesize, offset)
        return
    ids = yield from op_ids(query)
    for start in range(0, len(ids), pagesize):
        yield Chunk((yield from op_items(query, ids[start:start + pagesize])))


def _op_stream(query: Any, timeout: int, pagesize: int, skip: int) -> Any:
    _need_filters(query, 'iter_result()')
    model = query._model
    yield from op_check_metadata(model)
    shards = _shards(query)
    temps: Dict[Any, str] = {}

    def build(shard: Any, client: Any) -> List[Any]:
        work, temps[shard] = record_op(client, shard._gindex.op_build(
            shard, query._filters, query._order_by))
        work.command('EXPIRE', temps[shard], max(timeout, 1))
        work.command('ZRANGE', temps[shard], 0, pagesize - 1, 'WITHSCORES')
        return record_steps(work.steps)

    buffers = [_pairs(reply[-1]) for reply in (yield from _op_built(query, build))]
    ranks = [len(b) for b in buffers]
    heap = [(b[0][0], b[0][1], i, 0) for i, b in enumerate(buffers) if b]
    heapq.heapify(heap)
    page: List[Any] = []
    cleanup = [(shard, [('DEL', temps[shard])], False) for shard in shards]
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
                reply = (yield from op_scatter(model, [(shards[i], [
                    ('ZRANGE', temp, ranks[i], ranks[i] + pagesize - 1, 'WITHSCORES'),
                    ('EXPIRE', temp, max(timeout, 1))], True)]))[0]
                buffers[i] = _pairs(reply[0])
                ranks[i] += len(buffers[i])
                at = 0
            if at < len(buffers[i]):
                heapq.heappush(heap, (buffers[i][at][0], buffers[i][at][1], i, at))
            if len(page) >= pagesize:
                yield Chunk((yield from op_items(query, page)))
                page = []
        if page:
            yield Chunk((yield from op_items(query, page)))
    except GeneratorExit:  # (dropped without op_abandon: the keys expire after timeout)
        raise
    except BaseException:  # failed, or its reader stopped (Abandoned): delete the results
        yield from op_scatter(model, cleanup)
        raise
    yield from op_scatter(model, cleanup)


def _op_probe(query: Any, pagesize: int) -> Any:
    model = query._model
    yield from op_check_metadata(model)
    offset, count = _bounds(query)
    last = int((yield Command(model, ('GET', '%s:%s:' % (model._namespace, model._pkey))))
               or 0)
    skip = offset
    start = 1
    while start <= last and count > 0:
        ids = list(range(start, min(start + pagesize, last + 1)))
        start += pagesize
        items = []
        for item in (yield from op_items(query, ids)):
            if skip:
                skip -= 1
                continue
            items.append(item)
            count -= 1
            if count <= 0:
                break
        if items:
            yield Chunk(items)


def op_abandon(chunks: Any) -> Operation[None]:
    """Let ``chunks`` (:func:`op_chunks`, read only in part) clean up: its temporary
    result keys are deleted."""
    try:
        step = chunks.throw(Abandoned())
        while type(step) is not Chunk:
            step = chunks.send((yield step))
    except (Abandoned, StopIteration):
        pass
    chunks.close()


def op_all(query: Any) -> Operation[List[Any]]:
    """All results as a list."""
    found: List[Any] = []
    chunks = op_chunks(query)
    while True:
        items = yield from next_chunk(chunks)
        if items is None:
            return found
        found += items


def op_first(query: Any) -> Operation[Any]:
    """The first result, or None (with filters or an order: the first id's entity, tracked
    by the session, None when its row is gone -- as unsharded)."""
    offset, count = _bounds(query)
    if not query._filters and not query._order_by:
        return (yield from _op_first_item(op_chunks(query.replace(
            limit=(offset, min(count, 1))))))
    one = query.replace(limit=(offset, 1))
    ids = yield from op_ids(one)
    if not ids:
        return None
    if query._select is not None:
        rows = yield from op_items(one, ids[:1])
        return rows[0] if rows else None
    from ._ops_read import op_get
    found = yield from op_get(query._model, ids[0])
    if found is not None and query._prefetch:
        from ._ops_relations import op_prefetch
        yield from op_prefetch([found], query._prefetch)
    return found


def op_exists(query: Any) -> Operation[bool]:
    """Whether the query has a result."""
    if not query._filters and not query._order_by:
        return (yield from op_first(query)) is not None
    return (yield from op_count(query)) > _bounds(query)[0]


def op_cached_result(query: Any, timeout: Any) -> Operation[List[str]]:
    """Run the query on every shard and keep each shard's result ZSET for ``timeout``
    seconds; returns their keys (one per shard, in shard order)."""
    query = yield from op_geo_resolved(query)
    _need_filters(query, 'cached_result()')
    timeout = int(timeout)
    if timeout < 1:
        raise QueryError('cached_result(): timeout must be at least 1 second, got %r'
                         % (timeout,))
    yield from op_check_metadata(query._model)
    temps: Dict[Any, str] = {}

    def build(shard: Any, client: Any) -> List[Any]:
        work, temps[shard] = record_op(client, shard._gindex.op_build(
            shard, query._filters, query._order_by))
        work.command('EXPIRE', temps[shard], timeout)
        return record_steps(work.steps)

    yield from _op_built(query, build)
    return [temps[shard] for shard in _shards(query)]


def op_page(query: Any, count: int, after: Optional[str] = None) -> Operation[Page[Any]]:
    """Keyset pagination: ``count`` results after cursor ``after`` (None: the first
    page). Each shard returns at most ``count`` entries after the cursor."""
    query = yield from op_geo_resolved(query)
    if not query._order_by:
        raise QueryError('page() needs an order_by() to page through')
    if query._limit is not None:
        raise QueryError('page() pages by cursor: remove the limit() (or slice) from the query')
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise QueryError('page(): the page size must be a positive integer, got %r'
                         % (count,))
    score, member = parse_cursor(after) if after is not None else ('0', '')
    model = query._model
    yield from op_check_metadata(model)
    shards = _shards(query)
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
                 for reply in (yield from op_scatter(model, jobs))]
    else:  # (the cursor holds the working set's score, negated for descending orders)
        sign = 1.0

        def build(shard: Any, client: Any) -> List[Any]:
            work, temp = record_op(client, shard._gindex.op_build(
                shard, query._filters, query._order_by))
            work.script('shard_page', [temp], [score, member, count])
            work.command('DEL', temp)
            return record_steps(work.steps)

        parts = [_pairs(reply[-2]) for reply in (yield from _op_built(query, build))]
    merged = list(heapq.merge(*parts, key=lambda e: (e[0], e[1])))[:count]
    ids = [m for _, _, m in merged]
    cursor = None
    if len(merged) == count:
        cursor = '%s:%s' % (repr(sign * merged[-1][0] + 0.0), to_text(merged[-1][2]))
    return Page((yield from op_items(query, ids)), cursor)


def op_delete(query: Any, blocksize: int = 100) -> Operation[None]:
    """Delete every matching entity (one script call per shard and block; models without
    foreign keys only, as for unsharded models)."""
    model = query._model
    if not model._no_fk:
        raise QueryError('Query.delete(): %s takes part in foreign-key relationships; '
                         'delete its entities one by one' % (model.__name__,))
    chunks = op_chunks(query.replace(select=None, prefetch=()), pagesize=blocksize)
    batch: List[Any] = []
    while True:
        items = yield from next_chunk(chunks)
        if items is None:
            break
        for entity in items:
            batch.append(entity)
            if len(batch) >= blocksize:
                yield from _op_delete_batch(batch)
                batch = []
    yield from _op_delete_batch(batch)


def _op_delete_batch(entities: List[Any]) -> Operation[None]:
    from ._ops_delete import op_delete_many
    from ._shard_unique import op_shard_delete
    by_shard: Dict[Any, List[Any]] = {}
    for entity in entities:
        by_shard.setdefault(type(entity), []).append(entity)
    for shard, group in by_shard.items():
        if shard._unique or shard._cunique:  # (releases the entities' unique claims)
            for entity in group:
                yield from op_shard_delete(entity, {})
        else:
            yield from op_delete_many([e for e in group if not e._deleted])
