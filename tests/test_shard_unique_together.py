"""``unique_together`` groups of sharded models on a real local cluster, through the blocking
and the asyncio API: a group's combined value is claimed like a unique column's value (across
shards), released when the row changes or is deleted, looked up by ``get_by`` on the group's
columns in two round trips, raced for by processes and tasks without duplicates, and it
behaves as the same model unsharded.
"""
from __future__ import annotations

import random
from contextlib import ExitStack
from typing import Any, List

import pytest

import rom
from rom import util
from rom._helpers import _encode_unique_constraint
from rom._shard_unique import claims_key
from rom.exceptions import QueryError, UniqueKeyViolation
from rom.testing import instrument, roundtrips

import shard_workers as sw
from race_workers import race_processes

pytestmark = pytest.mark.cluster
NAME = 'n:name'  # the group's index name: its columns sorted


def field(name: str, n: int) -> str:
    return _encode_unique_constraint([str(n), name])


def claimed(conn: Any, model: Any, name: str, n: int) -> bool:
    return bool(conn.hexists(claims_key(model, NAME, field(name, n)), field(name, n)))


async def test_combinations_are_unique_across_shards(cconn: Any, api: Any) -> None:
    model = sw.define_group_model()
    a = model(name='a', n=1)
    await api.save(a)
    twin = model(name='a', n=1)
    assert type(twin) is not type(a)  # another shard: only the claim protects
    with pytest.raises(UniqueKeyViolation):
        await api.save(twin)
    util.session.rollback()
    await api.save(model(name='a', n=2))  # another combination of the same values
    await api.save(model(name='b', n=1))
    assert sorted(sw.pair_holders(model)) == [('a', 1), ('a', 2), ('b', 1)]
    sw.assert_pairs_consistent(model, cconn)


async def test_update_and_delete_release_the_old_combination(cconn: Any, api: Any) -> None:
    model = sw.define_group_model()
    row = model(name='a', n=1)
    await api.save(row)
    row.n = 2
    await api.save(row)  # claims (a, 2), then releases (a, 1)
    assert not claimed(cconn, model, 'a', 1) and claimed(cconn, model, 'a', 2)
    assert await api.get_by(model, name='a', n=1) is None
    assert (await api.get_by(model, name='a', n=2)) is row
    other = model(name='a', n=1)
    await api.save(other)  # released: free again
    row.note = 'only a note'
    await api.save(row)  # the group unchanged: still its own
    assert claimed(cconn, model, 'a', 2)
    await api.delete(row)
    assert not claimed(cconn, model, 'a', 2)
    await api.save(model(name='a', n=2))
    sw.assert_pairs_consistent(model, cconn)


async def test_get_by_on_the_group_takes_two_round_trips(cconn: Any, api: Any) -> None:
    model = sw.define_group_model()
    rows = [model(name=name, n=n, note='%s%d' % (name, n)) for name, n in sw.PAIRS]
    for row in rows:
        await api.save(row)
    util.session.rollback()
    await api.get_by(model, name='a', n=1)  # scripts cached on the nodes
    counted = [instrument(node.redis_connection) for node in cconn.get_nodes()]
    for name, n in sw.PAIRS:
        util.session.rollback()
        with ExitStack() as stack:
            counters = [stack.enter_context(roundtrips(c)) for c in counted]
            found = await api.get_by(model, name=name, n=n)
        assert found.note == '%s%d' % (name, n)
        if not api.is_async:  # (the counters see the blocking client's connections)
            assert sum(rt.count for rt in counters) <= 2
    assert await api.get_by(model, name='a', n=99) is None
    assert await api.get_by(model, name='a', n=None) is None
    with pytest.raises(QueryError):
        await api.get_by(model, name=['a', 'b'], n=1)
    with pytest.raises(QueryError):
        await api.get_by(model, name='a', note='x')  # not a group: one attribute only


