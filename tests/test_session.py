"""The per-thread session (identity map): tracking, null session, flush/commit/save/delete/
refresh, round trips and failure outcomes of batched commits.

Spec: session-util-and-storage.md §3.
"""
from __future__ import annotations

import collections.abc
import threading
import weakref

import pytest
import redis

import rom
from rom.testing import dump_database as dump
from rom import util
from rom.exceptions import (DataRaceError, EntityDeletedError, InvalidColumnValue,
                            InvalidOperation, ORMError, UniqueKeyViolation)

session = rom.session




@pytest.fixture
def M(conn):
    class M(rom.Model):
        a = rom.Integer(index=True)
        u = rom.Text(unique=True)
        j = rom.Json()

    return M


# --- identity map (§3.1, §3.5 add/forget/get/rollback) -------------------------------------

def test_session_type_and_containers(M):
    assert isinstance(session, threading.local)
    assert isinstance(session, util.Session)
    # a mapping keyed by _pk (reading its keys allocates pending ids, see test_deferred_ids)
    assert isinstance(session.known, collections.abc.MutableMapping)
    assert isinstance(session.wknown, weakref.WeakValueDictionary)


def test_add_forget_get(M):
    e = M(a=1)
    assert session.known == {f'{M._namespace}:1': e}
    assert session.wknown[f'{M._namespace}:1'] is e
    assert session.get(f'{M._namespace}:1') is e
    session.forget(e)
    assert f'{M._namespace}:1' not in session.known and f'{M._namespace}:1' not in session.wknown
    assert session.get(f'{M._namespace}:1') is None
    session.forget(e)  # not there: no error
    session.add(e)
    assert session.get(f'{M._namespace}:1') is e


def test_add_keeps_position_and_forget_moves_to_end(M):
    a, b, c = M(a=1), M(a=2), M(a=3)
    assert list(session.known) == [f'{M._namespace}:1', f'{M._namespace}:2', f'{M._namespace}:3']
    session.add(a)
    assert list(session.known) == [f'{M._namespace}:1', f'{M._namespace}:2', f'{M._namespace}:3']
    session.forget(a)
    session.add(a)
    assert list(session.known) == [f'{M._namespace}:2', f'{M._namespace}:3', f'{M._namespace}:1']


def test_add_ignores_pk_none(M):
    class Fake:
        _pk = 'M:None'

    session.add(Fake())
    assert session.known == {}


async def test_get_falls_back_to_weak_references(api, M):
    e = M(a=1)
    await api.save(e)
    await api.commit()
    assert session.known == {}
    assert session.get(f'{M._namespace}:1') is e
    assert await api.get(M, 1) is e
    del e
    import gc
    gc.collect()
    assert session.get(f'{M._namespace}:1') is None


async def test_rollback_keeps_local_changes(api, M, conn):
    e = M(a=1)
    await api.save(e)
    e.a = 5
    session.rollback()
    assert session.known == {} and len(session.wknown) == 0
    assert e.a == 5 and e._modified
    other = await api.get(M, 1)
    assert other is not e and other.a == 1
    assert await api.commit() == 0  # e is no longer tracked
    assert conn.hget(f'{M._namespace}:1', 'a') == b'1'


# --- when entities are tracked (§3.3) ---------------------------------------------------------

async def test_tracking_events(api, M, conn):
    e = M(a=1)
    assert session.get(e._pk) is e  # construction
    await api.save(e)
    session.rollback()
    loaded = await api.get(M, 1)
    assert session.known[f'{M._namespace}:1'] is loaded  # load
    session.rollback()
    loaded.a = 2
    assert session.known[f'{M._namespace}:1'] is loaded  # assignment
    session.rollback()
    del loaded.a
    assert session.known[f'{M._namespace}:1'] is loaded  # delete attribute
    await api.refresh(loaded, force=True)
    session.rollback()
    await api.refresh(loaded)
    assert session.known[f'{M._namespace}:1'] is loaded  # refresh
    await api.delete(loaded)
    assert f'{M._namespace}:1' not in session.known and f'{M._namespace}:1' not in session.wknown  # delete


