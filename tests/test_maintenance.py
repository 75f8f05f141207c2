"""Maintenance helpers (spec: session-util-and-storage §6; reference bugs util #2-#7 fixed)."""
from __future__ import annotations

import io
import json
import re
import time
import warnings

import pytest

import rom
from rom import util


def _raw_rows(conn, ns, rows, counter=None, pk='id'):
    """HSET rows without -index-data- through a pipeline (as an old writer or a migration)."""
    pipe = conn.pipeline(False)
    for i, fields in rows:
        mapping = dict(fields)
        mapping[pk] = str(i)
        pipe.hset('%s:%d' % (ns, i), mapping=mapping)
    pipe.set('%s:%s:' % (ns, pk), counter if counter is not None else max(i for i, _ in rows))
    pipe.execute()


def _unrelated_keys(conn, n, prefix='zz-other'):
    pipe = conn.pipeline(False)
    for i in range(n):
        pipe.set('%s:%d' % (prefix, i), 1)
    pipe.execute()


# --------------------------------------------------------------------------- _get_row_ids

def test_get_row_ids_skips_empty_scan_pages(conn):
    class Item(rom.Model):
        n = rom.Integer()

    _raw_rows(conn, 'Item', [(i, {'n': str(i)}) for i in range(1, 41)])
    _unrelated_keys(conn, 3000)
    conn.set('Item:abc', 1)
    conn.set('Item:12:tags', 1)
    conn.set('Item:\xb2', 1)  # a unicode digit is not a row id
    # the reference stopped at the first page matching nothing: make sure such pages exist
    cursor, empty_pages, first_empty_before_end = 0, 0, False
    while True:
        cursor, keys = conn.scan(cursor, match='Item:*', count=10)
        if not keys and int(cursor):
            empty_pages += 1
            first_empty_before_end = True
        if int(cursor) == 0:
            break
    assert first_empty_before_end and empty_pages > 0
    batches = list(util._get_row_ids(Item, 10))
    assert all(batches) and all(isinstance(i, int) for b in batches for i in b)
    assert sorted(set(i for b in batches for i in b)) == list(range(1, 41))


def test_get_row_ids_on_decoding_client(conn, decoding_conn):
    class Dec(rom.Model):
        _conn = decoding_conn
        n = rom.Integer()

    _raw_rows(conn, 'Dec', [(i, {'n': '1'}) for i in range(1, 6)])
    _unrelated_keys(conn, 200)
    ids = {i for b in util._get_row_ids(Dec, 10) for i in b}
    assert ids == {1, 2, 3, 4, 5}


def test_get_row_ids_namespace_with_glob_characters(conn):
    class Glob(rom.Model):
        _namespace = 'G[1]*'
        n = rom.Integer()

    _raw_rows(conn, 'G[1]*', [(1, {'n': '1'}), (2, {'n': '2'})])
    conn.set('G1x:3', 1)  # would match the unescaped pattern
    ids = {i for b in util._get_row_ids(Glob, 100) for i in b}
    assert ids == {1, 2}


# --------------------------------------------------------------------------- refresh_indices

def _indexed_model():
    class Doc(rom.Model):
        n = rom.Integer(index=True)
        tag = rom.Text(index=True, keygen=rom.IDENTITY)
        email = rom.Text(unique=True)
    return Doc


def test_refresh_indices_builds_indexes_of_10000_raw_rows(conn):
    Doc = _indexed_model()
    count = 10000
    pipe = conn.pipeline(False)
    for i in range(1, count + 1):
        pipe.hset('Doc:%d' % i, mapping={'id': str(i), 'n': str(i % 97), 'tag': 't%d' % (i % 3),
                                         'email': 'u%d@x' % i})
        if i % 2000 == 0:
            pipe.execute()
    pipe.set('Doc:id:', count)
    pipe.execute()
    assert not conn.exists('Doc:n:idx')
    start = time.time()
    progress = list(util.refresh_indices(Doc, block_size=500))
    elapsed = time.time() - start
    assert progress[-1][1] == count
    assert progress[-1][0] >= count  # SCAN may repeat keys, never skip them
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert conn.zcard('Doc:n:idx') == count
    assert conn.zscore('Doc:n:idx', '194') == 194 % 97
    assert conn.scard('Doc:tag:t0:idx') + conn.scard('Doc:tag:t1:idx') + \
        conn.scard('Doc:tag:t2:idx') == count
    assert conn.hlen('Doc:email:uidx') == count
    assert conn.hget('Doc:email:uidx', 'u77@x') == b'77'
    data = json.loads(conn.hget('Doc:5', '-index-data-'))
    assert data[0] == ['tag:t2'] and data[1] == ['n']
    assert conn.scard('Doc:tag:t1:idx') == 3334
    assert elapsed < 60
    assert rom.util.session.known == {}


