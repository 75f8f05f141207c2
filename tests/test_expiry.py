"""Expiring entities (issue 17): API, visibility in every read path, removal, job, reaper."""
from __future__ import annotations

import datetime
import math
import os
import subprocess
import sys
import time
import warnings
from decimal import Decimal

import pytest

import rom
from rom import _expiry, util
from rom._audit import audit_model
from rom.testing import dump_database
from rom.exceptions import (EntityDeletedError, InvalidOperation, ORMError, RestrictError,
                            UniqueKeyViolation)

TTL = 0.03          # seconds: the lifetime of short-lived entities in these tests
PAST = 0.06         # sleeping this long makes them expired
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS_DIR)


def _geo(data):
    return {'lon': data['lon'], 'lat': data['lat']}


def make_doc(ttl=0, renew=False, name='Doc'):
    body = dict(
        _ttl=ttl, _ttl_renew=renew,
        _ids_per_block=1,  # one INCR per new entity: the tests read the id counter
        name=rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True, suffix=True),
        email=rom.Text(unique=True),
        n=rom.Integer(index=True),
        lon=rom.Float(), lat=rom.Float(),
        geo_index=[rom.GeoIndex('where', _geo)],
        notes=rom.UnsafeColumn(),
        unique_together=[('n', 'name')],
    )
    return type(name, (rom.Model,), body)


def fresh():
    """Forget what this thread's session holds (reads then go to Redis)."""
    util.session.rollback()


# --------------------------------------------------------------------------- declarations
@pytest.mark.parametrize('ttl', [-1, float('nan'), float('inf'), True, '10', 10 ** 20])
def test_bad_model_ttl_is_refused(ttl):
    from rom._registry import MODELS, MODELS_REFERENCED
    with pytest.raises(ORMError, match='_ttl'):
        type('Bad', (rom.Model,), {'_ttl': ttl, 'n': rom.Integer(),
                                   'ref': rom.ManyToOne('Other', on_delete='cascade')})
    assert 'Bad' not in MODELS and 'Other' not in MODELS_REFERENCED  # nothing registered


def test_renew_needs_a_positive_ttl():
    with pytest.raises(ORMError, match='_ttl_renew'):
        type('Bad1', (rom.Model,), {'_ttl_renew': True, 'n': rom.Integer()})
    with pytest.raises(ORMError, match='_ttl_renew'):
        type('Bad2', (rom.Model,), {'_ttl': 0, '_ttl_renew': True, 'n': rom.Integer()})
    with pytest.raises(ORMError, match='_ttl_renew'):
        type('Bad3', (rom.Model,), {'_ttl': 5, '_ttl_renew': 1, 'n': rom.Integer()})


async def test_models_without_ttl_refuse_expiry_and_keep_their_layout(api, conn):
    class Plain(rom.Model):
        n = rom.Integer(index=True)
        email = rom.Text(unique=True)
    entity = Plain(n=1, email='a')
    for call in (lambda: entity.expire_in(5), lambda: entity.expire_at(time.time() + 5),
                 entity.persist, entity.ttl):
        with pytest.raises(InvalidOperation, match='_ttl'):
            call()
    await api.save(entity)
    assert sorted(conn.keys('*')) == [b'Plain:1', b'Plain:email:uidx', b'Plain:id:',
                                      b'Plain:n:idx']
    assert sorted(conn.hgetall('Plain:1')) == [b'-index-data-', b'email', b'id', b'n']


def test_write_arguments_of_models_without_ttl_are_unchanged(conn):
    from rom._write_plan import plan_write
    from rom._write_script import plan_args

    class Plain(rom.Model):
        n = rom.Integer()
    Timed = type('Timed', (rom.Model,), {'_ttl': 0, 'n': rom.Integer()})
    out = plan_args(plan_write(Plain, {}, {'id': 1, 'n': 2}, is_new=True, fresh=True))
    assert out[:4] == ['Plain', '1', 'n', 0]              # mode 'n' (new): no expiry arguments
    out = plan_args(plan_write(Timed, {}, {'id': 1, 'n': 2}, is_new=True, fresh=True))
    assert out[:6] == ['Timed', '1', 'ne', '', '', 0]     # mode + 'e', op, ms


@pytest.mark.parametrize('bad, error', [
    (-1, ValueError), (float('nan'), ValueError), (float('inf'), ValueError),
    (Decimal('NaN'), ValueError), (True, TypeError), ('5', TypeError), (None, TypeError),
    (10 ** 30, ValueError)])
def test_bad_expiry_values_are_refused(bad, error):
    Doc = make_doc()
    doc = Doc(name='a')
    with pytest.raises(error):
        doc.expire_in(bad)
    with pytest.raises(error):
        doc.expire_at(bad)


