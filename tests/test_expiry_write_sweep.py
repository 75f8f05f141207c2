"""The expiry cleanup a save triggers (issue 14): the same operation in both drivers.

A save of a model with ``_ttl`` removes a few of its due entities (``rom._expiry``'s
``op_after_write``, part of the save's operation). Each test runs through the blocking API
and the asyncio API (the ``api`` fixture); in the asyncio run the writes are made with the
blocking client factory raising, so the cleanup never blocks the event loop.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

import pytest

import rom
import rom.expiry
from rom import _expiry, util
from rom._audit import audit_model
from rom.testing import dump_database
from test_expiry import PAST, TTL, live_then_gone, make_doc  # the expiry tests' model and scenario


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError('the async API asked for a blocking client: it would block the loop')


@contextlib.contextmanager
def no_blocking(api: Any) -> Iterator[None]:
    """In the asyncio run: the blocking client factory raises inside the block."""
    if not api.is_async:
        yield
        return
    saved = util._connect, util.get_connection
    util._connect = util.get_connection = _refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        util._connect, util.get_connection = saved  # type: ignore[assignment]


def audit_clean(*models: Any) -> None:
    """The audit of each model is clean (made with the blocking client, also when
    ``ROM_TEST_NO_BLOCKING=1`` makes the factory raise in the test body)."""
    saved = util._connect, util.get_connection
    util._connect = lambda obj: util.CONNECTION  # type: ignore[assignment]
    util.get_connection = lambda: util.CONNECTION  # type: ignore[assignment]
    try:
        for model in models:
            report = audit_model(model)
            assert report.ok, report.summary()
    finally:
        util._connect, util.get_connection = saved  # type: ignore[assignment]


def _without_counter(dump: Any) -> Any:
    return {k: v for k, v in dump.items() if k != b'Doc:id:'}


async def test_a_save_removes_the_due_entities_of_its_model(api, conn):
    Doc = make_doc()
    _live, gone, before = await live_then_gone(api, conn, Doc)
    assert conn.zrange('Doc:-expiry-', 0, -1) == [str(gone.id).encode()]
    time.sleep(PAST)
    assert conn.exists('Doc:%d' % gone.id)            # expired, not removed yet
    with no_blocking(api):
        other = Doc(name='delta', email='other@x', n=3, lon=12.0, lat=22.0)
        await api.save(other)                          # its save removes the due one
    assert other.id == 3 and gone.id == 2
    assert not conn.exists('Doc:2', 'Doc:2:notes', 'Doc:-expiry-', 'Doc:name:gamma:idx')
    assert conn.hgetall('Doc:email:uidx') == {b'live@x': b'1', b'other@x': b'3'}
    assert conn.zrange('Doc:n:idx', 0, -1) == [b'1', b'3']
    assert conn.zrange('Doc:where:geo', 0, -1) == [b'1', b'3']
    assert conn.smembers('Doc:name:alpha:idx') == {b'1'}
    assert [m for m in conn.zrange('Doc:name:pre', 0, -1) if m.endswith(b'\x002')] == []
    assert [m for m in conn.zrange('Doc:name:suf', 0, -1) if m.endswith(b'\x002')] == []
    audit_clean(Doc)
    # exactly: what remains is `before` plus the other entity's own writes
    with no_blocking(api):
        await api.delete(other)
    assert _without_counter(dump_database(conn)) == _without_counter(before)
    assert conn.get('Doc:id:') == b'3'


async def test_a_commit_applies_on_delete_policies_to_the_due_entities(api, conn):
    class Parent(rom.Model):
        _ttl = 0
        name = rom.Text(index=True, keygen=rom.FULL_TEXT)

    class Child(rom.Model):
        parent = rom.ManyToOne('Parent', on_delete='cascade')
        label = rom.Text(index=True, keygen=rom.FULL_TEXT)

    class Watcher(rom.Model):
        parent = rom.ManyToOne('Parent', on_delete='set null')
    parent = Parent(name='p')
    child, watcher = Child(parent=parent, label='c'), Watcher(parent=parent)
    await api.commit()
    parent.expire_in(TTL)
    await api.save(parent)
    time.sleep(PAST)
    with no_blocking(api):
        Parent(name='q')
        await api.commit()                             # the commit removes the due parent
    assert not conn.exists('Parent:%d' % parent.id, 'Child:%d' % child.id, 'Parent:-expiry-')
    assert conn.zrange('Child:parent:idx', 0, -1) == [] and not conn.exists('Child:label:c:idx')
    assert conn.hget('Watcher:%d' % watcher.id, 'parent') is None
    assert conn.zrange('Parent:name:p:idx', 0, -1) == []
    audit_clean(Parent, Child, Watcher)


async def test_a_failed_cleanup_warns_keeps_the_save_and_is_retried(api, conn):
    Doc = make_doc()
    await api.save(Doc(name='a'))
    conn.zadd('Doc:-expiry-', {'99': 1})
    conn.set('Doc:99', b'not a row')                   # the cleanup's read of it fails
    _expiry._next_check.pop(Doc, None)
    with no_blocking(api):
        b = Doc(name='b')
        with pytest.warns(RuntimeWarning, match='removing expired entities'):
            await api.save(b)
    assert conn.hget('Doc:%d' % b.id, 'name') == b'b' and not b._modified
    conn.delete('Doc:99')
    with no_blocking(api):
        await api.save(Doc(name='c'))                  # the next write tries again at once
    assert not conn.exists('Doc:-expiry-')


async def test_the_cleanup_is_throttled_per_model(api, conn):
    Doc = make_doc()
    await api.save(Doc(name='a'))                      # looked: nothing due
    conn.zadd('Doc:-expiry-', {'1': 1})
    conn.hset('Doc:1', '-expire-at-', 1)
    with no_blocking(api):
        await api.save(Doc(name='b'))                  # within WRITE_SWEEP_INTERVAL: no look
    assert conn.exists('Doc:1')
    _expiry._next_check[Doc] = time.monotonic()
    with no_blocking(api):
        await api.save(Doc(name='c'))
    assert not conn.exists('Doc:1', 'Doc:-expiry-')


async def test_asweep_is_the_awaitable_sweep(api, conn):
    Doc = make_doc()
    docs = [Doc(name='d%d' % i, email='%d@x' % i) for i in range(3)]
    for doc in docs:
        doc.expire_in(TTL)
    await api.commit()
    time.sleep(PAST)
    with no_blocking(api):
        if api.is_async:
            result = await rom.expiry.asweep(Doc, limit=2)
        else:
            result = rom.expiry.sweep(Doc, limit=2)
    assert (result.removed, result.blocked, result.seen, result.due, result.wait) == \
        (2, 0, 2, 3, 0.0)
    assert conn.zcard('Doc:-expiry-') == 1 and len(conn.hgetall('Doc:email:uidx')) == 1
    audit_clean(Doc)


async def test_a_transfer_reindexes_and_cleans_up_without_blocking(api, conn):
    class Wallet(rom.Model):
        _ttl = 0
        balance = rom.Integer(index=True)

    class Txn(rom.Model):
        done = rom.Integer()
    a, b, old, txn = Wallet(balance=10), Wallet(balance=0), Wallet(balance=1), Txn(done=0)
    old.expire_in(TTL)
    await api.commit()
    time.sleep(PAST)
    with no_blocking(api):
        await api.transfer(a, b, 'balance', 5, txn, 'done')   # its reindexing saves sweep
    assert conn.zrange('Wallet:balance:idx', 0, -1, withscores=True) == [
        (str(a.id).encode(), 5.0), (str(b.id).encode(), 5.0)]
    assert not conn.exists('Wallet:%d' % old.id, 'Wallet:-expiry-')
    audit_clean(Wallet)
