"""Column classes: constructor rules, conversions, storage, loading, descriptors.

Spec: model-and-columns.md §3 (and §2.2 for stored encodings).
"""
from __future__ import annotations

import json
import math
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation as DecimalInvalidOperation

import pytest

import rom
from rom import columns as C
from rom import util
from rom.exceptions import (ColumnError, InvalidColumnValue, InvalidOperation, MissingColumn,
                            ORMError)


async def reload(api, entity):
    """Forget everything cached and load the entity's row again."""
    rom.session.rollback()
    return await api.get(type(entity), getattr(entity, entity._pkey))


def kg(val):
    return [str(val)] if val is not None else None


def kg2(attr, data):
    return [str(data.get(attr))]


# --- constructor checks (§3.2) ---------------------------------------------------------

ALL_PLAIN = [C.Integer, C.Boolean, C.Float, C.Decimal, C.DateTime, C.SaferDateTime, C.Date,
             C.Time, C.String, C.Text, C.Json]


@pytest.mark.parametrize('cls', ALL_PLAIN)
def test_check1_keygen_without_any_flag(cls):
    with pytest.raises(ColumnError) as info:
        cls(keygen=kg)
    assert cls.__name__ in str(info.value)
    with pytest.raises(ColumnError):
        cls(keygen2=kg2)


def test_check1_precedes_check2():
    # Column has no _allowed (check 2) but check 1 fires first: both are ColumnError, the
    # message of check 1 talks about the keygen and names the column type.
    with pytest.raises(ColumnError) as info:
        C.Column(keygen=kg)
    assert 'keygen' in str(info.value).lower()


def test_check2_column_without_allowed():
    with pytest.raises(ColumnError) as info:
        C.Column()
    assert 'Column' in str(info.value)

    class NoAllowed(C.Column):
        pass

    with pytest.raises(ColumnError) as info:
        NoAllowed()
    assert 'NoAllowed' in str(info.value)


@pytest.mark.parametrize('cls', [C.Float, C.Decimal, C.DateTime, C.SaferDateTime, C.Date,
                                 C.Time, C.Json])
def test_check3_unique_refused_for_non_string_non_integer(cls):
    with pytest.raises(ColumnError):
        cls(unique=True)
    with pytest.raises(ColumnError):
        cls(unique=True, index=True)


def test_check3_unique_refused_for_references():
    with pytest.raises(ColumnError):
        C.OneToOne('Whatever', 'no action', unique=True)


def test_check3_precedes_check4():
    with pytest.raises(ColumnError) as info:
        C.Float(unique=True, keygen=kg, keygen2=kg2)
    assert 'unique' in str(info.value).lower()


def test_check4_keygen_and_keygen2():
    with pytest.raises(ColumnError) as info:
        C.Text(index=True, keygen=kg, keygen2=kg2)
    assert 'keygen2' in str(info.value)


def test_check5_keygen2_used_unchanged_and_stops_checks():
    col = C.Text(index=True, keygen2=kg2)
    assert col._keygen is kg2
    col = C.Json(index=True, keygen2=kg2)
    assert col._keygen is kg2
    col = C.String(prefix=True, keygen2=kg2)
    assert col._keygen is kg2


def test_check6_non_numeric_non_string_index_needs_keygen():
    with pytest.raises(ColumnError):
        C.Json(index=True)

    class Custom(C.Column):
        _allowed = (set,)

    with pytest.raises(ColumnError):
        Custom(index=True)
    assert Custom(index=True, keygen=kg)._keygen.__name__ == 'kg'


def test_check6_bool_allowed_gets_boolean_keygen():
    col = C.Boolean(index=True)
    assert col._keygen.__name__ == '_boolean_keygen'

    class BoolOrSet(C.Column):
        _allowed = (bool, set)

    assert BoolOrSet(index=True)._keygen.__name__ == '_boolean_keygen'


@pytest.mark.parametrize('kwargs', [dict(index=True), dict(prefix=True), dict(suffix=True),
                                    dict(unique=True, index=True)])
@pytest.mark.parametrize('cls', [C.String, C.Text])
def test_check7_indexed_string_needs_keygen(cls, kwargs):
    with pytest.raises(ColumnError) as info:
        cls(**kwargs)
    message = str(info.value)
    for name in ['FULL_TEXT', 'SIMPLE', 'SIMPLE_CI', 'IDENTITY', 'IDENTITY_CI',
                 'CASE_INSENSITIVE']:
        assert name in message


