"""The asyncio API on sharded models (``_shards``): reads by id and relation loads route to
the row's shard; scattered queries, ``aget_by`` and the global unique claims run the same
operations as the blocking API (the scatter to the masters with asyncio tasks instead of
threads), so the results equal the blocking API's on the same data -- on one server and on
the real local cluster.
"""
import asyncio
import random
from typing import Any, List

import pytest

import rom
from rom import _shard_unique
from rom._io import Sleep
from rom._shard_unique import claims_key
from rom.exceptions import InvalidOperation, ShardedAsyncError, UniqueKeyViolation
from rom.index import GeoIndex
from rom.util import session

from shard_workers import assert_consistent, define_model, holders, race_tasks


def _models():
    class Parent(rom.Model):
        _shards = 3
        n = rom.Integer(index=True)
        kids = rom.OneToMany('Kid')

    class Kid(rom.Model):
        _cluster = True
        parent = rom.ManyToOne('Parent', on_delete='no action')
        label = rom.Text()

    class Member(rom.Model):
        _shards = 3
        email = rom.Text(unique=True)

    return Parent, Kid, Member


async def test_aget_routes_to_the_rows_shard(conn):
    Parent, Kid, _ = _models()
    parents = [Parent(n=i) for i in range(7)]
    session.commit()
    session.rollback()
    one = await Parent.aget(5)
    assert type(one).__name__ == 'Parent#2' and one.n == 4
    assert one._pk == '{Parent.2}:5' and one._rom_async
    assert await Parent.aget(99) is None
    many = await Parent.aget([7, 1, 99, 3])
    assert [p.id for p in many] == [7, 1, 3] and many[0].n == 6
    assert await Parent.aget(5) is one                  # the identity map still wins
    assert [p.id for p in parents] == list(range(1, 8))


async def test_asave_adelete_and_relations(conn):
    Parent, Kid, _ = _models()
    parent = Parent(n=1)
    await parent.asave()
    assert conn.hget('{Parent.1}:1', 'n') == b'1' and not conn.exists('{Parent}:1')
    kid = Kid(parent=parent, label='a')
    await kid.asave()
    session.rollback()
    loaded = await Kid.aget(kid.id)
    found = await loaded.aload('parent')             # ManyToOne to a sharded model
    assert found.id == parent.id and type(found).__name__ == 'Parent#1'
    back = await Parent.aget(parent.id)
    assert [k.id for k in await back.aload('kids')] == [kid.id]  # OneToMany from one
    await back.arefresh()
    back.n = 5
    await back.asave()
    assert conn.hget('{Parent.1}:1', 'n') == b'5'
    await loaded.adelete()
    await back.adelete()
    assert not conn.exists('{Parent.1}:1')
    assert await Parent.aget(parent.id) is None


# -- scattered queries: async results equal the blocking ones ----------------------------------

def _catalog():
    class Owner(rom.Model):
        _shards = 3
        label = rom.Text()
        items = rom.OneToMany('Item')

    class Item(rom.Model):
        _shards = 5
        n = rom.Integer(index=True)
        f = rom.Float(index=True)
        cat = rom.Text(index=True, keygen=rom.IDENTITY)
        name = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True, suffix=True)
        code = rom.Text(unique=True)
        lon = rom.Float()
        lat = rom.Float()
        owner = rom.ManyToOne('Owner', on_delete='no action')
        geo_index = [GeoIndex('loc', lambda d: {'lon': d['lon'], 'lat': d['lat']})]

    return Owner, Item


WORDS = ['alpha', 'beta', 'gamma', 'delta', 'alto', 'zeta', 'eta', 'omega']
QUERIES = [
    lambda M: M.query.filter(cat='red'),
    lambda M: M.query.filter(cat='red', n=(0, 30)).order_by('-f'),
    lambda M: M.query.order_by('n').limit(5, 10),
    lambda M: M.query.order_by('-n'),
    lambda M: M.query.filter(n=(10, 40)),
    lambda M: M.query.filter(cat=['red', 'blue']).order_by('f').limit(2, 7),
    lambda M: M.query.startswith(name='al'),
    lambda M: M.query.endswith(name='ta').order_by('n'),
    lambda M: M.query.like(name='*e*').filter(n=(None, 45)),
    lambda M: M.query.near('loc', 10.0, 50.0, 300, 'km', 7),
    lambda M: M.query,                                # unfiltered: by the id counter
    lambda M: M.query.limit(3, 4),
    lambda M: M.query.filter(cat='none'),
]


