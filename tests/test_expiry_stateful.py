"""Stateful property test of expiry: random operations, time passing and queries vs an oracle.

A hypothesis ``RuleBasedStateMachine`` creates entities of a model with ``_ttl`` (no expiry,
already expired, one hour, or 20 ms), updates them, changes or removes their expiry, takes
unique values over, deletes them, lets time pass (``tick``) and runs the expiry job; after
each step a random read (index range, FULL_TEXT token, prefix, unique lookup, ``get`` of
several ids, ordered page, ``count()``) is compared with a plain-Python oracle that knows
each entity's expiry time. Entities whose expiry falls within a few milliseconds of a step
may be seen either way; everything else must match exactly. Every example ends with the job
run, no expired row left and ``audit_model`` finding nothing.

``ROM_EXPIRY_EXAMPLES`` (default 40) and ``ROM_EXPIRY_STEPS`` (default 30) scale it.
"""
from __future__ import annotations

import os
import time

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, consumes, initialize,
                                 invariant, rule, run_state_machine_as_test)

import rom
from rom import util
from rom._audit import audit_model
from rom import _expiry
from rom._expiry import ExpiryJob
from rom.exceptions import EntityDeletedError, UniqueKeyViolation

EXAMPLES = int(os.environ.get('ROM_EXPIRY_EXAMPLES', '40'))
STEPS = int(os.environ.get('ROM_EXPIRY_STEPS', '30'))
SHORT = 0.02        # seconds
MARGIN = 0.01       # expiry times this close to a step may be seen either way
TOKENS = ['red', 'green', 'blue']

values_ = st.fixed_dictionaries({
    'n': st.one_of(st.none(), st.integers(-3, 3)),
    'words': st.one_of(st.none(), st.lists(st.sampled_from(TOKENS), max_size=2).map(' '.join)),
    'name': st.one_of(st.none(), st.text('ab', max_size=3))})
tags_ = st.one_of(st.none(), st.sampled_from(['t1', 't2']))
expiry_ = st.sampled_from([None, 'past', 'long', 'short'])


def _request(entity, expiry):
    if expiry == 'past':
        entity.expire_at(time.time() - 10)
    elif expiry == 'long':
        entity.expire_in(3600)
    elif expiry == 'short':
        entity.expire_in(SHORT)
    elif expiry == 'persist':
        entity.persist()


def _deadline(expiry, start, end):
    """The (earliest, latest) local time an entity saved between start and end expires."""
    delta = {'past': None, 'long': 3600, 'short': SHORT}.get(expiry)
    if expiry == 'past':
        return (start - 10, end - 10)
    return None if delta is None else (start + delta, end + delta)


