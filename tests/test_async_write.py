"""The asyncio write side: asave/acommit/adelete/atransfer, ids, per-task sessions, locks.

Every ``async def`` test here runs with rom's blocking client factory made to raise
(``rom.util._connect`` and ``rom.util.get_connection``): the async API must never reach for
a blocking client, so it never blocks the event loop. The checks made afterwards with the
blocking client (the audit, ``conn`` reads) are not rom's async API.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
from decimal import Decimal
from typing import Any, Iterator

import pytest

import rom
from rom import util
from rom._audit import audit_model
from rom.exceptions import (DataRaceError, EntityDeletedError, RestrictError,
                            UniqueKeyViolation)
from rom.util import session


def _no_blocking_client(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError('the async API asked for a blocking client (rom.util._connect / '
                         'get_connection): it would block the event loop')


@pytest.fixture(autouse=True)
def blocking_factory_raises(request: pytest.FixtureRequest,
                            monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The blocking client factory raises for the whole test (``async def`` tests)."""
    if inspect.iscoroutinefunction(request.function):
        refuse_blocking_client(monkeypatch)
    yield


def refuse_blocking_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``rom.util._connect`` and ``rom.util.get_connection`` raise."""
    monkeypatch.setattr(util, '_connect', _no_blocking_client)
    monkeypatch.setattr(util, 'get_connection', _no_blocking_client)


@contextlib.contextmanager
def blocking_allowed() -> Iterator[None]:
    """Restore the blocking factory for a check made by the test itself (an audit)."""
    patched = util._connect, util.get_connection
    util._connect = lambda obj: _factory_connect(obj)
    util.get_connection = lambda: util.CONNECTION
    try:
        yield
    finally:
        util._connect, util.get_connection = patched


def _factory_connect(obj: Any) -> Any:
    model = type(obj) if isinstance(obj, rom.Model) else obj
    return getattr(model, '_conn', None) or util.CONNECTION


def assert_audit_clean(*models: Any) -> None:
    with blocking_allowed():
        for model in models:
            report = audit_model(model)
            assert report.ok, report.summary()


async def test_asave_acommit_adelete_round_trip(conn):
    class Person(rom.Model):
        email = rom.String(unique=True, keygen=rom.IDENTITY)
        age = rom.Integer(index=True, default=0)

    ann = Person(email=b'ann@x', age=30)
    assert await ann.asave() > 0
    assert conn.hget('Person:%d' % ann.id, 'email') == b'ann@x'
    ann.age = 31
    assert await ann.asave() == 1
    bob, cid = Person(email=b'bob@x'), Person(email=b'cid@x')
    assert await session.acommit() > 0
    assert not bob._modified and not cid._modified
    assert conn.hexists('Person:email:uidx', 'cid@x')
    await bob.adelete()
    assert not conn.exists('Person:%d' % bob.id)
    await session.adelete(cid)
    assert not conn.exists('Person:%d' % cid.id)
    assert_audit_clean(Person)


async def test_errors_are_the_sync_ones(conn):
    class Account(rom.Model):
        email = rom.String(unique=True, keygen=rom.IDENTITY)
        n = rom.Integer(default=0)

    first = Account(email=b'a')
    await first.asave()
    with pytest.raises(UniqueKeyViolation):
        await Account(email=b'a').asave()
    conn.hset(first._pk, 'n', '5')  # a concurrent writer
    first.n = 7
    with pytest.raises(DataRaceError):
        await first.asave()
    conn.delete(first._pk)
    first.n = 8
    with pytest.raises(EntityDeletedError):
        await first.asave(full=True)
    with pytest.raises(rom.exceptions.ColumnError):
        await Account(email=b'never saved').adelete()


async def test_new_entity_in_a_coroutine_takes_no_blocking_id(conn):
    class Item(rom.Model):
        name = rom.Text()

    first = Item(name='a')  # no block held: the id waits for the first asave
    assert first._id_pending and conn.get('Item:id:') is None
    await first.asave()
    assert first.id == 1 and not first._id_pending
    many = [Item(name=str(i)) for i in range(30)]
    await session.acommit()
    ids = sorted(e.id for e in many)
    assert len(set(ids)) == 30 and ids[0] > 1
    # a block is held now (adaptive size): new entities get their id at once, no I/O
    later = Item(name='later')
    if not later._id_pending:
        assert later.id > ids[-1]
    await later.asave()
    assert int(conn.get('Item:id:')) >= later.id
    assert conn.hget('Item:%d' % later.id, 'name') == b'later'


async def test_new_referenced_entity_is_saved_first(conn):
    class Owner(rom.Model):
        name = rom.Text()

    class Pet(rom.Model):
        owner = rom.ManyToOne('Owner', on_delete='cascade')

    owner = Owner(name='o')
    pet = Pet(owner=owner)
    await pet.asave()
    assert not owner._new and conn.hget(pet._pk, 'owner') == str(owner.id).encode()
    await owner.adelete()  # cascade: the pet goes too, found without blocking
    assert not conn.exists(pet._pk) and not conn.exists(owner._pk)
    assert_audit_clean(Owner, Pet)


async def test_on_delete_policies(conn):
    class Parent(rom.Model):
        name = rom.Text()

    class Kid(rom.Model):
        parent = rom.ManyToOne('Parent', on_delete='set null')

    class Pinned(rom.Model):
        parent = rom.ManyToOne('Parent', on_delete='restrict')

    mum, dad = Parent(name='m'), Parent(name='d')
    kid = Kid(parent=mum)
    pin = Pinned(parent=dad)
    await session.acommit()
    await mum.adelete()
    assert kid.parent is None and conn.hget(kid._pk, 'parent') is None
    with pytest.raises(RestrictError):
        await dad.adelete()
    assert conn.exists(dad._pk) and conn.exists(pin._pk)
    assert_audit_clean(Parent, Kid, Pinned)


async def test_sessions_are_per_task(conn):
    class Note(rom.Model):
        text = rom.Text()

    seen = {}
    go = asyncio.Event()

    async def request(name: str) -> None:
        note = Note(text=name)
        await asyncio.sleep(0)
        await go.wait()
        seen[name] = list(session.known.values())
        assert await session.acommit() > 0
        assert note.text == name

    tasks = [asyncio.create_task(request('r%d' % i)) for i in range(5)]
    await asyncio.sleep(0.01)
    go.set()
    await asyncio.gather(*tasks)
    for name, known in seen.items():  # each task saw its own entity only
        assert [note.text for note in known] == [name]
    assert len(session.known) == 0  # this task's own session held none of them
    assert sorted(conn.hget(k, 'text') for k in conn.keys('Note:[0-9]*')) == \
        sorted(('r%d' % i).encode() for i in range(5))


async def test_identity_map_is_per_task(conn):
    class Doc(rom.Model):
        title = rom.Text()

    doc = Doc(title='t')
    await doc.asave()
    assert session.get(doc._pk) is doc

    async def other() -> Any:
        return session.get(doc._pk)

    assert await asyncio.create_task(other()) is None


async def test_500_tasks_competing_for_unique_values_and_rows(conn):
    class Member(rom.Model):
        email = rom.String(unique=True, keygen=rom.IDENTITY)
        score = rom.Integer(index=True, default=0)

    class Counter(rom.Model):
        name = rom.String(unique=True, keygen=rom.IDENTITY)
        value = rom.Integer(index=True, default=0)

    counters = [Counter(name=('c%d' % i).encode()) for i in range(5)]
    await session.acommit()
    counter_ids = [c.id for c in counters]
    outcomes = []

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        member = Member(email=('m%d' % rng.randrange(40)).encode(), score=seed)
        try:
            await member.asave()
            outcomes.append('member saved')
        except UniqueKeyViolation:
            outcomes.append('member conflict')
        # the same rows: read them in this task (its own entity), change, write back
        from rom._io import arun
        from rom._write import op_get_one
        counter = await arun(op_get_one(Counter, rng.choice(counter_ids)))
        assert counter is not None, (counter_ids, conn.keys("*"))
        await asyncio.sleep(rng.random() / 1000)
        counter.value += 1
        if rng.random() < 0.2:
            counter.name = ('c%d' % rng.randrange(8)).encode()  # unique values again
        try:
            await counter.asave()
            outcomes.append('counter saved')
        except (DataRaceError, UniqueKeyViolation):
            outcomes.append('counter conflict')

    results = await asyncio.gather(*(worker(i) for i in range(500)), return_exceptions=True)
    assert [r for r in results if r is not None] == []  # every conflict was a typed error
    assert len(outcomes) == 1000
    assert 0 < outcomes.count('member saved') <= 40
    assert outcomes.count('counter saved') >= 1
    emails = [conn.hget(k, 'email') for k in conn.keys('Member:[0-9]*')]
    assert len(emails) == len(set(emails)) == outcomes.count('member saved')
    names = [conn.hget(k, 'name') for k in conn.keys('Counter:[0-9]*')]
    assert len(names) == len(set(names)) == 5
    assert_audit_clean(Member, Counter)


async def test_cancelled_commit_writes_all_or_nothing_and_the_session_stays_usable(conn):
    class Row(rom.Model):
        key = rom.String(unique=True, keygen=rom.IDENTITY)
        group = rom.Integer(index=True)
        words = rom.Text(index=True, keygen=rom.FULL_TEXT)

    outcomes = set()
    for attempt in range(40):
        written = asyncio.Event()

        async def writer(attempt: int = attempt) -> None:
            rows = [Row(key=('%d-%d' % (attempt, i)).encode(), group=attempt,
                        words='w%d x%d' % (attempt, i)) for i in range(50)]
            try:
                await session.acommit()
                outcomes.add('done')
            except asyncio.CancelledError:
                # cancelled in flight: the batch is in Redis whole, or not at all (the
                # script may still run after the cancellation: look with one command)
                keys = [r._pk for r in rows if not r._id_pending]
                count = conn.exists(*keys) if keys else 0
                assert count in (0, len(rows)), count
                outcomes.add('cancelled, %s' % ('written' if count else 'not written'))
                # the session is still usable: the same entities are committed now, once
                await session.acommit()
            assert all(conn.hget(r._pk, 'key') == r.key for r in rows)
            written.set()

        task = asyncio.create_task(writer())
        for _ in range(1 + attempt % 8):
            await asyncio.sleep(0)
        if attempt % 8 == 7:
            await asyncio.sleep(0.0005 * (attempt // 8))
        task.cancel()
        await task
        assert written.is_set()
    assert len(conn.keys('Row:[0-9]*')) == 40 * 50
    assert len(conn.hkeys('Row:key:uidx')) == 40 * 50
    assert any(o.startswith('cancelled') for o in outcomes), outcomes
    assert_audit_clean(Row)


async def test_atransfer(conn):
    class Wallet(rom.Model):
        n = rom.Integer(index=True)
        d = rom.Decimal()

    class Txn(rom.Model):
        done = rom.Integer(default=0)

    a, b, t = Wallet(n=10, d=Decimal('1.5')), Wallet(n=0, d=Decimal(0)), Txn()
    await session.acommit()
    await a.atransfer(b, 'n', 4, t, 'done')
    assert (a.n, b.n) == (6, 4)
    assert conn.zscore('Wallet:n:idx', str(b.id)) == 4
    with pytest.raises(ValueError, match='already'):
        await a.atransfer(b, 'n', 1, t, 'done')
    assert_audit_clean(Wallet, Txn)


async def test_async_locks(conn):
    class Thing(rom.Model):
        name = rom.Text()

    thing = Thing(name='x')
    await thing.asave()
    async with util.EntityLock(thing, 1, 5) as lock:
        assert conn.get('lock:Thing:%d' % thing.id) == lock.identifier.encode()
        other = util.EntityLock(thing, 0, 5)
        assert not await other.aacquire()
        assert await lock.arefresh()
    assert not conn.exists('lock:Thing:%d' % thing.id)
    plain = util.Lock(conn, 'job', 1, 5)  # a blocking client given: its asyncio twin is used
    assert await plain.aacquire()
    assert not await util.Lock(conn, 'job', 0, 5).aacquire()
    assert await plain.arelease()
    with pytest.raises(DataRaceError):
        async with util.Lock(conn, 'held', 1, 5):
            async with util.Lock(conn, 'held', 0, 5):
                pass


async def test_model_with_own_async_client(conn, redis_url):
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(redis_url, decode_responses=True)

    class Own(rom.Model):
        _aconn = client
        name = rom.Text()

    try:
        own = Own(name='mine')
        await own.asave()
        assert conn.hget(own._pk, 'name') == b'mine'
        await own.adelete()
        assert not conn.exists(own._pk)
    finally:
        await client.aclose()


async def test_a_cycle_of_new_entities_is_saved_once_each(conn):
    class Node(rom.Model):
        next = rom.ManyToOne('Node', on_delete='no action')

    a, b = Node(), Node()
    a.next, b.next = b, a
    await a.asave()
    assert not a._new and not b._new
    assert conn.hget(a._pk, 'next') == str(b.id).encode()
    assert conn.hget(b._pk, 'next') == str(a.id).encode()
    assert len(conn.keys('Node:[0-9]*')) == 2
    assert_audit_clean(Node)


def test_a_cycle_of_new_entities_blocking(conn):
    class Ring(rom.Model):
        next = rom.ManyToOne('Ring', on_delete='no action')

    a, b, c = Ring(), Ring(), Ring()
    a.next, b.next, c.next = b, c, a
    a.save()
    assert [conn.hget(e._pk, 'next') for e in (a, b, c)] == \
        [str(e.id).encode() for e in (b, c, a)]
    assert not (a._new or b._new or c._new)


async def test_expiring_entities_through_the_async_writes(conn):
    class Token(rom.Model):
        _ttl = 60
        value = rom.String(unique=True, keygen=rom.IDENTITY)

    token = Token(value=b'abc')
    await token.asave()
    assert conn.zscore('Token:-expiry-', str(token.id)) is not None
    token.expire_in(0.05)
    await token.asave()
    await asyncio.sleep(0.15)
    session.rollback()
    assert await Token.aget(token.id) is None  # expired: gone for reads
    token.value = b'again'
    with pytest.raises(EntityDeletedError):
        await token.asave()  # an expired entity is not written back
    await token.asave(force=True)  # recreated
    assert conn.hget(token._pk, 'value') == b'again'
    await token.adelete()
    assert not conn.exists(token._pk)
    assert_audit_clean(Token)