MATRIX_OK = [
    # (cls, kwargs, keygen name or None)
    (C.Integer, {}, None),
    (C.Integer, dict(index=True), '_numeric_keygen'),
    (C.Integer, dict(unique=True), None),
    (C.Integer, dict(prefix=True), 'FULL_TEXT'),
    (C.Integer, dict(suffix=True), 'FULL_TEXT'),
    (C.Integer, dict(unique=True, index=True), '_numeric_keygen'),
    (C.Boolean, {}, None),
    (C.Boolean, dict(index=True), '_boolean_keygen'),
    (C.Boolean, dict(unique=True), None),
    (C.Boolean, dict(prefix=True), 'FULL_TEXT'),
    (C.Boolean, dict(suffix=True), 'FULL_TEXT'),
    (C.Boolean, dict(unique=True, index=True), '_boolean_keygen'),
    (C.String, {}, None),
    (C.String, dict(unique=True), None),
    (C.Text, {}, None),
    (C.Text, dict(unique=True), None),
    (C.Json, {}, None),
    (C.Json, dict(prefix=True), 'FULL_TEXT'),
    (C.Json, dict(suffix=True), 'FULL_TEXT'),
] + [(cls, kw, name) for cls in [C.Float, C.Decimal, C.DateTime, C.SaferDateTime, C.Date,
                                 C.Time]
     for kw, name in [({}, None), (dict(index=True), '_numeric_keygen'),
                      (dict(prefix=True), 'FULL_TEXT'), (dict(suffix=True), 'FULL_TEXT')]]


@pytest.mark.parametrize('cls,kwargs,name', MATRIX_OK)
def test_verified_matrix_accepted(cls, kwargs, name):
    col = cls(**kwargs)
    if name is None:
        assert col._keygen is None
    else:
        assert col._keygen.__name__ == name
    for flag in ['index', 'prefix', 'suffix', 'unique']:
        assert getattr(col, '_' + flag) == bool(kwargs.get(flag)), flag


@pytest.mark.parametrize('cls', ALL_PLAIN)
def test_any_type_accepts_explicit_keygens(cls):
    assert cls(index=True, keygen=kg)._keygen.__name__ == 'kg'
    assert cls(index=True, keygen2=kg2)._keygen is kg2
    assert cls(prefix=True, keygen=kg)._keygen.__name__ == 'kg'
    assert cls(suffix=True, keygen=kg)._keygen.__name__ == 'kg'


def test_unique_only_column_keeps_explicit_keygen():
    col = C.Text(unique=True, keygen=util.IDENTITY_CI)
    assert col._keygen.__name__ == 'IDENTITY_CI'
    assert col._keygen('t', {'t': 'MiXed'}) == ['mixed']


def test_old_style_keygen_is_wrapped_with_name():
    col = C.Text(index=True, keygen=util.FULL_TEXT)
    assert col._keygen is not util.FULL_TEXT
    assert col._keygen.__name__ == 'FULL_TEXT'
    assert col._keygen('t', {'t': 'Hello, World!'}) == ['hello', 'world']
    assert col._keygen('t', {}) is None  # applied to None when the value is missing
    seen = []

    def spy(value):
        seen.append(value)
        return None

    C.Text(index=True, keygen=spy)._keygen('t', {'other': 1})
    assert seen == [None]


def test_column_instance_attributes():
    col = C.Integer(required=True, default=3, unique=True, index=True, prefix=True,
                    suffix=True)
    assert col._required is True and col._default == 3
    assert col._unique and col._index and col._prefix and col._suffix
    assert col._allowed is int
    assert C.Float._allowed == (float, int)
    assert C.Text._allowed is str and C.String._allowed is bytes
    assert C.Json._allowed == (dict, list, tuple)
    plain = C.Text()
    assert plain._default is C.NULL
    assert plain._model is None


# --- descriptor semantics (§3.2.1) and C1 ----------------------------------------------

def test_class_access_returns_the_column(conn):
    class CA(rom.Model):
        x = rom.Integer(index=True)
        other = rom.ManyToOne('CA', 'no action')
        kids = rom.OneToMany('CA', 'other')

    assert CA.x is CA._columns['x']
    assert isinstance(CA.x, rom.Integer)
    assert CA.id is CA._columns['id']
    assert CA.other.get_related_model() is CA
    assert CA.kids.get_related_model() is CA


async def test_get_set_delete_semantics(api, conn):
    class DS(rom.Model):
        a = rom.Integer()
        r = rom.Integer(required=True)

    e = DS(a=1, r=2)
    await api.save(e)
    assert not e._modified
    assert e.a == 1
    e.a = None  # behaves as del
    assert e.a is None
    assert e._modified
    e.a = None  # already absent: no error
    with pytest.raises(AttributeError) as info:
        del e.a
    assert 'DS' in str(info.value) and 'a' in str(info.value)
    with pytest.raises(InvalidOperation) as info:
        del e.r
    assert 'DS' in str(info.value) and 'r' in str(info.value)
    with pytest.raises(InvalidOperation):
        e.r = None
    assert e.r == 2
    await api.save(e)
    assert conn.hget('DS:1', 'a') is None
    assert (await reload(api, e)).a is None
    with pytest.raises(AttributeError):
        e.not_a_column


