"""The Query builder: immutability, filter records, validation, warnings (no data needed)."""
from __future__ import annotations

import datetime
import decimal
import warnings

import pytest

import rom
import rom.query
from rom import query as q
from rom.exceptions import QueryError
from rom.index import Geofilter, GeoIndex, Pattern, Prefix, Suffix
from rom.query import NOT_NULL, Query


@pytest.fixture
def M():
    class Ref(rom.Model):
        name = rom.Text()

    class M(rom.Model):
        ft = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True, suffix=True)
        ident = rom.Text(index=True, keygen=rom.IDENTITY, prefix=True)
        ici = rom.Text(index=True, keygen=rom.IDENTITY_CI)
        sci = rom.Text(index=True, keygen=rom.SIMPLE_CI, prefix=True, suffix=True)
        bs = rom.String(index=True, keygen=rom.IDENTITY_STRING_CI)
        n = rom.Integer(index=True)
        f = rom.Float(index=True)
        d = rom.Decimal(index=True)
        dt = rom.DateTime(index=True)
        dd = rom.Date(index=True)
        t = rom.Time(index=True)
        b = rom.Boolean(index=True)
        plain = rom.Text()
        js = rom.Json()
        tx = rom.Text(index=True, keygen=rom.FULL_TEXT)
        ref = rom.ManyToOne('Ref', on_delete='no action')
        kw = rom.Json(index=True, keygen=lambda v: None)
        io = rom.IndexOnly('plain', rom.IDENTITY_CI)
        geo_index = [GeoIndex('loc', lambda data: None)]
    return M


def test_module_names():
    assert rom.query.__all__ == ['ALLOWED_DIST', 'NOT_NULL', 'NUMERIC_TYPES', 'Query']
    assert NOT_NULL == (None, None)
    assert q.NUMERIC_TYPES == (int, float, decimal.Decimal, datetime.datetime, datetime.date,
                               datetime.time)
    assert q.ALLOWED_DIST == ('m', 'km', 'mi', 'ft')
    assert q._LT == (str, bytes)
    assert q._STRING_SORT_KEYGENS == ['SIMPLE', 'SIMPLE_CI', 'CASE_INSENSITIVE']
    assert rom.Query is Query and rom.NOT_NULL is NOT_NULL
    for name in ('_dict_data_factory', '_tuple_data_factory', '_namedtuple_data_factory',
                 '_list_data_factory', '_select_generator', '_get_column_data', '_json_loads'):
        assert callable(getattr(q, name))
    assert q._json_loads(b'{}') == [] and q._json_loads('[[1, false]]') == [[1, False]]


def test_immutability_and_replace(M):
    base = M.query
    assert isinstance(base, Query) and base._model is M
    f1 = base.filter(n=5)
    assert base._filters == () and f1._filters == (('n', 5, 5),)
    f2 = f1.filter(ft='x')
    assert f1._filters == (('n', 5, 5),) and f2._filters == (('n', 5, 5), 'ft:x')
    o = f2.order_by('-n')
    assert f2._order_by is None and o._order_by == '-n'
    assert o.order_by('n')._order_by == 'n'
    lim = o.limit(2, 3)
    assert o._limit is None and lim._limit == (2, 3) and lim.limit(0, 1)._limit == (0, 1)
    r = lim.replace(limit=None)
    assert r._limit is None and r._filters == lim._filters
    with pytest.raises(TypeError):
        base.replace(bogus=1)
    assert set(Query.__slots__) == {'_model', '_filters', '_order_by', '_limit', '_select'}
    with pytest.raises(AttributeError):
        base.other = 1