def test_refresh_indices_progress_without_scan(conn):
    Doc = _indexed_model()
    _raw_rows(conn, 'Doc', [(i, {'n': str(i), 'tag': 'a', 'email': 'e%d' % i})
                            for i in range(1, 26) if i != 13], counter=25)
    progress = list(util.refresh_indices(Doc, block_size=10, scan=False))
    assert progress == [(10, 25), (20, 25), (25, 25)]  # bug util #4: was (10, 25), (11, 25)...
    assert conn.zcard('Doc:n:idx') == 24
    small = list(util.refresh_indices(Doc, block_size=3, scan=False))  # block_size >= 10
    assert small == [(10, 25), (20, 25), (25, 25)]


def test_refresh_indices_with_scan_progress_counts_ids(conn):
    Doc = _indexed_model()
    _raw_rows(conn, 'Doc', [(i, {'n': str(i), 'tag': 'a', 'email': 'e%d' % i})
                            for i in range(1, 31)], counter=40)
    progress = list(util.refresh_indices(Doc, block_size=10))
    assert progress[-1] == (30, 40) or progress[-1][0] > 30
    assert all(total == 40 for _, total in progress)


def test_refresh_indices_empty_model(conn):
    Doc = _indexed_model()
    assert list(util.refresh_indices(Doc)) == []
    assert list(util.refresh_indices(Doc, scan=False)) == []


def test_refresh_indices_is_lazy(conn):
    Doc = _indexed_model()
    _raw_rows(conn, 'Doc', [(1, {'n': '1', 'tag': 'a', 'email': 'e'})])
    job = util.refresh_indices(Doc)
    assert not conn.exists('Doc:n:idx')
    list(job)
    assert conn.exists('Doc:n:idx')


def test_refresh_indices_under_null_session(conn):
    Doc = _indexed_model()
    _raw_rows(conn, 'Doc', [(i, {'n': str(i), 'tag': 'a', 'email': 'e%d' % i})
                            for i in range(1, 21)])
    util.use_null_session()
    try:
        assert list(util.refresh_indices(Doc, block_size=10, scan=False)) == [(10, 20), (20, 20)]
    finally:
        util.use_rom_session()
    assert conn.zcard('Doc:n:idx') == 20  # bug util #5: nothing was rebuilt
    assert conn.scard('Doc:tag:a:idx') == 20
    rom.util.session.null_session = True
    try:
        conn.delete('Doc:n:idx')
        list(util.refresh_indices(Doc, block_size=10))
    finally:
        del rom.util.session.null_session
    assert conn.zcard('Doc:n:idx') == 20


def test_refresh_indices_commits_pending_entities(conn):
    Doc = _indexed_model()
    _raw_rows(conn, 'Doc', [(1, {'n': '1', 'tag': 'a', 'email': 'e1'})])
    pending = Doc(n=5, tag='b', email='pending')
    assert not conn.exists('Doc:%s' % pending.id)
    list(util.refresh_indices(Doc))
    assert conn.hget('Doc:%s' % pending.id, 'email') == b'pending'  # compat: whole session


def test_refresh_indices_on_decoding_client(conn, decoding_conn):
    class Dec(rom.Model):
        _conn = decoding_conn
        n = rom.Integer(index=True)

    _raw_rows(conn, 'Dec', [(i, {'n': str(i)}) for i in range(1, 16)])
    assert list(util.refresh_indices(Dec, block_size=10))[-1][0] >= 15
    assert conn.zcard('Dec:n:idx') == 15


