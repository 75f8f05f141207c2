"""Global unique values of sharded models: claims in slots chosen by the value.

Each shard keeps its own ``<shard ns>:<attr>:uidx`` (atomic with its rows, as for any
model); uniqueness *across* shards comes from claims: the hash
``{<base>.u<b>}:<attr>:claims`` (``b = crc32(value) % BUCKETS``) maps a value to
``'<id>:<token>'``, the row that owns it and the save attempt that claimed it. A
``unique_together`` group is claimed like a column: ``attr`` is the group's index name
(``'a:b'``, its columns sorted) and the value its unique-index field (both as unsharded).

A save that stores new unique values (``op_shard_save``, run by ``save()`` and ``asave()``):

1. claims them (one script call per claims hash, pipelined: one round trip);
2. writes the row with the shard's write script, which also checks, atomically in the row's
   slot, that its attempt's token was not *fenced* (``<shard ns>:_rom_claim_token:uidx``);
3. releases the claims of the values the row no longer holds.

A claim held by another id whose row (its shard's unique index) does not hold the value is
*stale* (its writer crashed between the steps, or is still between 1 and 2): the claimer
fences the owner's token in the owner's slot (``shard_fence.lua``, atomic with the check)
and takes the claim over only while it still reads that token. A fenced writer's step 2
fails with ``UniqueKeyViolation``, so two rows never hold one value, whatever step a writer
stops at. A delete removes the row, then releases its claims.
"""
from __future__ import annotations

import threading
import uuid
import zlib
from typing import Any, Callable, Dict, List, Optional, Tuple

from ._connect import to_text
from ._io import Batch, ClientOf, Command, Operation, Script, arun, run
from ._relations import mark_async
from .exceptions import ORMError, UniqueKeyViolation

#: the unique index name the write script checks an attempt's token in (never a column)
TOKEN_INDEX = '_rom_claim_token'
#: number of claims hashes per unique column (fixed: a resharding keeps the claims)
BUCKETS = 256

_state = threading.local()
Claim = Tuple[str, str]
#: an entity's claims during its ``save()``/``asave()``: ``(token, allowed claims)``
CLAIM = '_rom_claim'


def _claims_any(model: Any) -> bool:
    """Whether saves of ``model`` claim values (unique columns, ``unique_together`` groups)."""
    return bool(model._unique or model._cunique)


def claims_key(public: Any, attr: str, text: str) -> str:
    """The claims hash of value ``text`` of unique column ``attr``."""
    bucket = zlib.crc32(text.encode('utf-8', 'surrogatepass')) % BUCKETS
    return '{%s.u%d}:%s:claims' % (public._namespace[1:-1], bucket, attr)


def plan_hook(plan: Any) -> Any:
    """``_rom_plan_hook`` of shard classes: guard a write with its attempt's token."""
    if plan.is_delete or getattr(_state, 'preview', False):
        return plan
    needed = [c for c in plan.claims if c[0] != TOKEN_INDEX]
    entry = getattr(_state, 'entry', None)  # set by op_plan while it plans an entity
    if entry is not None and entry[0] != (plan.namespace, plan.id):
        entry = None
    if entry is None:
        if not needed:
            return plan
        from ._io import IN_ARUN
        if IN_ARUN.get():  # (every save of rom's asyncio API plans through op_plan)
            from .exceptions import ShardedAsyncError
            raise ShardedAsyncError('%s:%s: this write of new unique values of a sharded '
                                    'model claims them with blocking I/O; use the blocking '
                                    'call' % (plan.namespace, plan.id))
        # a write planned outside a save (Model._apply_changes): claim here; the claims of
        # values it drops are left stale (taken over when wanted)
        from ._registry import MODELS
        token = uuid.uuid4().hex
        acquire(MODELS[plan.namespace], plan.id, needed, token)
        entry = ((plan.namespace, plan.id), token, set(needed))
    _, token, allowed = entry
    missing = [c for c in needed if c not in allowed]
    if missing:
        raise ORMError('%s:%s: unique value(s) %r changed during the save (by a hook?) and were '
                       'not claimed' % (plan.namespace, plan.id, missing))
    guard = [(TOKEN_INDEX, token)]
    return plan._replace(claims=list(plan.claims) + guard, releases=list(plan.releases) + guard)


