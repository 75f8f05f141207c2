"""Smoke test of the maintenance benchmark (benchmarks/maintenance.py): it runs tiny, its
jobs leave a healthy database exactly as it was, and it reports rows/s for each job. It
measures nothing; the benchmark itself is run by hand."""
from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, 'benchmarks', 'maintenance.py')


def test_maintenance_benchmark_smoke(redis_url: str, tmp_path) -> None:
    out = tmp_path / 'maintenance.json'
    proc = subprocess.run(
        [sys.executable, BENCH, '--smoke', '--flush', '--url', redis_url, '--json', str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report['rows'] == 200 and report['errors'] == []
    assert set(report['jobs']) == {'check', 'reindex', 'reindex_rebuild', 'clean'}
    for name, job in report['jobs'].items():
        assert job['rows_per_s'] > 0 and len(job['seconds']) == 1, name
        assert name in proc.stdout


def test_maintenance_benchmark_refuses_a_non_empty_database(redis_url: str, conn) -> None:
    conn.set('something', 1)
    proc = subprocess.run([sys.executable, BENCH, '--smoke', '--url', redis_url],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and 'not empty' in proc.stderr
    assert conn.get('something') == b'1'
