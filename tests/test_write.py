"""The atomic writer: exact bytes stored, index bookkeeping, unique indexes, race checks,
reference-written rows (legacy hash, G1), pre-write validation (G3, W1) and "nothing
half-written".

Spec: model-and-columns.md §2, §6, §7; session-util-and-storage.md §8.
"""
from __future__ import annotations

import json
import math
import warnings
from datetime import date, datetime, time
from decimal import Decimal

import pytest

import rom
from rom.testing import dump_database as dump
from rom.exceptions import (ColumnError, DataRaceError, EntityDeletedError, InvalidColumnValue,
                            ORMError, UniqueKeyViolation)

from drivers import without_id_counters


# --- helpers ---------------------------------------------------------------------------



def _cjson_str(text):
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == '\\':
            out.append('\\\\')
        elif ch == '/':
            out.append('\\/')
        elif ch in '\b\f\n\r\t':
            out.append({'\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t'}[ch])
        elif code < 0x20 or code == 0x7f:
            out.append('\\u%04x' % code)
        else:
            out.append(ch)
    out.append('"')
    return ''.join(out)


def cjson(value):
    """Encode like Redis' cjson: no spaces, empty list -> {}, '/' escaped, raw UTF-8."""
    if isinstance(value, (list, dict)):
        if not value:
            return '{}'
        assert isinstance(value, list)
        return '[' + ','.join(cjson(v) for v in value) + ']'
    assert isinstance(value, str)
    return _cjson_str(value)


def index_data(conn, key, field='-index-data-'):
    """Read ``-index-data-`` of ``key``: checks the cjson encoding byte for byte (in the stored
    order) and returns a canonical form (5 sorted lists, pairs as tuples)."""
    raw = conn.hget(key, field)
    assert raw is not None, 'no index data in %r' % (key,)
    parsed = json.loads(raw.decode('utf-8'))
    assert isinstance(parsed, list) and len(parsed) == 5
    slots = [[] if isinstance(s, dict) else s for s in parsed]
    assert cjson(slots).encode('utf-8') == raw
    canon = []
    for slot in slots:
        canon.append(sorted(tuple(x) if isinstance(x, list) else x for x in slot))
    return canon


def canon(*slots):
    return [sorted(tuple(x) if isinstance(x, list) else x for x in s) for s in slots]


EMPTY = b'[{},{},{},{},{}]'


# --- E1: every column type, byte for byte (§2.2) ---------------------------------------

async def test_E1_row_byte_for_byte(api, conn):
    class E1(rom.Model):
        i = rom.Integer()
        b = rom.Boolean()
        b2 = rom.Boolean()
        f = rom.Float()
        f2 = rom.Float()
        d = rom.Decimal()
        dt = rom.DateTime()
        sdt = rom.SaferDateTime()
        dd = rom.Date()
        t = rom.Time()
        s = rom.String()
        tx = rom.Text()
        j = rom.Json()
        j2 = rom.Json()

    e = E1(i=5, b=True, b2=False, f=4.5, f2=3, d=Decimal('2.643'),
           dt=datetime(2020, 1, 2, 3, 4, 5, 678901), sdt=datetime(1970, 1, 2),
           dd=date(2020, 1, 2), t=time(12, 34, 56, 789012), s=b'ab\xe9\x00c',
           tx='h\xe9llo \u20ac/x', j={'b': [1, 2], 'a': [3, '/']}, j2=[1, 'x'])
    assert await api.save(e) == 15
    assert dump(conn) == {
        b'E1:id:': (b'string', b'1'),
        b'E1:1': (b'hash', {
            b'-index-data-': EMPTY,
            b'b': b'1', b'b2': b'', b'd': b'2.643', b'dd': b'1577923200.0',
            b'dt': b'1577934245.678901', b'f': b'4.5', b'f2': b'3', b'i': b'5', b'id': b'1',
            b'j': b'{"a": [3, "/"], "b": [1, 2]}', b'j2': b'[1, "x"]',
            b's': b'ab\xc3\xa9\x00c', b'sdt': b'86400.0', b't': b'45296.789012',
            b'tx': b'h\xc3\xa9llo \xe2\x82\xac/x'}),
    }
    rom.session.rollback()
    x = await api.get(E1, 1)
    assert (x.i, x.b, x.b2, x.f, x.f2, x.d) == (5, True, False, 4.5, 3.0, Decimal('2.643'))
    assert x.dt == datetime(2020, 1, 2, 3, 4, 5, 678901) and x.sdt == datetime(1970, 1, 2)
    assert x.dd == date(2020, 1, 2) and x.t == time(12, 34, 56, 789012)
    assert x.s == b'ab\xe9\x00c' and x.tx == 'h\xe9llo \u20ac/x'
    assert x.j == {'a': [3, '/'], 'b': [1, 2]} and x.j2 == [1, 'x']
    assert await api.save(x) == 0
    assert conn.hgetall('E1:1') == dump(conn)[b'E1:1'][1]


async def test_model_without_indexes_gets_empty_index_data(api, conn):
    class NoIdx(rom.Model):
        a = rom.Integer()

    await api.save(NoIdx())
    assert conn.hgetall('NoIdx:1') == {b'id': b'1', b'-index-data-': EMPTY}


# --- §2.7 composite example --------------------------------------------------------------

async def test_composite_example_2_7(api, conn):
    class E18(rom.Model):
        t = rom.Text(index=True, keygen=rom.FULL_TEXT, unique=True)
        n = rom.Integer(index=True)
        p = rom.Text(prefix=True, keygen=rom.IDENTITY_CI)

    e = E18(t='a b', n=1, p='Hello')
    await api.save(e)
    d = dump(conn)
    assert set(d) == {b'E18:1', b'E18:id:', b'E18:n:idx', b'E18:p:pre', b'E18:t:a:idx',
                      b'E18:t:b:idx', b'E18:t:uidx'}
    row = d[b'E18:1'][1]
    assert {k: v for k, v in row.items() if k != b'-index-data-'} == {
        b'id': b'1', b'n': b'1', b'p': b'Hello', b't': b'a b'}
    assert index_data(conn, 'E18:1') == canon(['t:a', 't:b'], ['n'], [['p', 'hello']], [], [])
    assert d[b'E18:id:'] == (b'string', b'1')
    assert d[b'E18:n:idx'] == (b'zset', [(b'1', 1.0)])
    assert d[b'E18:p:pre'] == (b'zset', [(b'hello\x001', 2.7088032818150034e-306)])
    assert d[b'E18:t:a:idx'] == (b'set', {b'1'})
    assert d[b'E18:t:b:idx'] == (b'set', {b'1'})
    assert d[b'E18:t:uidx'] == (b'hash', {b'a b': b'1'})

    e.n = None
    e.t = 'c'
    e.p = 'World'
    await api.save(e)
    d = dump(conn)
    assert set(d) == {b'E18:1', b'E18:id:', b'E18:p:pre', b'E18:t:c:idx', b'E18:t:uidx'}
    assert b'n' not in d[b'E18:1'][1]
    assert d[b'E18:t:c:idx'] == (b'set', {b'1'})
    assert d[b'E18:t:uidx'] == (b'hash', {b'c': b'1'})
    assert [m for m, _ in d[b'E18:p:pre'][1]] == [b'world\x001']
    assert conn.hget('E18:1', '-index-data-') == b'[["t:c"],{},[["p","world"]],{},{}]'

    await api.delete(e)
    assert dump(conn) == {b'E18:id:': (b'string', b'1')}


