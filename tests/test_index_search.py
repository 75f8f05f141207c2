"""GeneralIndex and the index scripts against hand-written index keys (no models needed)."""
from __future__ import annotations

import re

import pytest

import rom.index
from rom._helpers import _prefix_score
from rom.exceptions import QueryError
from rom.index import (MAX_PREFIX_SCORE, SPECIAL, GeneralIndex, Geofilter, Pattern, Prefix,
                       Suffix, _find_prefix, _pattern_to_lua_pattern, _start_end, _ts,
                       estimate_work_lua, lua_subrange, redis_prefix_lua)

UUID = r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'


def add_tokens(conn, key, pairs):
    """Add prefix-index members ``token \\0 id`` with their prefix scores."""
    for token, ident in pairs:
        raw = token.encode('utf-8') if isinstance(token, str) else token
        conn.zadd(key, {raw + b'\0' + str(ident).encode(): float(_prefix_score(raw))})


def ids(values):
    return sorted(int(v) for v in values)


# -- public surface ----------------------------------------------------------------------

def test_index_all_and_names():
    assert rom.index.__all__ == ['GeneralIndex', 'GeoIndex', 'Geofilter', 'MAX_PREFIX_SCORE',
                                 'Pattern', 'Prefix', 'SPECIAL', 'Suffix', 'estimate_work_lua',
                                 'redis_prefix_lua']
    ns = {}
    exec('from rom.index import *', ns)
    assert {'GeneralIndex', 'Prefix', 'Suffix', 'Pattern', 'GeoIndex'} <= set(ns)
    assert not any(n.startswith('_') for n in ns if n != '__builtins__')
    assert Geofilter.__name__ == 'Geo'
    assert Geofilter._fields == ('name', 'lon', 'lat', 'radius', 'measure', 'count')
    assert Prefix._fields == ('attr', 'prefix') and Suffix._fields == ('attr', 'suffix')
    assert Pattern._fields == ('attr', 'pattern')
    assert rom.index.GeoIndex._fields == ('name', 'callback')
    assert MAX_PREFIX_SCORE == '1.7174966357818841e-304' == _prefix_score('\xff' * 7, True)


def test_special_and_helpers():
    assert isinstance(SPECIAL, re.Pattern)
    assert [c for c in '-().%[^$ab*?]' if SPECIAL.match(c)] == list('-().%[^$')
    assert _ts('x') == 'x' and _ts('é'.encode()) == 'é'
    assert _find_prefix('abcdefghij*') == 'abcdefg'
    assert _find_prefix('ab?c') == 'ab' and _find_prefix('*x') == '' and _find_prefix('xy') == 'xy'
    assert _pattern_to_lua_pattern('c*t9') == '^c.-t9.*%z%d+'
    assert _pattern_to_lua_pattern('a?b+c!') == '^a.?b.+c..*%z%d+'
    assert _pattern_to_lua_pattern('a.b-(c)%[^$]') == '^a%.b%-%(c%)%%%[%^%$].*%z%d+'
    assert _pattern_to_lua_pattern('a\0b') == '^a%zb.*%z%d+'
    with pytest.raises(TypeError):
        _pattern_to_lua_pattern(b'abc')
    with pytest.raises(TypeError):
        _find_prefix(b'abc')
    assert _start_end('a') == ('2.0189796653424533e-306', '2.1122369715931216e-306')
    assert _start_end('') == ('2.2250738585072014e-308', MAX_PREFIX_SCORE)


# -- estimates ---------------------------------------------------------------------------

@pytest.mark.parametrize('bounds,expected', [
    (('-inf', 'inf'), 20), (('5.0', '6.0'), -4), (('5.0', '15.0'), -22),
    (('30.0', '40.0'), 20), (('10.0', '5.0'), 0), (('1.0', '1.0'), -2)])
def test_estimate_examples(conn, bounds, expected):
    conn.zadd('ns:n:idx', {str(i): i for i in range(1, 21)})
    assert estimate_work_lua(conn, 'ns:n:idx', bounds) == expected


def test_estimate_kinds(conn):
    conn.sadd('ns:t:a:idx', 1, 2, 3)
    conn.zadd('ns:g:geo', {'1': 1, '2': 2, '3': 3})
    conn.zadd('ns:n:idx', {'1': 1, '2': 2})
    conn.set('ns:s:idx', 'x')
    assert estimate_work_lua(conn, 'ns:t:a:idx', None) == 3
    assert estimate_work_lua(conn, 'ns:missing:idx', None) == 0
    assert estimate_work_lua(conn, 'ns:s:idx', None) == 0
    assert estimate_work_lua(conn, 'ns:g:geo', None) == 3
    assert estimate_work_lua(conn, 'ns:g:geo', 2) == 2
    assert estimate_work_lua(conn, 'ns:g:geo', 9) == 3
    assert estimate_work_lua(conn, 'ns:n:idx', None) == 2
    assert conn.keys('*') and sorted(conn.keys('*')) == sorted(
        [b'ns:t:a:idx', b'ns:g:geo', b'ns:n:idx', b'ns:s:idx'])