def test_get_returns_cached_object_without_reading(M, conn, roundtrips):
    e = M(a=1)
    e.save()
    conn.hset('M:1', 'a', '9')
    with roundtrips(conn) as rt:
        assert M.get(1) is e
    assert rt.count == 0
    assert e.a == 1  # stale read (compat)


# --- null session (§3.2) ------------------------------------------------------------------------

def test_null_session_global_and_override(M):
    assert util.NULL_SESSION is False
    assert not session.null_session
    util.use_null_session()
    try:
        assert util.NULL_SESSION is True
        assert session.null_session
        session.null_session = False
        assert not session.null_session
        del session.null_session
        assert session.null_session
        del session.null_session  # no override: not an error
    finally:
        util.use_rom_session()
    assert util.NULL_SESSION is False
    assert not session.null_session
    session.null_session = 1
    assert session.null_session == 1
    del session.null_session


async def test_null_session_behaviour(api, M, conn):
    tracked = M(a=1)
    await api.save(tracked)
    tracked.a = 2
    session.null_session = True
    try:
        e = M(a=3)
        assert session.get(e._pk) is None
        await api.save(e)
        first, second = await api.get(M, 2), await api.get(M, 2)
        assert first is not second
        assert await api.get(M, 1) is tracked  # cached before the switch
        e.a = 4
        assert session.get(e._pk) is None
        assert await api.commit() == 1  # only what was tracked before the switch
        assert conn.hget(f'{M._namespace}:1', 'a') == b'2'
        assert conn.hget(f'{M._namespace}:2', 'a') == b'3'
        session.rollback()
        assert await api.get(M, 1) is not tracked
    finally:
        del session.null_session


def test_session_is_per_thread(M):
    e = M(a=1)
    seen = {}

    def other():
        seen['get'] = session.get(e._pk)
        seen['known'] = dict(session.known)
        session.null_session = True
        seen['null'] = session.null_session
        M(a=2)
        seen['known_after'] = dict(session.known)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == {'get': None, 'known': {}, 'null': True, 'known_after': {}}
    assert not session.null_session
    assert session.known == {f'{M._namespace}:1': e}


# --- dirty tracking (§3.4) ----------------------------------------------------------------------

async def test_in_place_mutation_needs_all(api, M, conn):
    e = M(j={'k': 1})
    await api.save(e)
    e.j['k'] = 2
    assert not e._modified
    assert await api.commit() == 0
    assert conn.hget(f'{M._namespace}:1', 'j') == b'{"k": 1}'
    session.add(e)
    assert await api.commit(all=True) == 1
    assert conn.hget(f'{M._namespace}:1', 'j') == b'{"k": 2}'


# --- flush / commit (§3.5) ----------------------------------------------------------------------

async def test_flush_and_commit(api, M, conn):
    a, b = M(a=1), M(a=2)
    assert await api.flush() == 8  # 4 columns each (a u j id)
    assert list(session.known) == [f'{M._namespace}:1', f'{M._namespace}:2']
    assert await api.flush() == 0
    a.a = 10
    assert await api.commit() == 1
    assert session.known == {}
    assert session.get(f'{M._namespace}:1') is a
    assert conn.hget(f'{M._namespace}:1', 'a') == b'10'
    assert await api.commit() == 0


async def test_commit_flags(api, M, conn):
    a = M(a=1)
    await api.commit()
    session.add(a)
    conn.delete(f'{M._namespace}:a:idx')
    assert await api.commit(all=True) == 0  # nothing changed, but indexes rewritten
    assert conn.zscore(f'{M._namespace}:a:idx', '1') == 1.0
    session.add(a)
    assert await api.flush(all=True, full=True) == 4
    # force: no race check
    session.rollback()
    other = await api.get(M, 1)
    session.rollback()
    a.a = 5
    await api.save(a)
    other.a = 6
    session.add(other)
    with pytest.raises(DataRaceError):
        await api.flush()
    assert await api.flush(force=True) == 4
    assert conn.hget(f'{M._namespace}:1', 'a') == b'6'


