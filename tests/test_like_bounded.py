"""like() patterns take bounded time inside Redis, for any pattern (issue 12, critical item).

The reference matched like() patterns as Lua patterns: ``'*' * 9 + 'b'`` blocked the server
for seconds, ``'*' * 1000 + 'b'`` forever, ``'*' * 1_000_000`` crashed it. rom now normalises
patterns in Python, caps them at ``MAX_PATTERN_BYTES`` and matches them in the scan script
with an offset-set matcher taking O(token length x pattern length) steps. These tests check
the hostile patterns finish quickly while another client's PING stays fast, and compare the
matcher with two independent Python references on random (often pathological) input.
"""
from __future__ import annotations

import re
import threading
import time

import pytest
import redis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import rom
from rom._helpers import _prefix_score
from rom._query_match import MAX_PATTERN_BYTES, _lua_to_like, _normalise_pattern
from rom.exceptions import QueryError
from rom.index import GeneralIndex, Pattern, _pattern_to_lua_pattern, redis_prefix_lua

WILD = {'?': (0, 1), '*': (0, None), '+': (1, None), '!': (1, 1)}


def nfa_like(pattern, token):
    """Reference: does ``pattern`` match the start of ``token`` (bytes)? A plain NFA."""
    items = list(pattern.encode('utf-8'))
    wild = {ord(k): v for k, v in WILD.items()}

    def close(states):
        out, todo = set(states), list(states)
        while todo:
            j = todo.pop()
            if j < len(items) and items[j] in wild and wild[items[j]][0] == 0 and j + 1 not in out:
                out.add(j + 1)
                todo.append(j + 1)
        return out

    states = close({0})
    for byte in token:
        if len(items) in states:
            return True
        nxt = set()
        for j in states:
            if j == len(items):
                continue
            c = items[j]
            if c in wild:
                nxt.add(j + 1)
                if wild[c][1] is None:
                    nxt.add(j)
            elif c == byte:
                nxt.add(j + 1)
        states = close(nxt)
        if not states:
            return False
    return len(items) in states


def regex_like(pattern, token):
    """Second reference (query spec §5.8 as a Python regex on bytes); small inputs only."""
    out = []
    for ch in pattern.encode('utf-8'):
        c = bytes([ch])
        out.append({b'?': b'.?', b'*': b'.*', b'+': b'.+', b'!': b'.'}.get(c, re.escape(c)))
    return re.match(b''.join(out), token, re.DOTALL) is not None


def add_tokens(conn, index, pairs):
    pipe = conn.pipeline(False)
    for token, ident in pairs:
        raw = token if isinstance(token, bytes) else token.encode('utf-8')
        pipe.zadd(index, {raw + b'\0' + str(ident).encode(): float(_prefix_score(raw))})
    pipe.execute()


class PingWatch:
    """Another client PINGs in a thread; ``worst`` is the slowest reply seen (seconds)."""

    def __init__(self, url):
        self.client = redis.Redis.from_url(url)
        self.worst = 0.0
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            t0 = time.perf_counter()
            self.client.ping()
            self.worst = max(self.worst, time.perf_counter() - t0)
            self.count += 1
            time.sleep(0.0005)

    def __enter__(self):
        self.client.ping()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)
        self.client.close()


@pytest.fixture
def Person(conn):
    class Person(rom.Model):
        name = rom.Text(index=True, keygen=rom.SIMPLE, prefix=True)
        bio = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True)
    return Person


#: the reported patterns (rom 1.1.2: 3 s, 90 s, forever): no other client may notice them
REPORTED = ['*' * 9 + 'b', '*' * 10 + 'b', '*' * 1000 + 'b']
#: worst cases of the matcher (bounded gaps keeping many offsets alive): each either returns
#: the right result or exhausts the scan script's work budget (QueryError), quickly
HOSTILE = REPORTED + ['?' * 1000 + 'b', '!?' * 500, 'a?' * 500 + 'b', '*a' * 500, '+!' * 500,
                      '*a?' * 340, '?' * 1023 + 'a', 'a*' * 511 + 'b']


