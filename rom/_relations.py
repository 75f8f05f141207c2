"""Relation columns (ManyToOne, OneToOne, ForeignModel, OneToMany) and ``UnsafeColumn``."""
from __future__ import annotations

from asyncio import _get_running_loop
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, TypeVar, overload

from ._coltypes import Column, _Column
from ._helpers import short_repr
from ._connect import connect
from ._keygen import _many_to_one_keygen
from ._registry import MODELS, NO_ACTION_DEFAULT, NULL, ON_DELETE, SAVING_TARGETS, is_entity
from ._session import session
from .exceptions import (ColumnError, InvalidColumnValue, InvalidOperation, MissingLoadError,
                         ORMError)

#: the related model (``Any`` unless the attribute is annotated, e.g. ``ManyToOne[User]``)
if TYPE_CHECKING:
    from typing_extensions import TypeVar as _TypeVar
    _G = _TypeVar('_G', default=Any)
else:
    _G = TypeVar('_G')
_C = TypeVar('_C', bound=Column[Any])

_RESERVED_UNSAFE_NAMES = ('idx', 'uidx', 'pre', 'suf', 'geo')


class _ForeignModelPlaceholder:
    """Placeholder value type of reference columns (the real type is resolved lazily)."""


class _Unresolved:
    """A loaded reference not looked up yet (resolved on first access; fixes R1 cycles)."""

    __slots__ = ('id',)

    def __init__(self, id_text: str) -> None:
        self.id = id_text


class _Related:
    """Lookup of the model named by ``_ftable`` (shared by the relation columns)."""

    _ftable: str
    _attr: Optional[str]

    def get_related_model(self) -> Any:
        """The referenced model class, or None when it is not registered."""
        return MODELS.get(self._ftable)

    def _target(self, ns: Any) -> Any:
        model = MODELS.get(self._ftable)
        if model is None:
            raise ORMError('model %r referenced by %s.%s is not defined'
                           % (self._ftable, ns, self._attr))
        return model


# -- relations in async code ----------------------------------------------------------------
#: per entity (instance attribute): relations loaded by ``aload``/``prefetch`` (OneToMany lists)
LOADED = '_rom_related'


def mark_async(result: Any, prefetched: Sequence[str] = ()) -> Any:
    """Mark the entities of ``result`` (one, or a list; other items are skipped) and of
    their ``prefetched`` relations as coming from the async API; returns ``result``."""
    for obj in (result if type(result) is list else (result,)):
        if not is_entity(obj):
            continue
        obj._rom_async = True
        for name in prefetched:
            mark_async(obj.__dict__.get(LOADED, {}).get(name, obj._data.get(name)))
    return result


def _loop_running() -> bool:
    return _get_running_loop() is not None


def _defer_lookup(obj: Any, attr: Any, value: Any) -> None:
    """In a coroutine, a reference given as an id is not looked up (that would block the
    loop): it is held as an unloaded reference, looked up by ``aload``, a prefetch or the
    save (an id naming no entity then reads as None, as in sync code)."""
    try:
        id_text = str(int(value))
    except (ValueError, TypeError):
        raise InvalidColumnValue('cannot assign %s to %s.%s: expected an entity or id'
                                 % (short_repr(value), obj._namespace, attr)) from None
    obj._data[attr] = _Unresolved(id_text)
    obj._rom_async = True


def _in_async_code(obj: Any) -> bool:
    """Whether ``obj`` came from the async API and an event loop runs in this thread."""
    return getattr(obj, '_rom_async', False) and _loop_running()


def _missing_load(obj: Any, attr: Any) -> MissingLoadError:
    return MissingLoadError(
        '%s.%s is not loaded, and loading it here would block the event loop: use '
        '"await entity.aload(%r)" first, or "query.prefetch(%r)"'
        % (type(obj).__name__, attr, attr, attr))