def test_expiry_operations_and_reads_match_an_oracle(conn):
    class XItem(rom.Model):
        _ttl = 0
        n = rom.Integer(index=True)
        words = rom.Text(index=True, keygen=rom.FULL_TEXT)
        name = rom.Text(prefix=True, keygen=rom.SIMPLE)
        tag = rom.Text(unique=True)
    model = XItem
    stats = {'checks': 0, 'ticks': 0}

    class Machine(RuleBasedStateMachine):
        items = Bundle('items')

        def __init__(self):
            super().__init__()
            util.CONNECTION.flushdb()
            util.session.rollback()
            self.values = {}     # id -> stored values (tag included)
            self.deadline = {}   # id -> local time it expires at, or None
            self.handles = {}

        # --- the oracle --------------------------------------------------------------------
        def _status(self, i, start, end):
            """'alive', 'dead' or 'either' for a read/write between local times start..end."""
            deadline = self.deadline[i]
            if deadline is None or deadline[0] > end + MARGIN:
                return 'alive'
            if deadline[1] <= start - MARGIN:
                return 'dead'
            return 'either'

        def _split(self, ids, start, end):
            sure = {i for i in ids if self._status(i, start, end) == 'alive'}
            maybe = {i for i in ids if self._status(i, start, end) == 'either'}
            return sure, maybe

        def _forget(self, i):
            self.values.pop(i, None)
            self.deadline.pop(i, None)
            entity = self.handles.pop(i, None)
            if entity is not None:
                util.session.forget(entity)

        def _write(self, i, action):
            """Run a write of existing entity i; expect what the oracle says."""
            start = time.time()
            try:
                action()
            except EntityDeletedError:
                assert self._status(i, start, time.time()) != 'alive', i
                # expired: the handle is useless, the row stays until it is removed
                util.session.forget(self.handles.pop(i))
                return False
            assert self._status(i, start, time.time()) != 'dead', i
            return True

        @initialize(cleanup=st.booleans())
        def choose_cleanup(self, cleanup):
            # without the cleanup by writes, expired rows stay until the job runs
            _expiry.WRITE_SWEEP = 10 if cleanup else 0

        # --- operations --------------------------------------------------------------------
        @rule(target=items, values=values_, tag=tags_, expiry=expiry_)
        def create(self, values, tag, expiry):
            entity = model(tag=tag, **values)
            _request(entity, expiry)
            owners = [j for j, v in self.values.items() if tag and v['tag'] == tag]
            start = time.time()
            try:
                entity.save()
            except UniqueKeyViolation:
                end = time.time()
                assert any(self._status(j, start, end) != 'dead' for j in owners), owners
                util.session.forget(entity)
                return None
            end = time.time()
            assert all(self._status(j, start, end) != 'alive' for j in owners), owners
            for j in owners:        # the expired owner's claim was taken over
                self.values[j]['tag'] = None
            self.values[entity.id] = dict(values, tag=tag)
            self.deadline[entity.id] = _deadline(expiry, start, end)
            self.handles[entity.id] = entity
            return entity.id

        @rule(i=items, values=values_)
        def update(self, i, values):
            if i not in self.handles:
                return
            entity = self.handles[i]

            def action():
                for key, value in values.items():
                    setattr(entity, key, value)
                entity.save()
            if self._write(i, action):
                self.values[i].update(values)

        @rule(i=items, expiry=st.sampled_from(['past', 'long', 'short', 'persist']))
        def change_expiry(self, i, expiry):
            if i not in self.handles:
                return
            entity = self.handles[i]
            start = time.time()

            def action():
                _request(entity, expiry)
                entity.save()
            if self._write(i, action):
                self.deadline[i] = (None if expiry == 'persist'
                                    else _deadline(expiry, start, time.time()))

        @rule(i=consumes(items))
        def delete(self, i):
            if i in self.handles:
                self.handles[i].delete()
                self._forget(i)

        @rule()
        def tick(self):
            stats['ticks'] += 1
            time.sleep(SHORT * 2)

        @rule()
        def run_job(self):
            start = time.time()
            list(ExpiryJob(model, block_size=3))
            for i in [i for i in self.values if self._status(i, start, start) == 'dead']:
                assert not util.CONNECTION.exists('XItem:%d' % i), i
                self._forget(i)

        # --- reads -------------------------------------------------------------------------
        def _check(self, read, matching, ordered=None):
            """``read()`` returns ids; ``matching(values)`` says which stored entities fit."""
            stats['checks'] += 1
            candidates = [i for i, v in self.values.items() if matching(v)]
            start = time.time()
            got = read()
            end = time.time()
            sure, maybe = self._split(candidates, start, end)
            assert sure <= set(got) <= sure | maybe, (got, sure, maybe)
            assert len(got) == len(set(got))
            if ordered is not None and not maybe:
                assert got == sorted(got, key=ordered), got

        @rule(lo=st.integers(-3, 3), width=st.integers(0, 3))
        def read_range(self, lo, width):
            def fits(v):
                return v['n'] is not None and lo <= v['n'] <= lo + width
            query = model.query.filter(n=(lo, lo + width))
            self._check(lambda: [e.id for e in query.all()], fits)
            start = time.time()
            count = query.count()
            end = time.time()
            sure, maybe = self._split([i for i, v in self.values.items() if fits(v)], start, end)
            assert len(sure) <= count <= len(sure) + len(maybe)

        @rule(token=st.sampled_from(TOKENS))
        def read_token(self, token):
            self._check(lambda: [e.id for e in model.query.filter(words=token).all()],
                        lambda v: token in (v['words'] or '').split())

        @rule(prefix=st.text('ab', max_size=2))
        def read_prefix(self, prefix):
            self._check(lambda: [e.id for e in model.query.startswith(name=prefix).all()],
                        lambda v: bool(v['name']) and v['name'].startswith(prefix))

        @rule(tag=st.sampled_from(['t1', 't2']))
        def read_unique(self, tag):
            def read():
                found = model.get_by(tag=tag)
                return [found.id] if found else []
            self._check(read, lambda v: v['tag'] == tag)

        @rule(fresh=st.booleans())
        def read_get(self, fresh):
            if fresh:
                util.session.rollback()
            ids = sorted(self.values) + [10 ** 6]
            self._check(lambda: [e.id for e in model.get(ids)], lambda v: True)

        @rule(offset=st.integers(0, 2), count=st.integers(1, 4))
        def read_page(self, offset, count):
            def fits(v):
                return v['n'] is not None
            start = time.time()
            got = [(e.n, str(e.id)) for e in model.query.order_by('n').limit(offset, count)]
            end = time.time()
            sure, maybe = self._split([i for i, v in self.values.items() if fits(v)], start, end)
            stats['checks'] += 1
            if not maybe:
                rows = sorted((self.values[i]['n'], str(i)) for i in sure)
                assert got == rows[offset:offset + count], (got, rows)

        @invariant()
        def rows_are_known(self):
            stored = {int(k.split(b':')[1]) for k in util.CONNECTION.keys('XItem:*')
                      if k.count(b':') == 1 and k.split(b':')[1].isdigit()}
            assert stored <= set(self.values), (stored, set(self.values))

        def teardown(self):
            _expiry.WRITE_SWEEP = 10
            time.sleep(SHORT + MARGIN)
            before = time.time()
            list(ExpiryJob(model))
            assert util.CONNECTION.zcount('XItem:-expiry-', '-inf',
                                          int((before - MARGIN) * 1000)) == 0
            report = audit_model(model)
            assert report.findings == [], report.summary()

    run_state_machine_as_test(Machine, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
        suppress_health_check=list(HealthCheck)))
    print('\nexpiry/stateful: %(checks)d checked reads, %(ticks)d ticks' % stats)
    assert stats['checks'] > 0
