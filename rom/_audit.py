"""Index audit: compare a model's secondary indexes with what its rows say they should be.

``audit_model(model)`` reads Redis only (plus one temporary hash with a TTL used to spot
duplicated unique values) and returns an :class:`AuditReport`. It works in two passes,
each in blocks of ``block_size`` so memory stays bounded:

1. Rows: every row found by SCAN is loaded, the index entries a save of it would write
   are computed (``rom._write.compute_index_entries``) and checked against Redis (set
   membership, sorted-set member and score, prefix/suffix member and score, geo member and
   position, unique field, the row's ``-index-data-`` bookkeeping).
2. Index keys: every ``<ns>:…:idx``, ``:pre``, ``:suf``, ``:geo``, ``:uidx`` key and the
   legacy ``<ns>::`` hash is scanned; each entry must point at an existing row whose
   current values produce that entry.

A healthy database gives zero findings.
"""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

from ._connect import connect, to_text
from ._expiry_audit import audit_expiry, is_expired, server_ms
from ._helpers import _encode_unique_constraint
from ._maintenance import _get_row_ids, _scan_pages, scan_pattern
from ._registry import MODELS
from ._session import session
from ._write import compute_index_entries, parse_index_data
from ._audit_report import (BAD_ROW, BOOKKEEPING, DANGLING, KINDS, MISSING, STALE,
                            UNIQUE_DUPLICATE, UNIQUE_MISSING, UNIQUE_STALE, UNKNOWN_INDEX,
                            WRONG_SCORE, AuditReport, Finding)

__all__ = ['AuditReport', 'Finding', 'audit_model', 'KINDS']

_GEO_TOLERANCE = 1e-4  # degrees; Redis stores 52-bit geohashes (well under a metre)
_SCORE_RTOL = 1e-12
_TEMP_TTL = 3600


# --------------------------------------------------------------------------- expectations

def _text(value: Any) -> str:
    """What a value becomes in Redis, as text: bytes go through latin-1 (the JSON transport)."""
    if isinstance(value, bytes):
        return value.decode('latin-1')
    return value if isinstance(value, str) else str(value)


def _t(value: Any) -> str:
    """A reply item as text; bytes that are not UTF-8 keep their bytes as surrogates."""
    return value.decode('utf-8', 'surrogateescape') if isinstance(value, bytes) else value


def _score(value: Any) -> Optional[float]:
    try:
        return float(_text(value)) if isinstance(value, (str, bytes)) else float(value)
    except (TypeError, ValueError):
        return None


class _Expected:
    """The index entries one row calls for (all text in its stored form)."""

    __slots__ = ('keys', 'scores', 'prefix', 'suffix', 'geo', 'uniques')

    def __init__(self) -> None:
        self.keys: Set[str] = set()
        self.scores: Dict[str, Optional[float]] = {}
        self.prefix: Dict[Tuple[str, str], Optional[float]] = {}
        self.suffix: Dict[Tuple[str, str], Optional[float]] = {}
        self.geo: Dict[str, Tuple[float, float]] = {}
        self.uniques: Dict[str, str] = {}

    def bookkeeping(self) -> Tuple[Set[str], Set[str], Set[Tuple[str, str]],
                                   Set[Tuple[str, str]], Set[str]]:
        return (set(self.keys), set(self.scores), set(self.prefix), set(self.suffix),
                set(self.geo))


#: the expectation of a row that cannot be loaded (already reported as bad-row)
_UNREADABLE = _Expected()


def _unique_fields(model: Any, data: Dict[str, Any]) -> Dict[str, str]:
    """Constraint name -> the unique-index field a save of ``data`` claims (models §6.3)."""
    fields: Dict[str, str] = {}
    columns = model._columns
    for attr in model._unique or ():
        col = columns[attr]
        value = data.get(attr)
        new_s = col._to_redis(value) if value is not None else None
        unique: Any = new_s
        if col._keygen is not None and not col._index:
            result = col._keygen(attr, data) or [new_s]
            if not isinstance(result, (list, tuple, set)):
                continue
            unique = next((item for item in result if item is not None), None)
        if unique:  # empty values ('' , Boolean False) are never claimed, as in rom 1.1.2
            fields[attr] = _text(unique)
    for group in model._cunique or ():
        values = []
        for attr in group:
            value = data.get(attr)
            values.append(None if value is None else columns[attr]._to_redis(value))
        if all(v is not None for v in values):
            fields[':'.join(group)] = _encode_unique_constraint(values)
    return fields


