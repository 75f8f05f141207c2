"""The concrete column types (``rom.columns`` re-exports them).

Each is a ``Column`` (``rom._column``) with its allowed types, conversions (``_from_redis``)
and storage string (``_to_redis``), plus the checks that refuse values it cannot store.
"""
from __future__ import annotations

import json
import math
from datetime import date, datetime, time
from decimal import Decimal as _Decimal
from asyncio import _get_running_loop
from typing import TYPE_CHECKING, Any, Callable, Optional, overload

from ._aconnect import aconnect
from ._column import _C, _G, Column, _Column, _type_names  # noqa: F401 (re-exported)
from ._connect import connect
from ._helpers import dt2ts, short_repr, t2ts, ts2dt, ts2t
from ._ids import held_id, take_id
from ._registry import PENDING_ID
from ._values import check_keygen, utc_datetime
from .exceptions import InvalidColumnValue, InvalidOperation, _conversion_error

if TYPE_CHECKING:
    from typing_extensions import Literal
    from typing_extensions import Unpack

    from ._typing import ColumnOptions as _Options

def _bool_number(value: Any) -> Optional[str]:
    # reference bug N1: bools in numeric columns are stored as '1'/'0', not 'True'/'False'
    if value is True:
        return '1'
    if value is False:
        return '0'
    return None