def op_plan(entity: Any, make: Callable[[], Any]) -> Operation[Any]:
    """``_rom_op_plan`` of shard classes: the write plan ``make()`` of ``entity``, guarded
    by its claims -- those its ``save()`` took, else (``session.commit()``, saves of
    several entities) the new values of this plan, claimed now with a fresh token (the
    claims of values it drops are left stale, taken over when wanted)."""
    cls = type(entity)
    key = (cls._namespace, str(entity._data[entity._pkey]))
    held = entity.__dict__.get(CLAIM)
    if held is None and _claims_any(cls):
        _state.preview = True
        try:
            needed = [c for c in make().claims if c[0] != TOKEN_INDEX]
        finally:
            _state.preview = False
        if needed:
            token = uuid.uuid4().hex
            yield from op_acquire(cls, key[1], needed, token)
            held = (token, set(needed))
    if held is None:
        return make()
    _state.entry = (key, held[0], held[1])  # (no I/O until it is reset)
    try:
        return make()
    finally:
        _state.entry = None


def _preview(entity: Any, full: bool, force: bool, incremental: bool) -> Any:
    from ._write_plan import plan_write
    _state.preview = True
    try:
        was_new = entity._new
        return plan_write(type(entity), entity._last, entity._save_data(),
                          full=full or was_new or force, is_new=was_new or force,
                          fresh=was_new and not force, force=force, incremental=incremental)
    finally:
        _state.preview = False


def _by_key(public: Any, claims: List[Claim]) -> Dict[str, List[Claim]]:
    groups: Dict[str, List[Claim]] = {}
    for attr, text in claims:
        groups.setdefault(claims_key(public, attr, text), []).append((attr, text))
    return groups


def _op_run(public: Any, calls: List[Tuple[str, List[str], List[Any]]]) -> Operation[List[Any]]:
    """Script calls (name, keys, args) in one round trip (a non-transactional pipeline)."""
    if len(calls) == 1:
        name, keys, args = calls[0]
        return [(yield Script(public, name, keys, args))]
    steps = tuple(Script(public, name, keys, args) for name, keys, args in calls)
    return list((yield Batch(public, steps, transaction=False)))


def _op_claim(public: Any, ident: str, token: str, claims: List[Claim],
              expected: Dict[Claim, str]) -> Operation[Dict[Claim, str]]:
    """Claim values; returns {claim: current owner} for those held by another live attempt."""
    groups = _by_key(public, claims)
    calls = []
    for key, items in groups.items():
        args: List[Any] = [ident, token]
        for item in items:
            args += [item[1], expected.get(item, '')]
        calls.append(('shard_claim', [key], args))
    held: Dict[Claim, str] = {}
    for items, reply in zip(groups.values(), (yield from _op_run(public, calls))):
        for item, owner in zip(items, reply):
            if owner:
                held[item] = to_text(owner)
    return held


def _op_fence(public: Any, held: Dict[Claim, str]) -> Operation[Dict[Claim, str]]:
    """Fence the stale claims among ``held``; returns {claim: owner} of the fenced ones."""
    from ._shard import shard_of
    calls, items = [], []
    for (attr, text), owner in held.items():
        owner_id, _, owner_token = owner.partition(':')
        shard = shard_of(public, owner_id)
        calls.append(('shard_fence', ['%s:%s:uidx' % (shard._namespace, attr),
                                      '%s:%s:uidx' % (shard._namespace, TOKEN_INDEX)],
                      [text, owner_id, owner_token]))
        items.append(((attr, text), owner))
    stale = {}
    for (item, owner), live in zip(items, (yield from _op_run(public, calls))):
        if not int(live):
            stale[item] = owner
    return stale


def _violation(shard: Any, ident: str, claim: Claim) -> UniqueKeyViolation:
    ns = shard._namespace
    return UniqueKeyViolation('value %r is already taken in unique index %s.%s (saving %s:%s)'
                              % (claim[1], shard._shard_public.__name__, claim[0], ns, ident),
                              ns, ident)