def _expected(model: Any, entity: Any, id_text: str) -> _Expected:
    data = entity.to_dict()
    entries = compute_index_entries(model, data, id_text)
    exp = _Expected()
    exp.keys.update(_text(k) for k in entries.keys)
    for name, score in entries.scores.items():
        exp.scores[_text(name)] = _score(score)
    for attr, token, score in entries.prefix:
        exp.prefix[(_text(attr), _text(token))] = _score(score)
    for attr, token, score in entries.suffix:
        exp.suffix[(_text(attr), _text(token))] = _score(score)
    for name, lon, lat in entries.geo:
        exp.geo[_text(name)] = (float(lon), float(lat))  # the last point of a name wins
    exp.uniques = _unique_fields(model, data)
    return exp


def _close(a: Optional[float], b: Optional[float]) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or abs(a - b) <= _SCORE_RTOL * max(abs(a), abs(b))


# --------------------------------------------------------------------------- the auditor

class _Auditor:
    def __init__(self, model: Any, block_size: int,
                 progress: Optional[Callable[[str, int, int], None]]) -> None:
        self.model = model
        self.conn = connect(model)
        self.ns = model._namespace
        self.prefix = self.ns + ':'
        self.block_size = max(int(block_size), 10)
        self.progress = progress
        self.report = AuditReport(self.ns)
        self.temp = '%s:%s:audit' % (self.ns, uuid.uuid4())
        self.cache: Dict[int, Optional[_Expected]] = {}
        self.buffer: List[Tuple[str, str, str, str, str]] = []
        self.done = self.total = 0
        others = {getattr(m, '_namespace', '') for m in MODELS.values()}
        self.foreign = sorted(o + ':' for o in others if o.startswith(self.prefix))
        self.unique_names = list(model._unique or ()) + [
            ':'.join(group) for group in (model._cunique or ())]
        # models with _ttl: the unique claims of expired rows may have been taken over
        self.now = server_ms(self.conn) if getattr(model, '_ttl', None) is not None else None

    # --- loading -------------------------------------------------------------------------
    def _decode(self, raw: Dict[Any, Any]) -> Dict[str, Any]:
        return {_t(k): v for k, v in raw.items()}

    @staticmethod
    def _values(row: Dict[str, Any], names: Any) -> Dict[str, Any]:
        """The column values of a row, decoded strictly like ``Model.get`` does."""
        values = {}
        for name, value in row.items():
            name.encode('utf-8')  # a field name that is not UTF-8 makes the row unloadable
            value = to_text(value)
            if name in names:
                values[name] = value
        return values

    def _load(self, ids: List[int]) -> List[Tuple[int, Dict[str, Any], Any]]:
        """``(id, decoded row, legacy bookkeeping)`` for the ids whose row exists."""
        pipe = self.conn.pipeline(False)
        for i in ids:
            pipe.hgetall('%s%d' % (self.prefix, i))
            pipe.hget(self.ns + '::', str(i))
        replies = pipe.execute()
        rows = []
        for n, i in enumerate(ids):
            raw = replies[2 * n]
            if raw:
                rows.append((i, self._decode(raw), replies[2 * n + 1]))
        return rows

    def _entity(self, i: int, row: Dict[str, Any]) -> Any:
        model = self.model
        data = self._values(row, model._columns)
        return model(_loading=True, _bypass_session_entirely=True, **data)

    def _expect(self, i: int, row: Dict[str, Any]) -> Optional[_Expected]:
        try:
            entity = self._entity(i, row)
            return _expected(self.model, entity, str(i))
        except Exception as exc:  # report rows rom cannot load instead of stopping
            self.report.add(BAD_ROW, '%s%d' % (self.prefix, i), None, str(i),
                            'row %s%d cannot be loaded or indexed: %s: %s'
                            % (self.prefix, i, type(exc).__name__, exc))
            return None

    # --- pass 1: rows ---------------------------------------------------------------------
    def check_rows(self) -> None:
        total = int(self.conn.get('%s%s:' % (self.prefix, self.model._pkey)) or 0)
        done = 0
        try:
            for ids in _get_row_ids(self.model, self.block_size):
                rows = self._load(ids)
                self._check_block(rows)
                done += len(ids)
                self.report.rows += len(rows)
                if self.progress:
                    self.progress('rows', done, max(total, done))
        finally:
            self.conn.delete(self.temp)

    def _check_block(self, rows: List[Tuple[int, Dict[str, Any], Any]]) -> None:
        ns, prefix = self.ns, self.prefix
        checks: List[Tuple[Any, ...]] = []
        pipe = self.conn.pipeline(False)
        for i, row, legacy in rows:
            exp = self._expect(i, row)
            if exp is None:
                continue
            id_text = str(i)
            self._check_bookkeeping(i, row, legacy, exp)

            def want(kind: str, key: str, member: str, expected: Any, command: str,
                     arg: str) -> None:
                getattr(pipe, command)(key, arg)
                checks.append((kind, i, key, member, expected))

            for name in exp.keys:
                want('set', prefix + name + ':idx', id_text, None, 'sismember', id_text)
            for name, score in exp.scores.items():
                want('zset', prefix + name + ':idx', id_text, score, 'zscore', id_text)
            for kind, entries in (('pre', exp.prefix), ('suf', exp.suffix)):
                for (attr, token), score in entries.items():
                    member = token + '\0' + id_text
                    want('zset', '%s%s:%s' % (prefix, attr, kind), member, score, 'zscore', member)
            for name, point in exp.geo.items():
                want('geo', prefix + name + ':geo', id_text, point, 'geopos', id_text)
            for name, value in ({} if is_expired(row, self.now) else exp.uniques).items():
                key = prefix + name + ':uidx'
                want('uidx', key, value, None, 'hget', value)
                # duplicates: the first row to claim a value in the temporary hash owns it
                pipe.hsetnx(self.temp, name + '\0' + value, id_text)
                want('dup', self.temp, value, key, 'hget', name + '\0' + value)
        if not checks:
            return
        pipe.expire(self.temp, _TEMP_TTL)
        replies = pipe.execute(raise_on_error=False)
        pos = 0
        for check in checks:
            pos += 2 if check[0] == 'dup' else 1  # HSETNX + HGET for duplicates
            self._judge(check, replies[pos - 1], ns)
            self.report.entries += check[0] != 'dup'

    def _judge(self, check: Tuple[Any, ...], reply: Any, ns: str) -> None:
        kind, i, key, member, expected = check
        id_text = str(i)
        row = '%s:%s' % (ns, id_text)
        shown = member.replace('\0', '\\0')
        if isinstance(reply, Exception):
            self.report.add(MISSING, key, shown, id_text, 'row %s belongs in %s, which '
                            'cannot be read: %s' % (row, key, reply))
        elif kind == 'set':
            if not reply:
                self.report.add(MISSING, key, shown, id_text,
                                'row %s is missing from set %s' % (row, key))
        elif kind == 'zset':
            if reply is None:
                self.report.add(MISSING, key, shown, id_text, 'row %s is missing from %s '
                                '(member %r)' % (row, key, shown))
            elif not _close(float(reply), expected):
                self.report.add(WRONG_SCORE, key, shown, id_text, 'member %r of %s has score '
                                '%r but row %s calls for %r' % (shown, key, float(reply),
                                                                row, expected))
        elif kind == 'geo':
            pos = reply[0] if reply else None
            if pos is None:
                self.report.add(MISSING, key, shown, id_text,
                                'row %s is missing from geo index %s' % (row, key))
            else:
                lon, lat = float(pos[0]), float(pos[1])
                if abs(lon - expected[0]) > _GEO_TOLERANCE or \
                        abs(lat - expected[1]) > _GEO_TOLERANCE:
                    self.report.add(WRONG_SCORE, key, shown, id_text, 'geo member %s of %s is '
                                    'at (%r, %r) but row %s is at (%r, %r)' % (
                                        id_text, key, lon, lat, row, expected[0], expected[1]))
        elif kind == 'uidx':
            owner = None if reply is None else to_text(reply)
            if owner is None:
                self.report.add(UNIQUE_MISSING, key, shown, id_text, 'unique value %r of row '
                                '%s is not claimed in %s' % (shown, row, key))
        elif kind == 'dup':
            owner = None if reply is None else to_text(reply)
            key = expected  # the unique index the value belongs to
            if owner is not None and owner != id_text:
                first, second = sorted((owner, id_text), key=int)
                self.report.add(UNIQUE_DUPLICATE, key, shown, second, 'rows %s:%s and %s:%s '
                                'both hold unique value %r of %s' % (ns, first, ns, second,
                                                                     shown, key))

    def _check_bookkeeping(self, i: int, row: Dict[str, Any], legacy: Any,
                           exp: _Expected) -> None:
        raw = legacy if legacy is not None else row.get('-index-data-')
        key = '%s%d' % (self.prefix, i)
        wanted: Tuple[Set[Any], ...] = exp.bookkeeping()
        if raw is None:
            if any(wanted):
                self.report.add(BOOKKEEPING, key, '-index-data-', str(i), 'row %s has no '
                                '-index-data- although it has index entries' % (key,))
            return
        try:
            parsed = parse_index_data(raw)
        except Exception as exc:
            self.report.add(BOOKKEEPING, key, '-index-data-', str(i), 'row %s has unreadable '
                            'index bookkeeping: %s' % (key, exc))
            return
        keys, scored, prefix, suffix, geo = parsed
        have: Tuple[Set[Any], ...] = ({_text(k) for k in keys}, {_text(k) for k in scored},
                {(_text(a), _text(t)) for a, t in prefix},
                {(_text(a), _text(t)) for a, t in suffix}, {_text(g) for g in geo})
        if have != wanted:
            where = 'legacy %s::' % (self.ns,) if legacy is not None else '-index-data-'
            diffs = []
            for label, h, w in zip(('sets', 'scored', 'prefix', 'suffix', 'geo'), have, wanted):
                extra, missing = h - w, w - h
                if extra or missing:
                    diffs.append('%s: extra %s, missing %s' % (
                        label, sorted(map(str, extra)) or '[]', sorted(map(str, missing)) or '[]'))
            self.report.add(BOOKKEEPING, key, '-index-data-', str(i), 'the %s bookkeeping of row '
                            '%s is out of date (%s)' % (where, key, '; '.join(diffs)))

    # --- pass 2: index keys ---------------------------------------------------------------
    def _index_pages(self) -> Iterator[List[Tuple[str, str, str]]]:
        """Per SCAN page, ``(key, kind, middle)`` of the index keys of this namespace."""
        legacy = self.ns + '::'
        for keys in _scan_pages(self.conn, scan_pattern(self.ns), self.block_size):
            page = []
            for raw in keys:
                key = _t(raw)
                if any(key.startswith(f) for f in self.foreign):
                    continue
                if key == legacy:
                    page.append((key, 'legacy', ''))
                    continue
                for suffix in ('uidx', 'idx', 'pre', 'suf', 'geo'):
                    end = ':' + suffix
                    if key.endswith(end) and len(key) > len(self.prefix) + len(end):
                        page.append((key, suffix, key[len(self.prefix):-len(end)]))
                        break
            if page:
                yield page

    def _declared(self, kind: str, middle: str) -> bool:
        model = self.model
        if kind == 'uidx':
            return middle in self.unique_names
        if kind == 'geo':
            return middle in (model._geo or {})
        col = model._columns.get(middle.split(':', 1)[0] if kind == 'idx' else middle)
        if col is None:
            return False
        return bool(getattr(col, {'idx': '_index', 'pre': '_prefix', 'suf': '_suffix'}[kind]))

    def check_index_keys(self) -> None:
        self.done = self.total = 0
        self.buffer = []
        for page in self._index_pages():
            self.report.index_keys += len(page)
            keys = []
            for key, kind, middle in page:
                if kind != 'legacy' and not self._declared(kind, middle):
                    self.report.add(UNKNOWN_INDEX, key, None, None, '%s is not an index that '
                                    'model %s declares' % (key, self.ns))
                else:
                    keys.append((key, kind, middle))
            if keys:
                self._check_keys(keys)
        self._flush(force=True)

    def _check_keys(self, keys: List[Tuple[str, str, str]]) -> None:
        """Read the entries of one page of index keys: small keys in one pipeline each block."""
        conn = self.conn
        pipe = conn.pipeline(False)
        for key, _kind, _middle in keys:
            pipe.type(key)
        types = [_t(t) for t in pipe.execute()]
        card = {'set': 'scard', 'zset': 'zcard', 'hash': 'hlen'}
        typed = [(k, kind, m, ktype) for (k, kind, m), ktype in zip(keys, types) if ktype in card]
        for (key, _kind, _middle), ktype in zip(keys, types):
            if ktype not in card and ktype != 'none':
                self.report.add(UNKNOWN_INDEX, key, None, None, '%s is a %s, not an index of '
                                'model %s' % (key, ktype, self.ns))
        pipe = conn.pipeline(False)
        for key, _kind, _middle, ktype in typed:
            getattr(pipe, card[ktype])(key)
        sizes = [int(n) for n in pipe.execute()]
        small: List[Tuple[str, str, str, str]] = []
        small_size = 0
        for (key, kind, middle, ktype), size in zip(typed, sizes):
            self.total += size
            if size > self.block_size:
                for member, value in self._scan_key(key, ktype):
                    self._push(key, kind, middle, ktype, member, value)
                continue
            small.append((key, kind, middle, ktype))
            small_size += size
            if small_size >= self.block_size:
                self._fetch_small(small)
                small, small_size = [], 0
        if small:
            self._fetch_small(small)

    def _fetch_small(self, keys: List[Tuple[str, str, str, str]]) -> None:
        pipe = self.conn.pipeline(False)
        for key, _kind, _middle, ktype in keys:
            if ktype == 'set':
                pipe.smembers(key)
            elif ktype == 'zset':
                pipe.zrange(key, 0, -1)
            else:
                pipe.hgetall(key)
        for (key, kind, middle, ktype), reply in zip(keys, pipe.execute()):
            if ktype == 'hash':
                for name, value in reply.items():
                    self._push(key, kind, middle, ktype, _t(name), _t(value))
            else:
                for member in reply:
                    self._push(key, kind, middle, ktype, _t(member), '')

    def _scan_key(self, key: str, ktype: str) -> Iterator[Tuple[str, str]]:
        count = self.block_size
        if ktype == 'set':
            for member in self.conn.sscan_iter(key, count=count):
                yield _t(member), ''
        elif ktype == 'zset':
            for member, _score in self.conn.zscan_iter(key, count=count):
                yield _t(member), ''
        else:
            for name, value in self.conn.hscan_iter(key, count=count):
                yield _t(name), _t(value)

    def _push(self, key: str, kind: str, middle: str, ktype: str, member: str,
              value: str) -> None:
        extra = value if kind in ('uidx', 'legacy') else ktype
        self.buffer.append((key, kind, middle, extra, member))
        self._flush()

    def _flush(self, force: bool = False) -> None:
        if self.buffer and (force or len(self.buffer) >= self.block_size):
            self.done += len(self.buffer)
            self._resolve(self.buffer)
            self.buffer = []
            if self.progress:
                self.progress('index entries', self.done, max(self.total, self.done))
        elif force and self.progress:
            self.progress('index entries', self.done, max(self.total, self.done))

    def _row_expectations(self, ids: Set[int]) -> None:
        if len(self.cache) + len(ids) > 20 * self.block_size:
            self.cache.clear()  # bounded memory: forget earlier blocks
        wanted = [i for i in ids if i not in self.cache]
        if not wanted:
            return
        found = {i: (row, legacy) for i, row, legacy in self._load(wanted)}
        for i in wanted:
            if i in found:
                self.cache[i] = self._expect(i, found[i][0]) or _UNREADABLE
            else:
                self.cache[i] = None

    def _resolve(self, buffer: List[Tuple[str, str, str, str, str]]) -> None:
        parsed: List[Tuple[str, str, str, str, str, Optional[int], str]] = []
        ids: Set[int] = set()
        for key, kind, middle, extra, member in buffer:
            token = ''
            if kind in ('pre', 'suf'):
                token, _sep, id_part = member.rpartition('\0')
            elif kind == 'uidx':
                id_part = extra
            else:
                id_part = member
            i = int(id_part) if id_part.isascii() and id_part.isdigit() else None
            if i is not None:
                ids.add(i)
            parsed.append((key, kind, middle, extra, member, i, token))
        self._row_expectations(ids)
        for key, kind, middle, extra, member, i, token in parsed:
            self.report.entries += 1
            shown = member.replace('\0', '\\0')
            if i is None:
                self.report.add(DANGLING, key, shown, None, 'entry %r of %s does not name a '
                                'row id' % (shown, key))
                continue
            exp = self.cache[i]
            row = '%s%d' % (self.prefix, i)
            if exp is None:
                what = 'field' if kind in ('uidx', 'legacy') else 'entry'
                self.report.add(DANGLING, key, shown, str(i), '%s %r of %s points at row %s, '
                                'which does not exist' % (what, shown, key, row))
                continue
            if kind == 'legacy' or exp is _UNREADABLE:
                continue  # a legacy field of a live row is fine; bad rows are reported once
            stale = False
            if kind == 'idx':
                stale = middle not in (exp.keys if extra == 'set' else exp.scores)
            elif kind == 'pre':
                stale = (middle, token) not in exp.prefix
            elif kind == 'suf':
                stale = (middle, token) not in exp.suffix
            elif kind == 'geo':
                stale = middle not in exp.geo
            elif kind == 'uidx':
                if exp.uniques.get(middle) != member:
                    why = ('empty values are never claimed (as in rom 1.1.2)' if member == ''
                           else 'which does not hold that value')
                    self.report.add(UNIQUE_STALE, key, shown, str(i), 'field %r of %s maps to '
                                    'row %s, %s' % (shown, key, row, why))
                continue
            if stale:
                self.report.add(STALE, key, shown, str(i), 'entry %r of %s is left over: row %s '
                                'no longer calls for it' % (shown, key, row))


def audit_model(model: Any, block_size: int = 1000,
                progress: Optional[Callable[[str, int, int], None]] = None) -> AuditReport:
    """Check every index entry of ``model`` against its rows and return an :class:`AuditReport`.

    Args:
        model: the model class to audit.
        block_size: rows / index entries handled per round trip (at least 10).
        progress: optional ``progress(stage, done, total)`` callback, called after each block.
    """
    auditor = _Auditor(model, block_size, progress)
    with _untracked():
        auditor.check_rows()
        auditor.check_index_keys()
        audit_expiry(model, auditor.report, auditor.block_size)  # expiry (models with _ttl)
    return auditor.report


@contextmanager
def _untracked() -> Iterator[None]:
    """Run with this thread's session null, so loading references tracks nothing."""
    before = session.null_session
    session.null_session = True
    try:
        yield
    finally:
        del session.null_session
        if bool(session.null_session) != bool(before):
            session.null_session = before
