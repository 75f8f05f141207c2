"""Server-side work of the write script: what a new save skips, what a stale delete releases."""
from __future__ import annotations

import pytest

import rom
from rom import session
from rom._ids import forget_blocks
from rom.testing import dump_database, start_embedded_redis


@pytest.fixture(scope='module')
def private_server():
    """A server of this module only: INFO commandstats counts exactly our commands."""
    server = start_embedded_redis()
    yield server
    server.stop()


@pytest.fixture
def private(private_server):
    client = private_server.client()
    client.flushdb()
    forget_blocks()  # the id counters restart: held blocks of ids are stale
    client.config_resetstat()
    yield client
    client.close()
    client.connection_pool.disconnect()  # redis-py < 5: close() leaves from_url pools open


def _calls(conn, command):
    stats = conn.info('commandstats')
    return stats.get('cmdstat_' + command, {}).get('calls', 0)


async def test_new_entity_save_reads_no_old_bookkeeping(api, private):
    conn = private

    class Fresh(rom.Model):
        _conn = private
        n = rom.Integer(index=True)
        t = rom.Text(index=True, keygen=rom.FULL_TEXT)

    e = Fresh(n=1, t='hello world')
    hget, hdel = _calls(conn, 'hget'), _calls(conn, 'hdel')
    await api.save(e)
    assert _calls(conn, 'hget') == hget and _calls(conn, 'hdel') == hdel
    assert conn.hget(f'{Fresh._namespace}:1', '-index-data-') == b'[["t:hello","t:world"],["n"],{},{},{}]'
    # an update reads the bookkeeping, and leaves it alone when it did not change
    e.n = 2
    hset = _calls(conn, 'hset')
    await api.save(e)
    assert _calls(conn, 'hset') == hset  # HMSET wrote n; -index-data- unchanged
    assert conn.zscore(f'{Fresh._namespace}:n:idx', '1') == 2.0


async def test_forced_save_still_removes_old_entries(api, conn):
    class Forced(rom.Model):
        t = rom.Text(index=True, keygen=rom.FULL_TEXT)

    e = Forced(t='old')
    await api.save(e)
    e.t = 'new'
    await api.save(e, force=True)
    assert conn.smembers(f'{Forced._namespace}:t:old:idx') == set()
    assert conn.smembers(f'{Forced._namespace}:t:new:idx') == {b'1'}


async def test_stale_delete_releases_the_current_unique_values(api, private):
    conn = private

    class Acct(rom.Model):
        _conn = private
        email = rom.Text(unique=True)
        a = rom.Text()
        b = rom.Text()
        unique_together = [('a', 'b')]

    await api.save(Acct(email='old@x', a='p', b='\xe9'))
    session.rollback()
    stale = await api.get(Acct, 1)
    # another process changes the unique values behind the stale handle's back
    session.rollback()
    fresh = await api.get(Acct, 1)
    fresh.email = 'new@x'
    fresh.b = 'q'
    await api.save(fresh)
    session.rollback()
    hgetall = _calls(conn, 'hgetall')
    await api.delete(stale)
    assert _calls(conn, 'hgetall') == hgetall  # no scan of the unique hashes
    remaining = {k for k in dump_database(conn) if not k.endswith(b':id:')}
    assert remaining == set()


async def test_stale_delete_of_keygen_unique_releases_by_id(api, conn):
    class KU(rom.Model):
        code = rom.Text(unique=True, keygen=rom.IDENTITY_CI)

    await api.save(KU(code='ABC'))
    session.rollback()
    stale = await api.get(KU, 1)
    session.rollback()
    fresh = await api.get(KU, 1)
    fresh.code = 'XYZ'
    await api.save(fresh)
    assert conn.hgetall(f'{KU._namespace}:code:uidx') == {b'xyz': b'1'}
    await api.delete(stale)
    assert conn.hgetall(f'{KU._namespace}:code:uidx') == {}


