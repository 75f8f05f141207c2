"""Stateful property test: random model operations and queries against an in-memory oracle.

A hypothesis ``RuleBasedStateMachine`` creates, updates (saved at once or left pending),
re-tags (unique column), deletes and commits entities, and after every step checks a
random query against a plain-Python oracle of what was saved: numeric ranges on an
Integer and a Float, FULL_TEXT tokens, booleans, ``order_by`` (ascending, descending,
SIMPLE) with ``limit``, ``startswith``/``endswith``/``like`` on a SIMPLE prefix/suffix
column (values full of ``: % . * ^ $ -`` and non-ASCII), and ``count()``. Each example ends
with ``audit_model`` finding nothing. A failure shrinks to a minimal sequence. A second
run (a third of the examples) uses a model with ``_ttl`` whose entities do not expire during
the run (tests/test_expiry_stateful.py covers time passing).

Result orders follow the query spec: a single range filter reads ascending by the
column's score, token/prefix/suffix/pattern filters leave score 0, and equal scores are
ordered by the id's *bytes* (``'10' < '2'``, §5.9 / §5.11), also for descending order_by.

``ROM_STATEFUL_EXAMPLES`` (default 150) and ``ROM_STATEFUL_STEPS`` (default 40) scale it.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, consumes, invariant,
                                 precondition, rule, run_state_machine_as_test)

import rom
from rom import util
from rom._audit import audit_model
from rom._ids import forget_blocks
from rom._helpers import _prefix_score
from rom.exceptions import UniqueKeyViolation

from test_reliability_bad_input import _like

EXAMPLES = int(os.environ.get('ROM_STATEFUL_EXAMPLES', '150'))
STEPS = int(os.environ.get('ROM_STATEFUL_STEPS', '40'))

TOKENS = ['red', 'Green', 'blue', 'a:b', 'x%y', 'dot.com', 'caf\xe9']
NAME_CHARS = 'ab:%.*^$-\xe9'
PATTERN_CHARS = 'ab:%.^$-\xe9?*+!'

ns_ = st.one_of(st.none(), st.integers(-5, 5))
fs_ = st.one_of(st.none(), st.sampled_from([-1.5, -0.25, 0.0, 0.25, 2.0, 1e300]))
bs_ = st.one_of(st.none(), st.booleans())
words_ = st.one_of(st.none(), st.lists(st.sampled_from(TOKENS), max_size=3).map(' '.join))
names_ = st.one_of(st.none(), st.text(NAME_CHARS, max_size=9))
values_ = st.fixed_dictionaries({'n': ns_, 'f': fs_, 'b': bs_, 'words': words_,
                                 'name': names_})
tags_ = st.sampled_from(['t1', 't2', 't3', 'T1'])


def _tokens(words):
    return set(rom.FULL_TEXT(words) or ()) if words else set()


def _id_bytes(i):
    return str(i).encode()


STATS = {'examples': 0, 'steps': 0, 'queries': 0}


def _run_machine(model, examples=EXAMPLES):
    class Machine(RuleBasedStateMachine):
        items = Bundle('items')

        def __init__(self):
            super().__init__()
            STATS['examples'] += 1
            util.CONNECTION.flushdb()
            forget_blocks()  # the id counters restart: held blocks of ids are stale
            util.session.rollback()
            self.saved = {}      # id -> values as stored
            self.local = {}      # id -> values the entity object holds (saved or pending)
            self.handles = {}    # id -> entity
            self.new = []        # (entity, values) created, not yet saved (commit saves them)

        # --- operations --------------------------------------------------------------------
        @rule(target=items, values=values_, tag=st.one_of(st.none(), tags_))
        def create_and_save(self, values, tag):
            entity = model(tag=tag, **values)
            taken = tag is not None and any(v.get('tag') == tag for v in self.saved.values())
            if taken:
                with pytest.raises(UniqueKeyViolation):
                    entity.save()
                util.session.forget(entity)
                return None
            entity.save()
            stored = dict(values, tag=tag)
            self.saved[entity.id] = dict(stored)
            self.local[entity.id] = dict(stored)
            self.handles[entity.id] = entity
            return entity.id

        @rule(values=values_)
        def create_pending(self, values):
            self.new.append((model(**values), dict(values, tag=None)))

        @rule(i=items, values=values_, save=st.booleans())
        def update(self, i, values, save):
            if i not in self.handles:
                return
            entity = self.handles[i]
            for key, value in values.items():
                setattr(entity, key, value)
            self.local[i].update(values)
            if save:
                entity.save()
                self.saved[i] = dict(self.local[i])

        @rule(i=items, tag=st.one_of(st.none(), tags_))
        def retag(self, i, tag):
            if i not in self.handles:
                return
            entity = self.handles[i]
            entity.tag = tag
            taken = tag is not None and any(v.get('tag') == tag for j, v in self.saved.items()
                                            if j != i)
            if taken:
                with pytest.raises(UniqueKeyViolation):
                    entity.save()
                entity.refresh(force=True)       # drop every local change of this entity
                self.local[i] = dict(self.saved[i])
                return
            entity.save()
            self.local[i]['tag'] = tag
            self.saved[i] = dict(self.local[i])

        @rule(i=consumes(items))
        def delete(self, i):
            if i not in self.handles:
                return
            self.handles.pop(i).delete()
            self.saved.pop(i)
            self.local.pop(i)

        @rule()
        def commit(self):
            util.session.commit()
            for entity, values in self.new:
                self.saved[entity.id] = dict(values)
                self.local[entity.id] = dict(values)
                self.handles[entity.id] = entity
            self.new = []
            for i in self.handles:
                self.saved[i] = dict(self.local[i])

        # --- queries -----------------------------------------------------------------------
        def _ids(self, query):
            return [e.id for e in query.all()]

        def _check(self, query, expected, ordered=True):
            STATS['queries'] += 1
            got = self._ids(query)
            if ordered:
                assert got == expected, (query, got, expected)
            else:
                assert sorted(got) == sorted(expected), (query, got, expected)
            assert query.count() == len(expected)

        def _by_id_bytes(self, ids):
            return sorted(ids, key=_id_bytes)

        @rule(lo=st.integers(-6, 6), width=st.integers(0, 6))
        def query_int_range(self, lo, width):
            hi = lo + width
            hits = [(v['n'], _id_bytes(i), i) for i, v in self.saved.items()
                    if v['n'] is not None and lo <= v['n'] <= hi]
            self._check(model.query.filter(n=(lo, hi)), [i for _, _, i in sorted(hits)])

        @rule(lo=st.sampled_from([None, -2.0, -0.25, 0.0, 1.0]),
              hi=st.sampled_from([None, -0.25, 0.0, 0.25, 3.0, 1e300]))
        def query_float_range(self, lo, hi):
            hits = [(v['f'], _id_bytes(i), i) for i, v in self.saved.items()
                    if v['f'] is not None and (lo is None or v['f'] >= lo)
                    and (hi is None or v['f'] <= hi)]
            self._check(model.query.filter(f=(lo, hi)), [i for _, _, i in sorted(hits)])

        @rule(flag=st.booleans())
        def query_bool(self, flag):
            hits = [i for i, v in self.saved.items() if v['b'] is flag]
            self._check(model.query.filter(b=flag), self._by_id_bytes(hits))

        @rule(token=st.sampled_from(TOKENS), other=st.sampled_from([None] + TOKENS))
        def query_tokens(self, token, other):
            want = {token.lower()} | ({other.lower()} if other else set())
            hits = [i for i, v in self.saved.items() if want <= _tokens(v['words'])]
            query = model.query.filter(words=token)
            if other:
                query = query.filter(words=other)
            self._check(query, self._by_id_bytes(hits))

        @rule(tokens=st.lists(st.sampled_from(TOKENS), min_size=2, max_size=3),
              lo=st.integers(-5, 5))
        def query_or_and_range(self, tokens, lo):
            want = {t.lower() for t in tokens}
            hits = [i for i, v in self.saved.items() if want & _tokens(v['words'])
                    and v['n'] is not None and v['n'] >= lo]
            # the processing order depends on index sizes: compare as sets
            self._check(model.query.filter(words=tokens, n=(lo, None)), hits, ordered=False)

        @rule(column=st.sampled_from(['n', '-n', 'f', '-f', 'name', '-name']),
              offset=st.integers(0, 4), count=st.integers(1, 6))
        def query_order_by(self, column, offset, count):
            attr = column.lstrip('-')
            sign = -1 if column.startswith('-') else 1
            rows = []
            for i, v in self.saved.items():
                value = v[attr]
                if attr == 'name':
                    if not value:
                        continue          # SIMPLE('') is None: no sort entry
                    score = float(_prefix_score(value))
                elif value is None:
                    continue
                else:
                    score = float(value)
                rows.append((sign * score, _id_bytes(i), i))
            expected = [i for _, _, i in sorted(rows)]
            query = model.query.order_by(column)
            assert query.count() == len(expected)
            got = self._ids(query.limit(offset, count))
            assert got == expected[offset:offset + count], (column, got, expected)

        @rule(prefix=st.text(NAME_CHARS, max_size=3))
        def query_startswith(self, prefix):
            hits = [i for i, v in self.saved.items()
                    if v['name'] and v['name'].encode().startswith(prefix.encode())]
            self._check(model.query.startswith(name=prefix), self._by_id_bytes(hits))

        @rule(suffix=st.text(NAME_CHARS, max_size=3))
        def query_endswith(self, suffix):
            hits = [i for i, v in self.saved.items()
                    if v['name'] and v['name'].endswith(suffix)]
            self._check(model.query.endswith(name=suffix), self._by_id_bytes(hits))

        @rule(pattern=st.text(PATTERN_CHARS, min_size=1, max_size=4))
        def query_like(self, pattern):
            hits = [i for i, v in self.saved.items() if v['name'] and _like(pattern, v['name'])]
            self._check(model.query.like(name=pattern), self._by_id_bytes(hits))

        @rule(tag=tags_)
        def query_unique(self, tag):
            owners = [i for i, v in self.saved.items() if v.get('tag') == tag]
            found = model.get_by(tag=tag)
            assert (found.id if found else None) == (owners[0] if owners else None)

        @invariant()
        def rows_match(self):
            STATS['steps'] += 1
            prefix = (model._namespace + ':').encode()  # 'SItem:' ('{rom}:SItem:' on a cluster)
            stored = {int(k[len(prefix):]) for k in util.CONNECTION.scan_iter(prefix + b'*')
                      if k[len(prefix):].isdigit()}
            assert stored == set(self.saved)

        def teardown(self):
            report = audit_model(model)
            assert report.findings == [], report.summary()

    Machine.TestCase.settings = settings(
        max_examples=examples, stateful_step_count=STEPS, deadline=None,
        suppress_health_check=list(HealthCheck))
    run_state_machine_as_test(Machine, settings=Machine.TestCase.settings)


def _sitem(**extra):
    """The model the machine runs on (``extra``: more class attributes, e.g. ``_ttl``)."""
    return type('SItem', (rom.Model,), dict(
        extra,
        n=rom.Integer(index=True),
        f=rom.Float(index=True),
        b=rom.Boolean(index=True),
        words=rom.Text(index=True, keygen=rom.FULL_TEXT),
        name=rom.Text(index=True, keygen=rom.SIMPLE, prefix=True, suffix=True),
        tag=rom.Text(unique=True)))


def test_operations_and_queries_match_an_oracle(conn):
    _run_machine(_sitem())
    print('\nreliability/stateful: %(examples)d examples, %(steps)d steps, %(queries)d '
          'checked queries' % STATS)
    assert STATS['queries'] > 0


def test_a_model_with_ttl_matches_the_same_oracle(conn):
    """Models with ``_ttl`` (here every entity expires in an hour, so none during the run)
    answer every query like any model: the expiry checks take nothing away."""
    _run_machine(_sitem(_ttl=3600), max(EXAMPLES // 3, 1))
