"""Column types of rom models, the model registry and the on_delete constants.

Public home of ``Column`` and its subclasses, ``MODELS``, ``MODELS_REFERENCED``,
``ON_DELETE`` and ``SKIP_ON_DELETE``; the implementations live in ``rom._coltypes`` and
``rom._relations``.
"""
from __future__ import annotations

from ._coltypes import (Boolean, Column, Date, DateTime, Decimal, Float, IndexOnly, Integer,
                        Json, PrimaryKey, SaferDateTime, String, Text, Time, _Column)
from ._registry import (MODELS, MODELS_REFERENCED, NO_ACTION_DEFAULT, NULL, ON_DELETE,  # noqa: F401
                        SKIP_ON_DELETE)
from ._relations import ForeignModel, ManyToOne, OneToMany, OneToOne, UnsafeColumn
from ._session import session  # noqa: F401  (rom.columns.session is rom.util.session)

__all__ = [
    'Boolean', 'Column', 'Date', 'DateTime', 'Decimal', 'Float', 'ForeignModel', 'IndexOnly',
    'Integer', 'Json', 'MODELS', 'MODELS_REFERENCED', 'ManyToOne', 'ON_DELETE', 'OneToMany',
    'OneToOne', 'PrimaryKey', 'SaferDateTime', 'String', 'Text', 'Time', 'UnsafeColumn',
]

COLUMN_TYPES = [
    _Column, Column, Integer, Boolean, Float, Decimal, DateTime, SaferDateTime, Date, Time,
    String, Text, Json, PrimaryKey, IndexOnly, ManyToOne, OneToOne, ForeignModel, OneToMany,
    UnsafeColumn,
]