# -- subrange ----------------------------------------------------------------------------

def test_subrange_copies_exactly(conn):
    conn.zadd('src', {str(i): i for i in range(1, 2501)})
    assert lua_subrange(conn, ['d1', 'src'], ['5', '7']) == 3
    assert conn.zrange('d1', 0, -1, withscores=True) == [(b'5', 5.0), (b'6', 6.0), (b'7', 7.0)]
    # reference bug query #4: nothing <= hi must copy nothing
    assert lua_subrange(conn, ['d2', 'src'], ['-inf', '0']) == 0
    assert not conn.exists('d2')
    assert lua_subrange(conn, ['d3', 'src'], ['3000', 'inf']) == 0
    assert lua_subrange(conn, ['d4', 'src'], ['-inf', 'inf']) == 2500
    assert conn.zcard('d4') == 2500
    assert lua_subrange(conn, ['d5', 'src'], ['1000.5', '2000']) == 1000


# -- prefix / suffix / pattern scans -----------------------------------------------------

def scan(conn, index, prefix, pattern=None):
    redis_prefix_lua(conn, 'dest', index, prefix, True, pattern)
    out = ids(conn.zrange('dest', 0, -1))
    conn.delete('dest')
    return out


def test_prefix_scan_basic(conn):
    add_tokens(conn, 'M:t:pre', [('hello', 1), ('help', 2), ('world', 3), ('he', 4),
                                 ('hello', 5), ('h', 6), ('hex', 12), ('', 7)])
    assert scan(conn, 'M:t:pre', 'he') == [1, 2, 4, 5, 12]
    assert scan(conn, 'M:t:pre', 'hel') == [1, 2, 5]
    assert scan(conn, 'M:t:pre', 'hello') == [1, 5]
    assert scan(conn, 'M:t:pre', 'hellos') == []
    assert scan(conn, 'M:t:pre', 'x') == []
    assert scan(conn, 'M:t:pre', '') == [1, 2, 3, 4, 5, 6, 7, 12]
    assert scan(conn, 'M:missing:pre', 'a') == []
    # read-only on the index, no scratch keys left
    assert conn.zcard('M:t:pre') == 8
    assert sorted(conn.keys('*')) == [b'M:t:pre']


def test_prefix_scan_long_shared_prefix(conn):
    # tokens sharing their first 7 bytes all have the same score: ordering inside the block
    tokens = ['https://a.example/%04d' % i for i in range(300)] + ['https://b.example/x']
    add_tokens(conn, 'U:u:pre', [(t, i + 1) for i, t in enumerate(tokens)])
    assert scan(conn, 'U:u:pre', 'https://a.example/01') == list(range(101, 201))
    assert scan(conn, 'U:u:pre', 'https://b') == [301]
    assert scan(conn, 'U:u:pre', 'https://') == list(range(1, 302))
    assert scan(conn, 'U:u:pre', 'https://c') == []
    assert scan(conn, 'U:u:pre', 'https://a.example/0299') == [300]


def test_prefix_scan_unicode_bytes_nul_colon(conn):
    add_tokens(conn, 'M:t:pre', [('über', 1), ('Über', 2), ('ünd', 3), ('a:b', 4),
                                 ('a\0b', 5), ('a', 6), ('Ā', 7), ('中文', 8), ('中', 9)])
    assert scan(conn, 'M:t:pre', 'ü') == [1, 3]
    assert scan(conn, 'M:t:pre', 'Ü') == [2]
    assert scan(conn, 'M:t:pre', 'ü'.encode()) == [1, 3]
    assert scan(conn, 'M:t:pre', 'a:') == [4]
    assert scan(conn, 'M:t:pre', 'a\0') == [5]
    assert scan(conn, 'M:t:pre', 'a') == [4, 5, 6]
    assert scan(conn, 'M:t:pre', '中') == [8, 9]


def test_empty_prefix_reaches_high_tokens(conn):
    # reference bug query #3: tokens starting with a UTF-8 byte >= 0xC4 were missed
    add_tokens(conn, 'M:t:pre', [('w%03d' % i, i) for i in range(1, 251)])
    add_tokens(conn, 'M:t:pre', [('Ā', 1001), ('中文', 1002), ('😀', 1003)])
    found = scan(conn, 'M:t:pre', '')
    assert found == list(range(1, 251)) + [1001, 1002, 1003]
    assert scan(conn, 'M:t:pre', '', _pattern_to_lua_pattern('*')) == found


