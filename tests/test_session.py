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


def test_get_falls_back_to_weak_references(M):
    e = M(a=1)
    e.save()
    session.commit()
    assert session.known == {}
    assert session.get(f'{M._namespace}:1') is e
    assert M.get(1) is e
    del e
    import gc
    gc.collect()
    assert session.get(f'{M._namespace}:1') is None


def test_rollback_keeps_local_changes(M, conn):
    e = M(a=1)
    e.save()
    e.a = 5
    session.rollback()
    assert session.known == {} and len(session.wknown) == 0
    assert e.a == 5 and e._modified
    other = M.get(1)
    assert other is not e and other.a == 1
    assert session.commit() == 0  # e is no longer tracked
    assert conn.hget(f'{M._namespace}:1', 'a') == b'1'


# --- when entities are tracked (§3.3) ---------------------------------------------------------

def test_tracking_events(M, conn):
    e = M(a=1)
    assert session.get(e._pk) is e  # construction
    e.save()
    session.rollback()
    loaded = M.get(1)
    assert session.known[f'{M._namespace}:1'] is loaded  # load
    session.rollback()
    loaded.a = 2
    assert session.known[f'{M._namespace}:1'] is loaded  # assignment
    session.rollback()
    del loaded.a
    assert session.known[f'{M._namespace}:1'] is loaded  # delete attribute
    loaded.refresh(force=True)
    session.rollback()
    loaded.refresh()
    assert session.known[f'{M._namespace}:1'] is loaded  # refresh
    loaded.delete()
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


def test_null_session_behaviour(M, conn):
    tracked = M(a=1)
    tracked.save()
    tracked.a = 2
    session.null_session = True
    try:
        e = M(a=3)
        assert session.get(e._pk) is None
        e.save()
        first, second = M.get(2), M.get(2)
        assert first is not second
        assert M.get(1) is tracked  # cached before the switch
        e.a = 4
        assert session.get(e._pk) is None
        assert session.commit() == 1  # only what was tracked before the switch
        assert conn.hget(f'{M._namespace}:1', 'a') == b'2'
        assert conn.hget(f'{M._namespace}:2', 'a') == b'3'
        session.rollback()
        assert M.get(1) is not tracked
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

def test_in_place_mutation_needs_all(M, conn):
    e = M(j={'k': 1})
    e.save()
    e.j['k'] = 2
    assert not e._modified
    assert session.commit() == 0
    assert conn.hget(f'{M._namespace}:1', 'j') == b'{"k": 1}'
    session.add(e)
    assert session.commit(all=True) == 1
    assert conn.hget(f'{M._namespace}:1', 'j') == b'{"k": 2}'


# --- flush / commit (§3.5) ----------------------------------------------------------------------

def test_flush_and_commit(M, conn):
    a, b = M(a=1), M(a=2)
    assert session.flush() == 8  # 4 columns each (a u j id)
    assert list(session.known) == [f'{M._namespace}:1', f'{M._namespace}:2']
    assert session.flush() == 0
    a.a = 10
    assert session.commit() == 1
    assert session.known == {}
    assert session.get(f'{M._namespace}:1') is a
    assert conn.hget(f'{M._namespace}:1', 'a') == b'10'
    assert session.commit() == 0


def test_commit_flags(M, conn):
    a = M(a=1)
    session.commit()
    session.add(a)
    conn.delete(f'{M._namespace}:a:idx')
    assert session.commit(all=True) == 0  # nothing changed, but indexes rewritten
    assert conn.zscore(f'{M._namespace}:a:idx', '1') == 1.0
    session.add(a)
    assert session.flush(all=True, full=True) == 4
    # force: no race check
    session.rollback()
    other = M.get(1)
    session.rollback()
    a.a = 5
    a.save()
    other.a = 6
    session.add(other)
    with pytest.raises(DataRaceError):
        session.flush()
    assert session.flush(force=True) == 4
    assert conn.hget(f'{M._namespace}:1', 'a') == b'6'


def test_commit_failure_keeps_known(M, conn):
    M(u='x').save()
    bad = M(u='x')
    assert f'{M._namespace}:2' in session.known
    with pytest.raises(UniqueKeyViolation):
        session.commit()
    assert session.known[f'{M._namespace}:2'] is bad
    assert bad._modified and bad._new
    bad.u = 'y'
    assert session.commit() == 4
    assert conn.hget(f'{M._namespace}:2', 'u') == b'y'


# --- save (§3.5) --------------------------------------------------------------------------------

def test_save_flattens_and_sums(M, conn):
    a, b, c, d = M(a=1), M(a=2), M(a=3), M(a=4)
    assert session.save([a, (b, [c])], d, bogus_kwarg=1) == 16
    assert all(conn.exists(f'{M._namespace}:%i' % i) for i in range(1, 5))
    assert session.save(a, b) == 0
    a.a = 7
    assert session.save(a, b) == 1
    assert session.save(a, b, all=True, full=True) == 8
    assert session.save() == 0


