"""Sharded models (``_shards = N``): layout, routing, and scatter-gather queries that equal
the same queries on an unsharded model, on a real local Redis Cluster (and on one server).

Nothing is mocked: the cluster is the run's shared local one (``cluster`` in tests/conftest.py,
3 masters, ``rom.testing.start_local_cluster``).
"""
from __future__ import annotations

import random
from typing import Any, Dict, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rom
import rom.util
from rom import util
from rom._ids import forget_blocks
from rom._shard import forget_checks
from rom._limits import MAX_SHARDS
from rom.exceptions import ORMError, QueryError
from rom.testing import instrument, roundtrips

pytestmark = pytest.mark.cluster


def _loc(data: Any) -> Dict[str, float]:
    return {'lon': data['lon'], 'lat': data['lat']}


def columns() -> Dict[str, Any]:
    """The columns of the sharded model and of its unsharded twin (fresh objects)."""
    return {
        'n': rom.Integer(index=True),
        'f': rom.Float(index=True),
        'name': rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True, suffix=True),
        'cat': rom.Text(index=True, keygen=rom.IDENTITY),
        'email': rom.Text(unique=True),
        'lon': rom.Float(),
        'lat': rom.Float(),
        'geo_index': [rom.GeoIndex('loc', _loc)],
    }


def declare(shards: int = 5) -> Tuple[Any, Any]:
    sharded = type('ShItem', (rom.Model,), dict(columns(), _shards=shards))
    flat = type('FlatItem', (rom.Model,), dict(columns(), _cluster=True))
    return sharded, flat


WORDS = ['ant', 'bee', 'cat', 'dog', 'eel', 'fox', 'gnu', 'hen']
CATS = ['red', 'green', 'blue', 'x']


def fill(models: List[Any], rng: random.Random, count: int) -> None:
    rows = []
    for i in range(count):
        rows.append(dict(
            n=rng.randint(-20, 20), f=rng.choice([0.5, 1.25, -3.0, rng.random() * 100]),
            name=' '.join(rng.sample(WORDS, rng.randint(1, 3))), cat=rng.choice(CATS),
            email='user%d@example.com' % i, lon=rng.uniform(-1, 1), lat=rng.uniform(-1, 1)))
    for model in models:
        for row in rows:
            model(**row).save()
    util.session.rollback()


def ids(items: Any) -> List[int]:
    return [item.id for item in items]


def random_query(model: Any, rng: random.Random) -> Tuple[Any, bool]:
    """A random query on ``model``; True when its result order is defined (compare lists)."""
    query = model.query
    kinds = rng.sample(['n', 'f', 'name', 'cat', 'prefix', 'suffix', 'like', 'near'],
                       rng.randint(1, 3))
    for kind in kinds:
        if kind == 'n':
            lo = rng.randint(-25, 20)
            query = query.filter(n=(lo, lo + rng.randint(0, 30)))
        elif kind == 'f':
            query = query.filter(f=(rng.choice([None, 0, 1.25]), rng.choice([None, 50])))
        elif kind == 'name':
            query = query.filter(name=rng.choice(WORDS))
        elif kind == 'cat':
            query = query.filter(cat=rng.sample(CATS, rng.randint(1, 2)))
        elif kind == 'prefix':
            query = query.startswith(name=rng.choice(WORDS)[:rng.randint(1, 2)])
        elif kind == 'suffix':
            query = query.endswith(name=rng.choice(WORDS)[-1:])
        elif kind == 'like':
            query = query.like(name=rng.choice(['?e?', 'a*', '*o*', 'g?u']))
        else:
            query = query.near('loc', rng.uniform(-1, 1), rng.uniform(-1, 1),
                               rng.choice([20, 60, 150]), 'km', rng.choice([None, 3, 12]))
    # several filters, no order: the working set's scores depend on the filters' order, by
    # work estimates (summed over the shards: every shard orders alike); a near() with a
    # count is estimated as its count unsharded, as the shards' sizes sharded
    ordered = len(kinds) == 1 or not any(
        getattr(f, 'count', None) for f in query._filters)
    if rng.random() < 0.7:
        query = query.order_by(rng.choice(['n', '-n', 'f', '-f']))
        ordered = True
    if rng.random() < 0.6:
        query = query.limit(rng.randint(0, 30), rng.randint(1, 25))
    return query, ordered


