"""Plan a save or delete of one entity as plain data (models spec §6), without I/O.

``plan_write`` computes the fields to set and delete, the unique claims and releases, the
race-check expectations and the index entries (``compute_index_entries``) of a write;
``parse_index_data`` decodes a row's ``-index-data-`` bookkeeping. Plans are run by
``rom._write_script``; ``rom._write`` drives hooks and entity state around them.
"""
from __future__ import annotations

import json
import math
import struct
import warnings
from datetime import datetime
from decimal import Decimal
from typing import Any, Dict, List, NamedTuple, Optional, Set, Tuple

from ._connect import to_text
from ._helpers import _encode_unique_constraint, score_text, short_repr, token_text
from . import _coltypes as ct
from ._helpers import _POWERS, _TWO52, dt2ts
from ._keygen import SORT_KEYGEN_NAMES, _boolean_keygen, _numeric_keygen
from ._registry import PENDING_ID
from ._relations import UnsafeColumn
from ._ttl import KEEP
from ._values import need_utf8, storage_text
from .exceptions import ColumnError, InvalidColumnValue, ORMError

_GEO_LAT_LIMIT = 85.05112878


class AttrDict(dict):
    """A dict whose missing attributes read as None (``d.x`` is ``d.get('x')``)."""

    def __getattr__(self, name: str) -> Any:
        return self.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        self.pop(name, None)


class IndexEntries(NamedTuple):
    """Every index entry one save writes for a row."""

    keys: List[str]
    scores: Dict[str, str]
    prefix: List[Tuple[str, str, str]]
    suffix: List[Tuple[str, str, str]]
    geo: List[Tuple[str, str, str]]


class WritePlan(NamedTuple):
    """A save or delete of one entity, as plain data."""

    namespace: str
    id: str
    pkey: str
    is_delete: bool
    mode: str  # 'n' new entity, 's' save (every entry), 'u' update (changed ones), 'd' delete
    race: List[Tuple[str, str]]
    absent: List[str]  # fields that must still be absent (race check, like ``race``)
    claims: List[Tuple[str, str]]
    releases: List[Tuple[str, str]]
    current: List[Tuple[str, str]]  # forced saves: unique indexes whose row value to release
    hdel: List[str]
    hset: List[Tuple[str, str]]
    unsafe: List[str]
    entries: IndexEntries
    changes: int
    stored: Dict[str, str]
    expiry: Optional[Tuple[str, str]] = None  # models with ``_ttl`` only (rom._ttl)


def _empty_entries() -> IndexEntries:
    return IndexEntries([], {}, [], [], [])


# --- validation (models spec §6.6) ------------------------------------------------------------
def _coordinate(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, Decimal)):
        try:
            number = float(value)
        except (OverflowError, ValueError):
            return None
    elif isinstance(value, (str, bytes)):
        text = score_text(value)
        if text is None:
            return None
        number = float(text)
    else:
        return None
    return number if math.isfinite(number) else None


# --- index entries (models spec §2.4, query spec §2.3) -----------------------------------------
_ts = token_text
_PACK_Q = struct.Struct('<q').pack
_UNPACK_D = struct.Struct('<d').unpack


def _prefix_score(v: Any) -> str:
    """``rom._helpers._prefix_score(v)`` (the same text), computed with one pack/unpack: the
    double whose bit pattern is the prefix number plus 2**52."""
    b = v.encode('utf-8') if isinstance(v, str) else v
    n = len(b)
    if n > 7:
        b = b[:7]
        n = 7
    p = 0
    for c in b:
        p = p * 258 + c + 1
    return repr(_UNPACK_D(_PACK_Q(p * _POWERS[7 - n] + _TWO52))[0])



def _as_member(raw: Any) -> str:
    return raw if isinstance(raw, str) else raw.decode('latin-1')


