"""The test harness itself: a real server, an empty database per test, round-trip counting."""
from __future__ import annotations

import os

import redis

import rom.testing
from rom.testing import _command_names, start_embedded_redis, test_server_url


def test_server_answers(conn, redis_url):
    assert conn.ping() is True
    assert conn.execute_command('ECHO', 'hi') == b'hi'
    if not os.environ.get('ROM_TEST_REDIS_URL'):
        assert redis_url.startswith('unix://')


def test_database_starts_empty_a(conn):
    assert conn.dbsize() == 0
    conn.set('harness:leftover', 'x')


def test_database_starts_empty_b(conn):
    # Whichever of _a/_b runs second proves the flush between tests.
    assert conn.dbsize() == 0
    conn.set('harness:leftover', 'y')


def test_rom_uses_conn(conn):
    import rom.util
    assert rom.util.CONNECTION is conn


def test_decoding_conn_same_database(conn, decoding_conn):
    conn.set('k', 'v\u00e9'.encode('utf-8'))
    assert decoding_conn.get('k') == 'v\u00e9'
    assert conn.get('k') == b'v\xc3\xa9'


def test_roundtrips_single_commands(conn, roundtrips):
    with roundtrips(conn) as rt:
        conn.set('a', 1)
        conn.get('a')
    assert rt.count == 2
    assert rt.commands == ['SET', 'GET']
    assert rt.command_count == 2
    conn.get('a')  # after the block: frozen
    assert rt.count == 2


def test_roundtrips_pipeline_is_one(conn, roundtrips):
    with roundtrips(conn) as rt:
        pipe = conn.pipeline(True)
        pipe.set('a', 1)
        pipe.incr('a')
        pipe.hset('h', 'f', 'v')
        assert rt.count == 0  # queued, nothing sent yet
        assert pipe.execute() == [True, 2, 1]
    assert rt.count == 1
    assert rt.commands == ['MULTI', 'SET', 'INCRBY', 'HSET', 'EXEC']
    with roundtrips(conn) as rt:
        pipe = conn.pipeline(False)
        for i in range(5):
            pipe.rpush('l', i)
        pipe.execute()
    assert rt.count == 1 and rt.command_count == 5
    assert conn.llen('l') == 5


def test_roundtrips_counts_script_calls(conn, roundtrips):
    with roundtrips(conn) as rt:
        assert conn.eval("return ARGV[1] .. 'x'", 0, 'a') == b'ax'
    assert rt.count == 1 and rt.commands == ['EVAL']


def test_roundtrips_per_client(conn, decoding_conn, roundtrips):
    with roundtrips(conn) as rt, roundtrips(decoding_conn) as rt2:
        decoding_conn.set('x', 1)
        decoding_conn.get('x')
        conn.get('x')
    assert rt.count == 1
    assert rt2.count == 2


def test_roundtrips_handshake_not_counted(redis_url, roundtrips):
    client = redis.Redis.from_url(redis_url)  # plain client, instrumented on demand
    with roundtrips(client) as rt:
        client.ping()  # opens a connection: SELECT/CLIENT SETINFO are not counted
    assert rt.commands == ['PING']
    client.close()


def test_command_names_parser():
    packed = b'*2\r\n$3\r\nGET\r\n$1\r\na\r\n*3\r\n$3\r\nset\r\n$2\r\n\r\n\r\n$0\r\n\r\n'
    assert _command_names([packed[:10], memoryview(packed[10:])]) == ['GET', 'SET']
    assert _command_names('PING\r\n') == ['PING']


def test_embedded_server_start_stop():
    server = start_embedded_redis(db=3)
    try:
        assert server.url.endswith('?db=3')
        client = server.client()
        assert client.ping()
        assert client.connection_pool.connection_kwargs['db'] == 3
        assert client.config_get('save')['save'] == ''
        assert client.config_get('appendonly')['appendonly'] == 'no'
        client.close()
    finally:
        server.stop()
    assert not server.running
    assert not os.path.exists(server.directory)
    server.stop()  # idempotent


def test_test_server_url_prefers_env(monkeypatch):
    monkeypatch.setenv('ROM_TEST_REDIS_URL', 'redis://127.0.0.1:1/9')
    assert test_server_url() == 'redis://127.0.0.1:1/9'


def test_module_exports():
    for name in rom.testing.__all__:
        assert hasattr(rom.testing, name)


# Each pair below leaves state behind in whichever test runs first; the other one proves
# the autouse fixture reset it (the pair passes in either order).

def _declare_model():
    from rom import Integer, Model

    class HarnessThing(Model):  # a second declaration of the name would raise ORMError
        n = Integer(index=True)
    return HarnessThing


def _check_clean_rom_state():
    import rom.columns
    import rom.util
    assert list(rom.columns.MODELS) == ['Model']
    assert not rom.columns.MODELS_REFERENCED
    assert len(rom.util.session.known) == 0
    assert not rom.util.session.null_session
    assert rom.util.NULL_SESSION is False


def _dirty_rom_state(conn):
    import rom.util
    thing = _declare_model()
    thing(n=1).save()
    thing(n=2)  # unsaved: stays in the session
    rom.util.session.null_session = True
    rom.util.NULL_SESSION = True
    assert conn.keys('HarnessThing:*')


def test_rom_state_reset_a(conn):
    _check_clean_rom_state()
    _dirty_rom_state(conn)


def test_rom_state_reset_b(conn):
    _check_clean_rom_state()
    _dirty_rom_state(conn)


def test_roundtrips_rom_save(conn, roundtrips):
    thing = _declare_model()
    entity = thing(n=5)
    with roundtrips(conn) as rt:
        entity.save()
    # The harness sees rom's traffic: the atomic write is a script call (EVALSHA, or EVAL
    # when the server does not have the script cached yet).
    assert rt.count >= 1
    assert {'EVALSHA', 'EVAL'} & set(rt.commands), rt.commands
    assert conn.hget('HarnessThing:%s' % entity.id, 'n') == b'5'


def test_embedded_client_selects_the_db():
    from rom.testing import start_embedded_redis
    server = start_embedded_redis()
    try:
        one = server.client(db=1)
        one.set('k', 'v')
        assert server.client().get('k') is None and one.get('k') == b'v'
        assert server.client(decode_responses=True).ping()
    finally:
        server.stop()
