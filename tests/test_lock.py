"""Locks (spec: session-util-and-storage §5, §8.11; reference bug util #8 fixed)."""
from __future__ import annotations

import re
import threading
import time

import pytest
import redis

import rom
from rom import util
from rom.exceptions import DataRaceError

IDENT = re.compile(r"^b'[0-9a-f]{32}'$")


def test_constructor_does_no_io_and_rounds_timeouts(conn, roundtrips):
    with roundtrips(conn) as rt:
        lock = util.Lock(conn, 'job', 0.2, 1.5)
    assert rt.count == 0
    assert lock.identifier is None
    assert lock.conn is conn
    assert lock.lockname == 'lock:job'
    assert (lock.acquire_timeout, lock.lock_timeout) == (1, 2)
    assert util.Lock.__slots__ == ('identifier', 'conn', 'lockname', 'lock_timeout',
                                   'acquire_timeout')
    with pytest.raises(AttributeError):
        lock.other = 1


def test_acquire_free_lock_is_one_round_trip(conn, roundtrips):
    lock = util.Lock(conn, 'job', 1, 10)
    with roundtrips(conn) as rt:
        assert lock.acquire() is True
    assert rt.count == 1  # bug util #8: b'OK' used to count as failure (2 round trips)
    assert IDENT.match(lock.identifier)
    assert conn.get('lock:job') == lock.identifier.encode('ascii')
    assert conn.ttl('lock:job') == 10


async def test_acquire_again_extends_ttl(api, conn):
    lock = util.Lock(conn, 'job', 1, 10)
    assert await api.acquire(lock)
    ident = lock.identifier
    conn.expire('lock:job', 3)
    assert await api.acquire(lock) is True
    assert lock.identifier == ident
    assert conn.ttl('lock:job') == 10


async def test_second_lock_object_waits_and_fails(api, conn):
    first = util.Lock(conn, 'job', 1, 10)
    assert await api.acquire(first)
    second = util.Lock(conn, 'job', 1, 10)
    start = time.time()
    assert await api.acquire(second) is False
    assert 0.9 <= time.time() - start < 3
    assert conn.get('lock:job') == first.identifier.encode()


def test_zero_acquire_timeout_makes_exactly_one_attempt(conn, roundtrips):
    # issue 12: rom 1.1.2 made no attempt at all, so a free lock was never taken
    lock = util.Lock(conn, 'job', 0, 10)
    with roundtrips(conn) as rt:
        assert lock.acquire() is True
    assert rt.count == 1
    assert conn.get('lock:job') == lock.identifier.encode()
    other = util.Lock(conn, 'job', 0, 10)
    start = time.time()
    with roundtrips(conn) as rt:
        assert other.acquire() is False  # held: one attempt, no waiting
    assert rt.count == 1 and time.time() - start < 0.5
    assert util.Lock(conn, 'job', -5, 10).acquire() is False  # negative: one attempt too


async def test_release(api, conn):
    lock = util.Lock(conn, 'job', 1, 10)
    other = util.Lock(conn, 'job', 1, 10)
    assert await api.release(other) is False  # never acquired: identifier None -> ''
    assert await api.acquire(lock)
    assert await api.release(other) is False
    assert conn.exists('lock:job')
    ident = lock.identifier
    assert await api.release(lock) is True
    assert not conn.exists('lock:job')
    assert lock.identifier == ident
    assert await api.release(lock) is False
    assert await api.acquire(lock) and lock.identifier == ident


async def test_refresh_of_lapsed_lock_takes_it_again(api, conn):
    lock = util.Lock(conn, 'job', 1, 10)
    assert await api.acquire(lock)
    ident = lock.identifier
    conn.delete('lock:job')  # as if the TTL had run out
    assert await api.lock_refresh(lock) is True
    assert lock.identifier == ident
    assert conn.get('lock:job') == ident.encode()  # no orphaned key: we own it
    assert await api.release(lock) is True
    assert not conn.exists('lock:job')


async def test_refresh_held_by_other_fails_and_forgets(api, conn):
    lock = util.Lock(conn, 'job', 1, 10)
    other = util.Lock(conn, 'job', 1, 10)
    assert await api.acquire(other)
    assert await api.lock_refresh(lock) is False
    assert lock.identifier is None
    assert conn.get('lock:job') == other.identifier.encode()


