"""Keygen outputs and prefix scores: the exact values of the query spec §2."""
from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal

import pytest

import rom
from rom import util
from rom.util import (CASE_INSENSITIVE, FULL_TEXT, IDENTITY, IDENTITY_CI, IDENTITY_STRING,
                      IDENTITY_STRING_CI, SIMPLE, SIMPLE_CI, _bigint_to_float, _boolean_keygen,
                      _many_to_one_keygen, _numeric_keygen, _prefix_score, _string_keygen,
                      _to_score)


def test_groups_and_names():
    assert util.STRING_INDEX_KEYGENS == (FULL_TEXT, SIMPLE, SIMPLE_CI, IDENTITY, IDENTITY_CI,
                                         CASE_INSENSITIVE)
    assert util.STRING_INDEX_KEYGENS_STR == \
        'FULL_TEXT, SIMPLE, SIMPLE_CI, IDENTITY, IDENTITY_CI, CASE_INSENSITIVE'
    assert util.STRING_SORT_KEYGENS == (SIMPLE, SIMPLE_CI, CASE_INSENSITIVE)
    assert util.STRING_SORT_KEYGENS_STR == 'SIMPLE, SIMPLE_CI, CASE_INSENSITIVE'
    assert _string_keygen is FULL_TEXT
    assert rom.FULL_TEXT is FULL_TEXT and rom._prefix_score is _prefix_score
    for fn in (FULL_TEXT, SIMPLE, SIMPLE_CI, CASE_INSENSITIVE, IDENTITY, IDENTITY_CI,
               IDENTITY_STRING, IDENTITY_STRING_CI):
        assert getattr(util, fn.__name__) is fn


def test_full_text():
    assert FULL_TEXT('Hello, World!  foo-bar "quoted" ...') == ['foo-bar', 'hello', 'quoted',
                                                                 'world']
    assert FULL_TEXT(b'Hello World') == ['hello', 'world']
    assert FULL_TEXT(b'') == []
    assert FULL_TEXT('') is None and FULL_TEXT(None) is None
    assert FULL_TEXT('&&& !!') == []
    assert FULL_TEXT(4.5) == ['4.5'] and FULL_TEXT(12) == ['12'] and FULL_TEXT(0) == ['0']
    assert FULL_TEXT(True) == ['true']
    assert FULL_TEXT('a\u00a0b\u2003c\ufeffd') == ['a', 'b', 'c\ufeffd']
    assert FULL_TEXT('İ') == ['i̇']
    assert FULL_TEXT('b a b') == ['a', 'b']
    assert FULL_TEXT(b'caf\xe9') == ['café']


def test_simple_family():
    assert SIMPLE('Hello World') == {'': '6.431660051713885e-307'}
    assert SIMPLE_CI('Hello World') == {'': '2.7088032818177335e-306'}
    assert CASE_INSENSITIVE('Hello World') == {'': '2.7088032818177335e-306'}
    assert CASE_INSENSITIVE.__name__ == 'CASE_INSENSITIVE'
    assert SIMPLE('') is None and SIMPLE(0) is None and SIMPLE(False) is None
    assert SIMPLE(b'caf\xe9') == {'': _prefix_score('café')}
    with pytest.raises(AttributeError):
        SIMPLE_CI(None)


def test_identity_family():
    assert IDENTITY('Hello World') == ['Hello World']
    assert IDENTITY(b'Hi') == [b'Hi'] and IDENTITY(4.5) == ['4.5']
    assert IDENTITY('') is None
    assert IDENTITY_CI('MiXed') == ['mixed'] and IDENTITY_CI('') is None
    with pytest.raises(AttributeError):
        IDENTITY_CI(5)
    assert IDENTITY_STRING('abc') == [b'abc'] and IDENTITY_STRING(b'\xff') == [b'\xff']
    assert IDENTITY_STRING('é') == [b'\xe9']
    with pytest.raises(UnicodeEncodeError):
        IDENTITY_STRING('€')
    assert IDENTITY_STRING_CI(b'AbC') == [b'abc'] and IDENTITY_STRING_CI(b'') is None


def test_numeric_boolean_reference():
    assert _numeric_keygen(7) == {'': '7'}
    assert _numeric_keygen(4.5) == {'': '4.5'}
    assert _numeric_keygen(Decimal('2.643')) == {'': '2.643'}
    assert _numeric_keygen(Decimal('1E+2')) == {'': '1E+2'}
    assert _numeric_keygen(datetime(2000, 1, 1, 0, 0, 0, 250000)) == {'': '946684800.25'}
    assert _numeric_keygen(date(2000, 1, 2)) == {'': '946771200.0'}
    assert _numeric_keygen(time(1, 2, 3)) == {'': '3723.0'}
    assert _numeric_keygen(1 << 70) == {'': '1180591620717411303424'}
    assert _numeric_keygen(None) is None
    assert _boolean_keygen(True) == ['True'] and _boolean_keygen(0) == ['False']
    assert _many_to_one_keygen(None) == []

    class FM:
        id = 42
    assert _many_to_one_keygen(FM()) == {'': 42}