def test_save_order_is_depth_first(M, conn):
    order = []

    class Ord(rom.Model):
        n = rom.Integer()

        def _after_insert(self):
            order.append(self.n)

    items = [Ord(n=i) for i in range(5)]
    session.save([items[3], (items[0], [items[4]])], items[1], items[2])
    assert order == [3, 0, 4, 1, 2]


def test_save_skips_deleted_even_with_force(M, conn):
    a = M(a=1)
    a.save()
    a.delete()
    assert session.save(a, force=True) == 0
    assert not conn.exists('M:1')


def test_save_non_entity_raises_after_earlier_saved(M, conn):
    a, b = M(a=1), M(a=2)
    with pytest.raises(ORMError) as info:
        session.save(a, 'junk', b)
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
def test_commit_failure_unique_outcome(conn, roundtrips, failing):
    H, calls = _hooked_model()
    H(u='taken', n=-1).save()
    calls.clear()
    entities = [H(u='taken' if i == failing else 'v%i' % i, n=i) for i in range(8)]
    with roundtrips(conn) as rt:
        with pytest.raises(UniqueKeyViolation) as info:
            session.commit()
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


def test_commit_failure_data_race_outcome(conn, roundtrips):
    H, calls = _hooked_model()
    rows = [H(u='r%i' % i, n=i) for i in range(6)]
    session.commit()
    session.rollback()
    handles = H.get([r.id for r in rows])
    # another writer changes entity 3
    conn.hset(handles[3]._pk, 'n', '333')
    for h in handles:
        h.n += 10
    before = dump(conn)
    with pytest.raises(DataRaceError) as info:
        session.commit()
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


def test_commit_failure_entity_deleted_outcome(conn):
    H, calls = _hooked_model()
    rows = [H(u='r%i' % i, n=i) for i in range(4)]
    session.commit()
    session.rollback()
    handles = H.get([r.id for r in rows])
    conn.delete(handles[1]._pk)
    for h in handles:
        h.n += 10
    with pytest.raises(EntityDeletedError) as info:
        session.commit()
    assert info.value.args[1:] == (H._namespace, '2')
    assert conn.hget(f'{H._namespace}:1', 'n') == b'10'
    assert not conn.exists(f'{H._namespace}:2')
    assert conn.hget(f'{H._namespace}:3', 'n') == b'2'


def test_commit_failure_invalid_value_nothing_written_from_failing_one(conn):
    class IV(rom.Model):
        t = rom.Text(index=True, keygen2=lambda attr, data: {'': data.get('t')})

    ok = IV(t='1')
    bad = IV(t='not a number')
    later = IV(t='2')
    with pytest.raises(InvalidColumnValue):
        session.commit()
    assert conn.exists(ok._pk)
    assert not conn.exists(bad._pk) and not conn.exists(later._pk)
    assert bad._new and later._new


def test_commit_with_several_clients(conn, redis_url, roundtrips):
    other = redis.Redis.from_url(redis_url)

    class A1(rom.Model):
        x = rom.Integer()

    class B1(rom.Model):
        _conn = other
        x = rom.Integer()

    items = [A1(x=1), B1(x=2), A1(x=3), B1(x=4)]
    assert session.commit() == 8
    assert [conn.hget(e._pk, 'x') for e in items] == [b'1', b'2', b'3', b'4']


# --- delete (§3.5) ------------------------------------------------------------------------------

def test_session_delete(M, conn, roundtrips):
    calls = []

    class D(rom.Model):
        a = rom.Integer(index=True)

        def _before_delete(self):
            calls.append(('bd', self.id))

        def _after_delete(self):
            calls.append(('ad', self.id, self._deleted))

    items = [D(a=i) for i in range(5)]
    session.commit()
    with roundtrips(conn) as rt:
        assert session.delete([items[0], (items[1],)], items[2:], 'ignored', 42) is None
    assert rt.count == 1
    assert rt.commands[0] == 'MULTI' and rt.commands[-1] == 'EXEC'
    left = dump(conn)
    assert list(left) == [f'{D._namespace}:id:'.encode()] and int(left[f'{D._namespace}:id:'.encode()][1]) >= 5  # ids come in blocks
    assert calls == [('bd', i) for i in range(1, 6)] + [('ad', i, True) for i in range(1, 6)]
    assert all(e._deleted == 2 for e in items)
    assert all(e._pk not in session.known for e in items)
    calls.clear()
    session.delete(items[0])  # already deleted: not selected
    assert calls == []
    session.delete(items[0], force=True)  # deleted again: after-hook only
    assert calls == [('ad', 1, True)]
    assert items[0]._deleted == 2
    assert not conn.exists(f'{D._namespace}:1')


def test_session_delete_force_on_deleted_entity(conn):
    calls = []

    class DF(rom.Model):
        a = rom.Integer()

        def _before_delete(self):
            calls.append('bd')

        def _after_delete(self):
            calls.append('ad')

    e = DF(a=1)
    e.save()
    e.delete()
    calls.clear()
    conn.hset(f'{DF._namespace}:1', 'a', '2')  # recreated behind rom's back
    session.delete(e, force=True)
    assert calls == ['ad']
    assert not conn.exists(f'{DF._namespace}:1')


