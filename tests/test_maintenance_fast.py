"""The fast paths of check and reindex (rom._expect_fast, rom._verify, rom._maint_io) give
exactly what the entity path and the verification script give."""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest

import rom
from rom import _audit, _expect, _maintenance, _reindex, testing
from rom._audit import audit_model
from rom._expect import expected_entries
from rom._expect_fast import fast_expecter
from rom._reindex import entity_from_row, read_rows


def _model():
    class Item(rom.Model):
        words = rom.Text(index=True, keygen=rom.FULL_TEXT)
        handle = rom.Text(prefix=True, suffix=True, keygen=rom.SIMPLE_CI)
        exact = rom.Text(prefix=True, keygen=rom.SIMPLE)
        tag = rom.Text(index=True, keygen=rom.IDENTITY_CI, prefix=True)
        n = rom.Integer(index=True)
        x = rom.Float(index=True)
        when = rom.DateTime(index=True)
        day = rom.Date(index=True)
        price = rom.Decimal(index=True)
        flag = rom.Boolean(index=True)
        email = rom.Text(unique=True)
        code = rom.Text(unique=True, keygen=rom.IDENTITY_CI)
        num = rom.Integer(unique=True)
        a = rom.Integer()
        b = rom.Text()
        blob = rom.String(index=True, keygen=rom.IDENTITY_STRING)
        doc = rom.Json()
        kind = rom.Text(default='plain', index=True, keygen=rom.IDENTITY)
        unique_together = [('a', 'b')]
    return Item


def _populate(Item, n, seed=1):
    rng = random.Random(seed)
    words = ['red', 'Blue', 'caf\xe9', 'na\xefve', '\u65e5\u672c', 'x-ray', '', '  ']
    for i in range(n):
        Item(words=' '.join(rng.sample(words, 3)) if i % 7 else None,
             handle=rng.choice(['Ann_', '\xc9mile', 'zed', '']) + str(rng.randrange(50)),
             exact=rng.choice(['Abc', 'abcdefghij', '\xe9t\xe9', None]),
             tag=rng.choice(['T1', 't2', 'T\xe9', None]),
             n=rng.choice([rng.randrange(-10, 10), 2 ** 70, None]),
             x=rng.choice([rng.random() * 1000, -0.0, 1e300, None]),
             when=datetime(2020, 1, 1) + timedelta(seconds=rng.randrange(10 ** 8),
                                                   microseconds=rng.randrange(10 ** 6)),
             day=date(1999, 1, 1) + timedelta(days=rng.randrange(9000)),
             price=Decimal('%d.%02d' % (rng.randrange(1000), rng.randrange(100))),
             flag=rng.choice([True, False, None]),
             email='e%d@example.com' % i if i % 5 else None,
             code='Code%d' % i, num=i if i % 3 else None, a=i % 11, b='b%d' % i,
             blob=rng.choice([b'\xe9\x00z', b'plain', None]),
             doc={'k': i}).save()


def test_fast_expectations_equal_the_entity_path(conn):
    Item = _model()
    _populate(Item, 1500)  # more rows than the memoisation trial
    fast = fast_expecter(Item)
    assert fast is not None
    ids = list(range(1, 1501))
    rows = dict(read_rows(Item, ids))
    for i, values in fast.read(conn, ids):
        exp = fast.expect(values)
        assert exp is not None
        want = expected_entries(Item, entity_from_row(Item, rows[i]), str(i))
        for slot in want.__slots__:
            assert getattr(exp, slot) == getattr(want, slot), (i, slot)
        assert fast.values(rows[i]) == values


def test_rows_the_fast_path_leaves_to_the_entity_path(conn):
    Item = _model()
    _populate(Item, 5)
    fast = fast_expecter(Item)
    conn.hset('Item:1', 'x', 'not a number')
    conn.hdel('Item:2', 'id')
    conn.hdel('Item:3', 'kind')  # its column declares a default
    conn.hset('Item:4', 'doc', '{not json')
    read = dict(fast.read(conn, [1, 2, 3, 4, 5]))
    assert [fast.expect(read[i]) is None for i in (1, 2, 3, 4, 5)] == [
        True, True, True, True, False]
    assert fast.lacks_default(read[3]) and not fast.lacks_default(read[5])


def test_models_the_fast_path_does_not_handle():
    class Geo(rom.Model):
        lon = rom.Float()
        lat = rom.Float()
        geo_index = [rom.GeoIndex('loc', lambda d: {'lon': d['lon'], 'lat': d['lat']})]

    class Parent(rom.Model):
        name = rom.Text()

    class Child(rom.Model):
        parent = rom.ManyToOne('Parent', on_delete='cascade')

    class Whole(rom.Model):
        a = rom.Text(index=True, keygen2=lambda attr, data: [data.get('a') or ''])

    assert fast_expecter(Geo) is None and fast_expecter(Child) is None
    assert fast_expecter(Whole) is None and fast_expecter(Parent) is not None