def same_query(query: Any, model: Any) -> Any:
    inner = getattr(query, '_query', query)
    return inner.replace(model=model)


@pytest.mark.parametrize('seed', [1, 2, 3, 4, 5, 6])
def test_queries_equal_unsharded(cconn: Any, seed: int) -> None:
    """Random data and random queries: the sharded results equal the unsharded ones."""
    sharded, flat = declare()
    rng = random.Random(seed)
    fill([sharded, flat], rng, 160)
    assert sharded.query.count() == flat.query.count()  # (an upper bound: the id counter)
    assert ids(sharded.query.all()) == ids(flat.query.all()) == list(range(1, 161))
    for _ in range(60):
        query, ordered = random_query(sharded, rng)
        twin = same_query(query, flat)
        got, want = ids(query.all()), ids(twin.all())
        assert query.count() == twin.count(), query
        if ordered:
            assert got == want, query
        else:
            assert sorted(got) == sorted(want), query
            if query._limit is None:
                continue
        assert (query.first() or None) is None or query.first().id == got[0]
        assert query.exists() == twin.exists()
        if ordered:
            rows = query.select('email', 'n', include_pk=True).all()
            assert rows == twin.select('email', 'n', include_pk=True).all()
    util.session.rollback()


def test_behaviour_fixes_of_the_sharded_run(cconn: Any, roundtrips: Any) -> None:
    """What the sharded run of the behaviour tests (ROM_TEST_SHARDS) found, on the cluster."""
    sharded, flat = declare(4)
    fill([sharded, flat], random.Random(3), 40)
    for model in (sharded, flat):
        # near with a count: the count nearest of the whole model, then the other filters
        near = model.query.near('loc', 0.1, -0.2, 500, 'km', 7)
        assert len(near.all()) == 7 == near.count()
        assert model.query.limit(3, 0).first() is None
    assert sharded.query.order_by('n').limit(0, 0).first().id == \
        flat.query.order_by('n').limit(0, 0).first().id
    assert ids(sharded.query.near('loc', 0.1, -0.2, 500, 'km', 7)) == \
        ids(flat.query.near('loc', 0.1, -0.2, 500, 'km', 7))
    assert sorted(ids(sharded.query.near('loc', 0.1, -0.2, 500, 'km', 9).filter(n=(-10, 10)))) \
        == sorted(ids(flat.query.near('loc', 0.1, -0.2, 500, 'km', 9).filter(n=(-10, 10))))
    # first() of an ordered query: the first id's entity, tracked by the session
    first = sharded.query.filter(n=(-20, 20)).order_by('-f').first()
    assert first.id == flat.query.filter(n=(-20, 20)).order_by('-f').first().id
    assert first._pk in util.session.known
    # a hand-written cursor holds the index's own score, as on an unsharded model
    for order in ('n', '-n'):
        low, high = ('-inf:0', 'inf:0') if order == 'n' else ('inf:0', '-inf:0')
        assert ids(sharded.query.order_by(order).page(50, after=low).items) == \
            ids(flat.query.order_by(order).page(50, after=low).items)
        assert sharded.query.order_by(order).page(50, after=high).items == []
    # builders and iter_result() do no I/O; the unfiltered probe reads select rows
    with roundtrips(cconn) as rt:
        stream = sharded.query.filter(n=(0, 5)).order_by('n').limit(0, 3).iter_result()
    assert rt.count == 0
    assert ids(stream) == ids(flat.query.filter(n=(0, 5)).order_by('n').limit(0, 3))
    assert sharded.query.select('n').limit(0, 3).all() == flat.query.select('n').limit(0, 3).all()
    # _apply_changes routes to the row's shard; an explicit id is refused without taking one
    row = sharded.get(6)
    changes, stored = sharded._apply_changes(row._last, dict(row.to_dict(), n=99))
    assert changes == 1 and stored['n'] == '99'
    assert cconn.hget('{ShItem.2}:6', 'n') == b'99' and sharded.get_by(n=99)[0].id == 6
    counter = cconn.get('{ShItem}:id:')
    with pytest.raises(rom.exceptions.InvalidColumnValue):
        sharded(id=500, n=1)
    assert cconn.get('{ShItem}:id:') == counter
    util.session.rollback()