async def test_index_data_example_2_3(api, conn):
    def md_keygen(attr, data):
        return {'foo': None, 'bar': None, 'v:n': 7, '': 7}

    class IX(rom.Model):
        ft = rom.Text(index=True, prefix=True, suffix=True, keygen=rom.FULL_TEXT)
        si = rom.Text(index=True, prefix=True, suffix=True, keygen=rom.SIMPLE)
        i = rom.Integer(index=True)
        f = rom.Float(index=True)
        d = rom.Decimal(index=True)
        b = rom.Boolean(index=True)
        md = rom.Text(index=True, keygen2=md_keygen)

    await api.save(IX(ft='Hello world a/b', si='Hello World', i=3, f=1.5, d=Decimal('2.643'),
                      b=False, md='x'))
    assert index_data(conn, 'IX:1') == canon(
        ['ft:world', 'md:foo', 'ft:hello', 'b:False', 'ft:a/b', 'md:bar'],
        ['md', 'd', 'si', 'f', 'i', 'md:v:n'],
        [['ft', 'a/b'], ['ft', 'hello'], ['ft', 'world'], ['si', 'Hello World']],
        [['ft', 'b/a'], ['ft', 'olleh'], ['ft', 'dlrow'], ['si', 'dlroW olleH']],
        [])
    raw = conn.hget('IX:1', '-index-data-')
    assert b'"ft:a\\/b"' in raw and raw.endswith(b',{}]')
    assert conn.smembers('IX:ft:a/b:idx') == {b'1'}
    assert conn.smembers('IX:b:False:idx') == {b'1'}
    assert conn.smembers('IX:md:foo:idx') == {b'1'}
    assert conn.zscore('IX:md:idx', '1') == 7.0
    assert conn.zscore('IX:md:v:n:idx', '1') == 7.0
    assert conn.zscore('IX:i:idx', '1') == 3.0
    assert conn.zscore('IX:f:idx', '1') == 1.5
    assert conn.zscore('IX:d:idx', '1') == 2.643
    assert conn.zscore('IX:si:idx', '1') == float(rom.util._prefix_score('Hello World'))
    assert conn.zrange('IX:si:pre', 0, -1, withscores=True) == [
        (b'Hello World\x001', float(rom.util._prefix_score('Hello World')))]
    assert conn.zrange('IX:si:suf', 0, -1, withscores=True) == [
        (b'dlroW olleH\x001', float(rom.util._prefix_score('dlroW olleH')))]
    assert sorted(conn.zrange('IX:ft:suf', 0, -1)) == [b'b/a\x001', b'dlrow\x001', b'olleh\x001']


# --- index entries per keygen result (§2.4) -----------------------------------------------

async def test_simple_ci_prefix_suffix_whole_value_lowercased(api, conn):
    class SC(rom.Model):
        n = rom.Text(prefix=True, suffix=True, keygen=rom.SIMPLE_CI)
        c = rom.Text(prefix=True, keygen=rom.CASE_INSENSITIVE)

    await api.save(SC(n='Blue Door Long Name', c='ABC'))
    assert conn.zrange('SC:n:pre', 0, -1, withscores=True) == [
        (b'blue door long name\x001', float(rom.util._prefix_score('blue door long name')))]
    assert conn.zrange('SC:n:suf', 0, -1) == [b'eman gnol rood eulb\x001']
    assert conn.zrange('SC:c:pre', 0, -1) == [b'abc\x001']
    assert not conn.exists('SC:n:idx')
    assert index_data(conn, 'SC:1') == canon(
        [], [], [['n', 'blue door long name'], ['c', 'abc']], [['n', 'eman gnol rood eulb']], [])


async def test_custom_dict_keygen_with_prefix_warns_and_makes_no_entries(api, conn):
    def custom(val):
        return {'': 1}

    class CW(rom.Model):
        a = rom.Text(index=True, prefix=True, suffix=True, keygen=custom)

    e = CW(a='x')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        await api.save(e)
    assert len([w for w in caught if issubclass(w.category, UserWarning)]) == 2
    assert not conn.exists('CW:a:pre') and not conn.exists('CW:a:suf')
    assert conn.zscore('CW:a:idx', '1') == 1.0


async def test_falsy_keygen_result_makes_no_entries(api, conn):
    class FK(rom.Model):
        a = rom.Text(index=True, keygen=lambda v: [])
        b = rom.Text(index=True, keygen=lambda v: {})
        c = rom.Text(index=True, keygen=lambda v: None)

    await api.save(FK(a='x', b='y', c='z'))
    assert sorted(conn.keys('*')) == [b'FK:1', b'FK:id:']
    assert conn.hget('FK:1', '-index-data-') == EMPTY


async def test_bad_keygen_result_is_column_error_nothing_written(api, conn):
    class BK(rom.Model):
        a = rom.Text(index=True, keygen=lambda v: 'a string')

    e = BK(a='x')
    before = dump(conn)
    with pytest.raises(ColumnError) as info:
        await api.save(e)
    assert 'a string' in str(info.value)
    assert without_id_counters(api, dump(conn)) == without_id_counters(api, before)
    assert e._new and e._modified


async def test_bytes_tokens(api, conn):
    class BT(rom.Model):
        s = rom.String(index=True, prefix=True, suffix=True, keygen=rom.IDENTITY_STRING)
        bad = rom.Text(index=True, keygen=lambda v: [b'\xff'])

    await api.save(BT(s=b'ab\xc3\xa9'))  # a bytes token must be valid UTF-8 for key names
    assert conn.hget('BT:1', 's') == b'ab\xc3\x83\xc2\xa9'
    assert conn.smembers(b'BT:s:ab\xc3\xa9:idx') == {b'1'}
    assert conn.zrange('BT:s:pre', 0, -1, withscores=True) == [
        (b'ab\xc3\xa9\x001', float(rom.util._prefix_score('ab\xe9')))]
    # suffix: bytes reversed bytewise, member transported as latin-1 text; score on raw bytes
    assert conn.zrange('BT:s:suf', 0, -1, withscores=True) == [
        (b'\xc2\xa9\xc3\x83ba\x001', float(rom.util._prefix_score(b'\xa9\xc3ba')))]
    data = json.loads(conn.hget('BT:1', '-index-data-'))
    assert data[0] == ['s:ab\xe9'] and data[2] == [['s', 'ab\xe9']]
    assert data[3] == [['s', '\xa9\xc3ba']]
    # issue 12: a token that is not UTF-8 is written as latin-1 text (models §2.1) instead of
    # raising UnicodeDecodeError; valid UTF-8 tokens keep rom 1.1.2's bytes (above)
    e = BT(bad='x')
    await api.save(e)
    assert conn.smembers(b'BT:bad:\xc3\xbf:idx') == {str(e.id).encode()}
    assert await api.all(BT.query.filter(bad=b'\xff')) == \
        [e]      # a bytes value decodes as latin-1
    assert await api.all(BT.query.filter(bad='\xff')) == [e]
    f = BT(s=b'\xfe\xff')
    await api.save(f)
    assert conn.smembers(b'BT:s:\xc3\xbe\xc3\xbf:idx') == {str(f.id).encode()}
    assert await api.all(BT.query.filter(s=b'\xfe\xff')) == [f]
    assert await api.all(BT.query.startswith(s='\xfe')) == [f]     # prefix entries: latin-1 text


