"""The per-thread session: an identity map of entities, and bulk save/delete/refresh.

Used by columns (tracking on assignment), models (tracking on load, forgetting on delete)
and queries (identity map lookups).
"""
from __future__ import annotations

import threading
import weakref
from asyncio import _get_running_loop, current_task
from collections.abc import MutableMapping
from typing import Any, Dict, Iterable, Iterator, List, Optional, Set, ValuesView

from ._connect import util_module
from ._io import Operation, arun, run
from ._registry import is_entity
from .exceptions import ORMError

_NO_OVERRIDE = object()


def _flatten(objects: Iterable[Any]) -> Iterator[Any]:
    for obj in objects:
        if isinstance(obj, (list, tuple)):
            yield from _flatten(obj)
        else:
            yield obj


def _key_of(obj: Any) -> str:
    key = getattr(obj, '_session_key', None)
    return key if key is not None else obj._pk


class KnownEntities(MutableMapping):
    """``session.known``: tracked entities keyed by ``_pk``, in insertion order.

    With ``_defer_ids = True`` a new entity's id is allocated when it is first read or by
    its first save; until then it is held under a placeholder key. Reading the keys
    (iteration, ``items()``, comparison, a lookup that misses) reads the ids, so pending ids
    are allocated first (in insertion order); ``values()``, ``len()`` and ``get()`` do not.
    """

    __slots__ = ('_d', '_waiting')

    def __init__(self) -> None:
        self._d: Dict[str, Any] = {}
        self._waiting: Set[str] = set()  # placeholder keys of entities with a pending id

    def _resolve(self) -> None:
        if not self._waiting:
            return
        for key in [k for k in self._d if k in self._waiting]:
            self._d[key]._allocate_id(rekey=False)
        self._waiting.clear()
        self._d = {_key_of(obj): obj for obj in self._d.values()}

    def _rekey_many(self, moves: Dict[str, str]) -> None:
        """Rename tracked keys (old -> new) in one pass, keeping their positions."""
        d = self._d
        if len(moves) == 1:
            (old, new), = moves.items()
            if next(reversed(d), None) == old:  # the usual case: the entity added last
                d[new] = d.pop(old)
                self._waiting.discard(old)
                return
        self._d = {moves.get(k, k): v for k, v in d.items()}
        self._waiting.difference_update(moves)

    def __getitem__(self, key: str) -> Any:
        if key not in self._d and self._waiting:
            self._resolve()
        return self._d[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._d[key] = value
        if getattr(value, '_id_pending', False):
            self._waiting.add(key)

    def __delitem__(self, key: str) -> None:
        del self._d[key]
        self._waiting.discard(key)

    def __contains__(self, key: object) -> bool:
        if key not in self._d and self._waiting:
            self._resolve()
        return key in self._d

    def __iter__(self) -> Iterator[str]:
        self._resolve()
        return iter(list(self._d))

    def __len__(self) -> int:
        return len(self._d)

    def values(self) -> ValuesView[Any]:  # type: ignore[override]
        return self._d.values()

    def get(self, key: str, default: Any = None) -> Any:
        return self._d.get(key, default)

    def pop(self, key: str, *default: Any) -> Any:
        self._waiting.discard(key)
        return self._d.pop(key, *default)

    def __repr__(self) -> str:
        return 'KnownEntities(%r)' % (self._d,)


class _State:
    """The identity map of one thread or one asyncio task (see :class:`Session`)."""

    __slots__ = ('known', 'wknown', 'null_override')

    def __init__(self) -> None:
        self.known: Any = KnownEntities()
        self.wknown: 'weakref.WeakValueDictionary[str, Any]' = weakref.WeakValueDictionary()
        self.null_override: Any = _NO_OVERRIDE


# asyncio task -> its identity map (dropped with the task)
_TASKS: 'weakref.WeakKeyDictionary[Any, _State]' = weakref.WeakKeyDictionary()


class Session(threading.local):
    """The identity map: ``known`` (strong refs, saved by commit) and ``wknown`` (weak refs).

    One per thread; inside a running event loop, one per asyncio task (two tasks of one
    loop never see each other's entities). Code outside a running loop keeps its thread's.
    A coroutine run as a task of its own (``asyncio.gather``, ``create_task``, and
    ``asyncio.wait_for`` before Python 3.12) has its own session: commit a task's entities
    in that task (``async with asyncio.timeout(...)`` keeps the same task).
    """

    def __init__(self) -> None:
        self._thread = _State()

    def _init(self) -> None:
        if not hasattr(self, '_thread'):
            self._thread = _State()

    def _state(self) -> _State:
        """The state of the running asyncio task of this thread, else of this thread."""
        loop = _get_running_loop()
        if loop is not None:
            task = current_task(loop)
            if task is not None:
                state = _TASKS.get(task)
                if state is None:
                    state = _TASKS[task] = _State()
                return state
        return self._thread

    def _is_null(self, state: _State) -> Any:
        override = state.null_override
        if override is _NO_OVERRIDE and state is not self._thread:
            override = self._thread.null_override  # a task follows its thread's override
        if override is _NO_OVERRIDE:
            return util_module().NULL_SESSION
        return override

    @property
    def known(self) -> Any:
        """Tracked entities by ``'<ns>:<id>'`` (held strongly until commit)."""
        return self._state().known

    @known.setter
    def known(self, value: Any) -> None:
        self._state().known = value

    @property
    def wknown(self) -> 'weakref.WeakValueDictionary[str, Any]':
        """Every entity seen (weakly held), by ``'<ns>:<id>'``."""
        return self._state().wknown

    @wknown.setter
    def wknown(self, value: 'weakref.WeakValueDictionary[str, Any]') -> None:
        self._state().wknown = value

    @property
    def null_session(self) -> Any:
        """True when this thread (or task) uses the null session (nothing is tracked)."""
        return self._is_null(self._state())

    @null_session.setter
    def null_session(self, value: Any) -> None:
        self._state().null_override = value

    @null_session.deleter
    def null_session(self) -> None:
        self._state().null_override = _NO_OVERRIDE

    def add(self, obj: Any) -> None:
        """Track ``obj`` (does nothing under a null session)."""
        state = self._state()
        if self._is_null(state):
            return
        pk = _key_of(obj)
        if pk.endswith(':None'):
            return
        state.known[pk] = obj
        if not getattr(obj, '_id_pending', False):
            state.wknown[pk] = obj

    def _add_loaded(self, obj: Any, key: str) -> None:
        """``add`` for an entity just built from a stored row, whose ``_pk`` is ``key``."""
        state = self._state()
        if self._is_null(state):
            return
        known = state.known
        if type(known) is KnownEntities:
            known._d[key] = obj
        else:
            known[key] = obj
        state.wknown[key] = obj

    def forget(self, obj: Any) -> None:
        """Stop tracking ``obj``."""
        pk = _key_of(obj)
        state = self._state()
        state.known.pop(pk, None)
        state.wknown.pop(pk, None)

    def _rekey_many(self, entities: List[Any]) -> None:
        """Move (entity, old placeholder key) pairs to their real ``_pk``, in one pass."""
        known = self.known
        moves = {old_key: obj._session_key for obj, old_key in entities
                 if known.get(old_key) is obj}
        if not moves:
            return
        if isinstance(known, KnownEntities):
            known._rekey_many(moves)
        else:  # a plain mapping assigned by application code
            for old_key, new_key in moves.items():
                known[new_key] = known.pop(old_key)
        for obj, old_key in entities:
            if old_key in moves:
                self.wknown[moves[old_key]] = obj

    def get(self, pk: str) -> Optional[Any]:
        """The tracked entity for ``'<ns>:<id>'``, or None (never contacts Redis)."""
        state = self._state()
        known = state.known
        obj = known._d.get(pk) if type(known) is KnownEntities else known.get(pk)
        if obj is None:
            obj = state.wknown.get(pk)
        return obj

    def rollback(self) -> None:
        """Forget every tracked entity (local changes are kept on the objects)."""
        state = self._state()
        state.known = KnownEntities()
        state.wknown = weakref.WeakValueDictionary()

    def flush(self, full: bool = False, all: bool = False, force: bool = False) -> int:
        """Save every tracked dirty entity (every one with ``all``); returns columns changed."""
        return self.save(*list(self.known.values()), full=full, all=all, force=force)

    async def aflush(self, full: bool = False, all: bool = False, force: bool = False) -> int:
        """Async ``flush()`` (this task's session)."""
        return await self.asave(*list(self.known.values()), full=full, all=all, force=force)

    def commit(self, full: bool = False, all: bool = False, force: bool = False) -> int:
        """``flush()`` then stop holding the entities strongly (they stay in ``wknown``)."""
        result = self.flush(full, all, force)
        self.known = KnownEntities()
        return result

    async def acommit(self, full: Any = None, all: bool = False, force: bool = False) -> int:
        """Async ``commit()``: saves this task's tracked entities, then releases them.

        Cancelled while a write is in flight, each script call has been applied whole or
        not at all; the entities not known to be written stay tracked and modified, so a
        later ``acommit()`` writes them (never twice).
        """
        result = await self.aflush(bool(full), all, force)
        self.known = KnownEntities()
        return result

    def save(self, *objects: Any, full: Any = None, all: Any = None, force: Any = None,
             **ignored: Any) -> int:
        """Save entities (nested lists/tuples allowed) in order; returns columns changed.

        Writes are batched into as few script calls as possible; on failure the entities
        before the failing one are written and the rest are not.
        """
        return run(_op_save(objects, full, all, force))

    async def asave(self, *objects: Any, full: Any = None, all: Any = None, force: Any = None,
                    **ignored: Any) -> int:
        """Async ``save()`` (the saved entities count as coming from the async API, as with
        ``Model.asave``)."""
        from ._relations import mark_async
        total = await arun(_op_save(objects, full, all, force))
        mark_async(list(_flatten(objects)))
        return total

    def delete(self, *objects: Any, force: Any = None, **ignored: Any) -> None:
        """Delete entities with one MULTI/EXEC round trip per Redis client (no on_delete)."""
        run(_op_delete(objects, force))

    async def adelete(self, *objects: Any, force: Any = None, **ignored: Any) -> None:
        """Async ``delete()``."""
        await arun(_op_delete(objects, force))

    # --- refresh (async-read's block: operations in rom._ops_read) --------------------------
    def refresh(self, *objects: Any, force: Any = None) -> None:
        """Reload entities from Redis (``InvalidOperation`` for modified ones unless ``force``)."""
        from ._ops_read import op_refresh_objects  # (rom._ops_read imports this module)
        run(op_refresh_objects(objects, force, own_refresh=True))

    async def arefresh(self, *objects: Any, force: Any = None) -> None:
        """Async ``refresh()``: same arguments and exceptions; never blocks the loop."""
        from ._ops_read import op_refresh_objects
        from ._relations import mark_async
        await arun(op_refresh_objects(objects, force))
        mark_async(list(_flatten(objects)))

    def refresh_all(self, *objects: Any, force: Any = None) -> None:
        """Refresh every tracked entity (positional arguments are ignored)."""
        self.refresh(*list(self.known.values()), force=force)

    async def arefresh_all(self, *objects: Any, force: Any = None) -> None:
        """Async ``refresh_all()``."""
        await self.arefresh(*list(self.known.values()), force=force)


def _op_save(objects: Any, full: Any, all: Any, force: Any) -> Operation[int]:
    """Operation of ``Session.save``: the savable entities, in one ordered batched save."""
    from ._write import op_save_entities
    selected: List[Any] = []
    error: Optional[BaseException] = None
    for obj in _flatten(objects):
        if not is_entity(obj):
            error = ORMError('cannot save %r: only rom model instances can be saved' % (obj,))
            break
        if not obj._deleted and (all or obj._modified):
            selected.append(obj)
    total = 0
    if selected:
        total = yield from op_save_entities(selected, bool(full), bool(force), bool(all))
    if error is not None:
        raise error
    return total


def _op_delete(objects: Any, force: Any) -> Operation[None]:
    """Operation of ``Session.delete``."""
    from ._ops_delete import op_delete_many
    selected = [obj for obj in _flatten(objects)
                if is_entity(obj) and (force or not obj._deleted)]
    yield from op_delete_many(selected)


#: the session rom consults (one identity map per thread, or per asyncio task)
session = Session()