async def test_a_none_member_claims_nothing(cconn: Any, api: Any) -> None:
    model = sw.define_group_model()
    first, second = model(name='a'), model(name='a')
    await api.save(first)
    await api.save(second)  # (a, None) twice: no constraint, as unsharded
    assert not cconn.keys('{SPair.u*}:*')
    first.n = 1
    await api.save(first)
    assert claimed(cconn, model, 'a', 1)
    second.n = 1
    with pytest.raises(UniqueKeyViolation):
        await api.save(second)
    util.session.rollback()
    first.n = None
    await api.save(first)  # its combination released
    assert not claimed(cconn, model, 'a', 1)
    sw.assert_pairs_consistent(model, cconn)


def _twin_model() -> Any:
    class UPair(rom.Model):
        _cluster = True
        name = rom.Text(index=True, keygen=rom.IDENTITY)
        n = rom.Integer(index=True)
        note = rom.Text()
        unique_together = [('name', 'n')]

    return UPair


async def test_equals_an_unsharded_twin(cconn: Any, api: Any) -> None:
    """The same random operations on the sharded model and its unsharded twin: the same
    outcomes, rows and lookups."""
    sharded, plain = sw.define_group_model(), _twin_model()
    rng = random.Random(7)
    outcomes: List[List[str]] = [[], []]
    for _ in range(60):
        op = rng.choice(['create', 'create', 'update', 'delete', 'clear'])
        pick = rng.choice(sw.PAIRS + [('c', None)])
        ident = rng.randint(1, 12)
        for model, log in zip((sharded, plain), outcomes):
            try:
                if op == 'create':
                    await api.save(model(name=pick[0], n=pick[1]))
                else:
                    row = await api.get(model, ident)
                    if row is None:
                        log.append('missing')
                        continue
                    if op == 'delete':
                        await api.delete(row)
                    else:
                        row.name, row.n = pick if op == 'update' else (row.name, None)
                        await api.save(row)
                log.append('ok')
            except UniqueKeyViolation:
                log.append('UniqueKeyViolation')
            finally:
                util.session.rollback()
    assert outcomes[0] == outcomes[1]
    assert 'UniqueKeyViolation' in outcomes[0]

    def rows(model: Any) -> List[Any]:
        return sorted((r.id, r.name, r.n) for r in model.query.all())

    assert rows(sharded) == rows(plain)
    for name, n in sw.PAIRS:
        found = [await api.get_by(model, name=name, n=n) for model in (sharded, plain)]
        assert [f and f.id for f in found][0] == [f and f.id for f in found][1]
    sw.assert_pairs_consistent(sharded, cconn)


def test_processes_race_for_the_same_combinations(cluster: Any, cconn: Any) -> None:
    race_processes(sw.race_pairs, cluster.url, range(4), 120)
    model = sw.define_group_model()
    assert sw.pair_holders(model)
    sw.assert_pairs_consistent(model, cconn)


async def test_a_race_of_tasks_for_the_same_combinations(cconn: Any) -> None:
    model = sw.define_group_model()

    def create(rng: random.Random, seed: int) -> Any:
        name, n = rng.choice(sw.PAIRS)
        return model(name=name, n=n)

    def change(row: Any, rng: random.Random) -> None:
        row.name, row.n = rng.choice(sw.PAIRS)

    await sw.race_tasks(model, cconn, create, change)
    sw.assert_pairs_consistent(model, cconn)


async def test_a_stale_handles_delete_leaves_claims_taken_over(cconn: Any, api: Any) -> None:
    """A delete through a stale handle releases the combination it saw; the one another
    writer gave the row keeps its claim, stale (the row is gone): the next writer takes it."""
    model = sw.define_group_model()
    await api.save(model(name='a', n=1))
    util.session.rollback()
    stale = await api.get(model, 1)
    util.session.rollback()
    fresh = await api.get(model, 1)
    fresh.n = 2
    await api.save(fresh)
    util.session.rollback()
    await api.delete(stale)
    assert claimed(cconn, model, 'a', 2)  # left behind
    assert await api.get_by(model, name='a', n=2) is None
    taker = model(name='a', n=2)
    await api.save(taker)  # stale: taken over
    assert (await api.get_by(model, name='a', n=2)).id == taker.id
    sw.assert_pairs_consistent(model, cconn)