def _held(obj: Any, attr: Any, target: Any, id_text: str) -> Any:
    """In async code: the referenced entity when the session holds it (no I/O needed),
    else MissingLoadError."""
    found = None if target._ttl is not None else session.get(
        '%s:%s' % (target._namespace, id_text))
    if found is None:
        raise _missing_load(obj, attr)
    return found


def _reference_to_none(obj: Any, attr: Any) -> None:
    """An assigned id that names no entity: the reference becomes None (not an error)."""
    obj._data[attr] = None
    obj._modified = True
    session.add(obj)


class ManyToOne(_Related, Column[_G]):
    """A reference to an entity of model ``ftable`` (stored as its id, always indexed).

    ``on_delete`` is one of ``'no action'``, ``'restrict'``, ``'cascade'``, ``'set null'``,
    ``'set default'``.
    """

    _allowed = (_ForeignModelPlaceholder,)

    def __init__(self: ManyToOne[Any], ftable: str, on_delete: Any = NO_ACTION_DEFAULT,
                 required: bool = False, default: Any = NULL, unique: bool = False) -> None:
        if on_delete is NO_ACTION_DEFAULT:
            raise ColumnError('%s(%r): no on_delete action was given; use one of %s'
                              % (type(self).__name__, ftable, ', '.join(ON_DELETE)))
        if on_delete not in ON_DELETE:
            raise ColumnError('%s(%r): on_delete must be one of %s, not %r'
                              % (type(self).__name__, ftable, ', '.join(ON_DELETE), on_delete))
        if required and on_delete == 'set null':
            raise ColumnError("%s(%r): a required column cannot use on_delete='set null'"
                              % (type(self).__name__, ftable))
        if required and on_delete == 'set default' and (default is NULL or default is None):
            raise ColumnError("%s(%r): a required column using on_delete='set default' needs a "
                              "default" % (type(self).__name__, ftable))
        self._ftable = ftable
        self._on_delete = on_delete
        Column.__init__(self, required=required, default=default, unique=unique, index=True,
                        keygen=_many_to_one_keygen)

    def _is_reference(self) -> bool:
        return True

    @overload
    def __get__(self: _C, obj: None, cls: Optional[type] = None) -> _C: ...
    @overload
    def __get__(self, obj: object, cls: Optional[type] = None) -> _G: ...

    def __get__(self, obj: Any, cls: Optional[type] = None) -> Any:
        if obj is None:
            return self
        value = obj._data.get(self._attr)
        if isinstance(value, _Unresolved):
            target = self._target(obj._namespace)
            if _in_async_code(obj):
                value = _held(obj, self._attr, target, value.id)
            else:
                value = target.get(value.id)
            obj._data[self._attr] = value
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        target = self._target(obj._namespace)
        if value is not None and not isinstance(value, target):
            if _loop_running():
                _defer_lookup(obj, self._attr, value)
                obj._modified = True
                session.add(obj)
                return
            try:
                value = target.get(value)
            except (ValueError, TypeError):
                raise InvalidColumnValue('cannot assign %r to %s.%s: expected a %s entity or id'
                                         % (value, obj._namespace, self._attr, target.__name__))
            if value is None:  # a missing id reads as None, silently
                _reference_to_none(obj, self._attr)
                return
        self._store(obj, value)

    def _coerce(self, value: Any) -> Any:
        return value

    def _init_(self, obj: Any, model: str, attr: str, value: Any, loading: bool) -> None:
        self._model = model
        self._attr = attr
        if loading:
            if value is None:
                Column._init_(self, obj, model, attr, None, loading)
            else:
                obj._data[attr] = _Unresolved(value if isinstance(value, str) else str(value))
            return
        target = self._target(model)
        if value is not None and not isinstance(value, target):
            if _loop_running():
                _defer_lookup(obj, attr, value)
                return
            value = target.get(value)
        Column._init_(self, obj, model, attr, value, loading)

    def _validate(self, value: Any, obj: Any = None) -> None:
        if value is None:
            return
        ns = obj._namespace if obj is not None else self._model
        target = self._target(ns)
        if not isinstance(value, target):
            raise InvalidColumnValue('%s.%s: a value of type %s is not allowed; expected %s'
                                     % (ns, self._attr, type(value).__name__, target.__name__))

    def _to_redis(self, value: Any) -> str:
        if isinstance(value, _Unresolved):
            return value.id
        if hasattr(value, '_pkey') and hasattr(value, '_data'):
            if value._new and not value.__dict__.get(SAVING_TARGETS, False):
                value.save()
            return str(getattr(value, value._pkey))
        return str(int(value))

    def _from_redis(self, value: Any) -> Any:
        return self._target(self._model).get(value)

    def _equal(self, old_s: str, new_v: Any, new_s: Any) -> bool:
        return old_s == new_s


