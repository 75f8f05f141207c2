"""The async read API (aget, aget_by, arefresh, Query.a*), against the real server.

The behaviour shared with the blocking API is tested through both drivers by the
parametrised behaviour tests (the ``api`` fixture); this module covers what only the async
surface has: ``async for`` chunking, ``acached_result``, ``aselect``, ``apage``.
"""
import pytest

import rom
from rom._io import ClientOf
from rom.exceptions import QueryError
from rom.util import session


def _people(n=12):
    class Person(rom.Model):
        name = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True)
        age = rom.Integer(index=True)
        email = rom.String(unique=True)

    for i in range(n):
        Person(name='p%d' % i, age=i % 4, email=('e%d@x' % i).encode()).save()
    session.commit()
    session.rollback()
    return Person


async def test_aget_one_and_many_and_missing(conn):
    Person = _people()
    one = await Person.aget(3)
    assert one.name == 'p2' and one._rom_async
    assert await Person.aget(999) is None
    many = await Person.aget([1, 2, 999, 5])
    assert [p.id for p in many] == [1, 2, 5]
    assert await Person.aget([]) == []
    assert await Person.aget(3) is one            # the identity map still wins


async def test_aget_by_unique_index_and_range(conn):
    Person = _people()
    found = await Person.aget_by(email=b'e4@x')
    assert found.id == 5
    assert await Person.aget_by(email=b'nobody') is None
    assert [p.id for p in await Person.aget_by(email=[b'e1@x', b'e2@x'])] == [2, 3]
    assert sorted(p.id for p in await Person.aget_by(age=1)) == [2, 6, 10]
    assert sorted(p.id for p in await Person.aget_by(age=(2, 3))) == [3, 4, 7, 8, 11, 12]
    assert len(await Person.aget_by(age=(0, 3), _limit=(0, 5))) == 5
    with pytest.raises(QueryError):
        await Person.aget_by(age=1, email=b'x')


async def test_query_terminals(conn):
    Person = _people()
    q = Person.query.filter(age=(1, 2)).order_by('-age')
    assert await q.acount() == 6
    assert [p.age for p in await q.aall()] == [2, 2, 2, 1, 1, 1]
    first = await q.afirst()
    assert first.age == 2 and first._rom_async
    assert await Person.query.filter(age=9).afirst() is None
    assert await q.aexists() and not await Person.query.filter(age=9).aexists()
    assert sorted(p.id for p in await Person.query.startswith(name='p1').aall()) == [2, 11, 12]
    assert await Person.query.acount() == Person.query.count()
    assert len(await Person.query.limit(3, 4).aall()) == 4


def _count_steps(monkeypatch):
    """Per driver, the I/O steps (round trips) it sends (the real steps still run)."""
    import rom._aio_driver
    import rom._io
    counts = {'sync': 0, 'async': 0}
    sync_step, async_step = rom._io.run_step, rom._aio_driver.arun_step

    def counted(step):
        counts['sync'] += not isinstance(step, ClientOf)
        return sync_step(step)

    async def acounted(step):
        counts['async'] += not isinstance(step, ClientOf)
        return await async_step(step)
    monkeypatch.setattr(rom._io, 'run_step', counted)
    monkeypatch.setattr(rom._aio_driver, 'arun_step', acounted)
    return counts


async def test_async_for_fetches_in_chunks(conn, monkeypatch):
    Person = _people(25)
    q = Person.query.filter(age=(0, 3)).order_by('age')
    expected = [p.id for p in q.all()]
    counts = _count_steps(monkeypatch)
    seen = []
    async for person in q.aiter_result(pagesize=10):
        seen.append(person.id)
        if len(seen) == 1:  # one page read so far
            assert counts['async'] == 2  # the page's ids, then its rows
    assert seen == expected and len(seen) == 25
    # the sync iteration sends as many round trips for the same pages
    assert [p.id for p in q.iter_result(pagesize=10)] == seen
    assert counts['async'] == counts['sync'] >= 3
    assert [p.id async for p in q] == seen
    assert [p.id async for p in q.limit(5, 7)] == seen[5:12]
    assert [p.id async for p in Person.query] == list(range(1, 26))  # pk index path
    assert [p.id async for p in Person.query.limit(3, 2)] == [4, 5]


