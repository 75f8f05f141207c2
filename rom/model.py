"""The ``Model`` active-record API: entity state, save/delete/refresh, get/get_by, transfer.

Declarations are checked by ``rom._schema._ModelMetaclass``; writes are planned by
``rom._write_plan``, run by ``rom._write_script`` and driven by ``rom._write``; searches go
through ``rom.query`` / ``rom._search``.
"""
from __future__ import annotations

from asyncio import _get_running_loop
from typing import (TYPE_CHECKING, Any, Dict, FrozenSet, Iterator, List, Optional, Sequence, Set,
                    Tuple, Type, TypeVar, Union, overload)

from . import _ops_query, _transfer
from . import _ttl as _requests
from ._coltypes import IndexOnly
from ._compat import _zrange_limit_iterator, redis_writer_lua
from ._connect import connect, decodes_responses
from ._helpers import ClassProperty, short_repr
from ._ids import check_count, op_reserve_ids, take_id
from ._io import arun, run
from ._keygen import SORT_KEYGEN_NAMES
from ._loader import field_names, load_row, mapping_builder, row_builder
from ._ops_delete import op_delete
from ._ops_read import op_get, op_get_by, op_refresh
from ._ops_relations import op_load
from ._registry import PENDING_ID, SKIP_ON_DELETE
from ._relations import ForeignModel, UnsafeColumn, _Related, _Unresolved, mark_async
from ._schema import _ModelMetaclass
from ._session import session
from ._values import initial_text
from ._write import op_save_entities, op_take_pending_ids
from ._write_plan import AttrDict, plan_write
from ._write_script import run_plans
from .exceptions import (ColumnError, DataRaceError, EntityDeletedError,  # noqa: F401
                         InvalidColumnValue,
                         InvalidOperation, QueryError)
from .query import Query

if TYPE_CHECKING:
    from ._typing import QueryProperty

__all__ = ['Model', 'redis_writer_lua']
# importable from rom.model, as in rom 1.1.2
_PUBLIC_HELPERS = (AttrDict, SKIP_ON_DELETE, _zrange_limit_iterator)

_STRING_SORT_KEYGENS = list(SORT_KEYGEN_NAMES)
_M = TypeVar('_M', bound='Model')
_Ids = Union[List[Any], Tuple[Any, ...], Set[Any], FrozenSet[Any]]


def _shown_in_repr(col: Any) -> bool:
    return not isinstance(col, (_Related, ForeignModel, IndexOnly, UnsafeColumn))


