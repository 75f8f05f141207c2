#!/usr/bin/env python
"""rom's asyncio API against the floor: the same work written by hand with redis.asyncio.

Three workloads, each with 1 and with 50 concurrent tasks in one event loop:

* ``get_one``: ``await User.aget(id)`` (then the task's session is rolled back) against
  one ``HGETALL``;
* ``insert_one``: ``await User(...).asave()`` against one pipelined round trip writing the
  same row and index entries (the floor layout of ``benchmarks/bench.py``);
* ``range_order_limit``: ``await User.query.filter(created=window).order_by('-created')
  .limit(0, 20).aall()`` against ``ZREVRANGEBYSCORE ... LIMIT`` then pipelined HGETALLs.

The models, users and floor writes are those of ``benchmarks/bench.py`` (imported). ``ops``
operations are shared out between the tasks (each runs its share one after the other); the
wall time of the whole batch gives ops/s. Each side runs ``--reps`` times and the median is
kept; the ratio is rom's ops/s over the floor's (1.0 = as fast as the hand-written code).
Every answer is checked against the data before its time is reported.

Usage::

    python benchmarks/async_bench.py [--users 2000] [--ops 2000] [--reps 3]
                                     [--url redis://127.0.0.1:6379/10] [--flush]
                                     [--json out.json] [--smoke]

Without ``--url`` an embedded Redis is started through ``rom.testing``. The database must
be empty unless ``--flush`` is given (then it is FLUSHDB-ed: use a dedicated database).
Exit status: 0 when every answer was right, 1 otherwise, 2 for a non-empty database.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing
sys.path.insert(0, HERE)

import redis  # noqa: E402
import redis.asyncio as aredis  # noqa: E402

import rom  # noqa: E402
import rom.util  # noqa: E402
from rom import testing  # noqa: E402
from rom._helpers import dt2ts  # noqa: E402

import bench  # noqa: E402  (benchmarks/bench.py: models, data and the floor's writes)

CONCURRENCY = (1, 50)
WORKLOADS = ('get_one', 'range_order_limit', 'insert_one')

Op = Callable[[Any], Awaitable[Any]]


async def run_tasks(ops: Sequence[Any], tasks: int, fn: Op) -> List[Any]:
    """Run ``fn`` on every op, shared out between ``tasks`` concurrent tasks (each task runs
    its share in order); the answers in the order of ``ops``."""
    answers: List[Any] = [None] * len(ops)

    async def worker(start: int) -> None:
        for i in range(start, len(ops), tasks):
            answers[i] = await fn(ops[i])

    await asyncio.gather(*(worker(k) for k in range(min(tasks, len(ops)))))
    return answers


async def timed(ops: Sequence[Any], tasks: int, fn: Op) -> Any:
    started = time.perf_counter()
    answers = await run_tasks(ops, tasks, fn)
    return time.perf_counter() - started, answers


class Report:
    def __init__(self) -> None:
        self.rows: Dict[str, Dict[str, Any]] = {}
        self.errors: List[str] = []

    def add(self, name: str, tasks: int, nops: int, rom_s: List[float], floor_s: List[float],
            errors: List[str]) -> None:
        rom_ops = nops / statistics.median(rom_s)
        floor_ops = nops / statistics.median(floor_s)
        key = '%s@%d' % (name, tasks)
        self.rows[key] = {'workload': name, 'tasks': tasks, 'ops': nops,
                          'rom_ops_per_s': rom_ops, 'floor_ops_per_s': floor_ops,
                          'ratio': rom_ops / floor_ops, 'correct': not errors,
                          'errors': errors[:5]}
        self.errors.extend('%s: %s' % (key, e) for e in errors)
        print('%-18s %5d %7d %12.0f %12.0f %7.2f  %s' % (
            name, tasks, nops, rom_ops, floor_ops, rom_ops / floor_ops,
            'ok' if not errors else 'WRONG: ' + errors[0]), flush=True)


def check(errors: List[str], label: str, ok: bool, detail: Any) -> None:
    if not ok and len(errors) < 20:
        errors.append('%s: %s' % (label, detail))


async def run_all(args: argparse.Namespace, url: str) -> int:
    admin = redis.Redis.from_url(url, decode_responses=True)
    if admin.dbsize() and not args.flush:
        print('error: database %s is not empty; use a dedicated database or --flush' % url,
              file=sys.stderr)
        return 2
    if args.flush:
        admin.flushdb()
    blocking = redis.Redis.from_url(url)
    testing.reset_rom_state(blocking, forget_models=True)
    User, _Post = bench.define_models()
    rng = random.Random(args.seed)
    # users 1..n are loaded up front (both sides); the inserts take the following ones
    inserts = args.ops * args.reps * len(CONCURRENCY)
    users = bench.make_users(rng, args.users + inserts)
    loaded, fresh = users[:args.users], users[args.users:]
    model = {u['id']: u for u in loaded}
    for u in loaded:
        User(**bench.rom_kwargs(u))
    rom.util.session.commit()
    pipe = blocking.pipeline(False)
    for u in loaded:
        bench.floor_insert_user(pipe, u)
    pipe.execute()
    # the floor's id counter follows rom's (the inserts use the ids rom hands out next)
    floor = aredis.Redis.from_url(url)
    report = Report()
    print('%-18s %5s %7s %12s %12s %7s' % ('workload', 'tasks', 'ops', 'rom ops/s',
                                           'floor ops/s', 'ratio'))
    try:
        for tasks in CONCURRENCY:
            await get_one(report, args, tasks, User, floor, model, rng)
        for tasks in CONCURRENCY:
            await range_query(report, args, tasks, User, floor, model, rng)
        for tasks in CONCURRENCY:  # last: the reads above see only the loaded users
            await insert_one(report, args, tasks, User, floor, fresh)
    finally:
        await (floor.aclose() if hasattr(floor, 'aclose') else floor.close())  # redis-py 4
        await rom.util.aclose_connections()
        blocking.close()
        admin.close()
    if args.json:
        meta = {'users': args.users, 'ops': args.ops, 'reps': args.reps, 'url': url,
                'python': platform.python_version(), 'redis_py': redis.__version__,
                'when': datetime.now(timezone.utc).isoformat(timespec='seconds')}
        with open(args.json, 'w') as handle:
            json.dump({'meta': meta, 'workloads': report.rows}, handle, indent=1)
    for error in report.errors:
        print('error:', error, file=sys.stderr)
    return 1 if report.errors else 0


async def get_one(report: Report, args: argparse.Namespace, tasks: int, User: Any,
                  floor: Any, model: Dict[int, Dict[str, Any]], rng: random.Random) -> None:
    ids = [rng.randint(1, args.users) for _ in range(args.ops)]

    async def rom_get(i: int) -> Any:
        entity = await User.aget(i)
        rom.util.session.rollback()  # this task's identity map: every get reads
        return entity

    async def floor_get(i: int) -> Any:
        return await floor.hgetall('%s:%d' % (bench.FL_U, i))

    errors: List[str] = []
    rom_s, floor_s = [], []
    for _ in range(args.reps):
        seconds, answers = await timed(ids, tasks, rom_get)
        rom_s.append(seconds)
        for i, e in zip(ids, answers):
            check(errors, 'rom get %d' % i, e is not None and e.email == model[i]['email'], e)
        seconds, answers = await timed(ids, tasks, floor_get)
        floor_s.append(seconds)
        for i, row in zip(ids, answers):
            check(errors, 'floor get %d' % i, row.get(b'email', b'').decode()
                  == model[i]['email'], row)
    report.add('get_one', tasks, len(ids), rom_s, floor_s, errors)


async def insert_one(report: Report, args: argparse.Namespace, tasks: int, User: Any,
                     floor: Any, fresh: List[Dict[str, Any]]) -> None:
    errors: List[str] = []
    rom_s, floor_s = [], []
    for _ in range(args.reps):
        batch = [fresh.pop() for _ in range(args.ops)]

        async def rom_insert(u: Dict[str, Any]) -> Any:
            entity = User(**bench.rom_kwargs(u))
            await entity.asave()
            rom.util.session.rollback()
            return entity.id

        async def floor_insert(u: Dict[str, Any]) -> Any:
            pipe = floor.pipeline(transaction=False)
            bench.floor_insert_user(pipe, u)
            await pipe.execute()
            return u['id']

        seconds, rom_ids = await timed(batch, tasks, rom_insert)
        rom_s.append(seconds)
        seconds, _ = await timed(batch, tasks, floor_insert)
        floor_s.append(seconds)
        check(errors, 'rom ids', len(set(rom_ids)) == len(batch), 'duplicate ids')
        for u, i in zip(batch[::max(1, len(batch) // 50)], rom_ids[::max(1, len(batch) // 50)]):
            stored = await User.aget_by(email=u['email'])
            check(errors, 'rom insert %s' % u['email'], stored is not None and stored.id == i
                  and stored.age == u['age'], stored)
            row = await floor.hgetall('%s:%d' % (bench.FL_U, u['id']))
            check(errors, 'floor insert %d' % u['id'], row.get(b'email', b'').decode()
                  == u['email'], row)
        rom.util.session.rollback()
    report.add('insert_one', tasks, args.ops, rom_s, floor_s, errors)


async def range_query(report: Report, args: argparse.Namespace, tasks: int, User: Any,
                      floor: Any, model: Dict[int, Dict[str, Any]], rng: random.Random) -> None:
    windows = []
    for _ in range(args.ops):
        lo = bench.EPOCH0 + timedelta(seconds=rng.randrange(bench.SPAN - 180 * 86400))
        windows.append((lo, lo + timedelta(days=180)))

    def expected(op: Any) -> List[int]:
        lo, hi = dt2ts(op[0]), dt2ts(op[1])
        hits = [u for u in model.values() if lo <= dt2ts(u['created']) <= hi]
        hits.sort(key=lambda u: (-dt2ts(u['created']), str(u['id'])))
        return [u['id'] for u in hits[:20]]

    async def rom_range(op: Any) -> List[int]:
        found = await User.query.filter(created=op).order_by('-created').limit(0, 20).aall()
        rom.util.session.rollback()
        return [e.id for e in found]

    async def floor_range(op: Any) -> List[int]:
        found = await floor.zrevrangebyscore('%s:created:idx' % bench.FL_U, repr(dt2ts(op[1])),
                                             repr(dt2ts(op[0])), start=0, num=20)
        pipe = floor.pipeline(transaction=False)
        for i in found:
            pipe.hgetall('%s:%s' % (bench.FL_U, i.decode()))
        rows = await pipe.execute()
        return [int(row[b'id']) for row in rows]

    errors: List[str] = []
    rom_s, floor_s = [], []
    for _ in range(args.reps):
        for label, fn, sink in (('rom', rom_range, rom_s), ('floor', floor_range, floor_s)):
            seconds, answers = await timed(windows, tasks, fn)
            sink.append(seconds)
            for op, got in zip(windows, answers):
                want = expected(op)
                # ties on 'created' are broken by id bytes on both sides: compare as sets too
                check(errors, '%s range %s' % (label, op[0].date()),
                      got == want or (sorted(got) == sorted(want)), (got[:3], want[:3]))
    report.add('range_order_limit', tasks, len(windows), rom_s, floor_s, errors)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--users', type=int, default=2000, help='users loaded before the reads')
    parser.add_argument('--ops', type=int, default=2000, help='operations per timed run')
    parser.add_argument('--reps', type=int, default=3, help='timed runs per side (median kept)')
    parser.add_argument('--url', default=None, help='Redis URL (a dedicated, empty database); '
                        'default: start an embedded server')
    parser.add_argument('--json', default=None, help='write the results to this file')
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--smoke', action='store_true', help='tiny run (50 users, 100 ops, 1 rep)')
    parser.add_argument('--flush', action='store_true', help='FLUSHDB the database first')
    args = parser.parse_args(argv)
    if args.smoke:
        args.users, args.ops, args.reps = min(args.users, 50), min(args.ops, 100), 1
    if args.users < 20 or args.ops < 1 or args.reps < 1:
        parser.error('--users must be at least 20, --ops and --reps at least 1')
    server = None
    url = args.url
    if not url:
        server = testing.start_embedded_redis()
        url = server.url
    try:
        return asyncio.run(run_all(args, url))
    finally:
        if server is not None:
            server.stop()


if __name__ == '__main__':
    sys.exit(main())
