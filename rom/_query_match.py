"""Pure helpers for prefix/suffix/pattern matching: score bounds and like() translation.

No I/O. Used by ``rom._search`` (scan scripts, work estimates) and re-exported by
``rom.index``.
"""
from __future__ import annotations

import re
from typing import Tuple, Union

from ._helpers import _prefix_score, token_text

#: characters that are special in Lua patterns (matched literally by like())
SPECIAL = re.compile('([-().%[^$])')
#: ``_prefix_score('\xff' * 7, True)``; kept for compatibility (scans no longer stop there)
MAX_PREFIX_SCORE = _prefix_score('\xff' * 7, True)

_WILDCARDS = '?*+!'
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


def _start_end(prefix: Union[str, bytes]) -> Tuple[str, str]:
    """Score bounds ``[start, end)`` of index members whose token starts with ``prefix``.

    ``end`` is ``MAX_PREFIX_SCORE`` for an empty prefix (compat value; the scan itself goes to
    the end of the index then, reference bug query #3 fixed).
    """
    start = _prefix_score(prefix)
    end = _prefix_score(prefix, True) if prefix else MAX_PREFIX_SCORE
    return start, end
