"""Package surface: ``__all__`` lists, identity of re-exports, constants, star-imports.

Spec: model-and-columns.md §1, §3.1, §4, §5.14; query-and-index.md §1;
session-util-and-storage.md §1.
"""
from __future__ import annotations

import datetime
import decimal
import warnings

import pytest

import rom
import rom.columns
import rom.exceptions
import rom.index
import rom.model
import rom.query
import rom.util


ROM_ALL = sorted('''
Boolean CASE_INSENSITIVE COLUMN_TYPES ClassProperty Column ColumnError DataRaceError Date
DateTime Decimal EntityDeletedError FULL_TEXT Float ForeignModel GeneralIndex GeoIndex IDENTITY
IDENTITY_CI IDENTITY_STRING IDENTITY_STRING_CI IndexOnly Integer InvalidColumnValue
InvalidOperation Json MODELS MODELS_REFERENCED ManyToOne MissingColumn Model NOT_NULL
NUMERIC_TYPES ORMError OneToMany OneToOne Pattern Prefix PrimaryKey Query QueryError
RestrictError SIMPLE SIMPLE_CI SKIP_ON_DELETE SaferDateTime String Suffix Text Time
UniqueKeyViolation UnsafeColumn VERSION columns exceptions index model query session util
'''.split())

COLUMN_CLASSES = '''Column Integer Boolean Float Decimal DateTime SaferDateTime Date Time
String Text Json PrimaryKey IndexOnly ManyToOne OneToOne ForeignModel OneToMany
UnsafeColumn'''.split()

EXCEPTIONS_ALL = ['BulkError', 'ColumnError', 'DataRaceError', 'EntityDeletedError',
                  'InvalidColumnValue', 'InvalidOperation', 'MissingColumn', 'ORMError',
                  'QueryError', 'RestrictError', 'UniqueKeyViolation']

UTIL_ALL = '''CASE_INSENSITIVE CONNECTION ClassProperty EntityLock FULL_TEXT IDENTITY IDENTITY_CI
IDENTITY_STRING IDENTITY_STRING_CI Lock NO_SCRIPT_MESSAGES NULL_SESSION REDIS_URI SIMPLE
SIMPLE_CI STRING_INDEX_KEYGENS STRING_INDEX_KEYGENS_STR STRING_SORT_KEYGENS
STRING_SORT_KEYGENS_STR Session clean_old_index clean_unsafe_cols get_connection
refresh_all_indexes refresh_indices session set_connection_settings show_progress
use_null_session use_rom_session'''.split()

INDEX_ALL = ['GeneralIndex', 'GeoIndex', 'Geofilter', 'MAX_PREFIX_SCORE', 'Pattern', 'Prefix',
             'SPECIAL', 'Suffix', 'estimate_work_lua', 'redis_prefix_lua']

QUERY_ALL = ['ALLOWED_DIST', 'NOT_NULL', 'NUMERIC_TYPES', 'Query']


# --- rom.__all__ -----------------------------------------------------------------------

def test_rom_all_is_exactly_the_59_sorted_public_names():
    assert len(ROM_ALL) == 59
    assert list(rom.__all__) == ROM_ALL
    assert isinstance(rom.__all__, list)
    assert all(not name.startswith('_') for name in rom.__all__)


def test_every_name_in_rom_all_is_bound():
    for name in rom.__all__:
        assert hasattr(rom, name), name


def test_bulkerror_not_exported_at_package_level():
    assert not hasattr(rom, 'BulkError')
    assert issubclass(rom.exceptions.BulkError, rom.exceptions.ORMError)


@pytest.mark.parametrize('name', COLUMN_CLASSES)
def test_column_reexports_are_identical(name):
    if name in ROM_ALL:
        assert getattr(rom, name) is getattr(rom.columns, name)