async def test_reference_keygen_index(api, conn):
    class RT(rom.Model):
        pass

    class RK(rom.Model):
        r = rom.ManyToOne('RT', 'no action')

    for _ in range(3):
        await api.save(RT())
    await api.save(RK(r=await api.get(RT, 3)))
    assert conn.zrange('RK:r:idx', 0, -1, withscores=True) == [(b'1', 3.0)]
    assert index_data(conn, 'RK:1') == canon([], ['r'], [], [], [])


async def test_index_rewritten_on_every_save(api, conn):
    class RW(rom.Model):
        n = rom.Integer(index=True)

    e = RW(n=1)
    await api.save(e)
    conn.delete('RW:n:idx')
    assert await api.save(e) == 0
    assert conn.zscore('RW:n:idx', '1') == 1.0


# --- unique indexes (§2.5) ---------------------------------------------------------------

async def test_unique_single_encodings(api, conn):
    class US(rom.Model):
        t = rom.Text(unique=True)
        n = rom.Integer(unique=True)
        s = rom.String(unique=True)
        b = rom.Boolean(unique=True)

    await api.save(US(t='uniq/\xe9', n=42, s=b'\xe9x', b=False))
    assert conn.hgetall('US:t:uidx') == {b'uniq/\xc3\xa9': b'1'}
    assert conn.hgetall('US:n:uidx') == {b'42': b'1'}
    assert conn.hgetall('US:s:uidx') == {b'\xc3\xa9x': b'1'}
    assert not conn.exists('US:b:uidx')  # '' is falsy: no entry
    assert (await api.get_by(US, s=b'\xe9x')).id == 1
    assert (await api.get_by(US, t='uniq/\xe9')).id == 1


async def test_unique_composite_encodings(api, conn):
    class UC(rom.Model):
        b = rom.Text()
        a = rom.Integer()
        x = rom.Integer()
        y = rom.Integer()
        unique_together = [('b', 'a'), ('y', 'x')]

    await api.save(UC(a=0, b='\xe9/x', x=1, y=2))
    assert conn.hgetall('UC:a:b:uidx') == {b'\x00\x000\x00\x00\x00\xc3\x83\xc2\xa9/x': b'1'}
    assert conn.hgetall('UC:x:y:uidx') == {b'\x00\x001\x00\x00\x002': b'1'}
    dup = UC(a=0, b='\xe9/x')
    dup.id  # allocate the id first (rom 1.1.2 took it at construction)
    before = dump(conn)
    with pytest.raises(UniqueKeyViolation) as info:
        await api.save(dup)
    assert info.value.args[1:] == ('UC', '2')
    assert dump(conn) == before
    # a group with a None value is unconstrained
    await api.save(UC(a=0))
    await api.save(UC(a=0))
    assert conn.hlen('UC:a:b:uidx') == 1


async def test_unique_composite_change_releases_old(api, conn):
    class UR(rom.Model):
        a = rom.Integer()
        b = rom.Integer()
        unique_together = [('a', 'b')]

    e = UR(a=1, b=2)
    await api.save(e)
    e.b = 3
    await api.save(e)
    assert conn.hgetall('UR:a:b:uidx') == {b'\x00\x001\x00\x00\x003': b'1'}
    e.b = None
    await api.save(e)
    assert not conn.exists('UR:a:b:uidx')
    e.b = 4
    await api.save(e)
    await api.delete(e)
    assert not conn.exists('UR:a:b:uidx')


async def test_unique_change_releases_only_own_value(api, conn):
    class UO(rom.Model):
        u = rom.Text(unique=True)

    a = UO(u='x')
    await api.save(a)
    a.u = 'y'
    await api.save(a)
    assert conn.hgetall('UO:u:uidx') == {b'y': b'1'}
    # someone else (by hand) maps 'z' to 2; our release of 'y' leaves it alone
    conn.hset('UO:u:uidx', 'z', '2')
    a.u = 'w'
    await api.save(a)
    assert conn.hgetall('UO:u:uidx') == {b'w': b'1', b'z': b'2'}
    await api.delete(a)
    assert conn.hgetall('UO:u:uidx') == {b'z': b'2'}


async def test_unique_swap_needs_intermediate_save(api, conn):
    class SW(rom.Model):
        u = rom.Text(unique=True)

    a, b = SW(u='a'), SW(u='b')
    await api.save(a)
    await api.save(b)
    a.u, b.u = 'b', 'a'
    with pytest.raises(UniqueKeyViolation):
        await api.save(a)


async def test_unique_force_save_releases_old_values(api, conn):
    # issue 12: rom 1.1.2 (and the spec, §5.6) kept the old value claimed by the same id, so
    # after a delete it pointed at no row and blocked every new entity
    class UF(rom.Model):
        u = rom.Text(unique=True)
        a = rom.Text()
        b = rom.Text()
        unique_together = [('a', 'b')]

    e = UF(u='a', a='x', b='y')
    await api.save(e)
    e.u = 'b'
    e.b = 'z'
    await api.save(e, force=True)
    assert conn.hgetall('UF:u:uidx') == {b'b': b'1'}
    assert list(conn.hgetall('UF:a:b:uidx').values()) == [b'1']
    await api.delete(e)
    assert not conn.exists('UF:u:uidx') and not conn.exists('UF:a:b:uidx')


async def test_forced_save_of_a_stale_handle_releases_the_rows_current_unique_values(api, conn):
    class UF(rom.Model):
        u = rom.Text(unique=True)

    e = UF(u='a')
    await api.save(e)
    other = await api.get(UF, e.id)
    rom.session.forget(other)
    other2 = await api.get(UF, e.id)
    assert other2 is not e
    other2.u = 'b'
    await api.save(other2)  # the row now holds 'b'; e still believes it holds 'a'
    e.u = 'c'
    await api.save(e, force=True)
    assert conn.hgetall('UF:u:uidx') == {b'c': b'1'}
    assert await api.save(UF(u='b')) and await api.save(UF(u='a'))  # neither value is stranded


async def test_unique_keygen_no_index_U1(api, conn):
    class U1(rom.Model):
        ci = rom.Text(unique=True, keygen=rom.IDENTITY_CI)
        ft = rom.Text(unique=True, prefix=True, keygen=rom.FULL_TEXT)

    e = U1(ci='MiXed', ft='Hello World')
    await api.save(e)
    assert conn.hget('U1:1', 'ci') == b'MiXed'
    assert conn.hget('U1:1', 'ft') == b'Hello World'
    assert conn.hgetall('U1:ci:uidx') == {b'mixed': b'1'}
    assert conn.hgetall('U1:ft:uidx') == {b'hello': b'1'}
    assert e.ci == 'MiXed'
    e.ci = 'Other'
    await api.save(e)  # no DataRaceError
    assert conn.hgetall('U1:ci:uidx') == {b'other': b'1'}
    rom.session.rollback()
    loaded = await api.get(U1, 1)
    assert loaded.ci == 'Other'
    loaded.ft = 'goodbye'
    await api.save(loaded)
    assert conn.hgetall('U1:ft:uidx') == {b'goodbye': b'1'}
    dup = U1(ci='OTHER')
    with pytest.raises(UniqueKeyViolation):
        await api.save(dup)
    await api.delete(loaded)
    assert not conn.exists('U1:ci:uidx') and not conn.exists('U1:ft:uidx')