def _add_keygen_result(entries: IndexEntries, ns: str, col: Any, attr: str, result: Any,
                       value: Any, sort_only: bool = False) -> None:
    if not (result or sort_only):
        return
    if isinstance(result, (list, tuple, set, frozenset)):
        for token in result:
            text = _ts(token)
            if not text.isascii():
                need_utf8(ns, attr, text)
            if col._index:
                entries.keys.append(attr + ':' + text)
            if col._prefix:
                entries.prefix.append((attr, text, _prefix_score(text)))
            if col._suffix:
                reverse = token[::-1]
                entries.suffix.append((attr, _as_member(reverse), _prefix_score(reverse)))
        return
    if isinstance(result, dict):
        if col._index:
            for key, score in result.items():
                if isinstance(key, str) and not key.isascii():
                    need_utf8(ns, attr, key)
                if not key:
                    entries.scores[attr] = score
                elif score is None or score == '':
                    entries.keys.append(attr + ':' + _ts(key))
                else:
                    entries.scores[attr + ':' + _ts(key)] = score
        if col._prefix or col._suffix:
            name = getattr(col._keygen, '__name__', None)
            if name in SORT_KEYGEN_NAMES and value is not None:
                lower = name != 'SIMPLE'
                if col._prefix:
                    token = value.lower() if lower else value
                    entries.prefix.append((attr, _as_member(token), _prefix_score(token)))
                if col._suffix:
                    reverse = value[::-1].lower() if lower else value[::-1]
                    entries.suffix.append((attr, _as_member(reverse), _prefix_score(reverse)))
            else:
                for flag in ('prefix', 'suffix'):
                    if getattr(col, '_' + flag):
                        warnings.warn(
                            '%s.%s: %s indexing is only available with the sortable string '
                            'keygens (SIMPLE, SIMPLE_CI, CASE_INSENSITIVE), not with custom '
                            'dict-returning keygens; no %s entry was written'
                            % (ns, attr, flag, flag), UserWarning, stacklevel=5)
        return
    raise ColumnError('%s.%s: keygen result %r cannot be turned into index keys (only lists, '
                      'tuples, sets and dicts are usable)' % (ns, attr, result))


def _geo_points(model: Any, data: Dict[str, Any]) -> List[Tuple[str, str, str]]:
    points: List[Tuple[str, str, str]] = []
    ns = model._namespace
    for name, geo in model._geo.items():
        result = geo.callback(AttrDict(data))
        if isinstance(result, dict):
            result = [result]
        for point in result:
            if not isinstance(point, dict) or 'lon' not in point or 'lat' not in point:
                raise ORMError("%s geo index %r: a geo point must be a dict with 'lon' and 'lat' "
                               "keys, got %r" % (ns, name, point))
            lon, lat = point['lon'], point['lat']
            if lon is None or lat is None:
                continue
            flon, flat = _coordinate(lon), _coordinate(lat)
            if (flon is None or flat is None or not -180 <= flon <= 180
                    or not -_GEO_LAT_LIMIT <= flat <= _GEO_LAT_LIMIT):
                raise InvalidColumnValue('%s geo index %r: invalid point (lon=%r, lat=%r); lon must '
                                         'be within +-180 and lat within +-85.05112878'
                                         % (ns, name, lon, lat))
            points.append((name, repr(flon), repr(flat)))
    return points


_GENERIC, _NUMERIC, _SORT_ONLY, _BOOLEAN = 0, 1, 2, 3


def _indexed_columns(model: Any) -> List[Tuple[str, Any, int]]:
    """(attr, column, kind) of the columns with index entries: ``_NUMERIC`` for rom's numeric
    keygen on an indexed column (the score is the value), ``_SORT_ONLY`` for a sortable
    string keygen that only feeds prefix/suffix entries (its score is unused), ``_BOOLEAN``
    for rom's boolean keygen on an indexed column (one set entry)."""
    indexed = []
    for attr, col in model._columns.items():
        if isinstance(col, UnsafeColumn) or not col._keygen:
            continue
        if not (col._index or col._prefix or col._suffix):
            continue
        kind = _GENERIC
        keygen = col._keygen
        if getattr(keygen, '_rom_own_column_only', False):
            wrapped = getattr(keygen, '__wrapped__', None)
            if wrapped is _numeric_keygen and col._index and not (col._prefix or col._suffix):
                kind = _NUMERIC
            elif wrapped is _boolean_keygen and col._index and not (col._prefix or col._suffix):
                kind = _BOOLEAN
            elif (not col._index and getattr(keygen, '__name__', None) in SORT_KEYGEN_NAMES
                  and wrapped is not None and wrapped.__name__ == keygen.__name__
                  and wrapped.__module__ == 'rom._keygen'):
                kind = _SORT_ONLY
        indexed.append((attr, col, kind))
    return indexed


def _numeric_score(value: Any) -> Optional[str]:
    """The score of rom's numeric keygen for ``value``, validated; None when Redis would
    refuse it (or when the generic path must decide)."""
    kind = type(value)
    if kind is float:
        return None if value != value else repr(value)
    if kind is int:
        try:
            float(value)
        except OverflowError:
            return None
        return str(value)
    if kind is bool:
        return '1' if value else '0'
    if kind is datetime:  # DateTime: the keygen's score of the timestamp
        stamp = dt2ts(value)
        return repr(stamp) if type(stamp) is float and math.isfinite(stamp) else None
    return None