def _fill(Owner: Any, Item: Any, rows: int = 60) -> None:
    rng = random.Random(7)
    owners = [Owner(label='o%d' % i) for i in range(4)]
    for i in range(rows):
        Item(n=rng.randint(0, 50), f=rng.random(), cat=rng.choice(['red', 'blue', 'green']),
             name='%s %s' % (rng.choice(WORDS), rng.choice(WORDS)), code='c%d' % i,
             lon=10.0 + rng.uniform(-2, 2), lat=50.0 + rng.uniform(-2, 2),
             owner=rng.choice(owners))
    session.commit()
    session.rollback()


def _ids(items: List[Any]) -> List[int]:
    return [item.id for item in items]


async def _compare(Item: Any) -> None:
    for make in QUERIES:
        query = make(Item)
        session.rollback()
        expected = _ids(query.all())
        session.rollback()
        assert _ids(await query.aall()) == expected, query
        assert _ids(await query.aexecute()) == expected
        assert [i.id async for i in query] == expected
        assert [i.id async for i in query.aiter_result(pagesize=3)] == expected
        assert await query.acount() == query.count()
        assert await query.aexists() is query.exists()
        first = await query.afirst()
        assert (first and first.id) == (expected[0] if expected else None)
        assert await query.aselect('n', 'code') == query.select('n', 'code').all()
        if query._filters or query._order_by:
            keys = await query.acached_result(5)
            assert len(keys) == len(Item._shard_models)
        if query._order_by and query._limit is None:
            pages, after = [], None
            while True:
                page = await query.apage(4, after)
                pages += _ids(page.items)
                after = page.next
                if after is None:
                    break
            assert pages == expected
    assert len(_ids(await Item.query.filter(n=(0, 25)).aall())) > 5  # (the data is not empty)


async def test_async_queries_equal_the_blocking_ones(conn):
    Owner, Item = _catalog()
    _fill(Owner, Item)
    await _compare(Item)


async def test_async_queries_on_the_cluster(cconn):
    Owner, Item = _catalog()
    _fill(Owner, Item)
    await _compare(Item)
    # prefetch: the relations come with the results (no MissingLoadError in async code)
    query = Item.query.filter(cat='red').order_by('n').prefetch('owner')
    found = await query.aall()
    assert [i.owner.label for i in found] == [i.owner.label for i in query.all()]
    owner = await Owner.aget(1)
    assert sorted(_ids(await owner.aload('items'))) == sorted(
        i.id for i in Item.query.all() if i.owner.id == 1)


async def test_aget_by_on_sharded_models(cconn):
    Owner, Item = _catalog()
    _fill(Owner, Item)
    one = await Item.aget_by(code='c7')
    assert one.id == Item.get_by(code='c7').id and one._rom_async
    assert _ids(await Item.aget_by(code=['c3', 'nope', 'c40', 'c9'])) == \
        _ids(Item.get_by(code=['c3', 'nope', 'c40', 'c9']))
    assert await Item.aget_by(code='nope') is None
    assert _ids(await Item.aget_by(n=(10, 20))) == _ids(Item.get_by(n=(10, 20)))
    assert _ids(await Item.aget_by(cat='red', _limit=(2, 5))) == \
        _ids(Item.get_by(cat='red', _limit=(2, 5)))


async def test_adelete_of_a_query(cconn):
    Owner, Item = _catalog()
    del Item.owner  # (a query delete needs a model outside relations)

    class Tag(rom.Model):
        _shards = 4
        n = rom.Integer(index=True)
        code = rom.Text(unique=True)

    for i in range(30):
        Tag(n=i, code='t%d' % i)
    session.commit()
    await Tag.query.filter(n=(5, 24)).adelete(blocksize=4)
    assert sorted(t.n for t in Tag.query.all()) == list(range(5)) + list(range(25, 30))
    assert await Tag.aget_by(code='t7') is None
    assert not cconn.hexists(claims_key(Tag, 'code', 't7'), 't7')  # claims released
    assert (await Tag.aget_by(code='t27')).n == 27


# -- global unique claims from asyncio code ----------------------------------------------------

