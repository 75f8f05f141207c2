"""Column base class and the scalar column types (``rom.columns`` re-exports them).

A column is a data descriptor: it converts assigned values, validates them, tracks the entity
as modified and produces the storage string (``_to_redis``) and Python value (``_from_redis``).
"""
from __future__ import annotations

import functools
import json
from datetime import date, datetime, time
from decimal import Decimal as _Decimal
from typing import TYPE_CHECKING, Any, Callable, Generic, Optional, Tuple, TypeVar, overload

from ._connect import connect
from ._helpers import dt2ts, t2ts, ts2dt, ts2t
from ._ids import take_id
from ._keygen import FULL_TEXT, STRING_INDEX_KEYGENS_STR, _boolean_keygen, _numeric_keygen
from ._registry import NULL, PENDING_ID
from ._session import session
from .exceptions import (ColumnError, InvalidColumnValue, InvalidOperation, MissingColumn)

if TYPE_CHECKING:
    from typing_extensions import Literal
    from typing_extensions import TypeVar as _TypeVar
    from typing_extensions import Unpack

    from ._typing import ColumnOptions as _Options
    # what reading the column gives (Optional[...] unless required); the default keeps a
    # bare ``Column``/``Text`` annotation or subclass valid under --strict
    _G = _TypeVar('_G', default=Any)
else:
    _G = TypeVar('_G')
_C = TypeVar('_C', bound='Column[Any]')

_NUMERIC_SAMPLES = (0, 0.0, _Decimal('0'), datetime(1970, 1, 1), date(1970, 1, 1), time(0, 0, 0))


def _as_tuple(allowed: Any) -> Tuple[type, ...]:
    if isinstance(allowed, tuple):
        return allowed
    return (allowed,) if allowed else ()


def _is_numeric(allowed: Any) -> bool:
    types = _as_tuple(allowed)
    return bool(types) and any(isinstance(s, types) for s in _NUMERIC_SAMPLES)


def _is_string(allowed: Any) -> bool:
    return any(issubclass(t, (str, bytes)) for t in _as_tuple(allowed))


def _is_integer(allowed: Any) -> bool:
    # vacuously true for no types: IndexOnly(unique=True) is allowed (spec §3.4.10)
    return all(issubclass(t, int) for t in _as_tuple(allowed))


def _type_names(allowed: Any) -> str:
    return ', '.join(t.__name__ for t in _as_tuple(allowed))


def _wrap_keygen(keygen: Callable[[Any], Any]) -> Callable[[str, dict], Any]:
    numeric = keygen is _numeric_keygen

    @functools.wraps(keygen)
    def wrapper(attr: str, data: dict) -> Any:
        value = data.get(attr)
        if numeric and isinstance(value, bool):
            value = int(value)  # a bool in Integer/Float is stored '1'/'0' (N1): score 1/0
        return keygen(value)
    wrapper._rom_own_column_only = True  # type: ignore[attr-defined]
    return wrapper


class _Column:
    """Common base of ``Column`` and ``UnsafeColumn``."""


