"""Expiry declarations and per-entity expiry requests (no I/O).

A model takes part in expiry when it declares ``_ttl``: ``0`` (entities may expire, none by
default) or a positive number of seconds (the default lifetime of new entities), and
optionally ``_ttl_renew = True`` (every save restarts a running expiry at ``_ttl``). The
storage (``<ns>:-expiry-`` and the row field ``-expire-at-``) is written by ``write.lua``
(``scripts/_expiry.lua``); reads and removal live in ``rom._expiry``.
"""
from __future__ import annotations

import datetime
import math
from decimal import ROUND_CEILING, Decimal
from typing import Any, Optional, Tuple

from ._session import session
from .exceptions import DataRaceError, EntityDeletedError, InvalidOperation, ORMError

#: the row field holding a row's expiry time (ms since the epoch, server clock)
EXPIRY_FIELD = '-expire-at-'
#: the latest expiry time accepted: the end of year 9999 UTC, in ms (well below 2 ** 53)
MAX_MS = 253402300800000
_EPOCH = datetime.datetime(1970, 1, 1)

#: an expiry op sent to the writer: (op, ms text)
ExpiryOp = Tuple[str, str]
KEEP: ExpiryOp = ('', '')


def expiry_key(namespace: str) -> str:
    """The sorted set of a model's expiry times: ``<ns>:-expiry-``."""
    return namespace + ':-expiry-'


def _seconds(value: Any, what: str) -> Decimal:
    """A finite, non-negative number of seconds as an exact Decimal (TypeError/ValueError)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise TypeError('%s must be a number of seconds, not %s' % (what, type(value).__name__))
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError('%s must be finite, got %r' % (what, value))
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError('%s must be finite, got %r' % (what, value))
    exact = Decimal(value) if not isinstance(value, float) else Decimal(repr(value))
    if exact < 0:
        raise ValueError('%s must not be negative, got %r' % (what, value))
    if exact * 1000 > MAX_MS:
        raise ValueError('%s is too large (%r)' % (what, value))
    return exact


def _ms(seconds: Decimal) -> int:
    """Seconds to whole milliseconds, rounded up (an expiry never comes early)."""
    return int((seconds * 1000).to_integral_value(rounding=ROUND_CEILING))


def check_model(cls: Any) -> None:
    """Validate ``_ttl`` / ``_ttl_renew`` of a model class (ORMError) and record its expiry key."""
    ttl = getattr(cls, '_ttl', None)
    renew = getattr(cls, '_ttl_renew', False)
    if ttl is None:
        if renew:
            raise ORMError('%s._ttl_renew needs a positive _ttl' % (cls.__name__,))
        return
    try:
        seconds = _seconds(ttl, '%s._ttl' % (cls.__name__,))
    except (TypeError, ValueError) as exc:
        raise ORMError('%s (0 lets entities expire without a default lifetime)' % (exc,))
    if not isinstance(renew, bool):
        raise ORMError('%s._ttl_renew must be True or False' % (cls.__name__,))
    if renew and not seconds:
        raise ORMError('%s._ttl_renew needs a positive _ttl' % (cls.__name__,))
    cls._ttl_ms = _ms(seconds)
    cls._gindex.expiry_key = expiry_key(cls._namespace)


def require_expiry(entity: Any) -> None:
    """InvalidOperation unless the entity's model declares ``_ttl``."""
    if getattr(type(entity), '_ttl', None) is None:
        raise InvalidOperation('%s: model %s does not declare _ttl, so its entities cannot '
                               'expire (declare _ttl = 0 for no default lifetime)'
                               % (entity._session_key, type(entity).__name__))


def request_expiry(entity: Any, op: ExpiryOp) -> None:
    """Record an expiry change for the entity's next save (and mark it modified)."""
    require_expiry(entity)
    if entity._deleted:
        raise InvalidOperation('%s: the entity was deleted' % (entity._session_key,))
    entity._rom_expiry = op
    entity._modified = True
    session.add(entity)


def expire_in_op(seconds: Any) -> ExpiryOp:
    """The op of ``expire_in(seconds)`` (a number of seconds or a ``timedelta``)."""
    if isinstance(seconds, datetime.timedelta):
        seconds = (Decimal(seconds.days * 86400 + seconds.seconds)
                   + Decimal(seconds.microseconds) / 1000000)
    return ('in', str(_ms(_seconds(seconds, 'expire_in() seconds'))))


def expire_at_op(when: Any) -> ExpiryOp:
    """The op of ``expire_at(when)``: a Unix timestamp or a datetime (naive means UTC)."""
    if isinstance(when, datetime.datetime):
        if when.tzinfo is not None:
            when = when.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        delta = when - _EPOCH
        ms = (delta.days * 86400 + delta.seconds) * 1000 + -(-delta.microseconds // 1000)
        if ms < 0:
            raise ValueError('expire_at(): %r is before 1970' % (when,))
        return ('at', str(ms))
    return ('at', str(_ms(_seconds(when, 'expire_at() timestamp'))))


def write_op(entity: Any, was_new: bool, force: bool) -> Optional[ExpiryOp]:
    """The expiry op a save of ``entity`` sends, or None for models without ``_ttl``."""
    model = type(entity)
    if model._ttl is None:
        return None
    op = entity.__dict__.get('_rom_expiry')
    if op is None:
        if (was_new or force) and model._ttl_ms:
            op = ('in', str(model._ttl_ms))
        elif model._ttl_renew:
            op = ('renew', str(model._ttl_ms))
        else:
            op = KEEP
    if force:
        op = ('!' + op[0], op[1])
    return op


class StillAlive(DataRaceError):
    """The expiry sweep found an entity renewed or persisted since it was read as due."""


def expiry_failure(kind: str, ns: str, id_text: str) -> Exception:
    """The exception of a write script failure 'expired' (a save of an expired entity) or
    'alive' (a removal of an entity that is no longer due)."""
    if kind == 'expired':
        return EntityDeletedError('entity %s:%s has expired; use save(force=True) to recreate '
                                  'it' % (ns, id_text), ns, id_text)
    return StillAlive('%s:%s is no longer due to expire' % (ns, id_text), ns, id_text)


# --- the entity methods (``Model.expire_in`` ...: assigned in rom.model) -----------------------
def expire_in(self: Any, seconds: Any) -> None:
    """Make the entity expire ``seconds`` (a number or a ``timedelta``) after its next save
    (by the server's clock)."""
    request_expiry(self, expire_in_op(seconds))


def expire_at(self: Any, when: Any) -> None:
    """Make the entity expire at ``when`` (a Unix timestamp, or a datetime; naive means UTC),
    from its next save on."""
    request_expiry(self, expire_at_op(when))


def persist(self: Any) -> None:
    """Remove the entity's expiry at its next save."""
    request_expiry(self, ('persist', ''))


def ttl(self: Any) -> Optional[float]:
    """Seconds until the stored entity expires (server clock; 0.0 once it has), or None when
    it has no expiry or is not stored. Pending requests are not counted."""
    require_expiry(self)
    if self._new or self._id_pending or self._deleted:
        return None
    from ._expiry import ttl_of  # (rom._expiry imports this module)
    return ttl_of(type(self), self._data[self._pkey])


async def attl(self: Any) -> Optional[float]:
    """Awaitable :meth:`ttl`."""
    require_expiry(self)
    if self._new or self._id_pending or self._deleted:
        return None
    from ._expiry import op_ttl_of
    from ._io import arun
    return await arun(op_ttl_of(type(self), self._data[self._pkey]))