def compute_index_entries(model: Any, data: Dict[str, Any], id_text: str = '') -> IndexEntries:
    """Every index entry (set, scored, prefix, suffix, geo) a save of ``data`` writes."""
    entries = _empty_entries()
    ns = model._namespace
    layout = _layout(model)
    scores = entries.scores
    checked: Set[str] = set()
    for attr, col, kind in layout.indexed:
        value = data.get(attr)
        if value is None and col._allowed:
            continue
        if kind == _NUMERIC:
            text = _numeric_score(value)
            if text is not None:
                scores[attr] = text
                checked.add(attr)
                continue
        elif kind == _SORT_ONLY:
            if value:  # the keygen gives nothing for an empty value
                _add_keygen_result(entries, ns, col, attr, {}, value, True)
            continue
        elif kind == _BOOLEAN:  # the keygen's one token
            entries.keys.append(attr + (':True' if value else ':False'))
            continue
        try:
            result = col._keygen(attr, data)
        except UnicodeError as err:  # e.g. IDENTITY_STRING of text above U+00FF
            raise InvalidColumnValue('%s.%s: the keygen %s cannot index %s (%s)' % (
                ns, attr, getattr(col._keygen, '__name__', '?'), short_repr(value), err)
            ) from err
        _add_keygen_result(entries, ns, col, attr, result, value)
    for key, score in list(scores.items()):
        if key in checked:
            continue
        text = score_text(score)
        if text is None:
            raise InvalidColumnValue('%s.%s: index score %s is not a number Redis can store'
                                     % (ns, key, short_repr(score)))
        scores[key] = text
    if model._geo:
        entries.geo.extend(_geo_points(model, data))
    return entries


# --- change computation (models spec §6) -------------------------------------------------------
def _guarded_columns(model: Any) -> Any:
    """Columns whose stored value this entity's index entries or unique claims depend on.

    Every save rewrites all index entries and re-claims all unique values from the
    in-memory data, so each of these columns is race-checked even when this save does not
    change it: otherwise a save by a stale handle re-indexes a value another writer has
    since replaced or removed (the index would then disagree with the row). Returns a set
    of names, or ``True`` when any stored column may matter (geo callbacks, ``keygen2``
    and ``IndexOnly`` keygens read the whole entity).
    """
    if model._geo:
        return True
    guarded = set()
    for attr, col in model._columns.items():
        if isinstance(col, UnsafeColumn):
            continue
        keygen = col._keygen
        if keygen and (col._index or col._prefix or col._suffix or col._unique):
            if not getattr(keygen, '_rom_own_column_only', False):
                return True
            guarded.add(attr)
        elif col._unique:
            guarded.add(attr)
    for group in model._cunique:
        guarded.update(group)
    return guarded


class _Layout(NamedTuple):
    """What ``plan_write`` needs of a model, computed once per model class."""

    # attr, col, unique, guarded, virtual, storage text by exact value type (see _FAST_TEXT)
    columns: List[Tuple[str, Any, bool, bool, bool, Dict[type, Any]]]
    unsafe: List[str]
    guarded_all: bool
    groups: List[Tuple[Tuple[str, ...], str]]  # unique_together columns, index name
    delete_claims: List[Tuple[str, str]]
    current: List[Tuple[str, str]]  # forced saves: unique indexes read from the row
    indexed: List[Tuple[str, Any, int]]  # see _indexed_columns
    entry_columns: Set[str]  # columns with index entries
    numeric: List[str]  # their _NUMERIC ones (no geo, no whole-entity keygens in the model)


#: per built-in column class (exact classes: a subclass may store differently), the storage
#: text of values of these exact types, as ``col._to_redis`` gives it
_FAST_TEXT: Dict[type, Dict[type, Any]] = {
    ct.Text: {str: str},
    ct.Integer: {int: str},
    ct.PrimaryKey: {int: str},
    ct.Float: {float: repr, int: str},
    ct.Boolean: {bool: lambda value: '1' if value else ''},
}