async def test_set_marks_modified_and_adds_to_session(api, conn):
    class SM(rom.Model):
        a = rom.Integer()

    e = SM(a=1)
    await api.save(e)
    await api.commit()
    assert e._pk not in rom.session.known
    e.a = 2
    assert e._modified
    assert rom.session.known[e._pk] is e
    await api.commit()
    del e.a
    assert rom.session.known[e._pk] is e


def test_assignment_conversion_error_single_message_arg(conn):
    class AC(rom.Model):
        i = rom.Integer()

    e = AC()
    with pytest.raises(InvalidColumnValue) as info:
        e.i = 'abc'
    assert len(info.value.args) == 1
    assert 'abc' in str(info.value)


def test_construction_conversion_error_keeps_original_args(conn):
    class CC(rom.Model):
        i = rom.Integer()
        t = rom.Text()

    with pytest.raises(InvalidColumnValue) as info:
        CC(i='abc')
    try:
        int('abc')
    except ValueError as err:
        assert info.value.args == err.args
    with pytest.raises(InvalidColumnValue) as info:
        CC(t=b'\xff\xfe')
    assert len(info.value.args) == 5  # UnicodeDecodeError's args
    assert info.value.args[0] == 'utf-8'


def test_validation_error_names_model_column_and_types(conn):
    class VE(rom.Model):
        s = rom.String()

    e = VE()
    with pytest.raises(InvalidColumnValue) as info:
        e.s = 'text'
    message = str(info.value)
    assert 'VE' in message and 's' in message and 'str' in message and 'bytes' in message


async def test_defaults_applied_validated_and_shared(api, conn):
    shared = {'k': 1}

    class DF(rom.Model):
        a = rom.Integer(default=7)
        b = rom.Integer(default=lambda: 9)
        j = rom.Json(default=shared)
        r = rom.Integer(required=True, default=3)

    e = DF()
    assert (e.a, e.b, e.r) == (7, 9, 3)
    assert e.j is shared
    assert DF().j is shared
    with pytest.raises(InvalidColumnValue):
        class BadDefault(rom.Model):
            s = rom.String(default='x')
        BadDefault()
    await api.save(e)
    assert conn.hget(f'{DF._namespace}:1', 'a') == b'7'


async def test_defaults_apply_when_loading_row_without_field(api, conn):
    class DL(rom.Model):
        a = rom.Integer()

    e = DL(a=None)
    await api.save(e)

    class_ = DL
    class_._columns['a']._default = 42
    try:
        assert (await reload(api, e)).a == 42
    finally:
        class_._columns['a']._default = C.NULL


def test_required_missing(conn):
    class RQ(rom.Model):
        r = rom.Text(required=True)

    with pytest.raises(MissingColumn) as info:
        RQ()
    assert 'RQ' in str(info.value) and 'r' in str(info.value)
    with pytest.raises(MissingColumn):
        RQ(r=None)


# --- per-type conversions / storage / load (§3.3) --------------------------------------

@pytest.fixture
def AllTypes(conn):
    class AT(rom.Model):
        i = rom.Integer()
        b = rom.Boolean()
        f = rom.Float()
        d = rom.Decimal()
        dt = rom.DateTime()
        dd = rom.Date()
        t = rom.Time()
        s = rom.String()
        tx = rom.Text()
        j = rom.Json()

    return AT


ASSIGN_CASES = [
    ('i', '7', 7), ('i', 4.0, 4), ('i', Decimal('3.000'), 3), ('i', -0.0, 0), ('i', b'12', 12),
    ('i', 2.0 ** 80, 2 ** 80),
    ('b', 'False', True), ('b', '', False), ('b', [], False), ('b', 1, True),
    ('f', '2.5', 2.5), ('f', b'3.5', 3.5), ('f', Decimal('1.25'), 1.25),
    ('d', 3, Decimal(3)), ('d', '2.643', Decimal('2.643')),
    ('d', 0.1, Decimal('0.1000000000000000055511151231257827021181583404541015625')),
    ('dt', 86400, datetime(1970, 1, 2)), ('dt', '86400.5', datetime(1970, 1, 2, 0, 0, 0, 500000)),
    ('dd', 86400, date(1970, 1, 2)), ('dd', '1577923200.0', date(2020, 1, 2)),
    ('t', 3723.5, time(1, 2, 3, 500000)), ('t', '45296.789012', time(12, 34, 56, 789012)),
    ('tx', b'h\xc3\xa9', 'h\xe9'),
    ('j', '{"a": 1}', {'a': 1}), ('j', b'[1, 2]', [1, 2]),
]