async def test_context_manager(api, conn):
    async with api.hold(util.Lock(conn, 'ctx', 1, 10)) as lock:
        assert isinstance(lock, util.Lock)
        assert conn.get('lock:ctx') == lock.identifier.encode()
    assert not conn.exists('lock:ctx')
    holder = util.Lock(conn, 'ctx', 1, 10)
    assert await api.acquire(holder)
    with pytest.raises(DataRaceError) as info:
        async with api.hold(util.Lock(conn, 'ctx', 0, 10)):
            pass  # pragma: no cover
    assert len(info.value.args) == 1
    assert 'lock:ctx' in info.value.args[0]
    with pytest.raises(KeyError):  # exceptions are not suppressed; the lock is released
        async with api.hold(util.Lock(conn, 'ctx2', 1, 10)):
            raise KeyError('x')
    assert not conn.exists('lock:ctx2')


@pytest.mark.parametrize('lock_timeout', [0, -1, -0.5, float('nan'), float('inf')])
def test_invalid_lock_timeout_is_refused_at_construction(conn, lock_timeout):
    # issue 12: rom 1.1.2 let Redis reject the SETEX with a raw ResponseError
    with pytest.raises(ValueError, match='lock_timeout'):
        util.Lock(conn, 'bad', 1, lock_timeout)
    assert not conn.exists('lock:bad')


def test_invalid_acquire_timeout_is_refused(conn):
    for value in (float('nan'), float('inf'), 'soon'):
        with pytest.raises(ValueError, match='acquire_timeout'):
            util.Lock(conn, 'bad', value, 10)


async def test_decoding_client(api, decoding_conn, roundtrips):
    lock = util.Lock(decoding_conn, 'dec', 1, 5)
    with roundtrips(decoding_conn) as rt:
        assert await api.acquire(lock) is True
    assert rt.count == (0 if api.is_async else 1)  # round trips of the blocking client
    assert decoding_conn.get('lock:dec') == lock.identifier
    assert await api.lock_refresh(lock) is True
    assert await api.release(lock) is True


async def test_lock_survives_script_flush(api, conn, scripts_reloaded):
    lock = util.Lock(conn, 'flush', 1, 5)
    assert await api.acquire(lock)
    conn.script_flush()
    assert await api.lock_refresh(lock) is True
    conn.script_flush()
    assert await api.release(lock) is True


def test_contended_from_two_threads(redis_url):
    """Two threads increment a counter with a non-atomic GET/SET inside the lock."""
    rounds = 40
    inside = []
    overlaps = []
    errors = []

    def worker() -> None:
        client = redis.Redis.from_url(redis_url)
        try:
            for _ in range(rounds):
                lock = util.Lock(client, 'shared', 5, 5)
                assert lock.acquire()
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(True)
                value = int(client.get('counter') or 0)
                time.sleep(0.0005)
                client.set('counter', value + 1)
                inside.pop()
                assert lock.release()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert not overlaps
    check = redis.Redis.from_url(redis_url)
    try:
        assert int(check.get('counter')) == 2 * rounds
        assert not check.exists('lock:shared')
    finally:
        check.close()


async def test_entity_lock(api, conn, decoding_conn):
    class Place(rom.Model):
        name = rom.Text()

    class Remote(rom.Model):
        _conn = decoding_conn
        name = rom.Text()

    place = Place(name='x')
    await api.save(place)
    lock = util.EntityLock(place, 1, 7)
    assert isinstance(lock, util.Lock)
    assert lock.lockname == 'lock:%s:%s' % (Place._namespace, place.id)
    assert lock.conn is conn
    assert await api.acquire(lock)
    assert conn.ttl('lock:%s:%s' % (Place._namespace, place.id)) == 7
    assert await api.release(lock)

    remote = Remote(name='y')
    remote_lock = util.EntityLock(remote, 1, 7)
    assert remote_lock.conn is decoding_conn
    async with api.hold(remote_lock):
        key = 'lock:%s:%s' % (Remote._namespace, remote.id)
        assert decoding_conn.get(key) == remote_lock.identifier
    # the entity itself is not blocked by its lock: rom's writes ignore lock keys
    async with api.hold(util.EntityLock(place, 1, 5)):
        place.name = 'z'
        await api.save(place)
    assert conn.hget(f'{Place._namespace}:%s' % place.id, 'name') == b'z'