async def test_commit_failure_keeps_known(api, M, conn):
    await api.save(M(u='x'))
    bad = M(u='x')
    assert f'{M._namespace}:2' in session.known
    with pytest.raises(UniqueKeyViolation):
        await api.commit()
    assert session.known[f'{M._namespace}:2'] is bad
    assert bad._modified and bad._new
    bad.u = 'y'
    assert await api.commit() == 4
    assert conn.hget(f'{M._namespace}:2', 'u') == b'y'


# --- save (§3.5) --------------------------------------------------------------------------------

async def test_save_flattens_and_sums(api, M, conn):
    a, b, c, d = M(a=1), M(a=2), M(a=3), M(a=4)
    assert await api.session_save([a, (b, [c])], d, bogus_kwarg=1) == 16
    assert all(conn.exists(f'{M._namespace}:%i' % i) for i in range(1, 5))
    assert await api.session_save(a, b) == 0
    a.a = 7
    assert await api.session_save(a, b) == 1
    assert await api.session_save(a, b, all=True, full=True) == 8
    assert await api.session_save() == 0


async def test_save_order_is_depth_first(api, M, conn):
    order = []

    class Ord(rom.Model):
        n = rom.Integer()

        def _after_insert(self):
            order.append(self.n)

    items = [Ord(n=i) for i in range(5)]
    await api.session_save([items[3], (items[0], [items[4]])], items[1], items[2])
    assert order == [3, 0, 4, 1, 2]


async def test_save_skips_deleted_even_with_force(api, M, conn):
    a = M(a=1)
    await api.save(a)
    await api.delete(a)
    assert await api.session_save(a, force=True) == 0
    assert not conn.exists('M:1')


async def test_save_non_entity_raises_after_earlier_saved(api, M, conn):
    a, b = M(a=1), M(a=2)
    with pytest.raises(ORMError) as info:
        await api.session_save(a, 'junk', b)
    assert 'junk' in str(info.value)
    assert conn.exists(f'{M._namespace}:1')
    assert not conn.exists(f'{M._namespace}:2')


# --- batched commits: constant round trips, reference outcome on failure (§3.6) -------------

@pytest.mark.parametrize('n', [3, 30])
def test_commit_round_trips_constant(M, conn, roundtrips, n):
    for i in range(n):
        M(a=i, u='u%i' % i)
    with roundtrips(conn) as rt:
        assert session.commit() == 4 * n
    assert rt.count <= 2
    assert conn.zcard(f'{M._namespace}:a:idx') == n
    for i in range(n):
        e = M.get(i + 1)
        e.a = 100 + i
    with roundtrips(conn) as rt:
        assert session.commit() == n
    assert rt.count <= 2
    assert conn.hget(f'{M._namespace}:%i' % n, 'a') == str(100 + n - 1).encode()


def _hooked_model():
    calls = []

    class H(rom.Model):
        u = rom.Text(unique=True)
        n = rom.Integer(index=True)

        def _after_insert(self):
            calls.append(('ai', self.n))

        def _after_update(self):
            calls.append(('au', self.n))

    return H, calls