def op_acquire(shard: Any, ident: str, claims: List[Claim], token: str) -> Operation[None]:
    """Step 1: claim ``claims`` for row ``ident`` of ``shard`` (taking stale claims over), or
    raise ``UniqueKeyViolation``."""
    public = shard._shard_public
    held = yield from _op_claim(public, ident, token, claims, {})
    for _ in range(3):
        if not held:
            return
        stale = yield from _op_fence(public, held)
        live = [c for c in held if c not in stale]
        if live:
            raise _violation(shard, ident, live[0])
        held = yield from _op_claim(public, ident, token, list(stale), stale)
    raise _violation(shard, ident, next(iter(held)))


def acquire(shard: Any, ident: str, claims: List[Claim], token: str) -> None:
    """Blocking :func:`op_acquire`."""
    run(op_acquire(shard, ident, claims, token))


def op_release(public: Any, ident: str, values: List[Claim]) -> Operation[None]:
    """Step 3: drop the claims of ``values`` that ``ident`` holds."""
    if not values:
        return
    calls = [('shard_release', [key], [ident] + [text for _, text in items])
             for key, items in _by_key(public, values).items()]
    yield from _op_run(public, calls)


def op_shard_save(entity: Any, full: bool, force: bool, sweep: bool = True) -> Operation[int]:
    """``save``/``asave`` of shard classes: claim new unique values, write, release old ones
    (a task cancelled between the steps leaves claims the next claimer takes over)."""
    from ._write import op_save_entities
    cls = type(entity)
    plan: Any = _preview(entity, full, force, True) if _claims_any(cls) else None
    claims = [c for c in plan.claims if c[0] != TOKEN_INDEX] if plan is not None else []
    ident = str(entity._data[entity._pkey])
    if not claims:  # (values dropped to None still release their claims after the write)
        changed = yield from op_save_entities([entity], full, force, True, sweep)
        if plan is not None:
            yield from op_release(cls._shard_public, ident, [c for c in plan.releases
                                                             if c[0] != TOKEN_INDEX])
        return changed
    allowed = set(_preview(entity, full, force, False).claims) | set(claims)
    token = uuid.uuid4().hex
    yield from op_acquire(cls, ident, claims, token)
    entity.__dict__[CLAIM] = (token, allowed)
    try:
        changed = yield from op_save_entities([entity], full, force, True, sweep)
    except UniqueKeyViolation:
        # fenced (a claim taken over) or taken in the shard: the token is never used again
        yield Command(cls, ('HDEL', '%s:%s:uidx' % (cls._namespace, TOKEN_INDEX), token))
        raise
    finally:
        entity.__dict__.pop(CLAIM, None)
    kept = set(claims)
    yield from op_release(cls._shard_public, ident, [c for c in plan.releases
                                                     if c[0] != TOKEN_INDEX and c not in kept])
    return changed


def op_shard_delete(entity: Any, kwargs: Dict[str, Any], sweep: bool = True) -> Operation[Any]:
    """``delete``/``adelete`` of shard classes: delete the row, then release its claims."""
    from ._ops_delete import op_delete
    from ._write_plan import plan_write
    cls = type(entity)
    held: List[Claim] = []
    if _claims_any(cls) and entity._last.get(entity._pkey):
        _state.preview = True
        try:
            held = list(plan_write(cls, entity._last, {}, delete=True).releases)
        finally:
            _state.preview = False
    result = yield from op_delete(entity, kwargs, sweep)
    yield from op_release(cls._shard_public, str(entity._last.get(entity._pkey) or
                                                 entity._data[entity._pkey]), held)
    return result


def shard_save(self: Any, full: bool = False, force: bool = False) -> int:
    """``save`` of shard classes (:func:`op_shard_save`)."""
    return run(op_shard_save(self, full, force))


async def shard_asave(self: Any, full: bool = False, force: bool = False) -> int:
    """``asave`` of shard classes (:func:`op_shard_save`)."""
    changed = await arun(op_shard_save(self, full, force, False))
    mark_async(self)
    return changed