def test_expire_at_refuses_dates_before_1970():
    Doc = make_doc()
    with pytest.raises(ValueError, match='1970'):
        Doc(name='a').expire_at(datetime.datetime(1969, 12, 31))


# --------------------------------------------------------------------------- API
async def test_expire_in_ttl_and_persist(api, conn):
    Doc = make_doc()
    doc = Doc(name='a b', n=1)
    assert (await api.ttl(doc)) is None            # not stored yet
    doc.expire_in(60)
    assert doc._modified
    await api.save(doc)
    remaining = (await api.ttl(doc))
    assert 59 < remaining <= 60
    at = int(conn.zscore('Doc:-expiry-', '1'))
    assert conn.hget('Doc:1', '-expire-at-') == str(at).encode()
    doc.persist()
    await api.save(doc)
    assert (await api.ttl(doc)) is None
    assert not conn.exists('Doc:-expiry-')
    assert conn.hget('Doc:1', '-expire-at-') is None


async def test_expire_in_takes_a_timedelta(api, conn):
    Doc = make_doc()
    doc = Doc(name='a')
    doc.expire_in(datetime.timedelta(minutes=2, microseconds=1500))
    with pytest.raises(ValueError):
        doc.expire_in(datetime.timedelta(seconds=-1))
    await api.save(doc)
    assert 119 < (await api.ttl(doc)) <= 120.002


async def test_columns_named_like_the_expiry_methods_keep_working(api, conn):
    class Legacy(rom.Model):        # a rom 1.1.2 model: its columns shadow the methods
        ttl = rom.Integer(index=True)
        persist = rom.Boolean()
    entity = Legacy(ttl=5, persist=True)
    await api.save(entity)
    fresh()
    loaded = await api.get(Legacy, entity.id)
    assert (loaded.ttl, loaded.persist) == (5, True)
    assert [e.id for e in await api.list(Legacy.query.filter(ttl=5))] == [entity.id]


async def test_expire_at_timestamp_and_datetimes(api, conn):
    Doc = make_doc()
    doc = Doc(name='a')
    doc.expire_at(4102444800.5)         # 2100-01-01 00:00:00.5 UTC
    await api.save(doc)
    assert conn.zscore('Doc:-expiry-', '1') == 4102444800500
    doc.expire_at(datetime.datetime(2100, 1, 1, 0, 0, 1))
    await api.save(doc)
    assert conn.zscore('Doc:-expiry-', '1') == 4102444801000
    aware = datetime.datetime(2100, 1, 1, 1, 0, 2, tzinfo=datetime.timezone(
        datetime.timedelta(hours=1)))
    doc.expire_at(aware)
    await api.save(doc)
    assert conn.zscore('Doc:-expiry-', '1') == 4102444802000


async def test_model_default_ttl_applies_to_new_entities_only(api, conn):
    Doc = make_doc(ttl=100)
    doc = Doc(name='a')
    await api.save(doc)
    assert 99 < (await api.ttl(doc)) <= 100
    doc.persist()
    await api.save(doc)
    doc.n = 5
    await api.save(doc)                          # an update does not bring the default back
    assert (await api.ttl(doc)) is None
    other = Doc(name='b')
    other.persist()                     # an explicit request wins over the default
    await api.save(other)
    assert (await api.ttl(other)) is None


async def test_saves_keep_the_expiry_unless_the_model_renews(api, conn):
    Doc = make_doc(ttl=100)
    doc = Doc(name='a')
    await api.save(doc)
    conn.zadd('Doc:-expiry-', {'1': conn.zscore('Doc:-expiry-', '1') - 50000})
    conn.hset('Doc:1', '-expire-at-', int(conn.zscore('Doc:-expiry-', '1')))
    doc.n = 1
    await api.save(doc)
    assert 49 < (await api.ttl(doc)) <= 50

    Renewing = make_doc(ttl=100, renew=True, name='Renewing')
    ren = Renewing(name='a')
    await api.save(ren)
    conn.zadd('Renewing:-expiry-', {'1': conn.zscore('Renewing:-expiry-', '1') - 50000})
    ren.n = 1
    await api.save(ren)
    assert 99 < (await api.ttl(ren)) <= 100
    ren.persist()
    await api.save(ren)
    ren.n = 2
    await api.save(ren)                          # renewal restarts a running expiry only
    assert (await api.ttl(ren)) is None
    assert conn.hget('Renewing:1', '-expire-at-') is None


