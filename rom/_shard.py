"""Sharded models: one model's rows and indexes spread over N hash slots (``_shards = N``).

A model declared with ``_shards = N`` is the *public* class; rom builds N hidden *shard*
classes (subclasses of it, named ``<Model>#<k>``) with the same columns, each a cluster-mode
model with its own hash tag. Key layout (``<base>`` is ``_namespace`` or the class name):

* ``{<base>}:<pk>:`` -- the one global id counter (ids in hi/lo blocks, ``rom._ids``);
* ``{<base>}:shards`` -- the shard count the data was written with (checked on first use);
* ``{<base>.<k>}:...`` -- shard ``k``'s rows, indexes, unique hashes and bookkeeping, exactly
  the keys of a cluster model with that namespace;
* ``{<base>.u<b>}:<attr>:claims`` -- global unique claims (``rom._shard_unique``).

A row's shard is ``id % N``: stable, computable from the id alone, and even over sequential
ids. A new entity takes its id when it is built (``User(...)`` returns an instance of the
shard class its id maps to), so a save or delete is one atomic script call on one slot.
"""
from __future__ import annotations

import threading
from asyncio import _get_running_loop
from typing import Any, Dict, Iterable, List, Sequence, Set, Tuple

from ._connect import connect
from ._ids import held_id, take_id
from ._limits import MAX_SHARDS, size_problem
from .exceptions import ORMError

__all__ = ['declared_shards', 'sharded_namespace', 'setup_shards', 'shard_of', 'is_sharded',
           'check_metadata']

_checked: Set[Tuple[int, int]] = set()
_checked_lock = threading.Lock()


def declared_shards(name: str, body: Dict[str, Any], bases: Sequence[type]) -> int:
    """The shard count a class body declares (0: not a sharded public model)."""
    if '_shard_index' in body:
        return 0
    count = body.get('_shards')
    inherited = next((getattr(b, '_shards', None) for b in bases
                      if getattr(b, '_shard_models', None)), None)
    if inherited and count is None:
        raise ORMError('%s: subclassing a sharded model is not supported; declare the columns on '
                       'an abstract base without _shards' % (name,))
    if count is None:
        count = _default_shards(body, bases)
    if count is None or count is False or count == 0:
        return 0
    problem = size_problem(count, MAX_SHARDS)
    if problem:
        raise ORMError('%s._shards %s' % (name, problem))
    return count


def _default_shards(body: Dict[str, Any], bases: Sequence[type]) -> Any:
    """``rom.Model._shards = N`` (the sharded test run): the shard count of a model that
    declares none, when sharding supports it -- a direct subclass of the root model without
    ``unique_together``, ``_ttl``, its own ``_cluster`` or a namespace with hash tags or
    colons; such models stay unsharded (cluster models when ``rom.Model._cluster`` is set)."""
    roots = [b for b in bases if isinstance(getattr(b, '_columns', None), dict)]
    if not roots or not all(getattr(b, '_is_root_model', False) for b in roots):
        return None
    namespace = body.get('_namespace')
    if body.get('unique_together') or body.get('_ttl') is not None or '_cluster' in body or (
            isinstance(namespace, str) and any(c in namespace for c in '{}:')):
        return None
    count = getattr(roots[0], '_shards', None)
    return count if type(count) is int and count > 0 else None


def sharded_namespace(name: str, declared: Any) -> str:
    """The public namespace ``'{<base>}'`` of a sharded model (validates ``_namespace``)."""
    base = declared or name
    if any(c in base for c in '{}:'):
        raise ORMError('%s._namespace: a sharded model takes a plain namespace (no "{", "}" or '
                       '":"), rom adds the hash tags; got %r' % (name, base))
    return '{%s}' % (base,)


def _base(public: Any) -> str:
    return public._namespace[1:-1]


def shard_namespace(public: Any, k: int) -> str:
    """Namespace of shard ``k``: ``'{<base>.<k>}'``."""
    return '{%s.%d}' % (_base(public), k)


def is_sharded(model: Any) -> bool:
    """True for the public class of a sharded model."""
    return bool(model.__dict__.get('_shard_models'))


def shard_of(public: Any, ident: Any) -> Any:
    """The shard class holding the row with id ``ident``."""
    models = public._shard_models
    return models[int(ident) % len(models)]


def meta_key(public: Any) -> str:
    return '%s:shards' % (public._namespace,)