class OneToOne(ManyToOne[_G]):
    """Same as ``ManyToOne`` (kept for compatibility; ``unique=True`` is refused)."""


class ForeignModel(Column[_G]):
    """A reference to an object of a non-rom class with an ``id`` and a ``get(id)`` method."""

    _allowed = (_ForeignModelPlaceholder,)

    def __init__(self: ForeignModel[Any], fmodel: Any, required: bool = False,
                 default: Any = NULL) -> None:
        self._fmodel = fmodel
        Column.__init__(self, required=required, default=default, index=True,
                        keygen=_many_to_one_keygen)

    def _is_reference(self) -> bool:
        return True

    def _init_(self, obj: Any, model: str, attr: str, value: Any, loading: bool) -> None:
        if value is not None and not isinstance(value, self._fmodel):
            value = self._from_redis(value)
        Column._init_(self, obj, model, attr, value, loading)

    def __set__(self, obj: Any, value: Any) -> None:
        if value is not None and not isinstance(value, self._fmodel):
            try:
                value = self._from_redis(value)
            except (ValueError, TypeError):
                raise InvalidColumnValue('cannot assign %r to %s.%s: expected a %s or its id'
                                         % (value, obj._namespace, self._attr, self._fmodel))
            if value is None:  # fmodel.get() found nothing: the reference becomes None
                _reference_to_none(obj, self._attr)
                return
        self._store(obj, value)

    def _coerce(self, value: Any) -> Any:
        return value

    def _validate(self, value: Any, obj: Any = None) -> None:
        if value is not None and not isinstance(value, self._fmodel):
            ns = obj._namespace if obj is not None else self._model
            raise InvalidColumnValue('%s.%s: a value of type %s is not allowed; expected %s'
                                     % (ns, self._attr, type(value).__name__,
                                        getattr(self._fmodel, '__name__', self._fmodel)))

    def _from_redis(self, value: Any) -> Any:
        if isinstance(value, self._fmodel):
            return value
        if isinstance(value, (str, bytes)) and value.isdigit():
            value = int(value, 10)
        return self._fmodel.get(value)

    def _to_redis(self, value: Any) -> str:
        if isinstance(value, int):
            return str(value)
        return str(value.id)

    def _equal(self, old_s: str, new_v: Any, new_s: Any) -> bool:
        return old_s == new_s