async def test_asave_adelete_and_acommit_claim_unique_values(cconn):
    model = define_model()
    a = model(email='a@x', age=1)
    await a.asave()
    with pytest.raises(UniqueKeyViolation):
        await model(email='a@x', age=2).asave()       # another shard (the next id)
    b = model(email='b@x', age=3)
    await b.asave()
    b.email = 'c@x'
    await b.asave()                                   # claims c@x, releases b@x
    assert await model.aget_by(email='b@x') is None
    assert (await model.aget_by(email='c@x')).id == b.id
    assert not cconn.hexists(claims_key(model, 'email', 'b@x'), 'b@x')
    await model(email='b@x', age=4).asave()           # released: free again
    await a.adelete()
    assert not cconn.hexists(claims_key(model, 'email', 'a@x'), 'a@x')
    session.rollback()
    model(email='a@x', age=5)
    model(email='d@x', age=6)
    assert await session.acommit() == 6               # claims during planning, as commit()
    with pytest.raises(UniqueKeyViolation):
        model(email='d@x', age=7)
        await session.acommit()
    session.rollback()
    assert_consistent(model, cconn)
    assert sorted(holders(model)) == ['a@x', 'b@x', 'c@x', 'd@x']


async def test_a_race_of_tasks_for_the_same_values_leaves_no_duplicate(cconn):
    """Tasks in one event loop create, change and delete entities for a small pool of
    values, concurrently: no value is ever held twice and the shards' audits are clean."""
    model = define_model()
    emails = ['r%d@x' % i for i in range(6)]

    def change(person, rng):
        person.email = rng.choice(emails)

    await race_tasks(model, cconn, lambda rng, seed: model(email=rng.choice(emails), age=seed),
                     change)
    assert_consistent(model, cconn)


async def test_a_task_cancelled_after_its_claim_leaves_a_claim_taken_over(cconn, monkeypatch):
    """Cancelled between the claim and the row write, a save leaves a claim whose owner row
    does not hold the value: the next writer of the value fences it and takes it over."""
    model = define_model()
    real = _shard_unique.op_acquire

    def slow_acquire(*args: Any) -> Any:
        yield from real(*args)
        yield Sleep(30)  # (cancelled here: claimed, row not written)

    monkeypatch.setattr(_shard_unique, 'op_acquire', slow_acquire)
    stuck = model(email='k@x', age=1)
    task = asyncio.ensure_future(stuck.asave())
    key = claims_key(model, 'email', 'k@x')
    for _ in range(200):
        await asyncio.sleep(0.01)
        if cconn.hexists(key, 'k@x'):
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cconn.hget(key, 'k@x').decode().startswith('%d:' % stuck.id)
    assert not cconn.exists('%s:%d' % (type(stuck)._namespace, stuck.id))
    monkeypatch.setattr(_shard_unique, 'op_acquire', real)
    session.rollback()
    taker = model(email='k@x', age=2)
    await taker.asave()                               # the stale claim is taken over
    assert cconn.hget(key, 'k@x').decode().startswith('%d:' % taker.id)
    with pytest.raises(UniqueKeyViolation):
        await stuck.asave()                           # (its token was fenced)
    assert_consistent(model, cconn)
    assert holders(model) == {'k@x': [taker.id]}


def test_sharded_async_error_is_still_a_public_name():
    assert issubclass(ShardedAsyncError, InvalidOperation)
    assert rom.exceptions.ShardedAsyncError is ShardedAsyncError


async def test_async_scatter_follows_moved_and_reloads_flushed_scripts(cconn, monkeypatch,
                                                                        scripts_reloaded):
    """Work that reaches a master not serving its shard's slot is answered MOVED and sent
    again through the async cluster client; a master that lost its scripts (SCRIPT FLUSH)
    gets them with EVAL."""
    from rom import _shard_abatch
    Owner, Item = _catalog()
    _fill(Owner, Item)
    query = Item.query.filter(cat='red', n=(0, 40)).order_by('-f')
    expected = _ids(query.all())
    real = _shard_abatch.node_client
    wrong = []

    def misrouted(conn: Any, shard: Any) -> Any:
        name, node = real(conn, shard)
        if shard._shard_index == 1:  # always a master that does not hold shard 1's slot
            other = next(n for n in conn.get_primaries() if n.name != name)
            wrong.append(other.name)
            return other.name, other
        return name, node

    monkeypatch.setattr(_shard_abatch, 'node_client', misrouted)
    session.rollback()
    assert _ids(await query.aall()) == expected and wrong
    assert await query.acount() == query.count()
    monkeypatch.setattr(_shard_abatch, 'node_client', real)
    for node in cconn.get_primaries():
        cconn.get_redis_connection(node).script_flush()
    session.rollback()
    assert _ids(await query.aall()) == expected
    assert (await Item.query.order_by('n').limit(0, 5).aall())[0].n == min(
        i.n for i in Item.query.all())