def test_select_first_slices_and_iteration(cconn: Any) -> None:
    sharded, flat = declare(4)
    fill([sharded, flat], random.Random(7), 80)
    s = sharded.query.filter(n=(-5, 10)).order_by('-f')
    f = flat.query.filter(n=(-5, 10)).order_by('-f')
    assert s.select('email', 'n').all() == f.select('email', 'n').all()
    assert s.select('n', include_pk=True, ff=rom.query._tuple_data_factory).limit(3, 4).all() \
        == f.select('n', include_pk=True, ff=rom.query._tuple_data_factory).limit(3, 4).all()
    assert ids(s[5:9]) == ids(f[5:9])
    assert s[3].id == f[3].id
    assert ids(s.iter_result(pagesize=7)) == ids(f.iter_result(pagesize=7))
    for pagesize in (1, 3, 50):
        stream = sharded.query.filter(cat=['red', 'x']).order_by('n').iter_result(
            pagesize=pagesize)
        assert ids(stream) == ids(flat.query.filter(cat=['red', 'x']).order_by('n'))
    assert ids(sharded.query.filter(f=(None, 40)).iter_result(pagesize=4)) == \
        ids(flat.query.filter(f=(None, 40)))
    assert not [k for k in cconn.scan_iter('{ShItem.*') if k.count(b':') == 1 and
                b'-' in k]  # no working set left behind
    assert ids(sharded.query.limit(10, 15)) == ids(flat.query.limit(10, 15))
    assert ids(sharded.query.all()) == list(range(1, 81))
    assert s._search() == [str(i).encode() for i in ids(f.all())]
    with pytest.raises(IndexError):
        s[10000]


def test_page_walks_the_whole_order(cconn: Any) -> None:
    sharded, flat = declare(6)
    fill([sharded, flat], random.Random(11), 90)
    for order in ('n', '-n', 'f'):
        walked: List[int] = []
        page = sharded.query.filter(cat=['red', 'blue', 'green']).order_by(order).page(7)
        while True:
            walked += ids(page)
            if page.next is None:
                break
            page = sharded.query.filter(cat=['red', 'blue', 'green']).order_by(order).page(
                7, page.next)
        assert walked == ids(flat.query.filter(cat=['red', 'blue', 'green']).order_by(order))
    for query in (lambda m: m.query.order_by('-f'), lambda m: m.query.order_by('n'),
                  lambda m: m.query.filter(n=(-8, 12)).order_by('-n')):  # from the index
        walked = []
        page = query(sharded).page(5)
        while True:
            walked += ids(page)
            if page.next is None:
                break
            page = query(sharded).page(5, page.next)
        assert walked == ids(query(flat))
    with pytest.raises(QueryError):
        sharded.query.page(3)


