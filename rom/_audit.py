"""Index audit: compare a model's secondary indexes with what its rows say they should be.

``audit_model(model)`` reads Redis only (plus one temporary hash with a TTL used to spot
duplicated unique values) and returns an :class:`AuditReport`. It works in two passes,
each in blocks of ``block_size`` so memory stays bounded (plus one bit per row id and one
count per index key):

1. Rows: every row found by SCAN is read (pipelined ``HMGET`` of the model's fields,
   ``rom._maint_io``, on a plain client), the index entries a save of it would write are
   computed from its stored texts (a block at a time, column by column, then row by row
   for the rows a block leaves to them: ``rom._expect_block``, ``rom._expect_fast``; for
   models they cannot handle, and rows they leave to it, from the loaded entity through
   ``rom._expect``), its ``-index-data-`` bookkeeping is compared with them, and a block's entries are verified
   in Redis (set membership, sorted-set member and score, prefix/suffix member and score,
   geo member and position, unique field: ``rom._verify``'s native commands, or one
   script call). References to missing rows are reported. The number of entries expected
   in each index key is counted, and rows carrying an expiry time are noted for the
   expiry findings.
2. Index keys: every ``<ns>:…:idx``, ``:pre``, ``:suf``, ``:geo``, ``:uidx`` key and the
   legacy ``<ns>::`` hash is found by SCAN. A key holding exactly the expected number of
   members (all verified in pass 1) is done; a key with more is scanned in Redis for
   members naming missing rows, and walked entry by entry (each entry must point at an
   existing row whose current values produce it) only when those do not account for the
   difference.

A healthy database gives zero findings.
"""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

from ._connect import connect
from ._expiry_audit import FindingArgs, audit_expiry, carrier_findings, is_expired, server_ms
from ._ttl import EXPIRY_FIELD
from ._maintenance import _get_row_ids, _scan_pages, scan_pattern
from ._registry import MODELS
from ._scripts import lua
from ._reindex import dangling_references, entity_from_row, read_ahead, read_rows, untracked
from ._expect_fast import fast_expecter
from ._expect import (_UNREADABLE, _Expected, _t, expected_entries,
                      stored_bookkeeping_problem, verify_entries)
from ._maint_io import usable
from ._expect_block import bookkeeping_matches
from ._verify import Block
from ._audit_report import (BAD_ROW, BOOKKEEPING, DANGLING, DANGLING_REFERENCE, KINDS, MISSING, STALE,
                            UNIQUE_DUPLICATE, UNIQUE_MISSING, UNIQUE_STALE, UNKNOWN_INDEX,
                            WRONG_SCORE, AuditReport, Finding)

__all__ = ['AuditReport', 'Finding', 'audit_model', 'KINDS']

