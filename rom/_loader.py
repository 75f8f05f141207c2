"""Building entities from stored rows (``HGETALL`` replies) quickly.

Loading never validates (spec §5.15): each column's stored text is converted, defaults
apply to missing fields, and a text that fails conversion raises ``InvalidColumnValue``.

Two ways, with the same result:

* :func:`load_row` fills an entity column by column (texts or bytes rows, any column);
* :func:`row_builder` compiles, once per model, a function for the common case: the raw
  bytes values of the model's fields (in :func:`load_plan` order, as ``HMGET`` returns
  them; :func:`mapping_builder` takes an ``HGETALL`` reply) holding every built-in
  column. It decodes and converts those in straight-line code and builds the entity's
  dicts in one go; a row lacking one of them (defaults, missing primary key) returns None
  so that the caller uses :func:`load_row`.
"""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import _coltypes as ct
from ._registry import MODELS
from ._relations import OneToMany, UnsafeColumn
from .exceptions import InvalidColumnValue

#: converter meaning "the decoded text is the value" (Text)
KEEP: Any = object()

_DECODER = json.JSONDecoder()
_scan_json = _DECODER.scan_once  # type: ignore[attr-defined]  # the C scanner


def _json_converter(col: Any) -> Callable[[str], Any]:
    """``Json._from_redis`` for a decoded text; plain ``json.loads`` for anything unusual."""
    allowed = col._allowed
    loads = json.loads

    def convert(text: str) -> Any:
        try:
            value, end = _scan_json(text, 0)
        except StopIteration:  # not JSON at position 0: json.loads raises the usual error
            return loads(text)
        if end != len(text):  # surrounding white space or extra data
            value = loads(text)
        if value is not None and not isinstance(value, allowed):
            return col._from_redis(text)  # raises the column's own error
        return value
    return convert


# exact types only: a subclass may override its conversion, so it loads through _init_
_CONVERTERS: Dict[type, Any] = {
    ct.Text: KEEP, ct.Integer: int, ct.Float: float, ct.Boolean: bool, ct.PrimaryKey: int,
    ct.Decimal: Decimal, ct.Json: _json_converter,
}
# these convert a decoded text with their own ``_from_redis``
_OWN_CONVERSION = (ct.DateTime, ct.Date, ct.Time, ct.String)

LoadPlan = List[Tuple[str, bytes, Any, Any]]


def load_plan(cls: Any) -> LoadPlan:
    """Per stored column: (attr, field name as bytes, column, converter of a decoded text).

    The converter is None for columns that load through their own ``_init_`` (references,
    custom column classes, ``IndexOnly``, ...).
    """
    plan = cls.__dict__.get('_rom_load_plan')
    if plan is not None:
        return plan
    plan = []
    for attr, col in cls._columns.items():
        if isinstance(col, UnsafeColumn):
            continue
        col._model = cls._namespace
        convert = _CONVERTERS.get(type(col))
        if convert is _json_converter:
            convert = _json_converter(col)
        elif type(col) in _OWN_CONVERSION:
            convert = col._from_redis
        plan.append((attr, attr.encode('utf-8'), col, convert))
    setattr(cls, '_rom_load_plan', plan)
    return plan


def load_row(entity: Any, row: Dict[Any, Any], by_bytes: bool = False) -> None:
    """Fill ``entity._data``/``_last`` from ``row``: field texts, or (``by_bytes``) the bytes
    field names and values of a raw reply, decoded only for the model's columns."""
    data = entity._data
    last = entity._last
    ns = entity._namespace
    get = row.get
    for attr, key, col, convert in load_plan(type(entity)):
        value: Any = get(key if by_bytes else attr)
        try:
            kind = type(value)
            if kind is bytes:
                value = value.decode('utf-8')
            elif kind is not str:  # None, or False/objects passed by application code
                col._init_(entity, ns, attr, None if value is False else value, True)
                if value is not None and value is not False and col._allowed:
                    last[attr] = col._to_redis(value)
                continue
            if convert is None:  # the column's own conversion
                col._init_(entity, ns, attr, value, True)
                if col._allowed:
                    last[attr] = value
                continue
            data[attr] = value if convert is KEEP else convert(value)
            last[attr] = value
        except (ValueError, TypeError, ArithmeticError, OSError) as err:
            raise InvalidColumnValue('%s.%s: the stored value %r cannot be loaded as %s (%s)' % (
                ns, attr, value, ct._type_names(col._allowed) or type(col).__name__, err)
            ) from err
    pkey = entity._pkey
    if data.get(pkey) is None:
        raise InvalidColumnValue('%s: the stored data has no primary key %r' % (ns, pkey))


