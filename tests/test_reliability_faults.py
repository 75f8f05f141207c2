"""Faults: the script cache flushed, rom's connection reset or cut mid-command, a reply lost,
late or cut, the server restarted. The outcome is a clear redis-py error or a correct retry,
never a half-written entity (the audit stays clean), and the next operation works.

Network faults come from ``rom.testing.FaultProxy`` (a TCP proxy between rom's client and the
server), so each one happens at a chosen command, on every server (Redis 6.2, 7, Valkey) and
with every supported redis-py: nothing races a busy server. rom's client is built with an
explicit retry policy (none, or one retry) because redis-py's defaults differ by version.
"""
from __future__ import annotations

import gc
import os
import subprocess
import time
import warnings

import pytest
import redis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

import rom
from rom import util
from rom._audit import audit_model
from rom.testing import FaultProxy, dump_database, redis_server_executable, reset_rom_state

# What a client sees when a reply never comes or the connection breaks: redis-py < 5 raises
# TimeoutError for a read timeout, some later versions wrap it in a ConnectionError.
LOST = (redis.exceptions.TimeoutError, redis.exceptions.ConnectionError)
SCRIPTS = ('EVAL', 'EVALSHA')     # how rom runs its scripts


def _models():
    class FItem(rom.Model):
        name = rom.Text(index=True, keygen=rom.SIMPLE_CI, prefix=True, suffix=True)
        words = rom.Text(index=True, keygen=rom.FULL_TEXT)
        n = rom.Integer(index=True)
        code = rom.Text(unique=True)

    class FAccount(rom.Model):
        balance = rom.Integer(index=True)
        done = rom.Integer(index=True)
    return FItem, FAccount


def _rows(conn, ns):
    return sorted(int(k.split(b':')[1]) for k in conn.keys(ns + ':*')
                  if k.count(b':') == 1 and k.split(b':')[1].isdigit())


def _clean(*models):
    for model in models:
        report = audit_model(model)
        assert report.findings == [], report.summary()


# --------------------------------------------------------------------------- SCRIPT FLUSH

def test_script_flush_between_every_operation(conn, scripts_reloaded):
    FItem, FAccount = _models()

    def step(action):
        conn.script_flush()
        return action()

    items = [FItem(name='Item %d' % i, words='alpha beta %d' % i, n=i, code='c%d' % i)
             for i in range(6)]
    step(util.session.commit)                                     # batched write script
    step(lambda: items[0].save())                                 # nothing changed
    items[1].n = 100
    step(items[1].save)                                           # update
    step(lambda: setattr(items[2], 'code', 'c1') or None)
    with pytest.raises(rom.exceptions.UniqueKeyViolation):
        step(items[2].save)
    step(lambda: items[2].refresh(force=True))
    assert step(lambda: [x.id for x in FItem.query.startswith(name='item 1').all()]) == [2]
    assert step(lambda: FItem.query.like(name='*tem 3').count()) == 1
    assert step(lambda: FItem.query.endswith(name='M 4').count()) == 1
    assert step(lambda: [x.id for x in FItem.query.filter(n=(3, 100)).all()]) == [4, 5, 6, 2]
    assert step(lambda: FItem.query.filter(words='alpha').count()) == 6
    assert step(lambda: [r['n'] for r in FItem.query.filter(words='beta')
                         .order_by('-n').select('n').all()]) == [100, 5, 4, 3, 2, 0]
    assert step(lambda: FItem.get_by(code='c4').id) == 5
    step(lambda: items[3].delete())                               # single delete script
    step(lambda: util.session.delete(items[4], items[5]))         # pipelined (MULTI) delete
    assert _rows(conn, 'FItem') == [1, 2, 3]
    step(lambda: FItem.query.filter(n=(None, None)).delete())     # query delete, pipelined
    assert _rows(conn, 'FItem') == []
    a, b, t = FAccount(balance=10), FAccount(balance=0), FAccount(done=0)
    step(util.session.commit)
    step(lambda: a.transfer(b, 'balance', 4, t, 'done'))
    assert (FAccount.get(a.id).balance, FAccount.get(b.id).balance) == (6, 4)
    _clean(FItem, FAccount)