def test_get_by_index_near_and_query_delete(cconn: Any) -> None:
    sharded, flat = declare(3)
    fill([sharded, flat], random.Random(5), 60)
    assert ids(sharded.get_by(n=(0, 10))) == ids(flat.get_by(n=(0, 10)))
    assert ids(sharded.get_by(n=(0, 10), _limit=(2, 5))) == ids(flat.get_by(n=(0, 10),
                                                                          _limit=(2, 5)))
    assert ids(sharded.get_by(cat='red')) == ids(flat.get_by(cat='red'))
    near = ('loc', 0.1, 0.2, 70, 'km')
    assert ids(sharded.query.near(*near)) == ids(flat.query.near(*near))
    keys = sharded.query.filter(cat='red').cached_result(30)
    assert len(keys) == 3 and all(cconn.ttl(k) > 0 for k in keys)
    assert sum(cconn.zcard(k) for k in keys) == flat.query.filter(cat='red').count()
    sharded.query.filter(cat='red').delete(blocksize=4)
    flat.query.filter(cat='red').delete(blocksize=4)
    assert sharded.query.filter(cat='red').count() == 0
    assert ids(sharded.query.order_by('n')) == ids(flat.query.order_by('n'))
    util.session.rollback()
    assert sorted(e.email for e in sharded.does_not_startwith('name', ['a', 'b'])) == \
        sorted(e.email for e in flat.does_not_startwith('name', ['a', 'b']))


def test_layout_and_routing(cconn: Any) -> None:
    class Acct(rom.Model):
        _shards = 4
        n = rom.Integer(index=True)

    assert Acct._namespace == '{Acct}'
    assert [s._namespace for s in Acct._shard_models] == ['{Acct.%d}' % k for k in range(4)]
    items = [Acct(n=i) for i in range(12)]
    assert [type(a) for a in items] == [Acct._shard_models[a.id % 4] for a in items]
    assert all(isinstance(a, Acct) for a in items)
    for item in items:
        item.save()
    assert cconn.get('{Acct}:shards') == b'4'
    assert int(cconn.get('{Acct}:id:')) >= 12
    # each row and its index entries live in its shard's slot
    for item in items:
        slot = cconn.keyslot('{Acct.%d}' % (item.id % 4))
        assert cconn.keyslot('{Acct.%d}:%d' % (item.id % 4, item.id)) == slot
        assert cconn.zscore('{Acct.%d}:n:idx' % (item.id % 4), str(item.id)) == item.n
    # the shards are spread over the masters
    assert len({cconn.get_node_from_key(s._namespace).name for s in Acct._shard_models}) > 1
    util.session.rollback()
    got = Acct.get(7)
    assert got.n == 6 and type(got) is Acct._shard_models[3]
    assert ids(Acct.get([3, 1, 99, 2])) == [3, 1, 2]
    copy = got.copy()
    assert copy.id != got.id and copy.n == 6
    got.delete()
    assert Acct.get(7) is None and not cconn.exists('{Acct.3}:7')
    with pytest.raises(ORMError):
        Acct._shard_models[0](n=1)


def test_one_round_trip_per_save_get_delete(cconn: Any) -> None:
    class Rt(rom.Model):
        _shards = 6
        n = rom.Integer(index=True)

    Rt(n=0).save()  # metadata checked, scripts cached
    counted = [instrument(node.redis_connection) for node in cconn.get_nodes()]
    for node in cconn.get_nodes():
        node.redis_connection.connection_pool.reset()

    def trips(op: Any) -> int:
        from contextlib import ExitStack
        util.session.rollback()
        with ExitStack() as stack:
            counters = [stack.enter_context(roundtrips(c)) for c in counted]
            op()
        return sum(rt.count for rt in counters)

    for k in range(2):
        entity = Rt(n=5)
        assert trips(entity.save) <= 2  # (a new block of ids at most once)
    assert trips(lambda: Rt.get(2)) == 1
    assert trips(lambda: Rt.get(2).delete()) == 2
    masters = len({cconn.get_node_from_key(s._namespace).name for s in Rt._shard_models})
    assert masters == 3
    # queries: one round trip per master (all its shards' work in one packed write)
    assert trips(lambda: Rt.query.filter(n=5).count()) == masters
    assert trips(lambda: Rt.query.filter(n=(1, 9)).count()) == masters
    assert trips(lambda: Rt.query.count()) == 1
    # an ordered page: the shards' top entries, then the rows (one call per shard holding one)
    assert trips(lambda: Rt.query.order_by('-n').limit(0, 2).all()) <= masters + 2
    assert trips(lambda: Rt.query.filter(n=5).order_by('n').count()) == masters
    assert trips(lambda: Rt.query.filter(n=5).order_by('n').page(1)) <= 2 * masters + 1


