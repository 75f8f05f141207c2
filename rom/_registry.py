"""Process-wide registries and sentinels shared by columns, models and the session.

``MODELS`` and ``MODELS_REFERENCED`` are re-exported by ``rom.columns`` (their public home).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

#: model registry: class name and namespace -> model class (``'Model'`` is always present)
MODELS: Dict[str, Any] = {}
#: ftable text -> list of (referencing namespace, attribute, on_delete action)
MODELS_REFERENCED: Dict[str, List[Tuple[str, str, str]]] = {}

ON_DELETE = ('no action', 'restrict', 'cascade', 'set null', 'set default')


class _Sentinel:
    __slots__ = ('_name',)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: pass as ``skip_on_delete_i_really_mean_it`` to ``Model.delete()`` to skip hooks and on_delete
SKIP_ON_DELETE = _Sentinel('SKIP_ON_DELETE')
#: "no default given"
NULL = _Sentinel('NULL')
#: "no on_delete given"
NO_ACTION_DEFAULT = _Sentinel('NO_ACTION_DEFAULT')
#: primary key of a new entity whose id is allocated when first read or by its first save
PENDING_ID = _Sentinel('PENDING_ID')


class EntityMeta(type):
    """Base metaclass of every model; ``isinstance(type(x), EntityMeta)`` means "x is an entity"."""


def is_entity(obj: Any) -> bool:
    """True when ``obj`` is an instance of a rom model."""
    return isinstance(type(obj), EntityMeta)

#: set (in an entity's ``__dict__``) while the save operation writes the new entities it
#: refers to: one of those referring back to it stores its id without saving it again
SAVING_TARGETS = '_rom_saving_targets'
