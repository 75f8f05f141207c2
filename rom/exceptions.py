"""The exception hierarchy of rom (same classes and bases as rom 1.1.2)."""
from __future__ import annotations

from ._helpers import short_repr

__all__ = [
    'BulkError', 'ColumnError', 'DataRaceError', 'EntityDeletedError',
    'InvalidColumnValue', 'InvalidOperation', 'MissingColumn', 'ORMError',
    'QueryError', 'RestrictError', 'UniqueKeyViolation',
]


class ORMError(Exception):
    """Base class of every error raised by rom."""


def _message_first(self: Exception) -> str:
    """``str()`` of an error whose ``args`` are ``(message, namespace, id)``: the message."""
    args = self.args
    if len(args) > 1 and isinstance(args[0], str):
        return args[0]
    return Exception.__str__(self)


class UniqueKeyViolation(ORMError):
    """A save would store a unique value already held by another entity.

    ``args`` is ``(message, namespace, id)``; ``str()`` is the message.
    """

    __str__ = _message_first


class InvalidOperation(ORMError):
    """The requested operation is not allowed in the entity's current state."""


class QueryError(InvalidOperation):
    """A query or lookup was built with invalid arguments."""


class RestrictError(InvalidOperation):
    """A delete was blocked by an ``on_delete='restrict'`` reference."""


class DataRaceError(InvalidOperation):
    """Another writer changed the columns this save was about to write.

    ``args`` is ``(message, namespace, id)`` (one argument for a held lock); ``str()`` is
    the message.
    """

    __str__ = _message_first


class EntityDeletedError(InvalidOperation):
    """The entity's row was deleted (by another writer, or by this process) before this save.

    ``args`` is ``(message, namespace, id)``; ``str()`` is the message. Use
    ``save(force=True)`` to recreate it.
    """

    __str__ = _message_first


class ColumnError(ORMError):
    """A column or model declaration is invalid, or a keygen result is unusable."""


class MissingColumn(ColumnError):
    """A required column has no value when the entity is created."""


class InvalidColumnValue(ColumnError):
    """A value has the wrong type or cannot be stored.

    A conversion error raised while an entity is constructed keeps the original error's
    ``args`` (compatibility) while ``str()`` names the column and the value.
    """

    def __str__(self) -> str:
        message = self.__dict__.get('_rom_message')
        return message if message is not None else ColumnError.__str__(self)


class _InvalidColumnEncodeError(InvalidColumnValue, UnicodeEncodeError):
    """An ``InvalidColumnValue`` that is also the ``UnicodeEncodeError`` rom 1.1.2 raised."""


class _InvalidColumnAttributeError(InvalidColumnValue, AttributeError):
    """An ``InvalidColumnValue`` that is also the ``AttributeError`` rom 1.1.2 raised."""


def _conversion_error(label: str, value: object, expected: str,
                      error: BaseException) -> InvalidColumnValue:
    """``InvalidColumnValue`` with ``error``'s args whose message names column ``label``
    (also a ``UnicodeEncodeError``/``AttributeError`` when ``error`` is one: compat)."""
    cls: type = InvalidColumnValue
    if isinstance(error, UnicodeEncodeError):
        cls = _InvalidColumnEncodeError
    elif isinstance(error, AttributeError):
        cls = _InvalidColumnAttributeError
    exc = cls(*error.args)
    exc.__dict__['_rom_message'] = '%s: cannot convert %s to %s (%s)' % (
        label, short_repr(value), expected, error)
    return exc


class _InvalidColumnTypeError(InvalidColumnValue, TypeError):
    """An ``InvalidColumnValue`` that is also the ``TypeError`` rom 1.1.2 raised."""


class _InvalidColumnValueError(InvalidColumnValue, ValueError):
    """An ``InvalidColumnValue`` that is also the ``ValueError`` rom 1.1.2 raised."""


def _unstorable(message: str, error: BaseException) -> InvalidColumnValue:
    """``InvalidColumnValue(message)`` that is also an instance of ``error``'s base type
    (``TypeError`` or ``ValueError``), so handlers written for rom 1.1.2 still catch it."""
    if isinstance(error, TypeError):
        return _InvalidColumnTypeError(message)
    if isinstance(error, ValueError):
        return _InvalidColumnValueError(message)
    if isinstance(error, AttributeError):
        return _InvalidColumnAttributeError(message)
    return InvalidColumnValue(message)


class BulkError(ORMError):
    """Reserved for bulk operations (never raised, kept for compatibility)."""


class UnsafeError(ColumnError):
    """Reserved for unsafe columns (never raised, kept for compatibility)."""


class MissingLoadError(ORMError):
    """In async code, a relation of an entity from the async API was read before it was
    loaded: reading it would block the event loop on Redis. Load it first with
    ``await entity.aload('name')``, or with ``query.prefetch('name')``."""


class ShardedAsyncError(InvalidOperation):
    """An asyncio call that a sharded model (``_shards``) cannot serve without blocking.

    No longer raised by rom's asyncio API: scattered queries, ``aget_by``, ``asave``/
    ``adelete`` of unique values and ``session.acommit()`` of sharded models all work. Kept
    (a public name) for code that catches it, and as the error of a write of new unique
    values planned inside the event loop outside a save (none of rom's own calls does)."""