@pytest.mark.parametrize('value,score,nxt', [
    ('', '2.2250738585072014e-308', '2.7644681943073786e-303'),
    ('a', '2.0189796653424533e-306', '2.1122369715931216e-306'),
    ('ab', '2.0547644456479423e-306', '2.0551259080752705e-306'),
    ('abcdefg', '2.054905097979465e-306', '2.0549050979794655e-306'),
    ('abcdefgh', '2.054905097979465e-306', '2.0549050979794655e-306'),
    ('hello', '2.7088032818150034e-306', '2.708803281836051e-306'),
    ('This is', '1.1343923234173805e-306', '1.1343923234173807e-306'),
    ('é', '1.7122308312870956e-304', '1.7124621672405856e-304'),
    (b'\xff' * 7, '2.668601134957275e-303', '2.6686011349572752e-303'),
    ('\xff' * 7, '1.717496635781884e-304', '1.7174966357818841e-304'),
])
def test_prefix_score_table(value, score, nxt):
    assert _prefix_score(value) == score
    assert _prefix_score(value, True) == nxt


def test_prefix_score_properties():
    assert _bigint_to_float(28903092412586112) == float('2.0189796653424533e-306')
    words = sorted(['', 'a', 'ab', 'abc', 'b', 'hello', 'help', 'z', 'é', 'ü', '中'],
                   key=lambda w: w.encode('utf-8'))
    scores = [float(_prefix_score(w)) for w in words]
    assert scores == sorted(scores)
    for w in words:
        assert float(_prefix_score(w, True)) > float(_prefix_score(w + '\xff\xff'))
    assert _to_score(5) == '5' and _to_score(5, True) == '(5'
    assert _to_score(4.5) == '4.5' and _to_score('(7') == '7' and _to_score('(7', True) == '7'


async def test_keygen_entries_in_redis(api, conn):
    # the worked example of the query spec §3.8, stored keys and scores
    class M(rom.Model):
        ft = rom.Text(index=True, keygen=FULL_TEXT, prefix=True, suffix=True)
        si = rom.Text(index=True, keygen=SIMPLE, prefix=True, suffix=True)
        i = rom.Integer(index=True)
        b = rom.Boolean(index=True)

    await api.save(M(ft='Hello, World!', si='Hello World', i=7, b=False))
    assert sorted(conn.keys('*')) == sorted([
        f'{M._namespace}:1'.encode(), f'{M._namespace}:id:'.encode(), f'{M._namespace}:ft:hello:idx'.encode(), f'{M._namespace}:ft:world:idx'.encode(), f'{M._namespace}:ft:pre'.encode(), f'{M._namespace}:ft:suf'.encode(),
        f'{M._namespace}:si:idx'.encode(), f'{M._namespace}:si:pre'.encode(), f'{M._namespace}:si:suf'.encode(), f'{M._namespace}:i:idx'.encode(), f'{M._namespace}:b:False:idx'.encode()])
    z = lambda k: conn.zrange(k, 0, -1, withscores=True)  # noqa: E731
    assert conn.smembers(f'{M._namespace}:ft:hello:idx') == {b'1'} == conn.smembers(f'{M._namespace}:ft:world:idx')
    assert z(f'{M._namespace}:ft:pre') == [(b'hello\x001', 2.7088032818150034e-306),
                             (b'world\x001', 5.374477272550276e-306)]
    assert z(f'{M._namespace}:ft:suf') == [(b'dlrow\x001', 2.338312716365867e-306),
                             (b'olleh\x001', 3.880174709913886e-306)]
    assert z(f'{M._namespace}:si:idx') == [(b'1', 6.431660051713885e-307)]
    assert z(f'{M._namespace}:si:pre') == [(b'Hello World\x001', 6.431660051713885e-307)]
    assert z(f'{M._namespace}:si:suf') == [(b'dlroW olleH\x001', 2.338312715695069e-306)]
    assert z(f'{M._namespace}:i:idx') == [(b'1', 7.0)]
    assert conn.smembers(f'{M._namespace}:b:False:idx') == {b'1'}
    import json
    data = json.loads(conn.hget(f'{M._namespace}:1', '-index-data-'))
    assert sorted(data[0]) == ['b:False', 'ft:hello', 'ft:world']
    assert sorted(data[1]) == ['i', 'si']
    assert sorted(map(tuple, data[2])) == [('ft', 'hello'), ('ft', 'world'),
                                           ('si', 'Hello World')]
    assert sorted(map(tuple, data[3])) == [('ft', 'dlrow'), ('ft', 'olleh'),
                                           ('si', 'dlroW olleH')]
    # the same entity is found through each of those structures
    assert [e.id for e in await api.list(M.query.filter(ft='HELLO'))] == [1]
    assert [e.id for e in await api.list(M.query.startswith(si='Hello W'))] == [1]
    assert [e.id for e in await api.list(M.query.endswith(ft='LD'))] == [1]
    assert [e.id for e in await api.list(M.query.filter(i=7, b=False))] == [1]
