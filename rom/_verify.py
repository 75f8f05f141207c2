"""Verify a block of rows' expected index entries with native commands (``check``, ``reindex``).

:class:`Block` holds a block's expected entries grouped by index key (what both checks
take). The same check as ``scripts/audit_rows.lua`` (``rom._expect.verify_entries``), with
the same problem codes, for a plain client (:func:`rom._maint_io.usable`) on Redis 6.2 or
newer: one ``SMISMEMBER`` / ``ZMSCORE`` / ``HMGET`` per index key and 1,000 members, all
pipelined in one write, the comparison done here; unique values seen twice are spotted
with a temporary hash (as the script does: ``HMGET`` of a block's values, ``HSET`` of the
new ones). Rows with geo entries take the script.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Dict, List, Optional, Tuple

from redis.exceptions import ResponseError

from ._maint_io import bulk, pack, run_packed

__all__ = ['Block', 'verify_native']

Problem = Tuple[str, str, str, str, str]

_CHUNK = 1000
#: clients whose server lacks SMISMEMBER/ZMSCORE (older than Redis 6.2)
_OLD_SERVERS: 'weakref.WeakKeyDictionary[Any, bool]' = weakref.WeakKeyDictionary()
#: held while a block's unique values are compared with the temporary hash and added to it
_CLAIMS = threading.Lock()


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


class Block:
    """Expected entries grouped by index name (without the ``<ns>:`` prefix and suffix)."""

    __slots__ = ('sets', 'scores', 'prefix', 'suffix', 'geo', 'uniques')

    def __init__(self) -> None:
        #: set index name -> id texts
        self.sets: Dict[str, List[str]] = {}
        #: scored index name -> (id texts, score texts)
        self.scores: Dict[str, Tuple[List[str], List[str]]] = {}
        #: attr -> (members ``token\\0id``, score texts, id texts); the same for suffix
        self.prefix: Dict[str, Tuple[List[str], List[str], List[str]]] = {}
        self.suffix: Dict[str, Tuple[List[str], List[str], List[str]]] = {}
        #: geo index name -> (id text, lon, lat)
        self.geo: Dict[str, List[Tuple[str, float, float]]] = {}
        #: unique index name -> (value, id text)
        self.uniques: Dict[str, List[Tuple[str, str]]] = {}

    def add(self, id_text: str, exp: Any) -> None:
        """Add one row's expected entries (a :class:`rom._expect._Expected`)."""
        for name in exp.keys:
            self.sets.setdefault(name, []).append(id_text)
        for name, score in exp.scores.items():
            ids, scores = self.scores.setdefault(name, ([], []))
            ids.append(id_text)
            scores.append(score)
        for groups, entries in ((self.prefix, exp.prefix), (self.suffix, exp.suffix)):
            for (attr, token), score in entries.items():
                members, scores, ids = groups.setdefault(attr, ([], [], []))
                members.append(token + '\0' + id_text)
                scores.append(score)
                ids.append(id_text)
        for name, (lon, lat) in exp.geo.items():
            self.geo.setdefault(name, []).append((id_text, lon, lat))
        for name, value in exp.uniques.items():
            self.uniques.setdefault(name, []).append((value, id_text))

    def sizes(self) -> List[Tuple[str, int]]:
        """``(index key without the namespace, entries)`` for every index key."""
        out = [(name + ':idx', len(ids)) for name, ids in self.sets.items()]
        out += [(name + ':idx', len(v[0])) for name, v in self.scores.items()]
        out += [(attr + ':pre', len(v[0])) for attr, v in self.prefix.items()]
        out += [(attr + ':suf', len(v[0])) for attr, v in self.suffix.items()]
        out += [(name + ':geo', len(v)) for name, v in self.geo.items()]
        out += [(name + ':uidx', len(v)) for name, v in self.uniques.items()]
        return out


