"""Values in, errors out (issues 12 and 18): hostile values are stored faithfully or refused
with a typed error naming the column before anything is written; errors say what went wrong.
"""
from __future__ import annotations

import decimal
from datetime import date, datetime, time, timedelta, timezone

import pytest

import rom
from rom import util
from rom.exceptions import (ColumnError, DataRaceError, EntityDeletedError, InvalidColumnValue,
                            QueryError, UniqueKeyViolation)

from drivers import without_id_counters

from test_reliability_bad_input import dump


# --- datetime.max and DateTime precision (issue 12) -----------------------------------------
async def test_datetime_max_is_stored_loaded_and_queried(api, conn):
    class Never(rom.Model):
        until = rom.DateTime(index=True)
        plain = rom.DateTime()

    e = Never(until=datetime.max, plain=datetime.max)
    await api.save(e)
    assert conn.hget('Never:1', 'until') == b'253402300800.0'  # rom 1.1.2's bytes
    await api.save(Never(until=datetime(2020, 1, 1)))
    util.session.rollback()
    loaded = await api.get(Never, 1)
    assert loaded.until == datetime.max and loaded.plain == datetime.max
    assert await api.save(loaded) == 0
    later = Never.query.filter(until=(datetime(2030, 1, 1), None))
    assert [x.id for x in await api.list(later)] == [1]
    assert [x.id for x in await api.list(Never.query.filter(until=datetime.max))] == [1]
    assert [x.id for x in await api.list(Never.query.order_by('-until'))] == [1, 2]
    assert await api.count(Never.query.filter(until=(None, datetime.max))) == 2


async def test_datetime_precision_is_the_documented_one(api, conn):
    class When(rom.Model):
        at = rom.DateTime()

    # exact to the microsecond while abs(timestamp) < 2**33 s (1697-10-17 .. 2242-03-16)
    exact = [datetime(2242, 3, 16, 12, 56, 31, 999999), datetime(1697, 10, 18, 0, 0, 0, 1),
             datetime(1970, 1, 1, 0, 0, 0, 1), datetime(2100, 6, 30, 23, 59, 59, 999999)]
    late = [datetime(2243, 1, 1, 0, 0, 0, 1), datetime(5000, 5, 5, 5, 5, 5, 555555),
            datetime(9999, 12, 31, 23, 59, 59, 999990), datetime(1, 1, 1, 0, 0, 0, 1)]
    for value in exact + late:
        await api.save(When(at=value))
    util.session.rollback()
    loaded = [(await api.get(When, i + 1)).at for i in range(len(exact) + len(late))]
    assert loaded[:len(exact)] == exact
    for value, got in zip(late, loaded[len(exact):]):
        assert abs(got - value) <= timedelta(microseconds=16)
    assert loaded[len(exact)] != late[0]  # 2243: the microsecond is lost


# --- IDENTITY_STRING on bytes that are not UTF-8 and on text (issue 12) ----------------------
async def test_identity_string_on_any_bytes_and_latin1_text(api, conn):
    class IS(rom.Model):
        s = rom.String(index=True, keygen=rom.IDENTITY_STRING)
        t = rom.Text(index=True, keygen=rom.IDENTITY_STRING)
        u = rom.String(unique=True, keygen=rom.IDENTITY_STRING_CI)

    a = IS(s=b'\xff\xfe\x00', t='caf\xe9', u=b'\xc0X')
    await api.save(a)
    b = IS(s=b'ascii', t='plain', u=b'y')
    await api.save(b)
    # an ASCII/UTF-8 token keeps rom 1.1.2's key; the others are latin-1 text (models §2.1)
    assert conn.smembers('IS:s:ascii:idx') == {b'2'}
    assert conn.smembers(b'IS:s:\xc3\xbf\xc3\xbe\x00:idx') == {b'1'}
    assert conn.smembers('IS:t:caf\xe9:idx') == {b'1'}
    assert await api.all(IS.query.filter(s=b'\xff\xfe\x00')) == [a]
    assert await api.all(IS.query.filter(t='caf\xe9')) == [a]
    assert await api.get_by(IS, u=b'\xc0x') is a  # a unique keygen: look up its output
    util.session.rollback()
    assert (await api.get(IS, 1)).s == b'\xff\xfe\x00' and (await api.get(IS, 1)).t == 'caf\xe9'


