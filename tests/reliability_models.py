"""Models and the worker of the multi-process reliability test.

``define_models()`` (re)declares the shared models in the calling process: the test
fixtures empty ``rom.columns.MODELS`` before every test, and child processes start with
an empty registry, so every process declares them itself. ``worker()`` is the body of one
child process (importable, so ``multiprocessing``'s *spawn* start method can run it).
"""
from __future__ import annotations

import os
import random
import time
import traceback
from types import SimpleNamespace
from typing import Any, Dict, List

N_USERS = 15        # workers pick among the N_USERS most recent user ids
N_ACCOUNTS = 6
START_BALANCE = 1000
EMAILS = ['u%d@example.com' % i for i in range(500)]          # small pools: collisions happen
CODES = ['Code%d' % i for i in range(500)]
WORDS = ['red', 'green', 'blue', 'caf\xe9', 'a:b', 'x%y', 'dot.com', 'star*']
HANDLES = ['alice', 'al:ce', 'bob', 'b%b', 'carol', 'c.rol', 'dave', 'd*ve', 'eve', '\xe9ve']


def _point(data: Any) -> Any:
    if data.lon is None or data.lat is None:
        return []
    return {'lon': data.lon, 'lat': data.lat}


def define_models() -> SimpleNamespace:
    """Declare the reliability models (a fresh set) and return them."""
    import rom

    class RelUser(rom.Model):
        email = rom.Text(unique=True)                                   # single unique
        code = rom.Text(unique=True, keygen=rom.IDENTITY_CI)            # keygen unique
        handle = rom.Text(index=True, keygen=rom.SIMPLE, prefix=True, suffix=True)
        bio = rom.Text(index=True, keygen=rom.FULL_TEXT)                # FULL_TEXT sets
        score = rom.Integer(index=True)                                 # numeric
        rating = rom.Float(index=True)
        active = rom.Boolean(index=True)
        team = rom.Integer()
        slot = rom.Integer()
        lon = rom.Float()
        lat = rom.Float()
        unique_together = [('team', 'slot')]                            # composite unique
        geo_index = [rom.GeoIndex('loc', _point)]

    class RelPost(rom.Model):
        owner = rom.ManyToOne('RelUser', on_delete='cascade')
        slug = rom.Text(unique=True)
        title = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True, suffix=True)
        n = rom.Integer(index=True)

    class RelNote(rom.Model):
        author = rom.ManyToOne('RelUser', on_delete='restrict')
        text = rom.Text(index=True, keygen=rom.IDENTITY)

    class RelTag(rom.Model):                  # no foreign keys: bulk (pipelined) deletes
        _defer_ids = True                     # ids taken inside the first save's script
        name = rom.Text(unique=True, index=True, keygen=rom.SIMPLE_CI, prefix=True)
        weight = rom.Float(index=True)

    class RelAccount(rom.Model):
        name = rom.Text(unique=True)
        balance = rom.Integer(index=True)

    class RelTxn(rom.Model):
        done = rom.Integer(index=True)
        amount = rom.Integer()

    return SimpleNamespace(User=RelUser, Post=RelPost, Note=RelNote, Tag=RelTag,
                           Account=RelAccount, Txn=RelTxn,
                           all=[RelUser, RelPost, RelNote, RelTag, RelAccount, RelTxn])


def setup_accounts(m: SimpleNamespace) -> None:
    """Create the accounts transfers move money between (ids 1..N_ACCOUNTS)."""
    for i in range(N_ACCOUNTS):
        m.Account(name='acct%d' % i, balance=START_BALANCE).save()


# --------------------------------------------------------------------------- the worker