def test_reexport_identity_by_home_module():
    for name in ['Boolean', 'Column', 'Date', 'DateTime', 'Decimal', 'Float', 'ForeignModel',
                 'IndexOnly', 'Integer', 'Json', 'ManyToOne', 'OneToMany', 'OneToOne',
                 'PrimaryKey', 'SaferDateTime', 'String', 'Text', 'Time', 'UnsafeColumn',
                 'MODELS', 'MODELS_REFERENCED', 'SKIP_ON_DELETE']:
        assert getattr(rom, name) is getattr(rom.columns, name), name
    for name in ['ColumnError', 'DataRaceError', 'EntityDeletedError', 'InvalidColumnValue',
                 'InvalidOperation', 'MissingColumn', 'ORMError', 'QueryError',
                 'RestrictError', 'UniqueKeyViolation']:
        assert getattr(rom, name) is getattr(rom.exceptions, name), name
    for name in ['GeneralIndex', 'GeoIndex', 'Pattern', 'Prefix', 'Suffix']:
        assert getattr(rom, name) is getattr(rom.index, name), name
    assert rom.Model is rom.model.Model
    assert rom.NOT_NULL is rom.query.NOT_NULL
    assert rom.Query is rom.query.Query
    for name in ['ClassProperty', 'session', 'FULL_TEXT', 'CASE_INSENSITIVE', 'SIMPLE',
                 'SIMPLE_CI', 'IDENTITY', 'IDENTITY_CI', 'IDENTITY_STRING',
                 'IDENTITY_STRING_CI']:
        assert getattr(rom, name) is getattr(rom.util, name), name
    for sub in ['columns', 'exceptions', 'index', 'model', 'query', 'util']:
        assert getattr(rom, sub).__name__ == 'rom.' + sub


def test_underscore_names_importable_from_rom():
    assert rom._ModelMetaclass is rom.model._ModelMetaclass
    assert type(rom.Model) is rom._ModelMetaclass
    assert rom._connect is rom.util._connect
    assert rom._prefix_score is rom.util._prefix_score
    assert rom._script_load is rom.util._script_load
    assert rom._encode_unique_constraint is rom.util._encode_unique_constraint
    for name in ['_ModelMetaclass', '_connect', '_prefix_score', '_script_load',
                 '_encode_unique_constraint', '_disable_lua_writes']:
        assert name not in rom.__all__


def test_session_is_one_object_everywhere():
    assert rom.session is rom.util.session
    assert rom.columns.session is rom.util.session
    assert rom.model.session is rom.util.session
    assert rom.query.session is rom.util.session
    assert isinstance(rom.session, rom.util.Session)


# --- constants -------------------------------------------------------------------------

def test_version():
    assert rom.VERSION == '1.1.2'
    assert isinstance(rom.VERSION, str)


def test_package_column_types_list():
    c = rom.columns
    assert isinstance(rom.COLUMN_TYPES, list)
    assert rom.COLUMN_TYPES == [c.Column, c.Integer, c.Boolean, c.Float, c.Decimal,
                                c.DateTime, c.Date, c.Time, c.String, c.Text, c.Json,
                                c.PrimaryKey, c.ManyToOne, c.ForeignModel, c.OneToMany,
                                c.OneToOne, c.IndexOnly]
    assert len(rom.COLUMN_TYPES) == 17
    assert c.SaferDateTime not in rom.COLUMN_TYPES
    assert c.UnsafeColumn not in rom.COLUMN_TYPES


def test_columns_module_column_types_list():
    c = rom.columns
    assert isinstance(c.COLUMN_TYPES, list)
    assert c.COLUMN_TYPES == [c._Column, c.Column, c.Integer, c.Boolean, c.Float, c.Decimal,
                              c.DateTime, c.SaferDateTime, c.Date, c.Time, c.String, c.Text,
                              c.Json, c.PrimaryKey, c.IndexOnly, c.ManyToOne, c.OneToOne,
                              c.ForeignModel, c.OneToMany, c.UnsafeColumn]
    assert len(c.COLUMN_TYPES) == 20
    assert rom.COLUMN_TYPES is not c.COLUMN_TYPES
    assert issubclass(c.Column, c._Column)
    assert issubclass(c.UnsafeColumn, c._Column)
    assert not issubclass(c.UnsafeColumn, c.Column)


