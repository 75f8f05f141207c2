"""Ids of new entities come from blocks reserved with one INCRBY (rom/_ids.py, issue 13).

The counter stays rom 1.1.2's ``<ns>:<pk>:``; only its increments change. Ids are unique
across threads, processes (forks included) and writers that use plain INCR.
"""
from __future__ import annotations

import os
import threading
import time

import pytest
import redis

import rom
from rom import _ids, session
from rom._limits import MAX_IDS_PER_BLOCK
from rom.exceptions import ORMError


@pytest.fixture(autouse=True)
def _fast_enough(monkeypatch):
    # every block counts as used up quickly, however loaded the machine running the tests
    monkeypatch.setattr(_ids, 'REFILL_SECONDS', 3600.0)


@pytest.fixture
def Item():
    class Item(rom.Model):
        n = rom.Integer(index=True)
    return Item


def test_first_block_is_one_id_then_blocks_grow_while_entities_come_fast(Item, conn):
    assert Item(n=1).id == 1 and conn.get('Item:id:') == b'1'     # like one INCR
    assert Item(n=2).id == 2 and conn.get('Item:id:') == b'3'     # a block of 2
    assert Item(n=3).id == 3 and conn.get('Item:id:') == b'3'     # no round trip
    items = [Item(n=i) for i in range(100)]
    assert [i.id for i in items] == list(range(4, 104))           # in order, no gaps
    assert int(conn.get('Item:id:')) < 300                         # blocks of 4, 8, ... 64, 128


def test_blocks_shrink_when_entities_come_slowly(Item, conn, monkeypatch):
    for i in range(20):
        Item(n=i)
    big = _ids._counters[('Item:id:', _ids._database(conn))].size
    assert big >= 16
    monkeypatch.setattr(_ids, 'REFILL_SECONDS', 0.0)  # every block now lasted "too long"
    last = int(conn.get('Item:id:'))
    while Item(n=0).id <= last:
        pass
    assert _ids._counters[('Item:id:', _ids._database(conn))].size == big // 2


def test_block_size_is_capped(Item, conn):
    for _ in range(5000):
        Item(n=0)
    counter = _ids._counters[('Item:id:', _ids._database(conn))]
    assert counter.size == _ids.MAX_BLOCK
    assert int(conn.get('Item:id:')) - 5000 < _ids.MAX_BLOCK


def test_fixed_block_size_per_model(conn, roundtrips):
    class One(rom.Model):
        _ids_per_block = 1   # rom 1.1.2's increments: one INCR per entity
        x = rom.Integer()

    class Ten(rom.Model):
        _ids_per_block = 10
        x = rom.Integer()

    with roundtrips(conn) as rt:
        ones = [One(x=i) for i in range(5)]
    assert rt.count == 5 and conn.get('One:id:') == b'5' and [o.id for o in ones] == [1, 2, 3, 4, 5]
    with roundtrips(conn) as rt:
        tens = [Ten(x=i) for i in range(25)]
    assert rt.commands == ['INCRBY'] * 3 and conn.get('Ten:id:') == b'30'
    assert [t.id for t in tens] == list(range(1, 26))


@pytest.mark.parametrize('bad', [0, -1, 1.5, '10', True])
def test_invalid_block_size_is_refused(bad):
    with pytest.raises(ORMError, match='_ids_per_block'):
        type('Bad', (rom.Model,), {'_ids_per_block': bad, 'x': rom.Integer()})


def test_block_size_bound(conn):
    """``_ids_per_block`` goes up to MAX_IDS_PER_BLOCK (1,000,000): one INCRBY reserves it."""
    assert MAX_IDS_PER_BLOCK == 1_000_000
    with pytest.raises(ORMError, match=r'_ids_per_block .*must be at most 1000000, not 1000001'):
        type('Huge', (rom.Model,), {'_ids_per_block': 1_000_001, 'x': rom.Integer()})
    Big = type('Big', (rom.Model,), {'_ids_per_block': 1_000_000, 'x': rom.Integer()})
    first, second = Big(x=1), Big(x=2)
    first.save()
    second.save()
    assert (first.id, second.id) == (1, 2) and conn.get('Big:id:') == b'1000000'


