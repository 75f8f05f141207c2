"""The immutable ``Query`` builder and result fetching.

Builder methods validate at once and return a new ``Query``; only terminal calls
(``count``, iteration, ``all``/``execute``, ``first``, ``cached_result``, ``delete``,
``_search``) talk to Redis, through the model's ``GeneralIndex`` (``rom._search``).
"""
from __future__ import annotations

import warnings
from collections import deque
from typing import (TYPE_CHECKING, Any, AsyncIterator, Deque, Dict, Generic, Iterator, List,
                    Optional, Sequence, Tuple, Type, TypeVar, Union, overload)

from . import _ops_query as _ops
from . import _session
from ._bounds import NUMERIC_TYPES, _bound, _endpoint  # noqa: F401  (NUMERIC_TYPES: public)
from ._helpers import MAX_RANK, short_repr
from ._io import arun, run
from ._keyset import Page as Page  # re-exported: the result type of Query.page()
from ._keyset import op_keyset_page
from ._keygen import LOWERCASE_QUERY_KEYGENS
from ._query_match import _normalise_pattern, _ts
from ._records import Geofilter, Pattern, Prefix, Suffix
from ._registry import MODELS_REFERENCED
from ._relations import ManyToOne, OneToOne, mark_async
from ._select import (_dict_data_factory, _get_column_data, _json_loads,  # noqa: F401
                      _list_data_factory, _namedtuple_data_factory, _select_generator,
                      _split_reply, _tuple_data_factory)
from ._session import session  # noqa: F401  (rom.query.session is rom.util.session)
from .exceptions import QueryError

if TYPE_CHECKING:
    from .model import Model

__all__ = ['ALLOWED_DIST', 'NOT_NULL', 'NUMERIC_TYPES', 'Query']

#: ``filter(ref=NOT_NULL)``: entities whose reference is set (recognised by identity)
NOT_NULL = (None, None)
ALLOWED_DIST = ('m', 'km', 'mi', 'ft')
_LT = (str, bytes)
_STRING_SORT_KEYGENS = ['SIMPLE', 'SIMPLE_CI', 'CASE_INSENSITIVE']
_NO_LIMIT = 2 ** 64
#: keygens whose index is one sorted set scored by the value (numbers, times, references)
_NUMERIC_KEYGENS = ('_numeric_keygen', '_many_to_one_keygen')
_FIELDS = ('model', 'filters', 'order_by', 'limit', 'select')
#: the model a query returns entities of
if TYPE_CHECKING:  # the default keeps a bare ``Query`` annotation valid under --strict
    from typing_extensions import TypeVar as _TypeVar
    _M = _TypeVar('_M', bound='Model', default=Any)
else:
    _M = TypeVar('_M', bound='Model')


def _keygen_name(column: Any) -> Optional[str]:
    keygen = getattr(column, '_keygen', None)
    return getattr(keygen, '__name__', None) if keygen is not None else None


def _utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode('utf-8')
    except UnicodeEncodeError:
        return False
    return True