# --------------------------------------------------------------------------- network faults

NO_RETRY = {'retry': Retry(NoBackoff(), 0)}
ONE_RETRY = {'retry': Retry(NoBackoff(), 1),
             'retry_on_error': [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]}


@pytest.fixture
def proxy(redis_url):
    with FaultProxy(redis_url) as running:
        yield running


def _through(proxy, conn, policy=None, timeout=2.0):
    """Point rom at a client of its own that goes through the proxy; restored by _restore."""
    client = proxy.client(socket_timeout=timeout, **(policy or NO_RETRY))
    client.ping()
    util.CONNECTION = client
    return client


@pytest.fixture
def rom_via_proxy(proxy, conn):
    """Make ``_through`` clients for rom; put rom back on ``conn`` afterwards."""
    made = []

    def make(policy=None, timeout=2.0):
        made.append(_through(proxy, conn, policy, timeout))
        return made[-1]
    yield make
    util.CONNECTION = conn
    for client in made:
        client.close()


@pytest.mark.parametrize('policy', ['no retry', 'one retry'])
def test_request_cut_inside_a_session_commit(conn, proxy, rom_via_proxy, policy):
    """The connection breaks while the commit's script is being sent: the server never runs
    it. Without retries: a ConnectionError, nothing written, the entities still modified and
    the next commit finishes the job. With a retry: written exactly once."""
    rom_via_proxy(NO_RETRY if policy == 'no retry' else ONE_RETRY)
    FItem, _ = _models()
    items = [FItem(name='k%d' % i, n=i, code='k%d' % i) for i in range(5)]
    util.session.commit()
    for item in items:
        item.n += 10
    fault = proxy.cut_request(20, SCRIPTS)
    if policy == 'no retry':
        with pytest.raises(redis.exceptions.ConnectionError):
            util.session.commit()
        assert [int(conn.hget('FItem:%d' % i.id, 'n')) for i in items] == [0, 1, 2, 3, 4]
        assert all(item._modified for item in items)
        util.session.save(items)          # the next operation works and finishes the job
    else:
        util.session.commit()
    assert fault.fired
    assert [int(conn.hget('FItem:%d' % i.id, 'n')) for i in items] == [10, 11, 12, 13, 14]
    assert [x.id for x in FItem.query.filter(n=(10, 14)).all()] == [i.id for i in items]
    _clean(FItem)


def test_request_cut_between_two_write_batches(conn, proxy, rom_via_proxy):
    """The first script call of a large commit is written, the second is cut: the commit
    raises, the written entities are saved, the rest still new; saving again writes the
    rest once (nothing lost, nothing doubled)."""
    rom_via_proxy()
    FItem, _ = _models()
    count = 620                       # more than one script call (batches of 500)
    items = [FItem(name='b%d' % i, n=i, code='b%d' % i) for i in range(count)]
    faults = []
    # hooks run after the batch holding their entity is written: cut the next script call
    items[0]._after_insert = lambda: faults.append(proxy.cut_request(100, SCRIPTS))
    with pytest.raises(redis.exceptions.ConnectionError):
        util.session.commit()
    assert faults and faults[0].fired
    written = [item for item in items if not item._new]
    assert 0 < len(written) < count
    assert sorted(item.id for item in written) == _rows(conn, 'FItem')
    util.session.save(items)          # saves only what is still new
    assert not any(item._new for item in items)
    assert len(_rows(conn, 'FItem')) == count                # nothing lost, nothing doubled
    assert sorted(item.id for item in items) == _rows(conn, 'FItem')
    _clean(FItem)


def test_connection_reset_before_a_write_a_delete_and_a_query(conn, proxy, rom_via_proxy):
    """The network resets rom's idle connection: redis-py notices when it takes the
    connection from its pool and reconnects, so each operation simply works."""
    rom_via_proxy()
    FItem, _ = _models()
    items = [FItem(name='d%d' % i, n=i, code='d%d' % i) for i in range(4)]
    util.session.commit()
    items[3].n = 30
    for action in (items[3].save, items[0].delete, lambda: util.session.delete(items[1]),
                   lambda: FItem.query.filter(n=(None, None)).count(),
                   lambda: FItem.query.startswith(name='d').all()):
        assert proxy.disconnect_all() == 1
        action()
    assert proxy.connections == 6
    assert _rows(conn, 'FItem') == [items[2].id, items[3].id]
    assert FItem.get(items[3].id).n == 30
    _clean(FItem)


