"""Writes are safe to retry (issue 12): a redis-py client configured with retries resends a
script call whose reply was lost; the replay must not store a row twice nor report a race
for an update that was applied.

The reply is dropped deterministically by ``rom.testing.FaultProxy``: once armed, the server
runs the next script call, its reply is swallowed and the connection cut.
"""
from __future__ import annotations

from typing import List

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import rom
from rom import session, util
from rom.exceptions import DataRaceError, UniqueKeyViolation
from rom.testing import Fault, FaultProxy


class _DropReplyProxy:
    """Clients through a ``rom.testing.FaultProxy``; ``arm()``: the server runs the next script
    call, its reply is lost and the connection cut (``cut_reply(0)``)."""

    def __init__(self, redis_url: str) -> None:
        self.proxy = FaultProxy(redis_url)
        self.faults: List[Fault] = []

    def arm(self) -> None:
        self.faults.append(self.proxy.cut_reply(0, ('EVAL', 'EVALSHA')))

    @property
    def dropped(self) -> int:
        return sum(fault.fired for fault in self.faults)

    def client(self, retries: int = 3) -> redis.Redis:
        return self.proxy.client(retry=Retry(NoBackoff(), retries),
                                 retry_on_error=[redis.ConnectionError, redis.TimeoutError])

    def close(self) -> None:
        self.proxy.close()


@pytest.fixture
def proxy(redis_url):
    p = _DropReplyProxy(redis_url)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def retrying(proxy, conn):
    client = proxy.client()
    client.ping()
    util.CONNECTION = client
    try:
        yield client
    finally:
        util.CONNECTION = conn
        client.close()


def _rows(conn, ns: str) -> List[bytes]:
    return sorted(k for k in conn.keys(ns + ':*') if k[len(ns) + 1:].isdigit())


@pytest.mark.parametrize('defer', [False, True])
def test_replayed_insert_stores_one_row(proxy, retrying, conn, defer):
    class Hit(rom.Model):
        _defer_ids = defer
        path = rom.Text(unique=True)
        n = rom.Integer(index=True)
        words = rom.Text(index=True, keygen=rom.FULL_TEXT)

    Hit(path='warm', n=1).save()
    hit = Hit(path='/x', n=3, words='a b')
    proxy.arm()
    hit.save()                      # the reply is lost, redis-py sends the call again
    assert proxy.dropped == 1
    assert len(_rows(conn, 'Hit')) == 2
    assert conn.hgetall('Hit:path:uidx') == {b'warm': b'1', b'/x': str(hit.id).encode()}
    assert conn.zcard('Hit:n:idx') == 2 and conn.scard('Hit:words:a:idx') == 1
    assert not hit._new and Hit.query.filter(n=3).count() == 1


def test_replayed_commit_stores_each_row_once(proxy, retrying, conn):
    class Hit(rom.Model):
        _defer_ids = True
        path = rom.Text(unique=True)

    Hit(path='warm').save()
    hits = [Hit(path='/%d' % i) for i in range(50)]
    proxy.arm()
    session.commit()
    assert proxy.dropped == 1
    assert len(_rows(conn, 'Hit')) == 51 and conn.hlen('Hit:path:uidx') == 51
    assert sorted(h.id for h in hits) == sorted(set(h.id for h in hits))


def test_replayed_update_is_not_a_race(proxy, retrying, conn):
    class Acc(rom.Model):
        email = rom.Text(unique=True)
        n = rom.Integer(index=True)
        tag = rom.Text(index=True, keygen=rom.IDENTITY)
        note = rom.Text()

    acc = Acc(email='a@x', n=1, tag='old', note='x')
    acc.save()
    acc.email, acc.n, acc.tag, acc.note = 'b@x', 2, 'new', None
    proxy.arm()
    assert acc.save() == 4          # replayed: finds its own write, no DataRaceError
    assert proxy.dropped == 1
    assert conn.hgetall('Acc:%d' % acc.id)[b'email'] == b'b@x'
    assert b'note' not in conn.hgetall('Acc:%d' % acc.id)
    assert conn.hgetall('Acc:email:uidx') == {b'b@x': b'1'}
    assert conn.smembers('Acc:tag:new:idx') == {b'1'} and not conn.exists('Acc:tag:old:idx')
    assert conn.zscore('Acc:n:idx', '1') == 2


def test_a_real_race_is_still_detected(conn):
    class Acc(rom.Model):
        n = rom.Integer(index=True)

    a = Acc(n=1)
    a.save()
    session.forget(a)
    b = Acc.get(a.id)
    b.n = 5
    b.save()
    a.n = 2
    with pytest.raises(DataRaceError):
        a.save()                    # the row holds 5: neither the old value nor ours
    a.n = 5
    a.save()                        # the row already holds what this save writes: no race


def test_replayed_insert_that_failed_on_a_unique_value_still_fails(proxy, retrying, conn):
    class U(rom.Model):
        email = rom.Text(unique=True)

    U(email='taken').save()
    dup = U(email='taken')
    proxy.arm()
    with pytest.raises(UniqueKeyViolation):
        dup.save()
    assert len(_rows(conn, 'U')) == 1


def test_without_retries_the_lost_reply_raises_and_a_resave_writes_once(proxy, conn):
    class Hit(rom.Model):
        _defer_ids = True
        path = rom.Text(unique=True)

    client = proxy.client(retries=0)
    util.CONNECTION = client
    try:
        Hit(path='warm').save()
        hit = Hit(path='/y')
        proxy.arm()
        with pytest.raises(redis.ConnectionError):
            hit.save()
        assert hit._new and len(_rows(conn, 'Hit')) == 2   # written although it raised
        hit.save()                                          # the application saves again
    finally:
        util.CONNECTION = conn
        client.close()
    assert len(_rows(conn, 'Hit')) == 2 and conn.hlen('Hit:path:uidx') == 2


def test_replayed_update_of_numeric_values_is_not_a_race(proxy, retrying, conn):
    class Acc(rom.Model):
        n = rom.Integer(index=True)
        f = rom.Float(index=True)
        tag = rom.Text(index=True, keygen=rom.IDENTITY)

    acc = Acc(n=1, f=0.5, tag='t')
    acc.save()
    acc.n, acc.f = 2, 1.5      # only numeric index values: the incremental update
    proxy.arm()
    assert acc.save() == 2
    assert proxy.dropped == 1
    assert conn.zscore('Acc:n:idx', '1') == 2 and conn.zscore('Acc:f:idx', '1') == 1.5
    assert conn.hget('Acc:1', 'n') == b'2' and conn.smembers('Acc:tag:t:idx') == {b'1'}