@pytest.mark.parametrize('attr,value,expected', ASSIGN_CASES)
def test_assign_converts(AllTypes, attr, value, expected):
    e = AllTypes()
    setattr(e, attr, value)
    got = getattr(e, attr)
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize('attr,value', [
    ('i', '4.5'), ('i', 'x'), ('i', [1]), ('f', 'x'),
    # issue 12: no silent truncation, no OverflowError/ValueError for infinities and NaN
    ('i', 4.7), ('i', 1.9), ('i', Decimal('3.9')), ('i', float('inf')), ('i', float('-inf')),
    ('i', float('nan')), ('i', Decimal('Infinity')), ('i', Decimal('NaN')), ('i', Decimal('sNaN')),
    ('f', 10 ** 400), ('d', Decimal('sNaN')), ('tx', 'a\ud800b'), ('tx', '\udfff'),
    ('dt', 10.0 ** 20), ('dt', float('inf')), ('dt', float('nan')), ('dd', -(10 ** 30)), ('d',
     b'1'), ('dt', date(2020, 1, 1)),
    ('dt', 'nope'), ('dd', 'nope'), ('t', 86400), ('t', 'x'), ('tx', b'\xff'), ('tx', 5),
    ('j', '5'), ('j', '"s"'), ('j', '{bad'), ('j', 5), ('s', 'text'), ('s', 5),
])
def test_assign_rejects(AllTypes, attr, value):
    e = AllTypes()
    with pytest.raises(InvalidColumnValue):
        setattr(e, attr, value)
    assert getattr(e, attr) is None


def test_decimal_non_numeric_string_raises_decimal_invalid_operation(AllTypes):
    e = AllTypes()
    with pytest.raises(DecimalInvalidOperation):
        e.d = 'abc'


async def test_json_null_clears(api, AllTypes):
    e = AllTypes(j={'a': 1})
    e.j = 'null'
    assert e.j is None
    await api.save(e)
    assert not AllTypes._connection.hexists(e._pk, 'j')


STORE_CASES = [
    ('i', 5, '5'), ('i', -5, '-5'), ('i', 2 ** 128, str(2 ** 128)),
    ('b', True, '1'), ('b', False, ''),
    ('f', 4.5, '4.5'), ('f', 3, '3'), ('f', 0.1, '0.1'), ('f', float('inf'), 'inf'),
    ('f', float('nan'), 'nan'),
    ('d', Decimal('2.643'), '2.643'), ('d', Decimal('1E+3'), '1E+3'), ('d', Decimal('1.50'),
     '1.50'),
    ('dt', datetime(2020, 1, 2, 3, 4, 5, 678901), '1577934245.678901'),
    ('dt', datetime(1970, 1, 2), '86400.0'),
    ('dd', date(2020, 1, 2), '1577923200.0'),
    ('dd', datetime(2020, 1, 2, 3, 4, 5, 678901), '1577934245.678901'),
    ('t', time(12, 34, 56, 789012), '45296.789012'), ('t', time(0, 0, 0, 3), '3e-06'),
    ('s', b'ab\xe9\x00c', 'ab\xe9\x00c'),
    ('tx', 'h\xe9llo \u20ac/x', 'h\xe9llo \u20ac/x'),
    ('j', {'b': [1, 2], 'a': [3, '/']}, '{"a": [3, "/"], "b": [1, 2]}'),
    ('j', (1, 'x'), '[1, "x"]'), ('j', {1: '\xe9'}, '{"1": "\\u00e9"}'),
]


@pytest.mark.parametrize('attr,value,stored', STORE_CASES)
def test_storage_string(AllTypes, attr, value, stored):
    assert AllTypes._columns[attr]._to_redis(value) == stored


@pytest.mark.parametrize('attr,value,stored', STORE_CASES)
async def test_storage_and_load_roundtrip_through_redis(api, AllTypes, conn, attr, value, stored):
    e = AllTypes(**{attr: value})
    await api.save(e)
    raw = conn.hget(e._pk, attr)
    assert raw == stored.encode('utf-8')
    loaded = await reload(api, e)
    got = getattr(loaded, attr)
    if attr == 'f' and isinstance(value, float) and math.isnan(value):
        assert math.isnan(got)
    elif attr == 'j':
        assert got == json.loads(stored)
    elif attr == 'dd':
        assert got == (value.date() if isinstance(value, datetime) else value)
        assert type(got) is date
    elif attr == 'f':
        assert got == float(value) and type(got) is float
    else:
        assert got == value
        assert type(got) is type(value)


@pytest.mark.parametrize('raw,expected', [(b'', False), (b'0', True), (b'1', True),
                                          (b'False', True)])
async def test_boolean_load(api, AllTypes, conn, raw, expected):
    conn.hset(f'{AllTypes._namespace}:9', mapping={'id': b'9', 'b': raw})
    assert (await api.get(AllTypes, 9)).b is expected


async def test_time_load_rounds_to_nearest_microsecond_T1(api, AllTypes, conn):
    conn.hset(f'{AllTypes._namespace}:9', mapping={'id': b'9', 't': b'75094.996445'})
    assert (await api.get(AllTypes, 9)).t == time(20, 51, 34, 996445)