def _warm(FItem):
    """A first save through the client: the write script is in the server's cache, so the
    fault hits the call that runs it (not a NOSCRIPT answer)."""
    FItem(name='warm').save()


# Default models allocate ids at construction (as rom 1.1.2), so a re-save after a lost
# reply rewrites the same rows. (Models with _defer_ids = True trade this for one round trip.)
def test_lost_reply_then_commit_again_does_not_duplicate(conn, proxy, rom_via_proxy):
    rom_via_proxy(timeout=1.0)
    FItem, _ = _models()
    _warm(FItem)
    items = [FItem(name='l%d' % i, n=i) for i in range(3)]
    fault = proxy.drop_reply(SCRIPTS)
    with pytest.raises(LOST):
        util.session.commit()         # the server ran the script, the reply never came
    assert fault.wait()
    assert len(_rows(conn, 'FItem')) == 4
    util.session.save(items)          # the caller cannot know: it saves again
    assert len(_rows(conn, 'FItem')) == 4
    _clean(FItem)


def _lose_the_reply(proxy, action):
    """Run ``action``; the server runs its script but the reply is lost (client times out)."""
    fault = proxy.drop_reply(SCRIPTS)
    with pytest.raises(LOST):
        action()
    assert fault.wait()


def test_lost_reply_of_an_update_then_save_again(conn, proxy, rom_via_proxy):
    FItem, _ = _models()
    item = FItem(name='u', n=1, code='u')
    item.save()
    rom_via_proxy(timeout=1.0)
    _warm(FItem)
    item.n = 2
    _lose_the_reply(proxy, item.save)
    assert conn.hget('FItem:%d' % item.id, 'n') == b'2'     # the write was made
    before = {k: v for k, v in dump_database(conn).items() if not k.endswith(b':id:')}
    item.save()                       # finds its own write applied: a replay, not a race
    after = {k: v for k, v in dump_database(conn).items() if not k.endswith(b':id:')}
    assert after == before and not item._modified
    item.refresh(force=True)
    assert item.n == 2
    item.n = 3
    item.save()                       # the next operation works
    assert [x.id for x in FItem.query.filter(n=3).all()] == [item.id]
    _clean(FItem)


# (A new entity's save releases its changed creation-time unique values that map to its id,
# and a save after a write that may have run re-reads the old bookkeeping.)
def test_lost_reply_of_an_insert_then_changed_and_saved_again(conn, proxy, rom_via_proxy):
    """The first write was made although it raised; the entity still looks new. Saving
    it again with other values must replace the first write completely (its index
    entries and unique claims included), not add to it."""
    rom_via_proxy(timeout=1.0)
    FItem, _ = _models()
    _warm(FItem)
    item = FItem(name='First', words='one', n=1, code='first')
    _lose_the_reply(proxy, item.save)
    assert conn.hget('FItem:%d' % item.id, 'code') == b'first'
    assert item._new
    item.name, item.words, item.n, item.code = 'Second', 'two', 2, 'second'
    item.save()
    assert FItem.query.filter(words='one').count() == 0
    assert FItem.query.startswith(name='first').count() == 0
    assert [x.id for x in FItem.query.filter(n=2).all()] == [item.id]
    assert FItem.get_by(code='first') is None
    _clean(FItem)


def test_lost_reply_with_deferred_ids_stores_new_entities_once(conn, proxy, rom_via_proxy):
    """Issue 12: the id is taken before the script (from the process's block), so saving
    again after a lost reply rewrites the same row."""
    class Hit(rom.Model):
        _defer_ids = True
        path = rom.Text(index=True, keygen=rom.IDENTITY)
    rom_via_proxy(timeout=1.0)
    Hit(path='warm').save()           # the write script is known to the server
    hit = Hit(path='/x')
    _lose_the_reply(proxy, hit.save)
    assert hit._new                   # written, but it still looks new
    hit.save()
    assert len(_rows(conn, 'Hit')) == 2                          # 'warm' and '/x' once
    assert Hit.query.filter(path='/x').count() == 1
    _clean(Hit)


