"""Id allocation of new entities (see also test_ids.py for the blocks of ids).

By default (as in rom 1.1.2) a new entity takes its id from ``<ns>:<pk>:`` when it is
constructed; ids come from a block the process reserved (``rom._ids``), so this costs a
round trip only when a new block is needed. A model may opt in with ``_defer_ids = True``:
the id is then taken by the first read of the id or just before the first save's script
(never inside it, so a replayed script cannot store the row twice), and a new entity that is
never read nor saved consumes no id. Opted-in models whose keygens or geo callbacks can see
the id still allocate it at construction.
"""
from __future__ import annotations

import pytest

import rom
from rom import session
from rom.exceptions import UniqueKeyViolation


@pytest.fixture
def U():
    class U(rom.Model):
        _defer_ids = True
        _ids_per_block = 100
        email = rom.Text(unique=True)
        n = rom.Integer(index=True)
        name = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True)
    return U


def test_create_and_save_is_one_round_trip_once_a_block_is_held(U, conn, roundtrips):
    with roundtrips(conn) as rt:
        u = U(email='a@x', n=1, name='Ann')
        assert u.save() == 4
    assert rt.count == 2 and rt.commands[0] == 'INCRBY'  # the block, then the script
    assert u.id == 1 and conn.hget('U:1', 'id') == b'1' and conn.get('U:id:') == b'100'
    assert session.get('U:1') is u and 'U:1' in session.known
    with roundtrips(conn) as rt:
        v = U(email='b@x', n=2, name='Bob')
        v.save()
    assert rt.count == 1 and v.id == 2 and conn.get('U:id:') == b'100'


def test_commit_of_many_new_entities_is_one_round_trip(U, conn, roundtrips):
    users = [U(email='%i@x' % i, n=i) for i in range(50)]
    with roundtrips(conn) as rt:
        assert session.commit() > 0
    assert rt.count == 2 and rt.commands[0] == 'INCRBY'  # one reservation for the 50 ids
    assert [u.id for u in users] == list(range(1, 51))  # ids follow the creation order
    more = [U(email='%i@y' % i, n=i) for i in range(50)]
    with roundtrips(conn) as rt:
        session.commit()
    assert rt.count == 1 and [u.id for u in more] == list(range(51, 101))
    assert conn.zcard('U:n:idx') == 100


def test_reading_the_id_allocates_it_and_keeps_the_session_order(U, conn):
    a, b, c = U(n=1), U(n=2), U(n=3)
    assert b.id == 1  # b's id is read first
    assert list(session.known) == ['U:2', 'U:1', 'U:3']  # reading keys allocates the rest, in order
    assert (a.id, c.id) == (2, 3)
    assert session.known['U:3'] is c and a._pk in session.known
    session.commit()
    assert sorted(conn.keys('U:?')) == [b'U:1', b'U:2', b'U:3']


def test_pending_entities_are_saved_by_commit_and_forgettable(U, conn):
    kept, dropped = U(n=1), U(n=2)
    session.forget(dropped)
    assert len(session.known) == 1
    session.commit()
    assert kept.id == 1 and conn.exists('U:1') and not conn.exists('U:2')
    assert U(n=3).id == 2  # the forgotten, never-read entity consumed no id


def test_failed_save_keeps_its_allocated_id_and_writes_nothing_else(U, conn):
    U(email='taken').save()
    dup = U(email='taken', n=5)
    with pytest.raises(UniqueKeyViolation) as info:
        dup.save()
    assert info.value.args[1:] == ('U', '2')
    assert dup.id == 2 and dup._new
    assert not conn.exists('U:2') and conn.zcard('U:n:idx') == 0
    dup.email = 'free'
    dup.save()
    assert conn.hget('U:2', 'email') == b'free' and U(n=1).id == 3


def test_before_insert_hook_may_read_the_id(conn):
    seen = []

    class H(rom.Model):
        _defer_ids = True
        x = rom.Integer()

        def _before_insert(self):
            seen.append(self.id)

    h = H(x=1)
    h.save()
    assert seen == [1] and conn.hget('H:1', 'x') == b'1'


def test_to_dict_and_copy_read_the_id(U):
    u = U(n=1)
    assert u.to_dict()['id'] == 1
    assert u.copy().id == 2


@pytest.mark.parametrize('kind', ['indexed_pk', 'geo', 'keygen2', 'index_only'])
def test_models_whose_keygens_see_the_id_allocate_at_construction(kind, conn, roundtrips):
    body = {'x': rom.Integer(), '_defer_ids': True}
    if kind == 'indexed_pk':
        body['id'] = rom.PrimaryKey(index=True)
    elif kind == 'geo':
        body['geo_index'] = [rom.GeoIndex('g', lambda d: [])]
    elif kind == 'keygen2':
        body['k'] = rom.Text(index=True, keygen2=lambda attr, data: [str(data.get('id'))])
    else:
        body['io'] = rom.IndexOnly(keygen2=lambda attr, data: [str(data.get('id'))])
    model = type('Eager' + kind.title().replace('_', ''), (rom.Model,), body)
    with roundtrips(conn) as rt:
        e = model(x=1)
    assert rt.commands == ['INCRBY'] and e._data['id'] == 1
    e.save()
    assert conn.hget(model._namespace + ':1', 'x') == b'1'


def test_session_delete_is_one_round_trip_per_client(U, conn, roundtrips):
    users = [U(n=i) for i in range(20)]
    session.commit()
    with roundtrips(conn) as rt:
        session.delete(users)
    assert rt.count == 1
    assert conn.keys('U:?*') == [b'U:id:']


def test_pipelined_delete_after_script_flush(U, conn, scripts_reloaded):
    users = [U(n=i) for i in range(3)]
    session.commit()
    conn.script_flush()
    session.delete(users)
    assert conn.keys('U:?*') == [b'U:id:']


def test_default_models_allocate_the_id_at_construction(conn, roundtrips):
    class Plain(rom.Model):
        x = rom.Integer()

    with roundtrips(conn) as rt:
        p = Plain(x=1)
    assert rt.commands == ['INCRBY'] and p._data['id'] == 1 and conn.get('Plain:id:') == b'1'
    assert list(session.known) == ['Plain:1']
    with roundtrips(conn) as rt:
        p.save()
    assert rt.count == 1


def test_opt_in_is_inherited(conn):
    class Base(rom.Model):
        _defer_ids = True
        x = rom.Integer()

    class Child(Base):
        pass

    class NotDeferred(Base):
        _defer_ids = False

    assert Base._defer_id and Child._defer_id and not NotDeferred._defer_id
    Child(x=1)
    assert conn.get('Child:id:') is None
