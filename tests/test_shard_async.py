"""The asyncio API on sharded models (``_shards``), on the test server: reads by id and
relation loads route to the row's shard; what needs the blocking scatter-gather or the
global unique claims raises :exc:`rom.exceptions.ShardedAsyncError` instead of touching
the public namespace (where no row lives).
"""
import pytest

import rom
from rom.exceptions import InvalidOperation, ShardedAsyncError
from rom.util import session


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


async def test_asave_adelete_and_relations_without_unique_columns(conn):
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


async def test_what_needs_the_blocking_api_raises_a_typed_error(conn):
    Parent, _, Member = _models()
    assert issubclass(ShardedAsyncError, InvalidOperation)
    ann = Member(email='ann@x')
    ann.save()                                         # (blocking: claims the value)
    Parent(n=3).save()
    session.rollback()
    bob = Member(email='bob@x')
    with pytest.raises(ShardedAsyncError, match='unique'):
        await bob.asave()
    with pytest.raises(ShardedAsyncError, match='unique'):
        await session.acommit()                        # bob's claim would block the loop
    session.rollback()
    loaded = await Member.aget(ann.id)
    with pytest.raises(ShardedAsyncError):
        await loaded.adelete()
    with pytest.raises(ShardedAsyncError, match='aget_by'):
        await Member.aget_by(email='ann@x')
    with pytest.raises(ShardedAsyncError, match='aget_by'):
        await Parent.aget_by(n=3)
    for name in ('aall', 'acount', 'afirst', 'aexists'):
        with pytest.raises(ShardedAsyncError, match=name):
            await getattr(Parent.query.filter(n=(0, 5)), name)()
    with pytest.raises(ShardedAsyncError):
        async for _ in Parent.query.filter(n=(0, 5)):
            pass
    # the blocking API still does all of it
    assert Member.get_by(email='ann@x').id == ann.id
    assert [p.n for p in Parent.query.filter(n=(0, 5))] == [3]
    assert not conn.exists('{Member}:%d' % ann.id)     # nothing went to the public namespace
