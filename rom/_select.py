"""Rows for ``Query.select()``: reading chosen columns of a page of ids and shaping them.

Used by ``rom.query`` (which re-exports the row factories: application code imports them
from there). Select rows never touch the session.
"""
from __future__ import annotations

import json
from collections import namedtuple
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

from ._connect import to_text
from ._io import Script
from ._scripts import lua

RowMaker = Callable[[List[Any]], Any]


def _dict_data_factory(columns: Sequence[str]) -> RowMaker:
    """Rows as ``dict(zip(columns, values))`` (the default)."""
    columns = list(columns)
    return lambda values: dict(zip(columns, values))


def _tuple_data_factory(columns: Sequence[str]) -> RowMaker:
    """Rows as tuples in column order."""
    return tuple


def _list_data_factory(columns: Sequence[str]) -> RowMaker:
    """Rows as lists in column order."""
    return lambda values: values


def _namedtuple_data_factory(columns: Sequence[str]) -> RowMaker:
    """Rows as a namedtuple named ``'_'.join(columns)``, fields without leading ``_``."""
    row_type = namedtuple('_'.join(columns), [c.lstrip('_') for c in columns])  # type: ignore[misc]
    return lambda values: row_type(*values)


def _json_loads(value: Any) -> Any:
    """``json.loads`` of a str/bytes reply; an empty Lua table (``{}``) becomes ``[]``."""
    data = json.loads(to_text(value))
    return [] if data == {} else data


def _column_args(model: Any, columns: Sequence[str], ids: Optional[Iterable[Any]],
                 key: Optional[str], start: int, stop: int) -> Tuple[Tuple[Any, ...], List[Any]]:
    args: List[Any] = ['%s:' % (model._namespace,), len(columns)]
    args.extend(columns)
    if key is not None:
        args += [start, stop]
        return (key,), args
    args.extend(ids or ())
    return (), args


def column_data_step(via: Any, model: Any, columns: Sequence[str],
                     ids: Optional[Iterable[Any]] = None, key: Optional[str] = None,
                     start: int = 0, stop: int = -1) -> Script:
    """The ``select_rows.lua`` step of :func:`_get_column_data` (reply: :func:`_split_reply`)."""
    keys, args = _column_args(model, columns, ids, key, start, stop)
    return Script(via, 'select_rows', keys, args, args[0])


def _get_column_data(conn: Any, model: Any, columns: Sequence[str],
                     ids: Optional[Iterable[Any]] = None, key: Optional[str] = None,
                     start: int = 0, stop: int = -1, pipeline: bool = False) -> Any:
    """Read ``columns`` of each existing row among ``ids`` (or ranks start..stop of ``key``).

    Returns ``(number of ids read, [raw row, ...])``; with ``pipeline=True`` the script is
    only queued on ``conn`` and :func:`_split_reply` must be applied to its reply.
    """
    keys, args = _column_args(model, columns, ids, key, start, stop)
    reply = lua('select_rows')(conn, keys, args, force_eval=pipeline, route=args[0])
    if pipeline:
        return reply
    return _split_reply(reply)


def _split_reply(reply: Any) -> Tuple[int, List[List[Any]]]:
    """``(number of ids read, rows)`` from a ``select_rows.lua`` reply."""
    return int(reply[0]), [list(row) for row in reply[1:]]


def _select_generator(model: Any, select: Tuple[Any, ...],
                      rows: Iterable[List[Any]]) -> Iterator[Any]:
    """Shape raw rows per ``select = (columns, decode, drop_pk, ff)``."""
    columns, decode, drop_pk, ff = select
    out_columns = list(columns[:-1]) if drop_pk else list(columns)
    make = ff(out_columns)
    for raw in rows:
        values = [None if v is None else to_text(v) for v in raw]
        if decode:
            data = {c: v for c, v in zip(columns, values) if v is not None}
            entity = model(_loading=True, _bypass_session_entirely=True, **data)
            values = [getattr(entity, c) for c in columns]
        if drop_pk:
            values = values[:-1]
        yield make(values)
