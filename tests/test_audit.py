"""The index audit (rom._audit.audit_model): healthy data and every kind of corruption."""
from __future__ import annotations

import json

import pytest

import rom
from rom import util
from rom._audit import (BAD_ROW, BOOKKEEPING, DANGLING, KINDS, MISSING, STALE, UNIQUE_DUPLICATE,
                        UNIQUE_MISSING, UNIQUE_STALE, UNKNOWN_INDEX, WRONG_SCORE, AuditReport,
                        Finding, audit_model)


def _point(d):
    if d.get('lon') is None:
        return []
    return {'lon': d['lon'], 'lat': d['lat']}


def _shop_model(conn=None):
    body = dict(
        name=rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True, suffix=True),
        sort=rom.Text(index=True, keygen=rom.SIMPLE_CI, prefix=True, suffix=True),
        rating=rom.Float(index=True),
        flag=rom.Boolean(index=True),
        email=rom.Text(unique=True),
        code=rom.Text(unique=True, keygen=rom.IDENTITY_CI),
        raw=rom.String(unique=True),
        a=rom.Integer(),
        b=rom.Text(),
        lon=rom.Float(),
        lat=rom.Float(),
        unique_together=[('a', 'b')],
        geo_index=[rom.GeoIndex('loc', _point)],
    )
    if conn is not None:
        body['_conn'] = conn
    return type('Shop', (rom.Model,), body)


def _populate(Shop, n=30):
    shops = []
    for i in range(n):
        shop = Shop(name='Blue door %d caf\xe9' % i, sort='Name %d' % i, rating=i / 2.0,
                    flag=bool(i % 2), email='s%d@example.com' % i, code='Code%d' % i,
                    raw=b'\xe9\x00raw%d' % i, a=i, b='b\xe9%d' % i,
                    lon=(2.0 + i / 10.0) if i % 3 else None, lat=48.0 + i / 10.0)
        shop.save()
        shops.append(shop)
    # updates and deletes through rom keep everything consistent
    shops[1].name = 'renamed shop'
    shops[1].rating = None
    shops[1].email = 'changed@example.com'
    shops[1].lon = None
    shops[1].save()
    shops[2].delete()
    shops[4].a = 1000
    shops[4].save()
    return shops


def _kinds(report):
    return {(f.kind, f.key) for f in report.findings}


def test_healthy_database_has_no_findings(conn):
    Shop = _shop_model()
    _populate(Shop)
    report = audit_model(Shop, block_size=10)
    assert report.findings == []
    assert report.ok and report.counts == {}
    assert report.rows == 29
    assert report.index_keys > 10 and report.entries > 29 * 8
    assert 'no problems' in report.summary()


def test_healthy_database_on_decoding_client(conn, decoding_conn):
    Shop = _shop_model(decoding_conn)
    shops = _populate(Shop, 12)
    assert audit_model(Shop).findings == []
    decoding_conn.zadd('Shop:rating:idx', {str(shops[5].id): 99})
    report = audit_model(Shop)
    assert _kinds(report) == {(WRONG_SCORE, 'Shop:rating:idx')}


def test_deleted_row_with_index_entries_left(conn):
    Shop = _shop_model()
    shops = _populate(Shop, 6)
    victim = shops[5]
    conn.delete('Shop:%s' % victim.id)  # raw delete: every index entry is left behind
    report = audit_model(Shop)
    dangling = {f.key for f in report.findings if f.kind == DANGLING}
    vid = str(victim.id)
    assert {'Shop:rating:idx', 'Shop:name:blue:idx', 'Shop:name:pre', 'Shop:name:suf',
            'Shop:sort:idx', 'Shop:sort:pre', 'Shop:flag:True:idx', 'Shop:loc:geo',
            'Shop:email:uidx', 'Shop:code:uidx', 'Shop:raw:uidx', 'Shop:a:b:uidx'} <= dangling
    assert all(f.id == vid for f in report.findings)
    assert {f.kind for f in report.findings} == {DANGLING}
    uidx = [f for f in report.findings if f.key == 'Shop:email:uidx'][0]
    assert uidx.member == 's5@example.com' and 'Shop:%s' % vid in uidx.message
    pre = [f for f in report.findings if f.key == 'Shop:name:pre']
    assert {f.member for f in pre} == {'blue\\0%s' % vid, '5\\0%s' % vid, 'door\\0%s' % vid,
                                       'caf\xe9\\0%s' % vid}
    # clean_old_index fixes the unique part (other entries of raw-deleted rows cannot be found)
    list(util.clean_old_index(Shop))
    after = audit_model(Shop)
    assert not any(f.key.endswith(':uidx') for f in after.findings)