def test_refresh_indices_migrates_legacy_bookkeeping(conn):
    class Leg(rom.Model):
        w = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True, suffix=True)
        n = rom.Integer(index=True)

    _raw_rows(conn, 'Leg', [(1, {'w': 'hello world', 'n': '3'})])
    # index entries and bookkeeping as rom < 1.0 wrote them (4 slots, Python json)
    conn.sadd('Leg:w:hello:idx', 1)
    conn.sadd('Leg:w:world:idx', 1)
    conn.sadd('Leg:w:stale:idx', 1)
    conn.zadd('Leg:n:idx', {'1': 3})
    conn.hset('Leg::', '1', json.dumps([['w:world', 'w:hello', 'w:stale'], ['n'],
                                        [['w', 'hello'], ['w', 'world']],
                                        [['w', 'olleh'], ['w', 'dlrow']]]))
    list(util.refresh_indices(Leg))
    assert not conn.exists('Leg::')
    assert not conn.exists('Leg:w:stale:idx')
    assert conn.smembers('Leg:w:hello:idx') == {b'1'}
    data = json.loads(conn.hget('Leg:1', '-index-data-'))
    assert sorted(data[0]) == ['w:hello', 'w:world']


def test_refresh_all_indexes(conn, capsys):
    class One(rom.Model):
        n = rom.Integer(index=True)

    class Two(rom.Model):
        _namespace = 'Second'
        n = rom.Integer(index=True)

    _raw_rows(conn, 'One', [(1, {'n': '1'}), (2, {'n': '2'})])
    _raw_rows(conn, 'Second', [(1, {'n': '5'})])
    util.refresh_all_indexes()
    out = capsys.readouterr().out
    assert conn.zcard('One:n:idx') == 2 and conn.zcard('Second:n:idx') == 1
    lines = [line for line in out.split('\n') if 'index' in line.split('\r')[0].lower()]
    names = [re.search(r'model (\S+)', line).group(1) for line in lines]
    # every registry entry: Model, One (twice: class name and namespace are equal -> once),
    # Second under both 'Two' and 'Second'
    assert names.count('One') == 1 and names.count('Second') == 2 and names.count('Model') == 1
    assert out.endswith('\n')


# --------------------------------------------------------------------------- clean_old_index

def _geo_model():
    class Shop(rom.Model):
        w = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True, suffix=True)
        n = rom.Integer(index=True)
        email = rom.Text(unique=True)
        lon = rom.Float()
        lat = rom.Float()
        geo_index = [rom.GeoIndex('loc', lambda d: {'lon': d['lon'], 'lat': d['lat']}),
                     rom.GeoIndex('g2', lambda d: {'lon': d['lon'], 'lat': d['lat']})]
    return Shop


def _legacy_entry(conn, ns, i, data, word='hello', score=3, geo=True):
    conn.sadd('%s:w:%s:idx' % (ns, word), i)
    conn.zadd('%s:n:idx' % ns, {str(i): score})
    conn.zadd('%s:w:pre' % ns, {'%s\0%d' % (word, i): 1.0})
    conn.zadd('%s:w:suf' % ns, {'%s\0%d' % (word[::-1], i): 1.0})
    if geo:
        conn.geoadd('%s:loc:geo' % ns, (2.0, 48.0, str(i)))
        conn.geoadd('%s:g2:geo' % ns, (3.0, 47.0, str(i)))
    conn.hset(ns + '::', str(i), data)


