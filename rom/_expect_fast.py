"""A row's expected index entries straight from its stored texts (``check``, ``reindex``).

``rom._expect.expected_entries`` builds the entity and runs the save path's
``compute_index_entries`` on all its values, for every row. For most models each column's
share of a row's entries (and of its unique claims) depends on that column's stored text
alone: built-in column types whose keygens read only their own column, no geo index, no
reference columns. For those, :class:`FastExpecter` computes each column's share once per
distinct stored text, through ``compute_index_entries`` on that column alone, and builds a
row's :class:`~rom._expect._Expected` from the shares. It still converts every stored value
the way loading does (so a row that cannot be loaded is noticed), without building an
entity. A row it cannot handle exactly (a missing field whose column has a default, a
missing primary key, a value that does not convert) gives None: the caller then takes the
entity path, which reports the problem with its usual message.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ._expect import _Expected, group_field, unique_field
from ._loader import KEEP, load_plan
from ._registry import MODELS, NULL
from ._relations import OneToMany
from ._write_plan import compute_index_entries

__all__ = ['FastExpecter', 'fast_expecter']

#: a column's share of a row's entries: set index names, (scored name, score),
#: ((attr, token), score) of prefix and suffix entries, (unique name, value) or None
Share = Tuple[Tuple[str, ...], Tuple[Tuple[str, str], ...],
              Tuple[Tuple[Tuple[str, str], str], ...], Tuple[Tuple[Tuple[str, str], str], ...],
              Optional[Tuple[str, str]]]

_EMPTY: Share = ((), (), (), (), None)
#: memoised shares per column, at most (a column with more distinct texts starts over)
_MEMO_LIMIT = 200000
#: after this many lookups, a column whose texts repeat less than 1 time in 8 stops memoising
_MEMO_TRIAL = 4096


class _Col:
    __slots__ = ('attr', 'key', 'col', 'convert', 'indexed', 'unique', 'memo', 'lookups',
                 'hits', 'nullable', 'shared')

    def __init__(self, attr: str, key: bytes, col: Any, convert: Any, indexed: bool,
                 unique: bool) -> None:
        self.attr, self.key, self.col, self.convert = attr, key, col, convert
        self.indexed, self.unique = indexed, unique
        self.shared = indexed or unique  # has a share of the row's entries
        self.memo: Optional[Dict[Optional[bytes], Share]] = {} if self.shared else None
        self.lookups = self.hits = 0
        default = getattr(col, '_default', NULL)
        self.nullable = default is NULL or default is None


class FastExpecter:
    """Expected entries of a model's rows from their raw ``HGETALL`` replies."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.pkey = model._pkey.encode('utf-8')
        self.cols: List[_Col] = []
        self.reverse: List[Tuple[bytes, str]] = []  # OneToMany: (field, target namespace)
        self.groups: List[Tuple[Tuple[str, ...], str]] = [
            (tuple(group), ':'.join(group)) for group in (model._cunique or ())]
        self.group_cols = {attr for group, _name in self.groups for attr in group}
        indexed = {attr for attr, col in model._columns.items()
                   if getattr(col, '_keygen', None) and (col._index or col._prefix or col._suffix)}
        unique = set(model._unique or ())
        for attr, key, col, convert in load_plan(model):
            if type(col) is OneToMany:
                self.reverse.append((key, col._ftable))
                continue
            self.cols.append(_Col(attr, key, col, convert, attr in indexed, attr in unique))

    def _share(self, c: _Col, value: Any) -> Share:
        """The column's share of a row's entries for the loaded ``value``."""
        keys: Tuple[str, ...] = ()
        scores: Tuple[Tuple[str, str], ...] = ()
        prefix: Tuple[Tuple[Tuple[str, str], str], ...] = ()
        suffix: Tuple[Tuple[Tuple[str, str], str], ...] = ()
        if c.indexed:
            entries = compute_index_entries(self.model, {c.attr: value})
            keys = tuple(entries.keys)
            scores = tuple(entries.scores.items())
            prefix = tuple(((a, t), s) for a, t, s in entries.prefix)
            suffix = tuple(((a, t), s) for a, t, s in entries.suffix)
        claim = None
        if c.unique:
            field = unique_field(c.col, c.attr, value)
            if field is not None:
                claim = (c.attr, field)
        if not (keys or scores or prefix or suffix or claim):
            return _EMPTY
        return keys, scores, prefix, suffix, claim

    def expect(self, row: Dict[Any, Any]) -> Optional[_Expected]:
        """The row's expected entries, or None when the entity path must decide."""
        get = row.get
        for key, target in self.reverse:
            if get(key) is not None or target not in MODELS:
                return None
        if get(self.pkey) is None:
            return None
        exp = _Expected()
        keys, scores, prefix, suffix, uniques = (exp.keys, exp.scores, exp.prefix, exp.suffix,
                                                 exp.uniques)
        data: Dict[str, Any] = {}  # values of the indexed columns computed row by row
        values: Optional[Dict[str, Any]] = {} if self.groups else None
        try:
            for c in self.cols:
                raw = get(c.key)
                memo = c.memo
                share = None
                if memo is not None:
                    c.lookups += 1
                    share = memo.get(raw)
                    if share is not None:
                        c.hits += 1
                        if values is None or c.attr not in self.group_cols:
                            if share is not _EMPTY:
                                _merge(exp, share)
                            continue
                if raw is None:
                    if not c.nullable:
                        return None  # loading applies the default: the entity path
                    value = None
                else:
                    text = raw.decode('utf-8')
                    convert = c.convert
                    value = text if convert is KEEP else convert(text)
                if values is not None:
                    values[c.attr] = value
                if share is not None:
                    if share is not _EMPTY:
                        _merge(exp, share)
                elif memo is not None:
                    share = self._share(c, value)
                    self._remember(c, raw, share)
                    if share is not _EMPTY:
                        _merge(exp, share)
                elif c.shared:
                    if c.indexed:
                        data[c.attr] = value
                    if c.unique:
                        field = unique_field(c.col, c.attr, value)
                        if field is not None:
                            uniques[c.attr] = field
            if data:
                entries = compute_index_entries(self.model, data)
                keys.update(entries.keys)
                scores.update(entries.scores)
                for attr, token, score in entries.prefix:
                    prefix[(attr, token)] = score
                for attr, token, score in entries.suffix:
                    suffix[(attr, token)] = score
            if values is not None:
                for group, name in self.groups:
                    field = group_field(self.model, group, values)
                    if field is not None:
                        uniques[name] = field
        except Exception:
            return None  # the entity path names the column and the value
        return exp

    def _remember(self, c: _Col, raw: Optional[bytes], share: Share) -> None:
        memo = c.memo
        assert memo is not None
        if c.lookups >= _MEMO_TRIAL and c.hits * 8 < c.lookups:
            c.memo = None  # its texts hardly repeat: compute each one
            return
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[raw] = share


def _merge(exp: _Expected, share: Share) -> None:
    if share[0]:
        exp.keys.update(share[0])
    if share[1]:
        exp.scores.update(share[1])
    if share[2]:
        exp.prefix.update(share[2])
    if share[3]:
        exp.suffix.update(share[3])
    if share[4] is not None:
        exp.uniques[share[4][0]] = share[4][1]


def _qualifies(model: Any) -> bool:
    if model._geo:
        return False
    for attr, key, col, convert in load_plan(model):
        if type(col) is OneToMany:
            continue
        if convert is None:
            return False  # references, custom columns, IndexOnly: loaded through _init_
        keygen = getattr(col, '_keygen', None)
        used = col._index or col._prefix or col._suffix or col._unique
        if keygen is not None and used and not getattr(keygen, '_rom_own_column_only', False):
            return False
        if (col._index or col._prefix or col._suffix) and not col._allowed:
            return False
    return True


def fast_expecter(model: Any) -> Optional[FastExpecter]:
    """A fresh :class:`FastExpecter` for ``model``, or None when the model needs the entity
    path for every row (geo indexes, references, custom columns or keygens)."""
    return FastExpecter(model) if _qualifies(model) else None