def test_stale_score(conn):
    Shop = _shop_model()
    shops = _populate(Shop, 6)
    conn.zadd('Shop:rating:idx', {str(shops[3].id): 42.0})
    conn.zadd('Shop:name:pre', {'door\0%s' % shops[0].id: 1.5})
    report = audit_model(Shop)
    assert _kinds(report) == {(WRONG_SCORE, 'Shop:rating:idx'), (WRONG_SCORE, 'Shop:name:pre')}
    finding = [f for f in report.findings if f.key == 'Shop:rating:idx'][0]
    assert finding.id == str(shops[3].id) and finding.member == str(shops[3].id)
    assert '42.0' in finding.message and '1.5' in finding.message


def test_missing_set_membership_and_zset_member(conn):
    Shop = _shop_model()
    shops = _populate(Shop, 6)
    sid = str(shops[3].id)
    conn.srem('Shop:name:door:idx', sid)
    conn.zrem('Shop:rating:idx', sid)
    conn.zrem('Shop:name:suf', 'eulb\0' + sid)
    conn.zrem('Shop:loc:geo', str(shops[4].id))
    report = audit_model(Shop)
    assert _kinds(report) == {(MISSING, 'Shop:name:door:idx'), (MISSING, 'Shop:rating:idx'),
                              (MISSING, 'Shop:name:suf'), (MISSING, 'Shop:loc:geo')}
    assert {f.id for f in report.findings} == {sid, str(shops[4].id)}
    assert report.counts == {MISSING: 4}
    # a reindex repairs everything
    list(util.refresh_indices(Shop))
    assert audit_model(Shop).findings == []


def test_stale_entries_of_existing_rows(conn):
    Shop = _shop_model()
    shops = _populate(Shop, 6)
    sid = str(shops[3].id)
    conn.sadd('Shop:name:old:idx', sid)         # a token the row no longer has
    conn.zadd('Shop:sort:pre', {'zzz\0' + sid: 1.0})
    conn.geoadd('Shop:loc:geo', (10.0, 10.0, str(shops[0].id)))  # shop 0 has no point
    report = audit_model(Shop)
    assert _kinds(report) == {(STALE, 'Shop:name:old:idx'), (STALE, 'Shop:sort:pre'),
                              (STALE, 'Shop:loc:geo')}


def test_stale_geo_member(conn):
    Shop = _shop_model()
    shops = _populate(Shop, 6)
    gid = str(shops[4].id)
    conn.geoadd('Shop:loc:geo', (100.0, -20.0, gid))
    report = audit_model(Shop)
    assert _kinds(report) == {(WRONG_SCORE, 'Shop:loc:geo')}
    assert report.findings[0].id == gid and '100.0' in report.findings[0].message


def test_duplicated_unique_values(conn):
    Shop = _shop_model()
    shops = _populate(Shop, 6)
    first, second = shops[3], shops[4]
    # another writer changes row 'second' behind rom's back: same email and same (a, b)
    conn.hset('Shop:%s' % second.id, mapping={'email': 's3@example.com', 'a': '3',
                                              'b': 'b\xe93'})
    report = audit_model(Shop)
    dups = [f for f in report.findings if f.kind == UNIQUE_DUPLICATE]
    assert {f.key for f in dups} == {'Shop:email:uidx', 'Shop:a:b:uidx'}
    assert all(f.id == str(second.id) for f in dups)
    email = [f for f in dups if f.key == 'Shop:email:uidx'][0]
    assert 'Shop:%s' % first.id in email.message and 'Shop:%s' % second.id in email.message
    # the fields of the old values still point at 'second', which no longer holds them
    stale = {f.key for f in report.findings if f.kind == UNIQUE_STALE}
    assert stale == {'Shop:email:uidx', 'Shop:a:b:uidx'}
    # the row's -index-data- is unaffected (no indexed column changed)
    assert not [f for f in report.findings if f.kind not in (UNIQUE_DUPLICATE, UNIQUE_STALE)]


