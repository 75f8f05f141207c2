"""Which ``redis.asyncio`` client the async API uses: settings, environment, models, cluster.

As in tests/test_async_write.py the blocking client factory raises in every test: finding
an async client never goes through it (nor does any I/O).
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from typing import Any, Dict, Iterator

import pytest
import redis

import rom
from rom import util
from rom.exceptions import UniqueKeyViolation
from rom.util import session

from test_async_write import blocking_factory_raises  # noqa: F401 (autouse fixture)
from test_async_write import refuse_blocking_client


def _server_kwargs(conn: Any) -> Dict[str, Any]:
    """``redis.Redis(...)`` keywords reaching the test server and database of ``conn``."""
    kwargs = conn.connection_pool.connection_kwargs
    out = {'db': kwargs.get('db', 0)}
    if kwargs.get('path'):
        out['unix_socket_path'] = kwargs['path']
    else:
        out.update(host=kwargs['host'], port=kwargs['port'])
    return out


async def test_set_connection_settings_configures_the_async_client(conn):
    util.set_connection_settings(decode_responses=True, **_server_kwargs(conn))
    try:
        class Named(rom.Model):
            name = rom.Text(unique=True, keygen=rom.IDENTITY)

        first = util.get_async_connection()
        assert first is util.get_async_connection()  # one per loop
        assert first.connection_pool.connection_kwargs['decode_responses'] is True
        entity = Named(name='x')
        await entity.asave()
        assert await first.hget(entity._pk, 'name') == 'x'  # str: decode_responses
        with pytest.raises(UniqueKeyViolation):
            await Named(name='x').asave()
        session.rollback()
        assert (await Named.aget(entity.id)).name == 'x'
        await (await Named.aget(entity.id)).adelete()
        assert not conn.exists(entity._pk)
    finally:
        await util.aclose_connections()
        util.CONNECTION.close()
        util.CONNECTION = conn


async def test_a_model_with_its_own_blocking_client_gets_its_async_twin(conn, decoding_conn):
    class Remote(rom.Model):
        _conn = decoding_conn
        name = rom.Text()

    remote = Remote(name='r')
    await remote.asave()
    assert conn.hget(remote._pk, 'name') == b'r'
    twin = rom._aconnect.aconnect(Remote)
    assert twin is not util.get_async_connection()
    assert twin.connection_pool.connection_kwargs.get('decode_responses') is True
    assert rom._aconnect.aconnect(remote) is twin


def test_one_async_client_per_event_loop(conn, monkeypatch):
    refuse_blocking_client(monkeypatch)
    seen = []

    async def client() -> None:
        seen.append(util.get_async_connection())
        assert util.get_async_connection() is seen[-1]
        await util.aclose_connections()

    asyncio.run(client())
    asyncio.run(client())
    assert seen[0] is not seen[1]


def _run_with_env(env: Dict[str, str], code: str) -> str:
    full = dict(os.environ, **env)
    full['PYTHONPATH'] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(rom.__file__)))]
        + [p for p in [os.environ.get('PYTHONPATH')] if p])
    done = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], env=full,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


_SAVE_IN_A_COROUTINE = '''
    import asyncio, rom, rom.util

    def refuse(*args):
        raise AssertionError('blocking client factory used')

    rom.util._connect = rom.util.get_connection = refuse

    class EnvModel(rom.Model):
        %s
        name = rom.Text()

    async def main():
        client = rom.util.get_async_connection()
        entity = EnvModel(name='from env')
        await entity.asave()
        print(type(client).__module__ + '.' + type(client).__name__, entity._pk)
        await rom.util.aclose_connections()

    asyncio.run(main())
'''


def test_rom_redis_uri_configures_the_async_client(conn, redis_url):
    out = _run_with_env({'ROM_REDIS_URI': redis_url}, _SAVE_IN_A_COROUTINE % 'pass')
    kind, pk = out.split()
    assert kind == 'redis.asyncio.client.Redis'
    assert conn.hget(pk, 'name') == b'from env'


@pytest.mark.cluster
def test_rom_redis_cluster_gives_an_async_redis_cluster():
    from rom.testing import start_local_cluster
    cluster = start_local_cluster(masters=3)
    try:
        out = _run_with_env({'ROM_REDIS_URI': cluster.url, 'ROM_REDIS_CLUSTER': '1'},
                            _SAVE_IN_A_COROUTINE % '_cluster = True')
        kind, pk = out.split()
        assert kind == 'redis.asyncio.cluster.RedisCluster'
        client = cluster.client()
        try:
            assert client.hget(pk, 'name') == b'from env'
        finally:
            client.close()
    finally:
        cluster.stop()


@pytest.fixture
def cluster_conn() -> Iterator[Any]:
    from rom.testing import start_local_cluster
    cluster = start_local_cluster(masters=3)
    client = cluster.client()
    saved = util.CONNECTION
    util.CONNECTION = client
    try:
        yield client
    finally:
        util.CONNECTION = saved
        client.close()
        cluster.stop()


@pytest.mark.cluster
async def test_async_api_on_a_cluster(cluster_conn):
    from rom._audit import audit_model
    from test_async_write import blocking_allowed

    class Owner(rom.Model):
        _cluster = 'shop'
        email = rom.String(unique=True, keygen=rom.IDENTITY)
        credit = rom.Integer(index=True, default=0)

    class Order(rom.Model):
        _cluster = 'shop'
        owner = rom.ManyToOne('Owner', on_delete='cascade')

    class Tag(rom.Model):
        _cluster = True
        label = rom.Text()

    class Review(rom.Model):  # another hash tag: relations across slots
        _cluster = 'reviews'
        owner = rom.ManyToOne('Owner', on_delete='cascade')

    client = util.get_async_connection()
    assert type(client).__module__ == 'redis.asyncio.cluster'
    ann, bob = Owner(email=b'ann', credit=10), Owner(email=b'bob')
    orders = [Order(owner=ann) for _ in range(3)]
    tags = [Tag(label=str(i)) for i in range(4)]
    reviews = [Review(owner=ann), Review(owner=bob)]
    assert await session.acommit() > 0
    assert cluster_conn.keyslot(reviews[0]._pk) != cluster_conn.keyslot(ann._pk)
    with pytest.raises(UniqueKeyViolation):
        await Owner(email=b'ann').asave()
    await session.adelete(*tags)  # one transaction per slot
    flag = Owner(email=b'flag')
    await flag.asave()
    await ann.atransfer(bob, 'credit', 4, flag, 'credit')
    assert (ann.credit, bob.credit) == (6, 4)
    async with util.EntityLock(ann, 1, 5):
        pass
    await ann.adelete()  # cascade to the orders, in the model group's slot
    assert not any(cluster_conn.exists(o._pk) for o in orders)
    assert not cluster_conn.exists(reviews[0]._pk) and cluster_conn.exists(reviews[1]._pk)
    assert all(not cluster_conn.exists(t._pk) for t in tags)
    with blocking_allowed():
        for model in (Owner, Order, Tag, Review):
            assert audit_model(model).ok
