"""Queries over sharded models: the same builder, scattered to every shard and gathered.

``User.query`` of a sharded model is a :class:`ShardedQuery`: it builds and validates like a
``Query`` (it wraps one over the public class) and runs each terminal call on every shard,
with the blocking API or the asyncio one (``a``-prefixed methods, ``async for``): both run
the same operations (``rom._shard_ops``):

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

import warnings
from typing import Any, AsyncIterator, Iterator, List, Optional

from . import _shard_ops as _ops
from ._io import arun, run
from ._keyset import Page
from ._ops_query import next_chunk
from ._relations import mark_async

_BUILDERS = ('filter', 'startswith', 'endswith', 'like', 'near', 'order_by', 'limit', 'select',
             'replace', 'prefetch')


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
        if name in ('_model', '_filters', '_order_by', '_limit', '_select', '_prefetch'):
            return getattr(self._query, name)
        raise AttributeError(name)

    def _bounds(self) -> Any:
        return _ops._bounds(self._query)

    # -- terminal calls (operations in rom._shard_ops; a-prefixed: awaitable) ---------------
    def count(self) -> int:
        """The number of matches: the sum of the shards' counts."""
        return run(_ops.op_count(self._query))

    async def acount(self) -> int:
        """Awaitable :meth:`count`."""
        return await arun(_ops.op_count(self._query))

    def _search(self) -> List[Any]:
        """The matching ids in result order, honouring the limit."""
        return run(_ops.op_ids(self._query))

    def iter_result(self, timeout: int = 30, pagesize: int = 100,
                    no_hscan: bool = False) -> Iterator[Any]:
        """Iterate over the matches, ``pagesize`` at a time. A limited query gathers its
        window first; an unlimited one keeps each shard's result for ``timeout`` seconds
        and merges them as it goes (``pagesize`` entries per shard per read)."""
        chunks = _ops.op_chunks(self._query, timeout, pagesize)
        finished = False
        try:
            while True:
                items = run(next_chunk(chunks))
                if items is None:
                    finished = True
                    return
                yield from items
        finally:
            if not finished:  # read in part (or failed): its result keys are deleted
                run(_ops.op_abandon(chunks))

    def aiter_result(self, timeout: int = 30, pagesize: int = 100,
                     no_hscan: bool = False) -> AsyncIterator[Any]:
        """``async for`` over the matches, fetched like :meth:`iter_result`."""
        from .query import AsyncResults
        return AsyncResults(_ops.op_chunks(self._query, timeout, pagesize),
                            self._query._prefetch)

    def __iter__(self) -> Iterator[Any]:
        return self.iter_result()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self.aiter_result()

    def execute(self) -> List[Any]:
        """All results as a list."""
        return run(_ops.op_all(self._query))

    def all(self) -> List[Any]:
        """All results as a list."""
        return run(_ops.op_all(self._query))

    async def aall(self) -> List[Any]:
        """Awaitable :meth:`all`."""
        return mark_async(await arun(_ops.op_all(self._query)), self._query._prefetch)

    async def aexecute(self) -> List[Any]:
        """Awaitable :meth:`execute`."""
        return await self.aall()

    async def aselect(self, *column_names: Any, **kwargs: Any) -> List[Any]:
        """Awaitable ``select(...)`` rows (same arguments as ``select``)."""
        return await arun(_ops.op_all(self._query.select(*column_names, **kwargs)))

    def first(self) -> Any:
        """The first result, or None (with filters or an order: the first id's entity,
        tracked by the session, None when its row is gone -- as unsharded)."""
        return run(_ops.op_first(self._query))

    async def afirst(self) -> Any:
        """Awaitable :meth:`first`."""
        return mark_async(await arun(_ops.op_first(self._query)), self._query._prefetch)

    def exists(self) -> bool:
        """Whether the query has a result."""
        return run(_ops.op_exists(self._query))

    async def aexists(self) -> bool:
        """Awaitable :meth:`exists`."""
        return await arun(_ops.op_exists(self._query))

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
        return run(_ops.op_cached_result(self._query, timeout))

    async def acached_result(self, timeout: int) -> List[str]:
        """Awaitable :meth:`cached_result`."""
        return await arun(_ops.op_cached_result(self._query, timeout))

    def page(self, count: int, after: Optional[str] = None) -> Page[Any]:
        """Keyset pagination: ``count`` results after cursor ``after`` (None: the first
        page). Each shard returns at most ``count`` entries after the cursor."""
        return run(_ops.op_page(self._query, count, after))

    async def apage(self, count: int, after: Optional[str] = None) -> Page[Any]:
        """Awaitable :meth:`page`."""
        page = await arun(_ops.op_page(self._query, count, after))
        mark_async(page.items, self._query._prefetch)
        return page

    def delete(self, blocksize: int = 100) -> None:
        """Delete every matching entity (one script call per shard and block; models
        without foreign keys only, as for unsharded models)."""
        run(_ops.op_delete(self._query, blocksize))

    async def adelete(self, blocksize: int = 100) -> None:
        """Awaitable :meth:`delete`."""
        await arun(_ops.op_delete(self._query, blocksize))