def _load_other(entity: Any, attr: str, col: Any, raw: Optional[bytes]) -> None:
    """One column without a direct converter, in a compiled builder."""
    value = raw.decode('utf-8') if raw is not None else None
    col._init_(entity, entity._namespace, attr, value, True)
    if value is not None and col._allowed:
        entity._last[attr] = value


def field_names(cls: Any) -> List[bytes]:
    """The field names read of a row of ``cls``, in :func:`load_plan` order (cached on the
    class): every stored column's, not those of ``OneToMany`` columns (they store nothing,
    and loading one ignores any value: it only checks that its target model exists)."""
    names = cls.__dict__.get('_rom_field_names')
    if names is None:
        names = [key for _, key, col, _ in load_plan(cls) if type(col) is not OneToMany]
        setattr(cls, '_rom_field_names', names)
    return names


Builder = Callable[[Any, Any], Any]


def row_builder(cls: Any) -> Builder:
    """The compiled builder of ``cls`` (cached on the class): ``build(cls, values)`` takes the
    raw values of :func:`field_names` (None for a missing field) and returns a new entity
    (not yet in the session), or None when the row needs :func:`load_row`.

    Conversion errors propagate as they are: the caller loads the row again with
    :func:`load_row`, which names the column and the value.
    """
    return _builders(cls)[0]


def mapping_builder(cls: Any) -> Builder:
    """Like :func:`row_builder`, for a raw ``HGETALL`` reply (bytes field names)."""
    return _builders(cls)[1]


def _builders(cls: Any) -> Tuple[Builder, Builder]:
    builders = cls.__dict__.get('_rom_row_builders')
    if builders is None:
        builders = _compile(cls, load_plan(cls))
        setattr(cls, '_rom_row_builders', builders)
    return builders


def _compile(cls: Any, plan: LoadPlan) -> Tuple[Builder, Builder]:
    env: Dict[str, Any] = {'new': object.__new__, 'load_other': _load_other, 'MODELS': MODELS}
    fast = [n for n, (_, _, _, convert) in enumerate(plan) if convert is not None]
    if not any(plan[n][0] == cls._pkey for n in fast):
        return (lambda owner, values: None), (lambda owner, row: None)
    # OneToMany stores nothing: loading only checks that its target model exists
    reverse = [n for n, (_, _, col, _) in enumerate(plan) if type(col) is OneToMany]
    other = [n for n, (_, _, _, convert) in enumerate(plan)
             if convert is None and n not in reverse]
    for n, (_, _, col, convert) in enumerate(plan):
        env['c%d' % n] = col if convert is None else convert
    exprs = {n: 't%d' % n if plan[n][3] is KEEP else 'c%d(t%d)' % (n, n) for n in fast}
    body = ['    if %s:' % ' or '.join('r%d is None' % n for n in fast), '        return None']
    body += ['    t%d = r%d.decode()' % (n, n) for n in fast]
    if other:  # columns loading through _init_ write into _data: keep the declaration order
        body.append('    data = {}')
    else:
        body.append('    data = {%s}' % ', '.join('%r: %s' % (plan[n][0], exprs[n]) for n in fast))
    body.append('    self = new(cls)')
    body.append("    self.__dict__ = {'_init': False, '_data': data, '_last': {%s}, "
                "'_cached_unsafe': {}, '_new': False, '_modified': False, '_deleted': False}"
                % ', '.join('%r: t%d' % (plan[n][0], n) for n in fast))
    for n, (attr, key, col, convert) in enumerate(plan):
        if n in reverse:
            body.append('    if r%d is not None or %r not in MODELS:' % (n, col._ftable))
            body.append('        load_other(self, %r, c%d, r%d)' % (attr, n, n))
        elif n in other:
            body.append('    load_other(self, %r, c%d, r%d)' % (attr, n, n))
        elif other:
            body.append('    data[%r] = %s' % (attr, exprs[n]))
    body.append('    self._init = True')
    body.append('    return self')
    # the values of field_names(): no OneToMany field (its raw value is always None)
    from_values = ['def build(cls, values):',
                   '    %s, = values' % ', '.join('r%d' % n for n in range(len(plan))
                                                  if n not in reverse)]
    from_values += ['    r%d = None' % n for n in reverse]
    from_mapping = ['def build_mapping(cls, row):', '    get = row.get']
    from_mapping += ['    r%d = get(%r)' % (n, key) for n, (_, key, _, _) in enumerate(plan)]
    source = '\n'.join(from_values + body + from_mapping + body)
    exec(compile(source, '<rom row builders of %s>' % cls._namespace, 'exec'), env)
    return env['build'], env['build_mapping']
