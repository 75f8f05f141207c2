"""The immutable ``Query`` builder and result fetching.

Builder methods validate at once and return a new ``Query``; only terminal calls
(``count``, iteration, ``all``/``execute``, ``first``, ``cached_result``, ``delete``,
``_search``) talk to Redis, through the model's ``GeneralIndex`` (``rom._search``).
"""
from __future__ import annotations

import datetime
import decimal
import warnings
from typing import (TYPE_CHECKING, Any, Dict, Generic, Iterator, List, Optional, Sequence, Tuple,
                    Type, TypeVar, Union, overload)

from . import _session
from ._connect import connect, to_text
from ._expiry import visible_ids
from ._helpers import MAX_RANK, dt2ts, score_text, short_repr, t2ts
from ._keyset import Page as Page  # re-exported: the result type of Query.page()
from ._keyset import keyset_page
from ._keygen import LOWERCASE_QUERY_KEYGENS
from ._query_match import _normalise_pattern, _ts
from ._records import Geofilter, Pattern, Prefix, Suffix
from ._search import execute_guarded
from ._registry import MODELS_REFERENCED
from ._relations import ManyToOne, OneToOne
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
NUMERIC_TYPES = (int, float, decimal.Decimal, datetime.datetime, datetime.date, datetime.time)
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


def _endpoint(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date)):
        return dt2ts(value)
    if isinstance(value, datetime.time):
        return t2ts(value)
    return value


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


def _bound(model: Any, name: str, value: Any, clause: str = 'filter') -> Any:
    """A range endpoint Redis can compare with: None, a number or numeric text (QueryError
    for NaN, text that is not a number and values outside the double range)."""
    value = _endpoint(value)
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        value = value.decode('latin-1') if isinstance(value, bytes) else value
        text = value[1:] if value.startswith('(') else value  # exclusive endpoint (compat)
    else:
        text = value
    if isinstance(value, bool) or score_text(text) is None:
        raise QueryError('%s(): %s is not a number usable as a range endpoint of %s.%s'
                         % (clause, short_repr(value), model.__name__, name))
    return value


