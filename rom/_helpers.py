"""Pure helpers: time conversions, score encodings, ``ClassProperty``.

No I/O and no imports from the rest of rom; every other module may use these.
"""
from __future__ import annotations

import binascii
import math
import os
import re
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, Optional, Union

_epoch = datetime(1970, 1, 1)
_epoch_utc = datetime(1970, 1, 1, tzinfo=timezone.utc)
_epochd = date(1970, 1, 1)
_BIGINT_LIMIT = 0x7fe0000000000000
_DOUBLE_TEXT = re.compile(r'[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity)\Z',
                          re.IGNORECASE)
_TWO52 = 2 ** 52
#: the largest rank (index) Redis accepts in ZRANGE and LIMIT (a signed 64-bit integer)
MAX_RANK = 2 ** 63 - 1


class ClassProperty:
    """A data descriptor whose functions receive the class, not the instance."""

    __slots__ = ('get', 'set', 'delete')

    def __init__(self, get: Callable[[Any], Any], set: Optional[Callable[[Any, Any], None]] = None,
                 delete: Optional[Callable[[Any], None]] = None) -> None:
        self.get = get
        self.set = set
        self.delete = delete


    def __get__(self, obj: Any, cls: Optional[type] = None) -> Any:
        if cls is None:
            cls = type(obj)
        return self.get(cls)

    def __set__(self, obj: Any, value: Any) -> None:
        self.set(type(obj), value)  # type: ignore[misc]

    def __delete__(self, obj: Any) -> None:
        self.delete(type(obj))  # type: ignore[misc]

    def getter(self, get: Callable[[Any], Any]) -> 'ClassProperty':
        """Return a copy with another getter."""
        return ClassProperty(get, self.set, self.delete)

    def setter(self, set: Callable[[Any, Any], None]) -> 'ClassProperty':
        """Return a copy with another setter."""
        return ClassProperty(self.get, set, self.delete)

    def deleter(self, delete: Callable[[Any], None]) -> 'ClassProperty':
        """Return a copy with another deleter."""
        return ClassProperty(self.get, self.set, delete)


def dt2ts(value: Union[datetime, date]) -> float:
    """Seconds since the epoch of a ``datetime`` (naive ones are UTC) or a ``date``.

    An aware datetime gives the same number as the naive UTC datetime of the same instant.
    """
    if isinstance(value, datetime):
        delta = value - (_epoch if value.utcoffset() is None else _epoch_utc)
    elif isinstance(value, date):
        delta = value - _epochd
    else:
        raise TypeError('dt2ts() needs a datetime or a date, not %r' % (type(value).__name__,))
    return delta.days * 86400 + delta.seconds + delta.microseconds / 1000000.0


def utc_naive(value: datetime) -> datetime:
    """The naive UTC datetime of an aware ``value`` (OverflowError outside the range)."""
    offset = value.utcoffset()
    return (value - offset if offset else value).replace(tzinfo=None)


_FIRST_TS, _LAST_TS = -62135596800.0, 253402300799.0  # 0001-01-01 and 9999-12-31 23:59:59
#: ``dt2ts(datetime.max)``: the float rounds up to the first second of year 10000
DATETIME_MAX_TS = 253402300800.0


def ts2dt(value: float) -> datetime:
    """The naive UTC ``datetime`` for POSIX seconds ``value`` (rounded to the microsecond).

    ``DATETIME_MAX_TS`` (what ``datetime.max`` stores) loads as ``datetime.max``.
    """
    if type(value) is float and _FIRST_TS <= value <= _LAST_TS:  # same result, faster
        return _epoch + timedelta(seconds=value)
    if value == DATETIME_MAX_TS:
        return datetime.max
    return datetime.fromtimestamp(value, timezone.utc).replace(tzinfo=None)  # its errors


def t2ts(value: time) -> float:
    """Seconds after midnight of a ``time`` (tzinfo ignored)."""
    return value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1000000.0


