"""Global unique values of sharded models on a real local cluster: claims, stale claims
taken over, a writer killed between the steps, and processes racing for the same values.
"""
from __future__ import annotations

import multiprocessing
from contextlib import ExitStack
from typing import Any

import pytest

import rom
import rom.util
from rom import util
from rom._shard_unique import CLAIM, acquire, claims_key
from rom.exceptions import UniqueKeyViolation
from rom.model import Model
from rom.testing import LocalCluster, instrument, roundtrips

import shard_workers as sw
from race_workers import race_processes
from shard_workers import assert_consistent, holders

pytestmark = pytest.mark.cluster


def url_of(cluster: LocalCluster) -> str:
    return cluster.url


def test_unique_across_shards(cconn: Any) -> None:
    model = sw.define_model()
    a = model(email='a@x', age=1)
    a.save()
    with pytest.raises(UniqueKeyViolation):
        model(email='a@x', age=2).save()  # another shard (the next id)
    b = model(email='b@x', age=3)
    b.save()
    b.email = 'c@x'
    b.save()
    assert model.get_by(email='b@x') is None and model.get_by(email='c@x').id == b.id
    assert not cconn.hexists(claims_key(model, 'email', 'b@x'), 'b@x')
    model(email='b@x', age=4).save()  # released: free again
    assert [p.email for p in model.get_by(email=['c@x', 'zz', 'a@x'])] == ['c@x', 'a@x']
    a.delete()
    assert not cconn.hexists(claims_key(model, 'email', 'a@x'), 'a@x')
    model(email='a@x', age=5).save()
    assert_consistent(model, cconn)


def test_get_by_unique_takes_two_round_trips(cconn: Any) -> None:
    model = sw.define_model()
    for i in range(6):
        model(email='p%d@x' % i, age=i).save()
    model.get_by(email='p1@x')  # scripts cached on the nodes
    counted = [instrument(node.redis_connection) for node in cconn.get_nodes()]
    for node in cconn.get_nodes():
        node.redis_connection.connection_pool.reset()
    for i in range(6):
        util.session.rollback()
        with ExitStack() as stack:
            counters = [stack.enter_context(roundtrips(c)) for c in counted]
            assert model.get_by(email='p%d@x' % i).age == i
        assert sum(rt.count for rt in counters) <= 2
    util.session.rollback()
    with ExitStack() as stack:  # several values: the claims, then the rows: 2 rounds
        counters = [stack.enter_context(roundtrips(c)) for c in counted]
        found = model.get_by(email=['p%d@x' % i for i in range(6)])
    assert sorted(p.age for p in found) == list(range(6))
    assert sum(rt.count for rt in counters) <= 2 * 3  # two rounds, a message per master


def test_stale_claim_is_fenced_and_taken_over(cconn: Any) -> None:
    """A claim whose writer has not written its row (crashed, or still between the steps) is
    taken over; the fenced writer's write then fails: the value is never held twice."""
    model = sw.define_model()
    slow = model(email='v@x', age=1)
    acquire(type(slow), str(slow.id), [('email', 'v@x')], 'slow-token')  # step 1 only
    fast = model(email='v@x', age=2)
    assert type(fast) is not type(slow)  # different shards: only the claims protect
    fast.save()
    slow.__dict__[CLAIM] = ('slow-token', {('email', 'v@x')})  # its claim, as save() holds it
    try:
        with pytest.raises(UniqueKeyViolation):
            Model.save(slow)  # step 2 of the slow writer: its token was fenced
    finally:
        slow.__dict__.pop(CLAIM, None)
    assert holders(model) == {'v@x': [fast.id]}
    # a claim whose owner row holds the value is live: not taken over
    with pytest.raises(UniqueKeyViolation):
        model(email='v@x', age=3).save()
    assert_consistent(model, cconn)


def test_session_commit_claims_too(cconn: Any) -> None:
    model = sw.define_model()
    first = model(email='s@x', age=1)
    model(email='t@x', age=1)
    rom.util.session.commit()
    model(email='s@x', age=2)
    with pytest.raises(UniqueKeyViolation):
        rom.util.session.commit()
    rom.util.session.rollback()
    first.email = 'u@x'
    rom.util.session.commit()  # 's@x' keeps a stale claim: taken over when wanted
    model(email='s@x', age=3).save()
    assert_consistent(model, cconn)


@pytest.mark.parametrize('step', ['claimed', 'written'])
def test_writer_killed_between_the_steps(cluster: LocalCluster, cconn: Any, step: str) -> None:
    ctx = multiprocessing.get_context('spawn')
    child = ctx.Process(target=sw.crash, args=(url_of(cluster), step, 'k@x', 'old@x'))
    child.start()
    child.join(60)
    assert child.exitcode == (3 if step == 'claimed' else 4)
    model = sw.define_model()
    owner = cconn.hget(claims_key(model, 'email', 'k@x'), 'k@x')
    assert owner is not None  # the dead writer's claim is there
    if step == 'claimed':
        assert holders(model) == {}
        model(email='k@x', age=9).save()  # stale: taken over
    else:
        assert cconn.hget(claims_key(model, 'email', 'old@x'), 'old@x') is not None
        with pytest.raises(UniqueKeyViolation):
            model(email='k@x', age=9).save()  # the written row holds it: live
        model(email='old@x', age=9).save()  # never released, but stale: taken over
    assert_consistent(model, cconn)


def test_processes_race_for_the_same_values(cluster: LocalCluster, cconn: Any) -> None:
    procs = 4
    errors = race_processes(sw.race, url_of(cluster), range(procs), 150)
    model = sw.define_model()
    assert holders(model)
    assert_consistent(model, cconn)
    print('\nsharded uniques: %d processes x 150 ops; allowed errors %s; %d rows'
          % (procs, errors, len(holders(model))))


def test_numeric_unique_column_and_hook_changes(cconn: Any) -> None:
    class Badge(rom.Model):
        _shards = 3
        code = rom.Integer(unique=True)
        label = rom.Text(unique=True)

        def _before_insert(self) -> None:
            if self.label == 'sneaky':
                self.label = 'changed by a hook'

    for code in range(1, 7):
        Badge(code=code, label='b%d' % code).save()
    assert Badge.get_by(code=4).label == 'b4'
    assert [b.code for b in Badge.get_by(code=[6, 2, 99])] == [6, 2]
    with pytest.raises(UniqueKeyViolation):
        Badge(code=5, label='other').save()
    with pytest.raises(rom.exceptions.ORMError, match='changed during the save'):
        Badge(code=50, label='sneaky').save()
    assert Badge.get_by(label='changed by a hook') is None
