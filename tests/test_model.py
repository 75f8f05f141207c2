"""rom.model: metaclass, entity state, save/delete/refresh/get/get_by/transfer, hooks,
on_delete policies.

Spec: model-and-columns.md §3.5, §5, §6.1, §7.3.
"""
from __future__ import annotations

import pytest

import rom
from rom import columns as C
from rom.exceptions import (ColumnError, DataRaceError, EntityDeletedError, InvalidColumnValue,
                            InvalidOperation, MissingColumn, ORMError, QueryError, RestrictError,
                            UniqueKeyViolation)


async def reload(api, entity):
    rom.session.rollback()
    return await api.get(type(entity), getattr(entity, entity._pkey))


def make(name, body=None, bases=(rom.Model,)):
    namespace = {'__module__': __name__}
    namespace.update(body or {})
    return type(rom.Model)(name, bases, namespace)


# --- metaclass (§5.1, §5.2) ------------------------------------------------------------

def test_model_class_attributes():
    m = rom.Model
    assert m._namespace == 'Model'
    assert list(m._columns) == ['id']
    assert isinstance(m._columns['id'], rom.PrimaryKey)
    assert m._pkey == 'id'
    assert m._no_fk is True
    assert rom.MODELS['Model'] is m


def test_metaclass_sets_schema_attributes():
    def geo(d):
        return None

    class Schema(rom.Model):
        a = rom.Integer(required=True, index=True)
        b = rom.Text(unique=True)
        c = rom.Text(prefix=True, suffix=True, keygen=rom.SIMPLE)
        d = rom.Integer()
        e = rom.Integer()
        ref = rom.ManyToOne('Schema', 'no action')
        unique_together = [('e', 'd')]
        geo_index = [rom.GeoIndex('where', geo)]

    s = Schema
    assert s._namespace == 'Schema'
    assert list(s._columns) == ['a', 'b', 'c', 'd', 'e', 'ref', 'id']
    assert s._pkey == 'id'
    assert s._required == {'a'}
    assert s._index == {'a', 'ref'}
    assert s._unique == {'b'}
    assert s._cunique == {('d', 'e')}
    assert s._prefix == {'c'} and s._suffix == {'c'}
    assert s._geo == {'where': rom.GeoIndex('where', geo)}
    assert isinstance(s._gindex, rom.GeneralIndex)
    assert s._no_fk is False
    assert rom.MODELS['Schema'] is s
    assert ('Schema', 'ref', 'no action') in rom.MODELS_REFERENCED['Schema']
    assert isinstance(s.query, rom.Query)
    assert s.query is not s.query
    assert s._connection is rom.util.CONNECTION


def test_namespace_registration():
    class Named(rom.Model):
        _namespace = 'other:ns'
        x = rom.Integer()

    assert Named._namespace == 'other:ns'
    assert rom.MODELS['Named'] is Named
    assert rom.MODELS['other:ns'] is Named
    with pytest.raises(ORMError) as info:
        make('other:ns')
    with pytest.raises(ORMError) as info:
        make('Another', {'_namespace': 'Named'})
    assert 'Another' in str(info.value) and 'Named' in str(info.value)
    with pytest.raises(ORMError):
        make('Named')


def test_namespace_not_inherited():
    class Base1(rom.Model):
        _namespace = 'b1'
        x = rom.Integer()

    class Sub1(Base1):
        pass

    assert Sub1._namespace == 'Sub1'


def test_namespace_must_be_str():
    with pytest.raises(ORMError) as info:
        make('BadNs', {'_namespace': 5})
    assert 'int' in str(info.value)
    assert 'BadNs' not in rom.MODELS
    # a falsy namespace means "use the class name"
    ok = make('FalsyNs', {'_namespace': ''})
    assert ok._namespace == 'FalsyNs'


def test_class_named_model_fails():
    with pytest.raises(ORMError):
        make('Model')


def test_failed_definition_registers_nothing():
    with pytest.raises(ColumnError):
        make('Failing', {'id': rom.Integer()})
    assert 'Failing' not in rom.MODELS
    ok = make('Failing', {'x': rom.Integer()})
    assert rom.MODELS['Failing'] is ok


def test_id_attribute_needs_explicit_primary_key():
    with pytest.raises(ColumnError) as info:
        make('IdAttr', {'id': rom.Integer()})
    assert 'PrimaryKey' in str(info.value) or 'primary' in str(info.value).lower()
    model = make('IdAttr2', {'id': rom.PrimaryKey(), 'x': rom.Integer()})
    assert model._pkey == 'id'


def test_second_primary_key():
    with pytest.raises(ColumnError) as info:
        make('TwoPk', {'a': rom.PrimaryKey(), 'b': rom.PrimaryKey()})
    assert 'a' in str(info.value) and 'b' in str(info.value)
    base = make('ImplicitBase', {'x': rom.Integer()})
    with pytest.raises(ColumnError):
        make('AddsPk', {'pk': rom.PrimaryKey()}, bases=(base,))


def test_implicit_id_added_last():
    model = make('Order1', {'b': rom.Integer(), 'a': rom.Integer()})
    assert list(model._columns) == ['b', 'a', 'id']


async def test_inheritance_merges_columns_and_separates_models(api, conn):
    class Mixin:
        not_a_column = rom.Integer()  # non-model mixins contribute no columns

    class BaseA(rom.Model):
        a = rom.Integer(index=True)
        shared = rom.Text()

    class BaseB(rom.Model):
        b = rom.Integer()
        shared = rom.Integer()

    class Child(BaseA, BaseB, Mixin):
        c = rom.Integer()

    assert list(Child._columns) == ['b', 'shared', 'id', 'a', 'c']
    # first base wins for duplicated names
    assert Child._columns['shared'] is BaseA._columns['shared']
    assert Child._columns['a'] is BaseA._columns['a']
    assert 'not_a_column' not in Child._columns
    assert Child._namespace == 'Child'
    base = BaseA(a=1)
    await api.save(base)
    child = Child(a=1, b=2, c=3)
    await api.save(child)
    assert conn.get(f'{BaseA._namespace}:id:') == b'1'
    assert conn.get(f'{Child._namespace}:id:') == b'1'
    assert conn.hgetall(f'{Child._namespace}:1')[b'a'] == b'1'
    assert isinstance(child, BaseA)
    rom.session.rollback()
    assert isinstance(await api.get(BaseA, 1), BaseA) and not isinstance(await api.get(BaseA, 1),
                      Child)
    assert [e.id for e in await api.get_by(BaseA, a=1)] == [1]
    assert all(type(e) is BaseA for e in await api.get_by(BaseA, a=1))