def test_duplicate_found_when_the_unique_index_is_gone(conn):
    Shop = _shop_model()
    shops = _populate(Shop, 6)
    conn.delete('Shop:code:uidx')
    conn.hset('Shop:%s' % shops[1].id, 'code', 'code0')  # IDENTITY_CI: same value as Code0
    report = audit_model(Shop)
    assert (UNIQUE_DUPLICATE, 'Shop:code:uidx') in _kinds(report)
    missing = [f for f in report.findings if f.kind == UNIQUE_MISSING]
    assert len(missing) == 5  # every row (shop 2 was deleted)
    assert {f.member for f in missing} == {'code0', 'code3', 'code4', 'code5'}


def test_bookkeeping_out_of_date(conn):
    Shop = _shop_model()
    shops = _populate(Shop, 6)
    key = 'Shop:%s' % shops[3].id
    conn.hset(key, '-index-data-', '[{},{},{},{},{}]')
    report = audit_model(Shop)
    assert _kinds(report) == {(BOOKKEEPING, key)}
    assert 'rating' in report.findings[0].message
    conn.hdel(key, '-index-data-')
    report = audit_model(Shop)
    assert _kinds(report) == {(BOOKKEEPING, key)}


def test_reference_bookkeeping_forms_are_healthy(conn):
    Shop = _shop_model()
    shops = _populate(Shop, 6)
    shop = shops[4]
    key = 'Shop:%s' % shop.id
    data = json.loads(conn.hget(key, '-index-data-'))
    assert data[4] == ['loc']
    # rom 1.1.2 wrote the geo name as a bare string in slot 4 (G1); legacy rows keep it in <ns>::
    data[3].append('loc')
    data[4] = {}
    conn.hset(key, '-index-data-', json.dumps(data))
    assert audit_model(Shop).findings == []
    conn.hdel(key, '-index-data-')
    conn.hset('Shop::', str(shop.id), json.dumps(data))
    assert audit_model(Shop).findings == []
    conn.hset('Shop::', '999', json.dumps(data))  # legacy entry of a gone row
    report = audit_model(Shop)
    assert _kinds(report) == {(DANGLING, 'Shop::')}


def test_unknown_index_and_bad_rows(conn):
    Shop = _shop_model()
    _populate(Shop, 6)
    conn.sadd('Shop:nope:x:idx', '1')
    conn.zadd('Shop:email:pre', {'x\x001': 1})
    conn.hset('Shop:77', mapping={'id': '77', 'rating': 'not a number'})
    report = audit_model(Shop)
    assert (UNKNOWN_INDEX, 'Shop:nope:x:idx') in _kinds(report)
    assert (UNKNOWN_INDEX, 'Shop:email:pre') in _kinds(report)
    assert (BAD_ROW, 'Shop:77') in _kinds(report)
    conn.sadd('Shop:flag:True:idx', '77')  # an entry of the bad row: not reported again
    conn.hset('Shop:78', mapping={'id': '78', b'\xff': b'\xfe'})  # not UTF-8 at all
    report = audit_model(Shop)
    assert {f.key for f in report.findings if f.id in ('77', '78')} == {'Shop:77', 'Shop:78'}
    assert len([f for f in report.findings if f.kind == BAD_ROW]) == 2