async def test_session_commit_writes_expiry_requests(api, conn):
    Doc = make_doc()
    doc = Doc(name='a')
    await api.commit()
    fresh()
    loaded = await api.get(Doc, doc.id)
    loaded.expire_in(30)
    await api.commit()
    assert 29 < (await api.ttl(loaded)) <= 30


# --------------------------------------------------------------------------- visibility
async def _expired_and_live(api, Doc):
    live = Doc(name='alpha beta', email='live@x', n=1, lon=10.0, lat=20.0)
    gone = Doc(name='alpha gamma', email='gone@x', n=2, lon=10.0, lat=20.0)
    gone.expire_in(TTL)
    await api.commit()
    time.sleep(PAST)
    return live, gone


@pytest.mark.parametrize('in_session', [False, True])
async def test_every_read_path_hides_expired_entities(api, conn, in_session):
    Doc = make_doc()

    class Note(rom.Model):
        doc = rom.ManyToOne('Doc', on_delete='no action')
        text = rom.Text()
    live, gone = await _expired_and_live(api, Doc)
    note = Note(doc=gone, text='x')
    await api.save(note)
    if not in_session:
        fresh()
    q = Doc.query
    assert await api.get(Doc, gone.id) is None
    assert [d.id for d in await api.get(Doc, [live.id, gone.id])] == [live.id]
    assert await api.get_by(Doc, email='gone@x') is None
    assert [d.id for d in await api.get_by(Doc, email=['gone@x', 'live@x'])] == [live.id]
    assert [d.id for d in await api.get_by(Doc, n=(0, 5))] == [live.id]
    assert [d.id for d in await api.get_by(Doc, name='alpha')] == [live.id]
    assert [d.id for d in await api.all(q.filter(name='alpha'))] == [live.id]
    assert await api.count(q.filter(name='alpha')) == 1
    assert await api.count(q.filter(n=(None, None))) == 1
    assert await api.count(q.filter(n=2)) == 0
    assert await api.first(q.filter(n=2)) is None
    assert [d.id for d in await api.list(q.filter(n=(None, None)).order_by('-n').limit(0, 5))] == \
        [live.id]
    assert [d.id for d in await api.all(q.order_by('n'))] == [live.id]
    assert await api.count(q.order_by('n')) == 1
    assert [d.id for d in await api.all(q.startswith(name='al'))] == [live.id]
    assert await api.count(q.startswith(name='al')) == 1
    assert [d.id for d in await api.all(q.endswith(name='ma'))] == []
    assert [d.id for d in await api.all(q.like(name='al*a'))] == [live.id]
    assert [d.id for d in await api.all(q.near('where', 10.0, 20.0, 1, 'km'))] == [live.id]
    assert await api.all(q.filter(n=(None, None)).select('email')) == [{'email': 'live@x'}]
    assert await api.first(q.filter(n=(None, None)).select('email')) == {'email': 'live@x'}
    assert list(await api.iter_result(q.filter(n=(None, None)).select('email'), pagesize=1)) == [
        {'email': 'live@x'}]
    assert [d.id for d in await api.all(q)] == [live.id]              # unfiltered iteration
    assert await api.all(q.select('email')) == [{'email': 'live@x'}]
    assert [d.id for d in Doc.does_not_startwith('name', 'z')] == [live.id]
    key = await api.cached_result(q.filter(name='alpha'), 10)
    assert conn.zrange(key, 0, -1) == [str(live.id).encode()]
    fresh()
    assert await api.load(await api.get(Note, note.id), 'doc') is None    # relations
    if in_session:  # like the refresh of an entity deleted behind its back
        with pytest.raises(rom.exceptions.InvalidColumnValue, match='no primary key'):
            await api.refresh(gone, force=True)


async def test_unfiltered_iteration_over_an_indexed_pk_skips_expired_entities(api, conn):
    class Keyed(rom.Model):
        _ttl = 0
        id = rom.PrimaryKey(index=True)
        n = rom.Integer()
    first, second, third = Keyed(n=1), Keyed(n=2), Keyed(n=3)
    first.expire_in(TTL)
    await api.commit()
    time.sleep(PAST)
    fresh()
    assert [k.n for k in await api.list(Keyed.query.limit(0, 1))] == [2]
    assert [k.n for k in await api.list(Keyed.query.limit(1, 5))] == [3]
    assert (await api.first(Keyed.query)).n == 2