def test_cut_reply_of_a_delete_then_delete_again(conn, proxy, rom_via_proxy):
    """The delete ran but its reply was cut mid-way: a ConnectionError at once (no wait for
    a timeout); the row is gone and deleting again is harmless."""
    rom_via_proxy()
    FItem, _ = _models()
    keep, gone = FItem(name='keep', n=1, code='keep'), FItem(name='gone', n=2, code='gone')
    util.session.commit()
    fault = proxy.cut_reply(1, SCRIPTS)
    with pytest.raises(redis.exceptions.ConnectionError):
        gone.delete()
    assert fault.fired
    assert _rows(conn, 'FItem') == [keep.id]
    gone.delete()
    assert _rows(conn, 'FItem') == [keep.id]
    assert FItem.get_by(code='gone') is None and FItem.get_by(code='keep').id == keep.id
    _clean(FItem)


def test_late_replies(conn, proxy, rom_via_proxy):
    """A reply later than usual but within the client's timeout is simply slower; one later
    than the timeout is a lost reply for the client, and the late bytes never reach a later
    command (redis-py drops the connection): the next reads get their own answers."""
    rom_via_proxy(timeout=1.0)
    FItem, _ = _models()
    a, b = FItem(name='a', n=1, code='a'), FItem(name='b', n=2, code='b')
    util.session.commit()
    util.session.rollback()
    fault = proxy.delay_reply(0.2, SCRIPTS)
    started = time.monotonic()
    a.n = 10
    a.save()
    assert fault.fired and time.monotonic() - started >= 0.2
    assert conn.hget('FItem:%d' % a.id, 'n') == b'10'

    util.session.rollback()           # FItem.get reads Redis, not the session
    fault = proxy.delay_reply(2.5)    # the next command of any kind: the read of a
    with pytest.raises(LOST):
        FItem.get(a.id)
    assert fault.wait()
    util.session.rollback()
    assert FItem.get(b.id).name == 'b'
    assert [x.code for x in FItem.query.filter(n=(0, 100)).order_by('n').all()] == ['b', 'a']
    _clean(FItem)


# --------------------------------------------------------------------------- any fault

_STEPS = st.lists(st.sampled_from(['new', 'batch', 'update', 'delete', 'query']),
                  min_size=1, max_size=6)
_FAULTS = st.tuples(st.sampled_from(['cut_request', 'cut_reply', 'drop_reply']),
                    st.integers(0, 5), st.integers(0, 300))


@pytest.mark.slow
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=_STEPS, fault=_FAULTS)
def test_any_single_fault_leaves_consistent_indexes(conn, proxy, steps, fault):
    """The general case of the tests above: one fault of any kind, on any script call of a
    random sequence of saves, commits, updates, deletes and queries. The operation it hits
    raises a redis-py error (or a DataRaceError for a save whose row moved on); whatever ran,
    the indexes agree with the rows (audit findings = 0) and the next operation works."""
    kind, at, size = fault
    reset_rom_state(conn, forget_models=True)
    proxy.clear()
    client = proxy.client(socket_timeout=1.0, **NO_RETRY)
    util.CONNECTION = client
    try:
        FItem, _ = _models()
        made = [0]

        def new():
            made[0] += 1
            return FItem(name='Item %d' % made[0], words='w%d common' % made[0],
                         n=made[0], code='c%d' % made[0])

        def saved():
            return [x for x in FItem.query.filter(n=(None, None)).order_by('n').all()]

        actions = {
            'new': lambda: new().save(),
            'batch': lambda: [new() for _ in range(3)] and util.session.commit(),
            'update': lambda: [setattr(x, 'n', x.n + 100) or x.save() for x in saved()[:1]],
            'delete': lambda: [x.delete() for x in saved()[-1:]],
            'query': lambda: FItem.query.filter(words='common').count(),
        }
        armed = None
        for i, step in enumerate(steps):
            if i == at:
                armed = (proxy.drop_reply(SCRIPTS) if kind == 'drop_reply' else
                         getattr(proxy, kind)(size, SCRIPTS))
            try:
                actions[step]()
            except LOST:                   # the fault (or a slow machine: the same case)
                util.session.rollback()    # what the caller knows is stale: start again
            except rom.exceptions.DataRaceError:
                util.session.rollback()    # a save after a write whose reply was lost
        event('fault fired: %s' % (armed is not None and armed.fired))
    finally:
        util.CONNECTION = conn             # the checks go straight to the server
        client.close()
    util.session.rollback()
    _clean(FItem)
    after = FItem(name='after', n=0, code='after')
    after.save()
    util.session.rollback()
    assert FItem.get_by(code='after').id == after.id
    _clean(FItem)