def test_cascade_delete_is_one_write(conn, roundtrips):
    class Parent(rom.Model):
        name = rom.Text()

    class Child(rom.Model):
        parent = rom.ManyToOne('Parent', on_delete='cascade')

    p = Parent(name='p')
    p.save()
    kids = [Child(parent=p) for _ in range(3)]
    session.commit()
    session.rollback()
    p = Parent.get(p.id)
    with roundtrips(conn) as rt:
        p.delete()
    # find and load the children (one script call), then one atomic script deletes all four
    assert rt.count == 2
    assert [k for k in dump_database(conn) if not k.endswith(b':id:')] == []
    assert all(k._deleted for k in kids) or not any(conn.exists(k._pk) for k in kids)


async def test_an_update_rewrites_every_entry_when_the_bookkeeping_differs(api, private):
    conn = private

    class Upd2(rom.Model):
        _conn = private
        n = rom.Integer(index=True)
        tag = rom.Text(index=True, keygen=rom.IDENTITY)

    e = Upd2(n=1, tag='a')
    await api.save(e)
    # the row's bookkeeping misses the n entry (e.g. written before the index existed): the
    # script refuses the incremental update and rom sends a full one
    conn.hset(f'{Upd2._namespace}:1', '-index-data-', '[["tag:a"],{},{},{},{}]')
    conn.delete(f'{Upd2._namespace}:tag:a:idx')
    e.n = 2
    await api.save(e)
    assert conn.smembers(f'{Upd2._namespace}:tag:a:idx') == {b'1'} and conn.zscore(f'{Upd2._namespace}:n:idx', '1') == 2
    assert conn.hget(f'{Upd2._namespace}:1', '-index-data-') == b'[["tag:a"],["n"],{},{},{}]'
    # with the bookkeeping right, an update of numeric values writes only the changed
    # scores; a save without changes (or a full one) rewrites every entry, which repairs a
    # damaged index
    conn.delete(f'{Upd2._namespace}:tag:a:idx')
    e.n = 3
    await api.save(e)
    assert not conn.exists(f'{Upd2._namespace}:tag:a:idx') and conn.zscore(f'{Upd2._namespace}:n:idx', '1') == 3
    await api.save(e)
    assert conn.smembers(f'{Upd2._namespace}:tag:a:idx') == {b'1'}
    # a change of a non-numeric indexed column rewrites every entry
    conn.delete(f'{Upd2._namespace}:n:idx')
    e.tag = 'b'
    await api.save(e)
    assert conn.zscore(f'{Upd2._namespace}:n:idx', '1') == 3 and conn.smembers(f'{Upd2._namespace}:tag:b:idx') == {b'1'}
    assert not conn.exists(f'{Upd2._namespace}:tag:a:idx')


def _counts(conn, *commands):
    return {command: _calls(conn, command) for command in commands}