def test_filter_records(M):
    fq = lambda **kw: M.query.filter(**kw)._filters  # noqa: E731
    assert fq(ft='Hello') == ('ft:hello',)              # FULL_TEXT lowercases
    assert fq(ident='Hello') == ('ident:Hello',)        # IDENTITY keeps case
    assert fq(ici='HeLLo') == ('ici:hello',)
    assert fq(sci='HeLLo') == ('sci:hello',)
    assert fq(bs=b'ABC') == ('bs:abc',)                 # IDENTITY_STRING_CI (bug query #8)
    assert fq(bs=b'\xe9') == ('bs:\xe9',)               # single bytes: latin-1
    assert fq(ident=['A', b'\xc3\xa9']) == (['ident:A', 'ident:é'],)   # list: UTF-8
    assert fq(ft=['A', 'B']) == (['ft:a', 'ft:b'],)
    assert fq(n=5) == (('n', 5, 5),)
    assert fq(n=(1, None)) == (('n', 1, None),)
    assert fq(n=('2', '5')) == (('n', '2', '5'),)
    assert fq(f=1.5) == (('f', 1.5, 1.5),)
    assert fq(d=decimal.Decimal('2.5')) == (('d', decimal.Decimal('2.5'), decimal.Decimal('2.5')),)
    assert fq(dt=datetime.datetime(2000, 1, 1, 0, 0, 0, 250000)) == \
        (('dt', 946684800.25, 946684800.25),)
    assert fq(dd=(datetime.date(2000, 1, 2), None)) == (('dd', 946771200.0, None),)
    assert fq(t=(datetime.time(1, 2, 3), datetime.time(2, 0))) == (('t', 3723.0, 7200.0),)
    assert fq(b=True) == ('b:True',) and fq(b=False) == ('b:False',)
    assert fq(n=True) == ('n:True',)                    # compat: bools are tokens everywhere
    assert fq(ref=NOT_NULL) == (('ref', None, None),)
    assert fq(ref=7) == (('ref', 7, 7),)
    assert fq(n=(None, None)) == (('n', None, None),)
    assert fq(**{'kw:n:42': (40, 45)}) == (('kw:n:42', 40, 45),)
    assert fq(kw='n:red') == ('kw:n:red',)
    assert fq(io='ABC') == ('io:ABC',)                  # IndexOnly lambda: no lowercasing
    assert fq(ft='a:b\0c') == ('ft:a:b\0c',)
    assert M.query.filter(n=1, ft='x')._filters == (('n', 1, 1), 'ft:x')


@pytest.mark.parametrize('kwargs', [
    {'nope': 1}, {'plain': 'x'}, {'js': 'x'}, {'n': None}, {'n': []}, {'n': {1}},
    {'n': (1, 2, 3)}, {'n': (1,)}, {'n': NOT_NULL}, {'ft': [1, 2]}, {'ft': ['a', None]},
    {'n': object()}, {'nope:x': 1}])
def test_filter_errors(M, kwargs):
    with pytest.raises(QueryError):
        M.query.filter(**kwargs)


def test_filter_entity_value_is_query_error(M):
    Ref = rom.columns.MODELS['Ref']
    r = Ref(name='x')
    with pytest.raises(QueryError):
        M.query.filter(ref=r)


def test_text_filters(M):
    assert M.query.startswith(ft='HeL')._filters == (Prefix('ft', 'hel'),)
    assert M.query.startswith(ident='HeL')._filters == (Prefix('ident', 'HeL'),)
    assert M.query.startswith(ft=b'AB')._filters == (Prefix('ft', b'ab'),)
    assert M.query.endswith(ft='LLo')._filters == (Suffix('ft', 'oll'),)
    assert M.query.endswith(sci=b'xY')._filters == (Suffix('sci', b'yx'),)
    assert M.query.like(ft='H*o')._filters == (Pattern('ft', 'h*o'),)
    assert M.query.like(ident='H?o')._filters == (Pattern('ident', 'H?o'),)
    assert isinstance(M.query.startswith(ft='a')._filters[0], tuple)
    for clause, kw in (('startswith', {'n': 'x'}), ('endswith', {'ident': 'x'}),
                       ('like', {'tx': 'x'}), ('startswith', {'nope': 'x'}),
                       ('startswith', {'ft': None}), ('like', {'ft': None}),
                       ('startswith', {'ft': 5})):
        with pytest.raises(QueryError):
            getattr(M.query, clause)(**kw)
    with pytest.raises(TypeError):
        M.query.like(ft=b'abc')