# --------------------------------------------------------------------------- server restart

class _Server:
    """A redis-server of this test on a fixed unix socket, with append-only persistence."""

    def __init__(self, directory):
        self.directory = str(directory)
        self.socket = os.path.join(self.directory, 'r.sock')
        self.conf = os.path.join(self.directory, 'redis.conf')
        with open(self.conf, 'w') as f:
            f.write('port 0\nunixsocket %s\nunixsocketperm 700\ndir %s\nsave ""\n'
                    'appendonly yes\nappendfsync always\ndaemonize no\nlogfile %s\n'
                    % (self.socket, self.directory, os.path.join(self.directory, 'log')))
        self.process = None

    def start(self):
        self.process = subprocess.Popen([redis_server_executable(), self.conf],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if not os.path.exists(self.socket):   # (a failed connect leaks a socket in
                time.sleep(0.02)                   # redis-py 4.5.5: wait for the file)
                continue
            probe = redis.Redis(unix_socket_path=self.socket, socket_timeout=1)
            try:
                if probe.ping():
                    return
            except redis.RedisError:
                time.sleep(0.02)
            finally:
                probe.close()           # also after a failed attempt: no socket left open
        raise RuntimeError('redis-server did not start')

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def _retry_once(action):
    try:
        return action()
    except redis.ConnectionError:     # the first command on a dead pooled connection
        return action()


def _collect_dropped_sockets():
    """redis-py 4.5.5 drops (does not close) the socket of a connection a restart broke:
    collect such sockets where their ResourceWarning is expected, not in a later test."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ResourceWarning)
        gc.collect()


def test_server_restarted_between_operations(conn, tmp_path):
    _collect_dropped_sockets()
    server = _Server(tmp_path)
    server.start()
    client = redis.Redis(unix_socket_path=server.socket, socket_timeout=5)
    util.CONNECTION = client
    try:
        FItem, FAccount = _models()
        items = [FItem(name='r%d' % i, words='restart %d' % i, n=i, code='r%d' % i)
                 for i in range(5)]
        util.session.commit()
        a, b, t = FAccount(balance=5), FAccount(balance=5), FAccount(done=0)
        util.session.commit()

        for action in (
                lambda: setattr(items[0], 'n', 50) or items[0].save(),
                lambda: items[1].delete(),
                lambda: FItem(name='new', n=9, code='new').save(),
                lambda: a.transfer(b, 'balance', 2, t, 'done'),
                lambda: FItem.query.startswith(name='r').count(),
        ):
            server.stop()
            server.start()            # data survives (AOF); the script cache does not
            _retry_once(action)

        assert sorted(x.name for x in FItem.query.startswith(name='r').all()) == \
            ['r0', 'r2', 'r3', 'r4']
        assert FItem.get_by(code='new').n == 9
        assert [x.id for x in FItem.query.filter(n=(50, 50)).all()] == [items[0].id]
        util.session.rollback()
        assert (FAccount.get(a.id).balance, FAccount.get(b.id).balance) == (3, 7)
        _clean(FItem, FAccount)
    finally:
        util.CONNECTION = conn
        client.close()
        server.stop()
        _collect_dropped_sockets()
