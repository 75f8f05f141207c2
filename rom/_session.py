"""The per-thread session: an identity map of entities, and bulk save/delete/refresh.

Used by columns (tracking on assignment), models (tracking on load, forgetting on delete)
and queries (identity map lookups).
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Dict, Iterable, Iterator, List, Optional

from ._connect import connect, util_module
from ._registry import MODELS_REFERENCED, SKIP_ON_DELETE, is_entity
from .exceptions import ORMError

_NO_OVERRIDE = object()


def _flatten(objects: Iterable[Any]) -> Iterator[Any]:
    for obj in objects:
        if isinstance(obj, (list, tuple)):
            yield from _flatten(obj)
        else:
            yield obj


class Session(threading.local):
    """The identity map: ``known`` (strong refs, saved by commit) and ``wknown`` (weak refs)."""

    def __init__(self) -> None:
        self.known: Dict[str, Any] = {}
        self.wknown: 'weakref.WeakValueDictionary[str, Any]' = weakref.WeakValueDictionary()
        self._null_override: Any = _NO_OVERRIDE

    def _init(self) -> None:
        if not hasattr(self, 'known'):
            self.known = {}
            self.wknown = weakref.WeakValueDictionary()

    @property
    def null_session(self) -> Any:
        """True when this thread uses the null session (nothing is tracked)."""
        override = self._null_override
        if override is _NO_OVERRIDE:
            return util_module().NULL_SESSION
        return override

    @null_session.setter
    def null_session(self, value: Any) -> None:
        self._null_override = value

    @null_session.deleter
    def null_session(self) -> None:
        self._null_override = _NO_OVERRIDE

    def add(self, obj: Any) -> None:
        """Track ``obj`` (does nothing under a null session)."""
        if self.null_session:
            return
        pk = obj._pk
        if pk.endswith(':None'):
            return
        self.known[pk] = obj
        self.wknown[pk] = obj

    def forget(self, obj: Any) -> None:
        """Stop tracking ``obj``."""
        pk = obj._pk
        self.known.pop(pk, None)
        self.wknown.pop(pk, None)

    def get(self, pk: str) -> Optional[Any]:
        """The tracked entity for ``'<ns>:<id>'``, or None (never contacts Redis)."""
        obj = self.known.get(pk)
        if obj is None:
            obj = self.wknown.get(pk)
        return obj

    def rollback(self) -> None:
        """Forget every tracked entity (local changes are kept on the objects)."""
        self.known = {}
        self.wknown = weakref.WeakValueDictionary()

    def flush(self, full: bool = False, all: bool = False, force: bool = False) -> int:
        """Save every tracked dirty entity (every one with ``all``); returns columns changed."""
        return self.save(*self.known.values(), full=full, all=all, force=force)

    def commit(self, full: bool = False, all: bool = False, force: bool = False) -> int:
        """``flush()`` then stop holding the entities strongly (they stay in ``wknown``)."""
        result = self.flush(full, all, force)
        self.known = {}
        return result

    def save(self, *objects: Any, full: Any = None, all: Any = None, force: Any = None,
             **ignored: Any) -> int:
        """Save entities (nested lists/tuples allowed) in order; returns columns changed.

        Writes are batched into as few script calls as possible; on failure the entities
        before the failing one are written and the rest are not.
        """
        selected: List[Any] = []
        error: Optional[BaseException] = None
        for obj in _flatten(objects):
            if not is_entity(obj):
                error = ORMError('cannot save %r: only rom model instances can be saved' % (obj,))
                break
            if not obj._deleted and (all or obj._modified):
                selected.append(obj)
        # every model class shares Model._save_many (batched, ordered, stop at first failure)
        total = type(selected[0])._save_many(selected, bool(full), bool(force)) if selected else 0
        if error is not None:
            raise error
        return total

    def delete(self, *objects: Any, force: Any = None, **ignored: Any) -> None:
        """Delete entities with one MULTI/EXEC round trip per Redis client (no on_delete)."""
        selected = [obj for obj in _flatten(objects)
                    if is_entity(obj) and (force or not obj._deleted)]
        for obj in selected:
            cls = type(obj)
            if (not cls._no_fk or cls._namespace in MODELS_REFERENCED
                    or cls.__name__ in MODELS_REFERENCED):
                raise ORMError(
                    'cannot delete %s entities in bulk: the model takes part in foreign-key '
                    'relationships; delete them one by one' % (cls._namespace,))
        pipes: Dict[int, Any] = {}
        for obj in selected:
            if not obj._deleted:
                obj._before_delete()
            conn = connect(obj)
            pipe = pipes.get(id(conn))
            if pipe is None:
                pipe = pipes[id(conn)] = conn.pipeline(True)
            obj.delete(_conn=pipe, skip_on_delete_i_really_mean_it=SKIP_ON_DELETE)
        for pipe in pipes.values():
            pipe.execute()
        for obj in selected:
            if obj._deleted == 1:
                obj._after_delete()
                obj._deleted = 2
            self.forget(obj)

    def refresh(self, *objects: Any, force: Any = None) -> None:
        """Reload entities from Redis (``InvalidOperation`` for modified ones unless ``force``)."""
        for obj in objects:
            if isinstance(obj, (list, tuple)):
                self.refresh(*obj, force=force)
            elif not is_entity(obj):
                raise ORMError('cannot refresh %r: only rom model instances can be refreshed' % (obj,))
            elif obj._new:
                self.add(obj)
            else:
                obj.refresh(force=force)

    def refresh_all(self, *objects: Any, force: Any = None) -> None:
        """Refresh every tracked entity (positional arguments are ignored)."""
        self.refresh(*list(self.known.values()), force=force)


#: the session rom consults (one identity map per thread)
session = Session()
