"""Smoke test of benchmarks/cluster_bench.py: it runs on a private single server and a
private 3-master cluster, checks rom's answers against the floor's and reports every
workload. It measures nothing; the benchmark itself is run by hand."""
from __future__ import annotations

import pytest

from test_benchmark_smoke import smoke_report

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

def test_cluster_bench_smoke(tmp_path) -> None:
    report, _ = smoke_report('cluster_bench.py', tmp_path, timeout=240)
    workloads = ('insert_one', 'get_one', 'get_100', 'get_by_unique', 'range_order_limit',
                 'word_and_range_count', 'update_two_indexed', 'delete')
    for side in ('single', 'cluster'):
        assert set(report[side]) == set(workloads)
        for name in workloads:
            entry = report[side][name]
            assert entry['rom_ops_per_s'] > 0 and entry['floor_ops_per_s'] > 0, (side, name)
    # rom takes as many round trips on the cluster as on one server (inserts aside: their
    # id reservations depend on timing)
    for name in workloads[1:]:
        assert report['cluster'][name]['rom_roundtrips_per_op'] == \
            report['single'][name]['rom_roundtrips_per_op'], name
    assert report['single']['get_one']['rom_roundtrips_per_op'] == 1
