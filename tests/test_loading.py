"""Building entities from stored rows (rom/_loader.py): every way a row is read gives the
same entity, whatever the client, the number of ids, or the state of the row.

Spec: model-and-columns.md §3.4 (conversions when loading), §5.9 (get), §5.15 (loading never
validates; a stored value that fails conversion makes get() raise InvalidColumnValue).
"""
from __future__ import annotations

import datetime
import os
import random
from datetime import timezone

import pytest

import rom
from rom._helpers import ts2dt
from rom.exceptions import InvalidColumnValue


@pytest.fixture
def Row():
    class Author(rom.Model):
        name = rom.Text()
        books = rom.OneToMany('Row')

    class Row(rom.Model):
        text = rom.Text()
        n = rom.Integer(index=True)
        f = rom.Float()
        when = rom.DateTime()
        day = rom.Date()
        at = rom.Time()
        flag = rom.Boolean()
        raw = rom.String()
        amount = rom.Decimal()
        doc = rom.Json()
        author = rom.ManyToOne('Author', on_delete='no action')
        dflt = rom.Integer(default=7)
    return Row


def _values(entity):
    return {attr: getattr(entity, attr) for attr in type(entity)._columns
            if attr not in ('books', 'author')}


def _row(Row, n, author):
    return Row(text='t%d \u20ac' % n, n=n, f=n / 3.0,
               when=datetime.datetime(2021, 5, 6, 7, 8, 9, n),
               day=datetime.date(2020, 1, n + 1), at=datetime.time(1, 2, 3, n), flag=bool(n % 2),
               raw=b'\xff\x00%d' % n, amount=rom.columns.Decimal._allowed('1.%d' % n),
               doc={'k': [n, None, 'x']}, author=author)


def _make(Row, n):
    Author = rom.columns.MODELS['Author']
    return _row(Row, n, Author.get(1) or Author(name='ann'))


async def _make_async(api, Row, n):
    Author = rom.columns.MODELS['Author']
    author = await api.get(Author, 1)
    if author is None:
        author = Author(name='ann')
        if api.is_async:  # saved now, as building a Row referring to it does in blocking code
            await api.save(author)
    return _row(Row, n, author)


async def _all_ways(api, Row, ids):
    """The entities of ``ids`` read one by one and all at once, each from a fresh session."""
    rom.session.rollback()
    singles = [await api.get(Row, i) for i in ids]
    rom.session.rollback()
    many = await api.get(Row, list(ids))
    rom.session.rollback()
    return singles, many


async def test_single_and_many_reads_agree(api, Row, conn):
    made = [await _make_async(api, Row, n) for n in range(1, 6)]
    await api.commit()
    expected = [_values(e) for e in made]
    singles, many = await _all_ways(api, Row, [e.id for e in made])
    assert [_values(e) for e in singles] == expected
    assert [_values(e) for e in many] == expected
    for entity in singles + many:
        author = await api.load(entity, 'author')
        assert author.name == 'ann' and author is await api.load(many[0], 'author')
        assert not entity._new and not entity._modified and not entity._deleted
        # column order of the declaration (to_dict), references included
        assert list(entity._data) == [a for a in Row._columns if a != 'books' and
                                      a in entity._data]
    # the baseline for change detection is the stored text of every stored column
    stored = {k.decode(): v.decode() for k, v in conn.hgetall('Row:1').items()
              if k != b'-index-data-'}
    assert many[0]._last == stored


def test_many_reads_one_script_call(Row, conn, roundtrips):
    made = [_make(Row, n) for n in range(1, 4)]
    rom.session.commit()
    rom.session.rollback()
    with roundtrips(conn) as rt:
        got = Row.get([3, 99, 1, 2, 3])
    assert rt.count == 1 and len(rt.commands) == 1
    assert [e.id for e in got] == [3, 1, 2, 3]
    assert got[0] is not got[3]                       # duplicates: distinct objects (compat)
    assert rom.session.get('Row:3') is got[3]         # the last one built is tracked
    assert rom.session.get('Row:99') is None
    assert [e.n for e in got] == [3, 1, 2, 3] and made