def _corrupt(conn, Item):
    for i, values in ((7, {'flag': True}), (8, {'x': 1.5}), (9, {'n': 3})):
        Item.get(i).update(**values).save()
    conn.srem('Item:flag:True:idx', '7')                       # missing set entry
    conn.zadd('Item:x:idx', {'8': 12345.5})                     # wrong score
    conn.zrem('Item:n:idx', '9')                                # missing scored entry
    conn.hdel('Item:code:uidx', 'code10')                       # unclaimed unique value
    conn.hset('Item:code:uidx', 'code11', '12')                 # claimed by another row
    conn.hset('Item:13', 'email', conn.hget('Item:14', 'email'))  # two rows, one value
    conn.hset('Item:15', '-index-data-', '[[],[],[],[],[]]')    # bookkeeping out of date
    conn.hset('Item:16', 'x', 'nope')                          # bad row
    conn.sadd('Item:tag:zzz:idx', '17')                         # stale entry
    conn.zadd('Item:handle:pre', {'ghost\x00999': 1.0})          # dangling entry
    conn.hset('Item:18', '-expire-at-', '5')                    # expiry data without _ttl
    conn.hdel('Item:19', 'kind')                                # lacks a defaulted field
    conn.hdel('Item:20', 'id')                                  # lacks its primary key
    rom.util.session.rollback()  # (a reindex commits what the session tracks)


def _findings(report):
    return sorted((f.kind, f.key, f.member, f.id, f.message) for f in report.findings)


@pytest.mark.parametrize('block_size', [10, 1000])
def test_check_finds_the_same_with_every_path(conn, monkeypatch, block_size):
    Item = _model()
    _populate(Item, 60)
    _corrupt(conn, Item)
    fast = audit_model(Item, block_size=block_size)
    assert {f.kind for f in fast.findings} >= {
        'missing-entry', 'wrong-score', 'unique-missing', 'unique-stale', 'unique-duplicate',
        'bookkeeping', 'bad-row', 'stale-entry', 'dangling-entry'}
    monkeypatch.setattr(_audit, 'fast_expecter', lambda model: None)
    entity_path = audit_model(Item, block_size=block_size)
    monkeypatch.setattr(_expect, 'usable', lambda conn: False)
    script = audit_model(Item, block_size=block_size)
    assert _findings(fast) == _findings(entity_path) == _findings(script)
    assert (fast.rows, fast.entries) == (script.rows, script.entries)


def test_check_on_a_decoding_client(conn, decoding_conn):
    Item = _model()
    _populate(Item, 30)
    _corrupt(conn, Item)
    want = _findings(audit_model(Item))
    rom.util.CONNECTION = decoding_conn
    assert _findings(audit_model(Item)) == want


def _snapshot(conn):
    return {key: conn.dump(key) for key in conn.scan_iter('*')}


def _restore(conn, snapshot):
    conn.flushdb()
    for key, value in snapshot.items():
        conn.restore(key, 0, value)


def test_reindex_repairs_the_same_with_every_path(conn, monkeypatch):
    Item = _model()
    _populate(Item, 60)
    _corrupt(conn, Item)
    before = _snapshot(conn)
    summary = _reindex.ReindexSummary()
    list(_maintenance.refresh_indices(Item, block_size=25, summary=summary))
    fast = testing.dump_database(conn)
    _restore(conn, before)
    monkeypatch.setattr(_reindex, 'fast_expecter', lambda model: None)
    slow_summary = _reindex.ReindexSummary()
    list(_maintenance.refresh_indices(Item, block_size=25, summary=slow_summary))
    assert testing.dump_database(conn) == fast
    assert summary.rows == slow_summary.rows and summary.defaults == slow_summary.defaults
    assert sorted(summary.skipped) == sorted(slow_summary.skipped)
    assert summary.skipped  # the unloadable row (and the one lacking its primary key)
    counts = audit_model(Item).counts
    assert 'missing-entry' not in counts and 'wrong-score' not in counts


def test_native_verification_falls_back_on_old_servers(conn, monkeypatch):
    Item = _model()
    _populate(Item, 20)
    _corrupt(conn, Item)
    want = _findings(audit_model(Item))
    from rom import _verify
    monkeypatch.setitem(_verify._OLD_SERVERS, conn, True)
    assert _verify.verify_native(conn, 'Item', [], '', 1) is None
    assert _findings(audit_model(Item)) == want


def _grouped(block):
    """A Block's entries as comparable sets (row order aside)."""
    out = set()
    for name, ids in block.sets.items():
        out.update(('set', name, i, '') for i in ids)
    for name, (ids, scores) in block.scores.items():
        out.update(('zset', name, i, s) for i, s in zip(ids, scores))
    for kind, groups in (('pre', block.prefix), ('suf', block.suffix)):
        for attr, (members, scores, ids) in groups.items():
            assert [m.rpartition('\0')[2] for m in members] == ids
            out.update((kind, attr, m, s) for m, s in zip(members, scores))
    for name, claims in block.uniques.items():
        out.update(('uidx', name, i, v) for v, i in claims)
    return out