def test_clean_old_index_removes_legacy_data_of_missing_rows(conn):
    Shop = _geo_model()
    keep = Shop(w='alive', n=1, email='a@x', lon=1.0, lat=1.0)
    keep.save()
    # row 101: 5 slots with the geo names as bare strings in slot 4 (rom 0.37-0.42, G1)
    _legacy_entry(conn, 'Shop', 101, '[["w:hello"],["n"],[["w","hello"]],[["w","olleh"],"loc",'
                                     '"g2"],{}]')
    # row 102: geo names in slot 5
    _legacy_entry(conn, 'Shop', 102, '[["w:hello"],["n"],[["w","hello"]],[["w","olleh"]],'
                                     '["loc","g2"]]')
    # row 103: 4 slots, Python json with spaces and [] for empty slots
    _legacy_entry(conn, 'Shop', 103, json.dumps([['w:hello'], ['n'], [['w', 'hello']], []]),
                   geo=False)
    # row 104 exists: its legacy entry stays
    conn.hset('Shop:104', mapping={'id': '104', 'w': 'hello'})
    _legacy_entry(conn, 'Shop', 104, '[["w:hello"],["n"],[["w","hello"]],[["w","olleh"]],{}]')
    # stale unique fields: one for a gone row, one live
    conn.hset('Shop:email:uidx', mapping={'gone@x': '101', 'other@x': '104'})
    conn.set('Shop:id:', 104)

    progress = list(util.clean_old_index(Shop, block_size=10))
    assert progress[-1][0] == progress[-1][1]
    assert conn.hkeys('Shop::') == [b'104']
    assert conn.smembers('Shop:w:hello:idx') == {b'104'}
    assert conn.zrange('Shop:n:idx', 0, -1) == [str(keep.id).encode(), b'104']
    assert conn.zrange('Shop:w:pre', 0, -1) == [('alive\0%s' % keep.id).encode(), b'hello\x00104']
    assert sorted(conn.zrange('Shop:loc:geo', 0, -1)) == sorted([str(keep.id).encode(), b'104'])
    assert sorted(conn.zrange('Shop:g2:geo', 0, -1)) == sorted([str(keep.id).encode(), b'104'])
    assert conn.hgetall('Shop:email:uidx') == {b'a@x': str(keep.id).encode(),
                                               b'other@x': b'104'}
    # the live row's own data is untouched
    assert conn.hget('Shop:%s' % keep.id, '-index-data-') is not None


def test_clean_old_index_progress_without_data(conn):
    class Plain(rom.Model):
        n = rom.Integer()

    assert list(util.clean_old_index(Plain, block_size=10)) == [(10, 11), (11, 11)]
    assert list(util.clean_old_index(Plain, block_size=3)) == [(10, 11), (11, 11)]


def test_clean_old_index_is_lazy(conn):
    Shop = _geo_model()
    _legacy_entry(conn, 'Shop', 5, '[["w:hello"],{},{},{},{}]')
    job = util.clean_old_index(Shop)
    assert conn.exists('Shop::')
    list(job)
    assert not conn.exists('Shop::')


def test_clean_old_index_fallback_path(conn):
    Shop = _geo_model()
    _legacy_entry(conn, 'Shop', 2, '[["w:hello"],["n"],{},[["w","olleh"],"loc"],["g2"]]')
    conn.hset('Shop:email:uidx', 'gone@x', '2')
    conn.set('Shop:id:', 25)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        job = util.clean_old_index(Shop, block_size=10, force_hscan=None)
        progress = list(job)
    assert [w.category for w in caught] == [UserWarning]
    assert 'force_hscan' in str(caught[0].message) or 'turned off' in str(caught[0].message)
    assert progress == [(11, 25), (21, 25), (24, 25), (25, 25)]
    assert not conn.exists('Shop::')
    assert not conn.exists('Shop:loc:geo') and not conn.exists('Shop:g2:geo')
    assert not conn.exists('Shop:w:hello:idx') and not conn.exists('Shop:w:suf')
    assert conn.hget('Shop:email:uidx', 'gone@x') == b'2'  # not cleaned on this path


def test_clean_old_index_fallback_without_uniques_does_not_warn(conn):
    class Plain(rom.Model):
        n = rom.Integer(index=True)

    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert list(util.clean_old_index(Plain, force_hscan=None)) == [(0, 0)]


def test_clean_old_index_composite_unique_and_decoding_client(conn, decoding_conn):
    class Pair(rom.Model):
        _conn = decoding_conn
        a = rom.Integer()
        b = rom.Text()
        unique_together = [('a', 'b')]

    live = Pair(a=1, b='x')
    live.save()
    field = rom.util._encode_unique_constraint(['2', 'y'])
    decoding_conn.hset('Pair:a:b:uidx', field, '77')
    decoding_conn.hset('Pair::', '78', '[["w:q"],{},{},{},{}]')
    decoding_conn.sadd('Pair:w:q:idx', '78')
    progress = list(util.clean_old_index(Pair, block_size=10))  # ends: cursors compared as ints
    assert progress[-1][0] == progress[-1][1]
    assert list(decoding_conn.hvals('Pair:a:b:uidx')) == [str(live.id)]
    assert not decoding_conn.exists('Pair::') and not decoding_conn.exists('Pair:w:q:idx')


