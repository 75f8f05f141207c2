"""Quick comparison: rom on one server vs. rom on a local 3-master Redis Cluster.

Not the full benchmark (no hand-written floor): the same five operations on the same data,
once on a private single server (TCP loopback, like the cluster) and once on a private
3-master cluster with the model in cluster mode, both started from the same redis-server
binary through rom.testing. Prints operations per second and the ratio cluster/single.

    python benchmarks/cluster_quick.py [--n 2000]
"""
from __future__ import annotations

import argparse
import subprocess
import time
from typing import Any, Callable, Dict

import redis

import rom
import rom.util
from rom._cluster_harness import _free_port
from rom.testing import redis_server_executable, start_local_cluster


def _rate(count: int, op: Callable[[int], Any]) -> float:
    started = time.perf_counter()
    for i in range(count):
        op(i)
        rom.util.session.rollback()
    return count / (time.perf_counter() - started)


def run(client: Any, cluster: bool, n: int) -> Dict[str, float]:
    rom.util.CONNECTION = client
    body: Dict[str, Any] = {'email': rom.Text(unique=True), 'age': rom.Integer(index=True),
                            'name': rom.Text(index=True, keygen=rom.FULL_TEXT)}
    if cluster:
        body['_cluster'] = True
    model: Any = type('Quick%s' % ('C' if cluster else 'S'), (rom.Model,), body)
    return {
        'insert': _rate(n, lambda i: model(email='e%d' % i, age=i % 100,
                                           name='n%d x' % (i % 50)).save()),
        'get': _rate(n, lambda i: model.get(i + 1)),
        'get_by unique': _rate(n, lambda i: model.get_by(email='e%d' % i)),
        'range + order + limit 10': _rate(n // 4, lambda i: model.query.filter(
            age=(10, 20)).order_by('-age').limit(0, 10).all()),
        'two filters, count': _rate(n // 4, lambda i: model.query.filter(name='x').filter(
            age=(10, 20)).count()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--n', type=int, default=2000, help='entities (default 2000)')
    args = parser.parse_args()
    port = _free_port([])
    single = subprocess.Popen([redis_server_executable(), '--port', str(port), '--save', '',
                               '--appendonly', 'no', '--bind', '127.0.0.1'],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cluster = start_local_cluster(masters=3)
    try:
        plain = redis.Redis(host='127.0.0.1', port=port)
        for _ in range(100):
            try:
                plain.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        one = run(plain, False, args.n)
        three = run(cluster.client(), True, args.n)
        print('%-26s %12s %12s %7s' % ('operation', 'single op/s', 'cluster op/s', 'ratio'))
        for op in one:
            print('%-26s %12.0f %12.0f %7.2f' % (op, one[op], three[op], three[op] / one[op]))
    finally:
        single.terminate()
        single.wait(10)
        cluster.stop()


if __name__ == '__main__':
    main()
