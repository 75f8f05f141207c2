"""Worker processes for the sharded-model unique tests (tests/test_shard_unique.py).

Importable by ``multiprocessing`` (spawn): each worker connects to the cluster, declares the
same sharded model and races for a small pool of unique values, or stops (``os._exit``)
between the steps of a save to leave what a crashed writer leaves.
"""
from __future__ import annotations

import os
import random
from typing import Any

import rom
from race_workers import change_person, connect, run_race
EMAILS = ['e%d@x' % i for i in range(20)]


def define_model(shards: int = 6) -> Any:
    class SPerson(rom.Model):
        _shards = shards
        email = rom.Text(unique=True)
        age = rom.Integer(index=True)

    return SPerson


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

    _shard_unique.release = die  # type: ignore[assignment]
    person.email = email
    person.save()
    os._exit(5)  # pragma: no cover - release() exits first
