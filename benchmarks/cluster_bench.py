#!/usr/bin/env python
"""rom on Redis Cluster: the benchmark's workloads on one server and on a 3-master cluster.

Two private servers are started from the same ``redis-server`` binary (through
``rom.testing``, both on TCP loopback): a single server, and a local cluster of 3 masters.
On each, every workload runs twice on the same data:

* **rom**: the ORM call (``User(...).save()``, ``User.get(ids)``, ``User.query...``), with
  the model in cluster mode (``_cluster = True``, keys ``{BUser}:...``) on the cluster and
  a default model (keys ``BUser:...``, rom 1.1.2's layout) on the single server;
* **floor**: the same Redis work written by hand with redis-py (``redis.Redis`` on the
  single server, ``redis.cluster.RedisCluster`` on the cluster), on an identical copy of
  the data under namespace ``Fl`` (``{Fl}`` on the cluster): the cheapest plain-command
  form, e.g. one pipelined round trip per insert, ``HGETALL``, ``ZRANGEBYSCORE ... LIMIT``
  then pipelined ``HGETALL``s.

Both answers are checked against each other. Reported per workload and deployment:
operations per second of each side, their ratio (rom/floor), and the round trips and
commands rom and the floor send per operation (counted on every node's connections by
``rom.testing.roundtrips``), plus the cluster/single ratio of rom's throughput.

    python benchmarks/cluster_bench.py [--users 2000] [--reps 3] [--json out.json] [--smoke]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing

import redis  # noqa: E402

import rom  # noqa: E402
import rom.util  # noqa: E402
from rom import testing  # noqa: E402
from rom._cluster_harness import _free_port  # noqa: E402

WORDS = ('alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron '
         'pi rho sigma tau upsilon phi chi psi omega').split()
WORKLOADS = ('insert_one', 'get_one', 'get_100', 'get_by_unique', 'range_order_limit',
             'word_and_range_count', 'update_two_indexed', 'delete')


def make_users(n: int, seed: int) -> List[Dict[str, Any]]:
    rng = random.Random(seed)
    return [{'email': 'u%d@example.com' % i, 'age': rng.randint(18, 80),
             'score': round(rng.uniform(0, 1000), 3),
             'name': ' '.join(rng.sample(WORDS, 2)),
             'bio': ' '.join(rng.choice(WORDS) for _ in range(12))} for i in range(1, n + 1)]


def define_model(cluster: bool) -> Any:
    body: Dict[str, Any] = {
        'email': rom.Text(unique=True), 'name': rom.Text(index=True, keygen=rom.FULL_TEXT),
        'age': rom.Integer(index=True), 'score': rom.Float(index=True), 'bio': rom.Text()}
    if cluster:
        body['_cluster'] = True
    return type('BUser', (rom.Model,), body)


class Floor:
    """The hand-written floor on namespace ``ns`` (``Fl`` or ``{Fl}``) of client ``conn``."""

    def __init__(self, conn: Any, ns: str) -> None:
        self.conn = conn
        self.ns = ns

    def insert(self, i: int, u: Dict[str, Any]) -> None:
        ns, p = self.ns, self.conn.pipeline(transaction=False)
        p.incr(ns + ':id:')
        p.hset('%s:%d' % (ns, i), mapping={'id': i, 'email': u['email'], 'name': u['name'],
                                            'age': u['age'], 'score': repr(u['score']),
                                            'bio': u['bio']})
        p.hset(ns + ':email:uidx', u['email'], i)
        for word in u['name'].split():
            p.sadd('%s:name:%s:idx' % (ns, word), i)
        p.zadd(ns + ':age:idx', {i: u['age']})
        p.zadd(ns + ':score:idx', {i: u['score']})
        p.execute()

    def get(self, i: int) -> Any:
        return self.conn.hgetall('%s:%d' % (self.ns, i))

    def get_many(self, ids: Sequence[int]) -> List[Any]:
        p = self.conn.pipeline(transaction=False)
        for i in ids:
            p.hgetall('%s:%d' % (self.ns, i))
        return p.execute()

    def get_by_email(self, email: str) -> Any:
        i = self.conn.hget(self.ns + ':email:uidx', email)
        return self.get(int(i)) if i else None

    def range_order_limit(self, lo: int, hi: int) -> List[Any]:
        ids = self.conn.zrangebyscore(self.ns + ':age:idx', lo, hi, start=0, num=10)
        return self.get_many([int(i) for i in ids])

    def word_and_range_count(self, word: str, lo: int, hi: int) -> int:
        tmp = '%s:tmp' % (self.ns,)
        p = self.conn.pipeline(transaction=True)
        p.zinterstore(tmp, {'%s:name:%s:idx' % (self.ns, word): 0, self.ns + ':age:idx': 1})
        p.zcount(tmp, lo, hi)
        p.delete(tmp)
        return int(p.execute()[1])

    def update(self, i: int, age: int, score: float) -> None:
        p = self.conn.pipeline(transaction=False)
        p.hset('%s:%d' % (self.ns, i), mapping={'age': age, 'score': repr(score)})
        p.zadd(self.ns + ':age:idx', {i: age})
        p.zadd(self.ns + ':score:idx', {i: score})
        p.execute()

    def delete(self, i: int, u: Dict[str, Any]) -> None:
        p = self.conn.pipeline(transaction=False)
        p.delete('%s:%d' % (self.ns, i))
        p.hdel(self.ns + ':email:uidx', u['email'])
        for word in u['name'].split():
            p.srem('%s:name:%s:idx' % (self.ns, word), i)
        p.zrem(self.ns + ':age:idx', i)
        p.zrem(self.ns + ':score:idx', i)
        p.execute()


def _timed(ops: Sequence[Any], fn: Callable[[Any], Any]) -> float:
    started = time.perf_counter()
    for op in ops:
        fn(op)
    rom.util.session.rollback()
    return time.perf_counter() - started


def _counted(conn: Any, ops: Sequence[Any], fn: Callable[[Any], Any]) -> Tuple[float, float]:
    with testing.roundtrips(conn) as rt:
        for op in ops:
            fn(op)
    rom.util.session.rollback()
    return rt.count / len(ops), rt.command_count / len(ops)


def run_deployment(conn: Any, cluster: bool, users: List[Dict[str, Any]], reps: int,
                   seed: int) -> Dict[str, Dict[str, Any]]:
    """Every workload on one deployment; returns {workload: figures}."""
    rom.util.CONNECTION = conn
    model = define_model(cluster)
    floor = Floor(conn, '{Fl}' if cluster else 'Fl')
    n = len(users)
    rng = random.Random(seed)
    results: Dict[str, Dict[str, Any]] = {}

    def bench(name: str, ops: Sequence[Any], rom_fn: Callable[[Any], Any],
              floor_fn: Callable[[Any], Any], repeat: bool = True,
              check: Optional[Callable[[Any], Tuple[Any, Any]]] = None,
              count: Optional[Tuple[Sequence[Any], Callable[[Any], Any], Callable[[Any], Any]]]
              = None, per_rep: Optional[Callable[[int], Sequence[Any]]] = None) -> None:
        """Time ``ops`` on both sides (best of ``reps``; one pass without ``repeat``;
        ``per_rep(rep)`` makes each pass's operations, untimed, for operations that change
        the data), then count round trips and commands on 50 operations (``count``: other
        operations, for the passes that cannot be repeated)."""
        def rom_op(op: Any) -> None:
            rom_fn(op)
            rom.util.session.rollback()  # no entity served from the session

        best = {'rom': float('inf'), 'floor': float('inf')}
        for rep in range(reps if repeat else 1):
            if per_rep is not None:
                ops = per_rep(rep)
            for side, fn in (('rom', rom_op), ('floor', floor_fn)) if rep % 2 == 0 else \
                    (('floor', floor_fn), ('rom', rom_op)):
                best[side] = min(best[side], _timed(ops, fn))
        sample, rom_count, floor_count = count or (ops[:50], rom_op, floor_fn)
        counts = {'rom': _counted(conn, sample, rom_count),
                  'floor': _counted(conn, sample, floor_count)}
        if check is not None:
            for op in ops[:20]:
                got_rom, got_floor = check(op)
                assert got_rom == got_floor, (name, op, got_rom, got_floor)
        rom_rate, floor_rate = len(ops) / best['rom'], len(ops) / best['floor']
        results[name] = {
            'rom_ops_per_s': round(rom_rate), 'floor_ops_per_s': round(floor_rate),
            'ratio': round(rom_rate / floor_rate, 3),
            'rom_roundtrips_per_op': counts['rom'][0], 'rom_commands_per_op': counts['rom'][1],
            'floor_roundtrips_per_op': counts['floor'][0],
            'floor_commands_per_op': counts['floor'][1]}

    # inserts: the first pass writes the users the other workloads read (ids 1..n on both
    # sides), later passes n / 2 more users each (other emails; the floor's ids follow on)
    def insert_round(rep: int) -> List[Tuple[int, Dict[str, Any]]]:
        if rep == 0:
            return [(i, users[i - 1]) for i in range(1, n + 1)]
        return [(n * (rep + 1) + j, dict(users[j - 1], email='r%d-%s' % (rep, users[j - 1][
            'email']))) for j in range(1, n // 2 + 1)]

    def rom_insert(op: Tuple[int, Dict[str, Any]]) -> None:
        model(**op[1]).save()

    def floor_insert(op: Tuple[int, Dict[str, Any]]) -> None:
        floor.insert(*op)

    counted = [(n * 100 + j, dict(users[j - 1], email='c-' + users[j - 1]['email']))
               for j in range(1, 51)]
    bench('insert_one', [], rom_insert, floor_insert, per_rep=insert_round,
          count=(counted, rom_insert, floor_insert))
    picks = [rng.randint(1, n) for _ in range(max(200, n // 2))]
    bench('get_one', picks, lambda i: model.get(i), floor.get,
          check=lambda i: (model.get(i).email, floor.get(i)[b'email'].decode()))
    hundreds = [rng.sample(range(1, n + 1), 100) for _ in range(max(20, n // 50))]
    bench('get_100', hundreds, lambda ids: model.get(ids), floor.get_many,
          check=lambda ids: ([u.id for u in model.get(ids)],
                             [int(r[b'id']) for r in floor.get_many(ids)]))
    bench('get_by_unique', picks, lambda i: model.get_by(email='u%d@example.com' % i),
          lambda i: floor.get_by_email('u%d@example.com' % i),
          check=lambda i: (model.get_by(email='u%d@example.com' % i).id,
                           int(floor.get_by_email('u%d@example.com' % i)[b'id'])))
    ranges = [(a, a + 5) for a in (rng.randint(18, 75) for _ in range(max(100, n // 10)))]
    bench('range_order_limit', ranges,
          lambda r: model.query.filter(age=r).order_by('age').limit(0, 10).all(),
          lambda r: floor.range_order_limit(*r),
          check=lambda r: (len(model.query.filter(age=r).order_by('age').limit(0, 10).all()),
                           len(floor.range_order_limit(*r))))
    mixed = [(rng.choice(WORDS), a, a + 20)
             for a in (rng.randint(18, 60) for _ in range(max(100, n // 10)))]
    bench('word_and_range_count', mixed,
          lambda op: model.query.filter(name=op[0]).filter(age=(op[1], op[2])).count(),
          lambda op: floor.word_and_range_count(*op),
          check=lambda op: (model.query.filter(name=op[0]).filter(age=(op[1], op[2])).count(),
                            floor.word_and_range_count(*op)))
    chosen = sorted(set(picks))[:200]
    loaded = {e.id: e for e in model.get(chosen)}
    rom.util.session.rollback()

    def updates(k: int) -> List[Tuple[int, int, float]]:
        return [(i, 18 + (i + k) % 60, float(i * 7 + k)) for i in chosen]

    def rom_update(op: Tuple[int, int, float]) -> None:
        entity = loaded[op[0]]
        entity.age, entity.score = op[1], op[2]
        entity.save()

    def floor_update(op: Tuple[int, int, float]) -> None:
        floor.update(*op)

    bench('update_two_indexed', updates(1), rom_update, floor_update,
          per_rep=lambda rep: updates(rep + 1), count=(updates(99)[:50], rom_update,
                                                       floor_update))
    size = max(50, min(200, n // 10))

    def delete_round(rep: int) -> List[Tuple[Any, Dict[str, Any]]]:
        """Fresh users (rom's and the floor's copies, same ids) for one pass of deletes."""
        batch = [dict(u, email='del%d-%s' % (rep, u['email'])) for u in users[:size]]
        entities = [model(**u) for u in batch]
        rom.util.session.commit()
        rom.util.session.rollback()
        for entity, u in zip(entities, batch):
            floor.insert(entity.id, u)
        return list(zip(entities, batch))

    def rom_delete(op: Tuple[Any, Dict[str, Any]]) -> None:
        op[0].delete()

    def floor_delete(op: Tuple[Any, Dict[str, Any]]) -> None:
        floor.delete(op[0].id, op[1])

    bench('delete', [], rom_delete, floor_delete, per_rep=delete_round,
          count=(delete_round(99)[:50], rom_delete, floor_delete))
    return results


def _start_single() -> Tuple[subprocess.Popen, redis.Redis]:
    port = _free_port([])
    proc = subprocess.Popen([testing.redis_server_executable(), '--port', str(port), '--save',
                             '', '--appendonly', 'no', '--bind', '127.0.0.1'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = testing.counting_client('redis://127.0.0.1:%d' % port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return proc, client


def print_table(report: Dict[str, Any]) -> None:
    single, cluster = report['single'], report['cluster']
    print('%-22s %9s %9s %6s %9s %9s %6s %8s  %s' % (
        'workload', 'single', 'floor', 'ratio', 'cluster', 'floor', 'ratio', 'clu/sgl',
        'rt/op rom|floor (single; cluster), commands/op rom|floor'))
    for name in WORKLOADS:
        s, c = single[name], cluster[name]
        print('%-22s %9d %9d %6.2f %9d %9d %6.2f %8.2f  %s|%s; %s|%s  %s|%s; %s|%s' % (
            name, s['rom_ops_per_s'], s['floor_ops_per_s'], s['ratio'], c['rom_ops_per_s'],
            c['floor_ops_per_s'], c['ratio'], c['rom_ops_per_s'] / s['rom_ops_per_s'],
            _n(s['rom_roundtrips_per_op']), _n(s['floor_roundtrips_per_op']),
            _n(c['rom_roundtrips_per_op']), _n(c['floor_roundtrips_per_op']),
            _n(s['rom_commands_per_op']), _n(s['floor_commands_per_op']),
            _n(c['rom_commands_per_op']), _n(c['floor_commands_per_op'])))


def _n(value: Optional[float]) -> str:
    return '-' if value is None else ('%.2f' % value).rstrip('0').rstrip('.')


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--users', type=int, default=2000, help='entities (default 2000)')
    parser.add_argument('--reps', type=int, default=3, help='timed passes, best kept (3)')
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--json', metavar='PATH', help='also write the figures as JSON')
    parser.add_argument('--smoke', action='store_true', help='200 users, one pass (tests)')
    args = parser.parse_args(argv)
    if args.smoke:
        args.users, args.reps = 200, 1
    users = make_users(args.users, args.seed)
    proc, single = _start_single()
    local = testing.start_local_cluster(masters=3)
    report: Dict[str, Any] = {'meta': {
        'users': args.users, 'reps': args.reps, 'redis_py': redis.__version__,
        'server': single.info('server').get('redis_version'), 'masters': 3,
        'load_average': os.getloadavg()[0] if hasattr(os, 'getloadavg') else None}}
    try:
        report['single'] = run_deployment(single, False, users, args.reps, args.seed)
        testing.restore_model_registry(({}, {}))
        client = testing.instrument(local.client())
        report['cluster'] = run_deployment(client, True, users, args.reps, args.seed)
        client.close()
    finally:
        single.close()
        proc.terminate()
        proc.wait(10)
        local.stop()
    print('rom on one server and on a local 3-master Redis Cluster (%d users, best of %d; '
          'redis-server %s, redis-py %s)' % (args.users, args.reps, report['meta']['server'],
                                            redis.__version__))
    print_table(report)
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump(report, handle, indent=2, sort_keys=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