def _user_values(rng: random.Random) -> Dict[str, Any]:
    values: Dict[str, Any] = {
        'email': rng.choice(EMAILS),
        'code': rng.choice(CODES) if rng.random() < 0.8 else None,
        'handle': rng.choice(HANDLES) if rng.random() < 0.9 else None,
        'bio': ' '.join(rng.sample(WORDS, rng.randint(0, 3))),
        'score': rng.randint(-50, 50),
        'rating': rng.choice([None, rng.uniform(-5, 5), 1e300, -0.0]),
        'active': rng.choice([True, False, None]),
        'team': rng.randint(0, 29),
        'slot': rng.randint(0, 29),
    }
    if rng.random() < 0.7:
        values['lon'] = rng.uniform(-179, 179)
        values['lat'] = rng.uniform(-85, 85)
    else:
        values['lon'] = values['lat'] = None
    return values


class Worker:
    """Random operations against the shared models; counts outcomes."""

    def __init__(self, m: SimpleNamespace, rng: random.Random, allowed: tuple) -> None:
        self.m = m
        self.rng = rng
        self.allowed = allowed
        self.ops: Dict[str, int] = {}
        self.errors: Dict[str, int] = {}
        self.unexpected: List[str] = []
        self.transfers_ok = 0
        self.transfers_ok_txn_ids: List[int] = []

    # helpers
    def _recent_id(self, model: Any, window: int) -> int:
        """A random id, mostly among the ``window`` most recently allocated ones of ``model``."""
        top = int(model._connection.get('%s:%s:' % (model._namespace, model._pkey)) or 0)
        if self.rng.random() < 0.4:
            window = top              # sometimes any id: old rows get deleted too
        return self.rng.randint(max(1, top - window), max(1, top))

    def _random_user(self) -> Any:
        if self.rng.random() < 0.5:   # an existing user (every user has a score)
            member = self.m.User._connection.zrandmember('RelUser:score:idx')
            if member is not None:
                return self.m.User.get(int(member))
        return self.m.User.get(self._recent_id(self.m.User, N_USERS))

    def _pause(self) -> None:
        """Sometimes wait a little between reading and writing: widens the race windows."""
        if self.rng.random() < 0.3:
            time.sleep(self.rng.random() * 0.003)

    def _fresh(self) -> None:
        import rom.util
        rom.util.session.rollback()   # start each operation from what Redis holds

    # operations
    def op_create_user(self) -> None:
        self.m.User(**_user_values(self.rng)).save()

    def op_update_user(self) -> None:
        user = self._random_user()
        if user is None:
            return
        values = _user_values(self.rng)
        self._pause()
        for name in self.rng.sample(sorted(values), self.rng.randint(1, 4)):
            setattr(user, name, values[name])
        if self.rng.random() < 0.3:           # the unique / unique_together columns
            user.email = self.rng.choice(EMAILS)
            user.team, user.slot = self.rng.randint(0, 29), self.rng.randint(0, 29)
        user.save()

    def op_delete_user(self) -> None:
        user = self._random_user()
        if user is not None:
            self._pause()
            user.delete()                     # cascades to posts, restricted by notes

    def op_create_post(self) -> None:
        owner = self._random_user()
        post = self.m.Post(owner=owner, slug='s%d' % self.rng.randint(0, 400),
                           title=' '.join(self.rng.sample(WORDS, 2)), n=self.rng.randint(0, 9))
        post.save()

    def op_update_post(self) -> None:
        post = self.m.Post.get(self._recent_id(self.m.Post, 40))
        if post is None:
            return
        self._pause()
        if self.rng.random() < 0.3:
            self._pause()
            post.delete()
            return
        post.slug = 's%d' % self.rng.randint(0, 400)
        post.n = self.rng.randint(0, 9)
        if self.rng.random() < 0.5:
            post.title = ' '.join(self.rng.sample(WORDS, 2))
        post.save()

    def op_note(self) -> None:
        if self.rng.random() < 0.6:
            author = self._random_user()
            if author is not None:
                self.m.Note(author=author, text=self.rng.choice(WORDS)).save()
        else:
            note = self.m.Note.get(self._recent_id(self.m.Note, 20))
            if note is not None:
                note.delete()

    def op_commit_batch(self) -> None:
        import rom.util
        for _ in range(self.rng.randint(1, 3)):
            self.m.User(**_user_values(self.rng))                    # new, tracked
        for _ in range(self.rng.randint(0, 3)):
            user = self._random_user()
            if user is not None and not user._new:
                user.score = self.rng.randint(-50, 50)
                user.bio = ' '.join(self.rng.sample(WORDS, 2))
        for _ in range(self.rng.randint(0, 3)):
            self.m.Tag(name='Tag%d' % self.rng.randint(0, 30), weight=self.rng.random())
        rom.util.session.commit()

    def op_tags(self) -> None:
        import rom.util
        ids = [self._recent_id(self.m.Tag, 30) for _ in range(self.rng.randint(1, 4))]
        tags = [t for t in self.m.Tag.get(ids) if t is not None]
        self._pause()
        if self.rng.random() < 0.5:
            rom.util.session.delete(tags)     # one pipelined script call
        else:
            for tag in tags:
                tag.weight = self.rng.random()
                if self.rng.random() < 0.3:
                    tag.name = 'Tag%d' % self.rng.randint(0, 30)
            rom.util.session.commit()

    def op_transfer(self) -> None:
        a, b = self.rng.sample(range(1, N_ACCOUNTS + 1), 2)
        src, dst = self.m.Account.get([a, b])
        amount = self.rng.randint(1, 300)
        txn = self.m.Txn(done=0, amount=amount)
        txn.save()
        try:
            src.transfer(dst, 'balance', amount, txn, 'done')
        except ValueError as exc:   # only the documented failure: not enough balance
            if 'less than' not in str(exc):
                raise RuntimeError('unexpected ValueError from transfer: %s' % (exc,))
            raise
        self.transfers_ok += 1
        self.transfers_ok_txn_ids.append(txn.id)

    def run(self, n_ops: int) -> None:
        table = [
            (self.op_create_user, 14), (self.op_update_user, 20), (self.op_delete_user, 14),
            (self.op_create_post, 12), (self.op_update_post, 12), (self.op_note, 8),
            (self.op_commit_batch, 10), (self.op_tags, 10), (self.op_transfer, 12),
        ]
        funcs = [f for f, _ in table]
        weights = [w for _, w in table]
        for _ in range(n_ops):
            op = self.rng.choices(funcs, weights)[0]
            name = op.__name__[3:]
            self.ops[name] = self.ops.get(name, 0) + 1
            self._fresh()
            allowed = self.allowed + ((ValueError,) if op == self.op_transfer else ())
            try:
                op()
            except allowed as exc:
                key = '%s:%s' % (name, type(exc).__name__)
                self.errors[key] = self.errors.get(key, 0) + 1
            except Exception:
                self.unexpected.append('%s: %s' % (name, traceback.format_exc()))
        self._fresh()


def worker(url: str, seed: int, n_ops: int, queue: Any) -> None:
    """Child process: point rom at ``url``, run ``n_ops`` random operations, report."""
    started = time.monotonic()
    try:
        import redis
        import rom.util
        from rom.exceptions import (DataRaceError, EntityDeletedError, RestrictError,
                                    UniqueKeyViolation)
        rom.util.CONNECTION = redis.Redis.from_url(url)
        m = define_models()
        w = Worker(m, random.Random(seed), (UniqueKeyViolation, DataRaceError,
                                            EntityDeletedError, RestrictError))
        w.run(n_ops)
        queue.put({'pid': os.getpid(), 'seed': seed, 'ops': w.ops, 'errors': w.errors,
                   'unexpected': w.unexpected, 'transfers_ok': w.transfers_ok,
                   'txn_ids': w.transfers_ok_txn_ids,
                   'seconds': time.monotonic() - started})
    except BaseException:
        queue.put({'pid': os.getpid(), 'seed': seed, 'fatal': traceback.format_exc()})