def test_inheritance_column_order():
    base = make('OrdBase', {'x': rom.Integer(), 'y': rom.Integer()})
    sub = make('OrdSub', {'z': rom.Integer()}, bases=(base,))
    assert list(sub._columns) == ['x', 'y', 'id', 'z']


def test_unique_together_and_geo_index_not_inherited():
    base = make('UTBase', {'x': rom.Integer(), 'y': rom.Integer(),
                           'unique_together': [('x', 'y')],
                           'geo_index': [rom.GeoIndex('g', lambda d: [])]})
    assert base._cunique == {('x', 'y')}
    sub = make('UTSub', {}, bases=(base,))
    assert sub._cunique == set()
    assert sub._geo == {}


def test_unique_together_forms():
    m1 = make('UT1', {'a': rom.Integer(), 'b': rom.Integer(), 'c': rom.Integer(),
                      'unique_together': ('b', 'a')})
    assert m1._cunique == {('a', 'b')}
    m2 = make('UT2', {'a': rom.Integer(), 'b': rom.Integer(), 'c': rom.Integer(),
                      'unique_together': [('c', 'a', 'a'), ['b', 'c']]})
    assert m2._cunique == {('a', 'c'), ('b', 'c')}


@pytest.mark.parametrize('groups,shown', [
    ([('a',)], 'a'),
    ([('a', 'a')], 'a'),
    ([('a', 'b'), ('b', 'a')], 'a'),
    ([('a', 'zz')], 'zz'),
    ([('a', 'id')], 'id'),
])
def test_unique_together_errors(groups, shown):
    with pytest.raises(ColumnError) as info:
        make('UTE', {'a': rom.Integer(), 'b': rom.Integer(), 'unique_together': groups})
    assert shown in str(info.value)
    assert 'UTE' not in rom.MODELS


def test_geo_index_declaration_checks():
    with pytest.raises(ORMError):
        make('G1', {'geo_index': rom.GeoIndex('x', lambda d: [])})
    with pytest.raises(ORMError):
        make('G2', {'geo_index': [('x', lambda d: [])]})
    with pytest.raises(ColumnError) as info:
        make('G3', {'geo_index': [rom.GeoIndex('dup', lambda d: []),
                                  rom.GeoIndex('dup', lambda d: [])]})
    assert 'dup' in str(info.value)
    ok = make('G4', {'geo_index': [rom.GeoIndex('a', lambda d: []),
                                   rom.GeoIndex('b', lambda d: [])]})
    assert set(ok._geo) == {'a', 'b'}


def test_one_to_many_needs_column_when_ambiguous_target_registered():
    make('Amb', {'x': rom.ManyToOne('AmbOwner', 'no action'),
                 'y': rom.ManyToOne('AmbOwner', 'no action')})
    with pytest.raises(ColumnError) as info:
        make('AmbOwner', {'kids': rom.OneToMany('Amb')})
    assert 'kids' in str(info.value)
    ok = make('AmbOwner', {'kids': rom.OneToMany('Amb', 'x')})
    assert ok._columns['kids'].get_related_model() is rom.MODELS['Amb']


def test_one_to_many_needs_column_when_ambiguous_referrer_defined_later():
    make('AmbOwner2', {'kids': rom.OneToMany('Amb2')})
    with pytest.raises(ColumnError) as info:
        make('Amb2', {'x': rom.ManyToOne('AmbOwner2', 'no action'),
                      'y': rom.ManyToOne('AmbOwner2', 'no action')})
    assert 'kids' in str(info.value)


def test_models_referenced_appended_by_ftable_text():
    make('RefT', {'x': rom.Integer()})
    make('RefA', {'r': rom.ManyToOne('RefT', 'cascade'), 'o': rom.OneToOne('RefT', 'restrict')})
    assert rom.MODELS_REFERENCED['RefT'] == [('RefA', 'r', 'cascade'), ('RefA', 'o', 'restrict')]


async def test_per_model_connection(api, conn, redis_url):
    import redis
    other = redis.Redis.from_url(redis_url)

    class OwnConn(rom.Model):
        _conn = other
        x = rom.Integer()

    try:
        assert OwnConn._connection is other
        e = OwnConn(x=1)
        assert e._connection is other
        await api.save(e)
        assert conn.hget(f'{OwnConn._namespace}:1', 'x') == b'1'  # same server, other client
    finally:
        other.close()
        other.connection_pool.disconnect()


# --- construction (§5.4) ---------------------------------------------------------------

def test_extra_kwargs(conn):
    class EK(rom.Model):
        a = rom.Integer()
        r = rom.Integer(required=True)

    with pytest.raises(InvalidColumnValue) as info:
        EK(a=1, r=1, bogus=2, other=3)
    assert 'bogus' in str(info.value) and 'other' in str(info.value)
    assert conn.get(f'{EK._namespace}:id:') == b'1'  # the id was consumed
    with pytest.raises(MissingColumn):  # column errors take precedence
        EK(bogus=2)
    e = EK(r=1, bogus=2, _extra_ok=True)
    assert not hasattr(e, 'bogus') and 'bogus' not in e.to_dict()
    rom.session.null_session = True
    try:
        EK(r=1, bogus=3)  # no check without a session
    finally:
        del rom.session.null_session