#: limits per query: wall time, and the slowest PING another client saw meanwhile. Each
#: query is measured up to 3 times and the best attempt counts, so that a busy machine's
#: scheduling noise does not fail the test while a slow matcher (systematic) still does.
MAX_QUERY_SECONDS = 0.5
MAX_PING_SECONDS = 0.05


def best_of_three(watch, query, ping_limit):
    """``(elapsed, worst PING during it, result)`` of the best of up to 3 runs of ``query``."""
    best = None
    for _attempt in range(3):
        watch.worst = 0.0
        t0 = time.perf_counter()
        result = query()
        run = (time.perf_counter() - t0, watch.worst, result)
        best = run if best is None or run[:2] < best[:2] else best
        if (run[0] < MAX_QUERY_SECONDS and run[1] < ping_limit) or run[0] > 5:
            break
    return best


def test_hostile_patterns_return_fast_and_never_stall_other_clients(conn, redis_url, Person):
    Person(name='a' * 600, bio=' '.join(['a' * 40] * 50)).save()
    Person(name='ab' * 300, bio='abababababab aaaaaaaaaaaaaaaaaaaaaaaaaaab').save()
    Person(name='xyz', bio='nothing here').save()
    tokens = {p.name: {'name': [p.name], 'bio': p.bio.split()} for p in Person.query.all()}
    rom.util.session.rollback()
    measured = []
    refused = 0
    with PingWatch(redis_url) as watch:
        for pattern in HOSTILE:
            for column in ('name', 'bio'):
                def query():
                    try:
                        found = {p.name for p in Person.query.like(**{column: pattern}).all()}
                    except QueryError as exc:   # the scan script's work budget ran out
                        assert 'too much matching work' in str(exc)
                        return None
                    finally:
                        rom.util.session.rollback()
                    return found
                elapsed, worst, got = best_of_three(
                    watch, query, MAX_PING_SECONDS if pattern in REPORTED else 1e9)
                want = {n for n, toks in tokens.items()
                        if any(nfa_like(pattern, t.encode()) for t in toks[column])}
                assert got == want or (got is None and pattern not in REPORTED), (
                    pattern[:20], column)
                refused += got is None
                measured.append((elapsed, worst if pattern in REPORTED else 0.0, pattern[:12],
                                 column))
        with pytest.raises(QueryError, match='limited to 1024 bytes'):
            Person.query.like(name='*' * 1_000_000)
        with pytest.raises(QueryError, match='limited to 1024 bytes'):
            Person.query.like(name='\xe9' * 513)   # 1026 UTF-8 bytes
    assert watch.count > 10
    assert 0 < refused < len(measured) - 2 * len(REPORTED)
    slowest = max(measured)
    print('slowest hostile like(): %.1f ms (pattern %r on %s); worst PING during the reported '
          'patterns %.1f ms'
          % (slowest[0] * 1000, slowest[2], slowest[3], max(m[1] for m in measured) * 1000))
    assert slowest[0] < MAX_QUERY_SECONDS, slowest
    assert max(m[1] for m in measured) < MAX_PING_SECONDS, max(measured, key=lambda m: m[1])


def test_pattern_size_cap_is_bytes_and_documented_value(Person):
    assert MAX_PATTERN_BYTES == 1024
    Person.query.like(name='a' * 1024).all()                 # at the cap: fine
    Person.query.like(name='\xe9' * 512).all()
    with pytest.raises(QueryError):
        Person.query.like(name='a' * 1025)
    with pytest.raises(QueryError):
        Person.query.like(name='a\ud800')                     # not encodable
    with pytest.raises(QueryError):                           # GeneralIndex directly too
        GeneralIndex('Person').search(rom.util.CONNECTION, [Pattern('name', '*' * 1025)], None)


