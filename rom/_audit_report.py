"""The result of an index audit: findings and the report that collects them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

__all__ = ['AuditReport', 'Finding', 'KINDS']

MISSING = 'missing-entry'
WRONG_SCORE = 'wrong-score'
STALE = 'stale-entry'
DANGLING = 'dangling-entry'
UNIQUE_MISSING = 'unique-missing'
UNIQUE_DUPLICATE = 'unique-duplicate'
UNIQUE_STALE = 'unique-stale'
BOOKKEEPING = 'bookkeeping'
UNKNOWN_INDEX = 'unknown-index'
BAD_ROW = 'bad-row'
DANGLING_REFERENCE = 'dangling-reference'

#: every finding kind, with what it means
KINDS = {
    MISSING: 'a row lacks an index entry its values call for',
    WRONG_SCORE: 'an index entry of a row has a stale score or geo position',
    STALE: 'an index entry of an existing row no longer matches its values',
    DANGLING: 'an index entry points at a row that does not exist',
    UNIQUE_MISSING: "a row's unique value is not claimed in the unique index",
    UNIQUE_DUPLICATE: 'two rows hold the same unique value',
    UNIQUE_STALE: 'a unique-index field maps to a row that holds another value',
    BOOKKEEPING: "a row's -index-data- does not list the entries its values call for",
    UNKNOWN_INDEX: 'an index key that the model does not declare',
    BAD_ROW: 'a row that cannot be loaded',
    DANGLING_REFERENCE: 'a row references a row that does not exist (check --fix applies '
                        "the column's on_delete)",
}



@dataclass(frozen=True)
class Finding:
    """One problem: its kind, the Redis key, the member or field, the row id and a message."""

    kind: str
    key: str
    member: Optional[str]
    id: Optional[str]
    message: str
    #: what ``check --fix`` needs to remove the entry: (op, raw member, name, token)
    repair: Optional[Tuple[str, str, str, str]] = field(default=None, compare=False,
                                                        repr=False)

    def __str__(self) -> str:
        return '%s: %s' % (self.kind, self.message)


@dataclass
class AuditReport:
    """What :func:`audit_model` found, with counts of what it examined."""

    namespace: str
    findings: List[Finding] = field(default_factory=list)
    rows: int = 0
    index_keys: int = 0
    entries: int = 0
    _seen: Set[Tuple[str, str, Optional[str], Optional[str]]] = field(default_factory=set,
                                                                      repr=False)

    @property
    def ok(self) -> bool:
        """True when there is no finding."""
        return not self.findings

    @property
    def counts(self) -> Dict[str, int]:
        """Number of findings per kind."""
        result: Dict[str, int] = {}
        for finding in self.findings:
            result[finding.kind] = result.get(finding.kind, 0) + 1
        return result

    def add(self, kind: str, key: str, member: Optional[str], id: Optional[str],
            message: str, repair: Optional[Tuple[str, str, str, str]] = None) -> None:
        """Record a finding once (SCAN may visit a key or row twice)."""
        token = (kind, key, member, id)
        if token in self._seen:
            return
        self._seen.add(token)
        self.findings.append(Finding(kind, key, member, id, message, repair))

    def summary(self) -> str:
        """One line: what was examined and how many findings of each kind."""
        head = '%s: %d rows, %d index keys, %d index entries checked' % (
            self.namespace, self.rows, self.index_keys, self.entries)
        if self.ok:
            return head + ', no problems found'
        parts = ', '.join('%d %s' % (n, kind) for kind, n in sorted(self.counts.items()))
        return '%s, %d problem(s): %s' % (head, len(self.findings), parts)