@pytest.mark.parametrize('index', [False, True])
async def test_string_unique_with_keygen_persists_B1(api, conn, index):
    class B1(rom.Model):
        s = rom.String(unique=True, index=index, keygen=rom.IDENTITY_STRING)

    value = b'ab\xc3\xa9'  # valid UTF-8, so the index token can be a key name
    stored = b'ab\xc3\x83\xc2\xa9'  # each byte transported as latin-1 text
    e = B1(s=value)
    await api.save(e)
    assert conn.hgetall('B1:s:uidx') == {stored: b'1'}
    await api.save(e)
    assert conn.hgetall('B1:s:uidx') == {stored: b'1'}
    assert await api.get_by(B1, s=value) is e
    rom.session.rollback()
    loaded = await api.get(B1, 1)
    await api.save(loaded, full=True)
    await api.save(loaded)
    assert conn.hgetall('B1:s:uidx') == {stored: b'1'}
    with pytest.raises(UniqueKeyViolation):
        await api.save(B1(s=value))
    loaded.s = b'new'
    await api.save(loaded)
    assert conn.hgetall('B1:s:uidx') == {b'new': b'1'}


async def test_unique_violation_args_and_nothing_written(api, conn):
    class UK(rom.Model):
        u = rom.Text(unique=True)
        n = rom.Integer(index=True)

    await api.save(UK(u='taken', n=1))
    e = UK(u='taken', n=2)
    assert e.id == 2  # allocate the id first (rom 1.1.2 took it at construction)
    before = dump(conn)
    with pytest.raises(UniqueKeyViolation) as info:
        await api.save(e)
    err = info.value
    assert len(err.args) == 3 and err.args[1:] == ('UK', '2')
    assert 'taken' in err.args[0] and 'UK:u:uidx' in err.args[0]
    assert dump(conn) == before
    assert e._new and e._modified
    # update path
    other = UK(u='free', n=3)
    await api.save(other)
    other.u = 'taken'
    other.n = 4
    before = dump(conn)
    with pytest.raises(UniqueKeyViolation) as info:
        await api.save(other)
    assert info.value.args[1:] == ('UK', '3')
    assert dump(conn) == before
    assert other._last['u'] == 'free' and other._modified


# --- race checks (§6.5, §7.3) -------------------------------------------------------------

@pytest.fixture
def Race(conn):
    class Race(rom.Model):
        a = rom.Integer(index=True)
        b = rom.Text()
        c = rom.Integer()

    Race(a=1, b='x').save()
    rom.session.rollback()
    return Race


async def two_handles(api, model):
    first = await api.get(model, 1)
    rom.session.rollback()
    second = await api.get(model, 1)
    assert first is not second
    return first, second


async def test_data_race(api, Race, conn):
    e1, e2 = await two_handles(api, Race)
    e1.a = 2
    e1.b = 'y'
    await api.save(e1)
    e2.b = 'z'
    e2.a = 3
    before = dump(conn)
    with pytest.raises(DataRaceError) as info:
        await api.save(e2)
    err = info.value
    assert type(err) is DataRaceError
    assert len(err.args) == 3 and err.args[1:] == ('Race', '1')
    assert 'Race:1' in err.args[0] and 'a' in err.args[0] and 'b' in err.args[0]
    assert dump(conn) == before
    assert e2._modified and e2._last['a'] == '1'


async def test_no_race_on_columns_that_were_none(api, Race, conn):
    e1, e2 = await two_handles(api, Race)
    e1.c = 5
    await api.save(e1)
    e2.c = 6
    assert await api.save(e2) == 1
    assert conn.hget('Race:1', 'c') == b'6'


async def test_no_race_on_unchanged_columns(api, Race, conn):
    e1, e2 = await two_handles(api, Race)
    e1.b = 'changed'
    await api.save(e1)
    e2.a = 5
    await api.save(e2)
    assert conn.hgetall('Race:1')[b'b'] == b'changed'
    assert conn.hget('Race:1', 'a') == b'5'


async def test_deleted_columns_not_race_checked(api, Race, conn):
    e1, e2 = await two_handles(api, Race)
    e1.b = 'other'
    await api.save(e1)
    del e2.b
    await api.save(e2)
    assert not conn.hexists('Race:1', 'b')


async def test_entity_deleted(api, Race, conn):
    e1, e2 = await two_handles(api, Race)
    await api.delete(e1)
    before = dump(conn)
    with pytest.raises(EntityDeletedError) as info:
        await api.save(e2)  # even without changes
    err = info.value
    assert not isinstance(err, DataRaceError)
    assert len(err.args) == 3 and err.args[1:] == ('Race', '1')
    assert 'Race:1' in err.args[0]
    assert dump(conn) == before
    e2.b = 'new'
    with pytest.raises(EntityDeletedError):
        await api.save(e2)
    assert dump(conn) == before
    assert await api.save(e2, force=True) == 4
    assert conn.hgetall('Race:1') == {b'id': b'1', b'a': b'1', b'b': b'new',
                                      b'-index-data-': b'[{},["a"],{},{},{}]'}


async def test_force_save_skips_race_check(api, Race, conn):
    e1, e2 = await two_handles(api, Race)
    e1.a = 7
    await api.save(e1)
    e2.a = 8
    await api.save(e2, force=True)
    assert conn.hget('Race:1', 'a') == b'8'
    assert conn.zrange('Race:a:idx', 0, -1, withscores=True) == [(b'1', 8.0)]


# --- W1: invalid scores rejected before anything is sent -----------------------------------

BAD_SCORES = [None, True, False, float('nan'), 'nan', 'NaN', Decimal('NaN'), '', 'abc', '1_0',
              ' 5', '5 ', '1e400', '1e-400', '2e-324', 10 ** 400, [1], {'a': 1}, b'nan']
GOOD_SCORES = [(5, 5.0), (1.5, 1.5), (Decimal('2.5'), 2.5), ('1e5', 1e5), ('inf', math.inf),
               ('-inf', -math.inf), ('Infinity', math.inf), ('-INF', -math.inf), (b'7', 7.0),
               ('-3.25', -3.25), (float('inf'), math.inf),
               ('1e-310', 1e-310), (5e-324, 5e-324)]  # subnormals: Redis accepts them


@pytest.mark.parametrize('score', BAD_SCORES, ids=repr)
@pytest.mark.parametrize('subkey', ['', 'sub'])
async def test_invalid_score_W1(api, conn, score, subkey):
    if subkey and (score is None or score == ''):
        return  # {key: None or ''} is a SET entry, not a score (spec §2.4)
    class W1(rom.Model):
        v = rom.Integer()
        other = rom.Integer(index=True)
        t = rom.Text(index=True, keygen2=lambda attr, data: {subkey: score, 'tok': None})
        u = rom.Text(unique=True)

    old = W1(v=1, other=1, u='old')
    old.t = None
    await api.save(old)
    e = W1(v=2, other=2, t='x', u='new')
    mid = dump(conn)
    with pytest.raises(InvalidColumnValue) as info:
        await api.save(e)
    assert 'W1' in str(info.value) and 't' in str(info.value)
    if subkey:
        assert 't:sub' in str(info.value)
    assert without_id_counters(api, dump(conn)) == without_id_counters(api, mid)
    assert e._new and e._modified
    # update path: nothing half-written either
    old.t = 'y'
    old.v = 9
    with pytest.raises(InvalidColumnValue):
        await api.save(old)
    assert without_id_counters(api, dump(conn)) == without_id_counters(api, mid)
    assert old._last['v'] == '1' and old._modified


