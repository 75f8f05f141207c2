"""Model.transfer moves amounts exactly and refuses bad input without writing (issue 12, high).

rom 1.1.2 computed every transfer with Lua doubles: an Integer balance of 10**18 became
'1e+18', 2**53 + 2 lost a unit, a NaN amount passed the ``<= 0`` check, 0.1 into an Integer
column left rows unloadable and ``attr='id'`` rewrote primary keys. Integer and Decimal
columns now move exact decimal text; bad amounts, stored values and columns raise typed errors
and leave the database byte-identical.
"""
from __future__ import annotations

import decimal
import threading
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import rom
from rom._audit import audit_model
from rom.exceptions import InvalidColumnValue, InvalidOperation
from rom.testing import dump_database, reset_rom_state

PROPS = settings(max_examples=120, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def models(conn):
    class Wallet(rom.Model):
        n = rom.Integer(index=True)
        d = rom.Decimal(index=True)
        f = rom.Float(index=True)
        label = rom.Text(index=True, keygen=rom.SIMPLE)
        flag = rom.Boolean()

    class Ledger(rom.Model):
        done = rom.Integer()

    return Wallet, Ledger


def make(models, **values):
    Wallet, Ledger = models
    src = Wallet(**values.get('src', {}))
    dst = Wallet(**values.get('dst', {}))
    txn = Ledger(done=0)
    for e in (src, dst, txn):
        e.save()
    return src, dst, txn


async def make_async(api, models, **values):
    Wallet, Ledger = models
    src = Wallet(**values.get('src', {}))
    dst = Wallet(**values.get('dst', {}))
    txn = Ledger(done=0)
    for e in (src, dst, txn):
        await api.save(e)
    return src, dst, txn


def reload(models, *entities):
    rom.util.session.rollback()
    return [type(e).get(e.id) for e in entities]


async def reload_async(api, models, *entities):
    rom.util.session.rollback()
    return [await api.get(type(e), e.id) for e in entities]


async def test_integer_balances_are_exact(api, models, conn):
    Wallet, _ = models
    src, dst, txn = await make_async(api, models, src={'n': 10 ** 18}, dst={'n': 2 ** 53 + 2})
    await api.transfer(src, dst, 'n', 1, txn, 'done')
    assert conn.hget(src._pk, 'n') == str(10 ** 18 - 1).encode()
    assert conn.hget(dst._pk, 'n') == str(2 ** 53 + 3).encode()
    assert (src.n, dst.n, txn.done) == (10 ** 18 - 1, 2 ** 53 + 3, 1)
    src, dst = await reload_async(api, models, src, dst)
    assert (src.n, dst.n) == (10 ** 18 - 1, 2 ** 53 + 3)
    # beyond 64 bits as well, with refresh_index=False (raw text written by the script)
    src, dst, txn = await make_async(api, models, src={'n': 10 ** 40 + 7}, dst={'n': -5})
    await api.transfer(src, dst, 'n', 10 ** 40, txn, 'done', refresh_index=False)
    assert conn.hget(src._pk, 'n') == b'7'
    assert conn.hget(dst._pk, 'n') == str(10 ** 40 - 5).encode()
    src, dst = await reload_async(api, models, src, dst)
    assert (src.n, dst.n) == (7, 10 ** 40 - 5)


async def test_integral_float_and_decimal_amounts_move_integers(api, models, conn):
    src, dst, txn = await make_async(api, models, src={'n': 2 ** 53 + 2}, dst={'n': 0})
    await api.transfer(src, dst, 'n', Decimal('2E+0'), txn, 'done')
    assert (src.n, dst.n) == (2 ** 53, 2)
    assert conn.hget(dst._pk, 'n') == b'2'


async def test_decimal_balances_are_exact(api, models, conn):
    big = Decimal('12345678901234567890.123456789012345678901')
    src, dst, txn = await make_async(api, models, src={'d': big}, dst={'d': Decimal('10.50')})
    await api.transfer(src, dst, 'd', Decimal('0.000000000000000000001'), txn, 'done',
                       refresh_index=False)
    assert conn.hget(src._pk, 'd') == b'12345678901234567890.123456789012345678900'
    assert conn.hget(dst._pk, 'd') == b'10.500000000000000000001'
    src, dst = await reload_async(api, models, src, dst)
    assert src.d == Decimal('12345678901234567890.1234567890123456789') and \
        dst.d == Decimal('10.500000000000000000001')
    # decimal_places floors both results (toward -infinity), amounts given as floats
    src, dst, txn = await make_async(api, models, src={'d': Decimal('1E+2')},
                                     dst={'d': Decimal('-0.001')})
    await api.transfer(src, dst, 'd', 0.0255, txn, 'done', decimal_places=2, refresh_index=False)
    assert conn.hget(src._pk, 'd') == b'99.97'        # 99.9745 floored
    assert conn.hget(dst._pk, 'd') == b'0.02'         # 0.0245 floored


async def test_float_columns_keep_double_arithmetic(api, models, conn):
    src, dst, txn = await make_async(api, models, src={'f': 10.0}, dst={'f': 0.1})
    await api.transfer(src, dst, 'f', 0.2, txn, 'done')
    assert (src.f, dst.f) == (9.8, 0.1 + 0.2)
    with pytest.raises(InvalidColumnValue):
        await api.transfer(src, dst, 'f', 10 ** 400, txn, 'done')


@pytest.mark.parametrize('column, amount', [
    ('n', float('nan')), ('n', float('inf')), ('n', 0.1), ('n', Decimal('0.5')),
    ('n', Decimal('NaN')), ('n', Decimal('sNaN')), ('n', Decimal('-Infinity')), ('n', True),
    ('n', '5'), ('n', None), ('d', float('nan')), ('d', Decimal('Infinity')),
    ('d', Decimal('1E+5000')), ('f', float('-inf')), ('f', Decimal('sNaN')), ('n', 2 ** 13000),
    ('n', 5.017259741621798e+16),
])
async def test_bad_amounts_raise_and_write_nothing(api, models, conn, column, amount):
    src, dst, txn = await make_async(api, models, src={'n': 10, 'd': Decimal(10), 'f': 10.0})
    before = dump_database(conn)
    with pytest.raises(InvalidColumnValue):
        await api.transfer(src, dst, column, amount, txn, 'done')
    assert dump_database(conn) == before


@pytest.mark.parametrize('attr, txn_attr', [
    ('id', 'done'), ('n', 'id'), ('label', 'done'), ('flag', 'done'), ('nope', 'done'),
])
async def test_primary_key_and_non_numeric_columns_are_refused(api, models, conn, attr, txn_attr):
    src, dst, txn = await make_async(api, models, src={'n': 10, 'label': 'x'})
    before = dump_database(conn)
    with pytest.raises(InvalidOperation):
        await api.transfer(src, dst, attr, 1, txn, txn_attr)
    assert dump_database(conn) == before


async def test_same_row_as_source_and_destination_or_flag_is_refused(api, models, conn):
    src, dst, txn = await make_async(api, models, src={'n': 10}, dst={'n': 1})
    before = dump_database(conn)
    with pytest.raises(InvalidOperation, match='same row'):
        await api.transfer(src, src, 'n', 1, txn, 'done')        # rom 1.1.2 created money here
    with pytest.raises(InvalidOperation, match='flag'):
        await api.transfer(src, dst, 'n', 1, dst, 'n')
    assert dump_database(conn) == before


@pytest.mark.parametrize('stored', [b'1e+18', b'nan', b'abc', b'1.5', b' 1', b'0x10', b''])
async def test_corrupt_stored_balances_are_refused(api, models, conn, stored):
    src, dst, txn = await make_async(api, models, src={'n': 10}, dst={'n': 1})
    conn.hset(dst._pk, 'n', stored)
    before = dump_database(conn)
    with pytest.raises(InvalidColumnValue, match='not a valid Integer'):
        await api.transfer(src, dst, 'n', 1, txn, 'done')
    assert dump_database(conn) == before


async def test_decimal_places_are_checked(api, models, conn):
    src, dst, txn = await make_async(api, models, src={'d': Decimal(10)})
    before = dump_database(conn)
    for places in (-1, 31, 1.5, True):
        with pytest.raises(ValueError):
            await api.transfer(src, dst, 'd', 1, txn, 'done', decimal_places=places)
    assert dump_database(conn) == before


async def test_missing_balance_counts_as_zero(api, models, conn):
    src, dst, txn = await make_async(api, models, src={'n': 3})
    await api.transfer(src, dst, 'n', 3, txn, 'done')
    assert (src.n, dst.n) == (0, 3)


def test_concurrent_transfers_conserve_exact_totals(models, conn):
    Wallet, Ledger = models
    start = [10 ** 18 + 1, 2 ** 53 + 2, 10 ** 30]
    wallets = [Wallet(n=v, d=Decimal(v) / 1000) for v in start]
    for w in wallets:
        w.save()
    errors = []

    def worker(seed):
        import random
        rng = random.Random(seed)
        try:
            for _ in range(40):
                a, b = rng.sample(range(3), 2)
                src, dst = Wallet.get([wallets[a].id, wallets[b].id])
                txn = Ledger(done=0)
                txn.save()
                column, amount = rng.choice([('n', rng.randint(1, 10 ** 6)),
                                             ('d', Decimal(rng.randint(1, 10 ** 6)) / 1000)])
                try:
                    src.transfer(dst, column, amount, txn, 'done', refresh_index=False)
                except ValueError as exc:
                    assert 'less than' in str(exc)
                rom.util.session.rollback()
        except Exception as exc:   # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = [conn.hgetall(w._pk) for w in wallets]
    assert sum(int(r[b'n']) for r in rows) == sum(start)
    assert sum(Decimal(r[b'd'].decode()) for r in rows) == sum(Decimal(v) / 1000 for v in start)
    assert conn.hlen('Ledger:1') and all(conn.hget('Ledger:%d' % i, 'done') == b'1'
                                         for i in range(1, 161))


# -- random hostile values ----------------------------------------------------------------

ints_ = st.integers(-(10 ** 30), 10 ** 30)
decimals_ = st.decimals(allow_nan=True, allow_infinity=True, places=None).filter(
    lambda d: not d.is_finite() or abs(d.adjusted()) < 60)
amounts_ = st.one_of(st.integers(1, 10 ** 9), st.decimals(0, 10 ** 6, places=4),
                     st.floats(0, 10 ** 6), ints_, decimals_,
                     st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                     st.text(max_size=3))
balances_ = st.one_of(st.integers(10 ** 9, 10 ** 30), ints_)


@given(st.sampled_from(['n', 'd']), balances_, ints_, amounts_, st.integers(0, 4))
@PROPS
def test_random_transfers_are_exact_or_refused(models, conn, column, a, b, amount, places):
    reset_rom_state(conn)  # FLUSHDB and no stale blocks of ids
    values = {'n': (a, b), 'd': (Decimal(a) / 7919, Decimal(b).scaleb(-3))}[column]
    src, dst, txn = make(models, src={column: values[0]}, dst={column: values[1]})
    before = dump_database(conn)
    try:
        src.transfer(dst, column, amount, txn, 'done', decimal_places=places)
    except (InvalidColumnValue, ValueError) as exc:
        event('refused: %s' % (type(exc).__name__,))
        assert dump_database(conn) == before
        if isinstance(exc, ValueError) and 'less than' in str(exc):
            assert Decimal(str(values[0])) < Decimal(repr(amount) if isinstance(amount, float)
                                                     else amount)
        return
    event('transferred')
    if isinstance(amount, float):
        amount = Decimal(repr(amount))
    amount = Decimal(amount)
    assert amount > 0 and amount.is_finite()
    src, dst = reload(models, src, dst)
    exact = decimal.Context(prec=10000, Emin=-10 ** 6, Emax=10 ** 6)
    want_src = exact.subtract(Decimal(values[0]), amount)
    want_dst = exact.add(Decimal(values[1]), amount)
    if column == 'n':
        assert amount == int(amount)
        assert (src.n, dst.n) == (int(want_src), int(want_dst))
    else:
        if places:
            q = Decimal(1).scaleb(-places)
            want_src = want_src.quantize(q, decimal.ROUND_FLOOR, exact) \
                if -want_src.as_tuple().exponent > places else want_src
            want_dst = want_dst.quantize(q, decimal.ROUND_FLOOR, exact) \
                if -want_dst.as_tuple().exponent > places else want_dst
        assert (src.d, dst.d) == (want_src, want_dst)
    assert txn.done == 1 or reload(models, txn)[0].done == 1
    assert not audit_model(type(src)).findings