def test_fast_paths_apply_while_nothing_is_due(conn):
    from rom.testing import roundtrips
    Doc = make_doc()
    for i in range(5):
        doc = Doc(name='alpha n%d' % i, n=i)
        doc.expire_in(60)
    util.session.commit()
    fresh()
    queries = [
        (lambda: [d.n for d in Doc.query.order_by('-n').limit(1, 2)], [3, 2]),
        (lambda: [d.n for d in Doc.query.filter(n=(1, 3)).limit(0, 2)], [1, 2]),
        (lambda: [d.n for d in Doc.query.startswith(name='alp').limit(0, 2)], [0, 1]),
        (lambda: Doc.query.filter(name='alpha').count(), 5),
        (lambda: Doc.query.filter(n=(1, 3)).count(), 3),
        (lambda: Doc.query.startswith(name='alp').count(), 5),
    ]
    for query, expected in queries:
        with roundtrips(conn) as rt:
            assert query() == expected
        assert 'ZUNIONSTORE' not in rt.commands and 'ZINTERSTORE' not in rt.commands
        assert rt.commands[:2] == ['MULTI', 'EVAL'], rt.commands   # due count + fast path
    conn.zadd('Doc:-expiry-', {'1': 1})    # now one is due: the general path drops it
    for query, expected in [(lambda: Doc.query.filter(name='alpha').count(), 4),
                            (lambda: [d.n for d in Doc.query.order_by('n').limit(0, 2)],
                             [1, 2])]:
        with roundtrips(conn) as rt:
            assert query() == expected
        assert 'ZUNIONSTORE' in rt.commands


async def test_query_delete_deletes_live_entities_only(api, conn):
    Doc = make_doc()
    live, gone = await _expired_and_live(api, Doc)
    _expiry._next_check[Doc] = time.monotonic() + 60     # no cleanup by writes
    await api.delete(Doc.query.filter(name='alpha'))
    assert not conn.exists('Doc:%d' % live.id)
    assert conn.exists('Doc:%d' % gone.id)               # left to the expiry removal
    assert _expiry.sweep(Doc).removed == 1
    # (and the query's working set, kept for its timeout)
    assert [k for k in conn.keys('*') if conn.ttl(k) == -1] == [b'Doc:id:']


async def test_get_by_range_with_a_limit_skips_expired_entities(api, conn):
    Doc = make_doc()
    docs = [Doc(name='d%d' % i, n=i) for i in range(4)]
    await api.commit()
    docs[0].expire_in(TTL)
    await api.save(docs[0])
    time.sleep(PAST)
    fresh()
    assert [d.n for d in await api.get_by(Doc, n=(0, 10), _limit=(0, 2))] == [1, 2]
    assert [d.n for d in await api.get_by(Doc, n=(0, 10), _limit=(1, 5))] == [2, 3]
    assert [d.n for d in await api.get_by(Doc, n=0)] == []


@pytest.mark.parametrize('column', ['n', '-n'])
async def test_keyset_pages_skip_expired_entities(api, conn, column):
    Doc = make_doc()
    docs = [Doc(name='d%d' % i, n=i) for i in range(6)]
    await api.commit()
    _expiry._next_check[Doc] = time.monotonic() + 60     # no cleanup by writes
    for doc in docs[1::2]:
        doc.expire_in(TTL)
        await api.save(doc)
    time.sleep(PAST)
    fresh()
    query = Doc.query.order_by(column)
    first = await api.page(query, 2)
    second = await api.page(query, 2, first.next)
    assert [d.n for d in list(first) + list(second)] == sorted([0, 2, 4],
                                                              reverse=column == '-n')
    assert len(first) == 2 and await api.exists(query.filter(n=(0, 10)))
    assert await api.exists(query.filter(n=(1, 1))) is False
    assert [d.n for d in await api.list(query.filter(n=(0, 10))[1:3])] == sorted([0, 2, 4],
                                                                reverse=column == '-n')[1:3]


async def test_unfiltered_count_stays_an_upper_bound(api, conn):
    Doc = make_doc()
    await _expired_and_live(api, Doc)
    assert await api.count(Doc.query) == 2      # the id counter, as for deleted entities


async def test_one_to_many_hides_expired_children(api, conn):
    class Owner(rom.Model):
        docs = rom.OneToMany('Kid')

    class Kid(rom.Model):
        _ttl = 0
        owner = rom.ManyToOne('Owner', on_delete='cascade')
    owner = Owner()
    keep, drop = Kid(owner=owner), Kid(owner=owner)
    drop.expire_in(TTL)
    await api.commit()
    time.sleep(PAST)
    fresh()
    assert [k.id for k in await api.load(await api.get(Owner, owner.id), 'docs')] == [keep.id]