def test_like_patterns(conn):
    add_tokens(conn, 'M:t:pre', [('cat', 1), ('cart', 2), ('ca', 3), ('coat', 4), ('at', 5),
                                 ('wörld', 6), ('world', 7), ('bob@example.com', 8),
                                 ('a-b', 9), ('a(b)', 10), ('50%', 11), ('[x]', 12),
                                 ('^up$', 13), ('a.b', 14), ('axb', 15), ('Abc', 16)])

    def like(pattern):
        return scan(conn, 'M:t:pre', _find_prefix(pattern), _pattern_to_lua_pattern(pattern))

    assert like('ca') == [1, 2, 3]
    assert like('at') == [5]
    assert like('c*t') == [1, 2, 4]
    assert like('c?t') == [1]
    assert like('c+t') == [1, 2, 4]
    assert like('c+at') == [4]
    assert like('c!t') == [1]
    assert like('w!!rld') == [6]        # ö is two bytes
    assert like('w!rld') == [7]
    assert like('*rld') == [6, 7]
    # reference bug query #1: special characters are literal
    assert like('*@example.com') == [8]
    assert like('a-b') == [9]
    assert like('a(b)') == [10]
    assert like('50%') == [11]
    assert like('[x]') == [12]
    assert like('^up$') == [13]
    assert like('a.b') == [14]          # '.' is not a wildcard
    assert like('a!b') == [9, 10, 14, 15]
    # reference bug query #2: members equal to the start score sorting before '^'
    assert like('Abc') == [16]
    assert like('A*') == [16]


def test_like_never_reaches_into_ids(conn):
    add_tokens(conn, 'M:t:pre', [('x', 1), ('y', 12), ('ab', 3)])
    assert scan(conn, 'M:t:pre', '', _pattern_to_lua_pattern('*1')) == []
    assert scan(conn, 'M:t:pre', '', _pattern_to_lua_pattern('x!')) == []
    assert scan(conn, 'M:t:pre', '', _pattern_to_lua_pattern('ab')) == [3]


def test_prefix_scan_intersects(conn):
    add_tokens(conn, 'M:t:pre', [('red', 1), ('red', 2), ('rose', 3), ('blue', 4)])
    conn.zadd('dest', {'1': 5, '3': 6, '4': 7})
    assert redis_prefix_lua(conn, 'dest', 'M:t:pre', 'r', False) == 2
    assert conn.zrange('dest', 0, -1, withscores=True) == [(b'1', 0.0), (b'3', 0.0)]
    assert redis_prefix_lua(conn, 'dest', 'M:t:pre', 'zz', False) == 0
    assert not conn.exists('dest')
    assert sorted(conn.keys('*')) == [b'M:t:pre']


# -- GeneralIndex ------------------------------------------------------------------------

@pytest.fixture
def data(conn):
    """ns 'G': 12 ids; token sets, a numeric index, prefix index, geo index."""
    for i in range(1, 13):
        conn.sadd('G:color:%s:idx' % ('red' if i % 2 else 'blue'), i)
        conn.zadd('G:n:idx', {str(i): i * 10})
        conn.zadd('G:id:idx', {str(i): i})
    conn.sadd('G:tag:a:b:idx', 3, 4, 5)
    add_tokens(conn, 'G:name:pre', [('alpha', 1), ('alps', 2), ('beta', 3), ('alpha', 11)])
    add_tokens(conn, 'G:name:suf', [('ahpla', 1), ('spla', 2), ('ateb', 3)])
    conn.geoadd('G:loc:geo', [0.0, 0.0, '1', 0.01, 0.0, '2', 1.0, 1.0, '3'])
    return conn


def test_search_tokens_lists_ranges(data):
    g = GeneralIndex('G')
    conn = data
    assert g.search(conn, ['color:red'], None) == [b'1', b'11', b'3', b'5', b'7', b'9']
    assert ids(g.search(conn, [['color:red', 'color:blue']], None)) == list(range(1, 13))
    assert g.search(conn, [('n', 30, 50)], None) == [b'3', b'4', b'5']
    assert g.search(conn, [('n', None, 20)], None) == [b'1', b'2']
    assert g.search(conn, [('n', 115, None)], None) == [b'12']
    assert g.search(conn, ['color:red', ('n', 30, 70)], None) == [b'3', b'5', b'7']
    assert g.search(conn, [('n', 30, 70), 'color:red'], None) == [b'3', b'5', b'7']
    assert g.search(conn, ['tag:a:b'], None) == [b'3', b'4', b'5']
    assert g.search(conn, ['color:red'], '-n') == [b'11', b'9', b'7', b'5', b'3', b'1']
    assert g.search(conn, ['color:red'], 'n', 1, 2) == [b'3', b'5']
    assert g.search(conn, ['color:red'], 'n', 4, 0) == [b'9', b'11']
    assert g.search(conn, [], 'n', 0, 3) == [b'1', b'2', b'3']
    assert g.search(conn, [], None) == []
    assert g.search(conn, ['color:green'], None) == []
    assert g.search(conn, ['color:red', 'color:green'], None) == []
    assert g.count(conn, ['color:red']) == 6
    assert g.count(conn, [['color:red', 'color:blue'], ('n', 1, 60)]) == 6
    assert g.count(conn, ['color:green']) == 0
    assert g.search(conn, [Prefix('name', 'alp')], None) == [b'1', b'11', b'2']
    assert g.search(conn, [Prefix('name', 'alp'), ('n', 0, 50)], None) == [b'1', b'2']
    assert g.search(conn, [Suffix('name', 'ahp')], None) == [b'1']
    assert g.search(conn, [Pattern('name', 'al*a')], None) == [b'1', b'11']
    assert sorted(conn.keys('*')) == sorted(data.keys('G:*'))
    assert not [k for k in conn.keys('*') if re.search(UUID, k.decode())]


