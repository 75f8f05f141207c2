"""Server-side work of the write script: what a new save skips, what a stale delete releases."""
from __future__ import annotations

import pytest

import rom
from rom import session
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
    client.config_resetstat()
    yield client
    client.close()


def _calls(conn, command):
    stats = conn.info('commandstats')
    return stats.get('cmdstat_' + command, {}).get('calls', 0)


def test_new_entity_save_reads_no_old_bookkeeping(private):
    conn = private

    class Fresh(rom.Model):
        _conn = private
        n = rom.Integer(index=True)
        t = rom.Text(index=True, keygen=rom.FULL_TEXT)

    e = Fresh(n=1, t='hello world')
    hget, hdel = _calls(conn, 'hget'), _calls(conn, 'hdel')
    e.save()
    assert _calls(conn, 'hget') == hget and _calls(conn, 'hdel') == hdel
    assert conn.hget('Fresh:1', '-index-data-') == b'[["t:hello","t:world"],["n"],{},{},{}]'
    # an update reads the bookkeeping, and leaves it alone when it did not change
    e.n = 2
    hset = _calls(conn, 'hset')
    e.save()
    assert _calls(conn, 'hset') == hset  # HMSET wrote n; -index-data- unchanged
    assert conn.zscore('Fresh:n:idx', '1') == 2.0


def test_forced_save_still_removes_old_entries(conn):
    class Forced(rom.Model):
        t = rom.Text(index=True, keygen=rom.FULL_TEXT)

    e = Forced(t='old')
    e.save()
    e.t = 'new'
    e.save(force=True)
    assert conn.smembers('Forced:t:old:idx') == set()
    assert conn.smembers('Forced:t:new:idx') == {b'1'}


def test_stale_delete_releases_the_current_unique_values(private):
    conn = private

    class Acct(rom.Model):
        _conn = private
        email = rom.Text(unique=True)
        a = rom.Text()
        b = rom.Text()
        unique_together = [('a', 'b')]

    Acct(email='old@x', a='p', b='\xe9').save()
    session.rollback()
    stale = Acct.get(1)
    # another process changes the unique values behind the stale handle's back
    session.rollback()
    fresh = Acct.get(1)
    fresh.email = 'new@x'
    fresh.b = 'q'
    fresh.save()
    session.rollback()
    hgetall = _calls(conn, 'hgetall')
    stale.delete()
    assert _calls(conn, 'hgetall') == hgetall  # no scan of the unique hashes
    remaining = {k for k in dump_database(conn) if not k.endswith(b':id:')}
    assert remaining == set()


def test_stale_delete_of_keygen_unique_releases_by_id(conn):
    class KU(rom.Model):
        code = rom.Text(unique=True, keygen=rom.IDENTITY_CI)

    KU(code='ABC').save()
    session.rollback()
    stale = KU.get(1)
    session.rollback()
    fresh = KU.get(1)
    fresh.code = 'XYZ'
    fresh.save()
    assert conn.hgetall('KU:code:uidx') == {b'xyz': b'1'}
    stale.delete()
    assert conn.hgetall('KU:code:uidx') == {}


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