@pytest.mark.parametrize('score,stored', GOOD_SCORES, ids=repr)
async def test_valid_scores(api, conn, score, stored):
    class WS(rom.Model):
        t = rom.Text(index=True, keygen2=lambda attr, data: {'': score})

    await api.save(WS(t='x'))
    assert conn.zscore('WS:t:idx', '1') == stored


async def test_nan_float_index_W1(api, conn):
    class NF(rom.Model):
        f = rom.Float(index=True)

    e = NF(f=float('nan'))
    before = dump(conn)
    with pytest.raises(InvalidColumnValue):
        await api.save(e)
    assert without_id_counters(api, dump(conn)) == without_id_counters(api, before)
    # NaN in a non-indexed Float is fine
    class NF2(rom.Model):
        f = rom.Float()

    await api.save(NF2(f=float('nan')))
    assert conn.hget('NF2:1', 'f') == b'nan'


# --- geo (§6.4, G1/G2/G3) ------------------------------------------------------------------

def lonlat(d):
    return {'lon': d.lon, 'lat': d.lat}  # attribute access: missing keys read as None


@pytest.fixture
def Geo(conn):
    class Geo(rom.Model):
        lon = rom.Float()
        lat = rom.Float()
        tags = rom.Text(index=True, keygen=rom.FULL_TEXT)
        geo_index = [rom.GeoIndex('basic', lonlat),
                     rom.GeoIndex('g2', lambda d: [lonlat(d)] if d.lon is not None else [])]

    return Geo


def geo_members(conn, key):
    return [m for m, _ in conn.zrange(key, 0, -1, withscores=True)]


async def test_geo_written_in_slot_5(api, Geo, conn):
    e = Geo(lon=-122.4, lat=37.77, tags='channel')
    await api.save(e)
    assert index_data(conn, 'Geo:1') == canon(['tags:channel'], [], [], [], ['basic', 'g2'])
    assert conn.zscore('Geo:basic:geo', '1') == 1367859900908957.0
    assert geo_members(conn, 'Geo:g2:geo') == [b'1']
    pos = conn.geopos('Geo:basic:geo', '1')[0]
    assert abs(pos[0] + 122.4) < 1e-4 and abs(pos[1] - 37.77) < 1e-4


async def test_geo_removed_on_update_and_delete(api, Geo, conn):
    e = Geo(lon=1, lat=2, tags='x')
    await api.save(e)
    e.lon = None  # basic: None point skipped; g2: empty list
    await api.save(e)
    assert not conn.exists('Geo:basic:geo') and not conn.exists('Geo:g2:geo')
    assert index_data(conn, 'Geo:1') == canon(['tags:x'], [], [], [], [])
    e.lon = 3
    await api.save(e)
    assert geo_members(conn, 'Geo:basic:geo') == [b'1']
    await api.delete(e)
    assert dump(conn) == {b'Geo:id:': (b'string', b'1')}


async def test_geo_callbacks_not_called_on_delete_G2(api, conn):
    calls = []

    def cb(d):
        calls.append(dict(d))
        return {'lon': d['lon'], 'lat': d['lat']}

    class G2(rom.Model):
        lon = rom.Float()
        lat = rom.Float()
        geo_index = [rom.GeoIndex('here', cb)]

    e = G2(lon=1, lat=1)
    await api.save(e)
    assert len(calls) == 1 and isinstance(calls[0], dict)
    await api.delete(e)
    assert len(calls) == 1
    assert dump(conn) == {b'G2:id:': (b'string', b'1')}


async def test_geo_callback_receives_attrdict(api, conn):
    seen = []

    def cb(d):
        seen.append(d)
        return []

    class GA(rom.Model):
        a = rom.Integer()
        geo_index = [rom.GeoIndex('x', cb)]

    await api.save(GA(a=1))
    assert isinstance(seen[0], rom.model.AttrDict)
    assert seen[0].a == 1 and seen[0].missing is None


async def test_geo_several_points_last_wins_name_once(api, conn):
    class GM(rom.Model):
        geo_index = [rom.GeoIndex('loc', lambda d: [{'lon': 1, 'lat': 1}, {'lon': 2, 'lat': 2}])]

    await api.save(GM())
    assert geo_members(conn, 'GM:loc:geo') == [b'1']
    assert abs(conn.geopos('GM:loc:geo', '1')[0][0] - 2) < 1e-4
    assert conn.hget('GM:1', '-index-data-') == b'[{},{},{},{},["loc"]]'


@pytest.mark.parametrize('result,exc', [
    ({'lon': 1}, ORMError), ([{'lat': 1}], ORMError), (None, TypeError),
])
async def test_geo_bad_callback_results(api, conn, result, exc):
    class GB(rom.Model):
        a = rom.Integer()
        geo_index = [rom.GeoIndex('loc', lambda d: result)]

    e = GB(a=1)
    before = dump(conn)
    with pytest.raises(exc):
        await api.save(e)
    assert without_id_counters(api, dump(conn)) == without_id_counters(api, before)


@pytest.mark.parametrize('point', [
    {'lon': 200, 'lat': 0}, {'lon': -180.5, 'lat': 0}, {'lon': 0, 'lat': 86},
    {'lon': 0, 'lat': -85.06}, {'lon': 'abc', 'lat': 0}, {'lon': True, 'lat': 0},
    {'lon': float('nan'), 'lat': 0}, {'lon': float('inf'), 'lat': 0}, {'lon': [1], 'lat': 0},
], ids=repr)
async def test_invalid_geo_point_G3(api, conn, point):
    class G3(rom.Model):
        a = rom.Integer(index=True)
        u = rom.Text(unique=True)
        geo_index = [rom.GeoIndex('ok', lambda d: {'lon': 1, 'lat': 1}),
                     rom.GeoIndex('bad', lambda d: [{'lon': 2, 'lat': 2}, point])]

    e = G3(a=1, u='x')
    before = dump(conn)
    with pytest.raises(InvalidColumnValue) as info:
        await api.save(e)
    assert 'G3' in str(info.value) and 'bad' in str(info.value)
    assert without_id_counters(api, dump(conn)) == without_id_counters(api, before)
    assert e._new


@pytest.mark.parametrize('point', [{'lon': None, 'lat': 1}, {'lon': 1, 'lat': None}])
async def test_none_geo_point_skipped_G3(api, conn, point):
    class GN(rom.Model):
        geo_index = [rom.GeoIndex('loc', lambda d: point)]

    await api.save(GN())
    assert not conn.exists('GN:loc:geo')
    assert conn.hget('GN:1', '-index-data-') == EMPTY


@pytest.mark.parametrize('point', [{'lon': '10.5', 'lat': '-20'}, {'lon': Decimal('180'),
                                   'lat': 85.05112878}, {'lon': -180, 'lat': -85.05112878}])
