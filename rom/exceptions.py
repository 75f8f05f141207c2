"""The exception hierarchy of rom (same classes and bases as rom 1.1.2)."""
from __future__ import annotations

__all__ = [
    'BulkError', 'ColumnError', 'DataRaceError', 'EntityDeletedError',
    'InvalidColumnValue', 'InvalidOperation', 'MissingColumn', 'ORMError',
    'QueryError', 'RestrictError', 'UniqueKeyViolation',
]


class ORMError(Exception):
    """Base class of every error raised by rom."""


class UniqueKeyViolation(ORMError):
    """A save would store a unique value already held by another entity.

    ``args`` is ``(message, namespace, id)``.
    """


class InvalidOperation(ORMError):
    """The requested operation is not allowed in the entity's current state."""


class QueryError(InvalidOperation):
    """A query or lookup was built with invalid arguments."""


class RestrictError(InvalidOperation):
    """A delete was blocked by an ``on_delete='restrict'`` reference."""


class DataRaceError(InvalidOperation):
    """Another writer changed the columns this save was about to write.

    ``args`` is ``(message, namespace, id)`` (one argument for a held lock).
    """


class EntityDeletedError(InvalidOperation):
    """The entity's row was deleted by another writer before this save.

    ``args`` is ``(message, namespace, id)``. Use ``save(force=True)`` to recreate it.
    """


class ColumnError(ORMError):
    """A column or model declaration is invalid, or a keygen result is unusable."""


class MissingColumn(ColumnError):
    """A required column has no value when the entity is created."""


class InvalidColumnValue(ColumnError):
    """A value has the wrong type or cannot be stored."""


class BulkError(ORMError):
    """Reserved for bulk operations (never raised, kept for compatibility)."""


class UnsafeError(ColumnError):
    """Reserved for unsafe columns (never raised, kept for compatibility)."""
