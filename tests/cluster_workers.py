"""Worker processes for the Redis Cluster concurrency test (tests/test_cluster.py).

Each process connects to the cluster, declares the same models and runs random creates,
updates, deletes and mixed session commits over a small pool of unique values, so the
processes keep racing for the same values. Importable by ``multiprocessing`` (spawn).
"""
from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import rom
import rom.util
from race_workers import change_person, random_existing, run_race
EMAILS = ['e%d@x' % i for i in range(25)]
CODES = ['c%d' % i for i in range(15)]


def define_models() -> SimpleNamespace:
    class CUser(rom.Model):
        _cluster = 'race'
        email = rom.Text(unique=True)
        name = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True)
        age = rom.Integer(index=True)

    class CNote(rom.Model):  # another slot: commits mix the two
        _cluster = True
        code = rom.Text(unique=True, index=True, keygen=rom.IDENTITY)
        n = rom.Integer(index=True)

    return SimpleNamespace(User=CUser, Note=CNote, all=[CUser, CNote])


def _step(m: SimpleNamespace, op: str, rng: random.Random) -> None:
    if change_person(m.User, op, rng, EMAILS, name=lambda: 'u %d' % rng.randint(0, 9)):
        return
    if op == 'note':
        note = random_existing(m.Note, rng) if rng.random() < 0.5 else None
        if note is None:
            m.Note(code=rng.choice(CODES), n=rng.randint(0, 9)).save()
        else:
            note.code = rng.choice(CODES)
            note.save()
    else:
        for _ in range(3):
            m.User(email=rng.choice(EMAILS), name='b', age=1)
            m.Note(code=rng.choice(CODES), n=1)
        rom.util.session.commit()


def worker(url: str, seed: int, n_ops: int, queue: Any) -> None:
    run_race(url, seed, n_ops, queue, define_models,
             ['create', 'update', 'delete', 'note', 'commit'], _step)