class Column(_Column, Generic[_G]):
    """Base class of every stored column type.

    Args:
        required: a value must be given when an entity is created.
        default: value (or zero-argument callable) used when none is given.
        unique: values must be unique across entities (string and integer columns).
        index: build a secondary index so the column can be filtered.
        keygen: one-argument index key generator (see ``rom.util`` keygens).
        prefix / suffix: build prefix / suffix indexes (``startswith``/``endswith``/``like``).
        keygen2: two-argument key generator ``f(attr, data)`` (instead of ``keygen``).
    """

    _allowed: Any = ()
    _virtual = False  # True for columns that never store data (no _allowed needed)

    def __init__(self, required: bool = False, default: Any = NULL, unique: bool = False,
                 index: bool = False, keygen: Optional[Callable[..., Any]] = None,
                 prefix: bool = False, suffix: bool = False,
                 keygen2: Optional[Callable[[str, dict], Any]] = None) -> None:
        self._required = required
        self._default = default
        self._unique = unique
        self._index = index
        self._prefix = prefix
        self._suffix = suffix
        self._model: Optional[str] = None
        self._attr: Optional[str] = None
        self._keygen = self._choose_keygen(keygen, keygen2)

    def _choose_keygen(self, keygen: Any, keygen2: Any) -> Any:
        name = type(self).__name__
        if (keygen or keygen2) and not (self._index or self._prefix or self._suffix or self._unique):
            raise ColumnError('%s column: a keygen needs at least one of index, prefix, suffix '
                              'or unique to be set' % (name,))
        allowed = self._allowed
        if not _as_tuple(allowed) and not self._virtual:
            raise ColumnError('%s lacks a usable _allowed class attribute (the types it stores)'
                              % (name,))
        if self._unique and not (_is_string(allowed) or _is_integer(allowed)):
            raise ColumnError('%s column: unique columns must hold strings or integers' % (name,))
        if keygen and keygen2:
            raise ColumnError('%s column: give only one of keygen and keygen2' % (name,))
        if keygen2:
            return keygen2
        numeric = _is_numeric(allowed)
        string = _is_string(allowed)
        if self._index and not self._is_reference() and not numeric:
            if any(issubclass(bool, t) for t in _as_tuple(allowed)) and not keygen:
                keygen = _boolean_keygen
            if not string and not keygen:
                raise ColumnError('%s column: an indexed column that is neither numeric nor a '
                                  'string needs a keygen' % (name,))
        if (self._index or self._prefix or self._suffix) and string and not keygen:
            raise ColumnError('%s column: an indexed string column needs an explicit keygen, '
                              'one of %s' % (name, STRING_INDEX_KEYGENS_STR))
        if not keygen:
            if self._index:
                keygen = _numeric_keygen if numeric else FULL_TEXT
            elif self._prefix or self._suffix:
                keygen = FULL_TEXT
        return _wrap_keygen(keygen) if keygen else None

    def _is_reference(self) -> bool:
        return False

    # --- naming -------------------------------------------------------------------------
    def _label(self) -> str:
        return '%s.%s' % (self._model, self._attr)

    # --- descriptor protocol ------------------------------------------------------------
    def __set_name__(self, owner: type, name: str) -> None:
        if self._attr is None:
            self._attr = name

    @overload
    def __get__(self: _C, obj: None, cls: Optional[type] = None) -> _C: ...
    @overload
    def __get__(self, obj: object, cls: Optional[type] = None) -> _G: ...

    def __get__(self, obj: Any, cls: Optional[type] = None) -> Any:
        if obj is None:
            return self
        return obj._data.get(self._attr)

    def __set__(self, obj: Any, value: _G) -> None:
        if value is not None and self._allowed and not isinstance(value, self._allowed):
            try:
                value = self._convert_assigned(value)
            except (ValueError, TypeError):
                raise InvalidColumnValue(
                    'cannot assign %r to %s.%s: expected %s' % (
                        value, obj._namespace, self._attr, _type_names(self._allowed)))
        self._store(obj, value)

    def _store(self, obj: Any, value: Any) -> None:
        """Validate and store an already converted value; None removes the value."""
        if value is None:
            try:
                self.__delete__(obj)
            except AttributeError:
                pass
            return
        self._validate(value, obj)
        obj._data[self._attr] = value
        obj._modified = True
        session.add(obj)

    def __delete__(self, obj: Any) -> None:
        attr = self._attr
        if self._required:
            raise InvalidOperation('%s.%s is required and cannot be removed'
                                   % (obj._namespace, attr))
        if attr not in obj._data:
            raise AttributeError('%s.%s has no value to remove' % (obj._namespace, attr))
        del obj._data[attr]
        obj._modified = True
        session.add(obj)

    # --- entity initialisation ----------------------------------------------------------
    def _init_(self, obj: Any, model: str, attr: str, value: Any, loading: bool) -> None:
        self._model = model
        self._attr = attr
        if value is None:
            default = self._default
            if default is NULL or default is None:
                if self._required and not loading:
                    raise MissingColumn('%s.%s is required but no value was given' % (model, attr))
                obj._data[attr] = None
                return
            value = default() if callable(default) else default
        else:
            value = self._coerce(value)
        if not loading:
            self._validate(value, obj)
        obj._data[attr] = value

    # --- conversions (extension API) ------------------------------------------------------
    def _coerce(self, value: Any) -> Any:
        """Convert a constructor/loaded value that is not of the allowed type."""
        if self._allowed and not isinstance(value, self._allowed):
            try:
                return self._from_redis(value)
            except (ValueError, TypeError) as err:
                raise InvalidColumnValue(*err.args)
        return value

    def _convert_assigned(self, value: Any) -> Any:
        return self._from_redis(value)

    def _validate(self, value: Any, obj: Any = None) -> None:
        if value is None:
            return
        if not isinstance(value, self._allowed):
            ns = obj._namespace if obj is not None else self._model
            raise InvalidColumnValue('%s.%s: a value of type %s is not allowed; expected %s' % (
                ns, self._attr, type(value).__name__, _type_names(self._allowed)))

    def _to_redis(self, value: Any) -> Any:
        return repr(value)

    def _from_redis(self, value: Any) -> Any:
        allowed = self._allowed
        convert = allowed if not isinstance(allowed, tuple) else allowed[0]
        return convert(value)

    def _equal(self, old_s: str, new_v: Any, new_s: Any) -> bool:
        """Whether the stored string ``old_s`` holds the same value as ``new_v``."""
        try:
            old_v = old_s if isinstance(old_s, self._allowed) else self._from_redis(old_s)
        except Exception:
            return False
        return bool(old_v == new_v)