async def test_initial_state(api, conn):
    class ST(rom.Model):
        a = rom.Integer()
        t = rom.Text()

    e = ST(a=5, t='x')
    assert e._new and e._modified and not e._deleted
    assert e._init is True
    assert e._pk == f'{ST._namespace}:1'
    assert e._last == {'a': '5', 't': 'x'}
    assert e._data == {'a': 5, 't': 'x', 'id': 1}
    assert rom.session.known[f'{ST._namespace}:1'] is e
    await api.save(e)
    assert not e._new and not e._modified
    assert e._last == {'a': '5', 't': 'x', 'id': '1'}
    loaded = await reload(api, e)
    assert not loaded._new and not loaded._modified
    assert loaded._last['a'] == '5'


# --- to_dict / update / copy (§5.5) -----------------------------------------------------

async def test_to_dict_update_copy(api, conn):
    class TD(rom.Model):
        a = rom.Integer()
        b = rom.Text()
        u = rom.Text(unique=True)
        many = rom.OneToMany('TDC')
        unsafe = rom.UnsafeColumn()

    class TDC(rom.Model):
        p = rom.ManyToOne('TD', 'no action')

    e = TD(a=1)
    d = e.to_dict()
    assert d == {'a': 1, 'b': None, 'u': None, 'id': 1}
    d['a'] = 99
    assert e.a == 1
    del e.a
    assert 'a' not in e.to_dict()
    assert e.update(2, 'x') is e
    assert (e.a, e.b) == (2, 'x')
    e.update(b='y', u='uu')
    assert e.b == 'y' and e.u == 'uu'
    with pytest.raises(InvalidOperation):
        e.update(1, 'b', 'u', 5)  # the 4th column is the OneToMany
    await api.save(e)
    cp = e.copy()
    assert cp is not e and cp._new and cp.id == 2
    assert (cp.a, cp.b, cp.u) == (e.a, e.b, e.u)
    with pytest.raises(UniqueKeyViolation):
        await api.save(cp)


# --- save return values (§5.6, §8) ------------------------------------------------------

async def test_save_return_values(api, conn):
    class SR(rom.Model):
        a = rom.Integer()
        b = rom.Text()
        c = rom.Float()
        kids = rom.OneToMany('SRK')
        unsafe = rom.UnsafeColumn()

    class SRK(rom.Model):
        p = rom.ManyToOne('SR', 'no action')

    e = SR(a=1)
    assert await api.save(e) == 5  # a b c kids id (None-valued and OneToMany included)
    assert await api.save(e) == 0
    e.a = 2
    e.b = 'x'
    assert await api.save(e) == 2
    e.a = 2  # same value
    assert await api.save(e) == 0
    assert await api.save(e, full=True) == 5
    assert await api.save(e, force=True) == 5
    del e.b
    assert await api.save(e) == 1
    assert not conn.hexists('SR:1', 'b')


async def test_save_float_stored_as_int_text_unchanged(api, conn):
    class FI(rom.Model):
        f = rom.Float()

    conn.hset(f'{FI._namespace}:1', mapping={'id': '1', 'f': '5'})
    e = await api.get(FI, 1)
    e.f = 5.0
    assert await api.save(e) == 0


async def test_save_after_hook_changes_mark_modified(api, conn):
    class AH(rom.Model):
        a = rom.Integer()

        def _after_insert(self):
            self.a = 10

    e = AH(a=1)
    await api.save(e)
    assert conn.hget(f'{AH._namespace}:1', 'a') == b'1'
    assert e._modified
    assert await api.save(e) == 1
    assert conn.hget(f'{AH._namespace}:1', 'a') == b'10'


async def test_before_hook_exception_leaves_state(api, conn):
    class BH(rom.Model):
        a = rom.Integer()

        def _before_insert(self):
            raise RuntimeError('no')

    e = BH(a=1)
    with pytest.raises(RuntimeError):
        await api.save(e)
    assert e._new and e._modified
    assert not conn.exists('BH:1')


async def test_before_hook_changes_are_saved(api, conn):
    class BHS(rom.Model):
        a = rom.Integer()

        def _before_update(self):
            self.a = 42

    e = BHS(a=1)
    await api.save(e)
    await api.save(e)
    assert conn.hget(f'{BHS._namespace}:1', 'a') == b'42'
    assert not e._modified


async def test_hooks_order(api, conn):
    calls = []

    class HK(rom.Model):
        a = rom.Integer()

        def _before_insert(self):
            calls.append(('before_insert', conn.exists(f'{HK._namespace}:1')))

        def _after_insert(self):
            calls.append(('after_insert', conn.exists(f'{HK._namespace}:1'), self._new, self._modified))

        def _before_update(self):
            calls.append(('before_update',))

        def _after_update(self):
            calls.append(('after_update',))

        def _before_delete(self):
            calls.append(('before_delete', conn.exists(f'{HK._namespace}:1')))

        def _after_delete(self):
            calls.append(('after_delete', conn.exists(f'{HK._namespace}:1'), self._deleted))

    e = HK(a=1)
    await api.save(e)
    e.a = 2
    await api.save(e)
    await api.save(e, force=True)
    await api.delete(e)
    assert calls == [('before_insert', 0), ('after_insert', 1, False, False),
                     ('before_update',), ('after_update',),
                     ('before_update',), ('after_update',),
                     ('before_delete', 1), ('after_delete', 0, True)]


async def test_hooks_assignable_per_instance(api, conn):
    class HI(rom.Model):
        a = rom.Integer()

    calls = []
    e = HI(a=1)
    e._before_insert = lambda: calls.append('bi')
    e._after_insert = lambda: calls.append('ai')
    await api.save(e)
    assert calls == ['bi', 'ai']


# --- delete (§5.7) ---------------------------------------------------------------------

