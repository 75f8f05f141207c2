"""The ``Column`` base class (``rom.columns`` re-exports it) and its declaration helpers.

A column is a data descriptor: it converts assigned values, validates them, tracks the entity
as modified and produces the storage string (``_to_redis``) and Python value (``_from_redis``).
The concrete column types live in ``rom._coltypes``.
"""
from __future__ import annotations

import functools
from datetime import date, datetime, time
from decimal import Decimal as _Decimal
from typing import TYPE_CHECKING, Any, Callable, Generic, Optional, Tuple, TypeVar, overload

from ._helpers import short_repr
from ._keygen import FULL_TEXT, STRING_INDEX_KEYGENS_STR, _boolean_keygen, _numeric_keygen
from ._registry import NULL
from ._session import session
from ._values import check_keygen
from .exceptions import (ColumnError, InvalidColumnValue, InvalidOperation, MissingColumn,
                         _conversion_error)

#: errors a conversion may raise for a bad value (turned into InvalidColumnValue)
_CONVERSION_ERRORS = (ValueError, TypeError, OverflowError, OSError)

if TYPE_CHECKING:
    from typing_extensions import TypeVar as _TypeVar

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
        check_keygen(name, 'keygen', keygen)
        check_keygen(name, 'keygen2', keygen2)
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
            except _CONVERSION_ERRORS as err:
                raise InvalidColumnValue(
                    'cannot assign %s to %s.%s: expected %s (%s)' % (
                        short_repr(value), obj._namespace, self._attr,
                        _type_names(self._allowed), err)) from err
        self._store(obj, value)

    def _store(self, obj: Any, value: Any) -> None:
        """Validate and store an already converted value; None removes the value."""
        if value is None:
            try:
                self.__delete__(obj)
            except AttributeError:
                pass
            return
        value = self._prepare(value, obj)
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
            value = self._prepare(value, obj)
            self._validate(value, obj)
        obj._data[attr] = value

    # --- conversions (extension API) ------------------------------------------------------
    def _coerce(self, value: Any) -> Any:
        """Convert a constructor/loaded value that is not of the allowed type."""
        if self._allowed and not isinstance(value, self._allowed):
            try:
                return self._from_redis(value)
            except _CONVERSION_ERRORS as err:
                # the original args are kept (compat); the message names the column
                raise _conversion_error(self._label(), value, _type_names(self._allowed),
                                        err) from err
        return value

    def _prepare(self, value: Any, obj: Any) -> Any:
        """Normalise a value of an allowed type before validation (identity by default)."""
        return value

    def _refuse(self, obj: Any, value: Any, why: str) -> InvalidColumnValue:
        ns = obj._namespace if obj is not None else self._model
        return InvalidColumnValue('%s.%s: cannot store %s: %s'
                                  % (ns, self._attr, short_repr(value), why))

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
