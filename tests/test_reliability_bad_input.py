"""Bad input gets the typed error the spec names and leaves Redis byte-identical; hostile
strings are stored and queried literally.

For every failing operation the whole database is dumped (every key: type, TTL and full
content) before and after, and the two dumps must be equal; the entity's state (``_last``,
``_new``, ``_modified``) must be unchanged too (models spec §5.6, §6.6).
"""
from __future__ import annotations

import datetime
import decimal
import re

import pytest

import rom
from rom._audit import audit_model
from rom.exceptions import (ColumnError, InvalidColumnValue, InvalidOperation,
                            UniqueKeyViolation)


def dump(conn):
    """Every key of the database with its type, TTL and content (sorted, comparable)."""
    out = {}
    for key in conn.scan_iter(count=1000):
        kind = conn.type(key).decode()
        if kind == 'string':
            value = conn.get(key)
        elif kind == 'hash':
            value = sorted(conn.hgetall(key).items())
        elif kind == 'set':
            value = sorted(conn.smembers(key))
        elif kind == 'zset':
            value = conn.zrange(key, 0, -1, withscores=True)
        elif kind == 'list':
            value = conn.lrange(key, 0, -1)
        else:  # pragma: no cover - rom writes nothing else
            value = conn.dump(key)
        out[key] = (kind, conn.ttl(key), value)
    return out


def _score_keygen(value):
    """A custom dict keygen: the Json value's 'score' item becomes the score as given."""
    if not value:
        return None
    return {'': value.get('score'), 'sub': value.get('sub', 1)}


def _point(data):
    pt = data.pt
    return [pt] if pt else []


@pytest.fixture
def Everything(conn):
    class Everything(rom.Model):
        i = rom.Integer(index=True)
        iu = rom.Integer(unique=True)
        f = rom.Float(index=True)
        d = rom.Decimal(index=True)
        b = rom.Boolean(index=True)
        dt = rom.DateTime(index=True)
        sdt = rom.SaferDateTime()
        dd = rom.Date(index=True)
        t = rom.Time(index=True)
        s = rom.String(unique=True)
        tx = rom.Text(index=True, keygen=rom.FULL_TEXT, unique=True)
        j = rom.Json()
        kg = rom.Json(index=True, keygen=_score_keygen)
        pt = rom.Json()
        geo_index = [rom.GeoIndex('loc', _point)]
    return Everything


@pytest.fixture
def saved(Everything):
    e = Everything(i=1, iu=7, f=1.5, d=decimal.Decimal('2.5'), b=True,
                   dt=datetime.datetime(2020, 1, 2, 3, 4, 5), sdt=datetime.datetime(2021, 1, 1),
                   dd=datetime.date(2020, 5, 6), t=datetime.time(1, 2, 3), s=b'\xff\x00raw',
                   tx='hello world', j={'a': 1}, kg={'score': 3}, pt={'lon': 2.0, 'lat': 48.0})
    e.save()
    return e


# an aware datetime whose instant in UTC lies after datetime.max (aware values are accepted)
AWARE = datetime.datetime(9999, 12, 31, 23, tzinfo=datetime.timezone(-datetime.timedelta(hours=5)))

