"""Query terminal calls against Redis: filters, ordering, paging, count, first, cached results,
delete, the session, temporary keys and round trips."""
from __future__ import annotations

import datetime
import re
from decimal import Decimal

import pytest

import rom
import rom.util
from rom import util
from rom.exceptions import QueryError
from rom.query import NOT_NULL

UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')


def temp_keys(conn):
    return sorted(k for k in conn.keys('*')
                  if UUID.search(k.decode() if isinstance(k, bytes) else k))


def ids(entities):
    return [e.id for e in entities]


@pytest.fixture
def P():
    class P(rom.Model):
        _ids_per_block = 1  # one INCR per entity: an unfiltered count() reads the counter
        name = rom.Text(index=True, keygen=rom.FULL_TEXT)
        color = rom.Text(index=True, keygen=rom.IDENTITY_CI)
        n = rom.Integer(index=True)
        f = rom.Float(index=True)
        d = rom.Decimal(index=True)
        when = rom.DateTime(index=True)
        day = rom.Date(index=True)
        at = rom.Time(index=True)
        flag = rom.Boolean(index=True)
        sort = rom.Text(index=True, keygen=rom.SIMPLE_CI)
        plain = rom.Text()
    return P


@pytest.fixture
def people(P):
    base = datetime.datetime(2020, 1, 1)
    rows = []
    for i in range(1, 13):
        rows.append(P(name='person %d %s' % (i, 'even' if i % 2 == 0 else 'odd'),
                      color='Red' if i % 3 == 0 else 'Blue', n=i * 10, f=i / 2.0,
                      d=Decimal(i) / 4, when=base + datetime.timedelta(days=i),
                      day=(base + datetime.timedelta(days=i)).date(),
                      at=datetime.time(i, 30), flag=bool(i % 2), sort='z%02d' % (13 - i),
                      plain='p%d' % i))
    rom.util.session.commit()
    rom.util.session.rollback()
    return P


async def test_filters(api, people, conn):
    P = people
    assert ids(await api.list(P.query.filter(name='odd'))) == \
        [1, 11, 3, 5, 7, 9]      # id bytes order
    assert ids(await api.list(P.query.filter(name='ODD', color='red'))) == [3, 9]
    assert ids(await api.list(P.query.filter(name='odd').filter(color='RED'))) == [3, 9]
    assert ids(await api.list(P.query.filter(color=['red', 'nope']))) == [12, 3, 6, 9]
    assert ids(await api.list(P.query.filter(n=(30, 50)))) == \
        [3, 4, 5]                # range: score order
    assert ids(await api.list(P.query.filter(n=(None, 20)))) == [1, 2]
    assert ids(await api.list(P.query.filter(n=(115, None)))) == [12]
    assert ids(await api.list(P.query.filter(n=('30', '40')))) == [3, 4]
    assert ids(await api.list(P.query.filter(n=40))) == [4]
    assert ids(await api.list(P.query.filter(n=(50, 30)))) == []
    assert ids(await api.list(P.query.filter(f=(1.0, 2.0)))) == [2, 3, 4]
    assert ids(await api.list(P.query.filter(d=(Decimal('0.5'), Decimal('0.75'))))) == [2, 3]
    when = (datetime.datetime(2020, 1, 3), datetime.datetime(2020, 1, 4))
    assert ids(await api.list(P.query.filter(when=when))) == [2, 3]
    assert ids(await api.list(P.query.filter(day=datetime.date(2020, 1, 5)))) == [4]
    assert ids(await api.list(P.query.filter(at=(datetime.time(3), datetime.time(4, 30))))) == \
        [3, 4]
    assert ids(await api.list(P.query.filter(flag=True, n=(None, 50)))) == [1, 3, 5]
    assert ids(await api.list(P.query.filter(flag='False', n=(None, 50)))) == [2, 4]
    assert ids(await api.list(P.query.filter(flag=1))) == \
        []                             # numeric: nothing
    assert ids(await api.list(P.query.filter(n=(None, None)))) == list(range(1, 13))
    assert ids(await api.list(P.query.filter(name='nobody'))) == []
    assert ids(await api.list(P.query.filter(name='person 1'))) == \
        []                    # one whole token
    assert temp_keys(conn) and all(0 < conn.ttl(k) <= 30 for k in temp_keys(conn))


