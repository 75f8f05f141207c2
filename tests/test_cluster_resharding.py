"""Resharding under load: a model's hash slot moves to another master while writers run.

A real local cluster (rom.testing.LocalCluster); the slot is moved as ``redis-cli --cluster
reshard`` does (``CLUSTER SETSLOT .. IMPORTING/MIGRATING``, ``MIGRATE`` a few keys at a
time, ``SETSLOT .. NODE``), so clients meet ``ASK``, ``TRYAGAIN`` and ``MOVED`` replies,
and the new owner has never seen rom's scripts (``NOSCRIPT``). Marked ``cluster``.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Dict, Iterator, List

import pytest
import redis

import rom
import rom.util
from rom import util
from rom._audit import audit_model
from rom.exceptions import UniqueKeyViolation
from rom.testing import LocalCluster, start_local_cluster

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    local = start_local_cluster(masters=3)
    try:
        yield local
    finally:
        local.stop()


def _models() -> Any:
    class Acct(rom.Model):
        _cluster = 'bank'
        name = rom.Text(unique=True)
        n = rom.Integer(index=True)
        word = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True)
        entries = rom.OneToMany('Entry', 'acct')

    class Entry(rom.Model):
        _cluster = 'bank'
        acct = rom.ManyToOne('Acct', on_delete='cascade')
        amount = rom.Integer(index=True)

    return Acct, Entry


class Writers:
    """Threads that create, update, delete and query entities until stopped."""

    def __init__(self, client: Any, models: Any, threads: int = 3) -> None:
        self.client = client
        self.models = models
        self.stop = threading.Event()
        self.done: List[float] = []
        self.errors: Dict[str, int] = {}
        self.unexpected: List[BaseException] = []
        self.messages: Dict[str, str] = {}
        self.threads = [threading.Thread(target=self._run, args=(k,)) for k in range(threads)]

    def _run(self, k: int) -> None:
        Acct, Entry = self.models
        rom.util.CONNECTION = self.client  # (a module global: same client in every thread)
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                acct = Acct(name='t%d-%d' % (k, i), n=i % 20, word='w%d x' % (i % 7))
                acct.save()
                Entry(acct=acct, amount=i).save()
                if i % 3 == 0:
                    acct.n = 100 + i % 5
                    acct.save()
                if i % 4 == 0:
                    acct.delete()  # cascades to its entry: one script call
                if i % 5 == 0:
                    Acct.query.filter(word='x').filter(n=(0, 10)).order_by('-n').limit(0, 5).all()
                    Acct.get_by(name='t%d-%d' % (k, i - 1))
                    Acct.query.startswith(word='w1').count()
                if i % 6 == 0:
                    try:
                        Acct(name='t%d-%d' % (k, i - 1), n=1, word='dup').save()
                    except UniqueKeyViolation:
                        pass
                self.done.append(time.monotonic())
            except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
                name = type(exc).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
                self.messages.setdefault(name, '%s (%s)' % (exc, _where(exc)))
                time.sleep(0.01)
            except BaseException as exc:  # anything else fails the test
                self.unexpected.append(exc)
                return
            finally:
                util.session.rollback()

    def __enter__(self) -> 'Writers':
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


async def test_transactions_wait_while_their_slot_is_migrating(cluster: LocalCluster,
                                                                api: Any) -> None:
    """A query's MULTI/EXEC that meets a migrating slot (its temporary keys are missing:
    ``TRYAGAIN``, nothing ran) is sent again until the slot is stable, then answers right."""
    client = cluster.client()
    rom.util.CONNECTION = client
    Acct, Entry = models = _models()
    try:
        for i in range(12):
            Acct(name='a%d' % i, n=i, word='w x' if i % 2 else 'w').save()
        util.session.rollback()
        slot = client.keyslot('{bank}')
        source = cluster.slot_owner(slot)
        target = next(n for n in cluster.master_nodes() if n is not source)
        target.client().execute_command('CLUSTER SETSLOT', slot, 'IMPORTING', source.node_id)
        source.client().execute_command('CLUSTER SETSLOT', slot, 'MIGRATING', target.node_id)
        def stabilise() -> None:
            for node in (source, target):
                node.client().execute_command('CLUSTER SETSLOT', slot, 'STABLE')

        timer = threading.Timer(0.5, stabilise)
        started = time.monotonic()
        timer.start()
        try:
            query = Acct.query.filter(word='x').filter(n=(0, 8)).order_by('-n')
            assert [a.n for a in await api.all(query)] == [7, 5, 3, 1]
        finally:
            timer.join()
        assert time.monotonic() - started >= 0.45  # it waited for the slot
        assert await api.count(Acct.query.filter(word='w')) == 12
        _check_clean(client, models)
    finally:
        util.session.rollback()
        client.close()


def _where(exc: BaseException) -> str:
    import traceback
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if '/rom/' in f.filename]
    return ' < '.join('%s:%d' % (f.filename.rpartition('/')[2], f.lineno) for f in frames[-3:])


def _check_clean(client: Any, models: Any) -> None:
    for model in models:
        report = audit_model(model, block_size=50)
        assert report.ok, report.summary() + '\n' + '\n'.join(
            f.message for f in report.findings[:10])
    Acct, Entry = models
    uniques = client.hgetall('{bank}:Acct:name:uidx')
    assert len(uniques) == len(Acct.query.all())
    assert len(set(uniques.values())) == len(uniques)


@pytest.mark.slow  # a threaded stress test of a live slot move (full runs only)
def test_slot_moves_to_another_master_while_writers_run(cluster: LocalCluster) -> None:
    client = cluster.client()
    rom.util.CONNECTION = client
    models = _models()
    slot = client.keyslot('{bank}')
    source = cluster.slot_owner(slot)
    target = next(n for n in cluster.master_nodes() if n is not source)
    try:
        with Writers(client, models) as writers:
            time.sleep(0.5)
            before = len(writers.done)
            assert before > 0
            moved = cluster.move_slot(slot, target, batch=5, between=lambda: time.sleep(0.02))
            during = len(writers.done) - before
            deadline = time.monotonic() + 10
            after_move = len(writers.done)
            while time.monotonic() < deadline and len(writers.done) < after_move + 50:
                time.sleep(0.05)
            after = len(writers.done) - after_move
        assert not writers.unexpected, writers.unexpected
        assert moved > 10
        assert after >= 50, 'operations did not continue after the move'
        assert cluster.slot_owner(slot) is target
        assert source.client().execute_command('CLUSTER COUNTKEYSINSLOT', slot) == 0
        assert target.client().execute_command('CLUSTER COUNTKEYSINSLOT', slot) > 0
        _check_clean(client, models)
        print('\ncluster/resharding: %d keys moved; %d operations during the move, %d after; '
              'errors %s' % (moved, during, after, writers.errors or 'none'))
        assert not writers.errors, writers.messages
    finally:
        util.session.rollback()
        client.close()


def test_slot_moves_to_a_new_node_that_never_saw_a_script(cluster: LocalCluster) -> None:
    """NOSCRIPT: the new owner of the slot has an empty script cache."""
    client = cluster.client()
    rom.util.CONNECTION = client
    models = _models()
    Acct, Entry = models
    try:
        for i in range(40):
            acct = Acct(name='a%d' % i, n=i % 20, word='w%d x' % (i % 7))
            acct.save()
            Entry(acct=acct, amount=i).save()
        util.session.rollback()
        added = cluster.add_node()
        assert added.client().execute_command('SCRIPT EXISTS',
                                              *[_sha(name) for name in ('write',)]) == [0]
        slot = client.keyslot('{bank}')
        moved = cluster.move_slot(slot, added, batch=7)
        assert moved > 10 and cluster.slot_owner(slot) is added
        # every kind of call reaches the new node: MOVED, then NOSCRIPT -> EVAL
        Acct(name='new', n=1, word='fresh').save()
        assert Acct.get_by(name='new').word == 'fresh'
        assert Acct.query.filter(word='x').count() == 40
        assert [a.n for a in Acct.query.filter(n=(0, 3)).order_by('n').all()] == [0, 0, 1, 1,
                                                                                 1, 2, 2, 3, 3]
        Acct.get_by(name='a3').delete()
        util.session.rollback()
        assert Entry.query.filter(amount=(3, 3)).count() == 0
        assert client.get_node_from_key('{bank}').port == added.port
        assert added.client().execute_command('SCRIPT EXISTS', _sha('write')) == [1]
        _check_clean(client, models)
    finally:
        util.session.rollback()
        client.close()


def _sha(name: str) -> str:
    from rom._scripts import lua
    return str(lua(name).sha)  # type: ignore[attr-defined]


def test_promoted_replica_runs_scripts_it_never_cached() -> None:
    """NOSCRIPT after a failover: the replica that takes over (CLUSTER FAILOVER) has not
    cached rom's scripts; the next calls reach it and work."""
    local = start_local_cluster(masters=3, replicas=1)
    client = local.client()
    rom.util.CONNECTION = client
    try:
        models = _models()
        Acct, Entry = models
        for i in range(10):
            Acct(name='a%d' % i, n=i, word='w x').save()
        util.session.rollback()
        slot = client.keyslot('{bank}')
        old = local.slot_owner(slot)
        replica = next(n for n in local.nodes if n not in local.master_nodes()
                       and n.client().info('replication').get('master_port') == old.port)
        assert replica.client().execute_command('SCRIPT EXISTS', _sha('write')) == [0]
        replica.client().execute_command('CLUSTER FAILOVER')
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and local.slot_owner(slot) is not replica:
            time.sleep(0.1)
        assert local.slot_owner(slot) is replica
        local.wait_state_ok(30)
        Acct(name='after', n=99, word='w y').save()  # MOVED, then NOSCRIPT -> EVAL
        Acct.get_by(name='a3').delete()
        util.session.rollback()
        assert Acct.query.filter(word='w').count() == 10
        assert client.get_node_from_key('{bank}').port == replica.port
        assert replica.client().execute_command('SCRIPT EXISTS', _sha('write')) == [1]
        _check_clean(client, models)
    finally:
        util.session.rollback()
        client.close()
        local.stop()