def test_normalisation_collapses_wildcard_runs():
    assert _normalise_pattern('*' * 1000 + 'b') == '*b'
    assert _normalise_pattern('a**?*b') == 'a*b'
    assert _normalise_pattern('a?!?b') == 'a!??b'
    assert _normalise_pattern('a+*+b') == 'a!!*b'
    assert _normalise_pattern('ab*?') == 'ab'
    assert _normalise_pattern('ab+?') == 'ab!'
    assert _normalise_pattern('*') == ''
    assert _normalise_pattern('') == ''
    with pytest.raises(TypeError):
        _normalise_pattern(b'ab')


def test_redis_prefix_lua_never_runs_a_raw_lua_pattern(conn):
    add_tokens(conn, 'M:t:pre', [('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac', 1)])
    for lua_pattern in ['(a*)*b', '^' + '.-' * 50 + 'b', '^%b()', '^a.*%z%d+$', 'x']:
        with pytest.raises(QueryError):
            redis_prefix_lua(conn, 'dest', 'M:t:pre', '', True, lua_pattern)
    with pytest.raises(QueryError, match='limited to 1024 bytes'):
        redis_prefix_lua(conn, 'dest', 'M:t:pre', '', True, _pattern_to_lua_pattern('*' * 10 ** 6))
    evil = _pattern_to_lua_pattern('*' * 1000 + 'b')
    assert _lua_to_like(evil) == '*' * 1000 + 'b'
    t0 = time.perf_counter()
    assert redis_prefix_lua(conn, 'dest', 'M:t:pre', '', True, evil) == 0
    assert time.perf_counter() - t0 < 0.5
    assert redis_prefix_lua(conn, 'dest', 'M:t:pre', '', True,
                            _pattern_to_lua_pattern('*' * 1000 + 'c')) == 1


# -- random patterns and tokens against the references ---------------------------------

PATTERN_ALPHABET = 'ab\xe9\0%.-?*+!'
TOKEN_ALPHABET = 'ab\xe9\0%.-'
patterns_ = st.text(PATTERN_ALPHABET, max_size=14)
tokens_ = st.lists(st.text(TOKEN_ALPHABET, max_size=16).map(lambda t: t.encode('utf-8')),
                   min_size=1, max_size=6)


@given(patterns_, st.text(TOKEN_ALPHABET, max_size=16))
@settings(max_examples=400, deadline=None)
def test_normalised_pattern_matches_the_same_tokens(pattern, token):
    raw = token.encode('utf-8')
    norm = _normalise_pattern(pattern)
    assert _normalise_pattern(norm) == norm
    assert nfa_like(pattern, raw) == nfa_like(norm, raw) == regex_like(pattern, raw)
    assert _lua_to_like(_pattern_to_lua_pattern(pattern)) == pattern


@pytest.mark.parametrize('pattern', ['a!.b', '*.!%', '*\0!x', '.!', '*%!^$', '!!\xe9',
                                     '*a.c!', '+.+', '*(!)', '*[!]', 'a!.b*c!d', '*-!-'])
def test_blocks_of_literals_and_single_wildcards(conn, pattern):
    """Patterns without '?' take the block path (string.find): special bytes stay literal."""
    tokens = [b'a..b', b'axxb', b'a.xb', b'x.y%', b'.%', b'q\0yx', b'\0\0x', b'.z', b'%^$',
              b'ab\xc3\xa9', b'a.c.', b'abc.', b'...', b'(x)', b'[y]', b'-x-', b'a.b.c.d',
              b'a..bxxcyd', b'x(y)']
    want = stored(conn, pattern, tokens)
    assert GeneralIndex('M').search(conn, [Pattern('t', pattern)], None) == want
    assert want or pattern in ('*%!^$', '!!\xe9')


def stored(conn, pattern, tokens):
    """Index ``tokens`` as ids 1.. in 'M:t:pre'; the ids ``pattern`` should find (bytes)."""
    conn.delete('M:t:pre')
    add_tokens(conn, 'M:t:pre', [(tok, i + 1) for i, tok in enumerate(tokens)])
    return sorted(str(i + 1).encode() for i, tok in enumerate(tokens) if nfa_like(pattern, tok))