async def test_valid_geo_edges(api, conn, point):
    class GV(rom.Model):
        geo_index = [rom.GeoIndex('loc', lambda d: point)]

    await api.save(GV())
    assert geo_members(conn, 'GV:loc:geo') == [b'1']


# --- rows written by the reference (G1 layout, legacy hash) -------------------------------

def write_reference_geo_row(conn):
    """A row as rom 1.1.2 wrote it: geo names as bare strings in slot 4 (G1)."""
    conn.set('Geo:id:', '1')
    conn.hset('Geo:1', mapping={
        'id': '1', 'lon': '1.5', 'lat': '2.5', 'tags': 'channel',
        '-index-data-': '[["tags:channel"],{},{},["basic","g2"],{}]'})
    conn.sadd('Geo:tags:channel:idx', '1')
    conn.geoadd('Geo:basic:geo', (1.5, 2.5, '1'))
    conn.geoadd('Geo:g2:geo', (1.5, 2.5, '1'))


async def test_reference_geo_row_updated_G1(api, Geo, conn):
    write_reference_geo_row(conn)
    e = await api.get(Geo, 1)
    assert (e.lon, e.lat, e.tags) == (1.5, 2.5, 'channel')
    e.lon = None
    e.tags = 'other'
    await api.save(e)
    assert not conn.exists('Geo:basic:geo') and not conn.exists('Geo:g2:geo')
    assert not conn.exists('Geo:tags:channel:idx')
    assert index_data(conn, 'Geo:1') == canon(['tags:other'], [], [], [], [])


async def test_reference_geo_row_unchanged_save_rewrites_layout(api, Geo, conn):
    write_reference_geo_row(conn)
    e = await api.get(Geo, 1)
    assert await api.save(e) == 0
    assert index_data(conn, 'Geo:1') == canon(['tags:channel'], [], [], [], ['basic', 'g2'])
    assert geo_members(conn, 'Geo:basic:geo') == [b'1']


async def test_reference_geo_row_deleted_G1(api, Geo, conn):
    write_reference_geo_row(conn)
    await api.delete(await api.get(Geo, 1))
    assert dump(conn) == {b'Geo:id:': (b'string', b'1')}


async def test_reference_geo_row_with_two_points_for_one_name(api, conn):
    class Two(rom.Model):
        geo_index = [rom.GeoIndex('loc', lambda d: [])]

    conn.hset('Two:1', mapping={'id': '1', '-index-data-': '[{},{},{},["loc","loc"],{}]'})
    conn.geoadd('Two:loc:geo', (1, 1, '1'))
    await api.delete(await api.get(Two, 1))
    assert dump(conn) == {}


LEGACY = ('[["w:world", "w:hello"], ["n"], [["w", "hello"], ["w", "world"]], '
          '[["w", "olleh"], ["w", "dlrow"]]]')


def legacy_model(conn, n, counter=1, more_bookkeeping=None):
    """Model ``Leg`` and its row 1 (``w='hello world'``, ``n``) as rom 1.1.2 wrote them:
    bookkeeping in the ``Leg::`` hash (plus ``more_bookkeeping`` fields), id counter
    ``counter``."""
    class Leg(rom.Model):
        w = rom.Text(index=True, prefix=True, suffix=True, keygen=rom.FULL_TEXT)
        n = rom.Integer(index=True)

    conn.set('Leg:id:', str(counter))
    conn.hset('Leg:1', mapping={'id': '1', 'w': 'hello world', 'n': str(n)})
    conn.hset('Leg::', mapping=dict({'1': LEGACY}, **(more_bookkeeping or {})))
    conn.sadd('Leg:w:hello:idx', '1')
    conn.sadd('Leg:w:world:idx', '1')
    conn.zadd('Leg:n:idx', {'1': n})
    ps = rom.util._prefix_score
    conn.zadd('Leg:w:pre', {b'hello\x001': float(ps('hello')), b'world\x001': float(ps('world'))})
    conn.zadd('Leg:w:suf', {b'olleh\x001': float(ps('olleh')), b'dlrow\x001': float(ps('dlrow'))})
    return Leg


@pytest.fixture
def Legacy(conn):
    return legacy_model(conn, 5, counter=2, more_bookkeeping={'2': '[[], [], [], []]'})


async def test_legacy_hash_migrated_on_save(api, Legacy, conn):
    e = await api.get(Legacy, 1)
    assert e.w == 'hello world' and e.n == 5
    e.w = 'goodbye'
    assert await api.save(e) == 1
    assert conn.hgetall('Leg::') == {b'2': b'[[], [], [], []]'}
    assert not conn.exists('Leg:w:hello:idx') and not conn.exists('Leg:w:world:idx')
    assert conn.zrange('Leg:w:pre', 0, -1) == [b'goodbye\x001']
    assert conn.zrange('Leg:w:suf', 0, -1) == [b'eybdoog\x001']
    assert conn.zrange('Leg:n:idx', 0, -1, withscores=True) == [(b'1', 5.0)]
    assert conn.smembers('Leg:w:goodbye:idx') == {b'1'}
    assert index_data(conn, 'Leg:1') == canon(['w:goodbye'], ['n'], [['w', 'goodbye']],
                                              [['w', 'eybdoog']], [])


async def test_legacy_hash_migrated_by_unchanged_save(api, Legacy, conn):
    await api.save(await api.get(Legacy, 1))
    assert conn.hgetall('Leg::') == {b'2': b'[[], [], [], []]'}
    assert index_data(conn, 'Leg:1') == canon(
        ['w:hello', 'w:world'], ['n'], [['w', 'hello'], ['w', 'world']],
        [['w', 'olleh'], ['w', 'dlrow']], [])


async def test_legacy_hash_removed_on_delete(api, Legacy, conn):
    await api.delete(await api.get(Legacy, 1))
    assert dump(conn) == {b'Leg:id:': (b'string', b'2'),
                          b'Leg::': (b'hash', {b'2': b'[[], [], [], []]'})}


async def test_legacy_hash_preferred_over_row_field(api, Legacy, conn):
    conn.hset('Leg:1', '-index-data-', '[["w:stale"],{},{},{},{}]')
    conn.sadd('Leg:w:stale:idx', '1')
    await api.delete(await api.get(Legacy, 1))
    # the row field was ignored for removal: its entry lingers
    assert conn.smembers('Leg:w:stale:idx') == {b'1'}
    assert not conn.exists('Leg:w:hello:idx') and not conn.exists('Leg:n:idx')
    assert not conn.exists('Leg:1') and conn.hkeys('Leg::') == [b'2']


async def test_legacy_geo_names_in_slot_4_of_legacy_hash(api, Geo, conn):
    conn.set('Geo:id:', '1')
    conn.hset('Geo:1', mapping={'id': '1', 'lon': '1', 'lat': '1'})
    conn.hset('Geo::', '1', '[{},{},{},["basic"],{}]')
    conn.geoadd('Geo:basic:geo', (1, 1, '1'))
    await api.delete(await api.get(Geo, 1))
    assert dump(conn) == {b'Geo:id:': (b'string', b'1')}


async def test_row_without_index_data_has_no_old_entries(api, conn):
    class NI(rom.Model):
        n = rom.Integer(index=True)

    conn.hset('NI:1', mapping={'id': '1', 'n': '3'})
    conn.zadd('NI:n:idx', {'1': 3, '2': 4})
    e = await api.get(NI, 1)
    e.n = 4
    await api.save(e)
    assert conn.zrange('NI:n:idx', 0, -1, withscores=True) == [(b'1', 4.0), (b'2', 4.0)]