async def test_unknown_fields_ignored_on_load(api, AllTypes, conn):
    conn.hset(f'{AllTypes._namespace}:9', mapping={'id': b'9', 'gone': b'x', '-index-data-': b'[{},{},{},{},{}]'})
    e = await api.get(AllTypes, 9)
    assert e.id == 9
    assert not hasattr(e, 'gone')


async def test_unloadable_value_raises_invalid_column_value(api, AllTypes, conn):
    conn.hset(f'{AllTypes._namespace}:9', mapping={'id': b'9', 'i': b'True'})
    with pytest.raises(InvalidColumnValue):
        await api.get(AllTypes, 9)


# N1 -------------------------------------------------------------------------------------

async def test_bool_in_integer_and_float_stored_as_1_0_N1(api, conn):
    class N1(rom.Model):
        i = rom.Integer()
        f = rom.Float()

    e = N1(i=True, f=False)
    await api.save(e)
    assert conn.hget(f'{N1._namespace}:1', 'i') == b'1'
    assert conn.hget(f'{N1._namespace}:1', 'f') == b'0'
    loaded = await reload(api, e)
    assert loaded.i == 1 and loaded.f == 0.0
    e2 = N1(i=False, f=True)
    await api.save(e2)
    assert conn.hget(f'{N1._namespace}:2', 'i') == b'0'
    assert conn.hget(f'{N1._namespace}:2', 'f') == b'1'


# SaferDateTime / S1 -------------------------------------------------------------------

async def test_saferdatetime(api, conn):
    class SD(rom.Model):
        s = rom.SaferDateTime()
        sd = rom.SaferDateTime(default=datetime(2000, 1, 1))
        sr = rom.SaferDateTime(required=True, default=lambda: datetime(2001, 1, 1))

    e = SD()  # S1: omitted means "not provided"
    assert e.s is None
    assert e.sd == datetime(2000, 1, 1)
    assert e.sr == datetime(2001, 1, 1)
    e2 = SD(s=None)
    assert e2.s is None
    for bad in [86400, '86400', (), [], {}]:
        with pytest.raises(InvalidColumnValue):
            SD(s=bad)
    for bad in [86400, '86400', (), [], {}, None, date(2000, 1, 1)]:
        with pytest.raises(InvalidColumnValue) as info:
            e.s = bad
        assert 'datetime' in str(info.value)
    e.s = datetime(2020, 1, 2, 3, 4, 5, 678901)
    await api.save(e)
    assert conn.hget(e._pk, 's') == b'1577934245.678901'
    assert conn.hget(e._pk, 'sd') == b'946684800.0'
    del e.s
    assert e.s is None
    e.s = datetime(1970, 1, 2)
    await api.save(e)
    loaded = await reload(api, e)
    assert loaded.s == datetime(1970, 1, 2)


def test_saferdatetime_required_without_default_is_missing(conn):
    class SR(rom.Model):
        s = rom.SaferDateTime(required=True)

    with pytest.raises(MissingColumn):
        SR()


async def test_saferdatetime_bad_stored_value(api, conn):
    class SB(rom.Model):
        s = rom.SaferDateTime()

    conn.hset(f'{SB._namespace}:1', mapping={'id': b'1', 's': b'not a number'})
    with pytest.raises(InvalidColumnValue):
        await api.get(SB, 1)


# String / C2 --------------------------------------------------------------------------

async def test_string_column(api, conn):
    class ST(rom.Model):
        s = rom.String()

    e = ST(s='D\xe9cor')
    assert e.s == b'D\xe9cor'
    with pytest.raises(UnicodeEncodeError):
        ST(s='\u20ac')
    with pytest.raises(AttributeError):
        ST(s=5)
    with pytest.raises(InvalidColumnValue) as info:
        e.s = 'str'
    assert 'str' in str(info.value) and 'bytes' in str(info.value)
    with pytest.raises(InvalidColumnValue):
        e.s = bytearray(b'x')
    all_bytes = bytes(range(256))
    e.s = all_bytes
    await api.save(e)
    raw = conn.hget(e._pk, 's')
    assert raw == all_bytes.decode('latin-1').encode('utf-8')
    assert (await reload(api, e)).s == all_bytes


async def test_string_unchanged_not_counted_C2(api, conn):
    class C2(rom.Model):
        s = rom.String()
        n = rom.Integer()

    e = C2(s=b'\xe9x', n=1)
    assert await api.save(e) == 3
    assert await api.save(e) == 0
    loaded = await reload(api, e)
    assert await api.save(loaded) == 0
    # another writer changes n only; our save of an unchanged String must not race on s
    conn.hset(e._pk, 's', 'other')
    loaded.n = 2
    assert await api.save(loaded) == 1
    assert conn.hget(e._pk, 's') == b'other'


# Text ---------------------------------------------------------------------------------