async def test_delete(api, conn):
    class DL(rom.Model):
        a = rom.Integer(index=True)
        u = rom.Text(unique=True)

    e = DL(a=1, u='x')
    await api.save(e)
    await api.delete(e)
    assert e._deleted and e._modified
    assert e._pk not in rom.session.known
    assert sorted(conn.keys('*')) == [f'{DL._namespace}:id:'.encode()]
    assert e._last['a'] == '1'
    await api.delete(e)  # twice: harmless
    with pytest.raises(EntityDeletedError):
        await api.save(e)
    assert await api.save(e, force=True) == 3
    assert conn.hget(f'{DL._namespace}:1', 'u') == b'x'
    assert conn.hgetall(f'{DL._namespace}:u:uidx') == {b'x': b'1'}


async def test_delete_never_saved_raises_a_clear_column_error_before_any_hook(api, conn):
    # issue 18: the message said "was the entity saved?" although the entity had an id
    calls = []

    class DN(rom.Model):
        a = rom.Integer()

        def _before_delete(self):
            calls.append('bd')

    e = DN(a=1)
    ident = r'\?' if api.is_async else '1'  # a coroutine's new entity: id taken at its save
    with pytest.raises(ColumnError, match=r'cannot delete <DN id=%s a=1>: it has never been '
                                          r'saved' % ident) as info:
        await api.delete(e)
    assert 'was the entity saved' not in str(info.value)
    assert calls == []
    # nothing happened: still tracked, still new (in a coroutine, under its pending id)
    assert any(x is e for x in rom.util.session.known.values())
    if not api.is_async:
        assert rom.util.session.get(f'{DN._namespace}:1') is e
    assert e._new and not e._deleted
    await api.save(e)
    await api.delete(e)
    assert calls == ['bd'] and not conn.exists(f'{DN._namespace}:1')


async def test_delete_with_pipeline(api, conn):
    class DP(rom.Model):
        a = rom.Integer(index=True)

    e = DP(a=1)
    await api.save(e)
    pipe = conn.pipeline(True)
    await api.delete(e, _conn=pipe)
    assert conn.exists(f'{DP._namespace}:1')
    pipe.execute()
    assert not conn.exists(f'{DP._namespace}:1') and not conn.exists(f'{DP._namespace}:a:idx')


async def test_delete_skip_sentinel_skips_hooks(api, conn):
    calls = []

    class DS(rom.Model):
        a = rom.Integer()

        def _before_delete(self):
            calls.append('bd')

        def _after_delete(self):
            calls.append('ad')

    e = DS(a=1)
    await api.save(e)
    await api.delete(e, skip_on_delete_i_really_mean_it=rom.SKIP_ON_DELETE)
    assert calls == []
    assert not conn.exists('DS:1')


# --- refresh (§5.8) --------------------------------------------------------------------

async def test_refresh(api, conn):
    class RF(rom.Model):
        a = rom.Integer()

    e = RF(a=1)
    with pytest.raises(InvalidOperation):
        await api.refresh(e)  # new entities are modified
    e._modified = False
    with pytest.raises(InvalidOperation):
        await api.refresh(e)  # new
    e._modified = True
    await api.save(e)
    conn.hset(f'{RF._namespace}:1', 'a', '5')
    await api.refresh(e)
    assert e.a == 5 and not e._modified
    assert e._last['a'] == '5'
    e.a = 7
    with pytest.raises(InvalidOperation):
        await api.refresh(e)
    rom.session.rollback()
    await api.refresh(e, force=True)
    assert e.a == 5 and not e._modified
    assert rom.session.known[f'{RF._namespace}:1'] is e
    conn.delete(f'{RF._namespace}:1')
    with pytest.raises(InvalidColumnValue):
        await api.refresh(e)
    d = RF(a=2)
    await api.save(d)
    await api.delete(d)
    assert await api.refresh(d) is None  # deleted: silently nothing


# --- get (§5.9) ------------------------------------------------------------------------

def test_get_single_and_many(conn, roundtrips):
    class GT(rom.Model):
        a = rom.Integer()

    for i in range(5):
        GT(a=i).save()
    rom.session.rollback()
    with roundtrips(conn) as rt:
        many = GT.get([3, 1, 99, 5, 2])
    # one round trip: a single atomic script call reads the five rows
    assert rt.count == 1
    assert len(rt.commands) == 1 and rt.commands[0] in ('EVAL', 'EVALSHA')
    assert [e.id for e in many] == [3, 1, 5, 2]
    assert [e.a for e in many] == [2, 0, 4, 1]
    with roundtrips(conn) as rt:
        again = GT.get((1, 2))
        one = GT.get('3')
    assert rt.count == 0  # all in the session
    assert again == [many[1], many[3]]
    assert one is many[0]
    assert GT.get(b'4').a == 3
    assert GT.get(5.0) is many[2]
    assert GT.get(99) is None
    assert GT.get([]) == []
    assert GT.get({4}) == [GT.get(4)]
    assert isinstance(GT.get(frozenset([4])), list)
    with pytest.raises((ValueError, TypeError)):
        GT.get('junk')
    rom.session.rollback()
    dup = GT.get([1, 1])
    assert len(dup) == 2 and dup[0].id == dup[1].id == 1


async def test_get_identity_map(api, conn):
    class GI(rom.Model):
        a = rom.Integer()

    e = GI(a=1)
    await api.save(e)
    assert await api.get(GI, 1) is e
    await api.commit()
    assert await api.get(GI, 1) is e  # weakly known
    rom.session.rollback()
    other = await api.get(GI, 1)
    assert other is not e and other.a == 1


# --- get_by (§5.10) ---------------------------------------------------------------------

@pytest.fixture
def GB(conn):
    class GB(rom.Model):
        u = rom.Text(unique=True)
        n = rom.Integer(index=True, unique=True)
        f = rom.Float(index=True)
        t = rom.Text(index=True, keygen=rom.FULL_TEXT)
        io = rom.IndexOnly('t', lambda v: [v.upper()] if v else None, unique=True)
        dd = rom.DateTime(index=True)

    return GB


