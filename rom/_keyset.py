"""Keyset (cursor) pagination of an ordered query: ``Query.page(count, after=cursor)``.

A page starts right after the (score, id) of the previous page's last entry instead of at an
offset, so deep pages cost the same as the first one and a page boundary does not shift when
entries before it are added or removed. The cursor is an opaque string.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Generic, Iterator, List, Optional, Tuple, TypeVar

from ._connect import to_text
from ._io import Operation, Script
from ._ops_query import op_page_items
from ._search import guarded
from .exceptions import QueryError

if TYPE_CHECKING:  # the default keeps a bare ``Page`` annotation valid under --strict
    from typing_extensions import TypeVar as _TypeVar
    _T = _TypeVar('_T', default=Any)
else:
    _T = TypeVar('_T')


class Page(Generic[_T]):
    """One page of :meth:`rom.Query.page`: ``items`` and the ``next`` cursor (None at the end)."""

    __slots__ = ('items', 'next')

    def __init__(self, items: List[_T], next: Optional[str]) -> None:
        self.items = items
        self.next = next

    def __iter__(self) -> Iterator[_T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return '<Page of %d next=%r>' % (len(self.items), self.next)


# a score as Redis writes it (or could read it back) and an id: '<score>:<digits>'
_CURSOR = re.compile(r'(?:[-+]?(?:\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})(?:[eE][-+]?\d{1,4})?'
                     r'|[-+]?inf):\d{1,20}')


def parse_cursor(cursor: str) -> Tuple[str, str]:
    """``(score, member)`` of a cursor made by :func:`keyset_page`; QueryError when malformed."""
    if not isinstance(cursor, str) or not _CURSOR.fullmatch(cursor) or not cursor.isascii():
        text = repr(cursor)
        raise QueryError('page(): %s is not a cursor returned by page()'
                         % (text if len(text) <= 60 else text[:57] + '...',))
    score, _, member = cursor.rpartition(':')
    return score, member


def op_keyset_page(query: Any, count: int, after: Optional[str]) -> Operation[Page[Any]]:
    """The page of ``count`` results of an ordered ``query`` following cursor ``after``."""
    if not query._order_by:
        raise QueryError('page() needs an order_by() to page through')
    if query._limit is not None:
        raise QueryError('page() pages by cursor: remove the limit() (or slice) from the query')
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise QueryError('page(): the page size must be a positive integer, got %r' % (count,))
    score, member = parse_cursor(after) if after is not None else ('0', '')
    model = query._model
    gindex = model._gindex
    plan = gindex._direct(query._filters, query._order_by)
    reply = None
    if plan is not None:  # straight from the column's index (models with ``_ttl``: while
        # none of their entities is due, else reply is None)
        reply = yield from gindex.op_unless_due(model, Script(model, 'keyset_page', (plan.key,), (
            plan.lo, plan.hi, '1' if plan.desc else '0', score, member, count)))
    if reply is not None:
        members, last = reply
    else:  # build the result set, page it and drop it in one transaction
        work, temp = yield from gindex.op_build(model, query._filters, query._order_by)
        work.script('keyset_page', [temp], ['-inf', 'inf', '0', score, member, count])
        work.command('DEL', temp)
        members, last = (yield from guarded(work.batch()))[-2]
    items = (yield from op_page_items(query, members)) if members else []
    cursor = None
    if len(members) == count and last is not None and last is not False:
        cursor = '%s:%s' % (to_text(last), to_text(members[-1]))
    return Page(items, cursor)