async def test_missing_columns_take_defaults(api, Row, conn):
    conn.hset('Row:1', mapping={'id': '1', 'n': '5'})
    conn.hset('Row:2', mapping={'id': '2', 'n': '6', 'dflt': '8', 'doc': 'null'})
    singles, many = await _all_ways(api, Row, [1, 2])
    for got in (singles, many):
        assert got[0].n == 5 and got[0].dflt == 7 and got[0].text is None
        assert got[0].author is None and got[0].doc is None
        assert got[0]._last == {'id': '1', 'n': '5'}
        assert got[1].dflt == 8 and got[1].doc is None and got[1]._last['doc'] == 'null'


@pytest.mark.parametrize('field,value', [
    ('n', 'x'), ('f', 'abc'), ('when', 'later'), ('doc', '{"a": '), ('doc', '5'),
    ('amount', 'one'), ('text', b'\xff\xfe'), ('at', '90000'),
])
async def test_bad_stored_value_raises_on_every_path(api, Row, conn, field, value):
    await api.save(await _make_async(api, Row, 1))
    conn.hset('Row:1', field, value)
    conn.hset('Row:2', mapping={'id': '2', 'n': '2'})
    for read in (lambda: api.get(Row, 1), lambda: api.get(Row, [2, 1])):
        rom.session.rollback()
        with pytest.raises(InvalidColumnValue) as info:
            await read()
        assert 'Row.%s' % field in str(info.value)       # names the column


async def test_row_without_primary_key(api, Row, conn):
    conn.hset('Row:1', mapping={'n': '1'})           # exists, lacks its id field
    conn.hset('Row:2', mapping={'id': '2', 'n': '2'})
    for read in (lambda: api.get(Row, 1), lambda: api.get(Row, [2, 1])):
        rom.session.rollback()
        with pytest.raises(InvalidColumnValue) as info:
            await read()
        assert 'primary key' in str(info.value)


async def test_json_white_space_and_extra_data(api, Row, conn):
    conn.hset('Row:1', mapping={'id': '1', 'doc': ' {"a": 1} '})
    conn.hset('Row:2', mapping={'id': '2', 'doc': '[1] [2]'})
    conn.hset('Row:3', mapping={'id': '3', 'doc': '\ufeff[1]'})
    singles, many = await _all_ways(api, Row, [1])
    assert singles[0].doc == many[0].doc == {'a': 1}
    for i in (2, 3):
        for read in (lambda: api.get(Row, i), lambda: api.get(Row, [1, i])):
            rom.session.rollback()
            with pytest.raises(InvalidColumnValue):
                await read()


async def test_decoding_client_reads_agree(api, Row, conn, decoding_conn):
    made = [await _make_async(api, Row, n) for n in range(1, 4)]
    await api.commit()
    expected = [_values(e) for e in made]
    rom.util.CONNECTION = decoding_conn
    singles, many = await _all_ways(api, Row, [1, 2, 3])
    assert [_values(e) for e in singles] == expected == [_values(e) for e in many]
    assert (await api.load(many[1], 'author')).name == 'ann'


async def test_custom_init_sees_whole_rows(api, conn):
    seen = []

    class Custom(rom.Model):
        a = rom.Integer()

        def __init__(self, **kwargs):
            seen.append(sorted(kwargs))
            super().__init__(**kwargs)

    conn.hset('Custom:1', mapping={'id': '1', 'a': '1', 'extra': 'x'})
    conn.hset('Custom:2', mapping={'id': '2', 'a': '2'})
    assert (await api.get(Custom, 1)).a == 1
    rom.session.rollback()
    assert [e.a for e in await api.get(Custom, [1, 2])] == [1, 2]
    assert seen == [['_loading', 'a', 'extra', 'id'], ['_loading', 'a', 'extra', 'id'],
                    ['_loading', 'a', 'id']]


async def test_query_results_load_like_get(api, Row, conn):
    made = [await _make_async(api, Row, n) for n in range(1, 6)]
    await api.commit()
    rom.session.rollback()
    found = await api.all(Row.query.filter(n=(2, 4)).order_by('-n'))
    assert [_values(e) for e in found] == [_values(made[i]) for i in (3, 2, 1)]
    assert rom.session.known == {} and len(rom.session.wknown) == 0


