"""Smoke test of the maintenance benchmark (benchmarks/maintenance.py): it runs tiny, its
jobs leave a healthy database exactly as it was, and it reports rows/s for each job. It
measures nothing; the benchmark itself is run by hand."""
from __future__ import annotations

from test_benchmark_smoke import refuses_non_empty_database, smoke_report


def test_maintenance_benchmark_smoke(redis_url: str, tmp_path) -> None:
    report, stdout = smoke_report('maintenance.py', tmp_path, '--flush', '--url', redis_url,
                                  timeout=120)
    assert report['rows'] == 200 and report['errors'] == []
    assert set(report['jobs']) == {'check', 'reindex', 'reindex_rebuild', 'clean'}
    for name, job in report['jobs'].items():
        assert job['rows_per_s'] > 0 and len(job['seconds']) == 1, name
        assert name in stdout


def test_maintenance_benchmark_refuses_a_non_empty_database(redis_url: str, conn) -> None:
    refuses_non_empty_database('maintenance.py', redis_url, conn)