async def test_text_column(api, conn):
    class TX(rom.Model):
        t = rom.Text()

    e = TX(t=b'caf\xc3\xa9')
    assert e.t == 'caf\xe9'
    e.t = '\U0001f600 \x00'
    await api.save(e)
    assert conn.hget(e._pk, 't') == '\U0001f600 \x00'.encode('utf-8')
    assert (await reload(api, e)).t == '\U0001f600 \x00'


# Json ---------------------------------------------------------------------------------

async def test_json_column(api, conn):
    class JS(rom.Model):
        j = rom.Json()

    e = JS(j=(1, 2))
    assert e.j == (1, 2)  # kept as given in memory
    await api.save(e)
    assert conn.hget(e._pk, 'j') == b'[1, 2]'
    assert (await reload(api, e)).j == [1, 2]
    with pytest.raises(InvalidColumnValue):
        JS(j='12')
    with pytest.raises(InvalidColumnValue):
        JS(j='{oops')
    assert JS(j='null').j is None
    bad = JS(j=[1])
    bad.j = {'x': object()}
    with pytest.raises(TypeError):
        await api.save(bad)
    with pytest.raises(TypeError):
        JS(j={'x': object()})


# PrimaryKey ---------------------------------------------------------------------------

async def test_primary_key(api, conn):
    class PK(rom.Model):
        x = rom.Integer()

    assert isinstance(PK._columns['id'], rom.PrimaryKey)
    e = PK()
    assert e.id == 1 and e._modified and e._new
    assert conn.get(f'{PK._namespace}:id:') == b'1'
    with pytest.raises(InvalidColumnValue):
        PK(id=5)
    assert conn.get(f'{PK._namespace}:id:') == b'1'  # counter untouched
    with pytest.raises(InvalidOperation):
        e.id = 3
    zero = PK(id=0)
    assert zero.id == 0
    assert conn.get(f'{PK._namespace}:id:') == b'1'
    await api.save(e)
    assert conn.hget(f'{PK._namespace}:1', 'id') == b'1'
    conn.hset(f'{PK._namespace}:7', 'x', '1')  # a row without pk
    with pytest.raises(InvalidColumnValue):
        await api.get(PK, 7)
    with pytest.raises(TypeError):
        rom.PrimaryKey(unique=True)


async def test_primary_key_index(api, conn):
    class PKI(rom.Model):
        pk = rom.PrimaryKey(index=True)

    assert PKI._pkey == 'pk'
    e = PKI()
    await api.save(e)
    assert conn.get(f'{PKI._namespace}:pk:') == b'1'
    assert conn.zrange(f'{PKI._namespace}:pk:idx', 0, -1, withscores=True) == [(b'1', 1.0)]
    assert 'pk' in PKI._index


# IndexOnly ----------------------------------------------------------------------------

async def test_index_only(api, conn):
    def upper(v):
        return [v.upper()] if v else None

    class IO(rom.Model):
        name = rom.Text()
        io = rom.IndexOnly('name', upper)
        io2 = rom.IndexOnly(keygen2=lambda attr, data: ['k:' + str(data.get('name'))],
                            unique=True)

    col = IO._columns['io']
    assert col._keygen.__name__ == '<lambda>'
    assert col._index
    assert 'io' in IO._index and 'io2' not in IO._index and 'io2' in IO._unique
    e = IO(name='Hi')
    assert e.io is None and e.io2 is None
    with pytest.raises(InvalidColumnValue) as info:
        e.io = 'x'
    assert 'IO' in str(info.value) and 'io' in str(info.value)
    with pytest.raises(InvalidColumnValue):
        IO(io='x')
    await api.save(e)
    assert conn.smembers(f'{IO._namespace}:io:HI:idx') == {b'1'}
    assert conn.hgetall(f'{IO._namespace}:io2:uidx') == {b'k:Hi': b'1'}
    assert conn.hexists(f'{IO._namespace}:1', 'io') is False and conn.hexists(f'{IO._namespace}:1', 'io2') is False
    assert col._to_redis('x') is None and col._from_redis('x') is None
    with pytest.raises(ValueError):
        rom.IndexOnly()
    with pytest.raises(ValueError):
        rom.IndexOnly('name')
    with pytest.raises(TypeError):
        rom.IndexOnly('name', upper, required=True)
    with pytest.raises(TypeError):
        rom.IndexOnly('name', upper, default=1)


async def test_index_only_keygen_runs_with_none_values(api, conn):
    seen = []

    def k2(attr, data):
        seen.append(dict(data))
        return ['always']

    class IN(rom.Model):
        a = rom.Integer()
        io = rom.IndexOnly(keygen2=k2, index=True)

    await api.save(IN())
    assert seen and seen[0]['a'] is None
    assert conn.smembers(f'{IN._namespace}:io:always:idx') == {b'1'}


# ManyToOne / OneToOne / OneToMany -----------------------------------------------------