def test_scripts_flushed_and_multi_filter_round_trips(cconn: Any, scripts_reloaded: None
                                                       ) -> None:
    """After SCRIPT FLUSH on every master the packed EVALSHA work is sent again with EVAL;
    a query with two filters takes two rounds (estimates, then the work)."""
    sharded, flat = declare(6)
    fill([sharded, flat], random.Random(9), 50)
    query = sharded.query.filter(n=(-10, 10), cat=['red', 'blue']).order_by('-f').limit(1, 8)
    want = ids(same_query(query, flat))
    assert ids(query) == want
    for node in cconn.get_primaries():
        cconn.get_redis_connection(node).script_flush()
    util.session.rollback()
    assert ids(query) == want
    assert query.count() == same_query(query, flat).count()
    counted = [instrument(node.redis_connection) for node in cconn.get_nodes()]
    for node in cconn.get_nodes():
        node.redis_connection.connection_pool.reset()
    masters = len({cconn.get_node_from_key(s._namespace).name for s in sharded._shard_models})
    from contextlib import ExitStack
    with ExitStack() as stack:
        counters = [stack.enter_context(roundtrips(c)) for c in counted]
        assert query.count() >= 0
    assert sum(rt.count for rt in counters) == 2 * masters


def test_work_sent_to_a_master_that_lost_the_slot_follows_moved(cconn: Any,
                                                                  monkeypatch: Any) -> None:
    """A shard's packed work that reaches a master not serving its slot (as after a
    resharding or failover) is answered MOVED and sent again through the cluster client."""
    from rom import _shard_batch
    sharded, flat = declare(6)
    fill([sharded, flat], random.Random(12), 40)
    real = _shard_batch._node_client
    wrong = {}

    def misrouted(conn: Any, shard: Any) -> Any:
        name, client = real(conn, shard)
        if shard._shard_index == 1:  # always a master that does not hold shard 1's slot
            other = next(n for n in conn.get_primaries() if n.name != name)
            wrong['node'] = other.name
            return other.name, conn.get_redis_connection(other)
        return name, client

    monkeypatch.setattr(_shard_batch, '_node_client', misrouted)
    for query in (lambda m: m.query.order_by('-n').limit(0, 12),
                  lambda m: m.query.filter(cat='red', n=(-5, 15)).order_by('f')):
        util.session.rollback()
        assert ids(query(sharded)) == ids(query(flat))
        assert query(sharded).count() == query(flat).count()
    assert wrong


def test_declaration_errors(cconn: Any) -> None:
    with pytest.raises(ORMError):
        type('Bad1', (rom.Model,), {'_shards': -1, 'n': rom.Integer()})
    with pytest.raises(ORMError):
        type('Bad2', (rom.Model,), {'_shards': 2, '_namespace': '{x}', 'n': rom.Integer()})
    with pytest.raises(ORMError):
        type('Bad3', (rom.Model,), {'_shards': 2, 'n': rom.Integer(),
                                    'unique_together': [('n', 'm')], 'm': rom.Integer()})