# --------------------------------------------------------------------------- clean_unsafe_cols

def test_clean_unsafe_cols_requires_a_model():
    with pytest.raises(ValueError):
        util.clean_unsafe_cols()


def test_clean_unsafe_cols_several_models_and_colon_namespace(conn):
    class Box(rom.Model):
        items = rom.UnsafeColumn()
        n = rom.Integer(index=True)

    class Deep(rom.Model):
        _namespace = 'app:deep'
        items = rom.UnsafeColumn()

    class Third(rom.Model):
        items = rom.UnsafeColumn()

    live = Box(n=1)
    live.save()
    live.items.rpush('a')
    deep = Deep()
    deep.save()
    deep.items.sadd('x')
    third = Third()
    third.save()
    third.items.rpush('t')
    pipe = conn.pipeline(False)
    for i in range(1000, 1300):
        pipe.rpush('Box:%d:items' % i, 'orphan')
        pipe.rpush('app:deep:%d:items' % i, 'orphan')
        pipe.rpush('Third:%d:items' % i, 'orphan')
    pipe.execute()
    _unrelated_keys(conn, 500)
    keys_box = len(list(conn.scan_iter(match='Box:*')))
    keys_deep = len(list(conn.scan_iter(match='app:deep:*')))
    keys_third = len(list(conn.scan_iter(match='Third:*')))
    examined, deleted = util.clean_unsafe_cols(Box, Deep, Third, block_size=50)
    assert deleted == 900  # bug util #6: later models and ':' namespaces were not cleaned
    assert examined >= keys_box + keys_deep + keys_third
    assert conn.lrange('Box:%s:items' % live.id, 0, -1) == [b'a']
    assert conn.smembers('app:deep:%s:items' % deep.id) == {b'x'}
    assert conn.lrange('Third:%s:items' % third.id, 0, -1) == [b't']
    assert conn.exists('Box:n:idx') and conn.exists('Box:id:')
    assert not any(conn.scan_iter(match='*:1???:items'))
    assert util.clean_unsafe_cols(Box, Deep, Third)[1] == 0


def test_clean_unsafe_cols_counts_every_key_and_keeps_index_keys(conn, decoding_conn):
    class Bag(rom.Model):
        _conn = decoding_conn
        things = rom.UnsafeColumn()
        t = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True, unique=True)

    bag = Bag(t='hello')
    bag.save()
    decoding_conn.rpush('Bag:99:things', 'x')
    decoding_conn.set('Bag:99:idx', 'not an unsafe key')
    decoding_conn.set('Bag:99:', 'empty attr')
    all_keys = sorted(decoding_conn.scan_iter(match='Bag:*'))
    examined, deleted = util.clean_unsafe_cols(Bag, block_size=1)
    assert (examined >= len(all_keys), deleted) == (True, 1)
    assert sorted(decoding_conn.scan_iter(match='Bag:*')) == \
        [k for k in all_keys if k != 'Bag:99:things']


# --------------------------------------------------------------------------- show_progress

_LINE = re.compile(r'^(\d+\.\d)% done, (\d+\.\d)s elapsed, (-?\d+\.\d)s remaining '
                   r'\((\d+)/(\d+), (\d+\.\d)/s\)\s*$')


def _displays(out):
    assert out.endswith('\n') and out.count('\n') == 1
    return [d for d in out[:-1].split('\r') if d]


def test_show_progress_figures(capsys):
    def job():
        time.sleep(0.2)
        yield 25, 100
        time.sleep(0.15)
        yield 100, 100

    util.show_progress(job())
    displays = _displays(capsys.readouterr().out)
    assert len(displays) == 3
    parsed = [_LINE.match(d).groups() for d in displays]
    pct, elapsed, remaining, done, total, rate = parsed[0]
    assert pct == '25.0' and (done, total) == ('25', '100')
    assert 0.2 <= float(elapsed) < 2
    assert abs(float(remaining) - 3 * float(elapsed)) <= 0.25  # total*e/done - e
    assert abs(float(rate) - 25 / float(elapsed)) < 15
    assert parsed[1][0] == '100.0' and float(parsed[1][2]) == 0.0
    assert float(parsed[1][1]) >= 0.35
    assert parsed[2][0] == '100.0' and parsed[2][3:5] == ('100', '100')  # the closing (1, 1)