async def test_order_and_limit(api, people):
    P = people
    assert ids(await api.list(P.query.filter(color='blue').order_by('-n'))) == \
        [11, 10, 8, 7, 5, 4, 2, 1]
    assert ids(await api.list(P.query.filter(color='blue').order_by('n').limit(2, 3))) == [4, 5, 7]
    assert ids(await api.list(P.query.order_by('sort').limit(0, 3))) == [12, 11, 10]
    assert ids(await api.list(P.query.order_by('-sort').limit(0, 2))) == [1, 2]
    assert ids(await api.list(P.query.filter(n=(None, 60)).limit(4, 10))) == [5, 6]
    assert ids(await api.list(P.query.filter(n=(None, 60)).limit(10, 10))) == []
    assert ids(await api.list(P.query.filter(n=(None, 60)).limit(0, 0))) == []
    assert ids(await api.list(P.query.filter(n=(None, 60)).limit(0, -1))) == []
    with pytest.raises(QueryError):                                       # no index at all
        P.query.filter(name='odd').order_by('plain')
    odd = P.query.filter(name='odd').order_by('n')
    assert [e.id for e in await api.iter_result(odd, pagesize=2)] == [1, 3, 5, 7, 9, 11]
    assert list(await api.iter_result(P.query.filter(name='odd'), pagesize=0)) == []


async def test_ties_order_by_id_bytes(api, P):
    for i in range(1, 12):
        await api.save(P(n=5 if i != 4 else 1))
    assert ids(await api.list(P.query.order_by('n'))) == [4, 1, 10, 11, 2, 3, 5, 6, 7, 8, 9]
    assert ids(await api.list(P.query.order_by('-n'))) == [1, 10, 11, 2, 3, 5, 6, 7, 8, 9, 4]


async def test_count(api, people, conn):
    P = people
    assert await api.count(P.query) == 12
    assert await api.count(P.query.limit(10, 5)) == 2
    assert await api.count(P.query.limit(3, 4)) == 4
    assert await api.count(P.query.limit(20, 5)) == 0
    assert await api.count(P.query.limit(0, -3)) == 0                              # bug query #11
    assert await api.count(P.query.filter(name='odd')) == 6
    assert await api.count(P.query.filter(name='odd').limit(0, 2)) == 6            # limit ignored
    assert await api.count(P.query.filter(n=(None, 30)).order_by('n')) == 3
    assert await api.count(P.query.order_by('sort')) == 12
    assert temp_keys(conn) == []
    unsaved = P(plain='unsaved')       # consumes an id (in a coroutine: its first save does)
    if api.is_async:
        assert await api.count(P.query) == 12
        await api.save(unsaved)
    assert await api.count(P.query) == 13                               # compat: counter
    conn.delete(f'{P._namespace}:id:')
    assert await api.count(P.query) == 0


async def test_first(api, people, conn):
    P = people
    e = await api.first(P.query.filter(name='odd').order_by('-n'))
    assert e.id == 11 and e._pk in rom.util.session.known                # filtered: stays
    assert (await api.first(P.query.filter(name='odd').order_by('-n').limit(2, 9))).id == 7
    assert await api.first(P.query.filter(name='nobody')) is None
    rom.util.session.rollback()
    u = await api.first(P.query)
    assert u.id == 1 and u._pk not in rom.util.session.known             # unfiltered: forgotten
    assert (await api.first(P.query.limit(3, 5))).id == 4
    assert await api.first(P.query.limit(3, 0)) is None
    # bug query #12: select is honoured on the filtered path
    assert await api.first(P.query.filter(color='red').order_by('n').select('n', 'plain')) == \
        {'n': 30, 'plain': 'p3'}
    assert await api.first(P.query.select('n')) == {'n': 10}
    assert await api.first(P.query.filter(color='nope').select('n')) is None
    assert temp_keys(conn) == []


