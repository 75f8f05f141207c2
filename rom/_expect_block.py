"""Expected index entries of a whole block of rows, grouped by index key (``check``, ``reindex``).

``rom._expect_fast.FastExpecter.expect`` builds one :class:`~rom._expect._Expected` per row;
the verification then regroups every row's entries by index key, and the bookkeeping
comparison parses each row's ``-index-data-`` into sets. :func:`expect_block` computes the
same entries column by column over all rows of a block, straight into a :class:`rom._verify.Block`:
per index key the rows (in row order) and their members and scores, what
``rom._verify`` and ``scripts/audit_rows.lua`` take. :func:`bookkeeping_matches` compares
the rows' ``-index-data-`` with a block in one go: each stored list is regrouped by key the
same way and the groups are compared whole (equal groups mean every row lists exactly its
entries; anything else sends the caller to the per-row comparison, which names the problem).

A block is computed only when every row qualifies (:func:`expect_block` returns None as soon
as one does not: the caller then takes the per-row path, which decides about each row).
"""
from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ._expect import _Expected, expected_of, group_field, unique_field
from ._helpers import dt2ts
from ._loader import KEEP
from ._registry import MODELS
from ._verify import Block
from ._write_plan import compute_index_entries

__all__ = ['expect_block', 'bookkeeping_matches']

_BIG = 1 << 1023
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


class _Unfit(Exception):
    """A row of the block needs the per-row path."""


def expect_block(fast: Any, rows: Sequence[Tuple[int, List[Any]]]
                 ) -> Optional[Tuple[List[str], Block]]:
    """``(id texts, Block)`` of ``rows`` (``(id, values of fast.fields)``), or None when a
    row needs the per-row path (a missing value whose column has a default, a value that
    does not convert or index, a reverse reference column holding something...)."""
    block = Block()
    parts = [rows]
    trial = fast.trial_left()
    if 0 < trial < len(rows):  # the expecter reviews its columns after its trial rows
        parts = [rows[:trial], rows[trial:]]
    ids: List[str] = []
    try:
        for part in parts:
            part_ids = [str(i) for i, _values in part]
            _expect_part(fast, part, part_ids, block)
            ids += part_ids
            fast.count_rows(len(part))
    except Exception:
        return None  # _Unfit, or what loading or indexing a value raises
    for name in [name for name, claims in block.uniques.items() if not claims]:
        del block.uniques[name]
    return ids, block


def _expect_part(fast: Any, rows: Sequence[Tuple[int, List[Any]]], ids: List[str],
                 block: Block) -> None:
    """Add the entries of ``rows`` to ``block`` (after the entries of earlier rows)."""
    for pos, target in fast.reverse:
        if target not in MODELS or any(values[pos] is not None for _i, values in rows):
            raise _Unfit()
    group_values: Dict[str, List[Any]] = {}
    fields = list(zip(*[values for _i, values in rows]))  # the values of each field
    for c in fast.cols:
        raws = list(fields[c.pos])
        if c.mode == 1:  # _MEMO
            _memo_column(fast, c, ids, raws, block)
            continue
        vals = _convert(c, raws)
        if c.in_group:
            group_values[c.attr] = vals
        if c.unique:
            claims = block.uniques.setdefault(c.attr, [])
            col, attr = c.col, c.attr
            for id_text, v in zip(ids, vals):
                f = unique_field(col, attr, v)
                if f is not None:
                    claims.append((f, id_text))
        if c.mode == 2:  # _NUMBER
            _number_column(fast, c, ids, vals, block)
        elif c.mode == 3:  # _SORT
            _sort_column(fast, c, ids, vals, block)
        elif c.mode == 4 and c.indexed:  # _OTHER
            for id_text, v in zip(ids, vals):
                if v is not None:
                    _other(fast, c, id_text, v, block)
    for group, name in fast.groups:
        claims = block.uniques.setdefault(name, [])
        columns = [group_values[attr] for attr in group]
        for n, id_text in enumerate(ids):
            f = group_field(fast.model, group, {attr: col[n] for attr, col
                                                in zip(group, columns)})
            if f is not None:
                claims.append((f, id_text))


def _convert(c: Any, raws: List[Optional[bytes]]) -> List[Any]:
    """The loaded values of one column (None stays None when the column allows it)."""
    if None in raws:
        if not c.nullable:
            raise _Unfit()
        if c.convert is KEEP:
            return [None if r is None else r.decode() for r in raws]
        convert = c.convert
        return [None if r is None else convert(r.decode()) for r in raws]
    texts = list(map(bytes.decode, raws))  # type: ignore[arg-type]
    return texts if c.convert is KEEP else list(map(c.convert, texts))


