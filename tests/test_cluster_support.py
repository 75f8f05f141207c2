"""Which redis-py can drive rom on Redis Cluster (runs with every redis-py, no cluster needed).

rom sends each slot's work as MULTI/EXEC through ``RedisCluster.pipeline(transaction=True)``,
which redis-py supports from 6.1.0 on. With an older redis-py, rom refuses a cluster client
with a clear ``ORMError`` before sending anything, and the suite leaves out the tests marked
``cluster`` (the report header says so).
"""
from __future__ import annotations

import pytest
import redis
from redis.cluster import RedisCluster

from rom._cluster import CLUSTER_MIN_REDIS_PY, cluster_support_error, is_cluster_client
from rom.exceptions import ORMError


@pytest.mark.parametrize('version, supported', [
    ('4.5.5', False), ('5.2.1', False), ('6.0.0', False), ('6.1.0', True), ('6.2.0', True),
    ('7.0.1', True), ('8.2.0', True), ('10.0.0b1', True), ('6.0', False),
])
def test_cluster_support_by_redis_py_version(version, supported):
    problem = cluster_support_error(version)
    assert (problem is None) is supported
    if problem:
        assert version in problem and '6.1.0' in problem


def test_a_cluster_client_is_refused_or_accepted_by_the_installed_redis_py():
    # an instance of the real class, never connected: only its type matters here
    client = object.__new__(RedisCluster)
    assert not is_cluster_client(redis.Redis())
    if cluster_support_error(redis.__version__):
        with pytest.raises(ORMError, match='redis-py >= 6.1.0'):
            is_cluster_client(client)
    else:
        assert is_cluster_client(client)
    assert CLUSTER_MIN_REDIS_PY == (6, 1, 0)