def verify_native(conn: Any, ns: str, block: Block, temp: str, ttl: int
                  ) -> Optional[List[Problem]]:
    """The problems of the entries of ``block``, or None when the script must check them
    (geo entries, or a server older than Redis 6.2)."""
    if _OLD_SERVERS.get(conn) or block.geo:
        return None
    packed: Dict[str, bytes] = {}  # id text -> its RESP bulk string (each packed once)
    prefix = ns + ':'
    commands: List[bytes] = []
    # kind, key, (members, scores, ids) or claims, packed members, first, last
    plan: List[Tuple[str, str, Any, int, int]] = []

    def add(command: bytes, kind: str, key: str, items: Any, members: List[bytes]) -> None:
        head = bulk(command) + bulk(key.encode('utf-8'))
        for first in range(0, len(members), _CHUNK):
            chunk = members[first:first + _CHUNK]
            commands.append(b'*%d\r\n%s%s' % (len(chunk) + 2, head, b''.join(chunk)))
            plan.append((kind, key, items, first, first + len(chunk)))

    for name, ids in block.sets.items():
        add(b'SMISMEMBER', 'set', prefix + name + ':idx', ids, _packed_ids(ids, packed))
    for name, (ids, scores) in block.scores.items():
        add(b'ZMSCORE', 'zset', prefix + name + ':idx', (ids, scores, ids),
            _packed_ids(ids, packed))
    for kind, groups in ((':pre', block.prefix), (':suf', block.suffix)):
        for attr, items in groups.items():
            add(b'ZMSCORE', 'zset', prefix + attr + kind, items,
                _bulks(items[0]))
    for name, claims in block.uniques.items():
        add(b'HMGET', 'uidx', prefix + name + ':uidx', claims,
            _bulks([v for v, _i in claims]))
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
            members, scores, ids = items
            try:  # all present with the expected scores: one comparison
                if list(map(float, reply)) == list(map(float, scores[first:last])):
                    continue
            except (TypeError, ValueError):
                pass  # a missing member (None)
            for n in range(first, last):
                stored = reply[n - first]
                if stored is None:
                    out.append(('zmiss', ids[n], key, members[n], ''))
                elif not _close(stored, scores[n]):
                    out.append(('zscore', ids[n], key, members[n],
                                _text(stored) + ' ' + scores[n]))
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
    if temp and block.uniques:
        out += _duplicates(conn, prefix, block.uniques, temp, ttl)
    return out


def _packed_ids(ids: List[str], packed: Dict[str, bytes]) -> List[bytes]:
    """The RESP bulk strings of id texts (each packed once per call)."""
    try:
        return list(map(packed.__getitem__, ids))
    except KeyError:
        for id_text in ids:
            if id_text not in packed:
                packed[id_text] = b'$%d\r\n%s\r\n' % (len(id_text), id_text.encode())
        return list(map(packed.__getitem__, ids))


def _bulks(texts: List[str]) -> List[bytes]:
    """The RESP bulk strings of texts."""
    return [b'$%d\r\n%s\r\n' % (len(b), b) for b in map(str.encode, texts)]


def _duplicates(conn: Any, prefix: str, uidx: Dict[str, List[Tuple[str, str]]], temp: str,
                ttl: int) -> List[Problem]:
    """'udup' problems: unique values this check saw first with another row.

    The temporary hash ``temp`` maps ``<constraint name>\0<value>`` to the lowest id of the
    rows seen with it so far: the block's slots are read (``HMGET``), compared in order here
    (a slot first seen in this block counts too), and the new or lowered ones written
    (``HSET``) with the hash's time to live renewed; one block at a time (``check`` verifies
    in two threads). Every holder of a value but the lowest id is reported once, whatever
    the scan order.
    """
    slots: List[str] = []
    where: List[Tuple[str, str, str]] = []
    for name, claims in uidx.items():
        key = prefix + name + ':uidx'
        head = name + '\0'
        for value, id_text in claims:
            slots.append(head + value)
            where.append((key, value, id_text))
    packed = _bulks(slots)
    target = bulk(temp.encode('utf-8'))
    read = bulk(b'HMGET') + target
    with _CLAIMS:
        firsts: List[Any] = []
        for reply in run_packed(conn, [b'*%d\r\n%s%s' % (len(chunk) + 2, read, b''.join(chunk))
                                       for chunk in _chunks(packed)]):
            firsts += reply
        claimed: Dict[str, str] = {}
        new: List[bytes] = []
        out: List[Problem] = []
        for slot, member, (key, value, id_text), stored in zip(slots, packed, where, firsts):
            lowest = claimed.get(slot)
            if lowest is None and stored is not None:
                lowest = _text(stored)
            if lowest == id_text:
                continue
            if lowest is not None and int(lowest) < int(id_text):
                out.append(('udup', id_text, key, value, lowest))
                continue
            if lowest is not None:
                out.append(('udup', lowest, key, value, id_text))
            claimed[slot] = id_text
            new += [member, bulk(id_text.encode('utf-8'))]
        write = bulk(b'HSET') + target
        commands = [b'*%d\r\n%s%s' % (len(chunk) + 2, write, b''.join(chunk))
                    for chunk in _chunks(new, 2 * _CHUNK)]
        commands.append(pack([b'EXPIRE', temp.encode('utf-8'), b'%d' % (ttl,)]))
        run_packed(conn, commands)
    return out


def _chunks(items: List[bytes], size: int = _CHUNK) -> List[List[bytes]]:
    return [items[first:first + size] for first in range(0, len(items), size)]