def test_near(M):
    g = M.query.near('loc', 1.5, 2, 10, 'KM', count=3)._filters
    assert g == (Geofilter('loc', 1.5, 2, 10, 'km', 3),)
    assert type(g[0]).__name__ == 'Geo'
    with pytest.raises(ValueError):
        M.query.near('nope', 0, 0, 1, 'km')
    with pytest.raises(ValueError):
        M.query.near('loc', 0, 0, 1, 'yd')


def test_order_by_warnings(M):
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        M.query.order_by('n')
        M.query.order_by('-sci')
        M.query.order_by('ref')
    # kw: Json with a custom keygen; indexed text columns without a sortable keygen warn
    for col in ('ft', '-tx', 'kw:n:42'):
        with pytest.warns(UserWarning) as record:
            M.query.order_by(col)
        assert len(record) == 1
        assert col.lstrip('-') in str(record[0].message)
        assert 'SIMPLE, SIMPLE_CI, CASE_INSENSITIVE' in str(record[0].message)
        assert record[0].filename == __file__
    with pytest.raises(QueryError):
        M.query.order_by('nope')


def test_order_by_a_column_without_index_raises(M):
    # issue 18: rom 1.1.2 warned (or raised AttributeError, bug query #10) and returned []
    for col in ('plain', '-js', 'plain:x'):
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            with pytest.raises(QueryError, match=r"M\.%s has no index" % col.strip('-')[:5]):
                M.query.order_by(col)


def test_select_records(M):
    s = M.query.select('n', 'b')._select
    assert s[0] == ('n', 'b', 'id') and s[1] is True and s[2] is True
    assert s[3] is q._dict_data_factory
    s = M.query.select('n', 'id', decode=False, ff=q._tuple_data_factory)._select
    assert s == (('n', 'id'), False, False, q._tuple_data_factory)
    s = M.query.select('n', include_pk=True)._select
    assert s[0] == ('n', 'id') and s[2] is False
    cols = ['n', 'b']
    assert M.query.select(cols)._select[0] == ('n', 'b', 'id')
    assert cols == ['n', 'b']                            # bug query #9: not mutated
    assert M.query.select(('n',))._select[0] == ('n', 'id')
    for args in ((), ([],), ('n', 'n'), ('n', 'nope'), (['nope', 'bad'],)):
        with pytest.raises(QueryError):
            M.query.select(*args)
    with pytest.raises(QueryError) as info:
        M.query.select('nope', 'bad')
    assert 'nope' in str(info.value) and 'bad' in str(info.value)


def test_row_factories():
    cols = ['n', '_code', 'id']
    assert q._dict_data_factory(cols)([1, 2, 3]) == {'n': 1, '_code': 2, 'id': 3}
    assert q._tuple_data_factory(cols)([1, 2, 3]) == (1, 2, 3)
    values = [1, 2, 3]
    assert q._list_data_factory(cols)(values) is values
    row = q._namedtuple_data_factory(cols)([1, 2, 3])
    assert type(row).__name__ == 'n__code_id' and row.code == 2 and row.id == 3
    with pytest.raises(ValueError):
        q._namedtuple_data_factory(['a', '_a'])


def test_builders_do_no_io(M, conn, roundtrips):
    with roundtrips(conn) as rt:
        query = M.query.filter(n=(1, 2)).startswith(ft='a').endswith(ft='b').like(ft='c*')
        query = query.near('loc', 0, 0, 1, 'km').order_by('n').limit(0, 5).select('n')
        it = query.iter_result()
    assert rt.count == 0
    del it


async def test_search_time_errors_are_lazy(api, M):
    it = api.iterate(M.query.filter(n=('(5', 10)))
    with pytest.raises(ValueError):
        await api.next(it)
    with pytest.raises(QueryError):
        M.query._search()
    with pytest.raises(QueryError):
        await api.cached_result(M.query, 10)
    with pytest.raises(QueryError):
        await api.cached_result(M.query.filter(n=1), 0.5)
    with pytest.raises(QueryError):
        await api.cached_result(M.query.filter(n=1), 0)
    with pytest.raises(QueryError):
        await api.delete(M.query)                        # M has a ManyToOne
    Ref = rom.columns.MODELS['Ref']
    with pytest.raises(QueryError):
        await api.delete(Ref.query)                      # Ref is referenced
