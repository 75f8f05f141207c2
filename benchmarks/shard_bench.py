"""Sharded models on a local Redis Cluster: throughput and round trips per operation.

    python benchmarks/shard_bench.py [--masters 1 2 3] [--shards 12] [--rows 2000] [--json]

For each master count a fresh local cluster (``rom.testing.start_local_cluster``) runs the
workloads on a sharded model (``_shards``) and on the same model in plain cluster mode (one
hash slot). Round trips are counted on every node (a pipeline or packed write is one).
Single client thread; on a small machine the servers share its cores, so the numbers show
the fan-out cost more than the scaling (see docs/guide/sharding.rst for the cost model).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from contextlib import ExitStack
from typing import Any, Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rom  # noqa: E402
import rom.util  # noqa: E402
from rom._ids import forget_blocks  # noqa: E402
from rom._shard import forget_checks  # noqa: E402
from rom.testing import instrument, roundtrips, start_local_cluster  # noqa: E402

WORDS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel']


def declare(name: str, shards: int) -> Any:
    body: Dict[str, Any] = {
        'email': rom.Text(unique=True),
        'n': rom.Integer(index=True),
        'name': rom.Text(index=True, keygen=rom.FULL_TEXT),
    }
    if shards:
        body['_shards'] = shards
    else:
        body['_cluster'] = True
    return type(name, (rom.Model,), body)


def measure(counted: List[Any], op: Callable[[], Any], repeat: int) -> Dict[str, float]:
    rom.util.session.rollback()
    start = time.perf_counter()
    with ExitStack() as stack:
        counters = [stack.enter_context(roundtrips(c)) for c in counted]
        for _ in range(repeat):
            op()
            rom.util.session.rollback()
    elapsed = time.perf_counter() - start
    trips = sum(rt.count for rt in counters)
    return {'ops_per_s': round(repeat / elapsed, 1), 'round_trips': round(trips / repeat, 2)}


def workloads(model: Any, rows: int, rng: random.Random) -> Dict[str, Callable[[], Any]]:
    counter = iter(range(10 ** 9))
    return {
        'insert': lambda: model(email='new%d@x' % next(counter), n=rng.randint(0, 999),
                                name=' '.join(rng.sample(WORDS, 2))).save(),
        'get_one': lambda: model.get(rng.randint(1, rows)),
        'get_by_unique': lambda: model.get_by(email='u%d@x' % rng.randint(0, rows - 1)),
        'range_order_limit': lambda: model.query.filter(n=(100, 600)).order_by('-n')
        .limit(0, 10).all(),
        'fulltext_word': lambda: model.query.filter(name=rng.choice(WORDS)).limit(0, 10).all(),
        'count': lambda: model.query.filter(name=rng.choice(WORDS)).count(),
    }


def run(masters: int, shards: int, rows: int, repeat: int) -> Dict[str, Any]:
    cluster = start_local_cluster(masters=masters)
    out: Dict[str, Any] = {}
    try:
        for label, count in (('sharded', shards), ('one_slot', 0)):
            cluster.flushall()
            forget_blocks()
            forget_checks()
            client = cluster.client()
            rom.util.CONNECTION = client
            model = declare('Bench%s%d' % (label.title().replace('_', ''), masters), count)
            rng = random.Random(1)
            for i in range(rows):
                model(email='u%d@x' % i, n=rng.randint(0, 999),
                      name=' '.join(rng.sample(WORDS, 2))).save()
            counted = [instrument(node.redis_connection) for node in client.get_nodes()]
            for node in client.get_nodes():
                node.redis_connection.connection_pool.reset()
            result = {}
            for name, op in workloads(model, rows, rng).items():
                op()  # scripts cached, metadata checked
                result[name] = measure(counted, op, repeat)
            out[label] = result
            client.close()
    finally:
        cluster.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--masters', type=int, nargs='+', default=[1, 2, 3])
    parser.add_argument('--shards', type=int, default=12)
    parser.add_argument('--rows', type=int, default=2000)
    parser.add_argument('--repeat', type=int, default=300)
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    results = {m: run(m, args.shards, args.rows, args.repeat) for m in args.masters}
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print('%d shards, %d rows; ops/s (messages per op: round trips summed over the masters)'
          % (args.shards, args.rows))
    names = list(next(iter(results.values()))['sharded'])
    print('%-18s' % '' + ''.join('%-26s' % ('%d master(s)' % m) for m in results))
    print('%-18s' % 'workload' + ''.join('%-26s' % 'sharded    | one slot' for _ in results))
    for name in names:
        cells = []
        for m in results:
            s, o = results[m]['sharded'][name], results[m]['one_slot'][name]
            cells.append('%-26s' % ('%5.0f (%-4g) | %5.0f (%g)' % (
                s['ops_per_s'], s['round_trips'], o['ops_per_s'], o['round_trips'])))
        print('%-18s' % name + ''.join(cells).rstrip())


if __name__ == '__main__':
    main()