async def test_a_save_of_an_expired_entity_fails_and_force_recreates_it(api, conn):
    Doc = make_doc()
    _live, gone = await _expired_and_live(api, Doc)
    gone.n = 7
    with pytest.raises(EntityDeletedError, match='expired'):
        await api.save(gone)
    assert conn.hget('Doc:2', 'n') == b'2'
    await api.save(gone, force=True)
    assert (await api.get(Doc, gone.id)).n == 7
    assert (await api.ttl(gone)) is None
    assert conn.hget('Doc:2', '-expire-at-') is None
    assert [d.id for d in await api.all(Doc.query.filter(n=7))] == [gone.id]


async def test_transfer_refuses_expired_entities(api, conn):
    class Wallet(rom.Model):
        _ttl = 0
        balance = rom.Integer()

    class Txn(rom.Model):
        done = rom.Integer()
    a, b, txn = Wallet(balance=10), Wallet(balance=0), Txn(done=0)
    b.expire_in(TTL)
    await api.commit()
    time.sleep(PAST)
    with pytest.raises(ValueError, match='expired'):
        await api.transfer(a, b, 'balance', 5, txn, 'done')
    assert conn.hget('Wallet:1', 'balance') == b'10'


async def test_deferred_ids_and_expiry(api, conn):
    class Deferred(rom.Model):
        _defer_ids = True
        _ttl = 60
        name = rom.Text(unique=True)
    first = Deferred(name='a')
    second = Deferred(name='b')
    second.expire_in(TTL)
    await api.commit()
    assert 59 < (await api.ttl(first)) <= 60
    time.sleep(PAST)
    assert [d.name for d in await api.get(Deferred, [first.id, second.id])] == ['a']


@pytest.mark.parametrize('policies', [False, True])
async def test_removal_of_damaged_rows(api, conn, policies):
    Doc = make_doc()
    if policies:
        type('Ref', (rom.Model,), {'doc': rom.ManyToOne('Doc', on_delete='cascade')})
    for name in ('a', 'b'):
        Doc(name=name, email=name + '@x').expire_in(TTL)
    await api.commit()
    conn.hset('Doc:1', 'lon', b'\xff\xfe')          # not UTF-8: the row cannot be loaded
    conn.hset('Doc:1', 'n', 'not a number')
    conn.delete('Doc:2')                            # deleted behind rom's back
    time.sleep(PAST)
    assert _expiry.sweep(Doc).removed == 2
    assert not conn.exists('Doc:1', 'Doc:-expiry-')
    # the damaged row is gone with everything it claimed (its bookkeeping was readable);
    # the entries of the row deleted behind rom's back are orphans for `check` to report
    assert conn.hgetall('Doc:email:uidx') == {b'b@x': b'2'}
    assert sorted(conn.keys('Doc:name:*')) == [b'Doc:name:b:idx', b'Doc:name:pre',
                                               b'Doc:name:suf']
    assert conn.zrange('Doc:name:pre', 0, -1) == [b'b\x002']


# --------------------------------------------------------------------------- removal
async def live_then_gone(api, conn, Doc):
    """Saves a live Doc (id 1), dumps the database, then saves a Doc (id 2) that expires in
    TTL with an unsafe-column key: ``(live, gone, dump before gone)``."""
    live = Doc(name='alpha beta', email='live@x', n=1, lon=10.0, lat=20.0)
    await api.save(live)
    before = dump_database(conn)
    gone = Doc(name='alpha gamma', email='gone@x', n=2, lon=11.0, lat=21.0)
    gone.expire_in(TTL)
    await api.save(gone)
    conn.set('Doc:%d:notes' % gone.id, b'unsafe data')
    return live, gone, before


async def test_removal_leaves_exactly_the_database_without_the_entity(api, conn):
    Doc = make_doc()
    _live, _gone, before = await live_then_gone(api, conn, Doc)
    assert conn.exists('Doc:2:notes') and conn.exists('Doc:-expiry-')
    time.sleep(PAST)
    result = _expiry.sweep(Doc)
    assert (result.removed, result.blocked, result.seen) == (1, 0, 1)
    after = dump_database(conn)
    assert after.pop(b'Doc:id:') == (b'string', b'2')
    assert before.pop(b'Doc:id:') == (b'string', b'1')
    assert after == before
    assert _expiry.sweep(Doc).seen == 0


async def test_unique_values_are_released_on_expiry(api, conn):
    Doc = make_doc()
    _live, gone = await _expired_and_live(api, Doc)
    # before removal: the expired owner's claims are taken over
    again = Doc(name='alpha gamma', email='gone@x', n=2)
    await api.save(again)                        # (its write also removes the expired entity)
    assert (await api.get_by(Doc, email='gone@x')).id == again.id
    _expiry.sweep(Doc)
    assert not conn.exists('Doc:%d' % gone.id)
    assert conn.hget('Doc:email:uidx', 'gone@x') == str(again.id).encode()
    assert audit_model(Doc).ok