class OneToMany(_Related, Column[List[_G]]):
    """The reverse side of a ``ManyToOne``/``OneToOne``: reading it returns a list of entities."""

    _virtual = True

    def __init__(self: OneToMany[Any], ftable: str, column: Optional[str] = None) -> None:
        if column in ON_DELETE or column is NO_ACTION_DEFAULT:
            raise ColumnError('OneToMany(%r, %r): on_delete belongs on the ManyToOne/OneToOne '
                              'side, not on the OneToMany' % (ftable, column))
        self._ftable = ftable
        self._column = column
        Column.__init__(self)

    def _init_(self, obj: Any, model: str, attr: str, value: Any, loading: bool) -> None:
        self._model = model
        self._attr = attr
        self._target(model)

    @overload
    def __get__(self: _C, obj: None, cls: Optional[type] = None) -> _C: ...
    @overload
    def __get__(self, obj: object, cls: Optional[type] = None) -> List[_G]: ...

    def __get__(self, obj: Any, cls: Optional[type] = None) -> Any:
        if obj is None:
            return self
        loaded = obj.__dict__.get(LOADED)
        if loaded is not None and self._attr in loaded:  # by aload() or prefetch()
            found = loaded[self._attr]
            return list(found) if isinstance(found, list) else found
        column = self.back_column(obj._namespace)  # (ORMError without one: no I/O)
        if _in_async_code(obj):
            raise _missing_load(obj, self._attr)
        target = self._target(obj._namespace)
        return target.get_by(**{column: getattr(obj, obj._pkey)})

    def back_column(self, namespace: str) -> str:
        """The column of the target model referring back to model ``namespace``."""
        if self._column:
            return self._column
        owner = MODELS.get(namespace)
        names = {namespace, getattr(owner, '__name__', namespace)}  # (named either way)
        for name, col in self._target(namespace)._columns.items():
            if isinstance(col, ManyToOne) and col._ftable in names:
                return name
        raise ORMError('%s.%s: no ManyToOne/OneToOne column of %s refers back to %s'
                       % (namespace, self._attr, self._ftable, namespace))

    def __set__(self, obj: Any, value: Any) -> None:
        raise InvalidOperation('%s.%s: OneToMany attributes cannot be assigned'
                               % (obj._namespace, self._attr))

    def __delete__(self, obj: Any) -> None:
        raise InvalidOperation('%s.%s: OneToMany attributes cannot be deleted'
                               % (obj._namespace, self._attr))

    def _to_redis(self, value: Any) -> None:
        return None

    def _equal(self, old_s: str, new_v: Any, new_s: Any) -> bool:
        return True


class _UnsafeAccessor:
    """Runs Redis commands on an entity's ``<ns>:<id>:<attr>`` key."""

    def __init__(self, key: str, entity: Any) -> None:
        self.key = key
        self.entity = entity

    def __getattr__(self, cmd: str) -> Any:
        method = getattr(connect(self.entity), cmd)
        key = self.key

        def call(*args: Any, **kwargs: Any) -> Any:
            if kwargs.pop('skip_key', False):
                return method(*args, **kwargs)
            return method(key, *args, **kwargs)
        return call


class UnsafeColumn(_Column):
    """Raw access to a per-entity Redis key ``<ns>:<id>:<attr>`` (any type, user-managed)."""

    def __init__(self) -> None:
        self._attr: Optional[str] = None
        self._model: Optional[str] = None

    def _set_name(self, name: str) -> None:
        if name in _RESERVED_UNSAFE_NAMES:
            raise AssertionError('UnsafeColumn cannot be named %r (reserved: %s)'
                                 % (name, ', '.join(_RESERVED_UNSAFE_NAMES)))
        self._attr = name

    def __get__(self, obj: Any, cls: Optional[type] = None) -> Any:
        if obj is None:
            raise AttributeError('UnsafeColumn %r is only available on entities' % (self._attr,))
        if obj._deleted:
            raise ValueError('%s: the entity no longer exists' % (obj._pk,))
        cache: Dict[str, Any] = obj._cached_unsafe
        attr = str(self._attr)
        accessor = cache.get(attr)
        if accessor is None:
            accessor = cache[attr] = _UnsafeAccessor(obj._pk + ':' + attr, obj)
        return accessor

    def __set__(self, obj: Any, value: Any) -> None:
        raise AttributeError('%s.%s is an UnsafeColumn: use its Redis commands, it cannot be '
                             'assigned' % (obj._namespace, self._attr))

    def __delete__(self, obj: Any) -> None:
        connect(obj).delete(obj._pk + ':' + self._attr)
        obj._cached_unsafe.pop(self._attr, None)