_EXPIRY_BYTES = EXPIRY_FIELD.encode()
_INDEX_ENDS = (b'uidx', b'idx', b'pre', b'suf', b'geo')
#: a row read in pass 1: (id, values of FastExpecter.fields or None, raw row or None, legacy)
_Row = Tuple[int, Optional[List[Any]], Optional[Dict[Any, Any]], Any]



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
        self.seen = bytearray()
        self.expected_sizes: Dict[str, int] = {}
        self.suspect: Set[str] = set()
        self.has_legacy = False
        self.unique_names = list(model._unique or ()) + [
            ':'.join(group) for group in (model._cunique or ())]
        # models with _ttl: the unique claims of expired rows may have been taken over
        self.now = server_ms(self.conn) if getattr(model, '_ttl', None) is not None else None
        self.fast = fast_expecter(model)
        self.raw_io = usable(self.conn)
        # the expiry findings of the rows carrying an expiry time, reported after pass 2
        self.carriers: List[FindingArgs] = []

    # --- loading -------------------------------------------------------------------------
    def _load(self, ids: List[int]) -> List[_Row]:
        """``(id, values, raw row, legacy bookkeeping)`` for the ids whose row exists: the
        values of ``self.fast.fields`` when read that way (then no raw row), else the raw
        ``HGETALL`` reply (then values are None)."""
        out: List[_Row] = []
        if self.fast is not None and self.raw_io and not self.has_legacy:
            again = []
            pos = self.fast.pkey_pos
            for i, values in self.fast.read(self.conn, ids):
                if values[pos] is None:
                    again.append(i)  # missing, or lacking its primary key: read it whole
                else:
                    out.append((i, values, None, None))
            ids = again
        return out + [(i, None, row, legacy) for i, row, legacy in self._load_rows(ids)]

    def _load_rows(self, ids: List[int]) -> List[Tuple[int, Dict[Any, Any], Any]]:
        """``(id, raw row, legacy bookkeeping)`` for the ids whose row exists."""
        if not ids:
            return []
        rows = read_rows(self.model, ids)
        legacy = self.ns + '::'
        if not rows or not self.has_legacy:
            return [(i, row, None) for i, row in rows]
        pipe = self.conn.pipeline(False)
        for i, _row in rows:
            pipe.hget(legacy, str(i))
        return [(i, row, old) for (i, row), old in zip(rows, pipe.execute())]

    def _entities(self, rows: List[Tuple[int, Dict[Any, Any], Any]]
                  ) -> List[Tuple[int, Dict[Any, Any], Any, Any]]:
        """``(id, raw row, legacy, entity or None)``; unloadable rows are reported."""
        out = []
        for i, row, legacy in rows:
            try:
                entity = entity_from_row(self.model, row)
            except Exception as exc:  # report rows rom cannot load instead of stopping
                self._bad_row(i, exc)
                entity = None
            out.append((i, row, legacy, entity))
        for entity, attr, stored in dangling_references(
                self.model, [e for _, _, _, e in out if e is not None]):
            i = entity._data[entity._pkey]
            target = self.model._columns[attr].get_related_model()
            self.report.add(DANGLING_REFERENCE, '%s%s' % (self.prefix, i), attr, str(i),
                            'row %s%s references %s:%s in %r, which does not exist (its on_delete '
                            'is %r)' % (self.prefix, i, target._namespace, stored, attr,
                                        self.model._columns[attr]._on_delete))
        return out

    def _expired(self, value: Any) -> bool:
        """Whether a row (of a model with ``_ttl``) stored with this expiry time is past it."""
        if self.now is None:
            return False
        return value is not None and is_expired({EXPIRY_FIELD: value}, self.now)

    def _bad_row(self, i: int, exc: BaseException) -> None:
        self.report.add(BAD_ROW, '%s%d' % (self.prefix, i), None, str(i),
                        'row %s%d cannot be loaded or indexed: %s: %s'
                        % (self.prefix, i, type(exc).__name__, exc))

    def _expect(self, i: int, entity: Any) -> Optional[_Expected]:
        try:
            return expected_entries(self.model, entity, str(i))
        except Exception as exc:
            self._bad_row(i, exc)
            return None

    # --- pass 1: rows ---------------------------------------------------------------------
    def check_rows(self) -> None:
        total = int(self.conn.get('%s%s:' % (self.prefix, self.model._pkey)) or 0)
        self.has_legacy = bool(self.conn.exists(self.ns + '::'))
        done = 0

        def blocks() -> Iterator[Tuple[List[int], List[int]]]:
            for ids in _get_row_ids(self.model, self.block_size):
                yield ids, [i for i in ids if not self._seen(i)]  # SCAN may repeat keys

        def load(block: Tuple[List[int], List[int]]) -> List[_Row]:
            return self._load(block[1]) if block[1] else []

        # the next block is read, and each block's entries verified, in Redis while the
        # next one is computed here
        checks = []
        try:
            with ThreadPoolExecutor(max_workers=2) as pool:
                for (ids, _fresh), rows in read_ahead(pool, blocks(), load):
                    payload = self._check_block(rows)
                    if payload:
                        checks.append(pool.submit(verify_entries, self.conn, self.ns,
                                                  payload[0], self.temp, payload[1]))
                    done += len(ids)
                    self.report.rows += len(rows)
                    if self.progress:
                        self.progress('rows', done, max(total, done))
                for check in checks:
                    for problem in check.result():
                        self._judge(*problem)
        finally:
            self.conn.delete(self.temp)

    def _seen(self, i: int) -> bool:
        byte, bit = divmod(i, 8)
        seen = self.seen
        if byte >= len(seen):
            seen.extend(bytes(byte + 1 - len(seen) + len(seen) // 2))
        if seen[byte] & (1 << bit):
            return True
        seen[byte] |= 1 << bit
        return False

    def _count(self, key: str) -> None:
        self.expected_sizes[key] = self.expected_sizes.get(key, 0) + 1

    def _check_block(self, rows: List[_Row]) -> Optional[Tuple[List[Tuple[str, _Expected]],
                                                              Optional[Block]]]:
        """Check the rows' bookkeeping; return the entries to verify in Redis (per row, and
        grouped by index key for the rows computed as one block)."""
        block = None
        fast = self.fast
        if fast is not None:
            plain = [(i, values) for i, values, row, _legacy in rows if row is None
                     and values is not None and values[fast.expiry_pos] is None
                     and not fast.lacks_default(values)]
            computed = fast.expect_block(plain) if plain else None
            if computed is not None:
                ids, block = computed
                index = fast.index_pos
                if not bookkeeping_matches(ids, [values[index] for _i, values in plain], block):
                    for i, values in plain:  # find the rows and what is wrong, row by row
                        exp = fast.expect(values)
                        if exp is not None:
                            self._check_bookkeeping(i, values[index], False, exp)
                prefix = self.prefix
                sizes = self.expected_sizes
                for key, n in block.sizes():
                    key = prefix + key
                    sizes[key] = sizes.get(key, 0) + n
                    self.report.entries += n
                done = {i for i, _values in plain}
                rows = [r for r in rows if r[0] not in done]
        payload = self._check_rows(rows)
        return (payload, block) if payload or block is not None else None

    def _check_rows(self, rows: List[_Row]) -> List[Tuple[str, _Expected]]:
        """Check the rows' bookkeeping; return the entries to verify in Redis."""
        prefix = self.prefix
        payload: List[Tuple[str, _Expected]] = []
        count = self._count
        fast = self.fast
        found: List[Tuple[int, _Expected, Any, bool, Any]] = []  # id, exp, bookkeeping, ...
        slow: List[Tuple[int, Dict[Any, Any], Any]] = []
        carriers = []
        redo = []
        for i, values, row, legacy in rows:
            if row is not None:
                values = fast.values(row) if fast is not None else None
                expiry = row.get(_EXPIRY_BYTES, row.get(EXPIRY_FIELD))
                exp = fast.expect(values) if fast is not None and values is not None else None
                if exp is None or fast is None or values is None:
                    slow.append((i, row, legacy))
                elif legacy is not None:
                    found.append((i, exp, legacy, True, expiry))
                else:
                    found.append((i, exp, values[fast.index_pos], False, expiry))
            else:
                assert fast is not None and values is not None
                expiry = values[fast.expiry_pos]
                exp = fast.expect(values)
                if exp is None:
                    redo.append(i)  # read whole below (the entity path needs the row)
                    continue
                found.append((i, exp, values[fast.index_pos], False, expiry))
            if expiry is not None:
                carriers.append((i, expiry))
        for i, row, legacy in self._load_rows(redo):
            expiry = row.get(_EXPIRY_BYTES, row.get(EXPIRY_FIELD))
            if expiry is not None:
                carriers.append((i, expiry))
            slow.append((i, row, legacy))
        for i, row, legacy, entity in self._entities(slow):
            if entity is None:
                continue
            exp = self._expect(i, entity)
            if exp is None:
                continue
            raw = legacy if legacy is not None else row.get(b'-index-data-',
                                                             row.get('-index-data-'))
            found.append((i, exp, raw, legacy is not None,
                          row.get(_EXPIRY_BYTES, row.get(EXPIRY_FIELD))))
        if carriers:
            self.carriers += carrier_findings(self.conn, self.model, carriers)
        for i, exp, raw, is_legacy, expiry in found:
            id_text = str(i)
            self._check_bookkeeping(i, raw, is_legacy, exp)
            if self._expired(expiry):
                exp.uniques = {}  # an expired row's claims may have been taken over
            for name in exp.keys:
                count(prefix + name + ':idx')
            for name in exp.scores:
                count(prefix + name + ':idx')
            for attr, _token in exp.prefix:
                count(prefix + attr + ':pre')
            for attr, _token in exp.suffix:
                count(prefix + attr + ':suf')
            for name in exp.geo:
                count(prefix + name + ':geo')
            for name in exp.uniques:
                count(prefix + name + ':uidx')
            payload.append((id_text, exp))
            self.report.entries += (len(exp.keys) + len(exp.scores) + len(exp.prefix)
                                    + len(exp.suffix) + len(exp.geo) + len(exp.uniques))
        return payload

    def _judge(self, code: str, id_text: str, key: str, member: str, detail: str) -> None:
        row = self.prefix + id_text
        shown = member.replace('\0', '\\0')
        self.suspect.add(key)
        if code == 'set':
            self.report.add(MISSING, key, shown, id_text,
                            'row %s is missing from set %s' % (row, key))
        elif code in ('zmiss', 'geomiss'):
            what = 'geo index ' if code == 'geomiss' else ''
            self.report.add(MISSING, key, shown, id_text, 'row %s is missing from %s%s '
                            '(member %r)' % (row, what, key, shown))
        elif code == 'zscore':
            stored, wanted = detail.split(' ')
            self.report.add(WRONG_SCORE, key, shown, id_text, 'member %r of %s has score %r '
                            'but row %s calls for %r' % (shown, key, float(stored), row,
                                                         float(wanted)))
        elif code == 'geopos':
            lon, lat, want_lon, want_lat = (float(x) for x in detail.split(' '))
            self.report.add(WRONG_SCORE, key, shown, id_text, 'geo member %s of %s is at (%r, %r) '
                            'but row %s is at (%r, %r)' % (id_text, key, lon, lat, row,
                                                           want_lon, want_lat))
        elif code == 'umiss':
            self.report.add(UNIQUE_MISSING, key, shown, id_text, 'unique value %r of row '
                            '%s is not claimed in %s' % (shown, row, key))
        elif code == 'uother':
            pass  # a value claimed by another row: pass 2 reports the stale claim
        elif code == 'udup':
            # reported on the row seen later (each extra holder once, whatever the scan
            # order); the message names the pair in id order
            first, second = sorted((detail, id_text), key=int)
            self.report.add(UNIQUE_DUPLICATE, key, shown, id_text, 'rows %s%s and %s%s '
                            'both hold unique value %r of %s' % (self.prefix, first, self.prefix,
                                                                 second, shown, key))

    def _check_bookkeeping(self, i: int, raw: Any, is_legacy: bool, exp: _Expected) -> None:
        problem = stored_bookkeeping_problem(raw, exp)
        if problem is not None:
            key = '%s%d' % (self.prefix, i)
            where = 'legacy %s::' % (self.ns,) if is_legacy else '-index-data-'
            self.report.add(BOOKKEEPING, key, '-index-data-', str(i), 'the %s bookkeeping of '
                            'row %s %s' % (where, key, problem))

    # --- pass 2: index keys ---------------------------------------------------------------
    def _index_pages(self) -> Iterator[List[Tuple[str, str, str]]]:
        """Per SCAN page, ``(key, kind, middle)`` of the index keys of this namespace."""
        legacy = self.ns + '::'
        wanted = (legacy.encode('utf-8'),) + tuple(b':' + s for s in _INDEX_ENDS)
        for keys in _scan_pages(self.conn, scan_pattern(self.ns), self.block_size):
            page = []
            for raw in keys:
                if type(raw) is bytes and not raw.endswith(wanted):
                    continue  # a row key (most keys), or none of ours
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
                if kind == 'uidx' and middle == getattr(self.model, '_rom_fence_index', None):
                    continue  # sharding hook: fenced claim tokens (rom._shard_unique)
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
            if kind != 'legacy' and key not in self.suspect:
                expected = self.expected_sizes.get(key, 0)
                if size == expected:
                    # every entry the rows call for is there (pass 1) and there are no others
                    continue
                if size > expected and self._only_dangling(key, kind, middle, ktype,
                                                           size - expected):
                    continue  # the extra members all name missing rows (reported)
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

    def _only_dangling(self, key: str, kind: str, middle: str, ktype: str, extra: int) -> bool:
        """Scan ``key`` in Redis for members naming missing rows and report them; True when
        they account for all ``extra`` members (then the key needs no entry-by-entry walk)."""
        how = 'value' if ktype == 'hash' else ('token' if kind in ('pre', 'suf') else 'id')
        found: List[Tuple[str, str]] = []
        cursor: Any = 0
        while True:
            reply = lua('scan_dangling')(self.conn, [key], [cursor, self.block_size, self.prefix,
                                                             how])
            cursor = reply[0]
            items = [_t(item) for item in reply[2:]]
            found += list(zip(items[::2], items[1::2]))
            if len(found) > extra:
                return False  # more than accounted for: SCAN repeated some; walk the key
            if int(cursor) == 0:
                break
        if len(set(found)) != extra:
            return False
        for member, id_text in set(found):
            token = member.rpartition('\0')[0] if how == 'token' else ''
            self._report_dangling(key, kind, ktype, middle, member, id_text, token)
        return True

    def _report_dangling(self, key: str, kind: str, ktype: str, middle: str, member: str,
                        id_text: str, token: str) -> None:
        shown = member.replace('\0', '\\0')
        self.report.entries += 1
        if not (id_text.isascii() and id_text.isdigit()):
            self.report.add(DANGLING, key, shown, None, 'entry %r of %s does not name a '
                            'row id' % (shown, key))
            return
        row = self.prefix + id_text
        what = 'field' if kind == 'uidx' else 'entry'
        op = 'gone-uidx' if kind == 'uidx' else ('gone-set' if ktype == 'set' else 'gone-zset')
        self.report.add(DANGLING, key, shown, id_text, '%s %r of %s points at row %s, which '
                        'does not exist' % (what, shown, key, row), (op, member, middle, token))

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
        found = {i: entity for i, _row, _legacy, entity in
                 self._entities(self._load_rows(wanted))}
        for i in wanted:
            if i not in found:
                self.cache[i] = None
                continue
            entity = found[i]
            exp = self._expect(i, entity) if entity is not None else None
            self.cache[i] = exp or _UNREADABLE

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
                op = {'uidx': 'gone-uidx', 'legacy': 'legacy'}.get(
                    kind, 'gone-set' if extra == 'set' else 'gone-zset')
                self.report.add(DANGLING, key, shown, str(i), '%s %r of %s points at row %s, '
                                'which does not exist' % (what, shown, key, row),
                                (op, member, middle, token))
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
                                    'row %s, %s' % (shown, key, row, why),
                                    ('stale-uidx', member, middle, ''))
                continue
            if stale:
                op = 'stale-' + kind if kind != 'idx' else 'stale-idx-' + extra
                self.report.add(STALE, key, shown, str(i), 'entry %r of %s is left over: row %s '
                                'no longer calls for it' % (shown, key, row),
                                (op, member, middle, token))


def audit_model(model: Any, block_size: int = 1000,
                progress: Optional[Callable[[str, int, int], None]] = None) -> AuditReport:
    """Check every index entry of ``model`` against its rows and return an :class:`AuditReport`.

    Args:
        model: the model class to audit.
        block_size: rows / index entries handled per round trip (at least 10).
        progress: optional ``progress(stage, done, total)`` callback, called after each block.
    """
    auditor = _Auditor(model, block_size, progress)
    with untracked():
        auditor.check_rows()
        auditor.check_index_keys()
        # expiry (models with _ttl; any row carrying an expiry time was seen in pass 1)
        audit_expiry(model, auditor.report, auditor.block_size, auditor.carriers)
    return auditor.report