def _memo_column(fast: Any, c: Any, ids: List[str], raws: List[Optional[bytes]],
                 block: Block) -> None:
    memo = c.memo
    miss = fast._miss
    shares = []
    for r in raws:
        s = memo.get(r)
        if s is None:
            s = miss(c, r)
            if s is None:
                raise _Unfit()
        shares.append(s)
    empty = fast.empty_share
    sets, scored, uniques = block.sets, block.scores, block.uniques
    for id_text, s in zip(ids, shares):
        if s is empty:
            continue
        keys, scores, prefix, suffix, claim = s
        if keys:
            for name in keys:
                group = sets.get(name)
                if group is None:
                    group = sets[name] = []
                group.append(id_text)
        if scores:
            for name, score in scores:
                zgroup = scored.get(name)
                if zgroup is None:
                    zgroup = scored[name] = ([], [])
                zgroup[0].append(id_text)
                zgroup[1].append(score)
        if prefix or suffix:
            for groups, entries in ((block.prefix, prefix), (block.suffix, suffix)):
                for (attr, token), score in entries:
                    pgroup = groups.get(attr)
                    if pgroup is None:
                        pgroup = groups[attr] = ([], [], [])
                    pgroup[0].append(token + '\0' + id_text)
                    pgroup[1].append(score)
                    pgroup[2].append(id_text)
        if claim is not None:
            uniques.setdefault(claim[0], []).append((claim[1], id_text))


def _number_column(fast: Any, c: Any, ids: List[str], vals: List[Any], block: Block) -> None:
    """rom's numeric keygen: the score text of a number, a date or a datetime."""
    zids: List[str] = []
    zscores: List[str] = []
    for id_text, v in zip(ids, vals):
        t = type(v)
        if t is float and v == v:
            zids.append(id_text)
            zscores.append(repr(v))
        elif t is int and -_BIG < v < _BIG:
            zids.append(id_text)
            zscores.append(str(v))
        elif t is datetime or t is date:
            x = dt2ts(v)
            if type(x) is float and x - x == 0:  # finite
                zids.append(id_text)
                zscores.append(repr(x))
            else:
                _other(fast, c, id_text, v, block)
        elif v is not None:
            _other(fast, c, id_text, v, block)
    if zids:
        old = block.scores.get(c.attr)
        if old is None:
            block.scores[c.attr] = (zids, zscores)
        else:  # the rows of an earlier part of the block (or of _other)
            old[0].extend(zids)
            old[1].extend(zscores)


def _sort_column(fast: Any, c: Any, ids: List[str], vals: List[Any], block: Block) -> None:
    """The sortable string keygens of a prefix/suffix column: one token per text value."""
    pscore, cache = fast._prefix_score, c.scores
    lower = c.lower
    for v in vals:
        if v is not None and type(v) is not str:
            raise _Unfit()
    for flag, groups, reverse in (('prefix', block.prefix, False),
                                  ('suffix', block.suffix, True)):
        if not getattr(c, flag):
            continue
        members: List[str] = []
        scores: List[str] = []
        owners: List[str] = []
        for id_text, v in zip(ids, vals):
            if v:
                t = v[::-1] if reverse else v
                if lower:
                    t = t.lower()
                h = t.encode()[:7]
                p = cache.get(h)
                if p is None:
                    p = pscore(c, h)
                members.append(t + '\0' + id_text)
                scores.append(p)
                owners.append(id_text)
        if members:
            old = groups.get(c.attr)
            if old is None:
                groups[c.attr] = (members, scores, owners)
            else:  # (the rows of an earlier part of the block)
                old[0].extend(members)
                old[1].extend(scores)
                old[2].extend(owners)


def _other(fast: Any, c: Any, id_text: str, v: Any, block: Block) -> None:
    """One value through the save path's own computation (``compute_index_entries``)."""
    block.add(id_text, expected_of(compute_index_entries(fast.model, {c.attr: v}), geo=False))


def bookkeeping_matches(ids: List[str], raws: Sequence[Any], block: Block) -> bool:
    """Whether every row's stored ``-index-data-`` (``raws``, in the order of ``ids``)
    lists exactly the entries ``block`` expects of it (False: compare row by row)."""
    sets: Dict[str, List[str]] = {}
    scored: Dict[str, List[str]] = {}
    prefix: Dict[str, List[str]] = {}
    suffix: Dict[str, List[str]] = {}
    try:
        for id_text, raw in zip(ids, raws):
            if raw is None:
                return False
            text = raw.decode('utf-8') if type(raw) is bytes else raw
            data, end = _scan(text, 0)  # the C scanner: what json.loads runs, unwrapped
            if end != len(text):
                return False
            keys, names, pre, suf, geo = data
            if geo != [] and geo != {}:
                return False
            for name in keys:
                group = sets.get(name)
                if group is None:
                    group = sets[name] = []
                group.append(id_text)
            for name in names:
                group = scored.get(name)
                if group is None:
                    group = scored[name] = []
                group.append(id_text)
            for groups, entries in ((prefix, pre), (suffix, suf)):
                for attr, token in entries:
                    group = groups.get(attr)
                    if group is None:
                        group = groups[attr] = []
                    group.append(token + '\0' + id_text)
    except (ValueError, TypeError, UnicodeDecodeError, StopIteration):
        return False
    return (sets == block.sets and not block.geo
            and scored == {name: v[0] for name, v in block.scores.items()}
            and prefix == {attr: v[0] for attr, v in block.prefix.items()}
            and suffix == {attr: v[0] for attr, v in block.suffix.items()})