async def test_async_for_stops_early(conn):
    Person = _people(30)
    got = []
    async for person in Person.query.order_by('age').aiter_result(pagesize=4):
        got.append(person)
        if len(got) == 6:
            break
    assert len(got) == 6


async def test_acached_result_and_aselect_and_apage(conn):
    Person = _people()
    key = await Person.query.filter(age=(1, 2)).acached_result(30)
    assert conn.zcard(key) == 6 and 0 < conn.ttl(key) <= 30
    with pytest.raises(QueryError):
        await Person.query.acached_result(30)
    rows = await Person.query.filter(age=1).order_by('age').aselect('name', 'age')
    assert sorted(r['name'] for r in rows) == ['p1', 'p5', 'p9']
    assert await Person.query.filter(age=1).select('age').afirst() == {'age': 1}
    page = await Person.query.order_by('age').apage(5)
    assert len(page) == 5 and page.next is not None
    rest = await Person.query.order_by('age').apage(20, after=page.next)
    assert len(rest) == 7 and rest.next is None


async def test_query_adelete_reads_in_blocks(conn):
    Person = _people(15)
    await Person.query.filter(age=(1, 2)).adelete(blocksize=4)
    assert sorted(p.age for p in await Person.query.filter(age=(0, 3)).aall()) == \
        [0] * 4 + [3] * 3
    assert Person.get(2) is None and conn.exists('Person:1')


async def test_arefresh_and_session_arefresh(conn):
    Person = _people(3)
    one, two = await Person.aget([1, 2])
    conn.hset('Person:1', 'name', 'changed')
    conn.hset('Person:2', 'name', 'other')
    await one.arefresh()
    assert one.name == 'changed'
    await session.arefresh([two])
    assert two.name == 'other'
    two.name = 'local'
    with pytest.raises(rom.exceptions.InvalidOperation):
        await two.arefresh()
    await session.arefresh_all(force=True)
    assert two.name == 'other'


async def test_expiring_entities_are_invisible_to_async_reads(conn):
    class Token(rom.Model):
        _ttl = 0
        value = rom.Text(unique=True)
        n = rom.Integer(index=True)

    live, gone = Token(value='a', n=1), Token(value='b', n=1)
    await live.asave()
    await gone.asave()
    conn.zadd('Token:-expiry-', {str(gone.id): 1})    # due since 1970
    assert [t.id for t in await Token.aget([live.id, gone.id])] == [live.id]
    assert await Token.aget(gone.id) is None
    assert await Token.aget_by(value='b') is None
    assert (await Token.aget_by(value='a')) is live
    assert [t.id for t in await Token.query.filter(n=1).aall()] == [live.id]
    assert await Token.query.filter(n=1).acount() == 1
    assert [t.id async for t in Token.query] == [live.id]


async def test_decoding_client(conn, decoding_conn):
    class Dec(rom.Model):
        _conn = decoding_conn
        name = rom.Text(index=True, keygen=rom.FULL_TEXT)
        n = rom.Integer(index=True)
        email = rom.String(unique=True)

    for i in range(4):
        Dec(name='d%d' % i, n=i, email=b'e%d' % i).save()
    session.commit()
    session.rollback()
    assert (await Dec.aget(2)).name == 'd1'
    assert [d.n for d in await Dec.aget([1, 2, 3])] == [0, 1, 2]
    assert (await Dec.aget_by(email=b'e3')).n == 3
    assert [d.n for d in await Dec.query.filter(n=(1, 2)).order_by('n').aall()] == [1, 2]
    assert await Dec.query.filter(n=(1, 3)).select('name').aall() == [
        {'name': 'd1'}, {'name': 'd2'}, {'name': 'd3'}]
