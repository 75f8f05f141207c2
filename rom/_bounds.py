"""Range endpoints of filters and lookups (pure: no I/O).

``NUMERIC_TYPES`` is public as ``rom.query.NUMERIC_TYPES``; ``_bound`` checks an endpoint of
``Query.filter`` and ``Model.get_by`` ranges.
"""
from __future__ import annotations

import datetime
import decimal
from typing import Any

from ._helpers import dt2ts, score_text, short_repr, t2ts
from .exceptions import QueryError

NUMERIC_TYPES = (int, float, decimal.Decimal, datetime.datetime, datetime.date, datetime.time)


def _endpoint(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date)):
        return dt2ts(value)
    if isinstance(value, datetime.time):
        return t2ts(value)
    return value


def _bound(model: Any, name: str, value: Any, clause: str = 'filter') -> Any:
    """A range endpoint Redis can compare with: None, a number or numeric text (QueryError
    for NaN, text that is not a number and values outside the double range)."""
    value = _endpoint(value)
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        value = value.decode('latin-1') if isinstance(value, bytes) else value
        text = value[1:] if value.startswith('(') else value  # exclusive endpoint (compat)
    else:
        text = value
    if isinstance(value, bool) or score_text(text) is None:
        raise QueryError('%s(): %s is not a number usable as a range endpoint of %s.%s'
                         % (clause, short_repr(value), model.__name__, name))
    return value
