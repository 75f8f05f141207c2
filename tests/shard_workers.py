"""Worker processes for the sharded-model unique tests (tests/test_shard_unique.py).

Importable by ``multiprocessing`` (spawn): each worker connects to the cluster, declares the
same sharded model and races for a small pool of unique values, or stops (``os._exit``)
between the steps of a save to leave what a crashed writer leaves.
"""
from __future__ import annotations

import os
import random
from typing import Any, Dict, List

import rom
from race_workers import change_person, connect, random_existing, run_race
EMAILS = ['e%d@x' % i for i in range(20)]


def define_model(shards: int = 6) -> Any:
    class SPerson(rom.Model):
        _shards = shards
        email = rom.Text(unique=True)
        age = rom.Integer(index=True)

    return SPerson


def holders(model: Any) -> Dict[str, List[int]]:
    """email -> ids of the rows holding it (read from every shard)."""
    rom.util.session.rollback()
    out: Dict[str, List[int]] = {}
    for person in model.query.all():
        out.setdefault(person.email, []).append(person.id)
    return out


def assert_consistent(model: Any, conn: Any) -> None:
    """No value held twice, every held value claimed by its row, every shard's audit clean."""
    from rom._audit import audit_model
    from rom._shard_unique import claims_key
    held = holders(model)
    assert all(len(v) == 1 for v in held.values()), {k: v for k, v in held.items() if len(v) > 1}
    for email, (ident,) in held.items():
        owner = conn.hget(claims_key(model, 'email', email), email)
        assert owner is not None and owner.decode().partition(':')[0] == str(ident), email
        assert model.get_by(email=email).id == ident
    for shard in model._shard_models:
        report = audit_model(shard, block_size=50)
        assert report.ok, report.summary()


def _step(model: Any, op: str, rng: random.Random) -> None:
    change_person(model, op, rng, EMAILS)


def race(url: str, seed: int, n_ops: int, queue: Any) -> None:
    """Random creates, updates and deletes over EMAILS; reports counts and surprises."""
    run_race(url, seed, n_ops, queue, define_model, ['create', 'create', 'update', 'delete'],
             _step)


def crash(url: str, step: str, email: str, other: str) -> None:
    """Stop the process between the steps of a save.

    ``step == 'claimed'``: a new entity claims ``email``, the process dies before writing its
    row. ``step == 'written'``: an entity created with ``other`` changes to ``email``; the
    process dies after the row write, before releasing ``other``'s claim.
    """
    connect(url)
    model = define_model()
    from rom import _shard_unique
    if step == 'claimed':
        person = model(email=email, age=1)
        _shard_unique.acquire(type(person), str(person.id), [('email', email)], 'crashed-token')
        os._exit(3)
    person = model(email=other, age=2)
    person.save()

    def die(*args: Any) -> None:
        os._exit(4)

    _shard_unique.op_release = die  # type: ignore[assignment]
    person.email = email
    person.save()
    os._exit(5)  # pragma: no cover - release() exits first


# -- unique_together groups of sharded models (tests/test_shard_unique_together.py) ----------

PAIRS = [(name, n) for name in ('a', 'b', 'c') for n in (1, 2, 3)]


def define_group_model(shards: int = 6) -> Any:
    class SPair(rom.Model):
        _shards = shards
        name = rom.Text(index=True, keygen=rom.IDENTITY)
        n = rom.Integer(index=True)
        note = rom.Text()
        unique_together = [('name', 'n')]

    return SPair


def pair_holders(model: Any) -> Dict[Any, List[int]]:
    """(name, n) -> ids of the rows holding it (read from every shard)."""
    rom.util.session.rollback()
    out: Dict[Any, List[int]] = {}
    for row in model.query.all():
        if row.name is not None and row.n is not None:
            out.setdefault((row.name, row.n), []).append(row.id)
    return out


def assert_pairs_consistent(model: Any, conn: Any) -> None:
    """No combination held twice, each held one claimed by its row, every audit clean."""
    from rom._audit import audit_model
    from rom._helpers import _encode_unique_constraint
    from rom._shard_unique import claims_key
    held = pair_holders(model)
    assert all(len(v) == 1 for v in held.values()), {k: v for k, v in held.items() if len(v) > 1}
    for (name, n), (ident,) in held.items():
        field = _encode_unique_constraint([str(n), name])  # (columns sorted: n, name)
        owner = conn.hget(claims_key(model, 'n:name', field), field)
        assert owner is not None and owner.decode().partition(':')[0] == str(ident), (name, n)
        assert model.get_by(name=name, n=n).id == ident
    for shard in model._shard_models:
        report = audit_model(shard, block_size=50)
        assert report.ok, report.summary()


def _pair_step(model: Any, op: str, rng: random.Random) -> None:
    if op == 'create':
        name, n = rng.choice(PAIRS)
        model(name=name, n=n, note='x').save()
        return
    row = random_existing(model, rng)
    if row is None:
        return
    if op == 'delete':
        row.delete()
    else:
        row.name, row.n = rng.choice(PAIRS)
        row.save()


def race_pairs(url: str, seed: int, n_ops: int, queue: Any) -> None:
    """Random creates, updates and deletes over PAIRS (a unique_together group)."""
    run_race(url, seed, n_ops, queue, define_group_model, ['create', 'create', 'update',
                                                           'delete'], _pair_step)


async def race_tasks(model: Any, conn: Any, create: Any, change: Any, tasks: int = 8,
                     ops: int = 25) -> Dict[str, int]:
    """``tasks`` asyncio tasks doing ``ops`` random operations each on ``model``: half
    ``await create(rng, seed).asave()``, else a random existing row gets ``change(row, rng)``
    and ``asave()`` or is deleted. Returns the outcomes counted ('ok' or the allowed error's
    name); fails unless some ran and some raised ``UniqueKeyViolation``."""
    import asyncio
    from race_workers import ALLOWED
    outcomes: Dict[str, int] = {}
    counter = '%s:%s:' % (model._namespace, model._pkey)

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(ops):
            try:
                roll = rng.random()
                if roll < 0.5:
                    await create(rng, seed).asave()
                else:
                    top = int(conn.get(counter) or 0)
                    row = await model.aget(rng.randint(1, top)) if top else None
                    if row is None:
                        continue
                    if roll < 0.8:
                        change(row, rng)
                        await row.asave()
                    else:
                        await row.adelete()
                kind = 'ok'
            except ALLOWED as exc:
                kind = type(exc).__name__
            finally:
                rom.util.session.rollback()
            outcomes[kind] = outcomes.get(kind, 0) + 1

    await asyncio.gather(*(worker(seed) for seed in range(tasks)))
    assert outcomes.get('ok') and outcomes.get('UniqueKeyViolation'), outcomes
    return outcomes