async def test_unique_values_of_live_entities_stay_taken(api, conn):
    Doc = make_doc()
    doc = Doc(email='a@x')
    doc.expire_in(60)
    await api.save(doc)
    with pytest.raises(UniqueKeyViolation):
        await api.save(Doc(email='a@x'))


def test_writes_remove_due_entities(conn):
    Doc = make_doc(ttl=TTL)
    first = Doc(name='a', email='a@x')
    first.save()
    time.sleep(PAST)
    Doc(name='b').save()                # this write sweeps the due one
    assert not conn.exists('Doc:%d' % first.id)
    assert conn.hget('Doc:email:uidx', 'a@x') is None
    assert conn.zrange('Doc:-expiry-', 0, -1) == [b'2']


def test_write_cleanup_is_bounded(conn):
    Doc = make_doc(ttl=60)
    for i in range(_expiry.WRITE_SWEEP + 5):
        Doc(name='x%d' % i)
    util.session.commit()
    for i in range(1, _expiry.WRITE_SWEEP + 6):      # all due now
        conn.zadd('Doc:-expiry-', {str(i): 1})
        conn.hset('Doc:%d' % i, '-expire-at-', 1)
    _expiry._next_check.clear()
    Doc(name='y').save()
    assert conn.zcard('Doc:-expiry-') == 6   # 10 of the 15 due ones removed, plus the new one


async def test_sweep_writes_nothing_for_an_entity_that_is_no_longer_due(api, conn):
    Doc = make_doc()
    doc = Doc(name='a', email='a@x')
    doc.expire_in(60)
    await api.save(doc)
    before = dump_database(conn)
    removed = _expiry._remove_plain(Doc, conn, [(str(doc.id), {'name': 'a', 'email': 'a@x'})])
    assert removed == 0
    assert dump_database(conn) == before


async def test_sweep_continues_after_a_renewed_entity(api, conn):
    Doc = make_doc()
    docs = [Doc(name=str(i)) for i in range(3)]
    for doc in docs:
        doc.expire_in(60)
    await api.commit()
    conn.zadd('Doc:-expiry-', {'1': 1, '3': 1})  # due (by the set), 2 is not
    rows = [(str(d.id), {'name': d.name}) for d in docs]
    assert _expiry._remove_plain(Doc, conn, rows) == 2
    assert sorted(conn.keys('Doc:[0-9]')) == [b'Doc:2']


def _parent_model():
    return type('Parent', (rom.Model,), {'_ttl': 0, 'name': rom.Text()})


async def _expire_soon(api, entity):
    """Expire ``entity`` TTL after now (its referrers are saved: a slow commit cannot let it
    expire before them)."""
    entity.expire_in(TTL)
    await api.save(entity)
    time.sleep(PAST)


async def test_cascade_and_set_null_apply_on_expiry(api, conn):
    Parent = _parent_model()

    class Child(rom.Model):
        parent = rom.ManyToOne('Parent', on_delete='cascade')

    class Watcher(rom.Model):
        parent = rom.ManyToOne('Parent', on_delete='set null')
    parent = Parent(name='p')
    child, watcher = Child(parent=parent), Watcher(parent=parent)
    await api.commit()
    await _expire_soon(api, parent)
    result = _expiry.sweep(Parent)
    assert result.removed == 1
    fresh()
    assert await api.get(Child, child.id) is None and not conn.exists('Child:%d' % child.id)
    assert (await api.get(Watcher, watcher.id)).parent is None
    assert conn.hget('Watcher:%d' % watcher.id, 'parent') is None


async def test_restrict_keeps_an_expired_entity_until_its_referrers_go(api, conn):
    Parent = _parent_model()

    class Child(rom.Model):
        parent = rom.ManyToOne('Parent', on_delete='restrict')
    parent = Parent(name='p')
    child = Child(parent=parent)
    await api.commit()
    await _expire_soon(api, parent)
    job = _expiry.ExpiryJob(Parent)
    assert list(job)[-1] == (1, 1)
    assert (job.removed, job.blocked) == (0, 1)
    assert await api.get(Parent, parent.id) is None            # still invisible
    await api.delete(child)
    assert _expiry.sweep(Parent).removed == 1
    assert not conn.exists('Parent:%d' % parent.id)


