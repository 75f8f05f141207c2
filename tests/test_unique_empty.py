"""Empty values in unique columns are not claimed (issue 12, low item; decision recorded here).

The models spec (§6.3) fixes rom 1.1.2's rule: a single-column unique value is claimed only
when its storage string is non-empty, so ``''`` (an empty String/Text, a Boolean ``False``)
is "no value" for uniqueness, like ``None``: any number of rows may hold it, ``get_by`` with
it finds nothing, and the audit (``python -m rom check``) expects no ``uidx`` field for it and
reports one that exists. Composite (``unique_together``) groups claim empty strings (only a
``None`` member leaves a group unconstrained).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rom
from rom import util
from rom._audit import UNIQUE_STALE, audit_model
from rom.exceptions import UniqueKeyViolation
from rom.testing import reset_rom_state

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def People(conn):
    class People(rom.Model):
        email = rom.Text(unique=True)
        raw = rom.String(unique=True)
        vip = rom.Boolean(unique=True)
        a = rom.Text()
        b = rom.Text()
        unique_together = [('a', 'b')]
    return People


async def test_empty_values_are_not_claimed_and_the_audit_agrees(api, People, conn):
    first = People(email='', raw=b'', vip=False)
    second = People(email='', raw=b'', vip=False)
    await api.save(first)
    await api.save(second)
    assert conn.hget(first._pk, 'email') == b'' and conn.hget(second._pk, 'email') == b''
    for attr in ('email', 'raw', 'vip'):
        assert conn.hkeys('People:%s:uidx' % attr) == []
    assert await api.get_by(People, email='') is None
    assert await api.get_by(People, raw=b'') is None
    assert audit_model(People).findings == []
    # a non-empty value is still claimed and enforced
    first.email, first.vip = 'ann@example.com', True
    await api.save(first)
    second.email = 'ann@example.com'
    with pytest.raises(UniqueKeyViolation):
        await api.save(second)
    util.session.rollback()
    assert (await api.get_by(People, email='ann@example.com')).id == first.id
    # back to '' releases the claim
    first = await api.get(People, first.id)
    first.email = ''
    await api.save(first)
    assert conn.hkeys('People:email:uidx') == []
    assert audit_model(People).findings == []


async def test_a_claimed_empty_value_is_reported_by_check(api, People, conn, redis_url, tmp_path):
    entity = People(email='')
    await api.save(entity)
    conn.hset('People:email:uidx', '', entity.id)   # written by something else than rom
    report = audit_model(People)
    assert [(f.kind, f.member) for f in report.findings] == [(UNIQUE_STALE, '')]
    assert 'empty values are never claimed' in report.findings[0].message
    # the command line agrees
    (tmp_path / 'empty_unique_models.py').write_text(
        'import rom\n\n\nclass People(rom.Model):\n    email = rom.Text(unique=True)\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.path.dirname(TESTS_DIR)]))
    env.pop('ROM_REDIS_URI', None)
    result = subprocess.run([sys.executable, '-m', 'rom', 'check', 'empty_unique_models:People',
                             '--json', '--url', redis_url],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert [f['kind'] for f in doc[0]['findings']] == [UNIQUE_STALE]


async def test_composite_groups_claim_empty_strings(api, People):
    await api.save(People(a='', b=''))
    with pytest.raises(UniqueKeyViolation):
        await api.save(People(a='', b=''))


@given(st.lists(st.sampled_from(['', 'x', 'y', '\0', ' ']), min_size=1, max_size=8))
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_values_claim_exactly_the_non_empty_ones(People, conn, values):
    reset_rom_state(conn)  # FLUSHDB and no stale blocks of ids
    holders = {}
    for value in values:
        entity = People(email=value)
        if value and value in holders:
            with pytest.raises(UniqueKeyViolation):
                entity.save()
            util.session.rollback()
            continue
        entity.save()
        holders.setdefault(value, entity.id)
    claimed = {k.decode(): int(v) for k, v in conn.hgetall('People:email:uidx').items()}
    assert claimed == {v: i for v, i in holders.items() if v}
    assert audit_model(People).findings == []
