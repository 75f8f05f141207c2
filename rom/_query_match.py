"""Pure helpers for prefix/suffix/pattern matching: score bounds and like() translation.

No I/O. Used by ``rom._search`` (scan scripts, work estimates) and re-exported by
``rom.index``.
"""
from __future__ import annotations

import re
from typing import Tuple, Union

from ._helpers import _prefix_score, token_text
from .exceptions import QueryError

#: characters that are special in Lua patterns (matched literally by like())
SPECIAL = re.compile('([-().%[^$])')
#: ``_prefix_score('\xff' * 7, True)``; kept for compatibility (scans no longer stop there)
MAX_PREFIX_SCORE = _prefix_score('\xff' * 7, True)

_WILDCARDS = '?*+!'
#: longest like() pattern accepted, in UTF-8 bytes (longer ones raise QueryError)
MAX_PATTERN_BYTES = 1024
_TRANSLATE = {'?': '.?', '*': '.-', '+': '.+', '!': '.', '\0': '%z'}


_ts = token_text


def _literal_prefix(pattern: str) -> str:
    """Every character of a like() pattern before its first wildcard."""
    if not isinstance(pattern, str):
        raise TypeError('like() patterns must be str, not %s' % (type(pattern).__name__,))
    for i, ch in enumerate(pattern):
        if ch in _WILDCARDS:
            return pattern[:i]
    return pattern


def _find_prefix(pattern: str) -> str:
    """The literal start of a like() pattern, at most 7 characters (for score bounds)."""
    return _literal_prefix(pattern)[:7]


def _pattern_to_lua_pattern(pattern: str) -> str:
    """Translate a like() pattern to a Lua pattern matched against ``token \\0 id`` members.

    ``?`` zero or one byte, ``*`` any bytes, ``+`` one or more, ``!`` exactly one; every other
    character is literal: Lua's magic characters are escaped with ``%`` (reference bug query
    #1 fixed), so user input can never inject pattern syntax. The trailing ``.*%z%d+`` keeps
    wildcards inside the token (they cannot cross the last ``\\0``).
    """
    if not isinstance(pattern, str):
        raise TypeError('like() patterns must be str, not %s' % (type(pattern).__name__,))
    out = ['^']
    for ch in pattern:
        if ch in _TRANSLATE:
            out.append(_TRANSLATE[ch])
        elif SPECIAL.match(ch):
            out.append('%' + ch)
        else:
            out.append(ch)
    out.append('.*%z%d+')
    return ''.join(out)


def _normalise_pattern(pattern: str) -> str:
    """The canonical form of a like() pattern; matches exactly the same tokens.

    Every run of wildcards becomes ``'!' * least`` followed by ``'*'`` when the run has no
    upper bound (it holds a ``*`` or ``+``) or by ``'?' * (most - least)`` otherwise; a
    trailing run keeps only its ``'!'`` (matches need not consume the whole token). Raises
    ``TypeError`` for non-str patterns and ``QueryError`` for patterns longer than
    ``MAX_PATTERN_BYTES`` UTF-8 bytes or not encodable as UTF-8.
    """
    if not isinstance(pattern, str):
        raise TypeError('like() patterns must be str, not %s' % (type(pattern).__name__,))
    if len(pattern) > MAX_PATTERN_BYTES:
        raise QueryError('like() patterns are limited to %d bytes, got %d characters'
                         % (MAX_PATTERN_BYTES, len(pattern)))
    try:
        size = len(pattern.encode('utf-8'))
    except UnicodeEncodeError:
        raise QueryError('like() pattern %r is not valid text (lone surrogate)'
                         % (pattern,)) from None
    if size > MAX_PATTERN_BYTES:
        raise QueryError('like() patterns are limited to %d bytes (UTF-8), got %d'
                         % (MAX_PATTERN_BYTES, size))
    out = []
    for run in re.findall(r'[?*+!]+|[^?*+!]+', pattern):
        if run[0] not in _WILDCARDS:
            out.append(run)
            continue
        least = run.count('!') + run.count('+')
        if '*' in run or '+' in run:
            out.append('!' * least + '*')
        else:
            out.append('!' * least + '?' * run.count('?'))
    if out and out[-1][0] in _WILDCARDS:
        out[-1] = out[-1].rstrip('*?')
    return ''.join(out)


def _lua_to_like(lua_pattern: str) -> str:
    """The like() pattern a ``_pattern_to_lua_pattern`` result was translated from.

    ``redis_prefix_lua`` accepts translated patterns (compat) but never lets Redis run them
    as Lua patterns; anything else raises ``QueryError``.
    """
    head, tail = '^', '.*%z%d+'
    if len(lua_pattern) > 2 * MAX_PATTERN_BYTES + len(head + tail):
        raise QueryError('like() patterns are limited to %d bytes' % (MAX_PATTERN_BYTES,))
    if not (lua_pattern.startswith(head) and lua_pattern.endswith(tail)):
        raise QueryError('not a translated like() pattern: %r' % (lua_pattern,))
    body = lua_pattern[len(head):len(lua_pattern) - len(tail)]
    back = {'.?': '?', '.-': '*', '.+': '+', '%z': '\0'}
    out = []
    i = 0
    while i < len(body):
        two = body[i:i + 2]
        if two in back:
            out.append(back[two])
            i += 2
        elif body[i] == '.':
            out.append('!')
            i += 1
        elif body[i] == '%' and i + 1 < len(body) and SPECIAL.match(body[i + 1]):
            out.append(body[i + 1])
            i += 2
        elif SPECIAL.match(body[i]) or body[i] in '*+?!\0':
            raise QueryError('not a translated like() pattern: %r' % (lua_pattern,))
        else:
            out.append(body[i])
            i += 1
    return ''.join(out)


def _start_end(prefix: Union[str, bytes]) -> Tuple[str, str]:
    """Score bounds ``[start, end)`` of index members whose token starts with ``prefix``.

    ``end`` is ``MAX_PREFIX_SCORE`` for an empty prefix (compat value; the scan itself goes to
    the end of the index then, reference bug query #3 fixed).
    """
    start = _prefix_score(prefix)
    end = _prefix_score(prefix, True) if prefix else MAX_PREFIX_SCORE
    return start, end
