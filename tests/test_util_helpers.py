"""The small helpers reached through ``rom.util`` (spec: session-util-and-storage §4, §7)."""
from __future__ import annotations

import re
import struct
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
import redis

import rom.util as util


# --------------------------------------------------------------------------- ClassProperty

def test_class_property_passes_the_class():
    calls = []

    class Thing:
        @util.ClassProperty
        def name(cls):
            calls.append(cls)
            return cls.__name__.lower()

    class Child(Thing):
        pass

    assert Thing.name == 'thing'
    assert Thing().name == 'thing'
    assert Child().name == 'child'
    assert calls == [Thing, Thing, Child]


def test_class_property_setter_deleter_and_copies():
    store = {}

    def get(cls):
        return store.get(cls)

    def set_(cls, value):
        store[cls] = value

    def delete(cls):
        store.pop(cls, None)

    base = util.ClassProperty(get)
    with_set = base.setter(set_)
    with_del = with_set.deleter(delete)
    assert with_set is not base and with_del is not with_set
    assert base.set is None and with_set.set is set_ and with_del.delete is delete
    other = with_del.getter(lambda cls: 'other')
    assert other.set is set_ and other.delete is delete

    class Thing:
        prop = with_del

    t = Thing()
    t.prop = 5
    assert store == {Thing: 5} and Thing.prop == 5
    del t.prop
    assert store == {}

    class ReadOnly:
        prop = base

    with pytest.raises(TypeError):
        ReadOnly().prop = 1
    with pytest.raises(TypeError):
        del ReadOnly().prop
    ReadOnly.prop = 3  # class assignment replaces the descriptor
    assert ReadOnly.prop == 3


# --------------------------------------------------------------------------- time conversions

def test_epochs():
    assert util._epoch == datetime(1970, 1, 1)
    assert util._epochd == date(1970, 1, 1)


def test_dt2ts_and_ts2dt():
    assert util.dt2ts(date(2020, 1, 2)) == 1577923200.0
    assert util.dt2ts(datetime(2020, 1, 2, 3, 4, 5, 678901)) == 1577934245.678901
    assert util.dt2ts(datetime(1969, 12, 31, 23, 59, 59, 500000)) == -0.5
    assert util.ts2dt(-0.5) == datetime(1969, 12, 31, 23, 59, 59, 500000)
    assert util.ts2dt(1577934245.678901) == datetime(2020, 1, 2, 3, 4, 5, 678901)
    # issue 18: an aware datetime gives the number of the naive UTC datetime of that instant
    assert util.dt2ts(datetime(2020, 1, 1, tzinfo=timezone.utc)) == util.dt2ts(datetime(2020, 1, 1))
    plus2 = timezone(timedelta(hours=2))
    assert util.dt2ts(datetime(2020, 1, 2, 5, 4, 5, 678901, tzinfo=plus2)) == 1577934245.678901
    assert util.dt2ts(datetime(9999, 12, 31, 23, tzinfo=timezone(-timedelta(hours=5)))) \
        == 253402315200.0  # beyond datetime.max in UTC: still a number (columns refuse it)
    with pytest.raises(TypeError):
        util.dt2ts(time(1, 2))


def test_datetime_round_trip_keeps_microseconds():
    start = datetime(2001, 2, 3, 4, 5, 6)
    for micro in range(0, 1000000, 7919):
        value = start + timedelta(microseconds=micro)
        assert util.ts2dt(util.dt2ts(value)) == value


def test_t2ts_ts2t_and_the_rounding_fix():
    assert util.t2ts(time(1, 2, 3, 456789)) == 3723.456789
    assert util.t2ts(time(1, 2, 3, tzinfo=timezone.utc)) == 3723.0
    # T1: the reference truncated to 01:02:03.456788
    assert util.ts2t(3723.456789) == time(1, 2, 3, 456789)
    assert util.ts2t(0) == time(0)
    assert util.ts2t(86399.9999994) == time(23, 59, 59, 999999)
    with pytest.raises(ValueError):
        util.ts2t(86400)
    with pytest.raises(ValueError):
        util.ts2t(86399.9999996)  # rounds to 24:00:00
    lost = 0
    for micro in range(0, 1000000, 997):
        value = time(13, 14, 15, micro)
        if util.ts2t(util.t2ts(value)) != value:
            lost += 1
    assert lost == 0


# --------------------------------------------------------------------------- scores

def test_to_score():
    assert util._to_score(1.5) == '1.5'
    assert util._to_score(1.5, True) == '(1.5'
    assert util._to_score(3, True) == '(3'
    assert util._to_score(Decimal('2.50'), True) == '(2.50'
    assert util._to_score(1e20) == '1e+20'
    assert util._to_score('(3', True) == '3'
    assert util._to_score('(3') == '3'
    assert util._to_score('((3') == '3'
    assert util._to_score(True) == 'True'
    assert util._to_score(0.1) == '0.1'


def _bits(value: float) -> int:
    return struct.unpack('>Q', struct.pack('>d', value))[0]


def test_bigint_to_float():
    assert util._bigint_to_float(0) == 2.2250738585072014e-308
    assert util._bigint_to_float(1) == 2.225073858507202e-308
    assert util._bigint_to_float(True) == util._bigint_to_float(1)
    for v in (0, 1, 12345, 2 ** 52 - 1, 2 ** 52, 2 ** 60 + 17, 0x7fe0000000000000 - 1):
        assert _bits(util._bigint_to_float(v)) == v + 2 ** 52
        if v:
            assert util._bigint_to_float(-v) == -util._bigint_to_float(v)
    values = [0, 1, 2, 1000, 2 ** 52, 2 ** 53 + 1, 2 ** 62]
    floats = [util._bigint_to_float(v) for v in values]
    assert floats == sorted(floats)
    for bad in (0x7fe0000000000000, -0x7fe0000000000000, 1.0, '1', None):
        with pytest.raises(AssertionError):
            util._bigint_to_float(bad)