async def test_index_data_with_whitespace_and_short_arrays(api, conn):
    class WS2(rom.Model):
        n = rom.Integer(index=True)
        t = rom.Text(index=True, keygen=rom.FULL_TEXT)

    conn.hset('WS2:1', mapping={'id': '1', 'n': '3', 't': 'a',
                                '-index-data-': '[ ["t:a"] , [ "n" ] ]'})
    conn.sadd('WS2:t:a:idx', '1')
    conn.zadd('WS2:n:idx', {'1': 3})
    await api.delete(await api.get(WS2, 1))
    assert dump(conn) == {}


def test_parse_index_data_reads_every_form():
    from rom._write_plan import parse_index_data

    def norm(result):
        keys, scored, prefix, suffix, geo = result
        return (sorted(keys), sorted(scored), sorted(tuple(p) for p in prefix),
                sorted(tuple(p) for p in suffix), sorted(geo))

    assert norm(parse_index_data('[{},{},{},{},{}]')) == ([], [], [], [], [])
    assert norm(parse_index_data(b'[["a:b"],["n"],[["w","x"]],[["w","y"],"g1"],["g2"]]')) == (
        ['a:b'], ['n'], [('w', 'x')], [('w', 'y')], ['g1', 'g2'])
    assert norm(parse_index_data(LEGACY)) == (
        ['w:hello', 'w:world'], ['n'], [('w', 'hello'), ('w', 'world')],
        [('w', 'dlrow'), ('w', 'olleh')], [])
    assert norm(parse_index_data('[["x:y"]]')) == (['x:y'], [], [], [], [])


# --- UnsafeColumn keys deleted with the row ---------------------------------------------------

async def test_delete_removes_unsafe_keys(api, conn):
    class UD(rom.Model):
        q = rom.UnsafeColumn()
        r = rom.UnsafeColumn()

    e = UD()
    await api.save(e)
    e.q.rpush('x')
    e.r.set('y')
    await api.delete(e)
    assert dump(conn) == {b'UD:id:': (b'string', b'1')}


# --- round trips --------------------------------------------------------------------------------

def test_save_and_delete_are_one_script_call(conn, roundtrips):
    class OT(rom.Model):
        a = rom.Integer(index=True)
        u = rom.Text(unique=True)
        t = rom.Text(index=True, prefix=True, keygen=rom.FULL_TEXT)
        geo_index = [rom.GeoIndex('loc', lambda d: {'lon': 1, 'lat': 1})]

    e = OT(a=1, u='x', t='hello world')
    e.save()
    e.a = 2
    with roundtrips(conn) as rt:
        e.save()
    assert rt.count == 1 and rt.commands in (['EVALSHA'], ['EVAL'])
    with roundtrips(conn) as rt:
        e.delete()
    assert rt.count == 1 and rt.commands in (['EVALSHA'], ['EVAL'])


async def test_tuple_and_set_keygen_results_and_integer_prefix(api, conn):
    class TS(rom.Model):
        a = rom.Text(index=True, keygen=lambda v: ('x', 'y'))
        b = rom.Text(index=True, keygen=lambda v: {'p', 'q'} if v else None)
        n = rom.Integer(prefix=True)

    await api.save(TS(a='1', b='2', n=42))
    assert conn.smembers('TS:a:x:idx') == {b'1'} and conn.smembers('TS:b:q:idx') == {b'1'}
    assert conn.zrange('TS:n:pre', 0, -1, withscores=True) == [
        (b'42\x001', float(rom.util._prefix_score('42')))]
    assert not conn.exists('TS:n:idx')
    assert index_data(conn, 'TS:1') == canon(['a:x', 'a:y', 'b:p', 'b:q'], [], [['n', '42']],
                                             [], [])


async def test_index_only_unique_with_prefix_enforces_nothing(api, conn):
    class IOP(rom.Model):
        t = rom.Text()
        io = rom.IndexOnly('t', lambda v: [v] if v else None, prefix=True, unique=True)

    await api.save(IOP(t='same'))
    await api.save(IOP(t='same'))  # compat: no uniqueness with prefix/suffix
    assert not conn.exists('IOP:io:uidx')
    assert len(conn.zrange('IOP:io:pre', 0, -1)) == 2


# --- unique keygen corner cases (§6.3) -----------------------------------------------------------

async def test_unique_keygen_first_non_none_element(api, conn):
    class FN(rom.Model):
        t = rom.Text()
        io = rom.IndexOnly(keygen2=lambda attr, data: [None, data.get('t')], unique=True)

    await api.save(FN(t='x'))
    assert conn.hgetall('FN:io:uidx') == {b'x': b'1'}


async def test_unique_keygen_falsy_result_uses_storage_string(api, conn):
    class FS(rom.Model):
        t = rom.Text(unique=True, keygen=lambda v: None)

    await api.save(FS(t='Whole'))
    assert conn.hgetall('FS:t:uidx') == {b'Whole': b'1'}
    with pytest.raises(UniqueKeyViolation):
        await api.save(FS(t='Whole'))


async def test_unique_keygen_must_return_a_sequence(api, conn):
    class FD(rom.Model):
        t = rom.Text(unique=True, keygen=rom.SIMPLE)

    e = FD(t='x')
    e.id
    before = dump(conn)
    with pytest.raises(TypeError) as info:
        await api.save(e)
    assert 'dict' in str(info.value)
    assert dump(conn) == before


async def test_boolean_true_unique(api, conn):
    class BU(rom.Model):
        b = rom.Boolean(unique=True)

    await api.save(BU(b=True))
    assert conn.hgetall('BU:b:uidx') == {b'1': b'1'}
    with pytest.raises(UniqueKeyViolation):
        await api.save(BU(b=True))
    await api.save(BU(b=False))
    await api.save(BU(b=False))


# --- decode_responses=True clients (storage §2.5) ---------------------------------------------------

@pytest.fixture
def decoding(decoding_conn):
    rom.util.CONNECTION = decoding_conn
    return decoding_conn


async def test_decoding_client_failures_and_reads(api, conn, decoding):
    class DC(rom.Model):
        u = rom.Text(unique=True)
        n = rom.Float(index=True)
        s = rom.String()

    a = DC(u='\xe9', n=1.5, s=b'\xff\x00')
    await api.save(a)
    assert conn.hget('DC:1', 's') == b'\xc3\xbf\x00'
    with pytest.raises(UniqueKeyViolation) as info:
        await api.save(DC(u='\xe9'))
    assert info.value.args[1:] == ('DC', '2')
    rom.session.rollback()
    e1 = await api.get(DC, 1)
    rom.session.rollback()
    e2, = await api.get(DC, [1])
    assert e2.s == b'\xff\x00' and e2.u == '\xe9' and e2.n == 1.5
    e1.n = 2.5
    await api.save(e1)
    e2.n = 3.5
    with pytest.raises(DataRaceError) as info:
        await api.save(e2)
    assert info.value.args[1:] == ('DC', '1')
    assert (await api.get_by(DC, u='\xe9')).id == 1
    assert [e.id for e in await api.get_by(DC, n=(2, 3))] == [1]
    assert await api.get_by(DC, n=(3, 4)) == []
    await api.delete(e1)
    with pytest.raises(EntityDeletedError):
        await api.save(e2)
    assert sorted(conn.keys('DC:*')) == [b'DC:id:']