def test_shard_count_bound(cconn: Any) -> None:
    """``_shards`` goes up to MAX_SHARDS (1024); one more is refused at class creation."""
    assert MAX_SHARDS == 1024
    with pytest.raises(ORMError, match=r'Over\._shards must be at most 1024, not 1025'):
        type('Over', (rom.Model,), {'_shards': 1025, 'n': rom.Integer()})
    assert 'Over' not in rom.columns.MODELS
    top = type('Top', (rom.Model,), {'_shards': 1024, 'n': rom.Integer(index=True)})
    assert len(top._shard_models) == 1024
    rows = [top(n=i) for i in range(3)]
    util.session.commit()
    assert sorted(e.id for e in top.query.filter(n=(0, 5)).all()) == [r.id for r in rows]


def test_relations_between_sharded_and_cluster_models(cconn: Any) -> None:
    """ManyToOne to and from a sharded model, OneToMany, cascade / restrict / set null
    across the slots (one atomic call per slot, rom._cross_slot), audits clean after."""
    from rom._audit import audit_model
    from rom.exceptions import RestrictError

    class Company(rom.Model):
        _cluster = True
        name = rom.Text(index=True, keygen=rom.IDENTITY)
        staff = rom.OneToMany('Member', 'company')

    class Member(rom.Model):
        _shards = 4
        company = rom.ManyToOne('Company', on_delete='cascade')
        nick = rom.Text(unique=True)
        posts = rom.OneToMany('Post', 'author')
        notes = rom.OneToMany('Note', 'member')

    class Post(rom.Model):
        _cluster = True
        author = rom.ManyToOne('Member', on_delete='cascade')
        title = rom.Text(index=True, keygen=rom.IDENTITY)

    class Note(rom.Model):
        _cluster = True
        member = rom.ManyToOne('Member', on_delete='set null')
        text = rom.Text()

    class Badge(rom.Model):
        _cluster = True
        holder = rom.ManyToOne('Member', on_delete='restrict')

    acme, other = Company(name='acme'), Company(name='other')
    members = [Member(company=acme if i % 3 else other, nick='m%d' % i) for i in range(9)]
    for entity in [acme, other] + members:
        entity.save()
    for member in members:
        Post(author=member, title='p%d' % member.id).save()
        Note(member=member, text='n').save()
    util.session.rollback()
    assert sorted(m.nick for m in Company.get(acme.id).staff) == \
        sorted(m.nick for m in members if m.company.id == acme.id)
    member = Member.get(members[4].id)
    assert member.company.name == 'acme' and [p.title for p in member.posts] == [
        'p%d' % member.id]
    assert sorted(ids(Member.query.filter(company=acme.id))) == sorted(
        m.id for m in members if m.company.id == acme.id)
    with pytest.raises(QueryError):
        Member.query.filter(company=acme.id).delete()
    badge = Badge(holder=members[1])
    badge.save()
    with pytest.raises(RestrictError):
        Member.get(members[1].id).delete()
    badge.delete()
    Member.get(members[1].id).delete()  # cascades to its post, nulls its note
    util.session.rollback()
    assert Post.get_by(title='p%d' % members[1].id) == []
    assert [n.member for n in Note.query.all() if n.member is None] != []
    Company.get(acme.id).delete()  # cascades to its members (every shard), their posts
    util.session.rollback()
    left = Member.query.all()
    assert sorted(m.nick for m in left) == sorted(
        m.nick for m in members if m.company.id == other.id)
    assert sorted(p.author.nick for p in Post.query.all()) == sorted(m.nick for m in left)
    assert Member.get_by(nick='m1') is None and Member.get_by(nick='m3').nick == 'm3'
    fresh = Member(company=Company(name='new'), nick='z')
    fresh.save()  # the new target is written first (its own slot)
    util.session.rollback()
    assert Member.get_by(nick='z').company.name == 'new'
    extra = [Member(company=other, nick='y%d' % i) for i in range(3)]
    util.session.commit()  # several shards in one commit
    assert sorted(m.nick for m in Company.get(other.id).staff) == sorted(
        [m.nick for m in left] + [m.nick for m in extra])
    for model in (Company, Post, Note, Badge) + Member._shard_models:
        report = audit_model(model, block_size=50)
        assert report.ok, report.summary()