@pytest.mark.parametrize('size', [7, 100, 1000])
def test_block_expectations_equal_the_row_path(conn, size):
    from rom._expect_block import bookkeeping_matches
    from rom._verify import Block
    Item = _model()
    _populate(Item, 1200)
    fast, rows_fast = fast_expecter(Item), fast_expecter(Item)
    ids = list(range(1, 1201))
    blocks = 0
    for first in range(0, len(ids), size):
        values = fast.read(conn, ids[first:first + size])
        computed = fast.expect_block(values)
        assert computed is not None
        blocks += 1
        texts, block = computed
        assert texts == [str(i) for i, _v in values]
        want = Block()
        for i, row in values:
            want.add(str(i), rows_fast.expect(row))
        assert _grouped(block) == _grouped(want)
        # row order is kept within every index key (the bookkeeping comparison needs it)
        for name, group in block.sets.items():
            assert group == sorted(group, key=int)
        raws = [row[fast.index_pos] for _i, row in values]
        assert bookkeeping_matches(texts, raws, block)
        wrong = list(raws)
        wrong[-1] = b'[[],[],[],[],[]]'
        assert not bookkeeping_matches(texts, wrong, block)
        assert not bookkeeping_matches(texts, raws[:-1] + [raws[-1] + b' '], block)
    assert blocks == -(-1200 // size) and fast.rows >= 1200


def test_blocks_the_row_path_decides(conn):
    Item = _model()
    _populate(Item, 5)
    fast = fast_expecter(Item)
    healthy = fast.read(conn, [5])
    assert fast.expect_block(healthy) is not None
    for i, field, value in ((1, 'x', 'not a number'), (2, 'doc', '{not json'),
                            (3, 'handle', b'\xff')):
        conn.hset('Item:%d' % i, field, value)
        assert fast.expect_block(fast.read(conn, [i, 5])) is None


def test_prefix_scores_equal_the_plain_computation():
    from rom._helpers import _bigint_to_float, _prefix_score

    def plain(b, nxt=False):
        n = min(len(b), 7)
        p = 0
        for c in b[:n]:
            p = p * 258 + c + 1
        if nxt:
            p += 1
        return repr(_bigint_to_float(p * 258 ** (7 - n)))

    rng = random.Random(3)
    for _ in range(20000):
        b = bytes(rng.choice([0, 1, 255, 254, 97, rng.randrange(256)])
                  for _ in range(rng.randrange(10)))
        assert _prefix_score(b) == plain(b) and _prefix_score(b, True) == plain(b, True)
    assert _prefix_score('\xe9t\xe9') == plain('\xe9t\xe9'.encode())


@pytest.mark.parametrize('block_size', [10, 1000])
def test_check_and_reindex_the_same_without_blocks(conn, monkeypatch, block_size):
    from rom._expect_fast import FastExpecter
    Item = _model()
    _populate(Item, 700)  # past the memoisation trial
    _corrupt(conn, Item)
    before = _snapshot(conn)
    blocks = audit_model(Item, block_size=block_size)
    summary = _reindex.ReindexSummary()
    list(_maintenance.refresh_indices(Item, block_size=block_size, summary=summary))
    fixed = testing.dump_database(conn)
    _restore(conn, before)
    monkeypatch.setattr(FastExpecter, 'expect_block', lambda self, rows: None)
    rows = audit_model(Item, block_size=block_size)
    assert _findings(blocks) == _findings(rows)
    assert (blocks.rows, blocks.entries) == (rows.rows, rows.entries)
    row_summary = _reindex.ReindexSummary()
    list(_maintenance.refresh_indices(Item, block_size=block_size, summary=row_summary))
    assert testing.dump_database(conn) == fixed
    assert summary.rows == row_summary.rows
    assert sorted(summary.skipped) == sorted(row_summary.skipped)


@pytest.mark.parametrize('block_size', [10, 1000])
def test_duplicate_unique_values_across_blocks(conn, monkeypatch, block_size):
    Item = _model()
    _populate(Item, 80)
    value = conn.hget('Item:3', 'email')
    for i in (9, 41, 42, 77):  # in the first row's block and in later ones
        conn.hset('Item:%d' % i, 'email', value)
    rom.util.session.rollback()
    native = audit_model(Item, block_size=block_size)
    dups = [f for f in native.findings if f.kind == 'unique-duplicate']
    # every holder but the lowest id, once, whatever order SCAN gives the rows in
    assert sorted(f.id for f in dups) == ['41', '42', '77', '9']
    monkeypatch.setattr(_expect, 'usable', lambda conn: False)
    script = audit_model(Item, block_size=block_size)
    assert _findings(native) == _findings(script)
    assert not conn.keys('Item:*:audit')  # the temporary hash is gone