@pytest.mark.parametrize('failing', [0, 3, 7])
async def test_commit_failure_unique_outcome(api, conn, roundtrips, failing):
    H, calls = _hooked_model()
    await api.save(H(u='taken', n=-1))
    calls.clear()
    entities = [H(u='taken' if i == failing else 'v%i' % i, n=i) for i in range(8)]
    with roundtrips(conn) as rt:
        with pytest.raises(UniqueKeyViolation) as info:
            await api.commit()
    if not api.is_async:  # round trips of the blocking client
        assert rt.count <= 2
    assert info.value.args[1:] == (H._namespace, str(entities[failing].id))
    for i, e in enumerate(entities):
        written = conn.exists(e._pk)
        if i < failing:
            assert written and not e._new and not e._modified
            assert conn.hget(f'{H._namespace}:u:uidx', 'v%i' % i) == str(e.id).encode()
        else:
            assert not written and e._new and e._modified
            assert not conn.hexists(f'{H._namespace}:u:uidx', 'v%i' % i)
    assert calls == [('ai', i) for i in range(failing)]
    assert conn.zcard(f'{H._namespace}:n:idx') == 1 + failing
    assert list(session.known)[-8:] == [e._pk for e in entities]


async def test_commit_failure_data_race_outcome(api, conn, roundtrips):
    H, calls = _hooked_model()
    rows = [H(u='r%i' % i, n=i) for i in range(6)]
    await api.commit()
    session.rollback()
    handles = await api.get(H, [r.id for r in rows])
    # another writer changes entity 3
    conn.hset(handles[3]._pk, 'n', '333')
    for h in handles:
        h.n += 10
    before = dump(conn)
    with pytest.raises(DataRaceError) as info:
        await api.commit()
    assert info.value.args[1:] == (H._namespace, str(handles[3].id))
    after = dump(conn)
    for i, h in enumerate(handles):
        if i < 3:
            assert conn.hget(h._pk, 'n') == str(i + 10).encode()
            assert not h._modified
        else:
            assert h._modified
            assert after[h._pk.encode()] == before[h._pk.encode()]
    assert conn.hget(handles[3]._pk, 'n') == b'333'


async def test_commit_failure_entity_deleted_outcome(api, conn):
    H, calls = _hooked_model()
    rows = [H(u='r%i' % i, n=i) for i in range(4)]
    await api.commit()
    session.rollback()
    handles = await api.get(H, [r.id for r in rows])
    conn.delete(handles[1]._pk)
    for h in handles:
        h.n += 10
    with pytest.raises(EntityDeletedError) as info:
        await api.commit()
    assert info.value.args[1:] == (H._namespace, '2')
    assert conn.hget(f'{H._namespace}:1', 'n') == b'10'
    assert not conn.exists(f'{H._namespace}:2')
    assert conn.hget(f'{H._namespace}:3', 'n') == b'2'


async def test_commit_failure_invalid_value_nothing_written_from_failing_one(api, conn):
    class IV(rom.Model):
        t = rom.Text(index=True, keygen2=lambda attr, data: {'': data.get('t')})

    ok = IV(t='1')
    bad = IV(t='not a number')
    later = IV(t='2')
    with pytest.raises(InvalidColumnValue):
        await api.commit()
    assert conn.exists(ok._pk)
    assert not conn.exists(bad._pk) and not conn.exists(later._pk)
    assert bad._new and later._new


async def test_commit_with_several_clients(api, conn, redis_url, roundtrips):
    other = redis.Redis.from_url(redis_url)

    class A1(rom.Model):
        x = rom.Integer()

    class B1(rom.Model):
        _conn = other
        x = rom.Integer()

    items = [A1(x=1), B1(x=2), A1(x=3), B1(x=4)]
    assert await api.commit() == 8
    assert [conn.hget(e._pk, 'x') for e in items] == [b'1', b'2', b'3', b'4']


# --- delete (§3.5) ------------------------------------------------------------------------------