def test_many_to_one_constructor_checks():
    with pytest.raises(ColumnError):
        rom.ManyToOne('X')
    with pytest.raises(ColumnError) as info:
        rom.ManyToOne('X', 'explode')
    assert 'explode' in str(info.value)
    with pytest.raises(ColumnError):
        rom.ManyToOne('X', 'set null', required=True)
    with pytest.raises(ColumnError):
        rom.ManyToOne('X', 'set default', required=True)
    with pytest.raises(ColumnError):
        rom.ManyToOne('X', 'set default', required=True, default=None)
    col = rom.ManyToOne('X', 'set default', required=True, default=1)
    assert col._index and col._keygen is not None
    assert col._ftable == 'X' and col._on_delete == 'set default'
    col = rom.ManyToOne('X', on_delete='cascade')
    assert col._on_delete == 'cascade'
    assert col.get_related_model() is None
    with pytest.raises(ColumnError):
        rom.OneToOne('X', 'no action', unique=True)
    assert isinstance(rom.OneToOne('X', 'no action'), rom.ManyToOne)


async def test_many_to_one_values_storage_and_loading(api, conn):
    class Parent(rom.Model):
        name = rom.Text()

    class Child(rom.Model):
        p = rom.ManyToOne('Parent', 'no action')
        o = rom.OneToOne('Parent', 'no action')

    assert Child._columns['p'].get_related_model() is Parent
    parent = Parent(name='p')
    assert parent._new
    child = Child(p=parent)
    if not api.is_async:  # in a coroutine construction does no I/O: the save below does it
        # constructing the referencing entity saves the new referenced entity first
        assert not parent._new
        assert conn.hget(f'{Parent._namespace}:1', 'name') == b'p'
    await api.save(child)
    assert not parent._new and conn.hget(f'{Parent._namespace}:1', 'name') == b'p'
    assert conn.hget(f'{Child._namespace}:1', 'p') == b'1'
    assert conn.zrange(f'{Child._namespace}:p:idx', 0, -1, withscores=True) == [(b'1', 1.0)]
    assert child.p is parent
    child.o = 1
    assert child.o is parent
    child.o = '1'
    assert child.o is parent
    child.o = 99  # missing id: silently None
    assert await api.load(child, 'o') is None
    with pytest.raises(InvalidColumnValue):
        child.o = 'junk'
    with pytest.raises(InvalidColumnValue):
        child.o = Child()
    await api.save(child)
    rom.session.rollback()
    loaded = await api.get(Child, 1)
    assert isinstance(await api.load(loaded, 'p'), Parent) and loaded.p.name == 'p'
    assert loaded.p is await api.get(Parent, 1)
    conn.delete(f'{Parent._namespace}:1')
    rom.session.rollback()
    assert await api.load(await api.get(Child, 1), 'p') is None  # dangling: loads as None


async def test_many_to_one_new_referenced_saved_at_save(api, conn):
    class P2(rom.Model):
        name = rom.Text()

    class C2r(rom.Model):
        p = rom.ManyToOne('P2', 'no action')

    child = C2r()
    parent = P2(name='x')
    child.p = parent
    assert parent._new
    await api.save(child)
    assert not parent._new
    assert conn.hget(f'{C2r._namespace}:1', 'p') == b'1'
    assert conn.exists(f'{P2._namespace}:1')


def test_many_to_one_missing_target_model(conn):
    class Orphan(rom.Model):
        p = rom.ManyToOne('NoSuchModel', 'no action')

    with pytest.raises(ORMError) as info:
        Orphan()
    assert 'NoSuchModel' in str(info.value) and 'Orphan' in str(info.value)


def test_many_to_one_required(conn):
    class RP(rom.Model):
        pass

    class RC(rom.Model):
        p = rom.ManyToOne('RP', 'no action', required=True)

    with pytest.raises(MissingColumn):
        RC()


async def test_cyclic_references_load_R1(api, conn):
    class Cyc(rom.Model):
        m = rom.ManyToOne('Cyc', 'no action')

    a = Cyc()
    b = Cyc(m=a)
    a.m = b
    await api.save(a)
    await api.save(b)
    assert conn.hget(f'{Cyc._namespace}:1', 'm') == b'2'
    assert conn.hget(f'{Cyc._namespace}:2', 'm') == b'1'
    rom.session.rollback()
    a2 = await api.get(Cyc, 1)
    assert a2 is not a
    b2 = await api.load(a2, 'm')
    assert b2.id == 2
    assert await api.load(b2, 'm') is a2
    assert await api.get(Cyc, 2) is b2
    # self reference
    c = Cyc()
    await api.save(c)
    c.m = c
    await api.save(c)
    rom.session.rollback()
    c2 = await api.get(Cyc, 3)
    assert await api.load(c2, 'm') is c2