def test_writes_back_off_when_restrict_keeps_every_due_entity(conn):
    from rom.testing import roundtrips

    class Parent(rom.Model):
        _ttl = 60
        _ids_per_block = 1  # one INCR per new entity: the round trips below are exact
        name = rom.Text()

    class Child(rom.Model):
        parent = rom.ManyToOne('Parent', on_delete='restrict')
    for _ in range(_expiry.WRITE_SWEEP + 2):
        Child(parent=Parent(name='p'))
    util.session.commit()
    for i in range(1, _expiry.WRITE_SWEEP + 3):  # all due now
        conn.zadd('Parent:-expiry-', {str(i): 1})
        conn.hset('Parent:%d' % i, '-expire-at-', 1)
    _expiry._next_check.clear()
    Parent(name='q').save()               # sweeps: all kept
    with roundtrips(conn) as rt:
        Parent(name='r').save()           # no second sweep within WRITE_SWEEP_INTERVAL
    assert rt.count == 2                  # INCRBY, EVALSHA
    assert conn.zcard('Parent:-expiry-') == _expiry.WRITE_SWEEP + 4


async def test_removal_runs_no_delete_hooks(api, conn):
    calls = []

    class Hooked(rom.Model):
        _ttl = TTL
        name = rom.Text()

        def _before_delete(self):
            calls.append('before')

        def _after_delete(self):
            calls.append('after')
    await api.save(Hooked(name='a'))
    time.sleep(PAST)
    assert _expiry.sweep(Hooked).removed == 1
    assert calls == []


async def test_user_delete_of_an_expiring_entity_removes_its_expiry_entry(api, conn):
    Doc = make_doc()
    doc = Doc(name='a')
    doc.expire_in(60)
    await api.save(doc)
    await api.delete(doc)
    assert conn.keys('*') == [b'Doc:id:']


# --------------------------------------------------------------------------- job, reaper, CLI
async def test_expiry_job_reports_progress_in_blocks(api, conn):
    Doc = make_doc(ttl=TTL)
    for i in range(25):
        Doc(name='n%d' % i, email='e%d' % i)
    keeper = Doc(name='keep')
    keeper.persist()
    await api.commit()
    time.sleep(PAST)
    job = _expiry.ExpiryJob(Doc, block_size=10)
    steps = list(job)
    assert steps == [(10, 25), (20, 25), (25, 25), (25, 25)]
    assert job.removed == 25
    assert sorted(conn.keys('Doc:[0-9]*')) == [('Doc:%d' % keeper.id).encode()]
    assert audit_model(Doc).ok


async def test_reaper_removes_expired_entities_in_the_background(api, conn):
    Doc = make_doc(ttl=TTL)
    Doc(name='a', email='a@x')
    await api.commit()
    reaper = _expiry.Reaper(interval=0.01)
    reaper.start()
    try:
        deadline = time.time() + 5
        while conn.exists('Doc:1') and time.time() < deadline:
            time.sleep(0.01)
    finally:
        reaper.stop()
    assert not reaper.is_alive()
    assert not conn.exists('Doc:1') and reaper.removed == 1
    assert conn.hget('Doc:email:uidx', 'a@x') is None
    with pytest.raises(ValueError):
        _expiry.Reaper(interval=0)