async def test_session_delete(api, M, conn, roundtrips):
    calls = []

    class D(rom.Model):
        a = rom.Integer(index=True)

        def _before_delete(self):
            calls.append(('bd', self.id))

        def _after_delete(self):
            calls.append(('ad', self.id, self._deleted))

    items = [D(a=i) for i in range(5)]
    await api.commit()
    with roundtrips(conn) as rt:
        assert await api.session_delete([items[0], (items[1],)], items[2:], 'ignored', 42) is None
    if not api.is_async:  # round trips of the blocking client
        assert rt.count == 1
        assert rt.commands[0] == 'MULTI' and rt.commands[-1] == 'EXEC'
    left = dump(conn)
    assert list(left) == [f'{D._namespace}:id:'.encode()] and int(left[f'{D._namespace}:id:'.encode()][1]) >= 5  # ids come in blocks
    assert calls == [('bd', i) for i in range(1, 6)] + [('ad', i, True) for i in range(1, 6)]
    assert all(e._deleted == 2 for e in items)
    assert all(e._pk not in session.known for e in items)
    calls.clear()
    await api.session_delete(items[0])  # already deleted: not selected
    assert calls == []
    await api.session_delete(items[0], force=True)  # deleted again: after-hook only
    assert calls == [('ad', 1, True)]
    assert items[0]._deleted == 2
    assert not conn.exists(f'{D._namespace}:1')


async def test_session_delete_force_on_deleted_entity(api, conn):
    calls = []

    class DF(rom.Model):
        a = rom.Integer()

        def _before_delete(self):
            calls.append('bd')

        def _after_delete(self):
            calls.append('ad')

    e = DF(a=1)
    await api.save(e)
    await api.delete(e)
    calls.clear()
    conn.hset(f'{DF._namespace}:1', 'a', '2')  # recreated behind rom's back
    await api.session_delete(e, force=True)
    assert calls == ['ad']
    assert not conn.exists(f'{DF._namespace}:1')


async def test_session_delete_refuses_fk_models(api, conn):
    class P(rom.Model):
        pass

    class C(rom.Model):
        p = rom.ManyToOne('P', 'no action')

    class Plain(rom.Model):
        pass

    p = P()
    await api.save(p)
    c = C(p=p)
    await api.save(c)
    plain = Plain()
    await api.save(plain)
    for victim in (p, c):
        before = dump(conn)
        with pytest.raises(ORMError):
            await api.session_delete(plain, victim)
        assert dump(conn) == before
        assert not plain._deleted


async def test_session_delete_before_hook_failure_sends_nothing(api, conn):
    class DH(rom.Model):
        a = rom.Integer()

        def _before_delete(self):
            if self.a == 2:
                raise RuntimeError('stop')

    a, b, c = DH(a=1), DH(a=2), DH(a=3)
    await api.commit()
    before = dump(conn)
    with pytest.raises(RuntimeError):
        await api.session_delete(a, b, c)
    assert dump(conn) == before
    assert a._deleted and a._pk not in session.known
    assert not b._deleted and not c._deleted


async def test_session_delete_several_clients(api, conn, redis_url):
    other = redis.Redis.from_url(redis_url)

    class X1(rom.Model):
        pass

    class X2(rom.Model):
        _conn = other

    a, b = X1(), X2()
    await api.commit()
    await api.session_delete(a, b)
    assert dump(conn) == {f'{X1._namespace}:id:'.encode(): (b'string', b'1'), f'{X2._namespace}:id:'.encode(): (b'string', b'1')}


# --- refresh / refresh_all (§3.5) -----------------------------------------------------------------

async def test_session_refresh(api, M, conn):
    a, b = M(a=1), M(a=2)
    await api.commit()
    conn.hset(f'{M._namespace}:1', 'a', '10')
    conn.hset(f'{M._namespace}:2', 'a', '20')
    await api.session_refresh([a, (b,)])
    assert (a.a, b.a) == (10, 20)
    with pytest.raises(ORMError) as info:
        await api.session_refresh(a, 'junk')
    assert 'junk' in str(info.value)
    a.a = 5
    with pytest.raises(InvalidOperation):
        await api.session_refresh(a)
    await api.session_refresh(a, force=True)
    assert a.a == 10 and not a._modified
    new = M(a=3)
    session.forget(new)
    await api.session_refresh(new)
    assert session.known[new._pk] is new
    assert not conn.exists(new._pk)
    gone = await api.get(M, 2)
    await api.delete(gone)
    assert await api.session_refresh(gone) is None
    c = M(a=4)
    await api.save(c)
    conn.delete(c._pk)
    with pytest.raises(InvalidColumnValue):
        await api.session_refresh(c)