async def test_one_to_many(api, conn):
    class Owner(rom.Model):
        items = rom.OneToMany('Item')
        named = rom.OneToMany('Item', 'owner')

    class Item(rom.Model):
        owner = rom.ManyToOne('Owner', 'no action')

    with pytest.raises(ColumnError):
        rom.OneToMany('Item', 'cascade')
    with pytest.raises(ColumnError):
        rom.OneToMany('Item', C.NO_ACTION_DEFAULT)
    o = Owner()
    await api.save(o)
    assert await api.load(o, 'items') == []
    i1, i2 = Item(owner=o), Item(owner=o)
    await api.save(i1)
    await api.save(i2)
    assert await api.load(o, 'items') == [i1, i2]
    assert await api.load(o, 'named') == [i1, i2]
    with pytest.raises(InvalidOperation):
        o.items = []
    with pytest.raises(InvalidOperation):
        del o.items
    assert 'items' in Owner._columns
    assert 'items' not in o.to_dict()
    o2 = Owner(items=[1, 2])  # kwarg value ignored
    assert await api.load(o2, 'items') == []
    assert Owner._columns['items'].get_related_model() is Item


def test_one_to_many_missing_target(conn):
    class Lonely(rom.Model):
        kids = rom.OneToMany('Nobody')

    with pytest.raises(ORMError):
        Lonely()


async def test_one_to_many_no_reverse_column(api, conn):
    class Target(rom.Model):
        x = rom.Integer()

    class HasMany(rom.Model):
        t = rom.OneToMany('Target')

    h = HasMany()
    await api.save(h)
    with pytest.raises(ORMError) as info:
        await api.load(h, 't')
    assert 'HasMany' in str(info.value) and 'Target' in str(info.value)


# ForeignModel -------------------------------------------------------------------------

class Ext:
    store: dict = {}

    def __init__(self, id):
        self.id = id
        Ext.store[id] = self

    @classmethod
    def get(cls, id):
        return cls.store.get(id)


async def test_foreign_model(api, conn):
    class FM(rom.Model):
        e = rom.ForeignModel(Ext)

    x5 = Ext(5)
    e = FM(e=x5)
    assert e.e is x5
    e.e = '5'
    assert e.e is x5
    e.e = b'5'
    assert e.e is x5
    e.e = 5
    assert e.e is x5
    await api.save(e)
    assert conn.hget(f'{FM._namespace}:1', 'e') == b'5'
    assert conn.zrange(f'{FM._namespace}:e:idx', 0, -1, withscores=True) == [(b'1', 5.0)]
    assert (await reload(api, e)).e is x5
    e.e = 99  # fmodel.get(99) is None
    assert e.e is None
    assert not hasattr(FM._columns['e'], 'get_related_model')


# UnsafeColumn -------------------------------------------------------------------------

async def test_unsafe_column(api, conn):
    class UC(rom.Model):
        q = rom.UnsafeColumn()
        x = rom.Integer()

    assert 'q' in UC._columns
    e = UC(x=1, q='ignored')
    assert 'q' not in e._data and 'q' not in e.to_dict()
    await api.save(e)
    assert not conn.hexists(f'{UC._namespace}:1', 'q')
    w = e.q
    assert w is e.q
    assert w.key == f'{UC._namespace}:1:q' and w.entity is e
    assert w.rpush('a', 'b') == 2
    assert e.q.llen() == 2
    assert conn.lrange(f'{UC._namespace}:1:q', 0, -1) == [b'a', b'b']
    assert e.q.keys(f'{UC._namespace}:1:*', skip_key=True) == [f'{UC._namespace}:1:q'.encode()]
    with pytest.raises(AttributeError):
        e.q = 5
    del e.q
    assert not conn.exists(f'{UC._namespace}:1:q')
    e.q.set('v')
    assert conn.get(f'{UC._namespace}:1:q') == b'v'
    await api.delete(e)
    assert not conn.exists(f'{UC._namespace}:1:q') and not conn.exists(f'{UC._namespace}:1')
    with pytest.raises(ValueError):
        e.q
    assert w.key == f'{UC._namespace}:1:q'


@pytest.mark.parametrize('name', ['idx', 'uidx', 'pre', 'suf', 'geo'])
def test_unsafe_column_reserved_names(conn, name):
    with pytest.raises(AssertionError):
        type(rom.Model)('UR' + name, (rom.Model,), {name: rom.UnsafeColumn(),
                                                    '__module__': __name__})


# custom column types (extension API) ---------------------------------------------------

async def test_custom_column_hooks(api, conn):
    class Upper(rom.Column):
        _allowed = str

        def _to_redis(self, value):
            return value.upper()

        def _from_redis(self, value):
            return value.lower() if isinstance(value, str) else value.decode('utf-8').lower()

    class CU(rom.Model):
        u = Upper(unique=True)

    e = CU(u='abc')
    await api.save(e)
    assert conn.hget(f'{CU._namespace}:1', 'u') == b'ABC'
    assert conn.hgetall(f'{CU._namespace}:u:uidx') == {b'ABC': b'1'}
    assert (await reload(api, e)).u == 'ABC'  # loaded str is already of the allowed type