def test_one_round_trip_per_save_once_a_block_is_held(Item, conn, roundtrips):
    for i in range(4):  # blocks of 1, 2 and 4 ids: the last holds 3 spare ids
        Item(n=i).save()
    with roundtrips(conn) as rt:
        e = Item(n=5)
        e.save()
    assert rt.count == 1 and rt.commands[0].startswith('EVAL')
    for _ in range(10):
        Item(n=0)
    with roundtrips(conn) as rt:
        session.commit()
    assert rt.count == 1


def test_plain_incr_writers_never_get_an_id_of_a_block(Item, conn):
    """A rom 1.1.2 process (plain INCR on the same counter) and this one, interleaved."""
    ours, theirs = [], []
    for i in range(200):
        ours.append(Item(n=i).id)
        if i % 7 == 0:
            theirs.append(conn.incr('Item:id:'))
    assert len(set(ours)) == len(ours) and not set(ours) & set(theirs)
    assert max(ours + theirs) <= int(conn.get('Item:id:'))


def test_threads_share_blocks_without_duplicates(Item, conn):
    got = []
    lock = threading.Lock()

    def work():
        mine = [Item(n=i).id for i in range(300)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 2400 and len(set(got)) == 2400
    assert max(got) <= int(conn.get('Item:id:'))


@pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs os.fork')
def test_a_forked_child_does_not_reuse_the_parents_block(Item, conn, redis_url):
    for i in range(40):
        Item(n=i)  # the parent now holds a block with spare ids
    counter = _ids._counters[('Item:id:', _ids._database(conn))]
    assert counter.last > counter.next
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a new client (sockets are not shared across a fork)
        try:
            rom.util.CONNECTION = redis.Redis.from_url(redis_url)
            ids = [Item(n=i).id for i in range(20)]
            os.write(write, (','.join(map(str, ids))).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = [int(x) for x in os.read(read, 100000).decode().split(',')]
    os.close(read)
    parent = [Item(n=i).id for i in range(20)]
    assert len(child) == 20 and not set(child) & set(parent)


def test_clients_of_the_same_database_share_blocks(Item, conn, redis_url):
    first = Item(n=1).id
    other = redis.Redis.from_url(redis_url)
    rom.util.CONNECTION = other
    try:
        assert Item(n=2).id == first + 1
    finally:
        rom.util.CONNECTION = conn
        other.close()


def test_forgotten_blocks_restart_from_the_counter(Item, conn):
    for i in range(10):
        Item(n=i)
    conn.flushdb()           # the counter restarts behind rom's back
    _ids.forget_blocks()     # (rom.testing's clean slate does this)
    assert Item(n=1).id == 1


def test_unfiltered_count_is_the_counter_so_reserved_ids_count(Item, conn):
    for i in range(10):
        Item(n=i)
    session.commit()
    assert Item.query.count() == int(conn.get('Item:id:')) >= 10   # an upper bound, as before
    assert Item.query.filter(n=(None, None)).count() == 10


def test_reserving_more_than_a_block_at_once(conn):
    class D(rom.Model):
        _defer_ids = True
        x = rom.Integer()

    entities = [D(x=i) for i in range(3000)]
    assert conn.get('D:id:') is None      # pending: nothing taken yet
    session.commit()
    assert [e.id for e in entities] == list(range(1, 3001))
    assert int(conn.get('D:id:')) == 3000   # one reservation of the 3000 ids


def test_ids_taken_quickly_stay_in_creation_order_within_a_process(Item):
    start = time.monotonic()
    ids = [Item(n=0).id for _ in range(500)]
    assert ids == sorted(ids) and time.monotonic() - start < 30