def test_session_refresh_calls_an_overridden_entity_refresh(conn):
    """rom 1.1.2's session.refresh reloads each saved entity through entity.refresh()."""
    calls = []

    class Hooked(rom.Model):
        a = rom.Integer()

        def refresh(self, force=False):
            calls.append((self.id, force))
            return super().refresh(force=force)

    h = Hooked(a=1)
    h.save()
    conn.hset(h._pk, 'a', '7')  # the row's key (a shard's own in the sharded run)
    session.refresh(h, force=True)
    assert calls == [(h.id, True)] and h.a == 7


async def test_session_refresh_all(api, M, conn, roundtrips):
    a, b = M(a=1), M(a=2)
    await api.flush()
    conn.hset(f'{M._namespace}:1', 'a', '10')
    conn.hset(f'{M._namespace}:2', 'a', '20')
    with roundtrips(conn) as rt:
        await api.session_refresh_all('ignored positional')
    if not api.is_async:  # round trips of the blocking client
        assert rt.count == 2
    assert (a.a, b.a) == (10, 20)
    a.a = 3
    with pytest.raises(InvalidOperation):
        await api.session_refresh_all()
    await api.session_refresh_all(force=True)
    assert a.a == 10


# --- round trips of single operations (§3.6) ---------------------------------------------------

def test_single_operation_round_trips(M, conn, roundtrips):
    with roundtrips(conn) as rt:
        e = M(a=1)
    assert rt.count == 1 and rt.commands == ['INCRBY']
    with roundtrips(conn) as rt:
        e.save()
    assert rt.count == 1
    session.rollback()
    with roundtrips(conn) as rt:
        assert M.get(1).a == 1
    assert rt.count == 1


# --- more commit edge cases ----------------------------------------------------------------------

async def test_commit_before_hook_failure_saves_earlier_only(api, conn):
    class BH(rom.Model):
        n = rom.Integer()

        def _before_insert(self):
            if self.n == 2:
                raise RuntimeError('hook')

    items = [BH(n=i) for i in range(5)]
    with pytest.raises(RuntimeError):
        await api.commit()
    saved = [conn.exists(e._pk) for e in items]
    assert saved == [1, 1, 0, 0, 0]
    assert [e._new for e in items] == [False, False, True, True, True]


async def test_commit_parent_saved_as_side_effect_once(api, conn):
    class Par(rom.Model):
        u = rom.Text(unique=True)

    class Kid(rom.Model):
        p = rom.ManyToOne('Par', 'no action')

    parent = Par(u='x')
    kid = Kid()
    kid.p = parent  # assigned after construction: parent is still new
    assert parent._new
    total = await api.commit()
    assert total == 2 + 2  # parent (u, id) + kid (p, id)
    assert conn.get(f'{Par._namespace}:id:') == b'1'
    assert conn.hgetall(f'{Par._namespace}:u:uidx') == {b'x': b'1'}
    assert conn.hget(kid._pk, 'p') == b'1'
    assert not parent._new and not kid._new


async def test_commit_kid_before_parent(api, conn):
    class Par2(rom.Model):
        u = rom.Text(unique=True)

    class Kid2(rom.Model):
        p = rom.ManyToOne('Par2', 'no action')

    kid = Kid2()
    parent = Par2(u='y')
    kid.p = parent
    await api.commit()
    assert conn.get(f'{Par2._namespace}:id:') == b'1'
    assert conn.hget(kid._pk, 'p') == b'1'
    assert conn.hgetall(f'{Par2._namespace}:1') == {b'id': b'1', b'u': b'y',
                                      b'-index-data-': b'[{},{},{},{},{}]'}
