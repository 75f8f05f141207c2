"""Secondary-index search: ``GeneralIndex``, filter records and the match helpers.

Public façade; the implementation lives in ``rom._search`` (execution), ``rom._query_match``
(pure prefix/pattern helpers) and ``rom._records`` (the namedtuples).
"""
from __future__ import annotations

from ._query_match import (MAX_PATTERN_BYTES,  # noqa: F401
                           MAX_PREFIX_SCORE, SPECIAL, _find_prefix,  # noqa: F401
                           _pattern_to_lua_pattern, _start_end, _ts)
from ._records import Geofilter, GeoIndex, Pattern, Prefix, Suffix
from ._search import (GeneralIndex, estimate_work_lua, lua_subrange,  # noqa: F401
                      redis_prefix_lua)

__all__ = ['GeneralIndex', 'GeoIndex', 'Geofilter', 'MAX_PREFIX_SCORE', 'Pattern', 'Prefix',
           'SPECIAL', 'Suffix', 'estimate_work_lua', 'redis_prefix_lua']
