"""A row's expected index entries straight from its stored texts (``check``, ``reindex``).

``rom._expect.expected_entries`` builds the entity and runs the save path's
``compute_index_entries`` on all its values, for every row. For most models each column's
share of a row's entries (and of its unique claims) depends on that column's stored text
alone: built-in column types whose keygens read only their own column, no geo index, no
reference columns. For those, :class:`FastExpecter` builds a row's
:class:`~rom._expect._Expected` from per-column shares without building an entity:

* a column whose stored texts repeat (a boolean, a small number, a name) has its share
  computed once per distinct text, through ``compute_index_entries`` on that column alone;
* otherwise, rom's numeric keygen (a number's or a date's score) and the sortable string
  keygens of prefix/suffix columns (whose scores depend on a token's first 7 bytes,
  memoised) are computed directly, as the save path computes them; any other column
  goes through ``compute_index_entries`` with the row's other such columns.

:meth:`FastExpecter.expect_block` computes the same for a whole block of rows, column by
column, grouped by index key (``rom._expect_block``): what ``check`` and ``reindex`` use
first. It converts every stored value the way loading does (so a row that cannot be loaded is
noticed). A row it cannot handle exactly (a missing field whose column has a default, a
missing primary key, a value that does not convert or index) gives None: the caller then
takes the entity path, which reports the problem with its usual message.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ._expect import _Expected, group_field, unique_field
from ._expect_block import expect_block
from ._helpers import _prefix_score, dt2ts
from ._keygen import SORT_KEYGEN_NAMES, _numeric_keygen
from ._loader import KEEP, load_plan
from ._maint_io import bulk, run_packed
from ._registry import MODELS, NULL
from ._relations import OneToMany
from ._ttl import EXPIRY_FIELD
from ._write_plan import compute_index_entries

__all__ = ['FastExpecter', 'fast_expecter']

#: a column's share of a row's entries: set index names, (scored name, score),
#: ((attr, token), score) of prefix and suffix entries, (unique name, value) or None
Share = Tuple[Tuple[str, ...], Tuple[Tuple[str, str], ...],
              Tuple[Tuple[Tuple[str, str], str], ...], Tuple[Tuple[Tuple[str, str], str], ...],
              Optional[Tuple[str, str]]]

_EMPTY: Share = ((), (), (), (), None)
#: memoised shares per column at most (a column with more distinct texts starts over)
_MEMO_LIMIT = 100000
#: after this many rows, a column whose texts repeat less than 1 time in 4 stops memoising
#: (when its share is cheap to compute: numbers, sortable strings, unique values)
_MEMO_TRIAL = 512

# how a column's share is computed
_PLAIN, _MEMO, _NUMBER, _SORT, _OTHER = range(5)


class _Col:
    __slots__ = ('attr', 'pos', 'col', 'convert', 'indexed', 'unique', 'mode', 'direct',
                 'memo', 'misses', 'nullable', 'lower', 'prefix', 'suffix', 'scores',
                 'in_group')

    def __init__(self, attr: str, pos: int, col: Any, convert: Any, indexed: bool,
                 unique: bool, in_group: bool) -> None:
        self.attr, self.pos, self.col, self.convert = attr, pos, col, convert
        self.indexed, self.unique, self.in_group = indexed, unique, in_group
        default = getattr(col, '_default', NULL)
        self.nullable = default is NULL or default is None
        self.misses = 0
        self.memo: Dict[Optional[bytes], Share] = {}
        self.scores: Dict[bytes, str] = {}  # _SORT: prefix score by first 7 bytes
        self.prefix, self.suffix = bool(col._prefix), bool(col._suffix)
        self.lower = False
        self.direct = _OTHER  # the mode once memoising does not pay
        keygen = col._keygen
        wrapped = getattr(keygen, '__wrapped__', None)
        name = getattr(keygen, '__name__', None)
        if not indexed:
            self.direct = _PLAIN
        elif wrapped is _numeric_keygen and col._index and not (col._prefix or col._suffix):
            self.direct = _NUMBER
        elif (not col._index and name in SORT_KEYGEN_NAMES and wrapped is not None
              and wrapped.__name__ == name and wrapped.__module__ == 'rom._keygen'):
            self.direct = _SORT
            self.lower = name != 'SIMPLE'
        # a column of a unique_together group needs its value: never memoised
        self.mode = _MEMO if (indexed or unique) and not in_group else self.direct


class FastExpecter:
    """Expected entries of a model's rows from their stored values (the bytes values of
    :attr:`fields`, in that order); one per job: it learns which columns' texts repeat."""

    #: the share of a column value that calls for no entry
    empty_share = _EMPTY

    def __init__(self, model: Any) -> None:
        self.model = model
        plan = load_plan(model)
        #: what is read of each row: the model's fields, its bookkeeping and expiry time
        self.fields: List[bytes] = [key for _, key, _, _ in plan] + [
            b'-index-data-', EXPIRY_FIELD.encode()]
        self.index_pos, self.expiry_pos = len(plan), len(plan) + 1
        self.pkey_pos = [attr for attr, _, _, _ in plan].index(model._pkey)
        self.reverse: List[Tuple[int, str]] = []  # OneToMany: (position, target namespace)
        self.groups: List[Tuple[Tuple[str, ...], str]] = [
            (tuple(group), ':'.join(group)) for group in (model._cunique or ())]
        grouped = {attr for group, _name in self.groups for attr in group}
        indexed = {attr for attr, col in model._columns.items()
                   if getattr(col, '_keygen', None) and (col._index or col._prefix or col._suffix)}
        unique = set(model._unique or ())
        self.cols: List[_Col] = []
        for pos, (attr, _key, col, convert) in enumerate(plan):
            if type(col) is OneToMany:
                self.reverse.append((pos, col._ftable))
                continue
            self.cols.append(_Col(attr, pos, col, convert, attr in indexed, attr in unique,
                                  attr in grouped))
        self.defaults = [pos for pos, (attr, _key, col, _c) in enumerate(plan)
                         if getattr(col, '_default', NULL) not in (NULL, None)]
        self.rows = 0
        key = '%s:' % (model._namespace,)
        self._prefix = key.encode('utf-8')
        self._tail = b''.join([bulk(f) for f in self.fields])
        self._expect = self._compile()

    def values(self, row: Dict[Any, Any]) -> List[Any]:
        """The values of :attr:`fields` in an ``HGETALL`` reply."""
        get = row.get
        return [get(f) for f in self.fields]

    def read(self, conn: Any, ids: Sequence[int]) -> List[Tuple[int, List[Any]]]:
        """``(id, values)`` of the rows ``ids`` (``HMGET`` of :attr:`fields`, pipelined;
        every value None for a missing row); ``conn`` must be :func:`~rom._maint_io.usable`."""
        head = b'*%d\r\n$5\r\nHMGET\r\n' % (len(self.fields) + 2,)
        prefix, tail = self._prefix, self._tail
        commands = []
        for i in ids:
            key = b'%s%d' % (prefix, i)
            commands.append(b'%s$%d\r\n%s\r\n%s' % (head, len(key), key, tail))
        return list(zip(ids, run_packed(conn, commands)))

    def lacks_default(self, values: List[Any]) -> bool:
        """Whether the row lacks a field whose column declares a default."""
        for pos in self.defaults:
            if values[pos] is None:
                return True
        return False

    # --- shares -------------------------------------------------------------------------
    def _share(self, c: _Col, value: Any) -> Share:
        """The column's share of a row's entries for the loaded ``value`` (the save path's
        own computation, on this column alone)."""
        keys: Tuple[str, ...] = ()
        scores: Tuple[Tuple[str, str], ...] = ()
        prefix: Tuple[Tuple[Tuple[str, str], str], ...] = ()
        suffix: Tuple[Tuple[Tuple[str, str], str], ...] = ()
        if c.indexed:
            entries = compute_index_entries(self.model, {c.attr: value})
            keys = tuple(dict.fromkeys(entries.keys))  # (each entry once: blocks list them)
            scores = tuple(entries.scores.items())
            prefix = tuple({(a, t): s for a, t, s in entries.prefix}.items())
            suffix = tuple({(a, t): s for a, t, s in entries.suffix}.items())
        claim = None
        if c.unique:
            field = unique_field(c.col, c.attr, value)
            if field is not None:
                claim = (c.attr, field)
        if not (keys or scores or prefix or suffix or claim):
            return _EMPTY
        return keys, scores, prefix, suffix, claim

    def _miss(self, c: _Col, raw: Optional[bytes]) -> Optional[Share]:
        """A memoised column's share for a text not seen yet (None: the entity path)."""
        c.misses += 1
        if raw is None:
            if not c.nullable:
                return None  # loading applies the default: the entity path
            value = None
        else:
            text = raw.decode('utf-8')
            value = text if c.convert is KEEP else c.convert(text)
        share = self._share(c, value)
        if len(c.memo) >= _MEMO_LIMIT:
            c.memo.clear()
        c.memo[raw] = share
        return share

    def _prefix_score(self, c: _Col, head: bytes) -> str:
        if len(c.scores) >= _MEMO_LIMIT:
            c.scores.clear()
        score = c.scores[head] = _prefix_score(head)
        return score

    # --- rows ---------------------------------------------------------------------------
    def expect(self, row: List[Any]) -> Optional[_Expected]:
        """The expected entries of the row with these :attr:`fields` values, or None when
        the entity path must decide."""
        self.rows += 1
        if self.rows == _MEMO_TRIAL:
            self._review()
        return self._expect(row)

    def trial_left(self) -> int:
        """Rows left before the columns are reviewed (0: reviewed)."""
        return max(_MEMO_TRIAL - self.rows, 0)

    def count_rows(self, n: int) -> None:
        """Note ``n`` rows handled as a block (:mod:`rom._expect_block`)."""
        before = self.rows
        self.rows += n
        if before < _MEMO_TRIAL <= self.rows:
            self._review()

    def expect_block(self, rows: Sequence[Tuple[int, List[Any]]]
                     ) -> Optional[Tuple[List[str], Any]]:
        """``(id texts, Block)`` of the rows (``(id, values)``), or None when the per-row
        path must decide (see :func:`rom._expect_block.expect_block`)."""
        return expect_block(self, rows)

    def _review(self) -> None:
        """After the trial rows: columns whose texts hardly repeat stop memoising (when
        their share is cheap to compute)."""
        changed = False
        for c in self.cols:
            cheap = c.direct in (_NUMBER, _SORT, _PLAIN)
            if c.mode == _MEMO and cheap and (self.rows - c.misses) * 4 < self.rows:
                c.mode = c.direct
                c.memo = {}
                changed = True
        if changed:
            self._expect = self._compile()

    def _compile(self) -> Callable[[List[Any]], Optional[_Expected]]:
        """The row function for the columns' current modes, in straight-line code."""
        env: Dict[str, Any] = {
            'MODELS': MODELS, 'EMPTY': _EMPTY, 'new': object.__new__, 'Expected': _Expected,
            'miss': self._miss, 'pscore': self._prefix_score, 'unique_field': unique_field,
            'group_field': group_field, 'cie': compute_index_entries, 'MODEL': self.model,
            'dt2ts': dt2ts, 'datetime': datetime, 'date': date, 'BIG': 1 << 1023,
            'GROUPS': self.groups}
        out = ['def expect(row):', '    if row[%d] is None:' % self.pkey_pos,
               '        return None']
        for pos, target in self.reverse:
            out += ['    if row[%d] is not None or %r not in MODELS:' % (pos, target),
                    '        return None']
        out += ['    keys = set(); scores = {}; prefix = {}; suffix = {}; uniques = {}',
                '    data = {}; values = {}', '    try:']
        for n, c in enumerate(self.cols):
            out += _column_code(n, c, env)
        out += ['        if data:',
                '            e = cie(MODEL, data)',
                '            keys.update(e.keys)',
                '            scores.update(e.scores)',
                '            for a, t, p in e.prefix:',
                '                prefix[(a, t)] = p',
                '            for a, t, p in e.suffix:',
                '                suffix[(a, t)] = p']
        if self.groups:
            out += ['        for group, name in GROUPS:',
                    '            f = group_field(MODEL, group, values)',
                    '            if f is not None:',
                    '                uniques[name] = f']
        out += ['    except Exception:',
                '        return None  # the entity path names the column and the value',
                '    exp = new(Expected)',
                '    exp.keys = keys; exp.scores = scores; exp.prefix = prefix',
                '    exp.suffix = suffix; exp.geo = {}; exp.uniques = uniques',
                '    return exp']
        exec(compile('\n'.join(out), '<rom expected entries of %s>' % (self.model._namespace,),
                     'exec'), env)
        return env['expect']  # type: ignore[no-any-return]


