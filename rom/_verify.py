"""Verify a block of rows' expected index entries with native commands (``check``, ``reindex``).

The same check as ``scripts/audit_rows.lua`` (``rom._expect.verify_entries``), with the
same problem codes, for a plain client (:func:`rom._maint_io.usable`) on Redis 6.2 or
newer: one ``SMISMEMBER`` / ``ZMSCORE`` / ``HMGET`` per index key and 1,000 members, all
pipelined in one write, the comparison done here; unique values seen twice are spotted
with ``scripts/audit_claims.lua`` (a temporary hash, as the script does). Rows with geo
entries take the script.
"""
from __future__ import annotations

import weakref
from typing import Any, Dict, List, Optional, Sequence, Tuple

from redis.exceptions import ResponseError

from ._maint_io import pack, run_packed
from ._scripts import lua

__all__ = ['verify_native']

Problem = Tuple[str, str, str, str, str]

_CHUNK = 1000
#: clients whose server lacks SMISMEMBER/ZMSCORE (older than Redis 6.2)
_OLD_SERVERS: 'weakref.WeakKeyDictionary[Any, bool]' = weakref.WeakKeyDictionary()


def _close(stored: Any, expected: str) -> bool:
    """Whether a stored score equals the expected score text (as the script compares)."""
    if isinstance(stored, bytes):
        text = stored.decode('ascii', 'replace')
        if text == expected:
            return True
    try:
        a, b = float(stored), float(expected)
    except (TypeError, ValueError):
        return False
    return a == b or abs(a - b) <= 1e-12 * max(abs(a), abs(b))


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode('utf-8', 'surrogateescape')
    return value if isinstance(value, str) else repr(value)


def verify_native(conn: Any, ns: str, rows: Sequence[Tuple[str, Any]], temp: str,
                  ttl: int) -> Optional[List[Problem]]:
    """The problems of ``rows`` (``(id text, _Expected)``), or None when the script must
    check them (geo entries, or a server older than Redis 6.2)."""
    if _OLD_SERVERS.get(conn):
        return None
    sets: Dict[str, List[str]] = {}
    zsets: Dict[str, List[Tuple[str, str, str]]] = {}
    uidx: Dict[str, List[Tuple[str, str]]] = {}
    for id_text, exp in rows:
        if exp.geo:
            return None
        for name in exp.keys:
            sets.setdefault(name, []).append(id_text)
        for name, score in exp.scores.items():
            zsets.setdefault(name + ':idx', []).append((id_text, score, id_text))
        for (attr, token), score in exp.prefix.items():
            zsets.setdefault(attr + ':pre', []).append((token + '\0' + id_text, score, id_text))
        for (attr, token), score in exp.suffix.items():
            zsets.setdefault(attr + ':suf', []).append((token + '\0' + id_text, score, id_text))
        for name, value in exp.uniques.items():
            uidx.setdefault(name, []).append((value, id_text))
    prefix = ns + ':'
    commands: List[bytes] = []
    plan: List[Tuple[str, str, Any, int, int]] = []  # kind, key, items, first, last
    for name, ids in sets.items():
        key = prefix + name + ':idx'
        for first in range(0, len(ids), _CHUNK):
            chunk = ids[first:first + _CHUNK]
            commands.append(pack([b'SMISMEMBER', key.encode('utf-8')]
                                 + [i.encode('utf-8') for i in chunk]))
            plan.append(('set', key, ids, first, first + len(chunk)))
    for suffix, items in zsets.items():
        key = prefix + suffix
        for first in range(0, len(items), _CHUNK):
            members = [m.encode('utf-8') for m, _s, _i in items[first:first + _CHUNK]]
            commands.append(pack([b'ZMSCORE', key.encode('utf-8')] + members))
            plan.append(('zset', key, items, first, first + len(members)))
    for name, claims in uidx.items():
        key = prefix + name + ':uidx'
        for first in range(0, len(claims), _CHUNK):
            values = [v.encode('utf-8') for v, _i in claims[first:first + _CHUNK]]
            commands.append(pack([b'HMGET', key.encode('utf-8')] + values))
            plan.append(('uidx', key, claims, first, first + len(values)))
    try:
        replies = run_packed(conn, commands)
    except ResponseError as err:
        if 'unknown command' not in str(err).lower():
            raise
        _OLD_SERVERS[conn] = True
        return None
    out: List[Problem] = []
    for (kind, key, items, first, last), reply in zip(plan, replies):
        if kind == 'set':
            if 0 in reply:
                for n in range(first, last):
                    if reply[n - first] != 1:
                        out.append(('set', items[n], key, items[n], ''))
        elif kind == 'zset':
            try:  # all present with the expected scores: one comparison
                if list(map(float, reply)) == [float(s) for _m, s, _i in items[first:last]]:
                    continue
            except (TypeError, ValueError):
                pass  # a missing member (None)
            for n in range(first, last):
                stored = reply[n - first]
                member, score, id_text = items[n]
                if stored is None:
                    out.append(('zmiss', id_text, key, member, ''))
                elif not _close(stored, score):
                    out.append(('zscore', id_text, key, member, _text(stored) + ' ' + score))
        else:
            if reply == [i.encode() for _v, i in items[first:last]]:
                continue
            for n in range(first, last):
                owner = reply[n - first]
                value, id_text = items[n]
                if owner is None:
                    out.append(('umiss', id_text, key, value, ''))
                elif _text(owner) != id_text:
                    out.append(('uother', id_text, key, value, _text(owner)))
    if temp and uidx:
        out += _duplicates(conn, prefix, uidx, temp, ttl)
    return out


def _duplicates(conn: Any, prefix: str, uidx: Dict[str, List[Tuple[str, str]]], temp: str,
                ttl: int) -> List[Problem]:
    """'udup' problems: unique values this check saw first with another row."""
    args: List[bytes] = [b'EVAL', getattr(lua('audit_claims'), 'script'), b'1', temp.encode('utf-8'),
                         b'%d' % (ttl,)]
    where: List[Tuple[str, str, str]] = []
    for name, claims in uidx.items():
        key = prefix + name + ':uidx'
        head = name + '\0'
        for value, id_text in claims:
            args += [(head + value).encode('utf-8'), id_text.encode('utf-8')]
            where.append((key, value, id_text))
    reply = run_packed(conn, [pack(args)])[0]
    out: List[Problem] = []
    for n in range(0, len(reply), 2):
        key, value, id_text = where[int(reply[n]) - 1]
        out.append(('udup', id_text, key, value, _text(reply[n + 1])))
    return out