async def test_identity_string_of_text_beyond_latin1_is_refused_before_writing(api, conn):
    class IT(rom.Model):
        t = rom.Text(index=True, keygen=rom.IDENTITY_STRING)

    await api.save(IT(t='ok'))
    bad = IT(t='\u20ac uro')
    before = dump(conn)
    with pytest.raises(InvalidColumnValue, match=r'IT\.t.*IDENTITY_STRING'):
        await api.save(bad)
    util.session.rollback()
    assert without_id_counters(api, dump(conn)) == without_id_counters(api, before)


# --- lone surrogates (issue 12) --------------------------------------------------------------
async def test_lone_surrogate_is_refused_naming_the_column_before_any_write(api, conn):
    class Doc(rom.Model):
        title = rom.Text(index=True, keygen=rom.FULL_TEXT)
        body = rom.Text()

    good = Doc(title='first', body='ok')
    with pytest.raises(InvalidColumnValue, match=r'Doc\.body') as info:
        Doc(title='second', body='bad \ud800 text')
    assert 'surrogate' in str(info.value)
    other = Doc(title='third')
    with pytest.raises(InvalidColumnValue, match=r'Doc\.title'):
        other.title = '\udfff'
    assert other.title == 'third'
    await api.commit()  # the entities before (and after) the refused value are written
    assert {d.title for d in await api.list(Doc.query.filter(title=['first', 'third']))} == \
        {'first', 'third'}
    assert good.body == 'ok'


async def test_surrogate_from_a_custom_keygen_fails_that_entity_only(api, conn):
    def odd(value):
        return [value + '\udc00'] if value and value.startswith('bad') else [value]

    class Tag(rom.Model):
        name = rom.Text(index=True, keygen=odd, unique=True)

    Tag(name='first')
    Tag(name='bad one')
    Tag(name='last')
    with pytest.raises(InvalidColumnValue, match=r'Tag\.name'):
        await api.commit()
    # as documented for commits: the entities before the failing one are written
    assert conn.hget('Tag:1', 'name') == b'first'
    assert not conn.exists('Tag:2') and not conn.exists('Tag:3')


def test_lone_surrogate_in_a_query_value_raises_query_error(conn):
    class Doc(rom.Model):
        title = rom.Text(index=True, prefix=True, suffix=True, keygen=rom.FULL_TEXT)

    for build in (lambda q: q.filter(title='a\ud800'), lambda q: q.filter(title=['ok', '\udfff']),
                  lambda q: q.startswith(title='\ud800'), lambda q: q.endswith(title='\ud800'),
                  lambda q: q.like(title='*\ud800')):
        with pytest.raises(QueryError, match=r'Doc\.title'):
            build(Doc.query)


# --- untyped errors become typed ones (issue 12) ---------------------------------------------
@pytest.fixture
def Num(conn):
    class Ref(rom.Model):
        pass

    class Num(rom.Model):
        n = rom.Integer(index=True)
        f = rom.Float(index=True)
        when = rom.DateTime(index=True)
        ref = rom.ManyToOne('Ref', on_delete='no action')
        word = rom.Text(index=True, keygen=rom.FULL_TEXT)
        label = rom.Text()
    for i in range(1, 6):
        Ref().save()
        Num(n=i, f=i / 2, when=datetime(2020, 1, i), ref=Ref.get(i), word='w%d' % i).save()
    return Num


@pytest.mark.parametrize('value', [float('nan'), decimal.Decimal('NaN'), decimal.Decimal('sNaN'),
                                   (0, float('nan')), (float('nan'), None), ('1', 'x'),
                                   (None, 10 ** 400), ('1e400', None), (True, 5)])
def test_filter_with_an_unusable_number_raises_query_error(Num, value):
    with pytest.raises(QueryError, match=r'Num\.n'):
        Num.query.filter(n=value)


@pytest.mark.parametrize('value', [float('nan'), (1, float('nan')), ('x', 5), (None, 'nan'),
                                   decimal.Decimal('NaN')])
