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

from ._maint_io import bulk, pack, run_packed
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
    # per index key: the items (to report problems) and the members packed in RESP
    sets: Dict[str, Tuple[List[str], List[bytes]]] = {}
    zsets: Dict[str, Tuple[List[Tuple[str, str, str]], List[bytes]]] = {}
    uidx: Dict[str, List[Tuple[str, str]]] = {}
    for id_text, exp in rows:
        if exp.geo:
            return None
        packed = b'$%d\r\n%s\r\n' % (len(id_text), id_text.encode())
        for name in exp.keys:
            group = sets.get(name)
            if group is None:
                group = sets[name] = ([], [])
            group[0].append(id_text)
            group[1].append(packed)
        for name, score in exp.scores.items():
            zgroup = zsets.get(name + ':idx')
            if zgroup is None:
                zgroup = zsets[name + ':idx'] = ([], [])
            zgroup[0].append((id_text, score, id_text))
            zgroup[1].append(packed)
        for kind, entries in ((':pre', exp.prefix), (':suf', exp.suffix)):
            for (attr, token), score in entries.items():
                zgroup = zsets.get(attr + kind)
                if zgroup is None:
                    zgroup = zsets[attr + kind] = ([], [])
                member = token + '\0' + id_text
                zgroup[0].append((member, score, id_text))
                zgroup[1].append(bulk(member.encode('utf-8')))
        for name, value in exp.uniques.items():
            uidx.setdefault(name, []).append((value, id_text))
    prefix = ns + ':'
    commands: List[bytes] = []
    plan: List[Tuple[str, str, Any, int, int]] = []  # kind, key, items, first, last
    for command, groups in ((b'SMISMEMBER', sets), (b'ZMSCORE', zsets)):
        kind = 'set' if command == b'SMISMEMBER' else 'zset'
        for name, (items, members) in groups.items():  # type: ignore[attr-defined]
            key = prefix + name + (':idx' if kind == 'set' else '')
            head = bulk(command) + bulk(key.encode('utf-8'))
            for first in range(0, len(items), _CHUNK):
                chunk = members[first:first + _CHUNK]
                commands.append(b'*%d\r\n%s%s' % (len(chunk) + 2, head, b''.join(chunk)))
                plan.append((kind, key, items, first, first + len(chunk)))
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