def _layout(model: Any) -> _Layout:
    layout = model.__dict__.get('_rom_write_layout')
    if layout is not None:
        return layout
    guarded = _guarded_columns(model)
    columns = []
    unsafe = []
    delete_claims = []
    current = []
    for attr, col in model._columns.items():
        if isinstance(col, UnsafeColumn):
            unsafe.append(attr)
            continue
        virtual = bool(getattr(col, '_virtual', False))
        columns.append((attr, col, bool(col._unique), guarded is True or attr in guarded,
                        virtual, _FAST_TEXT.get(type(col), {})))
        if col._unique:
            keygen_derived = bool(col._keygen and not col._index)
            delete_claims.append((attr, 'k' if keygen_derived else 's'))
            if not keygen_derived and not virtual:
                current.append((attr, 's'))
    groups = [(tuple(group), ':'.join(group)) for group in model._cunique]
    delete_claims += [(name, 'c') for _, name in groups]
    current += [(name, 'c') for _, name in groups]
    indexed = _indexed_columns(model)
    numeric = [] if guarded is True else [attr for attr, _, kind in indexed if kind == _NUMERIC]
    layout = _Layout(columns, unsafe, guarded is True, groups, delete_claims, current,
                     indexed, {attr for attr, _, _ in indexed}, numeric)
    setattr(model, '_rom_write_layout', layout)
    return layout


def _first(result: Any) -> Any:
    for item in result:
        return item
    return None


def _unique_text(value: Any) -> str:
    return value.decode('latin-1') if isinstance(value, bytes) else str(value)


def _scores_only(layout: '_Layout', changed: Set[str], old: Dict[str, Any],
                 stored: Dict[str, str]) -> bool:
    """Whether every changed column with index entries is a numeric index holding a value
    before and after (its entry keeps its name, only its score changes)."""
    for attr in changed:
        if attr in layout.entry_columns:
            if attr not in layout.numeric or old.get(attr) is None or attr not in stored:
                return False
    return True


def plan_write(model: Any, old: Dict[str, Any], new: Dict[str, Any], full: bool = False,
               delete: bool = False, is_new: bool = False, fresh: bool = False,
               force: bool = False, incremental: bool = True) -> WritePlan:
    """Compute what a save (or delete) writes; no I/O except saving new referenced entities.

    The entity's id must be known (a pending id is taken before planning). ``incremental``:
    an update may write only what it changes (mode 'u'); False plans every entry.
    """
    ns = model._namespace
    pkey = model._pkey
    pk_value = old.get(pkey) or new.get(pkey)
    if pk_value is PENDING_ID or not (pk_value or pk_value == 0):
        raise ColumnError('%s: the primary key value is missing (an entity that was never '
                          'saved cannot be deleted)' % (ns,))
    id_text = str(pk_value)
    layout = _layout(model)
    race: List[Tuple[str, str]] = []
    absent: List[str] = []
    claims: List[Tuple[str, str]] = []
    releases: List[Tuple[str, str]] = []
    hdel: List[str] = []
    hset: List[Tuple[str, str]] = []
    stored: Dict[str, str] = {}
    changed: Set[str] = set()
    changes = 0
    for attr, col, unique, guarded, virtual, fast in layout.columns:
        old_s = None if is_new else old.get(attr)
        new_v = new.get(attr)
        if new_v is None:
            new_s = None
        else:
            convert = fast.get(type(new_v))
            if convert is None:
                new_s = storage_text(ns, attr, col, new_v)
            else:
                try:
                    new_s = convert(new_v)
                except ValueError:  # an int over 4300 digits: the column's own error
                    new_s = storage_text(ns, attr, col, new_v)
        if new_s is not None:
            stored[attr] = new_s
        if new_v is None:
            unchanged = old_s is None
        else:
            unchanged = old_s is not None and (old_s == new_s or col._equal(old_s, new_v, new_s))
        if unique:
            # a new entity releases the unique values it was created with when they changed
            # and still map to its id (an earlier write whose reply was lost claimed them);
            # a forced save releases the values this handle saved (and, in the script, the
            # row's current ones)
            _plan_unique(col, attr, old, new, old.get(attr), new_s, delete, claims, releases)
        if guarded and not virtual:
            # the stored value this save's index entries and unique claims rely on
            if old_s is not None:
                race.append((attr, old_s))
            elif not is_new:
                absent.append(attr)
        if unchanged and not full:
            continue
        changes += 1
        changed.add(attr)
        if new_s is None:
            if old_s is not None and not delete:  # a delete removes the whole row
                hdel.append(attr)
        else:
            hset.append((attr, new_s))
            if old_s is not None and not guarded and not delete:
                race.append((attr, old_s))
    for group, name in layout.groups:
        old_values = [old.get(c) for c in group]
        new_values = [stored.get(c) for c in group]
        if old_values != new_values and None not in old_values:
            releases.append((name, _encode_unique_constraint(old_values)))
        if None not in new_values:
            claims.append((name, _encode_unique_constraint(new_values)))
    if is_new:
        race = []
        absent = []
    else:
        race.insert(0, (pkey, id_text))
    if delete:
        # no race check; the unique-related fields are still compared: when another writer
        # changed them since ``old`` was read, the script releases every unique field that
        # maps to this id instead of only those derived from ``old``
        race = [pair for pair in race if pair[0] != pkey]
        claims = layout.delete_claims
        entries = _empty_entries()
        mode = 'd'
    elif incremental and changes and not (is_new or full or force or layout.guarded_all) \
            and _scores_only(layout, changed, old, stored):
        # an update changing only numeric index values: the entry names (and so the row's
        # bookkeeping) stay as they are and only the changed scores are written; the script
        # checks that the row's bookkeeping lists them, else asks for a full plan
        mode = 'u'
        entries = _empty_entries()
        for attr in layout.numeric:
            if attr in changed:
                text = _numeric_score(new[attr])
                if text is None:
                    text = compute_index_entries(model, {attr: new[attr]}).scores[attr]
                entries.scores[attr] = text
        groups = {name for group, name in layout.groups if not changed.isdisjoint(group)}
        claims = [claim for claim in claims if claim[0] in changed or claim[0] in groups]
    else:
        entries = compute_index_entries(model, new, id_text)
        mode = 'n' if fresh else 's'
    if not delete:
        for attr, value in claims:
            if not value.isascii():
                need_utf8(ns, attr, value)
    current = layout.current if force and not delete else []
    unsafe = [ns + ':' + id_text + ':' + attr for attr in layout.unsafe] if delete else []
    plan = WritePlan(ns, id_text, pkey, delete, mode, race, absent, claims, releases, current,
                     hdel, hset, unsafe, entries, changes, stored,
                     None if model._ttl is None else KEEP)
    hook = getattr(model, '_rom_plan_hook', None)  # sharding hook: global unique claims
    return plan if hook is None else hook(plan)