def test_numeric_types():
    expected = (int, float, decimal.Decimal, datetime.datetime, datetime.date, datetime.time)
    assert rom.NUMERIC_TYPES == expected
    assert isinstance(rom.NUMERIC_TYPES, tuple)
    assert rom.query.NUMERIC_TYPES == expected


def test_on_delete_and_sentinels():
    c = rom.columns
    assert c.ON_DELETE == ('no action', 'restrict', 'cascade', 'set null', 'set default')
    assert isinstance(c.ON_DELETE, tuple)
    assert rom.model.SKIP_ON_DELETE is c.SKIP_ON_DELETE
    assert rom.SKIP_ON_DELETE is c.SKIP_ON_DELETE
    assert c.SKIP_ON_DELETE is not c.NULL and c.SKIP_ON_DELETE is not c.NO_ACTION_DEFAULT
    assert c.NULL is not None and c.NO_ACTION_DEFAULT is not None
    assert c.NULL is not c.NO_ACTION_DEFAULT


def test_models_registry_contains_model():
    assert rom.MODELS['Model'] is rom.Model
    assert isinstance(rom.MODELS, dict)
    assert isinstance(rom.MODELS_REFERENCED, dict)


def test_query_constants():
    assert rom.query.NOT_NULL == (None, None)
    assert rom.query.ALLOWED_DIST == ('m', 'km', 'mi', 'ft')


def test_keygen_groups():
    u = rom.util
    assert u.STRING_INDEX_KEYGENS == (u.FULL_TEXT, u.SIMPLE, u.SIMPLE_CI, u.IDENTITY,
                                      u.IDENTITY_CI, u.CASE_INSENSITIVE)
    assert u.STRING_INDEX_KEYGENS_STR == \
        'FULL_TEXT, SIMPLE, SIMPLE_CI, IDENTITY, IDENTITY_CI, CASE_INSENSITIVE'
    assert u.STRING_SORT_KEYGENS == (u.SIMPLE, u.SIMPLE_CI, u.CASE_INSENSITIVE)
    assert u.STRING_SORT_KEYGENS_STR == 'SIMPLE, SIMPLE_CI, CASE_INSENSITIVE'
    assert u._string_keygen is u.FULL_TEXT


# --- _disable_lua_writes ---------------------------------------------------------------

def test_disable_lua_writes_only_warns():
    assert hasattr(rom, '_disable_lua_writes')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        result = rom._disable_lua_writes()
    assert result is None
    assert len(caught) == 1
    w = caught[0]
    assert issubclass(w.category, UserWarning)
    assert 'lua' in str(w.message).lower()
    # stacklevel 2: attributed to the caller (this file)
    assert w.filename == __file__


def test_disable_lua_writes_takes_no_arguments():
    with pytest.raises(TypeError):
        rom._disable_lua_writes(True)


def test_writes_still_work_after_disable_lua_writes(conn):
    class DLW(rom.Model):
        x = rom.Integer(index=True)

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        rom._disable_lua_writes()
    e = DLW(x=3)
    e.save()
    assert conn.hget('DLW:1', 'x') == b'3'
    assert conn.zscore('DLW:x:idx', '1') == 3.0


# --- module __all__ lists --------------------------------------------------------------

def test_columns_all():
    expected = sorted(COLUMN_CLASSES + ['MODELS', 'MODELS_REFERENCED', 'ON_DELETE'])
    assert list(rom.columns.__all__) == expected
    assert 'SKIP_ON_DELETE' not in rom.columns.__all__
    assert '_Column' not in rom.columns.__all__
    assert rom.columns._Column is not None