class Query(Generic[_M]):
    """A lazy, immutable query over one model (``Model.query``)."""

    __slots__ = ('_model', '_filters', '_order_by', '_limit', '_select')

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
        """A copy with any of ``model, filters, order_by, limit, select`` replaced."""
        unknown = set(kwargs) - set(_FIELDS)
        if unknown:
            raise TypeError('Query.replace() got unexpected keyword(s): %s'
                            % ', '.join(sorted(unknown)))
        data = {name: getattr(self, '_' + name) for name in _FIELDS}
        data.update(kwargs)
        return Query(**data)

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
        drop_pk = False
        if model._pkey not in names:
            names.append(model._pkey)
            drop_pk = not kwargs.get('include_pk', False)
        select = (tuple(names), kwargs.get('decode', True), drop_pk,
                  kwargs.get('ff', _dict_data_factory))
        return self.replace(select=select)

    # -- terminal calls -------------------------------------------------------------------
    def _bounds(self) -> Tuple[int, int]:
        offset, count = self._limit or (0, _NO_LIMIT)
        return (offset or 0), (_NO_LIMIT if count is None else count)

    def _need_filters(self, what: str) -> None:
        if not self._filters and not self._order_by:
            raise QueryError('%s needs at least one filter or an order_by()' % (what,))

    def count(self) -> int:
        """The number of matches (unfiltered: an upper bound from the id counter)."""
        model = self._model
        conn = connect(model)
        if not self._filters and not self._order_by:
            total = int(conn.get('%s:%s:' % (model._namespace, model._pkey)) or 0)
            offset, count = self._bounds()
            return max(min(max(total - max(offset, 0), 0), count), 0)
        filters = list(self._filters)
        if self._order_by:
            filters.append(self._order_by.lstrip('-'))
        return model._gindex.count(conn, filters)

    def _search(self) -> List[Any]:
        """The matching ids (bytes or str) in result order, honouring the limit."""
        self._need_filters('_search()')
        offset, count = self._limit or (None, None)
        return self._model._gindex.search(connect(self._model), self._filters,
                                          self._order_by, offset, count)

    def cached_result(self, timeout: int) -> str:
        """Run the query and keep the result ZSET for ``timeout`` seconds; returns its key."""
        self._need_filters('cached_result()')
        timeout = int(timeout)
        if timeout < 1:
            raise QueryError('cached_result(): timeout must be at least 1 second, got %r'
                             % (timeout,))
        return self._model._gindex.search(connect(self._model), self._filters, self._order_by,
                                          timeout=timeout)

    def iter_result(self, timeout: int = 30, pagesize: int = 100,
                    no_hscan: bool = False) -> Iterator[_M]:
        """Iterate over the matching entities (or ``select`` rows), page by page."""
        if self._filters or self._order_by:
            return self._iter_filtered(timeout, pagesize)
        if getattr(self._model._columns[self._model._pkey], '_index', False):
            if self._model._ttl is not None:  # the pk index holds expired ids too
                return self.replace(order_by=self._model._pkey)._iter_filtered(timeout,
                                                                                pagesize)
            return self._iter_pk_index(pagesize)
        return self._iter_probe(pagesize)

    def __iter__(self) -> Iterator[_M]:
        return self.iter_result()

    def execute(self) -> List[_M]:
        """All results as a list."""
        return list(self)

    def all(self) -> List[_M]:
        """All results as a list."""
        return list(self)

    def first(self) -> Optional[_M]:
        """The first result (entity or select row), or None."""
        if not self._filters and not self._order_by:
            offset, count = self._bounds()
            for item in self.replace(limit=(offset, min(count, 1))):
                return item
            return None
        model = self._model
        conn = connect(model)
        offset = max(self._bounds()[0], 0)
        if self._select is not None and model._gindex._fast(
                self._filters, self._order_by, offset, 1) is None:
            pipe, temp = model._gindex._build(conn, self._filters, self._order_by)
            _get_column_data(pipe, model, self._select[0], key=temp, start=offset,
                             stop=offset, pipeline=True)
            pipe.delete(temp)
            rows = _split_reply(execute_guarded(pipe)[-2])[1]
            for row in _select_generator(model, self._select, rows):
                return row
            return None
        ids = model._gindex.search(conn, self._filters, self._order_by, offset, 1)
        if not ids:
            return None
        if self._select is not None:
            for row in self._page_items(conn, ids[:1]):
                return row
            return None
        return model.get(ids[0])

    def exists(self) -> bool:
        """Whether the query has a result. Answered from the indexes like :meth:`count`
        (one call for a single filter); without filters or order, by reading one entity."""
        if not self._filters and not self._order_by:
            return self.replace(select=None).first() is not None
        return self.count() > max(self._bounds()[0], 0)

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
        return keyset_page(self, count, after)

    def delete(self, blocksize: int = 100) -> None:
        """Delete every matching entity (models without foreign keys only)."""
        model = self._model
        if not model._no_fk or model._namespace in MODELS_REFERENCED or \
                model.__name__ in MODELS_REFERENCED:
            raise QueryError('Query.delete(): %s takes part in foreign-key relationships; '
                             'delete its entities one by one' % (model.__name__,))
        batch: List[Any] = []
        for entity in self.replace(select=None).iter_result(pagesize=blocksize):
            batch.append(entity)
            if len(batch) >= blocksize:
                _session.session.delete(batch)
                batch = []
        if batch:
            _session.session.delete(batch)

    # -- iteration ------------------------------------------------------------------------
    def _entities(self, ids: Sequence[Any]) -> List[Any]:
        """The entities of ``ids`` (missing rows dropped): the session's own where it has
        them; the others are loaded without being added to the session."""
        return [obj for obj in self._model._fetch(ids, track=False) if obj is not None]

    def _iter_filtered(self, timeout: int, pagesize: int) -> Iterator[Any]:
        model = self._model
        offset, budget = self._bounds()
        if pagesize <= 0 or budget <= 0:
            return
        conn = connect(model)
        gindex = model._gindex
        rank = max(offset, 0)
        if budget <= pagesize:
            # the whole answer fits one page: read it straight from the index when the
            # result order allows (no working set to build, work proportional to the page)
            plan = gindex._fast(self._filters, self._order_by, rank, budget)
            if plan is not None:
                while budget > 0:
                    ids = gindex._page(conn, plan, rank, budget)
                    if ids is None:  # models with ``_ttl``: some are due, general path
                        break
                    if not ids:
                        return
                    rank += len(ids)
                    asked = budget
                    for item in self._page_items(conn, ids):
                        yield item
                        budget -= 1
                    if len(ids) < asked:
                        return
                else:
                    return
        select = self._select
        pipe, temp = gindex._build(conn, self._filters, self._order_by)
        while budget > 0:
            size = min(budget, pagesize)
            pipe.expire(temp, timeout)
            if select is not None:
                gindex.drop_expired(pipe, temp)  # models with ``_ttl``
                _get_column_data(pipe, model, select[0], key=temp, start=rank,
                                 stop=min(rank + size - 1, MAX_RANK), pipeline=True)
                read, rows = _split_reply(execute_guarded(pipe)[-1])
                items: Any = _select_generator(model, select, rows)
            else:
                pipe.zrange(temp, rank, min(rank + size - 1, MAX_RANK))
                ids = execute_guarded(pipe)[-1]
                read = len(ids)
                items = self._entities(ids) if ids else ()
            if not read:
                return
            rank += read
            for item in items:
                yield item
                budget -= 1
                if budget <= 0:
                    return
            if read < size:
                return
            pipe = conn.pipeline(True)

    def _page_items(self, conn: Any, ids: Sequence[Any]) -> Any:
        if not ids:
            return ()
        if self._select is not None:
            if self._model._ttl is not None:  # expired entities are gone
                ids = visible_ids(self._model, ids)
            rows = _get_column_data(conn, self._model, self._select[0], ids=ids)[1]
            return _select_generator(self._model, self._select, rows)
        return self._entities(ids)

    def _iter_pk_index(self, pagesize: int) -> Iterator[Any]:
        model = self._model
        offset, budget = self._bounds()
        if pagesize <= 0 or budget <= 0:
            return
        conn = connect(model)
        key = '%s:%s:idx' % (model._namespace, model._pkey)
        size = min(budget, pagesize)
        ids = conn.zrange(key, max(offset, 0), min(max(offset, 0) + size - 1, MAX_RANK))
        while ids:
            for item in self._page_items(conn, ids):
                yield item
                budget -= 1
                if budget <= 0:
                    return
            if len(ids) < size:
                return
            size = min(budget, pagesize)
            ids = conn.zrangebyscore(key, '(%s' % (to_text(ids[-1]),), 'inf', start=0, num=size)

    def _iter_probe(self, pagesize: int) -> Iterator[Any]:
        model = self._model
        offset, count = self._bounds()
        if pagesize <= 0 or count <= 0:
            return
        conn = connect(model)
        last = int(conn.get('%s:%s:' % (model._namespace, model._pkey)) or 0)
        skip = max(offset, 0)
        # blocks start at the size of the window asked for (first(): 1 id) and double up to
        # pagesize, so small windows do not load whole pages
        size = min(pagesize, max(skip + count, 1))
        start = 1
        while start <= last:
            ids = list(range(start, min(start + size, last + 1)))
            start += size
            size = min(pagesize, size * 2)
            for item in self._page_items(conn, ids):
                if skip:
                    skip -= 1
                    continue
                yield item
                count -= 1
                if count <= 0:
                    return
