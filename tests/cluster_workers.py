"""Worker processes for the Redis Cluster concurrency test (tests/test_cluster.py).

Each process connects to the cluster, declares the same models and runs random creates,
updates, deletes and mixed session commits over a small pool of unique values, so the
processes keep racing for the same values. Importable by ``multiprocessing`` (spawn).
"""
from __future__ import annotations

import random
import traceback
from collections import Counter
from types import SimpleNamespace
from typing import Any, Dict

import rom
import rom.util
from rom.exceptions import DataRaceError, EntityDeletedError, UniqueKeyViolation

ALLOWED = (UniqueKeyViolation, DataRaceError, EntityDeletedError)
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


def _random_existing(model: Any, rng: random.Random) -> Any:
    top = int(model._connection.get('%s:%s:' % (model._namespace, model._pkey)) or 0)
    return model.get(rng.randint(1, top)) if top else None


def worker(url: str, seed: int, n_ops: int, queue: Any) -> None:
    from redis.cluster import RedisCluster
    rng = random.Random(seed)
    ops: Dict[str, int] = Counter()
    errors: Dict[str, int] = Counter()
    unexpected = []
    try:
        rom.util.CONNECTION = RedisCluster.from_url(url)
        m = define_models()
        for _ in range(n_ops):
            op = rng.choice(['create', 'update', 'delete', 'note', 'commit'])
            ops[op] += 1
            try:
                if op == 'create':
                    m.User(email=rng.choice(EMAILS), name='u %d' % rng.randint(0, 9),
                           age=rng.randint(0, 99)).save()
                elif op == 'update':
                    user = _random_existing(m.User, rng)
                    if user is not None:
                        user.email = rng.choice(EMAILS)
                        user.age = rng.randint(0, 99)
                        user.save()
                elif op == 'delete':
                    user = _random_existing(m.User, rng)
                    if user is not None:
                        user.delete()
                elif op == 'note':
                    note = _random_existing(m.Note, rng) if rng.random() < 0.5 else None
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
            except ALLOWED as exc:
                errors[type(exc).__name__] += 1
            except Exception:
                unexpected.append(traceback.format_exc())
            finally:
                rom.util.session.rollback()
        queue.put({'ops': dict(ops), 'errors': dict(errors), 'unexpected': unexpected})
    except Exception:
        queue.put({'fatal': traceback.format_exc()})