def _bool_number(value: Any) -> Optional[str]:
    # reference bug N1: bools in numeric columns are stored as '1'/'0', not 'True'/'False'
    if value is True:
        return '1'
    if value is False:
        return '0'
    return None


class Integer(Column[_G]):
    """An integer (any size). Stored as decimal text."""

    if TYPE_CHECKING:  # required=True reads as int, otherwise Optional[int]
        @overload
        def __init__(self: Integer[int], required: Literal[True], *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        @overload
        def __init__(self: Integer[Optional[int]], required: bool = ..., *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        def __init__(self, *args: Any, **options: Any) -> None: ...

    _allowed = int

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

    def _to_redis(self, value: Any) -> str:
        return _bool_number(value) or repr(value)


class Decimal(Column[_G]):
    """A ``decimal.Decimal``. Stored as ``str(value)``."""

    if TYPE_CHECKING:  # required=True reads as _Decimal, otherwise Optional[_Decimal]
        @overload
        def __init__(self: Decimal[_Decimal], required: Literal[True], *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        @overload
        def __init__(self: Decimal[Optional[_Decimal]], required: bool = ..., *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        def __init__(self, *args: Any, **options: Any) -> None: ...

    _allowed = _Decimal

    def _to_redis(self, value: Any) -> str:
        return str(value)


class DateTime(Column[_G]):
    """A naive (UTC) ``datetime``. Stored as seconds since the epoch."""

    if TYPE_CHECKING:  # required=True reads as datetime, otherwise Optional[datetime]
        @overload
        def __init__(self: DateTime[datetime], required: Literal[True], *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        @overload
        def __init__(self: DateTime[Optional[datetime]], required: bool = ..., *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        def __init__(self, *args: Any, **options: Any) -> None: ...

    _allowed = datetime

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
        return InvalidColumnValue('%s.%s: %r is not a datetime; a datetime is required'
                                  % (ns, self._attr, value))

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
        # construction/loading: a str is latin-1 encoded; UnicodeEncodeError (> U+00FF) and
        # AttributeError (non-str, non-bytes) propagate unwrapped (compat, spec §3.4.6)
        if isinstance(value, str):
            return value.encode('latin-1')
        return Column._coerce(self, value)

    def _convert_assigned(self, value: Any) -> Any:
        return value  # no conversion on assignment: the validation error follows

    def _to_redis(self, value: Any) -> str:
        return value.decode('latin-1')


class Text(Column[_G]):
    """Unicode text (bytes are decoded as UTF-8). Stored as UTF-8."""

    if TYPE_CHECKING:  # required=True reads as str, otherwise Optional[str]
        @overload
        def __init__(self: Text[str], required: Literal[True], *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        @overload
        def __init__(self: Text[Optional[str]], required: bool = ..., *args: Any,
                     **options: Unpack[_Options]) -> None: ...
        def __init__(self, *args: Any, **options: Any) -> None: ...

    _allowed = str

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
            if getattr(type(obj), '_defer_id', False):
                # taken (from the process's block of ids) when first read or before the first save
                obj._data[attr] = PENDING_ID
                return
            value = take_id(type(obj), connect(obj))
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