async def test_first_stale_row(api, people, conn):
    P = people
    conn.delete(f'{P._namespace}:3')                                                  # behind rom's back
    assert await api.first(P.query.filter(color='red').order_by('n')) is None    # compat
    assert ids(await api.list(P.query.filter(color='red').order_by('n'))) == [6, 9, 12]
    assert await api.count(P.query.filter(color='red')) == 4                     # counted
    assert P.query.filter(color='red').order_by('n')._search() == [b'3', b'6', b'9', b'12']
    assert await api.select(P.query.filter(color='red').order_by('n'), 'n') == \
        [{'n': 60}, {'n': 90}, {'n': 120}]
    # offset counts index positions; stale ids do not spend the budget
    assert ids(await api.list(P.query.filter(color='red').order_by('n').limit(0, 2))) == [6, 9]
    assert ids(await api.list(P.query.filter(color='red').order_by('n').limit(1, 2))) == [6, 9]
    assert ids(await api.iter_result(P.query.filter(color='red').order_by('n'), pagesize=1)) == \
        [6, 9, 12]


async def test_search_and_cached_result(api, people, conn):
    P = people
    q = P.query.filter(name='odd').order_by('n')
    assert q._search() == [b'1', b'3', b'5', b'7', b'9', b'11']
    assert q.limit(2, 2)._search() == [b'5', b'7']
    assert q.limit(2, 0)._search() == [b'5', b'7', b'9', b'11']         # count <= 0: to the end
    assert list(await api.list(q.limit(2, 0))) == \
        []                                    # iteration: nothing
    assert temp_keys(conn) == []
    key = await api.cached_result(q.limit(0, 1), 60)
    assert re.fullmatch(f'{P._namespace}:' + UUID.pattern, key)
    assert conn.zrange(key, 0, -1, withscores=True) == [
        (b'1', 10.0), (b'3', 30.0), (b'5', 50.0), (b'7', 70.0), (b'9', 90.0), (b'11', 110.0)]
    assert 0 < conn.ttl(key) <= 60
    key2 = await api.cached_result(P.query.filter(name='nobody'), '5')
    assert isinstance(key2, str) and not conn.exists(key2)


async def test_iteration_temp_key_ttl(api, people, conn):
    P = people
    even = P.query.filter(name='even').order_by('n')
    assert ids(await api.iter_result(even, timeout=7, pagesize=4)) == \
        [2, 4, 6, 8, 10, 12]
    keys = temp_keys(conn)
    assert len(keys) == 1 and 0 < conn.ttl(keys[0]) <= 7
    assert conn.zcard(keys[0]) == 6


async def test_session_identity(api, people, conn):
    P = people
    sess = rom.util.session
    held = await api.get(P, 2)
    held.plain = 'changed locally'                                      # not saved
    found = await api.all(P.query.filter(name='even').order_by('n'))
    assert found[0] is held and found[0].plain == 'changed locally'
    assert held._pk in sess.known
    assert [e._pk in sess.known for e in found] == [True] + [False] * 5
    assert sess.known.keys() == {held._pk}


async def test_query_forgets_weakly_held_entities(api, people, conn):
    # spec §3.3: a yielded entity that was not in ``known`` is forgotten, from ``wknown`` too
    P = people
    sess = rom.util.session
    strong = await api.get(P, 2)
    weak = await api.get(P, 4)
    await api.commit()                      # known emptied; both stay findable through wknown
    strong.plain = 'tracked again'     # assignment re-adds it to known
    assert sess.get(weak._pk) is weak
    found = await api.all(P.query.filter(name='even').order_by('n'))
    assert found[0] is strong and found[1] is weak      # identity kept while iterating
    assert sess.get(strong._pk) is strong
    assert sess.get(weak._pk) is None and weak._pk not in sess.wknown
    assert len(sess.wknown) == 1 and list(sess.known) == [strong._pk]
    again = await api.all(P.query.filter(name='even').order_by('n'))
    assert again[1] is not weak and again[1].id == weak.id


