"""Edge cases: odd token values, bytes, failures mid-search, deletes while iterating."""
from __future__ import annotations

import re

import pytest
import redis

import rom
import rom.util
from rom.query import Query

UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')


def temp_keys(conn):
    return [k for k in conn.keys('*') if UUID.search(k.decode())]


def ids(entities):
    return sorted(e.id for e in entities)


async def test_tokens_with_colons_nul_unicode_bytes(api, conn):
    class T(rom.Model):
        ident = rom.Text(index=True, keygen=rom.IDENTITY)
        ft = rom.Text(index=True, keygen=rom.FULL_TEXT)
        s = rom.String(index=True, keygen=rom.IDENTITY_STRING_CI)
        tags = rom.Text(index=True, keygen=lambda v: v.split(',') if v else None)
    await api.save(T(ident='a:b', ft='Grüße aus Köln', s=b'ABC', tags='x:1,y\0z'))
    await api.save(T(ident='a\0b', ft='KÖLN', s=b'caf\xc3\xa9', tags='y\0z'))   # UTF-8 bytes
    await api.save(T(ident='😀', ft='no', s=b'\0:', tags=''))
    assert ids(await api.list(T.query.filter(ident='a:b'))) == [1]
    assert ids(await api.list(T.query.filter(ident='a\0b'))) == [2]
    assert ids(await api.list(T.query.filter(ident='😀'))) == [3]
    assert ids(await api.list(T.query.filter(ident=['😀', 'a:b']))) == [1, 3]
    assert ids(await api.list(T.query.filter(ident=[b'a:b', '\U0001f600'.encode('utf-8')]))) == \
        [1, 3]
    assert ids(await api.list(T.query.filter(ft='KÖLN'))) == [1, 2]
    assert ids(await api.list(T.query.filter(ft='grüße'))) == [1]
    assert ids(await api.list(T.query.filter(s=b'abc'))) == [1]
    assert ids(await api.list(T.query.filter(s=b'AbC'))) == \
        [1]                  # bug query #8: lowercased
    assert ids(await api.list(T.query.filter(s='café'))) == [2]
    assert ids(await api.list(T.query.filter(s=[b'caf\xc3\xa9']))) == \
        [2]        # list elements: UTF-8
    assert ids(await api.list(T.query.filter(s=b'caf\xc3\xa9'))) == \
        []          # compat: single bytes latin-1
    assert ids(await api.list(T.query.filter(s='\0:'))) == [3]
    assert ids(await api.list(T.query.filter(tags='x:1'))) == [1]
    assert ids(await api.list(T.query.filter(tags='y\0z'))) == [1, 2]
    assert ids(await api.list(T.query.filter(tags='y\0z', ident='a\0b'))) == [2]
    assert conn.smembers((T._namespace + ':tags:y\0z:idx')) == {b'1', b'2'}
    assert conn.smembers((T._namespace + ':ft:k\xc3\xb6ln:idx').encode('latin-1')) == {b'1', b'2'}


async def test_failed_search_leaves_no_unexpiring_keys(api, conn):
    class E(rom.Model):
        n = rom.Integer(index=True)
        t = rom.Text(index=True, keygen=rom.IDENTITY)
    await api.save(E(n=1, t='a'))
    await api.save(E(n=2, t='b'))
    conn.set(f'{E._namespace}:t:bad:idx', 'a string, not a set')
    with pytest.raises(redis.ResponseError):
        await api.all(E.query.filter(t='bad', n=(0, 5)))
    with pytest.raises(redis.ResponseError):
        await api.count(E.query.filter(n=(0, 5)).filter(t=['a', 'bad']))
    with pytest.raises(redis.ResponseError):
        await api.first(E.query.filter(n=(0, 5)).filter(t='bad'))
    for key in temp_keys(conn):
        assert conn.ttl(key) > 0
    assert ids(await api.list(E.query.filter(n=(0, 5), t='a'))) == [1]


async def test_delete_while_iterating_indexed_pk(api, conn):
    class K(rom.Model):
        id = rom.PrimaryKey(index=True)
        v = rom.Integer(index=True)
    for i in range(9):
        await api.save(K(v=i))
    await api.commit()
    rom.util.session.rollback()
    await api.delete(K.query, blocksize=2)
    assert conn.zcard('K:id:idx') == 0
    assert [k for k in conn.keys('K:*') if k.split(b':')[1].isdigit()] == []


async def test_delete_range_query(api, conn):
    class R(rom.Model):
        v = rom.Integer(index=True)
    for i in range(25):
        await api.save(R(v=i))
    await api.commit()
    rom.util.session.rollback()
    await api.delete(R.query.filter(v=(5, None)), blocksize=3)
    assert sorted([e.v for e in await api.list(R.query.filter(v=(None, None)))]) == [0, 1, 2, 3, 4]
    await api.delete(R.query.filter(v=(None, None)).order_by('-v').limit(0, 2))
    assert sorted([e.v for e in await api.list(R.query.filter(v=(None, None)))]) == [0, 1, 2]


async def test_general_index_prepare(api, conn):
    class G(rom.Model):
        v = rom.Integer(index=True)
    await api.save(G(v=1))
    pipe, intersect, temp = G._gindex._prepare(conn, [('v', 0, 5)])
    assert temp.startswith(f'{G._namespace}:') and UUID.search(temp)
    intersect(temp, f'{G._namespace}:v:idx', 0, 2)
    pipe.zrange(temp, 0, -1, withscores=True)
    pipe.delete(temp)
    assert [tuple(pair) for pair in pipe.execute()[-2]] == [(b'1', 2.0)]
    assert temp_keys(conn) == []


async def test_model_query_is_query(api, conn):
    class Q(rom.Model):
        v = rom.Integer(index=True)
    assert isinstance(Q.query, Query) and Q.query is not Q.query
    assert await api.all(Q.query) == [] and await api.first(Q.query) is None
    assert await api.count(Q.query) == 0
    assert await api.all(Q.query.filter(v=1)) == \
        [] and await api.first(Q.query.filter(v=1)) is None
    assert await api.count(Q.query.filter(v=1)) == 0 and Q.query.filter(v=1)._search() == []
    assert await api.all(Q.query.order_by('v')) == \
        [] and await api.first(Q.query.order_by('-v')) is None
    key = await api.cached_result(Q.query.filter(v=1), 5)
    assert not conn.exists(key)
