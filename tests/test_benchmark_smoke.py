"""Smoke test of the benchmark script (benchmarks/bench.py): it runs, checks its answers and
reports every workload. It measures nothing; the benchmark itself is run by hand."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKLOADS = {
    'insert_one', 'insert_one_deferred', 'bulk_insert', 'bulk_insert_deferred', 'get_one', 'get_100', 'get_by_unique', 'range_order_limit',
    'fulltext_word', 'text_range_bool', 'startswith', 'endswith', 'count', 'one_to_many',
    'update_two_indexed', 'delete_cascade',
}


def run_benchmark(script: str, *args: str, timeout: float = 60) -> Any:
    """``python benchmarks/<script> <args>`` from the repository root (its completed run)."""
    return subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', script)] +
                          list(args), capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def smoke_report(script: str, tmp_path: Any, *args: str, timeout: float = 60) -> Any:
    """Run ``benchmarks/<script> --smoke <args> --json <file>``: asserts it exits 0;
    ``(its JSON report, its stdout)``."""
    out = tmp_path / 'report.json'
    proc = run_benchmark(script, '--smoke', *args, '--json', str(out), timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def refuses_non_empty_database(script: str, redis_url: str, conn: Any) -> None:
    """``<script> --smoke`` on a database holding a key exits 2 and leaves the key."""
    conn.set('precious', 'data')
    proc = run_benchmark(script, '--smoke', '--url', redis_url)
    assert proc.returncode == 2 and 'not empty' in proc.stderr
    assert conn.get('precious') == b'data'


def test_bench_smoke(redis_url: str, tmp_path) -> None:
    report, stdout = smoke_report('bench.py', tmp_path, '--flush', '--url', redis_url)
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
        assert name in stdout
    assert 'MET' in stdout or 'MISSED' in stdout


def test_bench_refuses_a_non_empty_database(redis_url: str, conn) -> None:
    refuses_non_empty_database('bench.py', redis_url, conn)


def test_get_one_breakdown_smoke(redis_url: str) -> None:
    proc = run_benchmark('get_one_breakdown.py', '--flush', '--url', redis_url, '--users', '30',
                         '--ops', '20', '--reps', '1')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines[2:5]] == ['User', 'UserText', 'floor']
    assert lines[-1].startswith('without I/O')


def test_async_bench_smoke(redis_url: str, tmp_path) -> None:
    """benchmarks/async_bench.py: every workload at 1 and 50 tasks, answers checked."""
    report, stdout = smoke_report('async_bench.py', tmp_path, '--flush', '--url', redis_url,
                                  timeout=120)
    assert set(report['workloads']) == {'%s@%d' % (name, tasks) for tasks in (1, 50)
                                        for name in ('get_one', 'insert_one',
                                                     'range_order_limit')}
    for key, workload in report['workloads'].items():
        assert workload['correct'], (key, workload['errors'])
        assert workload['rom_ops_per_s'] > 0 and workload['floor_ops_per_s'] > 0, key
        assert workload['ratio'] > 0, key
        assert key.split('@')[0] in stdout


def test_async_bench_refuses_a_non_empty_database(redis_url: str, conn) -> None:
    refuses_non_empty_database('async_bench.py', redis_url, conn)
