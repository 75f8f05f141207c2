"""``python -m rom check`` for expiry: the expiry set against the rows' ``-expire-at-`` field.

An expired row not yet removed is not a problem (it is invisible and its claims may be
taken over); these are:

* an expiry entry whose row does not exist (``dangling-entry``);
* an expiry entry whose time differs from the row's ``-expire-at-`` (``bookkeeping``);
* a row with ``-expire-at-`` but no expiry entry, which would never be removed
  (``missing-entry``);
* an expiry set, or ``-expire-at-`` fields, for a model that does not declare ``_ttl``
  (``unknown-index`` / ``bookkeeping``).
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Tuple

from ._audit_report import BOOKKEEPING, DANGLING, MISSING, UNKNOWN_INDEX, AuditReport
from ._connect import connect, to_text
from ._maintenance import _get_row_ids
from ._ttl import EXPIRY_FIELD, expiry_key


def server_ms(conn: Any) -> int:
    """The Redis server's time in ms since the epoch."""
    seconds, micros = conn.time()
    return int(seconds) * 1000 + int(micros) // 1000


def is_expired(row: Dict[str, Any], now: Optional[int]) -> bool:
    """Whether a decoded row carries an expiry time at or before ``now`` (ms)."""
    if now is None or EXPIRY_FIELD not in row:
        return False
    try:
        return int(to_text(row[EXPIRY_FIELD])) <= now
    except ValueError:
        return False


def audit_expiry(model: Any, report: AuditReport, block_size: int,
                 carriers: Optional[List[FindingArgs]] = None) -> None:
    """Add the expiry findings of ``model`` to ``report`` (reads only, in blocks).

    ``carriers`` are the :func:`carrier_findings` of every row, when the caller read every
    row already (the audit's first pass); otherwise the rows are scanned here.
    """
    conn = connect(model)
    ns = model._namespace
    key = expiry_key(ns)
    declared = getattr(model, '_ttl', None) is not None
    if not declared and conn.exists(key):
        report.add(UNKNOWN_INDEX, key, None, None, '%s holds expiry times but model %s does '
                   'not declare _ttl' % (key, ns))
    if declared:
        report.index_keys += 1
        cursor = None
        while cursor != 0:
            cursor, page = conn.zscan(key, cursor or 0, count=block_size)
            if page:
                _check_entries(conn, ns, key, page, report)
    if carriers is None:
        carriers = []
        for block in _carrier_blocks(conn, model, block_size):
            carriers += carrier_findings(conn, model, block)
    for finding in carriers:
        report.add(*finding)


#: the arguments of one ``AuditReport.add``
FindingArgs = Tuple[str, str, str, str, str]


def carrier_findings(conn: Any, model: Any, block: List[Tuple[int, Any]]
                     ) -> List[FindingArgs]:
    """The findings of rows ``(id, stored -expire-at-)`` that carry an expiry time: the
    model does not declare ``_ttl``, or the expiry set lacks the row."""
    ns = model._namespace
    key = expiry_key(ns)
    declared = getattr(model, '_ttl', None) is not None
    scores: List[Any] = [None] * len(block)
    if declared:
        pipe = conn.pipeline(False)
        for i, _field in block:
            pipe.zscore(key, str(i))
        scores = pipe.execute()
    out: List[FindingArgs] = []
    for (i, field), score in zip(block, scores):
        row = '%s:%d' % (ns, i)
        if not declared:
            out.append((BOOKKEEPING, row, EXPIRY_FIELD, str(i), 'row %s has %s but model '
                        '%s does not declare _ttl' % (row, EXPIRY_FIELD, ns)))
        elif score is None:
            out.append((MISSING, key, str(i), str(i), 'row %s expires at %s but %s has no '
                        'entry for it, so it would never be removed'
                        % (row, to_text(field), key)))
    return out


def _carrier_blocks(conn: Any, model: Any, block_size: int
                    ) -> Iterator[List[Tuple[int, Any]]]:
    """Per block of rows found by SCAN, ``(id, stored -expire-at-)`` of those carrying it."""
    ns = model._namespace
    for ids in _get_row_ids(model, block_size):
        pipe = conn.pipeline(False)
        for i in ids:
            pipe.hget('%s:%d' % (ns, i), EXPIRY_FIELD)
        found = [(i, field) for i, field in zip(ids, pipe.execute()) if field is not None]
        if found:
            yield found


def _check_entries(conn: Any, ns: str, key: str, page: List[Any], report: AuditReport) -> None:
    pipe = conn.pipeline(False)
    for member, _score in page:
        pipe.hget('%s:%s' % (ns, to_text(member)), EXPIRY_FIELD)
        pipe.exists('%s:%s' % (ns, to_text(member)))
    replies = pipe.execute()
    for n, (member, score) in enumerate(page):
        ident = to_text(member)
        row = '%s:%s' % (ns, ident)
        field, exists = replies[2 * n], replies[2 * n + 1]
        report.entries += 1
        if not exists:
            report.add(DANGLING, key, ident, ident, 'expiry entry %r of %s points at %s, which '
                       'does not exist' % (ident, key, row))
        elif field is None or to_text(field) != '%d' % (int(score),):
            report.add(BOOKKEEPING, row, EXPIRY_FIELD, ident, 'row %s has %s=%r but %s says '
                       '%d' % (row, EXPIRY_FIELD, field and to_text(field), key, int(score)))
