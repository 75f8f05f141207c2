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