def ts2t(value: float) -> time:
    """The naive ``time`` lying ``value`` seconds after midnight, rounded to the microsecond."""
    micros = int(round(value * 1000000))
    if micros < 0 or micros >= 86400 * 1000000:
        raise ValueError('time value %r is outside of one day (0 <= seconds < 86400)' % (value,))
    seconds, micro = divmod(micros, 1000000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return time(hour, minute, second, micro)


def score_text(value: Any) -> Optional[str]:
    """``value`` as a sorted-set score text Redis accepts, or None when Redis would reject it
    (None, bools, NaN, non-numeric text, values outside the double range)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            return None
        return str(value)
    if isinstance(value, float):
        return None if math.isnan(value) else repr(value)
    if isinstance(value, Decimal):
        if value.is_nan():
            return None
        text = str(value)
    elif isinstance(value, bytes):
        text = value.decode('latin-1')
    elif isinstance(value, str):
        text = value
    else:
        return None
    if not _DOUBLE_TEXT.match(text):
        return None
    number = float(text)
    if math.isinf(number) and 'inf' not in text.lower():
        return None  # overflow
    if number == 0 and re.search(r'[1-9]', text.split('e')[0].split('E')[0]):
        return None  # underflow to zero
    return text


def _to_score(v: Any, s: bool = False) -> str:
    """Text of a sorted-set bound; ``s=True`` makes it exclusive (``'(' + text``)."""
    text = repr(v) if isinstance(v, float) else str(v)
    if s and not text.startswith('('):
        return '(' + text
    return text.lstrip('(')


def _bigint_to_float(v: int) -> float:
    """Map an integer to the double whose bit pattern is ``v + 2**52`` (order preserving)."""
    if not isinstance(v, int) or abs(v) >= _BIGINT_LIMIT:
        raise AssertionError('_bigint_to_float() needs an int with abs(value) < 0x7fe0000000000000')
    sign = -1.0 if v < 0 else 1.0
    e, m = divmod(abs(v), _TWO52)
    return sign * (_TWO52 + m) * 2.0 ** (e - 1074)


_POWERS = [258 ** i for i in range(8)]
#: byte ``c`` at position ``k`` (of 7) adds ``(c + 1) * 258 ** (6 - k)`` to a prefix score
_PLACES = [[(c + 1) * 258 ** (6 - k) for c in range(256)] for k in range(7)]


def _prefix_score(v: Union[str, bytes], next: bool = False) -> str:
    """The score of a prefix/suffix/SIMPLE index entry (text of a double)."""
    b = v.encode('utf-8') if isinstance(v, str) else v
    p = 0
    for places, c in zip(_PLACES, b):  # the first 7 bytes, in base 258 (1 + each byte)
        p += places[c]
    if next:
        p += _POWERS[7 - min(len(b), 7)]
    e, m = divmod(p, _TWO52)  # _bigint_to_float(p), for 0 <= p < 258 ** 7
    return repr((_TWO52 + m) * 2.0 ** (e - 1074))


def _encode_unique_constraint(data: Iterable[Any]) -> str:
    """Encode the values of a composite unique constraint as a hash field (latin-1 text)."""
    parts = []
    for item in data:
        if not item:
            raw = b''
        elif isinstance(item, bytes):
            raw = item
        else:
            raw = (item if isinstance(item, str) else str(item)).encode('utf-8')
        parts.append(b'\0\0' + raw)
    return b'\0'.join(parts).decode('latin-1')


def short_repr(value: Any, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages; never raises (the repr of
    an int over 4300 digits does)."""
    try:
        text = repr(value)
    except Exception:
        text = '<%s object>' % (type(value).__name__,)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def token_text(token: Union[str, bytes]) -> str:
    """An index token as key text: a str as is; bytes decoded as UTF-8 when they are valid
    UTF-8 (rom 1.1.2's rule), otherwise as latin-1 like every other bytes value."""
    if isinstance(token, str):
        return token
    try:
        return token.decode('utf-8')
    except UnicodeDecodeError:
        return token.decode('latin-1')


def _random_hex(n: int) -> bytes:
    """``2n`` random lowercase hex digits, as bytes."""
    return binascii.hexlify(os.urandom(n))