def check_metadata(public: Any, conn: Any = None) -> None:
    """On first use (per process and client): record the shard count, or refuse a mismatch."""
    conn = conn if conn is not None else connect(public)
    slot = (id(public), id(conn))
    if slot in _checked:
        return
    count = len(public._shard_models)
    key = meta_key(public)
    if not conn.set(key, count, nx=True):
        stored = conn.get(key)
        text = stored.decode() if isinstance(stored, bytes) else str(stored or count)
        if text.startswith('resharding'):
            raise ORMError('%s is being resharded (%s = %r): wait until python -m rom reshard '
                           'has finished, then declare the new _shards' % (
                               public.__name__, key, text))
        stored_count = int(text)
        if stored_count != count:
            raise ORMError(
                '%s is declared with _shards = %d but its data in Redis was written with %d '
                'shards (key %s): fix the declaration or reshard (python -m rom reshard)'
                % (public.__name__, count, stored_count, key))
    with _checked_lock:
        _checked.add(slot)


def op_check_metadata(public: Any) -> Any:
    """:func:`check_metadata` as an operation (``rom._io``), for either driver."""
    from ._io import ClientOf, Command
    conn = yield ClientOf(public)
    if (id(public), id(conn)) in _checked:
        return
    count = len(public._shard_models)
    key = meta_key(public)
    if not (yield Command(public, ('SET', key, count, 'NX'))):
        stored = yield Command(public, ('GET', key))
        text = stored.decode() if isinstance(stored, bytes) else str(stored or count)
        if text.startswith('resharding') or int(text) != count:
            check_metadata(public, _Stored(text))  # (raises the error the blocking check does)
    with _checked_lock:
        _checked.add((id(public), id(conn)))


class _Stored:
    """A stand-in client answering :func:`check_metadata` with a value already read."""

    def __init__(self, text: str) -> None:
        self.text = text

    def set(self, *args: Any, **kwargs: Any) -> bool:
        return False

    def get(self, key: str) -> str:
        return self.text


def op_routed_fetch(public: Any, ids: Iterable[Any], track: bool) -> Any:
    """``op_fetch`` of a sharded model: each shard's rows read by its own ``op_fetch``
    (one round trip per shard holding ids; the blocking ``get([ids])`` of the public class
    sends one per master instead)."""
    from ._ops_read import op_fetch
    yield from op_check_metadata(public)
    ids = list(ids)
    result: List[Any] = [None] * len(ids)
    for shard, positions in _grouped(public, ids).items():
        found = yield from op_fetch(shard, [ids[p] for p in positions], track)
        for position, obj in zip(positions, found):
            result[position] = obj
    return result


def op_sharded_get_by(public: Any, attr: str, value: Any, limit: Any) -> Any:
    """``get_by`` of a sharded model, validated: by the global claims of a unique value
    (``limit`` None), else a scattered query. Blocking work: the asyncio driver raises
    :exc:`~rom.exceptions.ShardedAsyncError` for it."""
    from ._io import Blocking
    from ._shard_unique import get_by_unique
    yield from op_check_metadata(public)
    what = '%s.aget_by() (and aload/prefetch/on_delete lookups)' % (public.__name__,)
    if limit is None:
        return (yield Blocking(lambda: get_by_unique(public, attr, value), what))
    query = public.query.filter(**{attr: value})
    if limit:
        query = query.limit(*limit)
    return (yield Blocking(query.all, what))


def forget_checks() -> None:
    """Forget which models had their metadata checked (after FLUSHALL in tests)."""
    with _checked_lock:
        _checked.clear()


# -- entity construction -----------------------------------------------------------------------

def _new(cls: Any, *args: Any, **kwargs: Any) -> Any:
    """``__new__`` of sharded models: ``User(...)`` builds an instance of its shard class."""
    if '_shard_index' in cls.__dict__:
        if kwargs and not kwargs.get('_loading'):
            raise ORMError('create %s entities through %s(...), not through the shard class %s'
                           % (cls._shard_public.__name__, cls._shard_public.__name__,
                              cls.__name__))
        return object.__new__(cls)
    if kwargs.get('_loading'):
        return object.__new__(shard_of(cls, kwargs[cls._pkey]))
    if kwargs.get(cls._pkey) is not None:  # refused by the primary key in __init__:
        _preset.ident = None               # no id taken (the counter stays untouched)
        return object.__new__(cls._shard_models[0])
    conn = connect(cls)
    check_metadata(cls, conn)
    ident = None
    if _get_running_loop() is not None:  # in a coroutine: an id of a held block if any
        from ._aconnect import aconnect
        ident = held_id(cls, aconnect(cls))
    if ident is None:  # (blocking when no block of ids is held: the row's shard needs it)
        ident = take_id(cls, conn)  # the public namespace's counter: one sequence for all
    _preset.ident = ident  # taken by the shard class's PrimaryKey in __init__
    return object.__new__(shard_of(cls, ident))


