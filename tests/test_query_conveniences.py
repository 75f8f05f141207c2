"""Query conveniences: exists(), slicing, indexing and keyset pagination (page()).

rom 1.1.2 behaviour stays: bool(query) is always true (no __len__/__bool__), iteration,
all(), first() and limit() are unchanged.
"""
from __future__ import annotations

import pytest

import rom
import rom.util
from rom.exceptions import QueryError
from rom.query import Page


@pytest.fixture
def Item():
    class Item(rom.Model):
        n = rom.Integer(index=True)
        group = rom.Integer(index=True)
        tag = rom.Text(index=True, keygen=rom.IDENTITY)
        label = rom.Text()
    return Item


@pytest.fixture
def items(Item):
    # n: 0..29 with ties (n // 3 * 3 repeats each value three times), group alternates
    for i in range(30):
        Item(n=(i // 3) * 3, group=i % 2, tag='even' if i % 2 == 0 else 'odd', label='x%d' % i)
    rom.util.session.commit()
    rom.util.session.rollback()
    return Item


async def ordered_ids(api, query):
    return [e.id for e in await api.all(query)]


# -- exists ---------------------------------------------------------------------------------

def test_exists(items, roundtrips, conn):
    assert items.query.filter(tag='odd').exists() is True
    assert items.query.filter(tag='nothing').exists() is False
    assert items.query.filter(n=(3, 5)).exists() is True
    assert items.query.filter(n=(1000, None)).exists() is False
    assert items.query.filter(n=(3, 5), tag='odd').exists() is True
    assert items.query.filter(n=(0, 0), group=5).exists() is False
    assert items.query.order_by('n').exists() is True
    assert items.query.exists() is True
    assert items.query.filter(tag='odd').limit(14, 5).exists() is True  # 15 odd ones
    assert items.query.filter(tag='odd').limit(15, 5).exists() is False
    assert items.query.filter(tag='odd')[14:].exists() is True
    assert items.query.filter(tag='odd').select('label').exists() is True
    for query in (items.query.filter(tag='odd'), items.query.filter(n=(3, 5))):
        with roundtrips(conn) as rt:
            assert query.exists()
        assert rt.count == 1  # one index call, no row read


async def test_exists_on_empty_model(api, Item):
    assert await api.exists(Item.query) is False
    assert await api.exists(Item.query.filter(tag='odd')) is False
    assert await api.exists(Item.query.order_by('n')) is False


async def test_exists_answers_from_the_indexes_like_count(api, items, conn):
    only = items.query.filter(n=(0, 0), tag='odd')  # i in 0..2, odd i: id 2 only
    assert [e.id for e in await api.all(only)] == [2] and await api.exists(only)
    conn.delete(items._namespace + ':2')  # deleted by hand: the indexes still name it (see check --fix)
    assert await api.count(only) == 1 and await api.exists(only) is True
    assert await api.first(only) is None and await api.all(only) == []
    three_odd = items.query.filter(n=(3, 3), tag='odd')  # i in 3..5, odd i: ids 4 and 6
    assert sorted([e.id for e in await api.all(three_odd)]) == [4, 6]
    await api.delete(await api.get(items, 4))  # deleted through rom: gone from the indexes too
    assert await api.exists(three_odd) is True
    await api.delete(await api.get(items, 6))
    assert await api.exists(three_odd) is False


# -- bool(query) stays rom 1.1.2's ----------------------------------------------------------

def test_bool_of_a_query_is_always_true(Item):
    assert bool(Item.query.filter(tag='none'))
    assert not hasattr(rom.Query, '__len__') and not hasattr(rom.Query, '__bool__')


# -- slicing --------------------------------------------------------------------------------

async def test_slice_is_offset_and_limit(api, items):
    q = items.query.order_by('n')
    everything = await ordered_ids(api, q)
    assert await ordered_ids(api, q[10:20]) == everything[10:20]
    assert await ordered_ids(api, q[:5]) == everything[:5]
    assert await ordered_ids(api, q[25:]) == everything[25:]
    assert await ordered_ids(api, q[28:100]) == everything[28:]
    assert await ordered_ids(api, q[5:5]) == []
    assert await ordered_ids(api, q[7:3]) == []
    assert await ordered_ids(api, q[2:12][3:5]) == \
        everything[5:7]  # a slice of a slice stays inside
    assert await ordered_ids(api, q[2:6][3:10]) == everything[5:6]
    assert await ordered_ids(api, q.limit(4, 3)[1:]) == everything[5:7]
    assert q[10:20]._limit == (10, 10)  # lazy: a new query, nothing read yet
    assert q._limit is None  # immutable


def test_slice_reads_only_the_window(items, roundtrips, conn):
    with roundtrips(conn) as rt:
        page = items.query.order_by('n')[20:23].all()
    assert len(page) == 3
    assert rt.count <= 2  # one paging script call, one read of the rows
    assert all(c in ('EVALSHA', 'EVAL', 'HGETALL') for c in rt.commands), rt.commands


async def test_slice_unordered_and_unfiltered(api, items):
    assert await ordered_ids(api, items.query[3:6]) == [4, 5, 6]
    assert await ordered_ids(api, items.query.filter(tag='odd')[1:3]) == \
        (await ordered_ids(api, items.query.filter(tag='odd')))[1:3]


async def test_index(api, items):
    q = items.query.order_by('-n')
    everything = await ordered_ids(api, q)
    assert q[0].id == everything[0]
    assert q[29].id == everything[29]
    with pytest.raises(IndexError):
        q[30]
    with pytest.raises(IndexError):
        items.query.filter(tag='none')[0]


@pytest.mark.parametrize('bad, error', [
    (slice(-1, None), QueryError), (slice(None, -2), QueryError), (slice(0, 4, 2), QueryError),
    (-1, QueryError), ('1', TypeError), (1.0, TypeError), (slice('a', 3), TypeError),
    (True, TypeError),
])
def test_bad_indices(Item, bad, error):
    with pytest.raises(error):
        Item.query.order_by('n')[bad]


# -- keyset pagination ----------------------------------------------------------------------

async def walk(api, query, size):
    pages, cursor = [], None
    while True:
        page = await api.page(query, size, after=cursor)
        assert isinstance(page, Page)
        pages.append([e.id for e in page.items])
        cursor = page.next
        if cursor is None:
            return pages


@pytest.mark.parametrize('order', ['n', '-n'])
@pytest.mark.parametrize('size', [1, 4, 7, 30, 31])
async def test_pages_cover_the_result_in_order(api, items, order, size):
    query = items.query.order_by(order)
    pages = await walk(api, query, size)
    flat = [i for page in pages for i in page]
    assert flat == await ordered_ids(api, query)
    assert all(len(page) == size for page in pages[:-1])


@pytest.mark.parametrize('order', ['n', '-n'])
async def test_pages_of_filtered_queries(api, items, order):
    for query in (items.query.filter(tag='odd').order_by(order),
                  items.query.filter(n=(6, 20)).order_by(order),
                  items.query.filter(n=(6, 20), group=1).order_by(order)):
        pages = await walk(api, query, 4)
        assert [i for page in pages for i in page] == await ordered_ids(api, query)


async def test_pages_do_not_shift_when_earlier_entries_change(api, items):
    query = items.query.order_by('n')
    first = await api.page(query, 5)
    second_before = await api.page(query, 5, after=first.next)
    for entity in first.items:  # delete the whole first page
        await api.delete(entity)
    await api.save(items(n=-1, group=0, tag='new'))  # and insert before it
    rom.util.session.rollback()
    assert [e.id for e in (await api.page(query, 5, after=first.next)).items] == \
        [e.id for e in second_before.items]


async def test_cursor_of_a_deleted_entity_still_works(api, items):
    query = items.query.order_by('n')
    first = await api.page(query, 5)  # ends inside a tie group (n == 3: ids 4, 5, 6)
    assert [e.n for e in first.items] == [0, 0, 0, 3, 3]
    await api.delete(first.items[-1])  # the cursor's own entity is gone
    rom.util.session.rollback()
    rest = await api.page(query, 100, after=first.next)
    assert [e.id for e in first.items[:-1]] + [e.id for e in rest.items] == \
        await ordered_ids(api, query)


def test_deep_page_round_trips_and_no_temp_keys(items, roundtrips, conn):
    query = items.query.order_by('n')
    cursor = query.page(25).next
    with roundtrips(conn) as rt:
        page = query.page(3, after=cursor)
    assert len(page.items) == 3 and rt.count <= 2
    query.filter(tag='odd').page(3)
    assert not [k for k in conn.keys('*') if b'-' in k and k.count(b'-') >= 4]


async def test_page_with_select(api, items):
    page = await api.page(items.query.order_by('n').select('label'), 2)
    assert page.items == [{'label': 'x0'}, {'label': 'x1'}]


async def test_page_refuses_bad_use(api, items):
    with pytest.raises(QueryError):
        await api.page(items.query.filter(tag='odd'), 3)  # no order_by
    with pytest.raises(QueryError):
        await api.page(items.query.order_by('n').limit(0, 5), 3)
    with pytest.raises(QueryError):
        await api.page(items.query.order_by('n')[2:4], 3)
    for size in (0, -1, 1.5, True, '3'):
        with pytest.raises(QueryError):
            await api.page(items.query.order_by('n'), size)
    for cursor in ('', 'x', '1:', ':3', 'nan:3', '1:a', '1.5:3:', 3, '1:\u0663', '1_0:3',
                   ' 1:3', '0x10:3', '1' * 5000 + ':3', '1:' + '2' * 21, '\u0661:3'):
        with pytest.raises(QueryError) as error:
            await api.page(items.query.order_by('n'), 3, after=cursor)
        assert len(str(error.value)) < 120


@pytest.mark.parametrize('order', ['n', '-n'])
async def test_odd_but_valid_cursors(api, items, order):
    # any score Redis can read: before everything, after everything, or in between
    query = items.query.order_by(order)
    everything = await ordered_ids(api, query)
    low, high = ('-inf:0', 'inf:0') if order == 'n' else ('inf:0', '-inf:0')
    assert [e.id for e in (await api.page(query, 50, after=low)).items] == everything
    assert (await api.page(query, 50, after=high)).items == []
    assert [e.id for e in (await api.page(query, 50, after='1e400:0')).items] == \
        ([] if order == 'n' else everything)
    between = await api.page(query, 50, after='+4.5:0')  # between n=3 and n=6
    middle = [e.id for e in between.items]
    assert middle == \
        [e.id for e in await api.all(query) if (e.n > 4.5 if order == 'n' else e.n < 4.5)]


async def test_page_is_empty_on_no_results(api, Item):
    page = await api.page(Item.query.order_by('n'), 3)
    assert page.items == [] and page.next is None and len(page) == 0
    assert list(page) == []