async def test_unfiltered_probe(api, people, conn):
    P = people
    conn.delete(f'{P._namespace}:5')
    assert ids(await api.all(P.query)) == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]
    assert ids(await api.list(P.query.limit(3, 3))) == [4, 6, 7]
    assert ids(await api.iter_result(P.query, pagesize=5)) == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]
    assert ids(await api.list(P.query.limit(0, -1))) == []
    assert await api.all(P.query.select('n').limit(0, 2)) == [{'n': 10}, {'n': 20}]
    assert rom.util.session.known == {}


async def test_unfiltered_indexed_pk(api, conn):
    class K(rom.Model):
        id = rom.PrimaryKey(index=True)
        v = rom.Integer()
    for i in range(7):
        await api.save(K(v=i))
    rom.util.session.rollback()
    conn.delete(f'{K._namespace}:3')
    assert ids(await api.all(K.query)) == [1, 2, 4, 5, 6, 7]
    assert ids(await api.list(K.query.limit(2, 3))) == \
        [4, 5, 6]                      # offset: index ranks
    assert ids(await api.list(K.query.limit(20, 3))) == \
        []                            # bug query #5
    assert ids(await api.iter_result(K.query, pagesize=2)) == [1, 2, 4, 5, 6, 7]
    assert await api.all(K.query.select('v').limit(4, 9)) == [{'v': 4}, {'v': 5}, {'v': 6}]
    assert ids(await api.list(K.query.filter(id=(2, 5)))) == [2, 4, 5]
    conn.delete(f'{K._namespace}:id:idx')
    assert await api.all(K.query) == \
        []                                        # compat: index missing


async def test_delete(api, people, conn):
    P = people
    prefix = P._namespace.encode() + b':'

    def row_ids():  # (SCAN walks every master of a cluster)
        keys = conn.scan_iter(match=prefix + b'[0-9]*')
        return sorted(int(k[len(prefix):]) for k in keys if k[len(prefix):].isdigit())

    await api.delete(P.query.filter(color='red').select('n'), blocksize=2)       # bug query #13
    assert row_ids() == [1, 2, 4, 5, 7, 8, 10, 11]
    assert await api.count(P.query.filter(color='red')) == 0
    await api.delete(P.query)
    assert row_ids() == []
    assert sorted(conn.scan_iter(match='*')) == sorted([prefix + b'id:'] + temp_keys(conn))


def test_delete_round_trips(P, conn, roundtrips):
    for i in range(10):
        P(n=i).save()
    rom.util.session.commit()
    rom.util.session.rollback()
    with roundtrips(conn) as rt:
        P.query.filter(n=(None, None)).delete(blocksize=4)
    # 3 pages of 4: ids + load + delete each; session.delete's pipeline may also check the
    # script cache (SCRIPT EXISTS), which is the session's business
    assert rt.count - rt.commands.count('SCRIPT') <= 9
    assert P.query.filter(n=(None, None)).count() == 0


def test_round_trips(people, conn, roundtrips):
    P = people
    with roundtrips(conn) as rt:
        assert len(P.query.filter(name='odd').limit(0, 3).all()) == 3
    assert rt.count == 2                                              # ids + entities
    with roundtrips(conn) as rt:
        assert len(P.query.filter(name='odd', color='blue').order_by('n').all()) == 4
    assert rt.count == 3                                              # estimate, ids, entities
    with roundtrips(conn) as rt:
        assert P.query.filter(name='odd', n=(0, 100)).select('n').all()
    assert rt.count == 2                                              # estimate, ids + rows
    with roundtrips(conn) as rt:
        assert P.query.filter(name='odd', n=(0, 100)).count() == 5
    assert rt.count == 2
    with roundtrips(conn) as rt:
        P.query.filter(name='odd').first()
    assert rt.count == 2
    with roundtrips(conn) as rt:
        P.query.filter(name='odd').first()                            # now in the session
    assert rt.count == 1
    with roundtrips(conn) as rt:
        P.query.filter(name='odd').select('n').first()
    assert rt.count == 1
    with roundtrips(conn) as rt:
        list(P.query.filter(n=(None, None)).iter_result(pagesize=5))  # 3 pages
    assert rt.count == 6
    with roundtrips(conn) as rt:
        P.query.filter(name='odd').cached_result(10)
    assert rt.count == 1


