"""Value checks made before anything is written, shared by columns, models and the writer.

Each turns a value rom cannot store into a typed error that names the column: storage texts
(``_to_redis``), index tokens without a UTF-8 form, keygens given by name, aware datetimes
outside the ``datetime`` range.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from ._helpers import short_repr, utc_naive
from .exceptions import ColumnError, InvalidColumnValue, _unstorable


def need_utf8(ns: str, attr: str, text: str) -> None:
    """Refuse an index token or unique value with no UTF-8 form (a lone surrogate from a
    custom keygen) before anything is sent: redis-py would fail while sending the call."""
    try:
        text.encode('utf-8')
    except UnicodeEncodeError:
        raise InvalidColumnValue('%s.%s: the index entry %s has no UTF-8 form (a lone '
                                 'surrogate)' % (ns, attr, short_repr(text)))


def storage_text(ns: str, attr: str, col: Any, value: Any) -> Any:
    """``col._to_redis(value)``; a value that cannot be stored raises InvalidColumnValue
    (also a TypeError/ValueError like the conversion's own error, for compatibility)."""
    try:
        return col._to_redis(value)
    except (TypeError, ValueError, OverflowError, AttributeError) as err:  # a set in a Json
        raise _unstorable('%s.%s: cannot store %s (%s)' % (ns, attr, short_repr(value), err),
                          err) from err


def initial_text(ns: str, attr: str, col: Any, raw: Any, converted: Any) -> Any:
    """The storage text a new entity records for the non-str constructor value ``raw``.

    rom 1.1.2 used the text of the raw value, which fails for ``DateTime`` given 86400 or
    ``Time`` given 3600 (TypeError/AttributeError) and is bytes for ``Text`` given bytes;
    the text of the value the column converted it to is used instead (converting a new
    referenced entity still saves it). A value the column dropped (a reference to a
    missing id) keeps the raw text.
    """
    return storage_text(ns, attr, col, raw if converted is None else converted)


def check_keygen(column: str, option: str, keygen: Any) -> None:
    """Refuse a keygen that is not callable (e.g. the name ``'FULL_TEXT'`` given as a str)."""
    if keygen is None or callable(keygen):
        return
    hint = ''
    if isinstance(keygen, str):
        hint = ' (pass the function itself, e.g. %s=rom.%s, not its name)' % (option, keygen)
    raise ColumnError('%s column: %s must be a callable, not %r%s'
                      % (column, option, keygen, hint))


def utc_datetime(col: Any, value: Any, obj: Any) -> Any:
    """An aware datetime as naive UTC; refuses instants outside ``datetime``'s range."""
    if isinstance(value, datetime) and value.utcoffset() is not None:
        try:
            return utc_naive(value)
        except OverflowError:
            raise col._refuse(obj, value, 'the instant in UTC is outside the datetime range')
    return value
