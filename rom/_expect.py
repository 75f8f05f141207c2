"""What index entries a stored row calls for, and whether Redis holds them.

Shared by the audit (``check``) and the reindex: ``expected_entries`` computes a row's
entries from its loaded entity (through ``rom._write_plan.compute_index_entries``, the save
path's own computation), ``bookkeeping_problem`` compares them with the row's
``-index-data-``, and ``verify_entries`` checks a block of rows' entries inside Redis in one
script call (``scripts/audit_rows.lua``), returning only what is wrong.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from ._helpers import _encode_unique_constraint
from ._maint_io import usable
from ._scripts import lua
from ._verify import Block, verify_native
from ._write_plan import compute_index_entries, parse_index_data

__all__ = ['expected_entries', 'bookkeeping_problem', 'stored_bookkeeping_problem',
           'verify_entries', 'unique_field', 'group_field']

_TEMP_TTL = 3600
_loads = json.loads


def _text(value: Any) -> str:
    """What a value becomes in Redis, as text: bytes go through latin-1 (the JSON transport)."""
    if isinstance(value, bytes):
        return value.decode('latin-1')
    return value if isinstance(value, str) else str(value)


def _t(value: Any) -> str:
    """A reply item as text; bytes that are not UTF-8 keep their bytes as surrogates."""
    return value.decode('utf-8', 'surrogateescape') if isinstance(value, bytes) else value


class _Expected:
    """The index entries one row calls for (all text in its stored form)."""

    __slots__ = ('keys', 'scores', 'prefix', 'suffix', 'geo', 'uniques')

    def __init__(self) -> None:
        self.keys: Set[str] = set()
        self.scores: Dict[str, str] = {}
        self.prefix: Dict[Tuple[str, str], str] = {}
        self.suffix: Dict[Tuple[str, str], str] = {}
        self.geo: Dict[str, Tuple[float, float]] = {}
        self.uniques: Dict[str, str] = {}

    def bookkeeping(self) -> Tuple[Set[str], Set[str], Set[Tuple[str, str]],
                                   Set[Tuple[str, str]], Set[str]]:
        return (set(self.keys), set(self.scores), set(self.prefix), set(self.suffix),
                set(self.geo))


#: the expectation of a row that cannot be loaded (already reported as bad-row)
_UNREADABLE = _Expected()


def unique_field(col: Any, attr: str, value: Any, data: Optional[Dict[str, Any]] = None
                 ) -> Optional[str]:
    """The unique-index field a save of ``value`` in unique column ``attr`` claims, or None
    (models §6.3); ``data`` is the whole entity's values (for keygens that read them)."""
    new_s = col._to_redis(value) if value is not None else None
    unique: Any = new_s
    if col._keygen is not None and not col._index:
        result = col._keygen(attr, {attr: value} if data is None else data) or [new_s]
        if not isinstance(result, (list, tuple, set)):
            return None
        unique = next((item for item in result if item is not None), None)
    if unique:  # empty values ('' , Boolean False) are never claimed, as in rom 1.1.2
        return _text(unique)
    return None


def group_field(model: Any, group: Sequence[str], values: Dict[str, Any]) -> Optional[str]:
    """The unique-index field a save claims for the ``unique_together`` columns ``group``."""
    columns = model._columns
    texts = []
    for attr in group:
        value = values.get(attr)
        texts.append(None if value is None else columns[attr]._to_redis(value))
    if any(text is None for text in texts):
        return None
    return _encode_unique_constraint(texts)


def _unique_fields(model: Any, data: Dict[str, Any]) -> Dict[str, str]:
    """Constraint name -> the unique-index field a save of ``data`` claims (models §6.3)."""
    fields: Dict[str, str] = {}
    columns = model._columns
    for attr in model._unique or ():
        field = unique_field(columns[attr], attr, data.get(attr), data)
        if field is not None:
            fields[attr] = field
    for group in model._cunique or ():
        field = group_field(model, group, data)
        if field is not None:
            fields[':'.join(group)] = field
    return fields


def expected_entries(model: Any, entity: Any, id_text: str) -> _Expected:
    """The entries a save of ``entity`` (row ``id_text``) writes, in their stored form."""
    data = entity.to_dict()
    exp = expected_of(compute_index_entries(model, data, id_text))
    exp.uniques = _unique_fields(model, data)
    return exp


def expected_of(entries: Any, geo: bool = True) -> _Expected:
    """The planner's index entries (``compute_index_entries``: texts already, scores as
    validated number texts) as an :class:`_Expected`, without unique fields (and without
    geo entries when ``geo`` is false)."""
    exp = _Expected()
    exp.keys.update(entries.keys)
    exp.scores.update(entries.scores)
    for attr, token, score in entries.prefix:
        exp.prefix[(attr, token)] = score
    for attr, token, score in entries.suffix:
        exp.suffix[(attr, token)] = score
    for name, lon, lat in entries.geo if geo else ():
        exp.geo[_text(name)] = (float(lon), float(lat))  # the last point of a name wins
    return exp