async def test_get_by_with_an_unusable_number_raises_query_error(api, Num, value):
    with pytest.raises(QueryError, match=r'Num\.n'):
        await api.get_by(Num, n=value)


async def test_get_by_numeric_string_on_a_numeric_index(api, Num):
    assert [e.n for e in await api.get_by(Num, n='3')] == [3]
    assert [e.n for e in await api.get_by(Num, n=('2', '3'))] == [2, 3]


async def test_get_by_converts_endpoints_and_refuses_unusable_lookups(api, conn, Num):
    class Uniq(rom.Model):
        code = rom.Text(unique=True)
        blob = rom.String(unique=True)

    await api.save(Uniq(code='5', blob=b'b'))
    assert [e.n for e in await api.get_by(Num, when=(util.dt2ts(datetime(2020, 1, 4)), None))] == \
        [4, 5]
    assert await api.get_by(Num, word=datetime(2020, 1, 1)) == []  # a token index has no scores
    assert (await api.get_by(Uniq, code=5)).code == \
        '5'  # a number is looked up as its text (compat)
    for bad in ({}, True, None, 10 ** 5000, [object()]):
        with pytest.raises(QueryError, match=r'Uniq\.code'):
            await api.get_by(Uniq, code=bad)
    with pytest.raises(QueryError, match=r'Uniq\.blob'):
        await api.get_by(Uniq, blob=5)


async def test_limit_outside_redis_ranks_raises_query_error(api, Num):
    for offset in (2 ** 63, -2 ** 63, 10 ** 30):
        with pytest.raises(QueryError, match='offset'):
            Num.query.filter(n=(0, None)).limit(offset, 1)
    for bad in ('5', 1.5, None.__class__):
        with pytest.raises(QueryError):
            Num.query.limit(bad, 1)
    huge = 2 ** 63 - 1
    for query in (Num.query, Num.query.filter(n=(0, None)), Num.query.filter(word='w1'),
                  Num.query.order_by('n'), Num.query.filter(word='w1').order_by('-n')):
        assert await api.all(query.limit(huge, 1)) == []
        assert await api.first(query.limit(huge, 1)) is None
        assert await api.all(query.limit(huge - 1, huge)) == []
        assert await api.count(query.limit(3, huge)) >= 0
        assert await api.first(query.select('n').limit(huge, 1)) is None
        assert await api.first(query.limit(10, 1)) is None  # past the end
    assert [e.n for e in await api.list(Num.query.order_by('n').limit(3, 2 ** 64))] == [4, 5]


async def test_integer_index_above_2_53_matches_neighbours_as_documented(api, conn):
    class Big(rom.Model):
        n = rom.Integer(index=True)

    await api.save(Big(n=2 ** 53))
    await api.save(Big(n=2 ** 53 + 1))
    util.session.rollback()
    assert (await api.get(Big, 2)).n == 2 ** 53 + 1  # the row is exact ...
    # ... the score is a double: both rows share the score 2**53 (docs/guarantees.rst)
    assert {e.n for e in await api.list(Big.query.filter(n=2 ** 53 + 1))} == {2 ** 53, 2 ** 53 + 1}


# --- filter(n='3') on a numeric index (issue 18) ---------------------------------------------
async def test_numeric_string_on_a_numeric_index_means_equality(api, Num):
    assert [e.n for e in await api.list(Num.query.filter(n='3'))] == [3]
    assert [e.n for e in await api.list(Num.query.filter(n=b'4'))] == [4]
    assert [e.n for e in await api.list(Num.query.filter(n=' 3'.strip(), f='1.5'))] == [3]
    assert [e.n for e in await api.list(Num.query.filter(f='2.5e0'))] == [5]
    assert [e.n for e in await api.list(Num.query.filter(ref='2'))] == [2]
    on_day_4 = Num.query.filter(when=str(util.dt2ts(datetime(2020, 1, 4))))
    assert [e.n for e in await api.list(on_day_4)] == [4]
    assert [e.n for e in await api.list(Num.query.filter(n=('2', '3')))] == [2, 3]
    assert await api.count(Num.query.filter(n='3')) == 1


