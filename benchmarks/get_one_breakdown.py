#!/usr/bin/env python
"""Where the time of ``User.get(id)`` goes, next to its floor (one ``HGETALL``).

Complements ``bench.py``'s get_one workload: the same ``User`` model, timed phase by phase
inside the loop (after each socket wait) and in a tight loop without I/O, plus a variant
whose columns are all ``Text`` (a row that needs no conversion at all). It shows how much
of the gap to the floor is the conversion of stored texts to typed values, and how much
is the Python that any entity costs.

Usage::

    python benchmarks/get_one_breakdown.py [--url redis://127.0.0.1:6379/10] [--users 2000]
                                           [--ops 2000] [--reps 5]

The database must be empty (or pass ``--flush``: it is FLUSHDB-ed). Without ``--url`` an
embedded Redis is started through ``rom.testing``.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from typing import Any, Callable, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import redis  # noqa: E402

import rom  # noqa: E402
import rom.util  # noqa: E402
from rom import testing  # noqa: E402
from rom._connect import connect  # noqa: E402

import bench  # noqa: E402  (the benchmark's models and data)

clock = time.perf_counter


def define_text_model() -> Any:
    """``User``'s stored columns, all as ``Text``: loading converts nothing."""

    class UserText(rom.Model):
        email = rom.Text()
        name = rom.Text()
        handle = rom.Text()
        age = rom.Text()
        score = rom.Text()
        created = rom.Text()
        active = rom.Text()
        bio = rom.Text()
        prefs = rom.Text()
    return UserText


def phases(model: Any, ids: List[int]) -> Dict[str, float]:
    """µs per ``model.get(id)`` + ``session.rollback()``, phase by phase, inside the loop."""
    session = rom.util.session
    ns = model._namespace
    lookup = read = build = reset = 0.0
    for i in ids:
        t0 = clock()
        pk = '%s:%d' % (ns, i)
        assert session.get(pk) is None
        conn = connect(model)
        t1 = clock()
        row = conn.hgetall(pk)
        t2 = clock()
        entity = model._from_stored(row)
        t3 = clock()
        session.rollback()
        t4 = clock()
        assert entity.id == i
        lookup += t1 - t0
        read += t2 - t1
        build += t3 - t2
        reset += t4 - t3
    n = len(ids) / 1e6
    return {'lookup': lookup / n, 'HGETALL': read / n, 'build': build / n,
            'rollback': reset / n, 'total': (lookup + read + build + reset) / n}


def floor(conn: Any, ids: List[int]) -> float:
    """µs per ``HGETALL`` of the floor loop (the same rows)."""
    t0 = clock()
    for i in ids:
        conn.hgetall('User:%d' % i)
    return (clock() - t0) / len(ids) * 1e6


def tight(fn: Callable[[], Any], n: int = 20000) -> float:
    """µs per call of ``fn`` in a loop without I/O (best of 5)."""
    best = float('inf')
    for _ in range(5):
        t0 = clock()
        for _ in range(n):
            fn()
        best = min(best, clock() - t0)
    return best / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--url', default=None)
    parser.add_argument('--users', type=int, default=2000)
    parser.add_argument('--ops', type=int, default=2000)
    parser.add_argument('--reps', type=int, default=5)
    parser.add_argument('--flush', action='store_true')
    args = parser.parse_args()
    server = None
    url = args.url
    if not url:
        server = testing.start_embedded_redis()
        url = server.url
    conn = redis.Redis.from_url(url)
    try:
        if conn.dbsize() and not args.flush:
            print('error: the database is not empty (use --flush on a dedicated one)',
                  file=sys.stderr)
            return 2
        conn.flushdb()
        testing.reset_rom_state(conn, forget_models=True)
        User, _ = bench.define_models()
        UserText = define_text_model()
        rng = random.Random(1)
        for u in bench.make_users(rng, args.users):
            User(**bench.rom_kwargs(u))
        rom.util.session.commit()
        for i in range(1, args.users + 1):  # the same rows for the all-Text model
            conn.hset('UserText:%d' % i, mapping=conn.hgetall('User:%d' % i))
        rom.util.session.rollback()
        ids = [rng.randint(1, args.users) for _ in range(args.ops)]
        runs: Dict[str, List[Dict[str, float]]] = {'User': [], 'UserText': []}
        floors = []
        for _ in range(args.reps):  # interleaved: every side sees the same machine load
            floors.append(floor(conn, ids))
            runs['User'].append(phases(User, ids))
            runs['UserText'].append(phases(UserText, ids))
        row = conn.hgetall('User:1')
        text_row = conn.hgetall('UserText:1')
        session = rom.util.session
        isolated = {
            'User build': tight(lambda: User._from_stored(row)),
            'UserText build': tight(lambda: UserText._from_stored(text_row)),
            'rollback': tight(session.rollback),
            'lookup': tight(lambda: (session.get('User:1'), connect(User))),
        }
        session.rollback()
        fl = statistics.median(floors)
        print('get_one breakdown: %d ops x %d reps, median µs per op (%s)' % (
            args.ops, args.reps, url))
        print('%-10s %8s %8s %8s %8s %8s %7s' % ('model', 'lookup', 'HGETALL', 'build',
                                                'rollback', 'total', 'ratio'))
        for name, samples in runs.items():
            med = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
            print('%-10s %8.1f %8.1f %8.1f %8.1f %8.1f %7.2f' % (
                name, med['lookup'], med['HGETALL'], med['build'], med['rollback'],
                med['total'], fl / med['total']))
        print('%-10s %8s %8.1f %8s %8s %8.1f %7s' % ('floor', '', fl, '', '', fl, '1.00'))
        print('without I/O (tight loop, µs): ' + ', '.join(
            '%s %.1f' % item for item in isolated.items()))
        return 0
    finally:
        conn.close()
        if server is not None:
            server.stop()


if __name__ == '__main__':
    sys.exit(main())
