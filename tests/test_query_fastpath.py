"""Queries answered straight from one scored index must equal the general (working set) path,
and must not build a working set."""
from __future__ import annotations

import random
import re

import pytest

import rom
import rom.util

UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')


def _declare():
    class F(rom.Model):
        n = rom.Integer(index=True)
        m = rom.Float(index=True)
        tag = rom.Text(index=True, keygen=rom.IDENTITY)
    return F


def _rows():
    rng = random.Random(7)
    return [dict(n=rng.choice([1, 2, 2, 3, 5, 8, 8, 8, 13, -4]), m=rng.random() * 10,
                 tag=rng.choice(['a', 'b'])) for _ in range(130)]


def make_model(conn):
    F = _declare()
    for row in _rows():
        F(**row).save()
    rom.util.session.commit()
    rom.util.session.rollback()
    return F


async def make_model_async(api, conn):
    F = _declare()
    for row in _rows():
        await api.save(F(**row))
    await api.commit()
    rom.util.session.rollback()
    return F


def general(conn, query, offset, count):
    key = query.cached_result(30)
    end = offset + count - 1 if count > 0 else -1
    out = conn.zrange(key, offset, end)
    conn.delete(key)
    return out


async def general_async(api, conn, query, offset, count):
    key = await api.cached_result(query, 30)
    end = offset + count - 1 if count > 0 else -1
    out = conn.zrange(key, offset, end)
    conn.delete(key)
    return out


def test_direct_equals_general(conn, roundtrips):
    F = make_model(conn)
    rng = random.Random(11)
    cases = 0
    F.query.order_by('n').limit(0, 1)._search()     # script cached (another test may flush)
    for _ in range(120):
        lo = rng.choice([None, -5, 1, 2, 3, 8, 9])
        hi = rng.choice([None, 2, 3, 8, 13, 20, -10])
        order = rng.choice([None, 'n', '-n'])
        offset = rng.choice([0, 0, 1, 5, 40, 129, 200])
        count = rng.choice([1, 3, 20, 100, 0, -1])
        q = F.query.filter(n=(lo, hi))
        if order:
            q = q.order_by(order)
        q = q.limit(offset, count)
        expected = general(conn, q, offset, count)
        with roundtrips(conn) as rt:
            got = q._search()
        assert got == expected, (lo, hi, order, offset, count)
        assert rt.count == 1 and 'ZUNIONSTORE' not in rt.commands
        assert 'EVAL' in rt.commands or 'EVALSHA' in rt.commands
        cases += 1
    for order in ('n', '-n', 'm', '-m'):
        for offset, count in ((0, 10), (7, 25), (125, 10), (0, 0)):
            q = F.query.order_by(order).limit(offset, count)
            assert q._search() == general(conn, q, offset, count)
    assert not [k for k in conn.keys('*') if UUID.search(k.decode())]
    assert cases == 120


def test_direct_iteration_and_first(conn, roundtrips):
    F = make_model(conn)
    for order in ('n', '-n'):
        q = F.query.order_by(order)
        full = [e.id for e in q.iter_result(pagesize=7)]                  # general path
        for offset, count in ((0, 20), (3, 5), (125, 20), (200, 5)):
            rom.util.session.rollback()
            with roundtrips(conn) as rt:
                got = [e.id for e in q.limit(offset, count)]
            assert got == full[offset:offset + count]
            if got:
                assert rt.count == 2                                      # page + entities
            assert q.limit(offset, count).select('n').all() == \
                [{'n': F.get(i).n} for i in got]
        assert q.first().id == full[0]
        assert q.limit(4, 9).first().id == full[4]
    rom.util.session.rollback()
    before = set(conn.keys('*'))
    q = F.query.filter(n=(2, 8)).limit(0, 20)
    with roundtrips(conn) as rt:
        assert len(q.all()) == 20
    assert rt.count == 2 and 'ZUNIONSTORE' not in rt.commands
    assert set(conn.keys('*')) == before                                  # no working set


async def test_direct_skips_stale_rows_like_general(api, conn):
    F = await make_model_async(api, conn)
    q = F.query.order_by('-n')
    full = [int(i) for i in q._search()]
    for ident in full[2:6]:
        conn.delete('%s:%d' % (F._namespace, ident))
    expected = [i for i in full if i not in full[2:6]]
    assert [e.id for e in await api.list(q.limit(0, 10))] == expected[:10]
    assert [e.id for e in await api.iter_result(q.limit(0, 10), pagesize=3)] == expected[:10]
    assert [e.id for e in await api.list(q.limit(1, 4))] == expected[1:5]
    assert (await api.first(q)).id == full[0]


