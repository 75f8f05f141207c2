"""Ids in coroutines without blocking (issue 14): ``await Model.areserve_ids(n)`` and
``await entity.aid()`` (rom/_ids.py ``op_reserve_ids``; the blocks of ids: test_ids.py).

Every ``async def`` test here runs with rom's blocking client factory made to raise, so
reserving and reading ids never blocks the event loop.
"""
from __future__ import annotations

import asyncio
import inspect
from typing import Any, Iterator

import pytest

import rom
from rom import _ids, util
from rom.exceptions import ORMError
from rom.util import session


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError('the async API asked for a blocking client: it would block the loop')


@pytest.fixture(autouse=True)
def blocking_factory_raises(request: pytest.FixtureRequest,
                            monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if inspect.iscoroutinefunction(request.function):
        monkeypatch.setattr(util, '_connect', _refuse)
        monkeypatch.setattr(util, 'get_connection', _refuse)
    yield


@pytest.fixture(autouse=True)
def _fast_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    # every block counts as used up quickly, however loaded the machine running the tests
    monkeypatch.setattr(_ids, 'REFILL_SECONDS', 3600.0)


@pytest.fixture
def Item() -> Any:
    class Item(rom.Model):
        n = rom.Integer(index=True)
    return Item


async def test_aid_takes_a_pending_id_without_blocking(Item, conn):
    item = Item(n=1)
    assert item._id_pending and conn.get('Item:id:') is None
    assert await item.aid() == 1
    assert not item._id_pending and item.id == 1 and conn.get('Item:id:') == b'1'
    assert session.get('Item:1') is item          # the session knows it by its id
    assert await item.aid() == 1                  # no new id
    await item.asave()
    assert conn.hget('Item:1', 'n') == b'1' and await item.aid() == 1


async def test_areserve_ids_lets_the_next_entities_take_ids_at_once(Item, conn):
    await Item.areserve_ids(50)
    assert conn.get('Item:id:') == b'50'
    items = [Item(n=i) for i in range(50)]        # no I/O: ids of the held block
    assert not any(i._id_pending for i in items)
    assert [i.id for i in items] == list(range(1, 51))
    assert Item(n=0)._id_pending                  # the block is used up
    await session.acommit()
    assert conn.zcard('Item:n:idx') == 51


async def test_areserve_ids_is_a_no_op_while_enough_are_held(Item, conn):
    await Item.areserve_ids()                     # default: at least one id
    assert conn.get('Item:id:') == b'1'
    await Item.areserve_ids(1)
    assert conn.get('Item:id:') == b'1'
    assert Item(n=1).id == 1
    await Item.areserve_ids(3)
    await Item.areserve_ids(2)                    # 3 held: nothing to do
    assert conn.get('Item:id:') == b'4'
    assert [Item(n=i).id for i in range(3)] == [2, 3, 4]


async def test_a_reservation_extends_the_held_ids(Item, conn):
    await Item.areserve_ids(2)
    assert Item(n=1).id == 1                      # 2 is still held
    await Item.areserve_ids(5)                    # the new block follows it: kept together
    assert [Item(n=i).id for i in range(5)] == [2, 3, 4, 5, 6]


async def test_ids_stay_unique_against_plain_incr_writers(Item, conn):
    """A rom 1.1.2 process (plain INCR on the same counter) interleaved with reservations,
    constructions and pending ids read with aid()."""
    ours, theirs = [], []
    for round_ in range(20):
        if round_ % 3 == 0:
            await Item.areserve_ids(round_ + 1)
        for i in range(7):
            item = Item(n=i)
            ours.append(await item.aid())
            if i % 3 == 0:
                theirs.append(conn.incr('Item:id:'))
    assert len(ours) == 140 and len(set(ours)) == len(ours) and not set(ours) & set(theirs)
    assert max(ours + theirs) <= int(conn.get('Item:id:'))


async def test_concurrent_tasks_get_unique_ids(Item, conn):
    async def task(k: int) -> list:
        got = []
        for i in range(30):
            if i % 10 == 0:
                await Item.areserve_ids(5 + k)
            item = Item(n=i)
            await asyncio.sleep(0)
            got.append(await item.aid())
            if i % 4 == 0:
                conn.incr('Item:id:')            # a plain INCR writer on the same counter
        await session.acommit()                  # (each task's session)
        return got
    results = await asyncio.gather(*(task(k) for k in range(6)))
    ids = [i for r in results for i in r]
    assert len(ids) == 180 and len(set(ids)) == 180
    assert conn.zcard('Item:n:idx') == 180


async def test_deferred_id_models_and_fixed_block_sizes(conn):
    class Later(rom.Model):
        _defer_ids = True
        _ids_per_block = 1
        x = rom.Integer()
    await Later.areserve_ids(3)                   # larger than the model's block: as asked
    assert conn.get('Later:id:') == b'3'
    later = Later(x=1)
    assert later._id_pending                      # deferred: taken when read or saved
    assert await later.aid() == 1 and conn.get('Later:id:') == b'3'
    await later.asave()
    assert conn.hget('Later:1', 'x') == b'1'


@pytest.mark.parametrize('bad, error', [(0, ValueError), (-2, ValueError), (1.5, TypeError),
                                        ('3', TypeError), (True, TypeError),
                                        (1_000_001, ValueError), (10 ** 30, ValueError)])
async def test_bad_counts_are_refused(Item, conn, bad, error):
    with pytest.raises(error, match='ids to reserve'):
        await Item.areserve_ids(bad)
    assert conn.get('Item:id:') is None


def test_plain_id_in_blocking_code_is_unchanged(Item, conn):
    assert Item(n=1).id == 1 and conn.get('Item:id:') == b'1'


def test_shard_classes_are_refused():
    class Fake(rom.Model):
        x = rom.Integer()
    Fake._rom_take_ids = classmethod(lambda cls, conn, count: [1])  # a shard class's hook
    with pytest.raises(ORMError, match='public model'):
        asyncio.run(Fake.areserve_ids(2))


async def test_the_largest_count_is_reserved(Item, conn):
    await Item.areserve_ids(1_000_000)
    assert int(conn.get('Item:id:')) >= 1_000_000
