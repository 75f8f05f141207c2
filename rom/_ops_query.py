"""Query execution as operations (``rom._io``): results, counts, pages, chunked iteration.

``Query`` (``rom.query``) is the façade: ``q.all()`` is ``run(op_all(q))`` and
``await q.aall()`` is ``await arun(op_all(q))``. Iteration is an operation that also yields
:class:`Chunk` markers (a page of results); :func:`next_chunk` is the operation that runs it
up to its next chunk, so ``for e in q`` and ``async for e in q`` fetch the same pages.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Dict, Generator, Iterator, List, NamedTuple, Optional, Sequence

from ._connect import to_text
from ._expiry import op_visible_ids
from ._helpers import MAX_RANK
from ._io import Command, Operation, run
from ._ops_read import op_fetch
from ._search import guarded
from ._session import session
from ._select import _select_generator, _split_reply, column_data_step
from .exceptions import QueryError

__all__ = ['Chunk', 'next_chunk', 'op_chunks', 'op_all', 'op_first', 'op_count',
           'op_exists', 'op_search', 'op_cached_result', 'op_page_items', 'op_not_prefixed',
           'not_prefixed']

_NO_LIMIT = 2 ** 64


class Chunk(NamedTuple):
    """Marker yielded by :func:`op_chunks`: the next page of results (not an I/O step)."""
    items: List[Any]


#: an operation that also yields :class:`Chunk` markers
Chunks = Generator[Any, Any, None]


def next_chunk(chunks: Chunks) -> Operation[Optional[List[Any]]]:
    """Run ``chunks`` up to its next :class:`Chunk`: its items, or None at the end (the
    replies and errors of its steps are passed on to it)."""
    resume: Any = partial(chunks.send, None)
    while True:
        try:
            step = resume()
        except StopIteration:
            return None
        if type(step) is Chunk:
            return step.items
        try:
            resume = partial(chunks.send, (yield step))
        except Exception as exc:
            resume = partial(chunks.throw, exc)


def _bounds(query: Any) -> Any:
    offset, count = query._limit or (0, _NO_LIMIT)
    return (offset or 0), (_NO_LIMIT if count is None else count)


def op_chunks(query: Any, timeout: int = 30, pagesize: int = 100,
              out: Optional[List[Any]] = None) -> Chunks:
    """The results of ``query`` (entities or ``select`` rows), page by page: yielded as
    :class:`Chunk` markers, or added to ``out`` when given (no markers then)."""
    model = query._model
    if query._filters or query._order_by:
        return (yield from _filtered(query, timeout, pagesize, out))
    if getattr(model._columns[model._pkey], '_index', False):
        if model._ttl is not None:  # the pk index holds expired ids too
            return (yield from _filtered(query.replace(order_by=model._pkey), timeout,
                                         pagesize, out))
        return (yield from _pk_index(query, pagesize, out))
    return (yield from _probe(query, pagesize, out))


def _emit(items: List[Any], out: Optional[List[Any]]) -> Chunks:
    if out is None:
        yield Chunk(items)
    else:
        out += items


def op_all(query: Any, pagesize: int = 100) -> Operation[List[Any]]:
    """All results as a list."""
    found: List[Any] = []
    yield from op_chunks(query, 30, pagesize, found)
    return found


def op_entities(query: Any, ids: Sequence[Any]) -> Operation[List[Any]]:
    """The entities of ``ids`` (missing rows dropped): the session's own where it has
    them; the others are loaded without being added to the session. The query's
    ``prefetch`` relations are loaded with them."""
    found = [obj for obj in (yield from op_fetch(query._model, ids, False)) if obj is not None]
    if query._prefetch and found:
        from ._ops_relations import op_prefetch
        yield from op_prefetch(found, query._prefetch)
    return found


def op_page_items(query: Any, ids: Sequence[Any]) -> Operation[List[Any]]:
    """The results (entities or ``select`` rows) of a page of ``ids``."""
    if not ids:
        return []
    model = query._model
    if query._select is not None:
        if model._ttl is not None:  # expired entities are gone
            ids = yield from op_visible_ids(model, ids)
        rows = _split_reply((yield column_data_step(model, model, query._select[0],
                                                    ids=ids)))[1]
        return list(_select_generator(model, query._select, rows))
    return (yield from op_entities(query, ids))


def _filtered(query: Any, timeout: int, pagesize: int,
              out: Optional[List[Any]]) -> Chunks:
    model = query._model
    offset, budget = _bounds(query)
    if pagesize <= 0 or budget <= 0:
        return
    gindex = model._gindex
    rank = max(offset, 0)
    if budget <= pagesize:
        # the whole answer fits one page: read it straight from the index when the
        # result order allows (no working set to build, work proportional to the page)
        plan = gindex._fast(query._filters, query._order_by, rank, budget)
        if plan is not None:
            while budget > 0:
                ids = yield from gindex.op_page(model, plan, rank, budget)
                if ids is None:  # models with ``_ttl``: some are due, general path
                    break
                if not ids:
                    return
                rank += len(ids)
                asked = budget
                items = yield from op_page_items(query, ids)
                budget -= len(items)
                yield from _emit(items, out)
                if len(ids) < asked:
                    return
            else:
                return
    select = query._select
    work, temp = yield from gindex.op_build(model, query._filters, query._order_by)
    while budget > 0:
        size = min(budget, pagesize)
        stop = min(rank + size - 1, MAX_RANK)
        work.command('EXPIRE', temp, timeout)
        if select is not None:
            gindex.drop_expired(work, temp)  # models with ``_ttl``
            work.steps.append(column_data_step(model, model, select[0], key=temp,
                                               start=rank, stop=stop))
            read, rows = _split_reply((yield from guarded(work.batch()))[-1])
            items = list(_select_generator(model, select, rows))
        else:
            work.command('ZRANGE', temp, rank, stop)
            ids = (yield from guarded(work.batch()))[-1]
            read = len(ids)
            items = (yield from op_entities(query, ids)) if ids else []
        if not read:
            return
        rank += read
        items = items[:budget]
        budget -= len(items)
        yield from _emit(items, out)
        if budget <= 0 or read < size:
            return


def _pk_index(query: Any, pagesize: int, out: Optional[List[Any]]) -> Chunks:
    model = query._model
    offset, budget = _bounds(query)
    if pagesize <= 0 or budget <= 0:
        return
    key = '%s:%s:idx' % (model._namespace, model._pkey)
    size = min(budget, pagesize)
    ids = yield Command(model, ('ZRANGE', key, max(offset, 0),
                                min(max(offset, 0) + size - 1, MAX_RANK)))
    while ids:
        items = (yield from op_page_items(query, ids))[:budget]
        budget -= len(items)
        yield from _emit(items, out)
        if budget <= 0 or len(ids) < size:
            return
        size = min(budget, pagesize)
        ids = yield Command(model, ('ZRANGEBYSCORE', key, '(%s' % (to_text(ids[-1]),), 'inf',
                                    'LIMIT', 0, size))


def _probe(query: Any, pagesize: int, out: Optional[List[Any]]) -> Chunks:
    model = query._model
    offset, count = _bounds(query)
    if pagesize <= 0 or count <= 0:
        return
    last = int((yield Command(model, ('GET', '%s:%s:' % (model._namespace, model._pkey))))
               or 0)
    skip = max(offset, 0)
    # blocks start at the size of the window asked for (first(): 1 id) and double up to
    # pagesize, so small windows do not load whole pages
    size = min(pagesize, max(skip + count, 1))
    start = 1
    while start <= last:
        ids = list(range(start, min(start + size, last + 1)))
        start += size
        size = min(pagesize, size * 2)
        items = yield from op_page_items(query, ids)
        dropped = min(skip, len(items))
        skip -= dropped
        items = items[dropped:dropped + count]
        count -= len(items)
        if items:
            yield from _emit(items, out)
        if count <= 0:
            return


def _need_filters(query: Any, what: str) -> None:
    if not query._filters and not query._order_by:
        raise QueryError('%s needs at least one filter or an order_by()' % (what,))


def op_count(query: Any) -> Operation[int]:
    """The number of matches (unfiltered: an upper bound from the id counter)."""
    model = query._model
    if not query._filters and not query._order_by:
        total = int((yield Command(model, ('GET', '%s:%s:' % (model._namespace, model._pkey))))
                    or 0)
        offset, count = _bounds(query)
        return max(min(max(total - max(offset, 0), 0), count), 0)
    filters = list(query._filters)
    if query._order_by:
        filters.append(query._order_by.lstrip('-'))
    return (yield from model._gindex.op_count(model, filters))


def op_search(query: Any) -> Operation[List[Any]]:
    """The matching ids (bytes or str) in result order, honouring the limit."""
    _need_filters(query, '_search()')
    offset, count = query._limit or (None, None)
    return (yield from query._model._gindex.op_search(query._model, query._filters,
                                                      query._order_by, offset, count))


def op_cached_result(query: Any, timeout: Any) -> Operation[str]:
    """Run the query and keep the result ZSET for ``timeout`` seconds; returns its key."""
    _need_filters(query, 'cached_result()')
    timeout = int(timeout)
    if timeout < 1:
        raise QueryError('cached_result(): timeout must be at least 1 second, got %r'
                         % (timeout,))
    model = query._model
    return (yield from model._gindex.op_search(model, query._filters, query._order_by,
                                               timeout=timeout))


def _op_first_item(chunks: Chunks) -> Operation[Any]:
    while True:
        items = yield from next_chunk(chunks)
        if items is None:
            return None
        if items:
            return items[0]


def op_first(query: Any) -> Operation[Any]:
    """The first result (entity or select row), or None."""
    if not query._filters and not query._order_by:
        offset, count = _bounds(query)
        return (yield from _op_first_item(op_chunks(query.replace(
            limit=(offset, min(count, 1))))))
    model = query._model
    gindex = model._gindex
    offset = max(_bounds(query)[0], 0)
    if query._select is not None and gindex._fast(
            query._filters, query._order_by, offset, 1) is None:
        work, temp = yield from gindex.op_build(model, query._filters, query._order_by)
        work.steps.append(column_data_step(model, model, query._select[0], key=temp,
                                           start=offset, stop=offset))
        work.command('DEL', temp)
        rows = _split_reply((yield from guarded(work.batch()))[-2])[1]
        for row in _select_generator(model, query._select, rows):
            return row
        return None
    ids = yield from gindex.op_search(model, query._filters, query._order_by, offset, 1)
    if not ids:
        return None
    if query._select is not None:
        rows = yield from op_page_items(query, ids[:1])
        return rows[0] if rows else None
    from ._ops_read import op_get
    found = yield from op_get(model, ids[0])
    if found is not None and query._prefetch:
        from ._ops_relations import op_prefetch
        yield from op_prefetch([found], query._prefetch)
    return found


def op_exists(query: Any) -> Operation[bool]:
    """Whether the query has a result (answered from the indexes like :func:`op_count`)."""
    if not query._filters and not query._order_by:
        return (yield from op_first(query.replace(select=None))) is not None
    return (yield from op_count(query)) > max(_bounds(query)[0], 0)


# -- Model.does_not_startwith / does_not_endwith ---------------------------------------------
def _distinct_ids(members: Sequence[Any], exclude: Sequence[bytes]) -> List[str]:
    """The ids of prefix-index members (``token \\0 id``), once each, in order, leaving
    out the tokens starting with one of ``exclude``."""
    ids: List[str] = []
    for member in members:
        raw = member.encode('utf-8') if isinstance(member, str) else member
        token, _sep, ident = raw.rpartition(b'\0')
        if exclude and any(token.startswith(v) for v in exclude):
            continue
        text = ident.decode('ascii')
        if text not in ids:
            ids.append(text)
    return ids


def op_not_prefixed(model: Any, attr: str, values: Any, blocksize: int = 100,
                    suffix: bool = False) -> Chunks:
    """Entities with an entry in ``<ns>:<attr>:pre`` (``:suf``) not starting (ending) with
    any of ``values``, block by block of ``blocksize`` index entries."""
    from ._helpers import _prefix_score
    from ._ops_read import op_get
    key = '%s:%s:%s' % (model._namespace, attr, 'suf' if suffix else 'pre')
    if isinstance(values, (str, bytes)):
        values = [values]
    excluded: List[bytes] = []
    for value in values:
        if suffix:
            value = value[::-1]
        excluded.append(value.encode('utf-8') if isinstance(value, str) else value)
    groups: Dict[float, List[bytes]] = {}
    for value in excluded:
        groups.setdefault(float(_prefix_score(value)), []).append(value)

    def emit(lo: str, hi: str, exclude: Sequence[bytes] = ()) -> Chunks:
        offset = 0
        while True:
            members = yield Command(model, ('ZRANGEBYSCORE', key, lo, hi, 'LIMIT', offset,
                                            blocksize))
            offset += len(members)
            ids = _distinct_ids(members, exclude)
            if ids:
                yield Chunk((yield from op_get(model, ids)))
            if len(members) < blocksize:
                return

    start = 0.0
    for score in sorted(groups):
        group = groups[score]
        if score > start:
            yield from emit(repr(start), '(' + repr(score))
        nxt = max(float(_prefix_score(v, True)) for v in group)
        if any(len(v) > 7 for v in group):
            lo = max(score, start)
            if nxt > lo:
                yield from emit(repr(lo), '(' + repr(nxt), excluded)
        start = max(start, nxt)
    yield from emit(repr(start), '+inf')


def not_prefixed(model: Any, attr: str, values: Any, blocksize: int = 100,
                 suffix: bool = False) -> Iterator[Any]:
    """Blocking :func:`op_not_prefixed`, entity by entity; each yielded entity is forgotten
    by the session right after it is yielded."""
    chunks = op_not_prefixed(model, attr, values, blocksize, suffix)
    while True:
        entities = run(next_chunk(chunks))
        if entities is None:
            return
        for entity in entities:
            yield entity
            session.forget(entity)
