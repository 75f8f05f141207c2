"""rom: a Redis object mapper — models, typed columns, indexes and queries stored in Redis.

A drop-in reimplementation of rom 1.1.2 (same API, same data layout) for Python 3.9+.
"""
from __future__ import annotations

import warnings
from datetime import date, datetime, time
from decimal import Decimal as _DecimalType

from . import columns, exceptions, index, model, query, util
from .columns import (MODELS, MODELS_REFERENCED, SKIP_ON_DELETE, Boolean, Column, Date,
                      DateTime, Decimal, Float, ForeignModel, IndexOnly, Integer, Json, ManyToOne,
                      OneToMany, OneToOne, PrimaryKey, SaferDateTime, String, Text, Time,
                      UnsafeColumn)
from .exceptions import (ColumnError, DataRaceError, EntityDeletedError, InvalidColumnValue,
                         InvalidOperation, MissingColumn, ORMError, QueryError, RestrictError,
                         UniqueKeyViolation)
from .index import GeneralIndex, GeoIndex, Pattern, Prefix, Suffix
from .model import Model, _ModelMetaclass
from .query import NOT_NULL, Query
from .util import (CASE_INSENSITIVE, FULL_TEXT, IDENTITY, IDENTITY_CI, IDENTITY_STRING,
                   IDENTITY_STRING_CI, SIMPLE, SIMPLE_CI, ClassProperty, _connect,
                   _encode_unique_constraint, _prefix_score, _script_load, session)

__all__ = [
    'Boolean', 'CASE_INSENSITIVE', 'COLUMN_TYPES', 'ClassProperty', 'Column', 'ColumnError',
    'DataRaceError', 'Date', 'DateTime', 'Decimal', 'EntityDeletedError', 'FULL_TEXT', 'Float',
    'ForeignModel', 'GeneralIndex', 'GeoIndex', 'IDENTITY', 'IDENTITY_CI', 'IDENTITY_STRING',
    'IDENTITY_STRING_CI', 'IndexOnly', 'Integer', 'InvalidColumnValue', 'InvalidOperation',
    'Json', 'MODELS', 'MODELS_REFERENCED', 'ManyToOne', 'MissingColumn', 'Model', 'NOT_NULL',
    'NUMERIC_TYPES', 'ORMError', 'OneToMany', 'OneToOne', 'Pattern', 'Prefix', 'PrimaryKey',
    'Query', 'QueryError', 'RestrictError', 'SIMPLE', 'SIMPLE_CI', 'SKIP_ON_DELETE',
    'SaferDateTime', 'String', 'Suffix', 'Text', 'Time', 'UniqueKeyViolation', 'UnsafeColumn',
    'VERSION', 'columns', 'exceptions', 'index', 'model', 'query', 'session', 'util',
]

VERSION = '1.1.2'

COLUMN_TYPES = [Column, Integer, Boolean, Float, Decimal, DateTime, Date, Time, String, Text,
                Json, PrimaryKey, ManyToOne, ForeignModel, OneToMany, OneToOne, IndexOnly]

NUMERIC_TYPES = (int, float, _DecimalType, datetime, date, time)

_UNDERSCORE_EXPORTS = (_ModelMetaclass, _connect, _prefix_score, _script_load,
                       _encode_unique_constraint)


def _disable_lua_writes() -> None:
    """Kept for old code: rom always writes with server-side Lua, so this only warns."""
    warnings.warn('rom requires server-side Lua scripting, which every supported Redis server '
                  'provides; _disable_lua_writes() has no effect', UserWarning, stacklevel=2)