def test_shard_count_mismatch_is_a_clear_error(cconn: Any) -> None:
    from rom.testing import restore_model_registry
    first = type('Meta', (rom.Model,), {'_shards': 4, 'n': rom.Integer(index=True)})
    first(n=1).save()
    restore_model_registry(({}, {}))
    forget_checks()
    second = type('Meta', (rom.Model,), {'_shards': 8, 'n': rom.Integer(index=True)})
    with pytest.raises(ORMError, match='_shards = 8 .* 4 shards'):
        second(n=2)
    with pytest.raises(ORMError, match='reshard'):
        second.query.order_by('n').count()


def test_single_server_works_too(conn: Any) -> None:
    """Sharding needs no cluster: on one server the shards are just key groups."""
    sharded, flat = declare(3)
    fill([sharded, flat], random.Random(3), 40)
    assert ids(sharded.query.order_by('-n').limit(2, 9)) == ids(
        flat.query.order_by('-n').limit(2, 9))
    assert sharded.get_by(email='user3@example.com').id == 4


# --------------------------------------------------------------------------- hypothesis

_ROW = st.fixed_dictionaries({
    'n': st.integers(-5, 5), 'f': st.sampled_from([0.0, -1.5, 2.25, 1e10]),
    'name': st.lists(st.sampled_from(WORDS[:4]), min_size=1, max_size=3).map(' '.join),
    'cat': st.sampled_from(CATS[:3])})
_QUERY = st.fixed_dictionaries({
    'n': st.none() | st.tuples(st.integers(-6, 5), st.integers(0, 6)),
    'name': st.none() | st.sampled_from(WORDS[:4]),
    'prefix': st.none() | st.sampled_from(['a', 'b', 'c', 'd']),
    'cat': st.none() | st.lists(st.sampled_from(CATS[:3]), min_size=1, max_size=2, unique=True),
    'order': st.sampled_from(['n', '-n', 'f', '-f']),
    'limit': st.none() | st.tuples(st.integers(0, 8), st.integers(1, 8))})


def _build(model: Any, spec: Dict[str, Any]) -> Any:
    query = model.query
    if spec['n'] is not None:
        query = query.filter(n=(spec['n'][0], spec['n'][0] + spec['n'][1]))
    if spec['name'] is not None:
        query = query.filter(name=spec['name'])
    if spec['prefix'] is not None:
        query = query.startswith(name=spec['prefix'])
    if spec['cat'] is not None:
        query = query.filter(cat=spec['cat'])
    query = query.order_by(spec['order'])
    if spec['limit'] is not None:
        query = query.limit(*spec['limit'])
    return query


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=st.lists(_ROW, max_size=25), specs=st.lists(_QUERY, min_size=1, max_size=4),
       shards=st.integers(1, 7))
def test_hypothesis_ordered_queries_equal_unsharded(cconn: Any, rows: List[Dict[str, Any]],
                                                    specs: List[Dict[str, Any]],
                                                    shards: int) -> None:
    from rom.testing import restore_model_registry
    for node in cconn.get_primaries():
        cconn.get_redis_connection(node).flushall()
    forget_blocks()
    forget_checks()
    restore_model_registry(({}, {}))
    util.session.rollback()
    sharded = type('HyItem', (rom.Model,), dict(columns(), _shards=shards))
    flat = type('HyFlat', (rom.Model,), dict(columns(), _cluster=True))
    for model in (sharded, flat):
        for i, row in enumerate(rows):
            model(email='h%d@x' % i, lon=0.0, lat=0.0, **row).save()
    util.session.rollback()
    for spec in specs:
        got, want = _build(sharded, spec), _build(flat, spec)
        assert ids(got) == ids(want), spec
        assert got.count() == want.count(), spec