@pytest.mark.parametrize('value', ['three', '', '3 ', 'nan', '1_0', '0x10', b'\xff'])
def test_non_numeric_string_on_a_numeric_index_raises_query_error(Num, value):
    with pytest.raises(QueryError, match=r'Num\.n'):
        Num.query.filter(n=value)


async def test_text_index_and_booleans_keep_token_semantics(api, Num):
    assert [e.n for e in await api.list(Num.query.filter(word='W2'))] == [2]
    assert await api.all(Num.query.filter(n=True)) == []  # compat: a bool is the token 'True'


async def test_range_high_to_low_is_empty_as_documented(api, Num):
    assert await api.all(Num.query.filter(n=(4, 2))) == []
    assert await api.count(Num.query.filter(n=(4, 2))) == 0


# --- order_by, keygen names (issue 18) -------------------------------------------------------
def test_order_by_without_index_raises_query_error(Num):
    with pytest.raises(QueryError, match=r'Num\.label has no index'):
        Num.query.order_by('label')
    with pytest.raises(QueryError, match=r'Num\.label has no index'):
        Num.query.filter(n=(0, None)).order_by('-label')


@pytest.mark.parametrize('make', [
    lambda: rom.Text(index=True, keygen='FULL_TEXT'),
    lambda: rom.Text(unique=True, keygen='IDENTITY'),
    lambda: rom.Json(index=True, keygen2='mine'),
    lambda: rom.IndexOnly('a', 'SIMPLE'),
    lambda: rom.Integer(index=True, keygen=3),
])
def test_keygen_given_by_name_is_rejected_when_the_class_is_created(conn, make):
    with pytest.raises(ColumnError, match='must be a callable'):
        make()


def test_keygen_name_error_suggests_the_function(conn):
    with pytest.raises(ColumnError, match=r'keygen=rom\.FULL_TEXT'):
        class Bad(rom.Model):
            t = rom.Text(index=True, keygen='FULL_TEXT')


# --- messages (issue 18) ---------------------------------------------------------------------
async def test_str_of_errors_with_three_args_is_the_message(api, conn):
    class U(rom.Model):
        email = rom.Text(unique=True)

    await api.save(U(email='a@b.c'))
    with pytest.raises(UniqueKeyViolation) as info:
        await api.save(U(email='a@b.c'))
    message, ns, id_text = info.value.args
    assert (ns, id_text) == ('U', '2')
    assert str(info.value) == message and "'a@b.c'" in message and 'U:email' in message
    assert str(UniqueKeyViolation('m', 'U', '1')) == 'm'
    assert str(DataRaceError('m', 'U', '1')) == 'm'
    assert str(DataRaceError('lock held')) == 'lock held'
    assert str(EntityDeletedError('m', 'U', '1')) == 'm'


async def test_entity_deleted_error_says_who_deleted(api, conn):
    class D(rom.Model):
        n = rom.Integer()

    own = D(n=1)
    await api.save(own)
    await api.delete(own)
    own.n = 2
    with pytest.raises(EntityDeletedError) as info:
        await api.save(own)
    assert 'own delete()' in str(info.value) and 'concurrent' not in str(info.value)
    assert info.value.args[1:] == ('D', '1')
    other = D(n=1)
    await api.save(other)
    conn.delete(other._pk)  # someone else
    other.n = 3
    with pytest.raises(EntityDeletedError, match='concurrent writer'):
        await api.save(other)
    await api.save(own, force=True)
    assert conn.hget('D:1', 'n') == b'2'


def test_conversion_errors_at_construction_name_the_column_and_keep_args(conn):
    class Person(rom.Model):
        age = rom.Integer()
        born = rom.Date()
        bio = rom.Text()

    with pytest.raises(InvalidColumnValue) as info:
        Person(age='forty')
    assert info.value.args == ("invalid literal for int() with base 10: 'forty'",)
    assert str(info.value).startswith("Person.age: cannot convert 'forty' to int")
    with pytest.raises(InvalidColumnValue) as info:
        Person(born='2020-01-31')
    assert str(info.value).startswith("Person.born: cannot convert '2020-01-31' to date")
    with pytest.raises(InvalidColumnValue) as info:
        Person(bio=b'\xff')
    assert len(info.value.args) == 5  # UnicodeDecodeError's args (compat)
    assert str(info.value).startswith('Person.bio:')
    person = Person()
    with pytest.raises(InvalidColumnValue, match=r"'forty' to Person\.age"):
        person.age = 'forty'