def test_session_delete_refuses_fk_models(conn):
    class P(rom.Model):
        pass

    class C(rom.Model):
        p = rom.ManyToOne('P', 'no action')

    class Plain(rom.Model):
        pass

    p = P()
    p.save()
    c = C(p=p)
    c.save()
    plain = Plain()
    plain.save()
    for victim in (p, c):
        before = dump(conn)
        with pytest.raises(ORMError):
            session.delete(plain, victim)
        assert dump(conn) == before
        assert not plain._deleted


def test_session_delete_before_hook_failure_sends_nothing(conn):
    class DH(rom.Model):
        a = rom.Integer()

        def _before_delete(self):
            if self.a == 2:
                raise RuntimeError('stop')

    a, b, c = DH(a=1), DH(a=2), DH(a=3)
    session.commit()
    before = dump(conn)
    with pytest.raises(RuntimeError):
        session.delete(a, b, c)
    assert dump(conn) == before
    assert a._deleted and a._pk not in session.known
    assert not b._deleted and not c._deleted


def test_session_delete_several_clients(conn, redis_url):
    other = redis.Redis.from_url(redis_url)

    class X1(rom.Model):
        pass

    class X2(rom.Model):
        _conn = other

    a, b = X1(), X2()
    session.commit()
    session.delete(a, b)
    assert dump(conn) == {f'{X1._namespace}:id:'.encode(): (b'string', b'1'), f'{X2._namespace}:id:'.encode(): (b'string', b'1')}


# --- refresh / refresh_all (§3.5) -----------------------------------------------------------------

def test_session_refresh(M, conn):
    a, b = M(a=1), M(a=2)
    session.commit()
    conn.hset(f'{M._namespace}:1', 'a', '10')
    conn.hset(f'{M._namespace}:2', 'a', '20')
    session.refresh([a, (b,)])
    assert (a.a, b.a) == (10, 20)
    with pytest.raises(ORMError) as info:
        session.refresh(a, 'junk')
    assert 'junk' in str(info.value)
    a.a = 5
    with pytest.raises(InvalidOperation):
        session.refresh(a)
    session.refresh(a, force=True)
    assert a.a == 10 and not a._modified
    new = M(a=3)
    session.forget(new)
    session.refresh(new)
    assert session.known[new._pk] is new
    assert not conn.exists(new._pk)
    gone = M.get(2)
    gone.delete()
    assert session.refresh(gone) is None
    c = M(a=4)
    c.save()
    conn.delete(c._pk)
    with pytest.raises(InvalidColumnValue):
        session.refresh(c)


def test_session_refresh_all(M, conn, roundtrips):
    a, b = M(a=1), M(a=2)
    session.flush()
    conn.hset(f'{M._namespace}:1', 'a', '10')
    conn.hset(f'{M._namespace}:2', 'a', '20')
    with roundtrips(conn) as rt:
        session.refresh_all('ignored positional')
    assert rt.count == 2
    assert (a.a, b.a) == (10, 20)
    a.a = 3
    with pytest.raises(InvalidOperation):
        session.refresh_all()
    session.refresh_all(force=True)
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

def test_commit_before_hook_failure_saves_earlier_only(conn):
    class BH(rom.Model):
        n = rom.Integer()

        def _before_insert(self):
            if self.n == 2:
                raise RuntimeError('hook')

    items = [BH(n=i) for i in range(5)]
    with pytest.raises(RuntimeError):
        session.commit()
    saved = [conn.exists(e._pk) for e in items]
    assert saved == [1, 1, 0, 0, 0]
    assert [e._new for e in items] == [False, False, True, True, True]


def test_commit_parent_saved_as_side_effect_once(conn):
    class Par(rom.Model):
        u = rom.Text(unique=True)

    class Kid(rom.Model):
        p = rom.ManyToOne('Par', 'no action')

    parent = Par(u='x')
    kid = Kid()
    kid.p = parent  # assigned after construction: parent is still new
    assert parent._new
    total = session.commit()
    assert total == 2 + 2  # parent (u, id) + kid (p, id)
    assert conn.get(f'{Par._namespace}:id:') == b'1'
    assert conn.hgetall(f'{Par._namespace}:u:uidx') == {b'x': b'1'}
    assert conn.hget(kid._pk, 'p') == b'1'
    assert not parent._new and not kid._new


def test_commit_kid_before_parent(conn):
    class Par2(rom.Model):
        u = rom.Text(unique=True)

    class Kid2(rom.Model):
        p = rom.ManyToOne('Par2', 'no action')

    kid = Kid2()
    parent = Par2(u='y')
    kid.p = parent
    session.commit()
    assert conn.get(f'{Par2._namespace}:id:') == b'1'
    assert conn.hget(kid._pk, 'p') == b'1'
    assert conn.hgetall(f'{Par2._namespace}:1') == {b'id': b'1', b'u': b'y',
                                      b'-index-data-': b'[{},{},{},{},{}]'}