class Model(metaclass=_ModelMetaclass):
    """Base class of rom models: subclass it and declare columns as class attributes."""

    # the metaclass fills these (declared for type checkers)
    _namespace: str
    _columns: Dict[str, Any]
    _pkey: str
    _required: Set[str]
    _index: Set[str]
    _unique: Set[str]
    _cunique: Set[Tuple[str, ...]]
    _prefix: Set[str]
    _suffix: Set[str]
    _geo: Dict[str, Any]
    _gindex: Any
    _no_fk: bool
    _cluster_tag: Optional[str]  # Redis Cluster hash tag of a ``_cluster = True`` model
    _ttl: Any = None  # expiry (rom._ttl): None never; 0 may; seconds: new entities' lifetime
    _ttl_renew: bool = False  # with a positive _ttl: saves restart a running expiry
    _ttl_ms: int = 0
    if TYPE_CHECKING:
        #: the automatic primary key (models declaring their own PrimaryKey name it)
        id: int
        query: QueryProperty

    def __init__(self, **kwargs: Any) -> None:
        loading = kwargs.pop('_loading', False)
        extra_ok = kwargs.pop('_extra_ok', False)
        bypass = kwargs.pop('_bypass_session_entirely', False)
        self._init = False
        self._data: Dict[str, Any] = {}
        self._last: Dict[str, Any] = {}
        self._cached_unsafe: Dict[str, Any] = {}
        self._new = not loading
        self._modified = False
        self._deleted = False
        ns = self._namespace
        if loading:
            self._load(kwargs)
            self._init = True
            if not bypass:
                session.add(self)
            return
        for attr, col in self._columns.items():
            if isinstance(col, UnsafeColumn):
                continue
            value = kwargs.get(attr)
            if loading and value is False:
                value = None
            col._init_(self, ns, attr, value, loading)
            if value is not None and not isinstance(col, IndexOnly):
                if (isinstance(col, _Related) and getattr(value, '_new', False)
                        and _get_running_loop() is not None):
                    continue  # in a coroutine: the new entity is saved by the first asave
                self._last[attr] = value if isinstance(value, str) else initial_text(
                    ns, attr, col, value, self._data.get(attr))
        if not loading and not extra_ok and not bypass and not session.null_session:
            extra = [k for k in kwargs if k not in self._columns]
            if extra:
                getattr(self, self._pkey)  # the id is consumed, as in rom 1.1.2
                raise InvalidColumnValue('%s: unknown column(s) %s; pass _extra_ok=True to ignore '
                                         'them' % (ns, ', '.join(sorted(extra))))
        self._init = True
        if not bypass:
            session.add(self)

    def __repr__(self) -> str:
        """``<Model id=3 col='value' ...>``: the id and the first two other column values set
        (long values shortened; no I/O, an id not allocated yet shows as ``?``)."""
        pk = self._data.get(self._pkey)
        parts = ['%s=%s' % (self._pkey, '?' if pk is None or pk is PENDING_ID else pk)]
        for attr, col in self._columns.items():
            if len(parts) > 2:
                break
            value = self._data.get(attr)
            if attr == self._pkey or value is None or not _shown_in_repr(col):
                continue
            parts.append('%s=%s' % (attr, short_repr(value, 40)))
        return '<%s %s>' % (type(self).__name__, ' '.join(parts))

    def _load(self, row: Dict[Any, Any], by_bytes: bool = False) -> None:
        """Initialise from a stored row; no validation, defaults apply.

        ``row`` maps field names to stored texts, or (``by_bytes``) bytes field names to bytes
        values straight from HGETALL: values are decoded only for the model's columns.
        """
        load_row(self, row, by_bytes)

    @classmethod
    def _row_fields(cls, conn: Any) -> List[Any]:
        """Script arguments naming what to read of each row: ``[n, pk position, *fields]``,
        or ``[0, 0]`` for whole rows (str replies, or a custom ``__init__``)."""
        if cls.__init__ is not Model.__init__ or decodes_responses(conn):
            return [0, 0]
        fields = field_names(cls)
        return [len(fields), fields.index(cls._pkey.encode('utf-8')) + 1] + fields

    @classmethod
    def _entities_from_reply(cls, reply: List[Any], by_values: bool) -> List['Model']:
        """Entities from a flat ``[id, row, ...]`` script reply (session first); each row is
        the HMGET values of ``_row_fields`` (``by_values``) or an HGETALL reply."""
        found = []
        for position in range(0, len(reply), 2):
            id_text = reply[position]
            id_text = id_text.decode('ascii') if isinstance(id_text, bytes) else id_text
            entity = session.get('%s:%s' % (cls._namespace, int(id_text)))
            if entity is None:
                row = reply[position + 1]
                if not row:
                    continue  # the row is gone (deleted behind the index's back)
                entity = cls._from_script_row(row, by_values)
            found.append(entity)
        return found

    @classmethod
    def _from_script_row(cls, row: List[Any], by_values: bool, track: bool = True) -> 'Model':
        """An entity from one row of a reading script's reply: the HMGET values of
        ``_row_fields`` (``by_values``) or a flat HGETALL reply."""
        if by_values:
            return cls._from_values(row, track)
        return cls._from_stored(dict(zip(row[::2], row[1::2])), None, track)

    @classmethod
    def _from_stored(cls, row: Dict[Any, Any], by_bytes: Any = None,
                     track: bool = True) -> 'Model':
        """An entity from an HGETALL reply, added to the session unless ``track`` is False.

        ``by_bytes``: whether the reply has bytes field names (the client does not decode
        responses); None looks at the (non-empty) reply.
        """
        if by_bytes is None:
            by_bytes = type(next(iter(row), None)) is bytes
        if by_bytes and cls.__init__ is Model.__init__:
            self = cls._built(mapping_builder(cls), row, track)
            if self is not None:
                return self
        return cls._from_row(row, by_bytes, track)

    @classmethod
    def _built(cls, build: Any, raw: Any, track: bool) -> Any:
        """The entity a compiled builder makes of ``raw`` (tracked), or None when the row
        needs the full path: a missing column (defaults, checks) or a bad stored value
        (the full path raises an error naming the column)."""
        try:
            self = build(cls, raw)
        except (ValueError, TypeError, ArithmeticError, OSError):
            return None
        if self is not None and track:
            session._add_loaded(self, '%s:%s' % (cls._namespace, self._data[cls._pkey]))
        return self

    @classmethod
    def _from_values(cls, values: Sequence[Any], track: bool = True) -> 'Model':
        """An entity from the raw bytes values of its fields (``field_names`` order)."""
        self = cls._built(row_builder(cls), values, track)
        if self is None:
            row = {key: value for key, value in zip(field_names(cls), values)
                   if value is not None}
            return cls._from_row(row, True, track)
        return self

    @classmethod
    def _from_row(cls, row: Dict[Any, Any], by_bytes: bool, track: bool) -> 'Model':
        """An entity from a stored row, column by column (any client, any ``__init__``)."""
        if cls.__init__ is not Model.__init__:  # a custom __init__ must see the load
            if by_bytes:
                row = {k.decode('utf-8'): v.decode('utf-8') for k, v in row.items()}
            if not track:
                row = dict(row, _bypass_session_entirely=True)
            return cls(_loading=True, **row)
        self = cls.__new__(cls)
        self._init = False
        self._data = {}
        self._last = {}
        self._cached_unsafe = {}
        self._new = self._modified = self._deleted = False
        load_row(self, row, by_bytes)
        self._init = True
        if track:
            session._add_loaded(self, '%s:%s' % (cls._namespace, self._data[cls._pkey]))
        return self

    # --- identity -----------------------------------------------------------------------------
    @property
    def _pk(self) -> str:
        """``'<ns>:<id>'``: the row key and identity-map key (allocates a pending id)."""
        value = self._data.get(self._pkey)
        if value is PENDING_ID:
            value = self._allocate_id()
        return '%s:%s' % (self._namespace, value)

    @property
    def _session_key(self) -> str:
        value = self._data.get(self._pkey)
        if value is PENDING_ID:
            return '%s:<new %x>' % (self._namespace, id(self))
        return '%s:%s' % (self._namespace, value)

    @property
    def _id_pending(self) -> bool:
        return self._data.get(self._pkey) is PENDING_ID

    def _allocate_id(self, rekey: bool = True) -> int:
        """Take the id of a new entity from the counter now (its id is being read)."""
        if not self._id_pending:
            return self._data[self._pkey]
        old_key = self._session_key
        value = take_id(type(self), connect(self))
        if rekey:
            self._set_allocated_id(value, old_key)
        else:  # the caller re-keys session.known itself
            self._data[self._pkey] = value
            session.wknown[self._session_key] = self
        return value

    async def aid(self) -> int:
        """The entity's id (its primary key's value). A new entity whose id is still
        pending (built in a coroutine while the process held no ids of its model) takes it
        with an awaited ``INCRBY``, where reading ``entity.id`` would block the loop."""
        if self._id_pending:
            await arun(op_take_pending_ids([self]))
        return self._data[self._pkey]  # type: ignore[no-any-return]

    @classmethod
    async def areserve_ids(cls, count: Optional[int] = None) -> None:
        """Reserve ids of this model ahead, with an awaited ``INCRBY`` when needed: the next
        ``count`` entities (default: at least one) built in this process take their ids at
        once, without I/O. A no-op while enough ids are held."""
        await arun(op_reserve_ids(cls, cls, check_count(count)))

    def _set_allocated_id(self, value: int, old_key: str) -> None:
        self._data[self._pkey] = value
        session._rekey_many([(self, old_key)])

    def _save_data(self) -> Dict[str, Any]:
        """The values a save writes: like ``to_dict()`` but a pending id stays pending."""
        data = self._data
        for attr, value in list(data.items()):
            if isinstance(value, _Unresolved):
                getattr(self, attr)
        return dict(data)

    @ClassProperty
    def _connection(cls) -> Any:
        return connect(cls)

    if not TYPE_CHECKING:
        @ClassProperty
        def query(cls) -> Query:
            """A new ``Query`` over this model."""
            return Query(cls)

    # --- hooks --------------------------------------------------------------------------------
    def _before_insert(self) -> None:
        pass

    def _before_update(self) -> None:
        pass

    def _before_delete(self) -> None:
        pass

    def _after_insert(self) -> None:
        pass

    def _after_update(self) -> None:
        pass

    def _after_delete(self) -> None:
        pass

    # --- expiry (models with ``_ttl`` only) ---------------------------------------------------
    expire_in = _requests.expire_in
    expire_at = _requests.expire_at
    persist = _requests.persist
    ttl = _requests.ttl
    attl = _requests.attl

    # --- data access --------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """A shallow copy of the entity's column values (references as entities)."""
        data = self._save_data()
        if data.get(self._pkey) is PENDING_ID:
            data[self._pkey] = self._allocate_id()
        return data

    def update(self: _M, *args: Any, **kwargs: Any) -> _M:
        """Assign positional values to the columns in order, then keyword values by name."""
        for attr, value in zip(self._columns, args):
            setattr(self, attr, value)
        for attr, value in kwargs.items():
            setattr(self, attr, value)
        return self

    def copy(self: _M) -> _M:
        """A new, unsaved entity with the same values and a new id."""
        data = self.to_dict()
        data.pop(self._pkey, None)
        return type(self)(**data)

    # --- writes -------------------------------------------------------------------------------
    def save(self, full: bool = False, force: bool = False) -> int:
        """Write the entity atomically; returns the number of changed columns."""
        return run(op_save_entities([self], full, force))

    async def asave(self, full: bool = False, force: bool = False) -> int:
        """Async ``save()``: same arguments, result and exceptions; never blocks the loop."""
        changed = await arun(op_save_entities([self], full, force))
        mark_async(self)  # (its relations: loaded with aload() in async code)
        return changed

    @staticmethod
    def _save_many(entities: List['Model'], full: bool, force: bool, all: bool = False) -> int:
        # entities saved as a side effect of an earlier one (a new ManyToOne target) are
        # skipped unless ``all``, as in a one-by-one loop
        return run(op_save_entities(entities, full, force, all))

    @classmethod
    def _apply_changes(cls, old: Dict[str, Any], new: Dict[str, Any], full: bool = False,
                       delete: bool = False, is_new: bool = False,
                       _conn: Any = None) -> Tuple[int, Dict[str, Any]]:
        plan = plan_write(cls, old, new, full, delete, is_new, incremental=False)
        done, failure = run_plans(_conn if _conn is not None else connect(cls), [plan])
        if failure is not None:
            raise failure
        return plan.changes, plan.stored

    @staticmethod
    def _delete_many(entities: List['Model'], conn: Any) -> None:
        """Queue the delete writes of entities (no hooks, no on_delete) as one script call."""
        run_plans(conn, [plan_write(type(e), e._last, {}, delete=True) for e in entities])

    def delete(self, **kwargs: Any) -> Any:
        """Delete the entity (with on_delete processing and hooks)."""
        return run(op_delete(self, kwargs))

    async def adelete(self, **kwargs: Any) -> Any:
        """Async ``delete()``: same arguments, result and exceptions; never blocks the loop."""
        return await arun(op_delete(self, kwargs))

    def refresh(self, force: bool = False) -> None:
        """Reload the entity from Redis, discarding local changes (``force`` for modified ones)."""
        run(op_refresh(self, force))

    async def arefresh(self, force: bool = False) -> None:
        """Awaitable :meth:`refresh`."""
        await arun(op_refresh(self, force))
        mark_async(self)

    # --- reads (operations in rom._ops_read; a-prefixed: awaitable) ---------------------------
    @overload
    @classmethod
    def get(cls: Type[_M], ids: _Ids) -> List[_M]: ...
    @overload
    @classmethod
    def get(cls: Type[_M], ids: Union[int, str, bytes]) -> Optional[_M]: ...

    @classmethod
    def get(cls, ids: Any) -> Any:
        """One entity (or None) for one id; a list of the existing entities for a list of ids."""
        return run(op_get(cls, ids))

    @overload
    @classmethod
    async def aget(cls: Type[_M], ids: _Ids) -> List[_M]: ...
    @overload
    @classmethod
    async def aget(cls: Type[_M], ids: Union[int, str, bytes]) -> Optional[_M]: ...

    @classmethod
    async def aget(cls, ids: Any) -> Any:
        """Awaitable :meth:`get`."""
        return mark_async(await arun(op_get(cls, ids)))

    @overload
    @classmethod
    def get_by(cls: Type[_M], **kwargs: Union[List[Any], Tuple[Any, ...]]) -> List[_M]: ...
    @overload
    @classmethod
    def get_by(cls: Type[_M], **kwargs: Any) -> Union[_M, List[_M], None]: ...

    @classmethod
    def get_by(cls, **kwargs: Any) -> Any:
        """Look entities up by one unique or indexed column (value, list or (lo, hi) range)."""
        return run(op_get_by(cls, kwargs))

    @overload
    @classmethod
    async def aget_by(cls: Type[_M], **kwargs: Union[List[Any], Tuple[Any, ...]]
                      ) -> List[_M]: ...
    @overload
    @classmethod
    async def aget_by(cls: Type[_M], **kwargs: Any) -> Union[_M, List[_M], None]: ...

    @classmethod
    async def aget_by(cls, **kwargs: Any) -> Any:
        """Awaitable :meth:`get_by`."""
        return mark_async(await arun(op_get_by(cls, kwargs)))

    async def aload(self, name: str) -> Any:
        """Load relation ``name`` (``ManyToOne``/``OneToOne``: the entity or None;
        ``OneToMany``: the list), so that reading it in async code does no I/O."""
        return mark_async(await arun(op_load(self, name)))

    @classmethod
    def does_not_startwith(cls, attr: str, values: Any, blocksize: int = 100) -> Iterator[Any]:
        """Entities with a prefix-index entry of ``attr`` starting with none of ``values``."""
        return _ops_query.not_prefixed(cls, attr, values, blocksize, False)

    @classmethod
    def does_not_endwith(cls, attr: str, values: Any, blocksize: int = 100) -> Iterator[Any]:
        """Entities with a suffix-index entry of ``attr`` ending with none of ``values``."""
        return _ops_query.not_prefixed(cls, attr, values, blocksize, True)

    def transfer(self, other: 'Model', attr: str, value: Union[int, float], txn_model: 'Model',
                 txn_attr: str, decimal_places: int = 0, refresh_entities: bool = True,
                 refresh_index: bool = True) -> None:
        """Atomically move ``value`` of numeric column ``attr`` from self to ``other``.

        ``txn_model.<txn_attr>`` is set to 1 so the same transfer cannot run twice.
        Integer and Decimal amounts are exact. Raises ``ValueError`` when the transfer cannot
        be made (not enough balance, already made, value not positive),
        ``InvalidColumnValue`` for an amount or stored balance not of the column's kind and
        ``InvalidOperation`` for the primary key or a non-numeric column; nothing is written
        then.
        """
        run(_transfer.op_transfer(self, other, attr, value, txn_model, txn_attr, decimal_places,
                                  refresh_entities, refresh_index))

    async def atransfer(self, other: 'Model', attr: str, value: Union[int, float],
                        txn_model: 'Model', txn_attr: str, decimal_places: int = 0,
                        refresh_entities: bool = True, refresh_index: bool = True) -> None:
        """Async ``transfer()``: same arguments, result and exceptions."""
        await arun(_transfer.op_transfer(self, other, attr, value, txn_model, txn_attr,
                                         decimal_places, refresh_entities, refresh_index))