_preset = threading.local()


def _shard_take_ids(cls: Any, conn: Any, count: int) -> List[int]:
    """``take_ids`` of a shard class: the id ``_new`` took for the entity being built."""
    ident = getattr(_preset, 'ident', None)
    _preset.ident = None
    if count != 1 or ident is None or shard_of(cls._shard_public, ident) is not cls:
        raise ORMError('create %s entities through %s(...)'
                       % (cls._shard_public.__name__, cls._shard_public.__name__))
    return [ident]


def _shard_fetch(cls: Any, ids: Any, track: bool = True) -> List[Any]:
    from ._io import run
    from ._ops_read import op_fetch
    return run(op_fetch(cls, ids, track))


async def _shard_asave(self: Any, full: bool = False, force: bool = False) -> int:
    from .exceptions import ShardedAsyncError
    from .model import Model
    if type(self)._unique:
        raise ShardedAsyncError('%s.asave(): a sharded model with unique columns claims its '
                                'values with the blocking API only; use save()'
                                % (type(self)._shard_public.__name__,))
    return await Model.asave(self, full, force)


async def _shard_adelete(self: Any, **kwargs: Any) -> Any:
    from .exceptions import ShardedAsyncError
    from .model import Model
    if type(self)._unique:
        raise ShardedAsyncError('%s.adelete(): a sharded model with unique columns releases '
                                'its claims with the blocking API only; use delete()'
                                % (type(self)._shard_public.__name__,))
    return await Model.adelete(self, **kwargs)


def _shard_copy(self: Any) -> Any:
    data = self.to_dict()
    data.pop(self._pkey, None)
    return self._shard_public(**data)


# -- reads through the public class ------------------------------------------------------------

def _grouped(public: Any, ids: Sequence[Any]) -> Dict[Any, List[int]]:
    groups: Dict[Any, List[int]] = {}
    for position, ident in enumerate(ids):
        groups.setdefault(shard_of(public, ident), []).append(position)
    return groups


def _public_fetch(cls: Any, ids: Any, track: bool = True) -> List[Any]:
    """``_fetch`` of a sharded model: the session's entities, the other rows read with one
    script call per shard, one round trip per master (masters in parallel)."""
    from ._session import session
    from ._shard_batch import Job, record_script, run_jobs
    ids = list(ids)
    result: List[Any] = [None] * len(ids)
    if not ids:
        return result
    conn = connect(cls)
    check_metadata(cls, conn)
    groups = _grouped(cls, ids)
    if len(groups) == 1:
        (shard, positions), = groups.items()
        return shard._fetch([ids[p] for p in positions], track)
    jobs: List[Job] = []
    reads = []
    for shard, positions in groups.items():
        missing = []
        for position in positions:
            pk = '%s:%s' % (shard._namespace, int(ids[position]))
            obj = session.get(pk)
            if obj is not None and not track and session.known.get(pk) is not obj:
                session.wknown.pop(pk, None)  # a query forgets what was held only weakly
            result[position] = obj
            if obj is None:
                missing.append((position, pk))
        if missing:
            fields = shard._row_fields(conn)
            pks = [pk for _, pk in missing]
            jobs.append((shard, record_script('get_rows', pks, fields), False))
            reads.append((shard, missing, fields[0] != 0))
    for (shard, missing, by_values), rows in zip(reads, run_jobs(conn, jobs)):
        for (position, _), row in zip(missing, rows):
            if row:
                result[position] = shard._from_script_row(row, by_values, track)
    return result


def _public_get(cls: Any, ids: Any) -> Any:
    if not isinstance(ids, (list, tuple, set, frozenset)):
        check_metadata(cls)
        return shard_of(cls, int(ids)).get(ids)
    return [obj for obj in _public_fetch(cls, list(ids)) if obj is not None]


def _public_not_prefixed(suffix: bool) -> Any:
    def method(cls: Any, attr: str, values: Any, blocksize: int = 100) -> Any:
        for shard in cls._shard_models:
            yield from (shard.does_not_endwith if suffix else shard.does_not_startwith)(
                attr, values, blocksize)
    return classmethod(method)