def test_show_progress_skips_pairs_within_a_tenth_of_a_second(capsys):
    util.show_progress(iter([(i, 100000) for i in range(1, 20001)]))
    displays = _displays(capsys.readouterr().out)
    assert 2 <= len(displays) < 50  # the first pair, maybe a few timed ones, the final (1, 1)
    assert displays[0].startswith('0.0% done') and '(1/100000' in displays[0]
    stream = io.StringIO()
    from rom._maintenance import ProgressLine
    line = ProgressLine(stream=stream, interval=1000)
    assert line.update(1, 10) is True
    assert line.update(2, 10) is False
    assert line.update(10, 10) is True  # complete pairs are always shown
    assert stream.getvalue().count('\r') == 2


def test_show_progress_empty_job_and_zero_total(capsys):
    util.show_progress(iter([]))
    displays = _displays(capsys.readouterr().out)
    assert len(displays) == 1 and displays[0].startswith('100.0% done')
    util.show_progress(iter([(0, 0)]))
    displays = _displays(capsys.readouterr().out)
    assert displays[0].startswith('0.0% done') and displays[-1].startswith('100.0%')


def test_show_progress_negative_remaining_when_done_exceeds_total(capsys):
    def job():
        time.sleep(0.3)
        yield 20, 10

    util.show_progress(job())
    first = _LINE.match(_displays(capsys.readouterr().out)[0]).groups()
    assert first[0] == '200.0' and float(first[2]) <= -0.1  # 10*e/20 - e = -e/2


def test_progress_line_pads_shorter_displays():
    stream = io.StringIO()
    from rom._maintenance import ProgressLine
    line = ProgressLine(stream=stream)
    line.show(123456, 1234567)
    line.show(1, 10)
    first, second = stream.getvalue().split('\r')[:2]
    assert len(second) == len(first)
    assert second.endswith(' ')


def test_progress_line_with_bar_and_label():
    stream = io.StringIO()
    from rom._maintenance import ProgressLine
    line = ProgressLine(stream=stream, bar=10, label='job ')
    line.update(5, 10)
    line.finish()
    out = stream.getvalue()
    assert out.startswith('job [#####-----] 50.0% done')
    assert 'job [##########] 100.0% done' in out and out.endswith('\n')


def test_refresh_indices_round_trips_per_block(conn, roundtrips):
    class Doc(rom.Model):
        n = rom.Integer(index=True)

    _raw_rows(conn, 'Doc', [(i, {'n': str(i)}) for i in range(1, 201)])
    with roundtrips(conn) as rt:
        assert list(util.refresh_indices(Doc, block_size=50, scan=False))[-1] == (200, 200)
    # GET of the counter (and EXISTS of legacy bookkeeping, same round trip), then per
    # block one script call reading its rows and one batched write
    assert rt.count == 1 + 4 * 2
    assert rt.commands[:2] == ['GET', 'EXISTS']
    assert all(name in ('EVAL', 'EVALSHA') for name in rt.commands[2:])
    assert conn.zcard('Doc:n:idx') == 200


def test_clean_old_index_round_trips(conn, roundtrips):
    class Doc(rom.Model):
        n = rom.Integer(index=True)
        u = rom.Text(unique=True)

    pipe = conn.pipeline(False)
    for i in range(1, 101):
        pipe.hset('Doc::', str(i), '[["n:x"],{},{},{},{}]')
        pipe.sadd('Doc:n:x:idx', str(i))
        pipe.hset('Doc:u:uidx', 'v%d' % i, str(i))
    pipe.execute()
    with roundtrips(conn) as rt:
        list(util.clean_old_index(Doc, block_size=1000))
    # INFO, HLEN, one HSCAN-page script plus one cleaner call, one unique-index page script
    assert rt.count <= 6
    assert not conn.exists('Doc::') and not conn.exists('Doc:n:x:idx')
    assert not conn.exists('Doc:u:uidx')