def test_ts2dt_fast_form_matches_fromtimestamp():
    rng = random.Random(7)
    values = [rng.uniform(-62135596800.0, 253402300799.0) for _ in range(20000)]
    values += [rng.randint(-2 ** 31, 2 ** 32) + rng.randint(0, 4) * 0.25e-6 for _ in range(20000)]
    values += [0.0, -0.0, 0.5e-6, 1.5e-6, 2.5e-6, -0.5e-6, -62135596800.0, 253402300799.0]
    for value in values:
        assert ts2dt(value) == datetime.datetime.fromtimestamp(value, timezone.utc).replace(
            tzinfo=None), value
    # issue 12: what datetime.max stores (its float rounds up to year 10000) loads as max
    assert ts2dt(253402300800.0) == datetime.datetime.max
    for value in (253402300800.0001, -62135596801.0, float('nan'), float('inf')):
        with pytest.raises((ValueError, OverflowError, OSError)):
            ts2dt(value)


@pytest.fixture
def Keyed():
    class Keyed(rom.Model):
        email = rom.Text(unique=True)
        n = rom.Integer(index=True)
        when = rom.DateTime()
        dflt = rom.Integer(default=3)
    return Keyed


def _keyed_rows(conn):
    conn.hset('Keyed:1', mapping={'id': '1', 'email': 'a@x', 'n': '5', 'when': '0.5'})
    conn.hset('Keyed:2', mapping={'id': '2', 'email': 'b@x', 'n': '6', 'dflt': '9'})
    conn.hset('Keyed:email:uidx', mapping={'a@x': '1', 'b@x': '2', 'gone@x': '3'})
    conn.zadd('Keyed:n:idx', {'1': 5, '2': 6, '3': 7})


@pytest.mark.parametrize('client', ['bytes', 'decoding'])
async def test_get_by_paths_load_like_get(api, Keyed, conn, decoding_conn, client):
    _keyed_rows(conn)              # row 3 is indexed but gone
    if client == 'decoding':
        rom.util.CONNECTION = decoding_conn
    expected = [(1, 'a@x', 5, datetime.datetime(1970, 1, 1, 0, 0, 0, 500000), 3),
                (2, 'b@x', 6, None, 9)]

    def seen(entities):
        return [(e.id, e.email, e.n, e.when, e.dflt) for e in entities]
    rom.session.rollback()
    assert seen(await api.get(Keyed, [1, 2])) == expected
    rom.session.rollback()
    assert seen([await api.get_by(Keyed, email='a@x'), await api.get_by(Keyed, email='b@x')]) == \
        expected
    rom.session.rollback()
    assert seen(await api.get_by(Keyed, email=['b@x', 'gone@x', 'a@x'])) == expected[::-1]
    rom.session.rollback()
    assert seen(await api.get_by(Keyed, n=(None, None))) == expected
    assert seen(await api.get_by(Keyed, n=(5, 7), _limit=(1, 5))) == expected[1:]
    assert await api.get_by(Keyed, email='a@x') is await api.get(Keyed,
                            1)            # identity map
    rom.session.rollback()
    conn.hdel('Keyed:1', 'id')
    for read in (lambda: api.get_by(Keyed, email='a@x'), lambda: api.get_by(Keyed, n=5)):
        rom.session.rollback()
        with pytest.raises(InvalidColumnValue):
            await read()


async def test_get_by_paths_with_custom_init(api, conn):
    seen = []

    class Init(rom.Model):
        email = rom.Text(unique=True)
        n = rom.Integer(index=True)

        def __init__(self, **kwargs):
            seen.append(sorted(kwargs))
            super().__init__(**kwargs)

    conn.hset('Init:1', mapping={'id': '1', 'email': 'a@x', 'n': '4', 'extra': 'e'})
    conn.hset('Init:email:uidx', 'a@x', '1')
    conn.zadd('Init:n:idx', {'1': 4})
    assert (await api.get_by(Init, email='a@x')).n == 4
    rom.session.rollback()
    assert [e.email for e in await api.get_by(Init, n=4)] == ['a@x']
    assert seen == [['_loading', 'email', 'extra', 'id', 'n']] * 2


def test_reading_scripts_share_one_row_reader():
    from rom import _scripts
    with open(os.path.join(os.path.dirname(_scripts.__file__), 'scripts', '_read_row.lua'),
              'rb') as handle:
        shared = handle.read()
    for name in ('get_rows', 'get_unique', 'get_range'):
        source = _scripts.lua(name).script
        assert source.startswith(shared)               # included once, before the script
        assert source.count(b'local function read_row') == 1
        assert b'-- include: _read_row.lua' in source[len(shared):].split(b'\n', 1)[0]