class Integer(Column[_G]):
    """An integer (any size). Stored as decimal text.

    Floats and Decimals are converted only when they hold a whole number (``4.0`` -> 4);
    ``4.7``, infinities and NaN are refused with ``InvalidColumnValue``.
    """

    if TYPE_CHECKING:  # required=True reads as int, otherwise Optional[int]
        @overload
        def __init__(self: Integer[int], required: Literal[True], *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        @overload
        def __init__(self: Integer[Optional[int]], required: bool = ..., *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        def __init__(self, *args: Any, **options: Any) -> None: ...

    _allowed = int

    def _from_redis(self, value: Any) -> int:
        if isinstance(value, (float, _Decimal)):
            finite = value.is_finite() if isinstance(value, _Decimal) else math.isfinite(value)
            if not finite:
                raise ValueError('%r is not a finite number' % (value,))
            if value != int(value):
                raise ValueError('%r is not a whole number' % (value,))
        return int(value)

    def _to_redis(self, value: Any) -> str:
        return _bool_number(value) or str(value)


class Boolean(Column[_G]):
    """A boolean. Stored as ``'1'`` (true) or ``''`` (false)."""

    if TYPE_CHECKING:  # required=True reads as bool, otherwise Optional[bool]
        @overload
        def __init__(self: Boolean[bool], required: Literal[True], *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        @overload
        def __init__(self: Boolean[Optional[bool]], required: bool = ..., *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        def __init__(self, *args: Any, **options: Any) -> None: ...

    _allowed = bool

    def _to_redis(self, value: Any) -> str:
        return '1' if value else ''

    def _from_redis(self, value: Any) -> bool:
        return bool(value)


class Float(Column[_G]):
    """A float (ints are accepted and kept). Stored as ``repr(value)``."""

    if TYPE_CHECKING:  # required=True reads as float, otherwise Optional[float]
        @overload
        def __init__(self: Float[float], required: Literal[True], *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        @overload
        def __init__(self: Float[Optional[float]], required: bool = ..., *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        def __init__(self, *args: Any, **options: Any) -> None: ...

    _allowed = (float, int)

    def _validate(self, value: Any, obj: Any = None) -> None:
        Column._validate(self, value, obj)
        if isinstance(value, int):
            try:
                float(value)
            except OverflowError:
                raise self._refuse(obj, value, 'the integer is outside the range of a float')

    def _to_redis(self, value: Any) -> str:
        return _bool_number(value) or repr(value)


class Decimal(Column[_G]):
    """A ``decimal.Decimal``. Stored as ``str(value)``; a signaling NaN is refused."""

    if TYPE_CHECKING:  # required=True reads as _Decimal, otherwise Optional[_Decimal]
        @overload
        def __init__(self: Decimal[_Decimal], required: Literal[True], *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        @overload
        def __init__(self: Decimal[Optional[_Decimal]], required: bool = ..., *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        def __init__(self, *args: Any, **options: Any) -> None: ...

    _allowed = _Decimal

    def _validate(self, value: Any, obj: Any = None) -> None:
        Column._validate(self, value, obj)
        if isinstance(value, _Decimal) and value.is_snan():
            raise self._refuse(obj, value, 'a signaling NaN cannot be stored')

    def _to_redis(self, value: Any) -> str:
        return str(value)


class DateTime(Column[_G]):
    """A ``datetime`` stored as seconds since the epoch (naive values are taken as UTC).

    A timezone-aware value is converted to the same instant as a naive UTC datetime when
    assigned, so the entity (and every later load) holds the naive UTC value.
    """

    if TYPE_CHECKING:  # required=True reads as datetime, otherwise Optional[datetime]
        @overload
        def __init__(self: DateTime[datetime], required: Literal[True], *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        @overload
        def __init__(self: DateTime[Optional[datetime]], required: bool = ..., *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        def __init__(self, *args: Any, **options: Any) -> None: ...

    _allowed = datetime

    def _prepare(self, value: Any, obj: Any) -> Any:
        return utc_datetime(self, value, obj)

    def _from_redis(self, value: Any) -> datetime:
        return ts2dt(float(value))

    def _to_redis(self, value: Any) -> str:
        return repr(dt2ts(value))


class SaferDateTime(DateTime[_G]):
    """Like ``DateTime`` but only real ``datetime`` objects may be assigned."""

    if TYPE_CHECKING:  # required=True reads as datetime, otherwise Optional[datetime]
        @overload
        def __init__(self: SaferDateTime[datetime], required: Literal[True], *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        @overload
        def __init__(self: SaferDateTime[Optional[datetime]], required: bool = ..., *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        def __init__(self, *args: Any, **options: Any) -> None: ...

    def _reject(self, value: Any, ns: Any) -> InvalidColumnValue:
        return InvalidColumnValue('%s.%s: %s is not a datetime; a datetime is required'
                                  % (ns, self._attr, short_repr(value)))

    def __set__(self, obj: Any, value: Any) -> None:
        if not isinstance(value, datetime):
            raise self._reject(value, obj._namespace)
        self._store(obj, value)

    def _init_(self, obj: Any, model: str, attr: str, value: Any, loading: bool) -> None:
        self._model = model
        self._attr = attr
        if value is not None and not isinstance(value, datetime):
            if not loading or not isinstance(value, str):
                raise self._reject(value, model)
            try:
                value = ts2dt(float(value))
            except (ValueError, TypeError, OverflowError, OSError):
                raise InvalidColumnValue('%s.%s: stored value %r cannot be read as a datetime'
                                         % (model, attr, value))
        Column._init_(self, obj, model, attr, value, loading)


class Date(Column[_G]):
    """A ``date`` (datetimes are accepted). Stored as seconds since the epoch."""

    if TYPE_CHECKING:  # required=True reads as date, otherwise Optional[date]
        @overload
        def __init__(self: Date[date], required: Literal[True], *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        @overload
        def __init__(self: Date[Optional[date]], required: bool = ..., *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        def __init__(self, *args: Any, **options: Any) -> None: ...

    _allowed = date

    def _prepare(self, value: Any, obj: Any) -> Any:
        return utc_datetime(self, value, obj)

    def _from_redis(self, value: Any) -> date:
        return ts2dt(float(value)).date()

    def _to_redis(self, value: Any) -> str:
        return repr(dt2ts(value))


class Time(Column[_G]):
    """A naive ``time``. Stored as seconds after midnight."""

    if TYPE_CHECKING:  # required=True reads as time, otherwise Optional[time]
        @overload
        def __init__(self: Time[time], required: Literal[True], *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        @overload
        def __init__(self: Time[Optional[time]], required: bool = ..., *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        def __init__(self, *args: Any, **options: Any) -> None: ...

    _allowed = time

    def _from_redis(self, value: Any) -> time:
        return ts2t(float(value))

    def _to_redis(self, value: Any) -> str:
        return repr(t2ts(value))


class String(Column[_G]):
    """Bytes. A ``str`` is accepted at construction (latin-1 encoded), not on assignment."""

    if TYPE_CHECKING:  # required=True reads as bytes, otherwise Optional[bytes]
        @overload
        def __init__(self: String[bytes], required: Literal[True], *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        @overload
        def __init__(self: String[Optional[bytes]], required: bool = ..., *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        def __init__(self, *args: Any, **options: Any) -> None: ...

    _allowed = bytes

    def _from_redis(self, value: Any) -> bytes:
        if isinstance(value, bytes):
            return value.decode('utf-8').encode('latin-1')
        return value.encode('latin-1')

    def _init_(self, obj: Any, model: str, attr: str, value: Any, loading: bool) -> None:
        if loading and isinstance(value, bytes):  # raw stored bytes: §2.1 transport reversed
            value = value.decode('utf-8').encode('latin-1')
        Column._init_(self, obj, model, attr, value, loading)

    def _coerce(self, value: Any) -> Any:
        # construction/loading: a str is latin-1 encoded. rom 1.1.2 let UnicodeEncodeError
        # (> U+00FF) and AttributeError (non-str, non-bytes) propagate (spec §3.4.6); the
        # error raised is an InvalidColumnValue naming the column that is also of that type
        try:
            if isinstance(value, str):
                return value.encode('latin-1')
            return Column._coerce(self, value)
        except (UnicodeEncodeError, AttributeError) as err:
            raise _conversion_error(self._label(), value, 'bytes (or latin-1 text)', err
                                    ) from err

    def _convert_assigned(self, value: Any) -> Any:
        return value  # no conversion on assignment: the validation error follows

    def _to_redis(self, value: Any) -> str:
        return value.decode('latin-1')


class Text(Column[_G]):
    """Unicode text (bytes are decoded as UTF-8). Stored as UTF-8; lone surrogates are refused."""

    if TYPE_CHECKING:  # required=True reads as str, otherwise Optional[str]
        @overload
        def __init__(self: Text[str], required: Literal[True], *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        @overload
        def __init__(self: Text[Optional[str]], required: bool = ..., *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        def __init__(self, *args: Any, **options: Any) -> None: ...

    _allowed = str

    def _validate(self, value: Any, obj: Any = None) -> None:
        Column._validate(self, value, obj)
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode('utf-8')
            except UnicodeEncodeError as err:
                raise self._refuse(obj, value, 'it has no UTF-8 form (%s)' % (err.reason,))

    def _from_redis(self, value: Any) -> Any:
        if isinstance(value, bytes):
            return value.decode('utf-8')
        return value

    def _to_redis(self, value: Any) -> str:
        return value


class Json(Column[Any]):
    """A dict, list or tuple stored as JSON (``json.dumps(value, sort_keys=True)``)."""

    _allowed = (dict, list, tuple)

    def _from_redis(self, value: Any) -> Any:
        if isinstance(value, (str, bytes)):
            loaded = json.loads(value)
            if loaded is not None and not isinstance(loaded, self._allowed):
                raise InvalidColumnValue('%s.%s: JSON value %r has type %s; expected dict or list'
                                         % (self._model, self._attr, value, type(loaded).__name__))
            return loaded
        return value

    def _to_redis(self, value: Any) -> str:
        return json.dumps(value, sort_keys=True)


class PrimaryKey(Column[int]):
    """The integer primary key, allocated from ``<ns>:<pk>:`` when an entity is created."""

    _allowed = int

    def __init__(self, index: bool = False) -> None:
        Column.__init__(self, required=False, default=None, unique=False, index=index)

    def _init_(self, obj: Any, model: str, attr: str, value: Any, loading: bool) -> None:
        self._model = model
        self._attr = attr
        if loading:
            if value is None:
                raise InvalidColumnValue('%s: the stored data has no primary key %r' % (model, attr))
            obj._data[attr] = int(value)
            return
        if value:
            raise InvalidColumnValue('%s.%s: the primary key cannot be given when creating an '
                                     'entity' % (model, attr))
        if value is None:
            obj._modified = True
            if not getattr(type(obj), '_defer_id', False):
                if _get_running_loop() is None:
                    obj._data[attr] = take_id(type(obj), connect(obj))
                    return
                # in a coroutine: never block; an id of a held block, else pending
                value = held_id(type(obj), aconnect(obj))
                if value is not None:
                    obj._data[attr] = value
                    return
            # taken (from the process's block of ids) when first read or before the first save
            obj._data[attr] = PENDING_ID
            return
        obj._data[attr] = value

    @overload
    def __get__(self: _C, obj: None, cls: Optional[type] = None) -> _C: ...
    @overload
    def __get__(self, obj: object, cls: Optional[type] = None) -> int: ...

    def __get__(self, obj: Any, cls: Optional[type] = None) -> Any:
        if obj is None:
            return self
        value = obj._data.get(self._attr)
        if value is PENDING_ID:
            value = obj._allocate_id()
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        raise InvalidOperation('%s.%s: the primary key cannot be changed' % (obj._namespace, self._attr))

    def __delete__(self, obj: Any) -> None:
        raise InvalidOperation('%s.%s: the primary key cannot be removed' % (obj._namespace, self._attr))

    def _to_redis(self, value: Any) -> str:
        return str(value)


class IndexOnly(Column[None]):
    """Stores nothing; only produces index entries from the entity's other data."""

    _virtual = True

    def __init__(self, column: Optional[str] = None, keygen: Optional[Callable[[Any], Any]] = None,
                 prefix: bool = False, suffix: bool = False,
                 keygen2: Optional[Callable[[str, dict], Any]] = None,
                 index: bool = False, unique: bool = False) -> None:
        check_keygen('IndexOnly', 'keygen', keygen)
        if column and keygen:
            source, func = column, keygen
            keygen2 = lambda attr, data: func(data.get(source))  # noqa: E731 (name '<lambda>')
        elif not keygen2:
            raise ValueError('IndexOnly needs either both column and keygen, or keygen2')
        Column.__init__(self, keygen2=keygen2, prefix=prefix, suffix=suffix, unique=unique,
                        index=bool(index or prefix or suffix or not unique))

    def _init_(self, obj: Any, model: str, attr: str, value: Any, loading: bool) -> None:
        self._model = model
        self._attr = attr
        if value is not None and not loading:
            raise self._no_value(model, value)
        obj._data[attr] = value if loading else None

    def _no_value(self, ns: Any, value: Any) -> InvalidColumnValue:
        return InvalidColumnValue('%s.%s: an IndexOnly column stores no value (got %s)'
                                  % (ns, self._attr, type(value).__name__))

    def __set__(self, obj: Any, value: Any) -> None:
        if value is not None:
            raise self._no_value(obj._namespace, value)

    def _to_redis(self, value: Any) -> None:
        return None

    def _from_redis(self, value: Any) -> None:
        return None

    def _equal(self, old_s: str, new_v: Any, new_s: Any) -> bool:
        return True
