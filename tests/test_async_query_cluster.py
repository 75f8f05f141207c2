"""The async read API on a real local Redis Cluster (``redis.asyncio.cluster.RedisCluster``)."""
from __future__ import annotations

from typing import Any

import pytest

import rom
import rom.util


pytestmark = pytest.mark.cluster


def _blog() -> Any:
    class CAuthor(rom.Model):
        _cluster = 'blog'
        name = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True)
        posts = rom.OneToMany('CPost')

    class CPost(rom.Model):
        _cluster = 'blog'
        author = rom.ManyToOne('CAuthor', on_delete='cascade')
        n = rom.Integer(index=True)
        tag = rom.Text(index=True, keygen=rom.FULL_TEXT)
        email = rom.Text(unique=True)

    ann, bob = CAuthor(name='ann'), CAuthor(name='bob')
    ann.save()
    bob.save()
    for i in range(8):
        CPost(author=ann if i % 2 else bob, n=i, tag='t%d' % (i % 3), email='e%d' % i).save()
    rom.util.session.commit()
    rom.util.session.rollback()
    return CAuthor, CPost


async def test_async_reads_and_queries_on_a_cluster(cconn: Any) -> None:
    CAuthor, CPost = _blog()
    from rom._aconnect import aconnect, is_async_cluster
    assert is_async_cluster(aconnect(CPost))
    assert (await CPost.aget(3)).n == 2
    assert [p.n for p in await CPost.aget([1, 2, 99])] == [0, 1]
    assert (await CPost.aget_by(email='e5')).n == 5
    assert sorted(p.n for p in await CPost.aget_by(n=(2, 4))) == [2, 3, 4]
    q = CPost.query.filter(tag=['t0', 't1']).filter(n=(0, 6)).order_by('-n')  # union, inter
    assert [p.n for p in await q.aall()] == [6, 4, 3, 1, 0]
    assert await q.acount() == 5
    assert [p.n async for p in q.aiter_result(pagesize=2)] == [6, 4, 3, 1, 0]
    assert [a.name for a in await CAuthor.query.startswith(name='a').aall()] == ['ann']
    key = await q.acached_result(30)
    assert cconn.zcard(key) == 5
    rows = await CPost.query.filter(n=(0, 2)).order_by('n').aselect('email')
    assert rows == [{'email': 'e0'}, {'email': 'e1'}, {'email': 'e2'}]
    posts = await CPost.query.order_by('n').prefetch('author').aall()
    assert [p.author.name for p in posts[:2]] == ['bob', 'ann']
    authors = await CAuthor.query.prefetch('posts').aall()
    assert [len(a.posts) for a in authors] == [4, 4]
    page = await CPost.query.order_by('n').apage(3)
    assert [p.n for p in page] == [0, 1, 2] and page.next


async def test_async_saves_remove_due_entities_on_a_cluster(cconn: Any) -> None:
    """The expiry cleanup of an async save (script routed by the expiry set's key, removals
    through the write script in the model's slot), and ids reserved without blocking."""
    import time
    from rom._audit import audit_model

    class CToken(rom.Model):
        _cluster = True
        _ttl = 0
        value = rom.Text(unique=True)
        user = rom.Integer(index=True)

    class CUse(rom.Model):
        _cluster = True
        token = rom.ManyToOne('CToken', on_delete='cascade')

    await CToken.areserve_ids(3)
    live, dead = CToken(value='a', user=1), CToken(value='b', user=1)
    assert (await live.aid(), await dead.aid()) == (1, 2)
    use = CUse(token=dead)
    await rom.util.session.acommit()
    dead.expire_in(0.03)
    await dead.asave()
    time.sleep(0.06)
    await CToken(value='c', user=2).asave()          # removes the due token and its use
    assert not cconn.exists('{CToken}:2', '{CToken}:-expiry-', '{CUse}:%d' % use.id)
    assert cconn.hgetall('{CToken}:value:uidx') == {b'a': b'1', b'c': b'3'}
    assert cconn.zrange('{CToken}:user:idx', 0, -1) == [b'1', b'3']
    assert audit_model(CToken).ok and audit_model(CUse).ok
