"""Randomised checks of prefix/suffix/pattern scans against a plain Python model of them."""
from __future__ import annotations

import random
import re

from rom._helpers import _prefix_score
from rom.index import GeneralIndex, Pattern, Prefix, Suffix

ALPHABET = ['a', 'b', 'A', 'é', '中', '\0', ':', '-', '.', '%', '(', ')', '[', ']', '^', '$',
            'x', '?', '*']
WILD = {'?': '.?', '*': '.*?', '+': '.+', '!': '.'}


def like_regex(pattern):
    out = []
    for ch in pattern:
        out.append(WILD[ch] if ch in WILD else re.escape(ch.encode('utf-8')).decode('latin-1'))
    return re.compile(''.join(out).encode('latin-1'), re.DOTALL)


def random_token(rng):
    if rng.random() < 0.2:
        base = 'aaaaaaa'                                 # long tokens sharing 7 bytes
    else:
        base = ''
    return base + ''.join(rng.choice(ALPHABET[:-2]) for _ in range(rng.randint(0, 6)))


def test_scans_match_python_model(conn):
    rng = random.Random(1234)
    tokens = {}                                           # id -> list of tokens
    pipe = conn.pipeline(False)
    for ident in range(1, 241):
        toks = [random_token(rng) for _ in range(rng.randint(1, 3))]
        tokens[ident] = toks
        for tok in toks:
            raw = tok.encode('utf-8')
            rev = tok[::-1].encode('utf-8')
            pipe.zadd('R:t:pre', {raw + b'\0' + str(ident).encode(): float(_prefix_score(raw))})
            pipe.zadd('R:t:suf', {rev + b'\0' + str(ident).encode(): float(_prefix_score(rev))})
    pipe.execute()
    g = GeneralIndex('R')

    def check(flt, expected_ids):
        expected = sorted(str(i).encode() for i in expected_ids)   # id bytes order
        key = g.search(conn, [flt], None, timeout=30)
        assert conn.zrange(key, 0, -1) == expected, flt
        conn.delete(key)
        assert g.count(conn, [flt]) == len(expected), flt
        assert g.search(conn, [flt], None, 2, 9) == expected[2:11], flt

    all_tokens = [t for toks in tokens.values() for t in toks]
    for _ in range(80):
        src = rng.choice(all_tokens)
        prefix = src[:rng.randint(0, len(src))] if rng.random() < 0.7 else random_token(rng)
        raw = prefix.encode('utf-8')
        check(Prefix('t', prefix),
              [i for i, toks in tokens.items() if any(t.encode('utf-8').startswith(raw)
                                                      for t in toks)])
        suffix = src[rng.randint(0, len(src)):] if rng.random() < 0.7 else random_token(rng)
        check(Suffix('t', suffix[::-1]),
              [i for i, toks in tokens.items() if any(t.encode('utf-8').endswith(
                  suffix.encode('utf-8')) for t in toks)])
        pattern = ''.join(rng.choice(ALPHABET[:-2] + ['?', '*', '+', '!'])
                          for _ in range(rng.randint(0, 5)))
        rx = like_regex(pattern)
        check(Pattern('t', pattern),
              [i for i, toks in tokens.items() if any(rx.match(t.encode('utf-8'))
                                                      for t in toks)])
    assert sorted(conn.keys('*')) == [b'R:t:pre', b'R:t:suf']