PREFIX_TABLE = [
    (('',), '2.2250738585072014e-308'),
    (('', True), '2.7644681943073786e-303'),
    (('red',), '4.434634544959717e-306'),
    (('blue door',), '2.1518022507901477e-306'),
    (('der',), '2.3357818686553533e-306'),
    (('rood eulb',), '4.44189571421008e-306'),
    (('hello',), '2.7088032818150034e-306'),
]


@pytest.mark.parametrize('args,expected', PREFIX_TABLE)
def test_prefix_score_reference_table(args, expected):
    assert util._prefix_score(*args) == expected


def test_prefix_score_properties():
    assert util._prefix_score('red') == util._prefix_score(b'red')
    assert util._prefix_score('abcdefgh') == util._prefix_score('abcdefgz')
    # next=True is an exclusive upper bound of the prefix range
    for prefix in ('a', 'ab', 'red', 'abcdef'):
        hi = float(util._prefix_score(prefix, next=True))
        assert float(util._prefix_score(prefix + 'zzz')) < hi
        assert float(util._prefix_score(prefix)) < hi
        assert hi <= float(util._prefix_score(prefix[:-1] + chr(ord(prefix[-1]) + 1)))
    words = sorted(['', 'a', 'ab', 'abc', 'b', 'ba', 'z', 'zz', '\xe9t\xe9'],
                   key=lambda w: w.encode('utf-8'))
    scores = [float(util._prefix_score(w)) for w in words]
    assert scores == sorted(scores)


def test_encode_unique_constraint():
    assert util._encode_unique_constraint(['1', 'a']) == '\x00\x001\x00\x00\x00a'
    assert util._encode_unique_constraint(['\xe9']) == '\x00\x00\xc3\xa9'
    assert util._encode_unique_constraint([None, '', 0, False]) == '\x00\x00\x00' * 3 + '\x00\x00'
    assert util._encode_unique_constraint([5, b'\xff\x00']) == '\x00\x005\x00\x00\x00\xff\x00'
    assert util._encode_unique_constraint(['0', '\xe9/x']).encode('utf-8') == \
        b'\x00\x000\x00\x00\x00\xc3\x83\xc2\xa9/x'


def test_random_hex():
    value = util._random_hex(16)
    assert isinstance(value, bytes) and re.match(rb'^[0-9a-f]{32}$', value)
    assert util._random_hex(16) != value
    assert util._random_hex(0) == b''


# --------------------------------------------------------------------------- script loader

def test_no_script_messages():
    assert util.NO_SCRIPT_MESSAGES == ['NOSCRIPT', 'No matching script.']


def test_script_load_eval_then_evalsha(conn, roundtrips):
    fn = util._script_load('return {KEYS[1], ARGV[1], 3}')
    with roundtrips(conn) as rt:
        assert fn(conn, ['k'], ['v']) == [b'k', b'v', 3]
        assert fn(conn, ['k2'], ['v2']) == [b'k2', b'v2', 3]
    assert rt.commands == ['EVAL', 'EVALSHA']
    counter = util._script_load('return #KEYS + #ARGV')
    assert counter(conn) == 0
    assert counter(conn, ('a',), ('b', 'c')) == 3


def test_script_load_recovers_after_script_flush(conn, roundtrips):
    fn = util._script_load("return redis.call('INCR', KEYS[1])")
    assert fn(conn, ['n']) == 1
    assert fn(conn, ['n']) == 2
    conn.script_flush()
    with roundtrips(conn) as rt:
        assert fn(conn, ['n']) == 3
    assert rt.commands == ['EVALSHA', 'EVAL']
    assert fn(conn, ['n']) == 4


def test_script_load_in_pipeline_after_script_flush(conn):
    fn = util._script_load("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert fn(conn, ['p'], [1]) == 1
    conn.script_flush()
    pipe = conn.pipeline(True)
    assert fn(pipe, ['p'], [10]) is pipe
    fn(pipe, ['p'], [100])
    assert pipe.execute() == [11, 111]
    # also a script never sent to this server before, pipelined first
    fresh = util._script_load("return 'fresh-' .. ARGV[1]")
    pipe = conn.pipeline(False)
    fresh(pipe, [], ['x'])
    assert pipe.execute() == [b'fresh-x']


def test_script_load_force_eval_and_errors(conn, roundtrips):
    fn = util._script_load(b'return ARGV[1]')
    fn(conn, [], ['a'])
    with roundtrips(conn) as rt:
        assert fn(conn, [], ['b'], force_eval=True) == b'b'
    assert rt.commands == ['EVAL']
    bad = util._script_load("return redis.call('NOSUCHCOMMAND')")
    with pytest.raises(redis.exceptions.ResponseError):
        bad(conn)
    with pytest.raises(redis.exceptions.ResponseError):
        bad(conn)  # EVALSHA error that is not NOSCRIPT propagates


def test_script_load_on_decoding_client(decoding_conn):
    fn = util._script_load('return {ARGV[1], 2}')
    assert fn(decoding_conn, [], ['x']) == ['x', 2]
