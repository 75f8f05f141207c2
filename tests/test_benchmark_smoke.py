"""Smoke test of the benchmark script (benchmarks/bench.py): it runs, checks its answers and
reports every workload. It measures nothing; the benchmark itself is run by hand."""
from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, 'benchmarks', 'bench.py')

WORKLOADS = {
    'insert_one', 'insert_one_deferred', 'bulk_insert', 'bulk_insert_deferred', 'get_one', 'get_100', 'get_by_unique', 'range_order_limit',
    'fulltext_word', 'text_range_bool', 'startswith', 'endswith', 'count', 'one_to_many',
    'update_two_indexed', 'delete_cascade',
}


def test_bench_smoke(redis_url: str, tmp_path) -> None:
    out = tmp_path / 'bench.json'
    proc = subprocess.run(
        [sys.executable, BENCH, '--smoke', '--flush', '--url', redis_url, '--json', str(out)],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report['workloads']) == WORKLOADS
    for name, workload in report['workloads'].items():
        assert workload['correct'], (name, workload['errors'])
        assert workload['rom']['ops'] > 0 and workload['floor']['ops'] > 0, name
        assert workload['rom']['ops_per_s'] > 0 and workload['floor']['ops_per_s'] > 0, name
        assert isinstance(workload['met'], bool), name
    assert report['memory']['layout_identical'] and report['memory']['layout_identical_at_end']
    # round trips are exact: one per save, besides the reservations of blocks of ids (one
    # INCRBY each, fewer than the entities), for both the default and the _defer_ids model
    workloads = report['workloads']
    for name in ('insert_one', 'insert_one_deferred'):
        rom_side = workloads[name]['rom']
        reservations = rom_side['commands_sent'].get('INCRBY', 0)
        assert 0 < reservations < 1 and rom_side['roundtrips_per_op'] == 1 + reservations
    deferred = workloads['insert_one_deferred']
    assert deferred['defer_id'] and deferred['memory']['layout_identical']
    # a bulk commit: one round trip per commit plus at most one reservation
    assert workloads['bulk_insert']['rom']['roundtrips_per_op'] < 0.5
    assert workloads['bulk_insert_deferred']['rom']['roundtrips_per_op'] < 0.5
    assert report['meta']['users'] == 50
    for name in WORKLOADS:  # the table on stdout names every workload and its verdict
        assert name in proc.stdout
    assert 'MET' in proc.stdout or 'MISSED' in proc.stdout


def test_bench_refuses_a_non_empty_database(redis_url: str, conn) -> None:
    conn.set('precious', 'data')
    proc = subprocess.run([sys.executable, BENCH, '--smoke', '--url', redis_url],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert 'not empty' in proc.stderr
    assert conn.get('precious') == b'data'


def test_get_one_breakdown_smoke(redis_url: str) -> None:
    script = os.path.join(ROOT, 'benchmarks', 'get_one_breakdown.py')
    proc = subprocess.run(
        [sys.executable, script, '--flush', '--url', redis_url, '--users', '30', '--ops', '20',
         '--reps', '1'], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines[2:5]] == ['User', 'UserText', 'floor']
    assert lines[-1].startswith('without I/O')


def test_async_bench_smoke(redis_url: str, tmp_path) -> None:
    """benchmarks/async_bench.py: every workload at 1 and 50 tasks, answers checked."""
    out = tmp_path / 'async_bench.json'
    script = os.path.join(ROOT, 'benchmarks', 'async_bench.py')
    proc = subprocess.run(
        [sys.executable, script, '--smoke', '--flush', '--url', redis_url, '--json', str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report['workloads']) == {'%s@%d' % (name, tasks) for tasks in (1, 50)
                                        for name in ('get_one', 'insert_one',
                                                     'range_order_limit')}
    for key, workload in report['workloads'].items():
        assert workload['correct'], (key, workload['errors'])
        assert workload['rom_ops_per_s'] > 0 and workload['floor_ops_per_s'] > 0, key
        assert workload['ratio'] > 0, key
        assert key.split('@')[0] in proc.stdout


def test_async_bench_refuses_a_non_empty_database(redis_url: str, conn) -> None:
    conn.set('precious', 'data')
    script = os.path.join(ROOT, 'benchmarks', 'async_bench.py')
    proc = subprocess.run([sys.executable, script, '--smoke', '--url', redis_url],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and 'not empty' in proc.stderr
    assert conn.get('precious') == b'data'