# (label, column, value, exception at assignment or None, exception at save)
CASES = [
    # assignment errors: the value never reaches the entity
    ('int from text', 'i', 'abc', InvalidColumnValue, None),
    ('int from list', 'i', [], InvalidColumnValue, None),
    ('int from float text', 'i', '4.5', InvalidColumnValue, None),
    ('float from text', 'f', 'x', InvalidColumnValue, None),
    ('decimal from text', 'd', 'abc', decimal.InvalidOperation, None),  # compat: unwrapped
    ('datetime from text', 'dt', 'yesterday', InvalidColumnValue, None),
    ('datetime from date', 'dt', datetime.date(2020, 1, 1), InvalidColumnValue, None),
    ('saferdatetime from number', 'sdt', 86400, InvalidColumnValue, None),
    ('saferdatetime from None', 'sdt', None, InvalidColumnValue, None),
    ('date from text', 'dd', 'x', InvalidColumnValue, None),
    ('time of 24 h', 't', 86400, InvalidColumnValue, None),
    ('time from text', 't', 'noon', InvalidColumnValue, None),
    ('string from str', 's', 'text', InvalidColumnValue, None),
    ('text from bad utf-8', 'tx', b'\xff\xfe', InvalidColumnValue, None),
    ('text from int', 'tx', 5, InvalidColumnValue, None),
    ('invalid json', 'j', '{bad', InvalidColumnValue, None),
    ('json scalar', 'j', '5', InvalidColumnValue, None),
    ('json from int', 'j', 5, InvalidColumnValue, None),
    ('primary key', 'id', 99, InvalidOperation, None),
    # save-time errors: validated before anything is sent (W1, G3)
    ('huge indexed int', 'i', 10 ** 400, None, InvalidColumnValue),
    ('NaN float', 'f', float('nan'), None, InvalidColumnValue),
    ('NaN decimal', 'd', decimal.Decimal('NaN'), None, InvalidColumnValue),
    ('overflowing decimal', 'd', decimal.Decimal('1e400'), None, InvalidColumnValue),
    ('aware datetime past max', 'dt', AWARE, InvalidColumnValue, None),
    ('text with a lone surrogate', 'tx', 'a\udc80', InvalidColumnValue, None),
    ('int from fractional float', 'i', 1.9, InvalidColumnValue, None),
    ('int from infinity', 'i', float('inf'), InvalidColumnValue, None),
    ('int from decimal infinity', 'i', decimal.Decimal('Infinity'), InvalidColumnValue, None),
    ('decimal signaling NaN', 'd', decimal.Decimal('sNaN'), InvalidColumnValue, None),
    ('huge int in a float', 'f', 10 ** 400, InvalidColumnValue, None),
    ('json not serialisable', 'j', {'a': {1, 2}}, None, InvalidColumnValue),
    ('score None', 'kg', {'score': None}, None, InvalidColumnValue),
    ('score bool', 'kg', {'score': True}, None, InvalidColumnValue),
    ('score nan text', 'kg', {'score': 'nan'}, None, InvalidColumnValue),
    ('score NaN float', 'kg', {'score': float('nan')}, None, InvalidColumnValue),
    ('score empty', 'kg', {'score': ''}, None, InvalidColumnValue),
    ('score word', 'kg', {'score': 'abc'}, None, InvalidColumnValue),
    ('score underscore', 'kg', {'score': '1_0'}, None, InvalidColumnValue),
    ('score space', 'kg', {'score': ' 5'}, None, InvalidColumnValue),
    ('score overflow', 'kg', {'score': '1e400'}, None, InvalidColumnValue),
    ('score underflow', 'kg', {'score': '1e-400'}, None, InvalidColumnValue),
    ('score huge int', 'kg', {'score': 10 ** 400}, None, InvalidColumnValue),
    ('score container', 'kg', {'score': [1]}, None, InvalidColumnValue),
    ('sub-score nan', 'kg', {'score': 1, 'sub': 'nan'}, None, InvalidColumnValue),
    ('geo lon 200', 'pt', {'lon': 200, 'lat': 1}, None, InvalidColumnValue),
    ('geo lat 90', 'pt', {'lon': 1, 'lat': 90}, None, InvalidColumnValue),
    ('geo lon text', 'pt', {'lon': 'abc', 'lat': 1}, None, InvalidColumnValue),
    ('geo lon nan', 'pt', {'lon': float('nan'), 'lat': 1}, None, InvalidColumnValue),
    ('geo lon inf', 'pt', {'lon': float('inf'), 'lat': 1}, None, InvalidColumnValue),
    ('geo lat bool', 'pt', {'lon': 1, 'lat': True}, None, InvalidColumnValue),
    ('geo without lat', 'pt', {'lon': 1}, None, rom.exceptions.ORMError),
]


@pytest.mark.parametrize('label,attr,value,on_assign,on_save', CASES, ids=[c[0] for c in CASES])
def test_bad_value_is_refused_and_nothing_changes(conn, saved, label, attr, value, on_assign,
                                                  on_save):
    before = dump(conn)
    state = (dict(saved._last), saved._new, saved._modified, saved.to_dict())
    if on_assign is not None:
        with pytest.raises(on_assign):
            setattr(saved, attr, value)
        assert (dict(saved._last), saved._new, saved._modified, saved.to_dict()) == state
        saved.save()  # the entity is still usable
    else:
        setattr(saved, attr, value)
        last = dict(saved._last)
        with pytest.raises(on_save):
            saved.save()
        assert saved._last == last and saved._modified and not saved._new
    assert dump(conn) == before
    assert audit_model(type(saved)).findings == []