def _column_code(n: int, c: _Col, env: Dict[str, Any]) -> List[str]:
    """The lines of the row function for column ``c`` (number ``n``)."""
    env['c%d' % n], env['col%d' % n], env['conv%d' % n] = c, c.col, c.convert
    r, attr = 'r%d' % n, c.attr
    out = ['        %s = row[%d]' % (r, c.pos)]
    if c.mode == _MEMO:
        env['memo%d' % n] = c.memo
        return out + ['        s = memo%d.get(%s)' % (n, r),
                      '        if s is None:',
                      '            s = miss(c%d, %s)' % (n, r),
                      '            if s is None:',
                      '                return None',
                      '        if s is not EMPTY:',
                      '            if s[0]: keys.update(s[0])',
                      '            if s[1]: scores.update(s[1])',
                      '            if s[2]: prefix.update(s[2])',
                      '            if s[3]: suffix.update(s[3])',
                      '            if s[4] is not None: uniques[s[4][0]] = s[4][1]']
    out += ['        if %s is None:' % r,
            '            %s' % ('v = None' if c.nullable else 'return None'),
            '        else:',
            '            v = %s' % ('%s.decode()' % r if c.convert is KEEP
                                    else 'conv%d(%s.decode())' % (n, r))]
    if c.in_group:
        out.append('        values[%r] = v' % (attr,))
    if c.unique:
        out += ['        f = unique_field(col%d, %r, v)' % (n, attr),
                '        if f is not None:',
                '            uniques[%r] = f' % (attr,)]
    if c.mode == _NUMBER:
        out += ['        t = type(v)',
                '        if t is float and v == v:',
                '            scores[%r] = repr(v)' % (attr,),
                '        elif t is int and -BIG < v < BIG:',
                '            scores[%r] = str(v)' % (attr,),
                '        elif t is datetime or t is date:',
                '            x = dt2ts(v)',
                '            if type(x) is float and x - x == 0:  # finite',
                '                scores[%r] = repr(x)' % (attr,),
                '            else:',
                '                data[%r] = v' % (attr,),
                '        elif v is not None:',
                '            data[%r] = v' % (attr,)]
    elif c.mode == _SORT:
        env['ps%d' % n] = c.scores
        out += ['        if type(v) is str:', '            if v:']
        for flag, token in (('prefix', 'v'), ('suffix', 'v[::-1]')):
            if getattr(c, flag):
                out += ['                t = %s%s' % (token, '.lower()' if c.lower else ''),
                        '                h = t.encode()[:7]',
                        '                p = ps%d.get(h)' % (n,),
                        '                if p is None:',
                        '                    p = pscore(c%d, h)' % (n,),
                        '                %s[(%r, t)] = p' % (flag, attr)]
        out += ['        elif v is not None:', '            data[%r] = v' % (attr,)]
    elif c.mode == _OTHER and c.indexed:
        out += ['        if v is not None:', '            data[%r] = v' % (attr,)]
    return out


def _qualifies(model: Any) -> bool:
    if model._geo:
        return False
    for _attr, _key, col, convert in load_plan(model):
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