def test_exceptions_all_and_hierarchy():
    e = rom.exceptions
    assert list(e.__all__) == EXCEPTIONS_ALL
    assert 'UnsafeError' not in e.__all__
    bases = {
        'ORMError': Exception, 'UniqueKeyViolation': e.ORMError,
        'InvalidOperation': e.ORMError, 'QueryError': e.InvalidOperation,
        'RestrictError': e.InvalidOperation, 'DataRaceError': e.InvalidOperation,
        'EntityDeletedError': e.InvalidOperation, 'ColumnError': e.ORMError,
        'MissingColumn': e.ColumnError, 'InvalidColumnValue': e.ColumnError,
        'BulkError': e.ORMError, 'UnsafeError': e.ColumnError,
    }
    for name, base in bases.items():
        assert getattr(e, name).__bases__ == (base,), name
    assert not issubclass(e.EntityDeletedError, e.DataRaceError)
    err = e.UniqueKeyViolation('m', 'ns', '1')
    assert err.args == ('m', 'ns', '1')


def test_model_all():
    assert list(rom.model.__all__) == ['Model', 'redis_writer_lua']
    assert callable(rom.model.redis_writer_lua)
    # still importable by name
    from rom.model import _zrange_limit_iterator, _STRING_SORT_KEYGENS  # noqa: F401
    assert list(_STRING_SORT_KEYGENS) == ['SIMPLE', 'SIMPLE_CI', 'CASE_INSENSITIVE']


def test_util_all():
    assert list(rom.util.__all__) == sorted(UTIL_ALL)
    assert list(rom.util.__all__) == UTIL_ALL
    for name in ['_connect', '_epoch', '_epochd', '_script_load', '_string_keygen',
                 'dt2ts', 'ts2dt', 't2ts', 'ts2t', '_to_score', '_prefix_score',
                 '_bigint_to_float', '_encode_unique_constraint', '_random_hex',
                 '_get_row_ids', '_numeric_keygen', '_boolean_keygen',
                 '_many_to_one_keygen']:
        assert hasattr(rom.util, name), name
        assert name not in rom.util.__all__
    assert rom.util._epoch == datetime.datetime(1970, 1, 1)
    assert rom.util._epochd == datetime.date(1970, 1, 1)


def test_index_and_query_all():
    assert list(rom.index.__all__) == INDEX_ALL
    assert list(rom.query.__all__) == QUERY_ALL
    assert rom.index.Geofilter.__name__ == 'Geo'


@pytest.mark.parametrize('module', ['rom', 'rom.columns', 'rom.exceptions', 'rom.index',
                                    'rom.model', 'rom.query', 'rom.util'])
def test_all_has_no_underscore_or_doc_entries(module):
    mod = __import__(module, fromlist=['x'])
    assert '__doc__' not in mod.__all__
    assert all(not n.startswith('_') for n in mod.__all__)
    assert len(set(mod.__all__)) == len(mod.__all__)


@pytest.mark.parametrize('module', ['rom', 'rom.columns', 'rom.exceptions', 'rom.index',
                                    'rom.model', 'rom.query', 'rom.util'])
def test_star_import_binds_public_names(module):
    namespace: dict = {}
    exec('from %s import *' % module, namespace)
    mod = __import__(module, fromlist=['x'])
    for name in mod.__all__:
        assert name in namespace, name
        assert namespace[name] is getattr(mod, name), name


def test_star_import_of_rom_binds_submodules():
    namespace: dict = {}
    exec('from rom import *', namespace)
    for sub in ['columns', 'exceptions', 'index', 'model', 'query', 'util']:
        assert namespace[sub] is getattr(rom, sub)
    assert namespace['Model'] is rom.model.Model
    assert namespace['session'] is rom.util.session


# --- rom.model helpers -----------------------------------------------------------------

def test_attrdict():
    d = rom.model.AttrDict(a=1)
    assert isinstance(d, dict)
    assert d.a == 1
    assert d.missing is None
    d.b = 2
    assert d['b'] == 2
    del d.b
    assert 'b' not in d
    del d.not_there  # no error
    with pytest.raises(KeyError):
        d['nope']