@given(patterns_, tokens_)
@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_script_matcher_agrees_with_reference(conn, pattern, tokens):
    want = stored(conn, pattern, tokens)
    g = GeneralIndex('M')
    assert g.search(conn, [Pattern('t', pattern)], None) == want
    assert g.count(conn, [Pattern('t', pattern)]) == len(want)
    assert g.search(conn, [Pattern('t', pattern)], None, 0, 3) == want[:3]


def test_work_budget_refuses_without_writing(conn):
    """A pattern keeping every offset alive over long tokens exhausts the budget: QueryError
    from every query path, the database unchanged (also inside a multi-filter transaction)."""
    add_tokens(conn, 'M:t:pre', [(b'a' * 3000, i) for i in range(1, 4)])
    conn.sadd('M:tag:x:idx', 1, 2)
    g = GeneralIndex('M')
    evil = Pattern('t', 'a?' * 400 + 'b')
    before = sorted(conn.keys('*'))
    for call in (lambda: g.search(conn, [evil], None), lambda: g.count(conn, [evil]),
                 lambda: g.search(conn, [evil], None, 0, 5),
                 lambda: g.search(conn, ['tag:x', evil], None),
                 lambda: g.search(conn, [evil, 'tag:x'], None, timeout=30),
                 lambda: g.count(conn, ['tag:x', evil]),
                 lambda: redis_prefix_lua(conn, 'dest', 'M:t:pre', '', True,
                                          _pattern_to_lua_pattern('a?' * 400 + 'b'))):
        t0 = time.perf_counter()
        with pytest.raises(QueryError, match='too much matching work'):
            call()
        assert time.perf_counter() - t0 < 1.0
        leftover = sorted(conn.keys('*'))
        for key in set(leftover) - set(before):   # only the timeout call's result key
            assert 0 < conn.ttl(key) <= 30
            conn.delete(key)
    assert sorted(conn.keys('*')) == before
    # the same index answers cheap patterns, and 3,000-byte tokens with a few '?' are fine
    assert g.count(conn, [Pattern('t', '*a?b')]) == 0
    assert g.count(conn, [Pattern('t', 'a?' * 20 + 'a')]) == 3


def test_work_budget_through_the_query_api(conn):
    class Doc(rom.Model):
        body = rom.Text(index=True, keygen=rom.SIMPLE, prefix=True)
        n = rom.Integer(index=True)
    for i in range(3):
        Doc(body='a' * 3000, n=i).save()
    before = sorted(conn.keys('*'))
    query = Doc.query.like(body='a?' * 400 + 'b')
    for call in (query.all, query.count, query.exists, query.first,
                 lambda: query.order_by('n').page(2), lambda: query.order_by('n').all(),
                 lambda: query.select('n').first(), lambda: list(query.limit(0, 2))):
        with pytest.raises(QueryError, match='too much matching work'):
            call()
        rom.util.session.rollback()
    assert sorted(conn.keys('*')) == before
    assert Doc.query.like(body='a?' * 20 + 'a').order_by('n').page(2).items[0].n == 0


# long, repetitive tokens and wildcard-heavy patterns: the classic backtracking traps
trap_patterns_ = st.lists(st.sampled_from(['a', 'b', '?', '*', '+', '!', 'a?', '*a', '??']),
                          max_size=60).map(''.join)
trap_tokens_ = st.lists(st.tuples(st.sampled_from([b'a', b'b', b'ab', b'\0']),
                                  st.integers(1, 120)).map(lambda p: p[0] * p[1]),
                        min_size=1, max_size=4).map(b''.join)


@given(trap_patterns_, st.lists(trap_tokens_, min_size=1, max_size=3))
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_script_matcher_on_backtracking_traps(conn, pattern, tokens):
    want = stored(conn, pattern, tokens)
    t0 = time.perf_counter()
    try:
        assert GeneralIndex('M').search(conn, [Pattern('t', pattern)], None) == want
        event('matched')
    except QueryError:
        event('over budget')   # allowed here: long repetitive tokens, many '?'
    assert time.perf_counter() - t0 < 0.5