def test_direct_counts(conn, roundtrips):
    F = make_model(conn)
    total = len(F.query.filter(n=(2, 8)).all())
    with roundtrips(conn) as rt:
        assert F.query.filter(n=(2, 8)).count() == total
    assert rt.count == 1 and 'ZCOUNT' in rt.commands
    assert F.query.filter(n=(2, 8)).order_by('-n').count() == total
    assert F.query.order_by('m').count() == 130
    assert F.query.filter(tag='a').count() == len(F.query.filter(tag='a').all())
    assert F.query.filter(n=(2, 8)).order_by('m').count() == total
    with pytest.warns(UserWarning, match='sortable keygen'):  # tokens: no sorted set
        by_tag = F.query.order_by('tag')
    assert by_tag.count() == 0


def test_direct_first_with_select(conn, roundtrips):
    F = make_model(conn)
    q = F.query.order_by('-m')
    top = int(q._search()[0])
    expected = {'m': F.get(top).m}
    rom.util.session.rollback()
    with roundtrips(conn) as rt:
        assert q.select('m').first() == expected
    assert rt.count == 2 and 'ZUNIONSTORE' not in rt.commands           # page, then row
    conn.delete('%s:%d' % (F._namespace, top))
    assert q.select('m').first() is None          # like the entity path: first row missing
    assert q.first() is None
    assert rom.util.session.known == {}


def test_lone_prefix_filter_window_equals_general(conn, roundtrips):
    from rom.index import Pattern, Prefix, Suffix

    class Wd(rom.Model):
        words = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True, suffix=True)
    rng = random.Random(3)
    vocab = ['apple', 'apply', 'ape', 'banana', 'band', 'bandana', 'can', 'cane', 'x:y',
             'ü-ber', 'über', 'a', 'ab']
    for _ in range(150):
        Wd(words=' '.join(rng.choice(vocab) for _ in range(rng.randint(1, 4)))).save()
    rom.util.session.commit()
    rom.util.session.rollback()
    g = Wd._gindex
    for flt in (Prefix('words', 'ap'), Prefix('words', ''), Prefix('words', 'band'),
                Prefix('words', 'zz'), Suffix('words', 'na'), Suffix('words', 'e'),
                Pattern('words', 'a*e'), Pattern('words', '*n!'), Pattern('words', 'ü-*')):
        key = g.search(conn, [flt], None, timeout=30)
        full = conn.zrange(key, 0, -1)
        conn.delete(key)
        assert g.count(conn, [flt]) == len(full)
        for offset, count in ((0, 1), (0, 20), (5, 7), (100, 50), (140, 30), (0, 1000)):
            with roundtrips(conn) as rt:
                got = g.search(conn, [flt], None, offset, count)
            assert got == full[offset:offset + count], (flt, offset, count)
            assert rt.count == 1 and 'ZADD' not in rt.commands
        assert g.search(conn, [flt], None, 3, 0) == full[3:]          # to the end: general
    q = Wd.query.startswith(words='AP')
    expected = [int(i) for i in q._search()]
    rom.util.session.rollback()
    before = set(conn.keys('*'))
    with roundtrips(conn) as rt:
        got = [e.id for e in q.limit(0, 20)]
    assert got == expected[:20] and rt.count == 2
    assert set(conn.keys('*')) == before                              # no working set
    assert q.limit(2, 5).select('id').all() == [{'id': i} for i in expected[2:7]]
    assert q.count() == len(expected)
    conn.delete(f'{Wd._namespace}:%d' % expected[0])
    assert [e.id for e in q.limit(0, 3)] == expected[1:4]               # stale id skipped
    assert q.first() is None


def test_descending_index_page_places_ties_like_the_general_path(conn):
    """index_page.lua reads a descending page with one ZRANGE and places exactly only the
    score groups cut by the page's edges: every window over many ties must be right."""
    from rom._scripts import lua
    rng = random.Random(7)
    members = {str(i): float(rng.choice([1, 2, 2.5, 3, 7, 9])) for i in range(1, 120)}
    conn.zadd('T:n:idx', members)
    order = sorted(members, key=lambda m: (-members[m], m.encode()))
    page = lua('index_page')
    for lo, hi in [('-inf', 'inf'), ('2', '7'), ('2.5', '2.5'), ('1.5', '9')]:
        expected_all = [m for m in order if float(lo) <= members[m] <= float(hi)]
        for offset in list(range(0, 30)) + [len(expected_all) - 1, len(expected_all) + 3]:
            for count in (1, 2, 5, 17, 0):
                got = page(conn, ['T:n:idx'], [lo, hi, '1', offset, count])
                want = expected_all[offset:offset + count] if count > 0 else expected_all[offset:]
                assert [g.decode() for g in got] == want, (lo, hi, offset, count)
