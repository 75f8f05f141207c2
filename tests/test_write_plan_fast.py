"""The writer's fast paths (numeric, datetime, boolean and sort-only index columns, prefix
scores) give exactly what the generic keygen path gives."""
import random
from datetime import datetime, timedelta

import rom
from rom import _write_plan
from rom._helpers import _prefix_score


def test_prefix_score_matches_the_helper():
    rng = random.Random(5)
    alphabet = ['a', 'Z', '0', '\x00', '\xff', '\u00e9', '\u4e2d', '\U0001f600', '\x7f', ' ']
    cases = ['', b'', b'\xff' * 9, 'a' * 30]
    for _ in range(5000):
        n = rng.randrange(0, 12)
        cases.append(''.join(rng.choice(alphabet) for _ in range(n)))
        cases.append(bytes(rng.randrange(256) for _ in range(n)))
    for case in cases:
        assert _write_plan._prefix_score(case) == _prefix_score(case), case


def test_fast_kinds_match_the_generic_path(conn, monkeypatch):
    class FastKinds(rom.Model):
        name = rom.Text(index=True, keygen=rom.FULL_TEXT)
        handle = rom.Text(prefix=True, suffix=True, keygen=rom.SIMPLE_CI)
        age = rom.Integer(index=True)
        score = rom.Float(index=True)
        created = rom.DateTime(index=True)
        active = rom.Boolean(index=True)

    rng = random.Random(7)
    rows = []
    for i in range(300):
        rows.append({
            'id': i, 'name': rng.choice(['Ann Lee', 'bo', '', None]),
            'handle': rng.choice(['Grace_smi07', '\u00e9t\u00e9', 'x', '', None]),
            'age': rng.choice([0, -5, 2 ** 60, True, False, None, 31]),
            'score': rng.choice([0.5, -1e300, 3, float('inf'), None]),
            'created': rng.choice([datetime(2020, 1, 1) + timedelta(seconds=rng.random() * 1e8),
                                   datetime(1900, 2, 3, 4, 5, 6, 7), None]),
            'active': rng.choice([True, False, None]),
        })
    fast = [_write_plan.compute_index_entries(FastKinds, row, str(row['id'])) for row in rows]
    generic = _write_plan._indexed_columns

    def all_generic(model):
        return [(attr, col, _write_plan._GENERIC) for attr, col, _ in generic(model)]

    monkeypatch.setattr(_write_plan, '_indexed_columns', all_generic)
    monkeypatch.delattr(FastKinds, '_rom_write_layout')
    slow = [_write_plan.compute_index_entries(FastKinds, row, str(row['id'])) for row in rows]
    for row, a, b in zip(rows, fast, slow):
        assert (a.keys, list(a.scores.items()), a.prefix, a.suffix, a.geo) == \
            (b.keys, list(b.scores.items()), b.prefix, b.suffix, b.geo), row


def test_fast_storage_texts_match_the_columns():
    samples = {str: ['', 'a', '\u00e9\U0001f600', '1.5'], int: [0, -7, 2 ** 70, 12],
               float: [0.0, -0.0, 1.5, 1e300, float('inf'), 1 / 3], bool: [True, False]}
    for cls, by_type in _write_plan._FAST_TEXT.items():
        col = cls()
        for kind, convert in by_type.items():
            for value in samples[kind]:
                assert type(value) is kind
                assert convert(value) == col._to_redis(value), (cls, value)