def test_reaper_reports_errors_as_warnings_and_goes_on(conn):
    class Broken:
        _ttl = 1                        # and no _namespace: every round fails
    reaper = _expiry.Reaper(models=[Broken], interval=0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        reaper.start()
        time.sleep(0.1)
        reaper.stop()
    assert reaper.rounds >= 2
    assert any('reaper' in str(w.message) for w in caught)


def _cli(*args, url):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS_DIR, ROOT]))
    env.pop('ROM_REDIS_URI', None)
    return subprocess.run([sys.executable, '-m', 'rom'] + list(args) + ['--url', url],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


async def test_cli_expire(api, conn, redis_url):
    if TESTS_DIR not in sys.path:
        sys.path.insert(0, TESTS_DIR)
    import importlib
    models = sys.modules.get('expiry_models')
    models = importlib.reload(models) if models else importlib.import_module('expiry_models')
    for i in range(5):
        models.ExpToken(value='v%d' % i, n=i)
    await api.commit()
    time.sleep(PAST)
    result = _cli('expire', 'expiry_models:ExpToken', url=redis_url)
    assert result.returncode == 0, result.stderr
    assert 'ExpToken: 5 expired entities removed' in result.stdout
    assert conn.keys('ExpToken:*') == [b'ExpToken:id:']
    result = _cli('expire', 'expiry_models:ExpForever', url=redis_url)
    assert result.returncode == 2 and 'does not declare _ttl' in result.stderr
    result = _cli('check', 'expiry_models:ExpToken', url=redis_url)
    assert result.returncode == 0, result.stdout


async def test_cli_expire_in_process_shows_progress_on_a_terminal(api, conn):
    import io
    from rom import _cli

    class TtyStream(io.StringIO):
        def isatty(self):
            return True
    Doc = make_doc(ttl=TTL)
    for i in range(3):
        Doc(name='n%d' % i)
    await api.commit()
    time.sleep(PAST)
    sys.modules['expiry_inline'] = type(sys)('expiry_inline')
    sys.modules['expiry_inline'].Doc = Doc
    out, err = io.StringIO(), TtyStream()
    try:
        code = _cli.main(['expire', 'expiry_inline:Doc', '--block-size', '2'], out, err)
    finally:
        del sys.modules['expiry_inline']
    assert code == 0
    assert 'Doc: 3 expired entities removed' in out.getvalue()
    assert 'expire Doc' in err.getvalue() and '3/3' in err.getvalue()


# --------------------------------------------------------------------------- audit
async def test_audit_understands_expiry(api, conn):
    Doc = make_doc()
    live, gone = await _expired_and_live(api, Doc)
    assert audit_model(Doc).ok, audit_model(Doc).findings     # expired, not removed yet
    _expiry._next_check[Doc] = time.monotonic() + 60          # no cleanup by writes
    later = Doc(name='later', email='later@x')
    later.expire_in(60)
    await api.save(Doc(name='again', email='gone@x'))          # takes the expired claim over
    await api.commit()
    assert conn.exists('Doc:%d' % gone.id)
    assert audit_model(Doc).ok, audit_model(Doc).findings
    conn.zrem('Doc:-expiry-', str(later.id))          # a TTL'd row without its entry
    report = audit_model(Doc)
    assert report.counts == {'missing-entry': 1}
    conn.zadd('Doc:-expiry-', {str(later.id): 5, '99': 5})
    report = audit_model(Doc)
    assert report.counts == {'bookkeeping': 1, 'dangling-entry': 1}


async def test_audit_flags_expiry_data_of_models_without_ttl(api, conn):
    class Plain(rom.Model):
        n = rom.Integer()
    await api.save(Plain(n=1))
    conn.zadd('Plain:-expiry-', {'1': 5})
    conn.hset('Plain:1', '-expire-at-', 5)
    assert audit_model(Plain).counts == {'unknown-index': 1, 'bookkeeping': 1}



# --------------------------------------------------------------------------- concurrency
def test_concurrent_writers_readers_and_reaper_leave_a_clean_database(conn):
    import random
    import threading

    class Busy(rom.Model):
        _ttl = 0.02
        tag = rom.Text(unique=True)
        n = rom.Integer(index=True)
        words = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True)
    deadlines = {}                      # id -> local time after which it must be invisible
    errors = []
    stop = time.time() + 1.0

    def writer(seed):
        rnd = random.Random(seed)
        try:
            while time.time() < stop:
                entity = Busy(tag='t%d' % rnd.randrange(6), n=rnd.randrange(5),
                              words=rnd.choice(['a b', 'b c', 'c']))
                ttl = rnd.choice([0.01, 0.02, 0.04])
                entity.expire_in(ttl)
                deadlines[entity.id] = float('inf')    # being written
                try:
                    entity.save()
                except UniqueKeyViolation:
                    util.session.forget(entity)
                    continue
                deadlines[entity.id] = time.time() + ttl  # expires before this
                if rnd.random() < 0.3:
                    entity.n = rnd.randrange(5)
                    try:
                        entity.save()
                    except EntityDeletedError:
                        pass
                if rnd.random() < 0.2:
                    entity.delete()
                util.session.rollback()
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    def reader():
        try:
            while time.time() < stop:
                start = time.time()
                for found in (Busy.query.filter(n=(0, 5)).all() + Busy.query.startswith(
                        words='b').all() + [e for e in [Busy.get_by(tag='t1')] if e]):
                    assert start < deadlines[found.id] + 0.002, found.id
                util.session.rollback()
        except Exception as exc:
            errors.append(exc)

    reaper = _expiry.Reaper(interval=0.005, block_size=5)
    reaper.start()
    threads = [threading.Thread(target=writer, args=(s,)) for s in range(3)]
    threads.append(threading.Thread(target=reader))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reaper.stop()
    assert errors == []
    assert len(deadlines) > 20
    time.sleep(0.06)
    list(_expiry.ExpiryJob(Busy))
    assert audit_model(Busy).ok, audit_model(Busy).findings
    # what is left: the id counter and query results kept for their timeout (with a TTL)
    left = [k for k in conn.keys('Busy:*') if k != b'Busy:id:']
    assert all(conn.ttl(k) > 0 for k in left), left