def shard_delete(self: Any, **kwargs: Any) -> Any:
    """``delete`` of shard classes (:func:`op_shard_delete`)."""
    return run(op_shard_delete(self, kwargs))


async def shard_adelete(self: Any, **kwargs: Any) -> Any:
    """``adelete`` of shard classes (:func:`op_shard_delete`)."""
    return await arun(op_shard_delete(self, kwargs, False))


def _lookup_text(col: Any, item: Any) -> Optional[str]:
    from ._coltypes import IndexOnly
    if isinstance(col, IndexOnly):
        return item.decode('latin-1') if isinstance(item, bytes) else str(item)
    try:
        text = col._to_redis(item)
    except (TypeError, ValueError, AttributeError, OverflowError):
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = repr(text)
    if isinstance(text, bytes):
        return text.decode('latin-1')
    return text if isinstance(text, str) else None


def op_get_by_group(public: Any, group: Tuple[str, ...], values: Dict[str, Any]
                    ) -> Operation[Any]:
    """``get_by`` on every column of a ``unique_together`` group of a sharded model: the
    group's claim, then the owner's row (two round trips); the entity or None."""
    from ._ops_read import group_lookup
    from ._shard import shard_of
    from ._shard_batch import op_scatter, record_script
    field = group_lookup(public, group, values)
    if field is None:
        return None
    name = ':'.join(group)
    owner = yield Command(public, ('HGET', claims_key(public, name, field), field))
    if not owner:
        return None
    conn = yield ClientOf(public)
    shard = shard_of(public, to_text(owner).partition(':')[0])
    fields = shard._row_fields(conn)
    args = ['%s:%s:uidx' % (shard._namespace, name), shard._namespace] + fields + [field]
    reply, = yield from op_scatter(public, [(shard, record_script('get_unique', [args[0]],
                                                                  args), False)])
    found = shard._entities_from_reply(reply, fields[0] != 0)
    return found[0] if found else None


def op_get_by_unique(public: Any, attr: str, value: Any) -> Operation[Any]:
    """``get_by`` on a unique column of a sharded model: the claims, then the owner rows (two
    round trips for one value; the row must still hold the value)."""
    from ._ops_read import op_get_by
    from ._shard import shard_of
    col = public._columns[attr]
    values = value if isinstance(value, list) else [value]
    pairs = [(t, v) for t, v in ((_lookup_text(col, v), v) for v in values) if t is not None]
    if not pairs:
        return [] if isinstance(value, list) else None
    conn = yield ClientOf(public)
    if len(pairs) == 1:
        owners = [(yield Command(public, ('HGET', claims_key(public, attr, pairs[0][0]),
                                          pairs[0][0])))]
    else:
        owners = yield Batch(public, tuple(Command(public, ('HGET', claims_key(public, attr, t),
                                                            t)) for t, _ in pairs), False)
    by_shard: Dict[Any, List[Any]] = {}
    for (text, item), owner in zip(pairs, owners):
        if owner:
            shard = shard_of(public, to_text(owner).partition(':')[0])
            by_shard.setdefault(shard, []).append(item)
    found: Dict[int, Any] = {}
    if len(by_shard) == 1:
        (shard, items), = by_shard.items()
        for entity in (yield from op_get_by(shard, {attr: items})):
            found[id(entity)] = entity
    elif by_shard:  # the owners' rows: one script call per shard, one round trip per master
        from ._shard_batch import Job, op_scatter, record_script
        jobs: List[Job] = []
        shards = []
        for shard, items in by_shard.items():
            fields = shard._row_fields(conn)
            args = ['%s:%s:uidx' % (shard._namespace, attr), shard._namespace] + fields + [
                _lookup_text(col, item) for item in items]
            jobs.append((shard, record_script('get_unique', [args[0]], args), False))
            shards.append((shard, fields[0] != 0))
        for (shard, by_values), reply in zip(shards, (yield from op_scatter(public, jobs))):
            for entity in shard._entities_from_reply(reply, by_values):
                found[id(entity)] = entity
    result = list(found.values())
    if isinstance(value, list):
        return result
    return result[0] if result else None