async def test_get_by_unique(api, GB):
    from datetime import datetime
    a = GB(u='a\xe9', n=1, f=1.5, t='x y', dd=datetime(2000, 1, 1))
    b = GB(u='b', n=2, f=2.5, t='y z', dd=datetime(2000, 1, 2))
    await api.save(a)
    await api.save(b)
    assert await api.get_by(GB, u='a\xe9') is a
    assert await api.get_by(GB, u='nope') is None
    assert await api.get_by(GB, u=['b', 'zz', 'a\xe9']) == [b, a]
    assert await api.get_by(GB, n=2) is b
    assert await api.get_by(GB, u='b', _limit=(0, 1)) is b  # limit ignored on the unique path
    with pytest.raises(QueryError):
        await api.get_by(GB, u=('a', 'b'))
    # Q2: unique IndexOnly lookups are encoded like the writer (UTF-8)
    c = GB(u='c', t='\xe9t\xe9')
    await api.save(c)
    assert await api.get_by(GB, io='\xc9T\xc9') is c
    assert await api.get_by(GB, io='X Y') is a


async def test_get_by_numeric_path_Q1(api, GB):
    a = GB(u='a', n=1, f=1.5)
    b = GB(u='b', n=2, f=2.5)
    c = GB(u='c', n=3, f=2.5)
    for e in (a, b, c):
        await api.save(e)
    assert await api.get_by(GB, n=2, _numeric=True) == [b]
    assert await api.get_by(GB, n=(1, 2), _numeric=True) == [a, b]
    assert await api.get_by(GB, f=2.5) == [b, c]
    assert await api.get_by(GB, f=(None, 2)) == [a]
    assert await api.get_by(GB, f=(2, None)) == [b, c]
    assert await api.get_by(GB, f=(None, None), _limit=(1, 1)) == [b]
    assert await api.get_by(GB, f=(10, 20)) == []


async def test_get_by_datetime_range(api, GB):
    from datetime import datetime
    a = GB(dd=datetime(2000, 1, 1))
    b = GB(dd=datetime(2000, 1, 3))
    await api.save(a)
    await api.save(b)
    assert await api.get_by(GB, dd=(datetime(2000, 1, 2), None)) == [b]
    assert await api.get_by(GB, dd=datetime(2000, 1, 1)) == [a]


async def test_get_by_errors(api, GB):
    with pytest.raises(QueryError):
        await api.get_by(GB)
    with pytest.raises(QueryError):
        await api.get_by(GB, u='a', n=1)
    with pytest.raises(QueryError):
        await api.get_by(GB, f=1, _limit=(1,))
    with pytest.raises(QueryError):
        await api.get_by(GB, f=1, _limit=(1, 'x'))
    with pytest.raises(QueryError):
        await api.get_by(GB, f=(1, 2, 3))
    with pytest.raises(QueryError):
        await api.get_by(GB, nothing=1)
    with pytest.raises(QueryError):
        await api.get_by(GB, u=('a', 'b'))


async def test_get_by_string_index_uses_query(api, GB):
    a = GB(t='hello world')
    b = GB(t='hello there')
    await api.save(a)
    await api.save(b)
    assert await api.get_by(GB, t='hello') == [a, b]
    assert await api.get_by(GB, t='world') == [a]
    assert await api.get_by(GB, t='hello', _limit=(1, 1)) == [b]


# --- transfer (§5.12) ------------------------------------------------------------------

@pytest.fixture
def Acct(conn):
    class Acct(rom.Model):
        bal = rom.Float(index=True)

    class Txn(rom.Model):
        done = rom.Integer()

    return Acct, Txn


async def test_transfer(api, Acct, conn):
    Account, Txn = Acct
    a, b, t = Account(bal=10), Account(bal=1), Txn(done=0)
    for e in (a, b, t):
        await api.save(e)
    await api.transfer(a, b, 'bal', 4, t, 'done')
    assert a.bal == 6 and b.bal == 5 and t.done == 1
    assert conn.hget(f'{Account._namespace}:1', 'bal') == b'6.0'
    assert conn.zscore(f'{Account._namespace}:bal:idx', '2') == 5.0
    with pytest.raises(ValueError):
        await api.transfer(a, b, 'bal', 1, t, 'done')  # already done
    t2 = Txn(done=0)
    await api.save(t2)
    with pytest.raises(ValueError):
        await api.transfer(a, b, 'bal', 100, t2, 'done')  # not enough
    assert conn.hget(f'{Account._namespace}:1', 'bal') == b'6.0'
    assert conn.hget(f'{Txn._namespace}:2', 'done') == b'0'


async def test_transfer_decimal_places_and_no_refresh(api, Acct, conn):
    Account, Txn = Acct
    a, b, t = Account(bal=10), Account(bal=1), Txn()
    for e in (a, b, t):
        await api.save(e)
    await api.transfer(a, b, 'bal', 2.5, t, 'done', decimal_places=2, refresh_entities=False,
                       refresh_index=False)
    assert a.bal == 10  # python objects keep the old values
    assert float(conn.hget(f'{Account._namespace}:1', 'bal')) == 7.5
    assert float(conn.hget(f'{Account._namespace}:2', 'bal')) == 3.5
    assert conn.hget(f'{Txn._namespace}:1', 'done') == b'1'
    assert conn.zscore(f'{Account._namespace}:bal:idx', '1') == 10.0  # index left stale