class Query(Generic[_M]):
    """A lazy, immutable query over one model (``Model.query``)."""

    __slots__ = ('_model', '_filters', '_order_by', '_limit', '_select')
    #: relations loaded with the results (see :meth:`prefetch`; a subclass holds them)
    _prefetch: Tuple[str, ...] = ()

    def __init__(self, model: Type[_M], filters: Sequence[Any] = (), order_by: Optional[str] = None,
                 limit: Optional[Tuple[Any, Any]] = None,
                 select: Optional[Tuple[Any, ...]] = None) -> None:
        self._model: Any = model
        self._filters = tuple(filters)
        self._order_by = order_by
        self._limit = limit
        self._select = select

    def __repr__(self) -> str:
        return '<Query %s filters=%r order_by=%r limit=%r select=%r>' % (
            getattr(self._model, '__name__', self._model), self._filters, self._order_by,
            self._limit, self._select and self._select[0])

    def replace(self, **kwargs: Any) -> Query[Any]:
        """A copy with any of ``model, filters, order_by, limit, select`` (and
        ``prefetch``) replaced."""
        unknown = set(kwargs) - set(_FIELDS) - {'prefetch'}
        if unknown:
            raise TypeError('Query.replace() got unexpected keyword(s): %s'
                            % ', '.join(sorted(unknown)))
        prefetch = tuple(kwargs.pop('prefetch', self._prefetch))
        data = {name: getattr(self, '_' + name) for name in _FIELDS}
        data.update(kwargs)
        if not prefetch:
            return Query(**data)
        query = _PrefetchingQuery(**data)
        query._prefetch = prefetch
        return query

    # -- builder --------------------------------------------------------------------------
    def _check(self, clause: str, name: str, value: Any = None) -> Any:
        model = self._model
        attr = name.lstrip('-').partition(':')[0]
        column = model._columns.get(attr)
        if column is None:
            raise QueryError('%s(): model %s has no column %r'
                             % (clause, model.__name__, attr))
        if clause == 'filter' and not getattr(column, '_index', False):
            raise QueryError('filter(): column %s.%s is not indexed (declare it with index=True)'
                             % (model.__name__, attr))
        if clause in ('startswith', 'like') and not getattr(column, '_prefix', False):
            raise QueryError('%s(): column %s.%s has no prefix index (declare it with '
                             'prefix=True)' % (clause, model.__name__, attr))
        if clause == 'endswith' and not getattr(column, '_suffix', False):
            raise QueryError('endswith(): column %s.%s has no suffix index (declare it with '
                             'suffix=True)' % (model.__name__, attr))
        if value is None:
            return None
        if isinstance(value, bool):
            return str(value)
        for item in (value if isinstance(value, list) else [value]):
            if isinstance(item, str) and not _utf8(item):
                raise QueryError('%s(): the value %s for %s.%s has no UTF-8 form (a lone '
                                 'surrogate)' % (clause, short_repr(item), model.__name__, attr))
        if _keygen_name(column) in LOWERCASE_QUERY_KEYGENS:
            if isinstance(value, _LT):
                return value.lower()
            if isinstance(value, list):
                return [v.lower() if isinstance(v, _LT) else v for v in value]
        return value

    def filter(self, **kwargs: Any) -> Query[_M]:
        """Keep entities whose indexed columns match: tokens, ranges, lists (OR), NOT_NULL."""
        filters = list(self._filters)
        for name, value in kwargs.items():
            original = value
            value = self._check('filter', name, value)
            if isinstance(original, (str, bytes)) and ':' not in name and \
                    _keygen_name(self._model._columns[name]) in _NUMERIC_KEYGENS:
                # a numeric string on a numeric index means equality (values from web forms)
                number = _bound(self._model, name, original)
                filters.append((name, number, number))
            elif isinstance(value, str):
                filters.append('%s:%s' % (name, value))
            elif isinstance(value, bytes):
                filters.append('%s:%s' % (name, value.decode('latin-1')))
            elif value is NOT_NULL or original is NOT_NULL:
                column = self._model._columns[name.partition(':')[0]]
                if not isinstance(column, (ManyToOne, OneToOne)):
                    raise QueryError('filter(): NOT_NULL is only allowed on ManyToOne/OneToOne '
                                     'columns, not on %s.%s' % (self._model.__name__, name))
                filters.append((name, None, None))
            elif isinstance(value, NUMERIC_TYPES):
                number = _bound(self._model, name, value)
                filters.append((name, number, number))
            elif isinstance(value, tuple):
                if len(value) != 2:
                    raise QueryError('filter(): a range on %s needs exactly two endpoints '
                                     '(low, high), got %s' % (name, short_repr(value)))
                filters.append((name, _bound(self._model, name, value[0]),
                                _bound(self._model, name, value[1])))
            elif isinstance(value, list) and value:
                bad = [v for v in value if not isinstance(v, _LT)]
                if bad:
                    raise QueryError('filter(): a list for %s must hold only str/bytes tokens, '
                                     'got %s' % (name, short_repr(bad[0])))
                filters.append(['%s:%s' % (name, _ts(v)) for v in value])
            else:
                raise QueryError('filter(): unsupported value %s for %s.%s (use a string, a '
                                 'number, a (low, high) tuple or a non-empty list of strings)'
                                 % (short_repr(original), self._model.__name__, name))
        return self.replace(filters=tuple(filters))

    def _text_filter(self, clause: str, kwargs: Dict[str, Any]) -> Query[_M]:
        filters = list(self._filters)
        for name, value in kwargs.items():
            value = self._check(clause, name, value)
            if clause == 'like':
                if isinstance(value, bytes):
                    raise TypeError('like(): patterns must be str, not bytes (%s)' % (name,))
                if not isinstance(value, str):
                    raise QueryError('like(): the pattern for %s must be a string, got %s'
                                     % (name, short_repr(value)))
                _normalise_pattern(value)  # QueryError now for an oversized pattern
                filters.append(Pattern(name, value))
                continue
            if not isinstance(value, _LT):
                raise QueryError('%s(): the value for %s must be str or bytes, got %s'
                                 % (clause, name, short_repr(value)))
            if clause == 'startswith':
                filters.append(Prefix(name, value))
            else:
                filters.append(Suffix(name, value[::-1]))
        return self.replace(filters=tuple(filters))

    def startswith(self, **kwargs: Any) -> Query[_M]:
        """Keep entities having a token (of a ``prefix=True`` column) starting with the value."""
        return self._text_filter('startswith', kwargs)

    def endswith(self, **kwargs: Any) -> Query[_M]:
        """Keep entities having a token (of a ``suffix=True`` column) ending with the value."""
        return self._text_filter('endswith', kwargs)

    def like(self, **kwargs: Any) -> Query[_M]:
        """Keep entities having a token matching a pattern (``? * + !`` wildcards, bytes-wise).

        Patterns over ``rom.index.MAX_PATTERN_BYTES`` (1024) UTF-8 bytes raise QueryError.
        """
        return self._text_filter('like', kwargs)

    def near(self, name: str, lon: Any, lat: Any, distance: Any, measure: str,
             count: Optional[int] = None) -> Query[_M]:
        """Keep entities within ``distance`` (m, km, mi, ft) of (lon, lat) in geo index ``name``."""
        if name not in self._model._geo:
            raise ValueError('near(): %s has no geo index named %r' % (self._model.__name__, name))
        measure = measure.lower()
        if measure not in ALLOWED_DIST:
            raise ValueError('near(): distance unit must be one of %s, not %r'
                             % (', '.join(ALLOWED_DIST), measure))
        flt = Geofilter(name, lon, lat, distance, measure, count)
        return self.replace(filters=self._filters + (flt,))

    def order_by(self, column: str) -> Query[_M]:
        """Order by a scored index (``'-col'`` for descending); replaces an earlier order.

        A column without an index raises ``QueryError``.
        """
        self._check('order_by', column)
        col = self._model._columns[column.lstrip('-').partition(':')[0]]
        if not getattr(col, '_index', False):
            raise QueryError('order_by(%r): column %s.%s has no index to sort by (declare it '
                             'with index=True)' % (column, self._model.__name__, col._attr))
        if type(col).__name__ in ('String', 'Text', 'Json') and \
                _keygen_name(col) not in _STRING_SORT_KEYGENS:
            warnings.warn('order_by(%r): sorting on a non-numeric column gives meaningful '
                          'results only with a sortable keygen (%s) or a custom one'
                          % (column.lstrip('-'), ', '.join(_STRING_SORT_KEYGENS)), stacklevel=2)
        return self.replace(order_by=column)

    def limit(self, offset: int, count: int) -> Query[_M]:
        """Return ``count`` results starting at ``offset`` (replaces an earlier limit).

        ``offset`` and ``count`` must be integers (or None); ``offset`` must lie within
        +-(2**63 - 1), the ranks Redis supports (``QueryError`` otherwise).
        """
        for what, value in (('offset', offset), ('count', count)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise QueryError('limit(): %s must be an integer, not %s'
                                 % (what, short_repr(value)))
        if offset is not None and abs(offset) > MAX_RANK:
            raise QueryError('limit(): offset %d is outside the ranks Redis supports (+-%d)'
                             % (offset, MAX_RANK))
        return self.replace(limit=(offset, count))

    def select(self, *column_names: Any, **kwargs: Any) -> Query[Any]:
        """Yield rows of the named columns instead of entities.

        Keywords: ``include_pk=False``, ``decode=True``, ``ff=_dict_data_factory``.
        """
        if column_names and isinstance(column_names[0], (list, tuple)):
            names = list(column_names[0])
        else:
            names = list(column_names)
        model = self._model
        if not names:
            raise QueryError('select() needs at least one column name')
        if len(set(names)) != len(names):
            raise QueryError('select(): duplicate column names in %r' % (names,))
        missing = [n for n in names if n not in model._columns]
        if missing:
            raise QueryError('select(): model %s has no column(s) %s'
                             % (model.__name__, ', '.join(map(repr, missing))))
        if self._prefetch:
            raise QueryError('select() returns rows, not entities: it cannot be combined with '
                             'prefetch()')
        drop_pk = False
        if model._pkey not in names:
            names.append(model._pkey)
            drop_pk = not kwargs.get('include_pk', False)
        select = (tuple(names), kwargs.get('decode', True), drop_pk,
                  kwargs.get('ff', _dict_data_factory))
        return self.replace(select=select)

    def prefetch(self, *names: str) -> Query[_M]:
        """Load these relations (``ManyToOne``/``OneToOne``/``OneToMany`` attribute names) of
        every result together with the results: one more round trip per relation and page
        instead of one per entity (and, in async code, no ``MissingLoadError``)."""
        if self._select is not None:
            raise QueryError('prefetch() loads relations of entities: it cannot be combined '
                             'with select()')
        from ._ops_relations import relation_column
        for name in names:
            relation_column(self._model, name, 'prefetch()')
        return self.replace(prefetch=tuple(dict.fromkeys(self._prefetch + names)))

    # -- terminal calls (operations in rom._ops_query; a-prefixed: awaitable) -------------
    def _bounds(self) -> Tuple[int, int]:
        offset, count = self._limit or (0, _NO_LIMIT)
        return (offset or 0), (_NO_LIMIT if count is None else count)

    def count(self) -> int:
        """The number of matches (unfiltered: an upper bound from the id counter)."""
        return run(_ops.op_count(self))

    async def acount(self) -> int:
        """Awaitable :meth:`count`."""
        return await arun(_ops.op_count(self))

    def _search(self) -> List[Any]:
        """The matching ids (bytes or str) in result order, honouring the limit."""
        return run(_ops.op_search(self))

    def cached_result(self, timeout: int) -> str:
        """Run the query and keep the result ZSET for ``timeout`` seconds; returns its key."""
        return run(_ops.op_cached_result(self, timeout))

    async def acached_result(self, timeout: int) -> str:
        """Awaitable :meth:`cached_result`."""
        return await arun(_ops.op_cached_result(self, timeout))

    def iter_result(self, timeout: int = 30, pagesize: int = 100,
                    no_hscan: bool = False) -> Iterator[_M]:
        """Iterate over the matching entities (or ``select`` rows), page by page."""
        return _results(_ops.op_chunks(self, timeout, pagesize))

    def aiter_result(self, timeout: int = 30, pagesize: int = 100,
                     no_hscan: bool = False) -> AsyncIterator[_M]:
        """``async for`` over the results, fetched page by page like :meth:`iter_result`."""
        return AsyncResults(_ops.op_chunks(self, timeout, pagesize), self._prefetch)

    def __iter__(self) -> Iterator[_M]:
        return self.iter_result()

    def __aiter__(self) -> AsyncIterator[_M]:
        """``async for entity in query``: the results, fetched in chunks like ``iter_result``."""
        return self.aiter_result()

    def execute(self) -> List[_M]:
        """All results as a list."""
        return run(_ops.op_all(self))

    def all(self) -> List[_M]:
        """All results as a list."""
        return run(_ops.op_all(self))

    async def aall(self) -> List[_M]:
        """Awaitable :meth:`all`."""
        return mark_async(await arun(_ops.op_all(self)), self._prefetch)

    async def aexecute(self) -> List[_M]:
        """Awaitable :meth:`execute`."""
        return mark_async(await arun(_ops.op_all(self)), self._prefetch)

    async def aselect(self, *column_names: Any, **kwargs: Any) -> List[Any]:
        """Awaitable ``select(...)`` rows: ``await q.aselect('a', 'b')`` is
        ``await q.select('a', 'b').aall()`` (same arguments as :meth:`select`)."""
        return await arun(_ops.op_all(self.select(*column_names, **kwargs)))

    def first(self) -> Optional[_M]:
        """The first result (entity or select row), or None."""
        return run(_ops.op_first(self))

    async def afirst(self) -> Optional[_M]:
        """Awaitable :meth:`first`."""
        return mark_async(await arun(_ops.op_first(self)), self._prefetch)

    def exists(self) -> bool:
        """Whether the query has a result. Answered from the indexes like :meth:`count`
        (one call for a single filter); without filters or order, by reading one entity."""
        return run(_ops.op_exists(self))

    async def aexists(self) -> bool:
        """Awaitable :meth:`exists`."""
        return await arun(_ops.op_exists(self))

    @overload
    def __getitem__(self, index: int) -> _M: ...
    @overload
    def __getitem__(self, index: slice) -> Query[_M]: ...

    def __getitem__(self, index: Union[int, slice]) -> Any:
        """``query[20:40]``: a query limited to that window (nothing is read yet);
        ``query[3]``: the result at that position (``IndexError`` when there is none)."""
        if isinstance(index, slice):
            start, stop, step = index.start, index.stop, index.step
            for bound in (start, stop, step):
                if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int)):
                    raise TypeError('Query slices need int bounds, not %r' % (bound,))
            if step not in (None, 1):
                raise QueryError('Query slices cannot have a step (%r)' % (step,))
            if (start or 0) < 0 or (stop or 0) < 0:
                raise QueryError('Query slices cannot be negative (%r)' % (index,))
            start = start or 0
            offset, count = self._limit or (0, None)
            offset = max(offset or 0, 0) + start
            if count is not None:
                count = max(count - start, 0)
            if stop is not None:
                count = max(stop - start, 0) if count is None else min(count, max(stop - start, 0))
            return self.replace(limit=(offset, count))
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError('Query indices must be int or slice, not %s' % type(index).__name__)
        if index < 0:
            raise QueryError('Query indices cannot be negative (%d)' % (index,))
        for item in self[index:index + 1]:
            return item
        raise IndexError('query result index %d out of range' % (index,))

    def page(self, count: int, after: Optional[str] = None) -> Page[_M]:
        """Keyset pagination of an ordered query: ``count`` results following cursor
        ``after`` (from the previous page's ``next``; None for the first page)."""
        return run(op_keyset_page(self, count, after))

    async def apage(self, count: int, after: Optional[str] = None) -> Page[_M]:
        """Awaitable :meth:`page`."""
        page = await arun(op_keyset_page(self, count, after))
        mark_async(page.items, self._prefetch)
        return page

    def _deletable(self) -> Query[_M]:
        model = self._model
        if not model._no_fk or model._namespace in MODELS_REFERENCED or \
                model.__name__ in MODELS_REFERENCED:
            raise QueryError('Query.delete(): %s takes part in foreign-key relationships; '
                             'delete its entities one by one' % (model.__name__,))
        return self.replace(select=None, prefetch=())

    def delete(self, blocksize: int = 100) -> None:
        """Delete every matching entity (models without foreign keys only)."""
        chunks = _ops.op_chunks(self._deletable(), 30, blocksize)
        while True:
            batch = run(_ops.next_chunk(chunks))
            if batch is None:
                return
            if batch:
                _session.session.delete(batch)

    async def adelete(self, blocksize: int = 100) -> None:
        """Awaitable :meth:`delete`."""
        chunks = _ops.op_chunks(self._deletable(), 30, blocksize)
        while True:
            batch = await arun(_ops.next_chunk(chunks))
            if batch is None:
                return
            if batch:
                await _session.session.adelete(batch)


def _results(chunks: Any) -> Iterator[Any]:
    """The items of the chunks of a query operation (fetched page by page)."""
    while True:
        items = run(_ops.next_chunk(chunks))
        if items is None:
            return
        yield from items


class AsyncResults(AsyncIterator[Any]):
    """``async for`` over the chunks of a query operation (see :meth:`Query.aiter_result`)."""

    __slots__ = ('_chunks', '_items', '_prefetch')

    def __init__(self, chunks: Any, prefetch: Sequence[str] = ()) -> None:
        self._chunks = chunks
        self._items: Deque[Any] = deque()
        self._prefetch = prefetch

    def __aiter__(self) -> AsyncResults:
        return self

    async def __anext__(self) -> Any:
        while not self._items:
            if self._chunks is None:
                raise StopAsyncIteration
            items = await arun(_ops.next_chunk(self._chunks))
            if items is None:
                self._chunks = None
                raise StopAsyncIteration
            self._items.extend(mark_async(items, self._prefetch))
        return self._items.popleft()


class _PrefetchingQuery(Query[_M]):
    """A :class:`Query` that loads relations of its results (:meth:`Query.prefetch`)."""

    __slots__ = ('_prefetch',)