async def test_select_rows(api, P, conn):
    Ref = None

    class Q(rom.Model):
        n = rom.Integer(index=True)
        b = rom.Boolean()
        s = rom.String()
        t = rom.Text()
        _code = rom.Text()
        plain = rom.Text()
    await api.save(Q(n=0, b=True, s=b'caf\xe9', t='h\xe9llo \u20ac', _code='x'))
    await api.save(Q(n=1, b=False, s=b'\0:z', t='a:b\0c'))
    rows = await api.select(Q.query.filter(n=(None, None)), 'n', 'b', 'plain')
    assert rows == [{'n': 0, 'b': True, 'plain': None}, {'n': 1, 'b': False, 'plain': None}]
    rows = await api.select(Q.query.order_by('n'), 'n', 'b', 'plain', 's', 't', decode=False)
    assert rows == [{'n': '0', 'b': '1', 'plain': None, 's': 'café', 't': 'h\xe9llo \u20ac'},
                    {'n': '1', 'b': '', 'plain': None, 's': '\0:z', 't': 'a:b\0c'}]
    rows = await api.select(Q.query.order_by('n'), ['s', 't'])
    assert rows == [{'s': b'caf\xe9', 't': 'h\xe9llo \u20ac'}, {'s': b'\0:z', 't': 'a:b\0c'}]
    from rom.query import (_list_data_factory, _namedtuple_data_factory,
                           _tuple_data_factory)
    assert await api.select(Q.query.order_by('n'), 'n', 'b', ff=_tuple_data_factory) == \
        [(0, True), (1, False)]
    as_lists = Q.query.order_by('n').select('n', ff=_list_data_factory, include_pk=True)
    assert await api.all(as_lists) == \
        [[0, 1], [1, 2]]
    rows = await api.select(Q.query.order_by('n'), 'n', 'b', '_code', include_pk=True,
                                                      ff=_namedtuple_data_factory)
    assert type(rows[0]).__name__ == 'n_b__code_id'
    assert rows[0] == (0, True, 'x', 1) and rows[0].code == 'x' and rows[0].id == 1
    assert await api.select(Q.query.order_by('n'), 'id', 'n') == [{'id': 1, 'n': 0},
                                                              {'id': 2, 'n': 1}]
    assert rom.util.session.known == {} or all(
        k in (f'{Q._namespace}:1', f'{Q._namespace}:2') for k in rom.util.session.known)


async def test_select_touches_no_session(api, P, conn):
    await api.save(P(n=1))
    await api.commit()
    rom.util.session.rollback()
    assert await api.select(P.query.filter(n=1), 'n') == [{'n': 1}]
    assert await api.select(P.query, 'n') == [{'n': 1}]
    assert rom.util.session.known == {}
    assert len(rom.util.session.wknown) == 0