async def test_transfer_checks(api, Acct, conn, redis_url):
    Account, Txn = Acct
    a, b, t = Account(bal=10), Account(bal=1), Txn()
    with pytest.raises(ValueError):
        await api.transfer(a, b, 'bal', 1, t, 'done')  # new entities
    for e in (a, b, t):
        await api.save(e)
    with pytest.raises(ValueError):
        await api.transfer(a, b, 'bal', 0, t, 'done')
    with pytest.raises(ValueError):
        await api.transfer(a, b, 'bal', -1, t, 'done')
    with pytest.raises(ValueError):
        await api.transfer(a, b, 'bal', 1, t, 'done', decimal_places=-1)
    b.bal = 3
    with pytest.raises(ValueError):
        await api.transfer(a, b, 'bal', 1, t, 'done')
    await api.save(b)
    import redis

    class OtherTxn(rom.Model):
        _conn = redis.Redis.from_url(redis_url)
        done = rom.Integer()

    ot = OtherTxn()
    await api.save(ot)
    with pytest.raises(ValueError):
        await api.transfer(a, b, 'bal', 1, ot, 'done')
    assert conn.hget(f'{Account._namespace}:1', 'bal') == b'10'


# --- on_delete (§3.5) ------------------------------------------------------------------

async def test_on_delete_cascade_set_null_set_default(api, conn):
    class Par(rom.Model):
        name = rom.Text()

    class Casc(rom.Model):
        p = rom.ManyToOne('Par', 'cascade')

    class Nul(rom.Model):
        p = rom.ManyToOne('Par', 'set null')

    class Dfl(rom.Model):
        p = rom.ManyToOne('Par', 'set default', default=None)
        x = rom.Integer()

    class Nop(rom.Model):
        p = rom.ManyToOne('Par', 'no action')

    calls = []

    class Grand(rom.Model):
        c = rom.ManyToOne('Casc', 'cascade')

        def _before_delete(self):
            calls.append('grand')

    p = Par(name='p')
    await api.save(p)
    keep = Par(name='keep')
    await api.save(keep)
    casc = Casc(p=p)
    await api.save(casc)
    grand = Grand(c=casc)
    await api.save(grand)
    nul = Nul(p=p)
    await api.save(nul)
    dfl = Dfl(p=p, x=1)
    await api.save(dfl)
    nop = Nop(p=p)
    await api.save(nop)
    other = Casc(p=keep)
    await api.save(other)
    await api.delete(p)
    assert calls == []  # cascaded entities get no hooks
    assert not conn.exists(f'{Par._namespace}:1') and not conn.exists(f'{Casc._namespace}:1') and not conn.exists(f'{Grand._namespace}:1')
    assert conn.exists(f'{Casc._namespace}:2') and conn.exists(f'{Par._namespace}:2')
    assert not conn.hexists(f'{Nul._namespace}:1', 'p')
    assert not conn.hexists(f'{Dfl._namespace}:1', 'p')
    assert conn.hget(f'{Dfl._namespace}:1', 'x') == b'1'
    assert conn.hget(f'{Nop._namespace}:1', 'p') == b'1'  # no action
    assert conn.zrange(f'{Nul._namespace}:p:idx', 0, -1) == []
    assert nul.p is None and not nul._modified


async def test_on_delete_set_default_value(api, conn):
    class PD(rom.Model):
        pass

    class SD(rom.Model):
        p = rom.ManyToOne('PD', 'set default', default=lambda: 1)

    fallback = PD()
    await api.save(fallback)
    doomed = PD()
    await api.save(doomed)
    s = SD(p=doomed)
    await api.save(s)
    await api.delete(doomed)
    assert conn.hget(f'{SD._namespace}:1', 'p') == b'1'
    assert s.p is fallback


async def test_on_delete_restrict(api, conn):
    class RP(rom.Model):
        pass

    class RNul(rom.Model):
        p = rom.ManyToOne('RP', 'set null')

    class RC(rom.Model):
        p = rom.ManyToOne('RP', 'restrict')

    p = RP()
    await api.save(p)
    n = RNul(p=p)
    await api.save(n)
    r1, r2 = RC(p=p), RC(p=p)
    await api.save(r1)
    await api.save(r2)
    with pytest.raises(RestrictError) as info:
        await api.delete(p)
    assert len(info.value.args) == 1
    message = info.value.args[0]
    assert 'RP' in message and '2' in message and 'RC' in message and 'p' in message
    assert conn.exists(f'{RP._namespace}:1') and conn.hget(f'{RNul._namespace}:1', 'p') == b'1'
    assert not p._deleted
    # in-memory changes made by an earlier 'set null' step remain (compat)
    assert n.p is None and n._modified


async def test_on_delete_custom_pk_name_D1(api, conn):
    class PKP(rom.Model):
        key = rom.PrimaryKey()

    class PKC(rom.Model):
        p = rom.ManyToOne('PKP', 'cascade')

    p = PKP()
    await api.save(p)
    c = PKC(p=p)
    await api.save(c)
    assert conn.hget(f'{PKC._namespace}:1', 'p') == b'1'
    await api.delete(p)
    assert not conn.exists(f'{PKC._namespace}:1')
    assert not conn.exists(f'{PKP._namespace}:1')


async def test_on_delete_namespace_differs_from_class_name_B2(api, conn):
    class NsParent(rom.Model):
        _namespace = 'np'

    class ByClass(rom.Model):
        p = rom.ManyToOne('NsParent', 'cascade')

    class ByNs(rom.Model):
        p = rom.ManyToOne('np', 'set null')

    class Restr(rom.Model):
        p = rom.ManyToOne('NsParent', 'restrict')

    p = NsParent()
    await api.save(p)
    a = ByClass(p=p)
    await api.save(a)
    b = ByNs(p=p)
    await api.save(b)
    await api.delete(p)
    assert not conn.exists('np:1')
    assert not conn.exists(f'{ByClass._namespace}:1')
    assert not conn.hexists(f'{ByNs._namespace}:1', 'p')
    p2 = NsParent()
    await api.save(p2)
    await api.save(Restr(p=p2))
    with pytest.raises(RestrictError):
        await api.delete(p2)
    assert conn.exists('np:2')