async def test_indexed_bool_in_numeric_columns_N1(api, conn):
    class NB1(rom.Model):
        i = rom.Integer(index=True)
        f = rom.Float(index=True)

    await api.save(NB1(i=True, f=False))
    assert conn.hget('NB1:1', 'i') == b'1' and conn.hget('NB1:1', 'f') == b'0'
    assert conn.zscore('NB1:i:idx', '1') == 1.0
    assert conn.zscore('NB1:f:idx', '1') == 0.0
    assert [e.id for e in await api.get_by(NB1, i=1)] == [1]


def test_concurrent_unique_claims_one_winner(conn):
    import threading

    class CC(rom.Model):
        u = rom.Text(unique=True)
        n = rom.Integer(index=True)

    results = []
    barrier = threading.Barrier(4)

    def worker(k):
        barrier.wait()
        for i in range(10):
            e = CC(u='v%i' % i, n=k)
            try:
                e.save()
                results.append(('ok', i, e.id))
            except UniqueKeyViolation:
                results.append(('dup', i, None))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r[0] == 'ok']
    assert sorted(i for _, i, _ in winners) == list(range(10))
    assert len(results) == 40
    uidx = conn.hgetall('CC:u:uidx')
    assert uidx == {('v%i' % i).encode(): str(eid).encode() for _, i, eid in winners}
    rows = [k for k in conn.keys('CC:*') if k.count(b':') == 1]
    assert len(rows) == 10
    assert conn.zcard('CC:n:idx') == 10


# --- invariant: after any sequence of saves/deletes the indexes match the rows -------------------

def _expected_index_state(conn, model):
    """Index members implied by every stored row's ``-index-data-`` plus its unique values."""
    from rom._write_plan import parse_index_data
    ns = model._namespace
    sets, zsets, uniques = {}, {}, {}
    for key in conn.keys(ns + ':*'):
        name = key.decode('utf-8')
        rest = name[len(ns) + 1:]
        if not rest.isdigit():
            continue
        row = conn.hgetall(key)
        keys, scored, prefix, suffix, geo = parse_index_data(row[b'-index-data-'])
        for k in keys:
            sets.setdefault('%s:%s:idx' % (ns, k), set()).add(rest)
        for k in scored:
            zsets.setdefault('%s:%s:idx' % (ns, k), set()).add(rest)
        for attr, token in prefix:
            zsets.setdefault('%s:%s:pre' % (ns, attr), set()).add(token + '\0' + rest)
        for attr, token in suffix:
            zsets.setdefault('%s:%s:suf' % (ns, attr), set()).add(token + '\0' + rest)
        for g in geo:
            zsets.setdefault('%s:%s:geo' % (ns, g), set()).add(rest)
        if b'u' in row:
            uniques[row[b'u'].decode('utf-8')] = rest
    return sets, zsets, uniques


def _actual_index_state(conn, model):
    ns = model._namespace
    sets, zsets = {}, {}
    for key in conn.keys(ns + ':*'):
        name = key.decode('utf-8')
        kind = conn.type(key)
        if kind == b'set':
            sets[name] = {m.decode('utf-8') for m in conn.smembers(key)}
        elif kind == b'zset':
            zsets[name] = {m.decode('utf-8') for m in conn.zrange(key, 0, -1)}
    uniques = {k.decode('utf-8'): v.decode('utf-8')
               for k, v in conn.hgetall(ns + ':u:uidx').items()}
    return sets, zsets, uniques


async def test_random_operations_keep_indexes_consistent(api, conn):
    import random
    rnd = random.Random(1234)

    def geo(d):
        return {'lon': d.x, 'lat': d.x} if d.x is not None and abs(d.x) < 80 else []

    class Inv(rom.Model):
        u = rom.Text(unique=True)
        x = rom.Integer(index=True)
        t = rom.Text(index=True, prefix=True, suffix=True, keygen=rom.FULL_TEXT)
        s = rom.Text(index=True, prefix=True, keygen=rom.SIMPLE_CI)
        b = rom.Boolean(index=True)
        geo_index = [rom.GeoIndex('g', geo)]

    words = ['alpha', 'beta', 'Gamma', 'd\xe9lta', 'eps/ilon', '']
    live = []
    for step in range(150):
        op = rnd.random()
        if op < 0.35 or not live:
            e = Inv(u='u%i' % rnd.randrange(40), x=rnd.randrange(-100, 100),
                    t=' '.join(rnd.sample(words, 2)), s=rnd.choice(words) or None,
                    b=rnd.choice([True, False, None]))
            try:
                await api.save(e)
                live.append(e)
            except UniqueKeyViolation:
                rom.session.forget(e)
        elif op < 0.8:
            e = rnd.choice(live)
            attr = rnd.choice(['u', 'x', 't', 's', 'b'])
            value = {'u': 'u%i' % rnd.randrange(40), 'x': rnd.choice([None, rnd.randrange(99)]),
                     't': rnd.choice([None, ' '.join(rnd.sample(words, 3))]),
                     's': rnd.choice(words) or None, 'b': rnd.choice([True, False, None])}[attr]
            setattr(e, attr, value)
            try:
                await api.save(e)
            except UniqueKeyViolation:
                await api.refresh(e, force=True)
        else:
            e = rnd.choice(live)
            live.remove(e)
            await api.delete(e)
        if step % 25 == 24:
            assert _actual_index_state(conn, Inv) == _expected_index_state(conn, Inv)
    assert _actual_index_state(conn, Inv) == _expected_index_state(conn, Inv)
    # and every row's bookkeeping is what a fresh save would write
    from rom._write_plan import compute_index_entries, parse_index_data
    rom.session.rollback()
    for e in live:
        loaded = await api.get(Inv, e.id)
        want = compute_index_entries(Inv, loaded.to_dict(), str(e.id))
        keys, scored, prefix, suffix, geo_names = parse_index_data(
            conn.hget(loaded._pk, '-index-data-'))
        assert sorted(keys) == sorted(want.keys)
        assert sorted(scored) == sorted(want.scores)
        assert sorted(prefix) == sorted((a, t) for a, t, _ in want.prefix)
        assert sorted(suffix) == sorted((a, t) for a, t, _ in want.suffix)
        assert sorted(geo_names) == sorted({g[0] for g in want.geo})
    for e in live:
        await api.delete(await api.get(Inv, e.id))
    assert sorted(conn.keys('*')) == [b'Inv:id:']


async def test_keygen2_and_geo_callbacks_see_the_id(api, conn):
    seen = []

    def geo(d):
        seen.append(d['id'])
        return []

    class SeeId(rom.Model):
        a = rom.Integer()
        k = rom.IndexOnly(keygen2=lambda attr, data: ['id%s' % data['id']], index=True)
        geo_index = [rom.GeoIndex('g', geo)]

    e = SeeId(a=1)
    await api.save(e)
    assert seen == [1]
    assert conn.smembers('SeeId:k:id1:idx') == {b'1'}
    other = SeeId(a=2)
    session_saved = await api.commit()
    assert session_saved == 3  # a, k, id
    assert conn.smembers('SeeId:k:id2:idx') == {b'2'} and seen == [1, 2]
    assert other.id == 2
