"""What the multiprocessing race workers of the cluster tests share (cluster_workers.py,
shard_workers.py): connecting to the cluster, picking an existing row, and the loop that
runs random operations and reports their counts, allowed errors and surprises."""
from __future__ import annotations

import random
import traceback
from collections import Counter
from typing import Any, Callable, Dict, List, Sequence

import rom.util
from rom.exceptions import DataRaceError, EntityDeletedError, UniqueKeyViolation

ALLOWED = (UniqueKeyViolation, DataRaceError, EntityDeletedError)


def connect(url: str) -> None:
    """Point rom at the Redis Cluster at ``url``."""
    from redis.cluster import RedisCluster
    rom.util.CONNECTION = RedisCluster.from_url(url)


def random_existing(model: Any, rng: random.Random) -> Any:
    """A row of ``model`` with a random id up to its counter (None if none or deleted)."""
    top = int(model._connection.get('%s:%s:' % (model._namespace, model._pkey)) or 0)
    return model.get(rng.randint(1, top)) if top else None


def change_person(model: Any, op: str, rng: random.Random, emails: Sequence[str],
                  **fields: Callable[[], Any]) -> bool:
    """Op ``'create'``, ``'update'`` (a new email and age) or ``'delete'`` of a random row of
    ``model`` (columns ``email``, ``age`` and ``fields``, each given a maker); False for any
    other ``op``."""
    if op == 'create':
        model(email=rng.choice(emails), age=rng.randint(0, 99),
              **{name: make() for name, make in fields.items()}).save()
    elif op in ('update', 'delete'):
        person = random_existing(model, rng)
        if person is not None and op == 'delete':
            person.delete()
        elif person is not None:
            person.email = rng.choice(emails)
            person.age = rng.randint(0, 99)
            person.save()
    else:
        return False
    return True


def run_race(url: str, seed: int, n_ops: int, queue: Any, setup: Callable[[], Any],
             choices: Sequence[str], step: Callable[[Any, str, random.Random], None]) -> None:
    """Connect, ``state = setup()``, then ``n_ops`` times ``step(state, op, rng)`` with ``op``
    a random one of ``choices`` (the session rolled back after each); puts
    ``{'ops', 'errors', 'unexpected'}`` (or ``{'fatal'}``) on ``queue``."""
    rng = random.Random(seed)
    ops: Dict[str, int] = Counter()
    errors: Dict[str, int] = Counter()
    unexpected: List[str] = []
    try:
        connect(url)
        state = setup()
        for _ in range(n_ops):
            op = rng.choice(choices)
            ops[op] += 1
            try:
                step(state, op, rng)
            except ALLOWED as exc:
                errors[type(exc).__name__] += 1
            except Exception:
                unexpected.append(traceback.format_exc())
            finally:
                rom.util.session.rollback()
        queue.put({'ops': dict(ops), 'errors': dict(errors), 'unexpected': unexpected})
    except Exception:
        queue.put({'fatal': traceback.format_exc()})


def race_processes(target: Callable[..., None], url: str, seeds: Sequence[int], n_ops: int,
                   ) -> Dict[str, int]:
    """Run ``target(url, seed, n_ops, queue)`` in one spawned process per seed, check that
    none failed or met a surprise and that they really raced (some UniqueKeyViolation);
    returns the allowed errors counted over all of them."""
    import multiprocessing
    ctx = multiprocessing.get_context('spawn')
    queue = ctx.Queue()
    children = [ctx.Process(target=target, args=(url, seed, n_ops, queue)) for seed in seeds]
    for child in children:
        child.start()
    results = [queue.get(timeout=240) for _ in children]
    for child in children:
        child.join(30)
    assert not [r['fatal'] for r in results if 'fatal' in r]
    unexpected = [u for r in results for u in r['unexpected']]
    assert not unexpected, unexpected[0]
    errors: Dict[str, int] = {}
    for r in results:
        for kind, count in r['errors'].items():
            errors[kind] = errors.get(kind, 0) + count
    assert errors.get('UniqueKeyViolation', 0) > 0  # the processes really raced
    return errors
