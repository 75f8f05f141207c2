#!/usr/bin/env python
"""rom maintenance benchmark: rows per second of ``check``, ``reindex`` and ``clean``.

The data is ``benchmarks/bench.py``'s ``User`` model and random users (imported from it,
same seed rules), written with exactly rom's storage layout. Each job runs as the command
line tool runs it (``python -m rom check|reindex|clean``, with its default block sizes):

* **check**: ``rom._audit.audit_model(User)`` on the healthy database (must find nothing);
* **reindex**: ``rom.util.refresh_indices(User)`` on the healthy database; afterwards every
  key must be byte-identical to before (a reindex of a healthy database changes nothing);
* **reindex (rebuild)**: the same after every index key of ``User`` was deleted; afterwards
  every key must again be byte-identical to the original;
* **clean**: ``clean_old_index(User)`` then ``clean_unsafe_cols(User)`` (what
  ``clean --unsafe`` runs).

Usage::

    python benchmarks/maintenance.py [--rows 30000] [--url redis://127.0.0.1:6379/10]
                                     [--reps 3] [--json out.json] [--smoke] [--flush]

Without ``--url`` an embedded Redis is started through ``rom.testing``. The database must be
empty unless ``--flush`` is given (then it is FLUSHDB-ed: use a dedicated database). Exit
status 0 when every job left the data as it must, 1 otherwise, 2 for a non-empty database.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing

import redis  # noqa: E402

import bench  # noqa: E402  (the benchmark's models and data)
import rom.util  # noqa: E402
from rom import testing  # noqa: E402
from rom._audit import audit_model  # noqa: E402
from rom._maintenance import clean_old_index, clean_unsafe_cols, refresh_indices  # noqa: E402

#: the block sizes ``python -m rom`` uses by default
CHECK_BLOCK, REINDEX_BLOCK, CLEAN_BLOCK = 1000, 1000, 100


def populate(conn: Any, users: Sequence[Dict[str, Any]]) -> None:
    """Write the users with rom's layout (the floor writer of bench.py, on rom's namespace)."""
    pipe = conn.pipeline(False)
    for n, user in enumerate(users, 1):
        bench.floor_insert_user(pipe, user, ns=bench.NS_U)
        if n % 1000 == 0:
            pipe.execute()
    pipe.execute()


def keyspace(conn: Any) -> Dict[bytes, Any]:
    """Every key with its type and content, for before/after comparisons."""
    return testing.dump_database(conn)


def index_keys(conn: Any) -> List[bytes]:
    ns = bench.NS_U.encode()
    return [k for k in conn.scan_iter(match=bench.NS_U + ':*', count=1000)
            if k.endswith((b':idx', b':uidx', b':pre', b':suf', b':geo'))
            and k.startswith(ns + b':')]


#: client CPU seconds (this process, every thread) of each timed job, in order
CPU: List[float] = []


def timed(job: Callable[[], Any]) -> float:
    cpu = time.process_time()
    start = time.perf_counter()
    job()
    elapsed = time.perf_counter() - start
    CPU.append(time.process_time() - cpu)
    return elapsed


def machine() -> str:
    """CPUs, platform and load average: the figures depend on what else the machine runs."""
    try:
        load = '%.2f %.2f %.2f' % os.getloadavg()
    except OSError:  # pragma: no cover - not on this platform
        load = '?'
    return '%d CPU(s), %s, load average %s' % (os.cpu_count() or 0, platform.platform(), load)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rows', type=int, default=30000)
    parser.add_argument('--url', default=None, help='Redis URL (a dedicated, empty database); '
                        'default: start an embedded server')
    parser.add_argument('--json', default=None, help='write the results to this file')
    parser.add_argument('--reps', type=int, default=3, help='repetitions of each job')
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--smoke', action='store_true', help='tiny run (200 rows, 1 repetition)')
    parser.add_argument('--flush', action='store_true', help='FLUSHDB the database first')
    parser.add_argument('--jobs', default='check,reindex,reindex_rebuild,clean',
                        help='comma-separated jobs to run (default: all)')
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.reps = min(args.rows, 200), 1
    server = None
    url = args.url
    if url is None:
        server = testing.start_embedded_redis()
        url = server.url
    try:
        return run(args, url)
    finally:
        if server is not None:
            server.stop()


def run(args: argparse.Namespace, url: str) -> int:
    conn = redis.Redis.from_url(url)
    if conn.dbsize() and not args.flush:
        print('error: database %s is not empty; use a dedicated database or --flush' % url,
              file=sys.stderr)
        return 2
    conn.flushdb()
    testing.reset_rom_state(conn)
    User, _Post = bench.define_models()
    users = bench.make_users(random.Random(args.seed), args.rows)
    populate(conn, users)
    original = keyspace(conn)
    errors: List[str] = []
    wanted = args.jobs.split(',')
    jobs: Dict[str, List[float]] = {name: [] for name in
                                    ('check', 'reindex', 'reindex_rebuild', 'clean')
                                    if name in wanted}
    cpu: Dict[str, List[float]] = {name: [] for name in jobs}
    load_before = machine()
    for _rep in range(args.reps):
        if 'check' in jobs:
            report: List[Any] = []
            jobs['check'].append(timed(lambda: report.append(
                audit_model(User, block_size=CHECK_BLOCK))))
            cpu['check'].append(CPU[-1])
            if not report[0].ok:
                errors.append('check found problems on a healthy database: %s'
                              % report[0].summary())
        if 'reindex' in jobs:
            jobs['reindex'].append(timed(lambda: list(
                refresh_indices(User, block_size=REINDEX_BLOCK))))
            cpu['reindex'].append(CPU[-1])
            if keyspace(conn) != original:
                errors.append('reindex changed a healthy database')
        if 'reindex_rebuild' in jobs:
            conn.delete(*index_keys(conn))
            jobs['reindex_rebuild'].append(timed(lambda: list(
                refresh_indices(User, block_size=REINDEX_BLOCK))))
            cpu['reindex_rebuild'].append(CPU[-1])
            if keyspace(conn) != original:
                errors.append('reindex after dropping the indexes did not rebuild them '
                              'exactly')
        if 'clean' in jobs:
            def clean() -> None:
                list(clean_old_index(User, block_size=CLEAN_BLOCK))
                clean_unsafe_cols(User)

            jobs['clean'].append(timed(clean))
            cpu['clean'].append(CPU[-1])
            if keyspace(conn) != original:
                errors.append('clean changed a healthy database')
        rom.util.session.rollback()
    info = conn.info('server')
    results = {}
    print('rom maintenance benchmark: %d rows, Redis %s, Python %s, %d repetition(s)'
          % (args.rows, info.get('redis_version'), platform.python_version(), args.reps))
    print('machine before: %s' % (load_before,))
    print('machine after:  %s' % (machine(),))
    print('%-16s %12s %12s %10s %14s' % ('job', 'rows/s', 'best rows/s', 'median s',
                                         'client CPU us/row'))
    for name, times in jobs.items():
        median = statistics.median(times)
        cpu_row = statistics.median(cpu[name]) / args.rows * 1e6
        results[name] = {'seconds': times, 'median_s': median,
                         'rows_per_s': args.rows / median, 'best_rows_per_s': args.rows / min(times),
                         'client_cpu_s': cpu[name], 'client_cpu_us_per_row': cpu_row}
        print('%-16s %12.0f %12.0f %10.3f %14.1f' % (name, args.rows / median,
                                                     args.rows / min(times), median, cpu_row))
    for error in errors:
        print('ERROR: ' + error)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'rows': args.rows, 'reps': args.reps, 'machine': [load_before, machine()],
                       'redis_version':
                       info.get('redis_version'), 'python': platform.python_version(),
                       'jobs': results, 'errors': errors}, f, indent=2, sort_keys=True)
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