def test_namespaces_sharing_a_prefix_are_kept_apart(conn):
    class App(rom.Model):
        n = rom.Integer(index=True)

    class Sub(rom.Model):
        _namespace = 'App:sub'
        n = rom.Integer(index=True)
        t = rom.Text(unique=True)

    for i in range(5):
        App(n=i).save()
        Sub(n=i, t='t%d' % i).save()
    assert audit_model(App).findings == []
    assert audit_model(Sub).findings == []
    conn.delete('App:sub:2')
    assert audit_model(App).findings == []
    assert {f.kind for f in audit_model(Sub).findings} == {DANGLING}


def test_many_rows_small_blocks_and_progress(conn):
    class Many(rom.Model):
        n = rom.Integer(index=True)
        t = rom.Text(index=True, keygen=rom.FULL_TEXT)
        u = rom.Text(unique=True)

    rows = [Many(n=i, t='w%d common' % (i % 7), u='u%d' % i) for i in range(300)]
    util.session.commit()
    pipe = conn.pipeline(False)
    for i in range(2000):
        pipe.set('noise:%d' % i, 1)
    pipe.execute()
    calls = []
    report = audit_model(Many, block_size=10, progress=lambda *a: calls.append(a))
    assert report.findings == [] and report.rows == 300
    stages = [c[0] for c in calls]
    assert stages[0] == 'rows' and stages[-1] == 'index entries'
    row_calls = [c for c in calls if c[0] == 'rows']
    assert row_calls[-1][1] >= 300 and all(done <= total for _, done, total in calls)
    assert len(row_calls) >= 30  # one call per block of 10 rows
    conn.zadd('Many:n:idx', {str(rows[7].id): -1})
    conn.srem('Many:t:common:idx', str(rows[8].id))
    report = audit_model(Many, block_size=10)
    assert _kinds(report) == {(WRONG_SCORE, 'Many:n:idx'), (MISSING, 'Many:t:common:idx')}
    assert report.counts == {WRONG_SCORE: 1, MISSING: 1}


def test_audit_leaves_no_keys_and_no_session_entries(conn):
    Shop = _shop_model()
    _populate(Shop, 5)
    util.session.rollback()
    before = set(conn.keys('*'))
    audit_model(Shop)
    assert set(conn.keys('*')) == before
    assert util.session.known == {}


def test_report_objects():
    report = AuditReport('X')
    report.add(MISSING, 'X:a:idx', '1', '1', 'row X:1 is missing')
    report.add(MISSING, 'X:a:idx', '1', '1', 'row X:1 is missing')
    assert len(report.findings) == 1 and not report.ok
    assert report.findings[0] == Finding(MISSING, 'X:a:idx', '1', '1', 'row X:1 is missing')
    assert str(report.findings[0]) == 'missing-entry: row X:1 is missing'
    assert '1 problem' in report.summary() and MISSING in report.summary()
    assert set(KINDS) == {MISSING, WRONG_SCORE, STALE, DANGLING, UNIQUE_MISSING,
                          UNIQUE_DUPLICATE, UNIQUE_STALE, BOOKKEEPING, UNKNOWN_INDEX, BAD_ROW,
                          'dangling-reference'}


@pytest.mark.parametrize('block_size', [1, 10, 1000])
def test_block_sizes_agree(conn, block_size):
    Shop = _shop_model()
    shops = _populate(Shop, 8)
    conn.delete('Shop:%s' % shops[6].id)
    conn.zadd('Shop:rating:idx', {str(shops[5].id): 7})
    report = audit_model(Shop, block_size=block_size)
    assert report.counts[WRONG_SCORE] == 1
    assert report.counts[DANGLING] >= 10


def test_round_trips_are_per_block_not_per_key(conn, roundtrips):
    class Tok(rom.Model):
        n = rom.Integer(index=True)
        t = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True)

    for i in range(300):
        Tok(n=i, t='common own%d' % i)  # 300 single-member token sets
    util.session.commit()
    with roundtrips(conn) as rt:
        report = audit_model(Tok, block_size=100)
    assert report.findings == [] and report.rows == 300 and report.index_keys == 303
    assert rt.count < 120  # reading the 303 index keys one by one would take > 900