async def test_set_null_over_dangling_reference_D2(api, conn):
    class DP2(rom.Model):
        pass

    class DC2(rom.Model):
        p = rom.ManyToOne('DP2', 'no action')

    p = DP2()
    await api.save(p)
    c = DC2(p=p)
    await api.save(c)
    # the referenced row disappears behind rom's back
    conn.delete(f'{DP2._namespace}:1')
    rom.session.rollback()
    loaded = await api.get(DC2, 1)
    assert await api.load(loaded, 'p') is None
    assert conn.hget(f'{DC2._namespace}:1', 'p') == b'1'
    loaded.p = None
    await api.save(loaded)
    assert not conn.hexists(f'{DC2._namespace}:1', 'p')
    assert conn.zrange(f'{DC2._namespace}:p:idx', 0, -1) == []


async def test_on_delete_saves_after_deletes_with_hooks(api, conn):
    calls = []

    class HP(rom.Model):
        pass

    class HN(rom.Model):
        p = rom.ManyToOne('HP', 'set null')

        def _before_update(self):
            calls.append(('bu', conn.exists('HP:1')))

    p = HP()
    await api.save(p)
    await api.save(HN(p=p))
    await api.delete(p)
    assert calls == [('bu', 0)]


async def test_commit_after_failed_on_delete_saves_modified(api, conn):
    class FP(rom.Model):
        pass

    class FN(rom.Model):
        p = rom.ManyToOne('FP', 'set null')

    class FR(rom.Model):
        p = rom.ManyToOne('FP', 'restrict')

    p = FP()
    await api.save(p)
    n = FN(p=p)
    await api.save(n)
    await api.save(FR(p=p))
    with pytest.raises(RestrictError):
        await api.delete(p)
    await api.commit()
    assert not conn.hexists('FN:1', 'p')


# --- misc model behaviour -----------------------------------------------------------------------

def test_entities_have_identity_semantics(conn):
    class IdSem(rom.Model):
        a = rom.Integer()

    assert IdSem.__eq__ is object.__eq__
    assert IdSem.__hash__ is object.__hash__
    assert not hasattr(IdSem, '__bool__') and not hasattr(IdSem, '__len__')
    e = IdSem(a=0)
    assert bool(e)
    assert e != IdSem(a=0)


async def test_one_to_many_order_follows_index_ties_by_member(api, conn):
    class OParent(rom.Model):
        kids = rom.OneToMany('OKid')

    class OKid(rom.Model):
        p = rom.ManyToOne('OParent', 'no action')

    p = OParent()
    await api.save(p)
    kids = [OKid(p=p) for _ in range(11)]
    for k in kids:
        await api.save(k)
    # same score (the parent id): Redis orders ties by member bytes: '1', '10', '11', '2', ...
    assert [k.id for k in await api.load(p, 'kids')] == sorted(range(1, 12), key=str)


async def test_apply_changes_classmethod(api, conn):
    class AC(rom.Model):
        a = rom.Integer(index=True)
        b = rom.Text()

    e = AC(a=1, b='x')
    await api.save(e)
    e.a = 2
    changes, stored = AC._apply_changes(e._last, e.to_dict())
    assert changes == 1
    assert stored == {'a': '2', 'b': 'x', 'id': '1'}
    assert conn.hget(f'{AC._namespace}:1', 'a') == b'2'
    assert conn.zscore(f'{AC._namespace}:a:idx', '1') == 2.0


async def test_redis_writer_lua_entry_point(api, conn):
    class RWL(rom.Model):
        x = rom.Integer(index=True)

    rom.model.redis_writer_lua(conn, 'id', 'RWL', 1, {}, {}, [], {'id': '1', 'x': '5'},
                               [], {'x': '5'}, [], [], [], {}, False, [])
    assert conn.hget(f'{RWL._namespace}:1', 'x') == b'5'
    assert conn.zscore(f'{RWL._namespace}:x:idx', '1') == 5.0
    assert conn.hget(f'{RWL._namespace}:1', '-index-data-') == b'[{},["x"],{},{},{}]'
    assert (await api.get(RWL, 1)).x == 5


async def test_aware_datetime_is_stored_as_the_same_instant_and_loads_naive_utc(api, conn):
    # issue 18: rom 1.1.2 raised TypeError (naive minus aware)
    from datetime import datetime, timedelta, timezone

    class AW(rom.Model):
        dt = rom.DateTime(index=True)
        dd = rom.Date()
        sdt = rom.SaferDateTime()

    paris = timezone(timedelta(hours=1))
    e = AW(dt=datetime(2020, 1, 1, 13, 30, tzinfo=paris), sdt=datetime.now(timezone.utc))
    assert e.dt == datetime(2020, 1, 1, 12, 30) and e.dt.tzinfo is None  # normalised at once
    e.dd = datetime(2020, 1, 1, 0, 30, tzinfo=paris)  # 2019-12-31 23:30 UTC
    await api.save(e)
    naive = AW(dt=datetime(2020, 1, 1, 12, 30), dd=datetime(2019, 12, 31, 23, 30))
    await api.save(naive)
    for field in ('dt', 'dd'):  # the bytes rom 1.1.2 stores for the naive UTC value
        assert conn.hget(f'{AW._namespace}:1', field) == conn.hget(f'{AW._namespace}:2', field)
    assert conn.hget(f'{AW._namespace}:1', 'dt') == b'1577881800.0'
    rom.util.session.rollback()
    loaded = await api.get(AW, 1)
    assert loaded.dt == datetime(2020, 1, 1, 12, 30) and loaded.dt.tzinfo is None
    assert loaded.dd == datetime(2019, 12, 31).date()
    assert await api.save(loaded) == 0  # nothing looks changed
    at_paris = AW.query.filter(dt=datetime(2020, 1, 1, 13, 30, tzinfo=paris))
    assert {x.id for x in await api.list(at_paris)} == {1, 2}
    # an instant outside the datetime range in UTC is refused before anything is written
    late = datetime(9999, 12, 31, 23, tzinfo=timezone(-timedelta(hours=5)))
    with pytest.raises(InvalidColumnValue, match='AW.dt'):
        loaded.dt = late
    with pytest.raises(InvalidColumnValue, match='AW.dt'):
        AW(dt=late)