def test_string_construction_errors_are_typed_and_keep_their_compat_type(conn):
    class Blob(rom.Model):
        data = rom.String()

    with pytest.raises(InvalidColumnValue) as info:
        Blob(data='\u0100')
    assert isinstance(info.value, UnicodeEncodeError)  # what rom 1.1.2 raised (spec §3.4.6)
    assert info.value.args[0] == 'latin-1' and str(info.value).startswith('Blob.data:')
    with pytest.raises(InvalidColumnValue) as info:
        Blob(data=5)
    assert isinstance(info.value, AttributeError) and str(info.value).startswith('Blob.data:')


async def test_numbers_for_dates_and_times_at_construction_convert_as_on_assignment(api, conn):
    # rom 1.1.2 raised TypeError (DateTime) / AttributeError (Time) here (spec §5.4)
    class Clock(rom.Model):
        at = rom.DateTime(index=True)
        day = rom.Date()
        t = rom.Time(index=True)

    e = Clock(at=86400, day=86400.0, t=3600)
    assert (e.at, e.day, e.t) == (datetime(1970, 1, 2), date(1970, 1, 2), time(1))
    await api.save(e)
    util.session.rollback()
    loaded = await api.get(Clock, e.id)
    assert (loaded.at, loaded.day, loaded.t) == (datetime(1970, 1, 2), date(1970, 1, 2), time(1))
    assert [c.id for c in await api.list(Clock.query.filter(t=time(1)))] == [e.id]


async def test_unique_text_given_as_bytes_at_construction_is_claimed(api, conn):
    # found by the hypothesis suite: the constructor recorded b'12' as the value the entity
    # was created with, and the save released '12' right after claiming it
    class Code(rom.Model):
        code = rom.Text(unique=True)

    e = Code(code=b'12')
    await api.save(e)
    assert conn.hget('Code:code:uidx', '12') == b'1'
    assert await api.get_by(Code, code='12') is e
    with pytest.raises(UniqueKeyViolation):
        await api.save(Code(code='12'))


def test_entity_repr(conn, roundtrips):
    class User(rom.Model):
        email = rom.Text(unique=True)
        bio = rom.Text()
        n = rom.Integer()

    class Deferred(rom.Model):
        _defer_ids = True
        name = rom.Text()

    u = User(email='a@b.c')
    assert repr(u) == "<User id=1 email='a@b.c'>"
    u.bio = 'x' * 100
    u.n = 3
    assert repr(u) == "<User id=1 email='a@b.c' bio='%s...>" % ('x' * 36,)
    pending = Deferred(name='n')
    with roundtrips(conn) as rt:
        assert repr(pending) == "<Deferred id=? name='n'>"
    assert rt.count == 0  # repr allocates no id


# --- bounded numbers (issue 12) --------------------------------------------------------------
async def test_integer_refuses_truncation_and_infinities_but_takes_whole_numbers(api, conn):
    class I(rom.Model):
        n = rom.Integer(index=True)

    for value in (1.9, -0.5, float('inf'), float('nan'), decimal.Decimal('Infinity'),
                  decimal.Decimal('2.5'), decimal.Decimal('sNaN')):
        with pytest.raises(InvalidColumnValue, match=r'I\.n'):
            I(n=value)
    e = I(n=4.0)
    e.n = decimal.Decimal('7.000')
    assert e.n == 7 and type(e.n) is int
    await api.save(e)
    assert conn.hget(e._pk, 'n') == b'7'


async def test_aware_values_in_a_date_column(api, conn):
    class Day(rom.Model):
        d = rom.Date(index=True)

    tokyo = timezone(timedelta(hours=9))
    e = Day(d=datetime(2020, 1, 1, 3, tzinfo=tokyo))  # 2019-12-31 18:00 UTC
    await api.save(e)
    util.session.rollback()
    assert (await api.get(Day, e.id)).d == date(2019, 12, 31)
