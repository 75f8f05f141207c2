"""``Model.transfer``: validate in Python, move the amount exactly in ``transfer.lua``.

Integer columns move integers and Decimal columns decimals as exact decimal text inside the
script (never through Lua doubles); Float columns keep rom 1.1.2's double arithmetic and
server-side formatting. The primary key and non-numeric columns are refused.
"""
from __future__ import annotations

import math
from decimal import Decimal as _Decimal
from typing import Any, Tuple

from ._coltypes import Decimal, Float, Integer, PrimaryKey
from ._expiry import op_visible
from ._io import ClientOf, Operation, Script, run
from ._ops_read import op_refresh
from .exceptions import (DataRaceError, EntityDeletedError, InvalidColumnValue,
                         InvalidOperation)

#: longest amount or stored balance (characters of decimal text) a transfer handles
MAX_DIGITS = 4000
#: largest ``decimal_places`` accepted
MAX_PLACES = 30

_KINDS = ((Integer, 'int'), (Decimal, 'dec'), (Float, 'float'))
_NAMES = {'int': 'Integer', 'dec': 'Decimal', 'float': 'Float'}


def _kind(entity: Any, attr: str) -> str:
    """'int', 'dec' or 'float' for the numeric column ``attr`` of ``entity`` (else raises)."""
    model = type(entity)
    col = model._columns.get(attr)
    if attr == model._pkey or isinstance(col, PrimaryKey):
        raise InvalidOperation('transfer(): %s.%s is the primary key' % (model.__name__, attr))
    for cls, kind in _KINDS:
        if isinstance(col, cls):
            return kind
    raise InvalidOperation('transfer(): %s.%s is not an Integer, Float or Decimal column'
                           % (model.__name__, attr))


def _amount(value: Any, kind: str, where: str) -> Any:
    """``value`` as the column kind's Python type (finite, exact), or InvalidColumnValue."""
    bad = None
    if isinstance(value, bool) or not isinstance(value, (int, float, _Decimal)):
        bad = 'must be an int, float or Decimal'
    elif isinstance(value, float) and not math.isfinite(value):
        bad = 'must be finite'
    elif isinstance(value, _Decimal) and not value.is_finite():
        bad = 'must be finite'
    elif _too_long(value):
        bad = 'has more than %d digits' % (MAX_DIGITS,)
    elif kind == 'int' and not isinstance(value, int):
        if value != int(value):
            bad = 'must be a whole number for an Integer column'
        elif isinstance(value, float) and abs(value) > 2 ** 53:
            bad = 'is a float beyond 2**53 (not exact; pass an int) for an Integer column'
        else:
            value = int(value)
    elif kind == 'float':
        try:
            value = float(value)
        except OverflowError:
            bad = 'is too large for a Float column'
    elif kind == 'dec':
        value = _Decimal(repr(value)) if isinstance(value, float) else _Decimal(value)
    if bad is not None:
        shown = '%s with %d bits' % (type(value).__name__, value.bit_length()) \
            if isinstance(value, int) and _too_long(value) else repr(value)
        raise InvalidColumnValue('transfer(): the amount for %s %s, got %s' % (where, bad, shown))
    return value


def _too_long(value: Any) -> bool:
    """Would ``value`` as plain decimal text have more than ``MAX_DIGITS`` digits?"""
    if isinstance(value, int):
        return value.bit_length() > MAX_DIGITS * 3
    if isinstance(value, _Decimal):
        sign, digits, exp = value.as_tuple()
        return len(digits) + abs(int(exp)) > MAX_DIGITS
    return False


def _text(value: Any, kind: str) -> str:
    """The amount as sent to the script (plain decimal text for int and dec)."""
    if kind == 'float':
        return repr(value)
    if kind == 'int':
        return str(value)
    return format(value, 'f')