async def test_update_rewrites_only_what_changed(api, private):
    conn = private

    class Upd(rom.Model):
        _conn = private
        email = rom.Text(unique=True)
        name = rom.Text(index=True, keygen=rom.FULL_TEXT)
        handle = rom.Text(prefix=True, suffix=True, keygen=rom.SIMPLE_CI)
        age = rom.Integer(index=True)
        score = rom.Float(index=True)
        active = rom.Boolean(index=True)

    e = Upd(email='a@x', name='ann lee', handle='Ann', age=30, score=1.5, active=True)
    await api.save(e)
    before = dump_database(conn)
    e.age, e.score = 31, 2.5
    names = ('srem', 'zrem', 'sadd', 'zadd', 'hget', 'hexists', 'hmget', 'hset', 'exists')
    start = _counts(conn, *names)
    await api.save(e)
    end = _counts(conn, *names)
    used = {k: end[k] - start[k] for k in names}
    # nothing is removed; the race check is one HMGET, which also reads the row's
    # bookkeeping (already the new one), so only the two changed scores are written (the
    # unchanged email is neither read nor rewritten: its claim is race-checked through the row)
    assert used['srem'] == used['zrem'] == 0
    assert used['hexists'] == 0 and used['hmget'] == 1
    assert used['hset'] == 0 and used['hget'] == 0
    assert used['exists'] == 1  # the legacy hash is looked for once per call and namespace
    assert used['sadd'] == 0 and used['zadd'] == 2
    after = dump_database(conn)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed == {f'{Upd._namespace}:1'.encode(), f'{Upd._namespace}:age:idx'.encode(), f'{Upd._namespace}:score:idx'.encode()}
    assert conn.zscore(f'{Upd._namespace}:age:idx', '1') == 31 and conn.zscore(f'{Upd._namespace}:score:idx', '1') == 2.5
    # a changed token and a changed prefix/suffix entry are removed and replaced
    e.name, e.handle = 'ann smith', 'Bob'
    await api.save(e)
    assert conn.smembers(f'{Upd._namespace}:name:lee:idx') == set()
    assert conn.smembers(f'{Upd._namespace}:name:smith:idx') == {b'1'}
    assert conn.smembers(f'{Upd._namespace}:name:ann:idx') == {b'1'}
    assert conn.zrange(f'{Upd._namespace}:handle:pre', 0, -1) == [b'bob\x001']
    assert conn.zrange(f'{Upd._namespace}:handle:suf', 0, -1) == [b'bob\x001']
    # the email claim moves when the email changes
    e.email = 'b@x'
    await api.save(e)
    assert conn.hgetall(f'{Upd._namespace}:email:uidx') == {b'b@x': b'1'}


async def test_resave_restores_index_entries_lost_outside_rom(api, private):
    conn = private

    class Heal(rom.Model):
        _conn = private
        tag = rom.Text(index=True, keygen=rom.FULL_TEXT)
        n = rom.Integer(index=True)

    e = Heal(tag='red', n=5)
    await api.save(e)
    conn.delete(f'{Heal._namespace}:tag:red:idx', f'{Heal._namespace}:n:idx')      # entries recorded, but gone
    await api.save(e, full=True)
    assert conn.smembers(f'{Heal._namespace}:tag:red:idx') == {b'1'} and conn.zscore(f'{Heal._namespace}:n:idx', '1') == 5


async def test_race_check_by_one_hmget_still_detects_changes(api, private):
    conn = private

    class Race(rom.Model):
        _conn = private
        a = rom.Integer(index=True)
        b = rom.Text()
        c = rom.Text(index=True, keygen=rom.FULL_TEXT)

    e = Race(a=1, b='x')
    await api.save(e)
    conn.hset(f'{Race._namespace}:1', 'c', 'appeared')          # a field that was absent now exists
    e.b = 'y'
    with pytest.raises(rom.exceptions.DataRaceError) as info:
        await api.save(e)
    assert 'c' in str(info.value)
    conn.hdel(f'{Race._namespace}:1', 'c')
    conn.hset(f'{Race._namespace}:1', 'a', '7')                 # a guarded value changed
    with pytest.raises(rom.exceptions.DataRaceError) as info:
        await api.save(e)
    assert 'a' in str(info.value) and conn.hget(f'{Race._namespace}:1', 'b') == b'x'


async def test_a_commit_replans_only_the_update_the_script_refused(api, private):
    conn = private

    class Upd3(rom.Model):
        _conn = private
        n = rom.Integer(index=True)

    a, b, c = Upd3(n=1), Upd3(n=2), Upd3(n=3)
    await api.commit()
    conn.hset(b._pk, '-index-data-', '{}')   # b's bookkeeping lost: its update is replanned
    a.n, b.n, c.n = 10, 20, 30
    assert await api.commit() == 3
    assert [conn.zscore(f'{Upd3._namespace}:n:idx', str(e.id)) for e in (a, b, c)] == [10, 20, 30]
    assert conn.hget(b._pk, '-index-data-') == b'[{},["n"],{},{},{}]'
    assert not any(e._modified for e in (a, b, c))