async def test_references(api, conn):
    class Owner(rom.Model):
        name = rom.Text()

    class Pet(rom.Model):
        owner = rom.ManyToOne('Owner', on_delete='no action')
        name = rom.Text(index=True, keygen=rom.IDENTITY)
    a, b = Owner(name='a'), Owner(name='b')
    await api.save(a), await api.save(b)
    await api.save(Pet(owner=a, name='rex'))
    await api.save(Pet(owner=b, name='tom'))
    await api.save(Pet(name='stray'))
    await api.commit()
    assert ids(await api.list(Pet.query.filter(owner=a.id))) == [1]
    assert ids(await api.list(Pet.query.filter(owner=(None, b.id)))) == [1, 2]
    assert ids(await api.list(Pet.query.filter(owner=NOT_NULL))) == [1, 2]
    rows = await api.select(Pet.query.filter(owner=b.id), 'owner', 'name')
    assert rows[0]['name'] == 'tom' and rows[0]['owner'].id == b.id
    assert await api.select(Pet.query.filter(owner=NOT_NULL), 'owner', decode=False) == \
        [{'owner': '1'}, {'owner': '2'}]


async def test_decoding_connection(api, people, decoding_conn, conn):
    P = people
    rom.util.CONNECTION = decoding_conn
    assert ids(await api.list(P.query.filter(name='odd').order_by('n').limit(0, 3))) == [1, 3, 5]
    assert P.query.filter(name='odd').order_by('n')._search()[:2] == ['1', '3']
    assert await api.first(P.query.filter(name='odd').order_by('n').select('n', 'plain')) == \
        {'n': 10, 'plain': 'p1'}
    assert await api.all(P.query.filter(name='odd').select('n', decode=False).limit(0, 1)) == \
        [{'n': '10'}]
    assert await api.count(P.query.filter(name='odd')) == 6
    assert isinstance(await api.cached_result(P.query.filter(name='odd'), 5), str)
    assert ids(await api.list(P.query.limit(0, 2))) == [1, 2]
    assert await api.count(P.query) == 12
    assert (await api.first(P.query.filter(name='odd'))).id == 1


async def test_model_conn_attribute(api, decoding_conn, conn):
    class C(rom.Model):
        _conn = decoding_conn
        n = rom.Integer(index=True)
    await api.save(C(n=3))
    await api.save(C(n=4))
    assert conn.dbsize() > 0
    assert ids(await api.list(C.query.filter(n=(None, 3)))) == [1]
    assert await api.count(C.query.filter(n=(3, 4))) == 2


async def test_sub_indexes(api, conn):
    def kg(value):
        return {'': value['n'], 'n:%d' % value['n']: value['n'] * 2, 'red': None} \
            if value else None

    class S(rom.Model):
        kw = rom.Json(index=True, keygen=kg)
    for i in range(1, 5):
        await api.save(S(kw={'n': i}))
    assert ids(await api.list(S.query.filter(**{'kw:n:3': (0, 100)}))) == [3]
    with pytest.warns(UserWarning, match='sortable keygen'):  # a Json column: warned
        by_kw = S.query.filter(kw='red').order_by('-kw')
    assert ids(await api.list(by_kw)) == [4, 3, 2, 1]
    assert ids(await api.list(S.query.filter(kw=(2, 3)))) == [2, 3]


async def test_deleted_rows_and_stale_ids_everywhere(api, people, conn):
    P = people
    for i in (1, 2, 3):
        conn.delete(f'{P._namespace}:%d' % i)
    assert ids(await api.list(P.query.filter(n=(None, 50)))) == [4, 5]
    assert await api.count(P.query.filter(n=(None, 50))) == 5
    assert await api.select(P.query.filter(n=(None, 50)), 'n') == [{'n': 40}, {'n': 50}]
    assert ids(await api.list(P.query.filter(n=(None, 50)).limit(0, 1))) == [4]
    assert await api.first(P.query.filter(n=(None, 50))) is None


def test_unfiltered_first_loads_one_row(people, conn, roundtrips):
    P = people
    with roundtrips(conn) as rt:
        assert P.query.first().id == 1
    assert rt.count == 2 and rt.commands.count('HGETALL') == 1     # counter, one row
    for i in (1, 2, 3):
        conn.delete(f'{P._namespace}:%d' % i)
    assert P.query.first().id == 4
    assert P.query.limit(2, 1).first().id == 6
    assert ids(P.query.limit(1, 4)) == [5, 6, 7, 8]