@pytest.mark.parametrize('label,attr,value,on_assign,on_save', CASES, ids=[c[0] for c in CASES])
def test_bad_value_in_a_new_entity_writes_nothing(conn, Everything, label, attr, value,
                                                  on_assign, on_save):
    if label in CONSTRUCTION_ACCEPTS:
        return
    before = dump(conn)
    error = on_assign or on_save
    with pytest.raises(error):
        # construction converts and validates (§5.4); the rest fails at save
        Everything(**{attr: value}).save()
    # a new entity consumes an id, saved or not (spec §3.4.9; ids are never reused)
    _same_but_one_id(conn, before, b'Everything:id:')
    rom.util.session.rollback()


# accepted when constructing (not when assigning): str in a String column is latin-1
# encoded (§3.4.6), None in a SaferDateTime means "not provided" (S1), the pk is refused
# by another rule (§3.4.9)
CONSTRUCTION_ACCEPTS = {'string from str', 'saferdatetime from None', 'primary key'}


def test_saferdatetime_none_at_construction_is_not_an_error(conn, Everything):
    # S1: None means "not provided" at construction
    e = Everything(sdt=None)
    e.save()
    assert Everything.get(e.id).sdt is None


def test_unknown_column_only_consumes_an_id(conn, Everything, saved):
    before = dump(conn)
    with pytest.raises(InvalidColumnValue):
        Everything(i=3, nonsense=1)
    after = dump(conn)
    # spec §5.4 step 3 (compat): the new id has already been taken (from the process's block
    # of ids: the counter covers it), so the next entity gets the id after it
    counter = b'Everything:id:'
    last = int(before.pop(counter)[2])
    assert int(after.pop(counter)[2]) >= last + 1
    assert after == before
    assert Everything(i=4).id == last + 2


def test_unique_violation_in_a_batch_keeps_earlier_entities_and_writes_nothing_else(
        conn, Everything, saved):
    a = Everything(iu=100)
    b = Everything(iu=7)          # taken by ``saved``
    c = Everything(iu=101)
    with pytest.raises(UniqueKeyViolation):
        rom.util.session.commit()
    assert Everything.get_by(iu=100) is a and not a._new
    assert b._new and c._new
    assert conn.hget('Everything:iu:uidx', b'101') is None
    assert audit_model(Everything).findings == []


def test_none_geo_point_is_skipped(conn, Everything):
    e = Everything(pt={'lon': None, 'lat': 3})
    e.save()
    assert conn.zcard('Everything:loc:geo') == 0
    assert audit_model(Everything).findings == []


def test_bad_keygen_result_type(conn):
    class Weird(rom.Model):
        v = rom.Text(index=True, keygen=lambda v: 42)
    before = dump(conn)
    with pytest.raises(ColumnError):
        Weird(v='x').save()
    _same_but_one_id(conn, before, b'Weird:id:')


def _same_but_one_id(conn, before, counter):
    """The dump equals ``before`` except that a new entity may have consumed one id."""
    after = dump(conn)
    before = dict(before)
    if counter in after:
        assert int(after.pop(counter)[2]) <= int(before.pop(counter, (0, 0, b'0'))[2]) + 1
    assert after == before


# --------------------------------------------------------------------------- hostile strings

def _like(pattern, value):
    """Query spec §5.8 on UTF-8 bytes: ``? * + !`` wildcards, anchored at the start only."""
    out = []
    for ch in pattern.encode('utf-8'):
        c = bytes([ch])
        out.append({b'?': b'.?', b'*': b'.*', b'+': b'.+', b'!': b'.'}.get(c, re.escape(c)))
    return re.match(b''.join(out), value.encode('utf-8'), re.DOTALL) is not None


HOSTILE = ['a:b', 'a', ':', 'a\0b', '\0', '*', '%', '?', '[', 'x%y', 'x.y', 'x-y', 'x(y)',
           'x[y]', '^x$', '%a', '.*', '+', '-', 'end\\', 'caf\xe9', '\u2603:*', 'a:b:idx',
           'id', '-index-data-', 'x\0y\0' + '1']