async def test_full_save_race_checks_every_written_column(api, conn):
    class FR(rom.Model):
        a = rom.Integer()
        b = rom.Text()

    await api.save(FR(a=1, b='x'))
    rom.session.rollback()
    e1 = await api.get(FR, 1)
    rom.session.rollback()
    e2 = await api.get(FR, 1)
    e1.b = 'y'
    await api.save(e1)
    with pytest.raises(DataRaceError) as info:
        await api.save(e2, full=True)
    assert info.value.args[1:] == (FR._namespace, '1')
    assert conn.hget(f'{FR._namespace}:1', 'b') == b'y'


def test_loading_constructor_semantics(conn):
    class LD(rom.Model):
        r = rom.Text(required=True)
        a = rom.Integer()
        d = rom.Integer(default=4)
        s = rom.String()

    e = LD(_loading=True, id='7', a=False, junk='ignored')  # no required check, False -> None
    assert e.id == 7 and e.r is None and e.a is None and e.d == 4
    assert not e._new and not e._modified
    assert rom.session.known[f'{LD._namespace}:7'] is e
    assert e._last == {'id': '7'}
    b = LD(_loading=True, _bypass_session_entirely=True, id='8', r='x', extra=1)
    assert f'{LD._namespace}:8' not in rom.session.known
    assert b.r == 'x'
    assert LD(_loading=True, id='9', s=b'\xc3\xa9').s == b'\xe9'  # UTF-8 decoded, latin-1 encoded


async def test_get_by_unique_empty_list(api, conn):
    class GE(rom.Model):
        u = rom.Text(unique=True)

    await api.save(GE(u='a'))
    assert await api.get_by(GE, u=[]) == []


async def test_restrict_after_hook_order(api, conn):
    calls = []

    class RHP(rom.Model):
        def _before_delete(self):
            calls.append('bd')

        def _after_delete(self):
            calls.append('ad')

    class RHC(rom.Model):
        p = rom.ManyToOne('RHP', 'restrict')

    p = RHP()
    await api.save(p)
    await api.save(RHC(p=p))
    with pytest.raises(RestrictError):
        await api.delete(p)
    assert calls == ['bd']


async def test_restrict_deep_in_cascade_deletes_nothing(api, conn):
    class TP(rom.Model):
        pass

    class TC(rom.Model):
        p = rom.ManyToOne('TP', 'cascade')

    class TG(rom.Model):
        c = rom.ManyToOne('TC', 'restrict')

    p = TP()
    await api.save(p)
    c = TC(p=p)
    await api.save(c)
    await api.save(TG(c=c))
    before = sorted(conn.keys('*'))
    with pytest.raises(RestrictError) as info:
        await api.delete(p)
    assert 'TC' in info.value.args[0] and 'TG' in info.value.args[0]
    assert sorted(conn.keys('*')) == before
    assert not p._deleted and not c._deleted


async def test_cascade_cycle_terminates(api, conn):
    class Node(rom.Model):
        parent = rom.ManyToOne('Node', 'cascade')

    a, b, c = Node(), Node(), Node()
    for e in (a, b, c):
        await api.save(e)
    a.parent, b.parent, c.parent = b, c, a
    for e in (a, b, c):
        await api.save(e)
    await api.delete(b)
    assert sorted(conn.keys('*')) == [f'{Node._namespace}:id:'.encode()]


async def test_set_null_skipped_for_entities_scheduled_for_deletion(api, conn):
    calls = []

    class SP(rom.Model):
        pass

    class SC(rom.Model):
        p1 = rom.ManyToOne('SP', 'cascade')
        p2 = rom.ManyToOne('SP', 'set null')

        def _before_update(self):
            calls.append('bu')

    p = SP()
    await api.save(p)
    c = SC(p1=p, p2=p)
    await api.save(c)
    await api.delete(p)
    assert calls == []
    assert sorted(conn.keys('*')) == [f'{SC._namespace}:id:'.encode(), f'{SP._namespace}:id:'.encode()]


def test_zrange_limit_iterator(conn):
    from rom.model import _zrange_limit_iterator
    conn.zadd('zz', {str(i): i for i in range(250)})
    pages = list(_zrange_limit_iterator(conn, 'zz', '-inf', '+inf', 100))
    assert [len(p) for p in pages] == [100, 100, 50]
    assert pages[2][-1] == b'249'
    conn.zrem('zz', *[str(i) for i in range(200, 250)])
    assert [len(p) for p in _zrange_limit_iterator(conn, 'zz', 0, '(150', 100)] == [100, 50]
    assert [len(p) for p in _zrange_limit_iterator(conn, 'zz', '-inf', '+inf', 100)] == \
        [100, 100, 0]


async def test_get_by_boolean_and_list_values_use_queries(api, conn):
    class GBB(rom.Model):
        flag = rom.Boolean(index=True)
        t = rom.Text(index=True, keygen=rom.IDENTITY)

    a, b, c = GBB(flag=True, t='x'), GBB(flag=False, t='y'), GBB(flag=True, t='z')
    for e in (a, b, c):
        await api.save(e)
    assert await api.get_by(GBB, flag=True) == [a, c]
    assert await api.get_by(GBB, flag=False) == [b]
    assert sorted([e.id for e in await api.get_by(GBB, t=['x', 'y'])]) == [1, 2]


async def test_delete_twice_reruns_hooks(api, conn):
    calls = []

    class DT(rom.Model):
        def _before_delete(self):
            calls.append('bd')

        def _after_delete(self):
            calls.append('ad')

    e = DT()
    await api.save(e)
    await api.delete(e)
    await api.delete(e)
    assert calls == ['bd', 'ad', 'bd', 'ad']
    assert sorted(conn.keys('*')) == [f'{DT._namespace}:id:'.encode()]
