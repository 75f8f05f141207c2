"""Index key generators ("keygens") and their groups.

Each built-in keygen takes one column value and returns what the writer turns into index
entries: a list of tokens (set indexes, prefix/suffix members) or a dict of scores.
Pure functions; the column constructor wraps them into ``(attr, data)`` callables.
"""
from __future__ import annotations

import string
from datetime import date, datetime, time
from typing import Any, Dict, List, Optional, Union

from ._helpers import _prefix_score, dt2ts, t2ts

_PUNCT = string.punctuation


def FULL_TEXT(val: Any) -> Optional[List[str]]:
    """Bag of lower-cased words with surrounding punctuation stripped."""
    if isinstance(val, float):
        val = repr(val)
    elif val is None or (isinstance(val, str) and val == ''):
        return None
    elif not isinstance(val, str):
        val = val.decode('latin-1') if isinstance(val, bytes) else str(val)
    words = {w.lower().strip(_PUNCT) for w in val.split()}
    words.discard('')
    return sorted(words)


_string_keygen = FULL_TEXT


def _text(val: Any) -> str:
    if isinstance(val, str):
        return val
    if isinstance(val, bytes):
        return val.decode('latin-1')
    return str(val)


def SIMPLE(val: Any) -> Optional[Dict[str, str]]:
    """Case-sensitive sortable string: ``{'': prefix score}``."""
    if not val:
        return None
    return {'': _prefix_score(_text(val))}


def SIMPLE_CI(val: Any) -> Optional[Dict[str, str]]:
    """Case-insensitive sortable string: ``SIMPLE(val.lower())``."""
    return SIMPLE(val.lower())


def CASE_INSENSITIVE(val: Any) -> Optional[Dict[str, str]]:
    """Same output as ``SIMPLE_CI`` (kept as its own name for compatibility)."""
    return SIMPLE(val.lower())


def IDENTITY(val: Any) -> Optional[List[Union[str, bytes]]]:
    """The whole value as one case-sensitive token."""
    if not val:
        return None
    if not isinstance(val, (str, bytes)):
        val = str(val)
    return [val]


def IDENTITY_CI(val: Any) -> Optional[List[Union[str, bytes]]]:
    """The whole value, lower-cased, as one token."""
    if not val:
        return None
    return IDENTITY(val.lower())


def IDENTITY_STRING(val: Any) -> Optional[List[bytes]]:
    """The whole ``String`` (bytes) value as one token."""
    if not val:
        return None
    if not isinstance(val, bytes):
        val = val.encode('latin-1')
    return [val]


def IDENTITY_STRING_CI(val: Any) -> Optional[List[bytes]]:
    """The whole ``String`` (bytes) value, lower-cased, as one token."""
    if not val:
        return None
    if not isinstance(val, bytes):
        val = val.encode('latin-1')
    return [val.lower()]


def _numeric_keygen(val: Any) -> Optional[Dict[str, str]]:
    if val is None:
        return None
    if isinstance(val, (datetime, date)):
        val = dt2ts(val)
    elif isinstance(val, time):
        val = t2ts(val)
    if isinstance(val, float):
        return {'': repr(val)}
    return {'': str(val)}


def _boolean_keygen(val: Any) -> List[str]:
    return [str(bool(val))]


def _many_to_one_keygen(val: Any) -> Any:
    if val is None:
        return []
    if hasattr(val, '_data') and hasattr(val, '_pkey'):
        return {'': val._data[val._pkey]}
    return {'': val.id}


STRING_INDEX_KEYGENS = (FULL_TEXT, SIMPLE, SIMPLE_CI, IDENTITY, IDENTITY_CI, CASE_INSENSITIVE)
STRING_INDEX_KEYGENS_STR = 'FULL_TEXT, SIMPLE, SIMPLE_CI, IDENTITY, IDENTITY_CI, CASE_INSENSITIVE'
STRING_SORT_KEYGENS = (SIMPLE, SIMPLE_CI, CASE_INSENSITIVE)
STRING_SORT_KEYGENS_STR = 'SIMPLE, SIMPLE_CI, CASE_INSENSITIVE'

#: keygen names whose query values are lower-cased (IDENTITY_STRING_CI: reference bug fixed)
LOWERCASE_QUERY_KEYGENS = frozenset(
    ['FULL_TEXT', 'SIMPLE_CI', 'CASE_INSENSITIVE', 'IDENTITY_CI', 'IDENTITY_STRING_CI'])
#: keygen names that give sortable scores and prefix/suffix entries from dict outputs
SORT_KEYGEN_NAMES = ('SIMPLE', 'SIMPLE_CI', 'CASE_INSENSITIVE')