def _same_bookkeeping(raw: Any, exp: _Expected) -> bool:
    """Fast path of :func:`bookkeeping_problem` for the usual 5-slot form; False when it
    differs or has another form (the full comparison then decides)."""
    try:
        data = _loads(raw.decode('utf-8') if type(raw) is bytes else raw)
        slots = [slot if slot != {} else [] for slot in data]
        if len(slots) != 5:
            return False
        keys, scored, prefix, suffix, geo = slots
        return (len(keys) == len(exp.keys) and set(keys) == exp.keys
                and len(scored) == len(exp.scores) and set(scored) == exp.scores.keys()
                and len(prefix) == len(exp.prefix)
                and {(a, t) for a, t in prefix} == exp.prefix.keys()
                and len(suffix) == len(exp.suffix)
                and {(a, t) for a, t in suffix} == exp.suffix.keys()
                and set(geo) == exp.geo.keys())
    except (ValueError, TypeError, UnicodeDecodeError):
        return False


def bookkeeping_problem(row: Dict[Any, Any], legacy: Any, exp: _Expected) -> Optional[str]:
    """None when the row's bookkeeping (``legacy`` when given, else its ``-index-data-``)
    lists exactly the entries ``exp`` calls for; otherwise what is wrong, as text."""
    raw = legacy if legacy is not None else row.get(b'-index-data-', row.get('-index-data-'))
    return stored_bookkeeping_problem(raw, exp)


def stored_bookkeeping_problem(raw: Any, exp: _Expected) -> Optional[str]:
    """:func:`bookkeeping_problem` of the stored bookkeeping ``raw`` (None when absent)."""
    if raw is not None and _same_bookkeeping(raw, exp):
        return None
    wanted: Tuple[Set[Any], ...] = exp.bookkeeping()
    if raw is None:
        return 'is missing although the row has index entries' if any(wanted) else None
    try:
        keys, scored, prefix, suffix, geo = parse_index_data(raw)
    except Exception as exc:
        return 'cannot be read: %s' % (exc,)
    have: Tuple[Set[Any], ...] = ({_text(k) for k in keys}, {_text(k) for k in scored},
                                  {(_text(a), _text(t)) for a, t in prefix},
                                  {(_text(a), _text(t)) for a, t in suffix},
                                  {_text(g) for g in geo})
    if have == wanted:
        return None
    diffs = []
    for label, h, w in zip(('sets', 'scored', 'prefix', 'suffix', 'geo'), have, wanted):
        extra, missing = h - w, w - h
        if extra or missing:
            diffs.append('%s: extra %s, missing %s' % (
                label, sorted(map(str, extra)) or '[]', sorted(map(str, missing)) or '[]'))
    return 'is out of date (%s)' % ('; '.join(diffs),)


def verify_entries(conn: Any, ns: str, rows: Sequence[Tuple[str, _Expected]],
                   temp: str = '', block: Any = None) -> List[Tuple[str, str, str, str, str]]:
    """Check in Redis that the rows' entries exist with the expected scores and positions.

    ``block`` (a :class:`rom._verify.Block`) holds more rows' entries, already grouped;
    the rows' entries are added to it. Native commands (``rom._verify``) or one script call.
    Returns ``(code, id, key, member, detail)`` per problem (codes in
    ``scripts/audit_rows.lua``). With a ``temp`` hash name, unique values held by two rows
    are spotted across calls (code ``udup``); the hash expires after an hour.
    """
    if block is None:
        if not rows:
            return []
        block = Block()
    for id_text, exp in rows:
        block.add(id_text, exp)
    if usable(conn):
        found = verify_native(conn, ns, block, temp, _TEMP_TTL)
        if found is not None:
            return found
    payload = {
        'sets': {name + ':idx': ids for name, ids in block.sets.items()},
        'zsets': dict([(name + ':idx', list(zip(ids, scores, ids)))
                       for name, (ids, scores) in block.scores.items()]
                      + [(attr + kind, list(zip(members, scores, ids)))
                         for kind, groups in ((':pre', block.prefix), (':suf', block.suffix))
                         for attr, (members, scores, ids) in groups.items()]),
        'geo': {name + ':geo': points for name, points in block.geo.items()},
        'uidx': {name + ':uidx': claims for name, claims in block.uniques.items()}}
    if not any(payload.values()):
        return []
    reply = lua('audit_rows')(conn, (), [ns, temp, _TEMP_TTL,
                                         json.dumps(payload, ensure_ascii=False)],
                              route=ns + ':')  # a cluster client routes by the model's slot
    # (an empty dict is sent as {}: the script treats it as an empty table either way)
    items = [_t(item) for item in reply]
    return [(items[n], items[n + 1], items[n + 2], items[n + 3], items[n + 4])
            for n in range(0, len(items), 5)]