def _public_apply_changes(cls: Any, old: Dict[str, Any], new: Dict[str, Any],
                          *args: Any, **kwargs: Any) -> Any:
    """``_apply_changes`` of a sharded model: written by the shard of the row's id."""
    from .model import Model
    ident = (new or {}).get(cls._pkey) or (old or {}).get(cls._pkey)
    if ident is None:
        raise ORMError('%s._apply_changes: the row needs its id (%s)' % (cls.__name__, cls._pkey))
    check_metadata(cls)
    return Model.__dict__['_apply_changes'].__func__(shard_of(cls, ident), old, new,
                                                     *args, **kwargs)


def _public_query(cls: Any) -> Any:
    from ._shard_query import ShardedQuery
    from .query import Query
    return ShardedQuery(Query(cls))


# -- declaration ---------------------------------------------------------------------------------

def _mark_referenced(public: Any) -> None:
    """A sharded model other models refer to: bulk deletes must apply ``on_delete``."""
    for model in (public,) + tuple(public.__dict__.get('_shard_models') or ()):
        model._no_fk = False


def check_relations(model: Any) -> None:
    """After a model is declared: a sharded model it refers to takes part in relations."""
    from ._registry import MODELS
    for col in model._columns.values():
        target = MODELS.get(getattr(col, '_ftable', None) or '')
        if target is not None and is_sharded(target) and hasattr(col, '_on_delete'):
            _mark_referenced(target)


def _check_supported(public: Any) -> None:
    from ._registry import MODELS_REFERENCED
    problems = []
    if MODELS_REFERENCED.get(public.__name__) or MODELS_REFERENCED.get(public._namespace):
        _mark_referenced(public)
    if public._cunique:
        problems.append('unique_together')
    if public._ttl is not None:
        problems.append('_ttl')
    if problems:
        raise ORMError('%s: sharded models do not support %s yet'
                       % (public.__name__, ', '.join(problems)))


def shard_class(public: Any, k: int) -> Any:
    """The class of shard ``k`` of ``public`` (made on first use; a reshard also uses the
    shards of a count other than the declared one)."""
    from ._registry import MODELS
    from ._shard_unique import TOKEN_INDEX, plan_hook, shard_delete, shard_save
    from .model import Model
    declared = public.__dict__.get('_shard_models') or ()
    if k < len(declared):
        return declared[k]
    existing = MODELS.get(shard_namespace(public, k))
    if existing is not None and existing.__dict__.get('_shard_public') is public:
        return existing
    body: Dict[str, Any] = {name: Model.__dict__[name] for name in (
        'get', 'get_by', '_apply_changes', 'does_not_startwith', 'does_not_endwith', 'query')}
    body.update({
        '__module__': public.__module__,
        '__qualname__': '%s#%d' % (public.__qualname__, k),
        '__doc__': 'Shard %d of %s (rom internal).' % (k, public.__name__),
        '_namespace': shard_namespace(public, k),
        '_cluster': True,
        '_shard_index': k,
        '_shard_public': public,
        '_defer_ids': False,
        '_rom_take_ids': classmethod(_shard_take_ids),
        'copy': _shard_copy,
        '_fetch': classmethod(_shard_fetch),
        'asave': _shard_asave,
        'adelete': _shard_adelete,
        'save': shard_save,
        'delete': shard_delete,
        '_rom_plan_hook': staticmethod(plan_hook),
        '_rom_fence_index': TOKEN_INDEX,
        'geo_index': list(public._geo.values()) or None,
    })
    shard = type(public)('%s#%d' % (public.__name__, k), (public,), body)
    from ._registry import MODELS_REFERENCED
    for refs in MODELS_REFERENCED.values():  # the public class's references stand for all
        refs[:] = [ref for ref in refs if ref[0] != shard._namespace]
    shard._no_fk = public._no_fk
    return shard


def setup_shards(public: Any, count: int) -> None:
    """Build the shard classes of ``public`` and route its reads through them."""
    from ._helpers import ClassProperty
    _check_supported(public)
    public.__new__ = staticmethod(_new)
    shards = [shard_class(public, k) for k in range(count)]
    public._shard_models = tuple(shards)
    public.get = classmethod(_public_get)
    public._fetch = classmethod(_public_fetch)
    public._apply_changes = classmethod(_public_apply_changes)
    public.does_not_startwith = _public_not_prefixed(False)
    public.does_not_endwith = _public_not_prefixed(True)
    public.query = ClassProperty(_public_query)