def op_transfer(self: Any, other: Any, attr: str, value: Any, txn_model: Any, txn_attr: str,
                decimal_places: int = 0, refresh_entities: bool = True,
                refresh_index: bool = True) -> Operation[None]:
    """Operation of ``Model.transfer`` / ``atransfer`` (see its docstring)."""
    entities = (self, other, txn_model)
    conn = yield ClientOf(self)
    if not (conn is (yield ClientOf(other)) is (yield ClientOf(txn_model))):
        raise ValueError('transfer(): the three entities need one shared connection')
    tags = {type(e)._cluster_tag for e in entities}
    if len(tags) > 1 and tags != {None}:
        raise ValueError('transfer(): on Redis Cluster the three entities need models with '
                         'one hash tag (one slot); got %s' % (sorted(map(str, tags)),))
    if any(e._modified or e._new or e._deleted for e in entities):
        raise ValueError('transfer(): the entities must be unmodified, saved and not deleted; '
                         'save or refresh them first')
    kind = _kind(self, attr)
    if _kind(other, attr) != kind:
        raise InvalidOperation('transfer(): %s.%s and %s.%s are not the same kind of column'
                               % (type(self).__name__, attr, type(other).__name__, attr))
    if self._pk == other._pk:
        raise InvalidOperation('transfer(): the source and destination are the same row %s'
                               % (self._pk,))
    if txn_attr == attr and txn_model._pk in (self._pk, other._pk):
        raise InvalidOperation('transfer(): the transaction flag %s.%s is the amount column'
                               % (txn_model._pk, txn_attr))
    if txn_attr == type(txn_model)._pkey:
        raise InvalidOperation('transfer(): %s.%s is the primary key'
                               % (type(txn_model).__name__, txn_attr))
    where = '%s.%s' % (type(self).__name__, attr)
    value = _amount(value, kind, where)
    if value <= 0:
        raise ValueError('transfer(): the value must be positive, got %r' % (value,))
    if isinstance(decimal_places, bool) or not isinstance(decimal_places, int):
        raise ValueError('transfer(): decimal_places must be an int, got %r' % (decimal_places,))
    if decimal_places < 0:
        raise ValueError('transfer(): decimal_places must not be negative')
    if decimal_places > MAX_PLACES:
        raise ValueError('transfer(): decimal_places must be at most %d' % (MAX_PLACES,))
    for entity in entities:  # models with ``_ttl``: an expired entity cannot transfer
        if type(entity)._ttl is not None and (
                yield from op_visible(type(entity), [entity]))[0] is None:
            raise ValueError('transfer(): an entity has expired')
    keys = (self._pk, other._pk, txn_model._pk)
    reply = yield Script(self, 'transfer', keys, (attr, txn_attr, _text(value, kind),
                                                  decimal_places, kind))
    reply = reply.decode('utf-8') if isinstance(reply, bytes) else reply
    _raise_for(reply, keys, attr, txn_attr, value, kind)
    if refresh_index:
        for entity in entities:
            yield from _op_reindex(entity)
    elif refresh_entities:
        for entity in entities:
            yield from op_refresh(entity, False)


def transfer(self: Any, *args: Any) -> None:
    """``Model.transfer`` (see its docstring)."""
    run(op_transfer(self, *args))


def _raise_for(reply: str, keys: Tuple[str, str, str], attr: str, txn_attr: str, value: Any,
               kind: str) -> None:
    """Raise the error a non-'ok' reply of ``transfer.lua`` stands for."""
    if reply == 'done':
        raise ValueError('transfer(): %s.%s shows this transfer was already made'
                         % (keys[2], txn_attr))
    if reply == 'balance':
        raise ValueError('transfer(): %s.%s is less than %r' % (keys[0], attr, value))
    if reply in ('invalid1', 'invalid2'):
        raise InvalidColumnValue('transfer(): the stored %s.%s is not a valid %s value; '
                                 'nothing was written' % (keys[int(reply[-1]) - 1], attr,
                                                          _NAMES[kind]))
    if reply == 'overflow':
        raise InvalidColumnValue('transfer(): the new %s.%s balances would not be finite; '
                                 'nothing was written' % (keys[0], attr))
    if reply != 'ok':
        raise InvalidOperation('transfer(): unexpected reply %r' % (reply,))


def _op_reindex(entity: Any, attempts: int = 20) -> Operation[None]:
    """Reload ``entity`` and rewrite its indexes (after a transfer changed its row).

    The transfer has already been made, so a concurrent writer changing the row between
    the reload and the save must not make the caller believe it failed (nor leave the
    index stale): reload and save again until the save goes through.
    """
    from ._write import op_save_entities
    for attempt in range(attempts):
        yield from op_refresh(entity, True)
        try:
            yield from op_save_entities([entity], True, False)
            return
        except DataRaceError:
            if attempt == attempts - 1:
                raise
        except EntityDeletedError:
            return  # deleted concurrently: nothing left to index