def test_index_key_of_a_foreign_type(conn):
    Shop = _shop_model()
    _populate(Shop, 6)
    conn.set('Shop:rating:x:idx', 'a string, not an index')
    report = audit_model(Shop)
    assert _kinds(report) == {(UNKNOWN_INDEX, 'Shop:rating:x:idx')}
    assert 'string' in report.findings[0].message


def test_every_column_kind_is_healthy(conn):
    from datetime import date, datetime, time as dtime
    from decimal import Decimal

    class Owner(rom.Model):
        name = rom.Text(index=True, keygen=rom.IDENTITY_STRING)
        pets = rom.OneToMany('Pet')

    def kg2(attr, data):
        value = data.get('num')
        return {'': value, 'half': (value or 0) / 2.0, 'tag': None} if value is not None else None

    class Pet(rom.Model):
        pk = rom.PrimaryKey(index=True)
        owner = rom.ManyToOne('Owner', on_delete='cascade')
        num = rom.Integer(index=True, keygen2=kg2)
        dec = rom.Decimal(index=True)
        when = rom.DateTime(index=True)
        day = rom.Date(index=True)
        at = rom.Time(index=True)
        ok = rom.Boolean(index=True)
        blob = rom.String(index=True, keygen=rom.IDENTITY, prefix=True, suffix=True, unique=True)
        doc = rom.Json()
        title = rom.Text(index=True, keygen=rom.CASE_INSENSITIVE, prefix=True, suffix=True)
        shout = rom.IndexOnly('title', keygen=rom.IDENTITY_CI, unique=True)
        geo_index = [rom.GeoIndex('spot', lambda d: [{'lon': 1.5, 'lat': 2.5},
                                                     {'lon': d.get('num') or 0, 'lat': 3}])]

    owners = [Owner(name='Owner %d' % i) for i in range(3)]
    pets = []
    for i in range(12):
        pets.append(Pet(owner=owners[i % 3], num=i, dec=Decimal('%d.25' % i),
            when=datetime(2020, 1, 2, 3, 4, 5, i), day=date(2020, 1, 1 + i),
            at=dtime(1, 2, i), ok=bool(i % 2), blob=b'blob %d' % i, doc={'i': [i]},
            title='T\xeftle %d' % i))
    util.session.commit()
    pet = pets[3]
    pet.title = 'Changed'
    pet.save()
    owners[2].delete()  # cascades to its pets
    assert audit_model(Owner).findings == []
    assert audit_model(Pet).findings == []
    assert audit_model(Pet, block_size=1).findings == []
    assert conn.exists('Pet:spot:geo') and conn.exists('Pet:shout:uidx')
    assert conn.exists('Pet:num:half:idx') and conn.exists('Pet:pk:idx')
    conn.zadd('Pet:num:half:idx', {str(pets[4].pk): 99})  # pets 2, 5, 8, 11 were cascaded
    conn.hset('Pet:shout:uidx', 'T\xcfTLE 7', str(pets[6].pk))  # IndexOnly keygen unique
    report = audit_model(Pet)
    assert _kinds(report) == {(WRONG_SCORE, 'Pet:num:half:idx'), (UNIQUE_STALE, 'Pet:shout:uidx')}
    stale = [f for f in report.findings if f.kind == UNIQUE_STALE][0]
    assert stale.member == 'T\xcfTLE 7' and stale.id == str(pets[6].pk)


def test_audit_does_not_track_referenced_entities(conn):
    class Owner(rom.Model):
        name = rom.Text()

    class Pet(rom.Model):
        owner = rom.ManyToOne('Owner', on_delete='cascade')
        n = rom.Integer(index=True)

    owner = Owner(name='a')
    for i in range(5):
        Pet(owner=owner, n=i)
    util.session.commit()
    util.session.rollback()
    assert audit_model(Pet).findings == []
    assert util.session.known == {}
    assert not util.session.null_session  # restored
    util.session.null_session = True
    try:
        audit_model(Pet)
        assert util.session.null_session
    finally:
        del util.session.null_session