@pytest.fixture
def Hostile(conn):
    class Hostile(rom.Model):
        key = rom.Text(unique=True)
        ident = rom.Text(index=True, keygen=rom.IDENTITY)
        name = rom.Text(index=True, keygen=rom.SIMPLE, prefix=True, suffix=True)
        raw = rom.String(unique=True)
        big = rom.Text()
        a = rom.Text()
        b = rom.Text()
        unique_together = [('a', 'b')]
    return Hostile


def test_hostile_strings_round_trip_and_query_literally(conn, Hostile):
    entities = {}
    for n, value in enumerate(HOSTILE):
        e = Hostile(key=value, ident=value, name=value, raw=value.encode('utf-8') + b'\xff\x80',
                    a=value, b=str(n))
        e.save()
        entities[value] = e
    rom.util.session.rollback()
    for value, e in entities.items():
        loaded = Hostile.get(e.id)
        assert (loaded.key, loaded.ident, loaded.name, loaded.raw) == (
            value, value, value, value.encode('utf-8') + b'\xff\x80')
        assert Hostile.get_by(key=value).id == e.id
        assert Hostile.get_by(raw=value.encode('utf-8') + b'\xff\x80').id == e.id
        # an IDENTITY token is one whole value: 'a' does not find 'a:b' and vice versa
        assert [x.id for x in Hostile.query.filter(ident=value).all()] == [e.id]
        assert Hostile.query.filter(ident=value).count() == 1
        # SIMPLE prefix/suffix/like: the value itself, matched literally
        hits = {x.id for x in Hostile.query.startswith(name=value).all()}
        assert hits == {entities[v].id for v in HOSTILE if v.startswith(value)}
        hits = {x.id for x in Hostile.query.endswith(name=value).all()}
        assert hits == {entities[v].id for v in HOSTILE if v.endswith(value)}
        if not any(c in value for c in '?*+!'):
            hits = {x.id for x in Hostile.query.like(name=value).all()}
            assert hits == {entities[v].id for v in HOSTILE if v.startswith(value)}, value
    # like(): % . - ( ) [ ^ $ are literal characters (query #1)
    for pattern, expected in [('x%y', ['x%y']), ('x.y', ['x.y']), ('x-y', ['x-y']),
                              ('x(y)', ['x(y)']), ('x[y]', ['x[y]']), ('^x$', ['^x$']),
                              ('%a', ['%a']), ('*y)', ['x(y)']), ('.*', ['.*']),
                              ('x!y', ['x%y', 'x.y', 'x-y', 'x(y)', 'x[y]', 'x\0y\0' + '1']),
                              ('*:', ['a:b', ':', '\u2603:*', 'a:b:idx'])]:
        hits = sorted(x.name for x in Hostile.query.like(name=pattern).all())
        assert hits == sorted(expected), pattern
        assert hits == sorted(v for v in HOSTILE if _like(pattern, v)), pattern
    # a value holding '\0' + digits never yields a phantom id
    ids = {x.id for x in Hostile.query.startswith(name='x').all()}
    assert ids == {entities[v].id for v in HOSTILE if v.startswith('x')}
    assert audit_model(Hostile).findings == []


def test_colons_do_not_collide_in_composite_uniques(conn, Hostile):
    Hostile(a='a:', b='b').save()
    Hostile(a='a', b=':b').save()       # same text joined with ':', different values
    Hostile(a='a:b', b='').save()
    with pytest.raises(UniqueKeyViolation):
        Hostile(a='a', b=':b').save()
    assert conn.hlen('Hostile:a:b:uidx') == 3
    assert audit_model(Hostile).findings == []


def test_one_megabyte_values(conn, Hostile):
    text = ('lorem ipsum \u2603 ' * 70000)[:1 << 20]
    raw = bytes(range(256)) * 4096                 # 1 MiB, every byte value incl. \0, \xff
    e = Hostile(big=text, raw=raw, key=text, name=text)
    e.save()
    rom.util.session.rollback()
    loaded = Hostile.get(e.id)
    assert loaded.big == text and loaded.raw == raw and loaded.key == text
    assert Hostile.get_by(raw=raw).id == e.id
    assert Hostile.get_by(key=text).id == e.id
    assert [x.id for x in Hostile.query.startswith(name=text[:20]).all()] == [e.id]
    assert [x.id for x in Hostile.query.endswith(name=text[-20:]).all()] == [e.id]
    assert audit_model(Hostile).findings == []