def test_search_scores_and_order(data):
    g = GeneralIndex('G')
    key = g.search(data, ['color:red', ('n', 30, 90)], None, timeout=5)
    assert re.fullmatch('G:' + UUID, key)
    # last processed filter is the range (larger estimate), scores are the column scores
    assert data.zrange(key, 0, -1, withscores=True) == [
        (b'3', 30.0), (b'5', 50.0), (b'7', 70.0), (b'9', 90.0)]
    assert 0 < data.ttl(key) <= 5
    key = g.search(data, ['color:red'], '-n', timeout=7)
    assert data.zrange(key, 0, 1, withscores=True) == [(b'11', -110.0), (b'9', -90.0)]
    assert 0 < data.ttl(key) <= 7


def test_search_geo(data):
    g = GeneralIndex('G')
    near = Geofilter('loc', 0.0, 0.0, 5, 'km', None)
    assert g.search(data, [near], None) == [b'1', b'2']
    assert g.search(data, [Geofilter('loc', 0.0, 0.0, 500, 'km', 1)], None) == [b'1']
    assert g.search(data, [Geofilter('loc', 0.0, 0.0, 500, 'km', None), 'color:red'],
                    None) == [b'1', b'3']
    key = g.search(data, ['color:red', ('n', 0, 200), Geofilter('loc', 0.0, 0.0, 500, 'km', None)],
                   None, timeout=3)
    scores = dict(data.zrange(key, 0, -1, withscores=True))
    assert set(scores) == {b'1', b'3'}
    assert scores == {b'1': 10.0, b'3': 30.0}      # the range was processed last
    key2 = g.search(data, [('n', 20, 20), Geofilter('loc', 0.0, 0.0, 500, 'km', None)],
                    None, timeout=3)                # estimates -2 vs 3: geo last, distances
    scores = dict(data.zrange(key2, 0, -1, withscores=True))
    assert set(scores) == {b'2'}
    assert 1.0 < scores[b'2'] < 1.2
    data.delete(key2)
    assert g.search(data, [Geofilter('nope', 0.0, 0.0, 5, 'km', None)], None) == []
    left = [k for k in data.keys('*') if re.search(UUID, k.decode())]
    assert left == [key.encode()]


def test_bad_filters(data):
    g = GeneralIndex('G')
    with pytest.raises(QueryError):
        g.search(data, [('n', 1)], None)
    with pytest.raises(QueryError):
        g.search(data, [('n', 1, 2, 3)], None)
    with pytest.raises(QueryError):
        g.search(data, [42], None)
    with pytest.raises(ValueError):
        g.search(data, [('n', '(5', 10)], None)
    with pytest.raises(ValueError):
        g.search(data, [('n', '(5', 10), 'color:red'], None)
    assert not [k for k in data.keys('*') if re.search(UUID, k.decode())]


def test_round_trips(data, roundtrips):
    g = GeneralIndex('G')
    with roundtrips(data) as rt:
        g.search(data, ['color:red'], 'n', 0, 3)
    assert rt.count == 1
    with roundtrips(data) as rt:
        g.search(data, ['color:red', ('n', 0, 50), Prefix('name', 'a')], '-n', 0, 3)
    assert rt.count == 2
    with roundtrips(data) as rt:
        g.count(data, [Pattern('name', 'a*')])
    assert rt.count == 1


def test_decoding_connection(data, decoding_conn):
    g = GeneralIndex('G')
    assert g.search(decoding_conn, ['color:red', ('n', 0, 50)], None) == ['1', '3', '5']
    assert g.search(decoding_conn, [Prefix('name', 'alp')], None) == ['1', '11', '2']
    assert g.count(decoding_conn, [Pattern('name', '*a')]) == 4
    assert g.count(decoding_conn, [Pattern('name', 'a*a')]) == 2
    key = g.search(decoding_conn, ['color:red'], None, timeout=3)
    assert isinstance(key, str)