def _plan_unique(col: Any, attr: str, old: Dict[str, Any], new: Dict[str, Any], old_s: Any,
                 new_s: Any, delete: bool, claims: List[Tuple[str, str]],
                 releases: List[Tuple[str, str]]) -> None:
    if col._keygen and not col._index:
        old_result = col._keygen(attr, old) or [old_s]
        new_result = None if delete else (col._keygen(attr, new) or [new_s])
        used = old_result if delete else new_result
        if not isinstance(used, (list, tuple, set, frozenset)):
            raise TypeError('%s.%s: a unique keygen must return a list, tuple or set, not %s'
                            % (col._model, attr, type(used).__name__))
        value = next((item for item in used if item is not None), None)
        old_value = _first(old_result) if isinstance(old_result, (list, tuple, set, frozenset)) else None
        new_value = _first(new_result) if isinstance(new_result, (list, tuple, set, frozenset)) else None
    else:
        value = old_s if delete else new_s
        old_value, new_value = old_s, new_s
    if delete:
        if value:
            releases.append((attr, _unique_text(value)))
        return
    if value:
        claims.append((attr, _unique_text(value)))
    if old_value and (not new_value or _unique_text(old_value) != _unique_text(new_value)):
        # compared as stored text: b'12' recorded at construction and '12' are one value
        releases.append((attr, _unique_text(old_value)))


def parse_index_data(raw: Any) -> Tuple[List[str], List[str], List[Tuple[str, str]],
                                        List[Tuple[str, str]], List[str]]:
    """Decode ``-index-data-`` (or a legacy value): (keys, scored, prefix, suffix, geo names).

    Accepts ``{}`` for empty slots, fewer than five slots, and bare geo names in slot 4 (G1).
    """
    if raw is None:
        return [], [], [], [], []
    try:
        data = json.loads(to_text(raw))
    except (ValueError, UnicodeDecodeError):
        return [], [], [], [], []
    slots = [s if isinstance(s, list) else [] for s in (list(data) + [[]] * 5)[:5]] \
        if isinstance(data, list) else [[]] * 5
    keys = [k for k in slots[0] if isinstance(k, str)]
    scored = [k for k in slots[1] if isinstance(k, str)]
    prefix = [(p[0], p[1]) for p in slots[2] if isinstance(p, list) and len(p) == 2]
    suffix = [(p[0], p[1]) for p in slots[3] if isinstance(p, list) and len(p) == 2]
    geo = [g for g in slots[3] if isinstance(g, str)]
    geo += [g for g in slots[4] if isinstance(g, str) and g not in geo]
    return keys, scored, prefix, suffix, geo
