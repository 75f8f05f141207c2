"""Expiring entities: visibility checks, removal of expired entities, the job and the reaper.

Only models that declare ``_ttl`` reach this module (see ``rom._ttl`` for declarations and
requests). An entity is invisible to every read from its expiry time on, by the Redis
server's clock: reads check the ids they return (``expire_live.lua``) and queries drop
expired ids from their working set (``expire_filter.lua``). Removal goes through the
ordinary atomic writer (``write.lua`` deletes with the ``'due'`` op, which writes nothing
unless the entity is still expired), with ``on_delete`` policies applied, by

* :func:`op_after_write`: a small, throttled sweep after the saves of a model (run by the
  blocking and the asyncio drivers alike, as part of the save's operation);
* :class:`ExpiryJob`: everything due, in blocks, with progress (``python -m rom expire``);
* :class:`Reaper`: a background thread running the job periodically.
"""
from __future__ import annotations

import threading
import time
import warnings
import weakref
from decimal import Decimal
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from ._connect import to_text
from ._io import Batch, Client, Operation, Script, arun, run
from ._on_delete import _references_to
from ._registry import MODELS
from ._session import session
from ._ttl import EXPIRY_FIELD, StillAlive, expiry_key
from ._write_plan import WritePlan, plan_write
from ._write_script import op_run_plans
from .exceptions import RestrictError

#: how many due entities a write of a model removes at most (Redis' active expiry style)
WRITE_SWEEP = 10
#: the longest a model's writes go without looking for due entities (seconds)
WRITE_SWEEP_INTERVAL = 1.0
_DUE: Tuple[str, str] = ('due', '')


# --------------------------------------------------------------------------- visibility
def _states_step(model: Any, ids: Sequence[Any], via: Any = None) -> Script:
    """The ``expire_live.lua`` step reading the server time (ms) and, per id: None when
    visible without expiry, its expiry time (ms), or -1 when the row does not exist
    (parse the reply with :func:`_parse_states`)."""
    return Script(model if via is None else via, 'expire_live', (expiry_key(model._namespace),),
                  [model._namespace + ':'] + [str(i) for i in ids])


def _op_states(model: Any, ids: Sequence[Any]) -> Operation[Tuple[int, List[Optional[int]]]]:
    return _parse_states((yield _states_step(model, ids)))


def _parse_states(reply: Any) -> Tuple[int, List[Optional[int]]]:
    now = _ms(to_text(reply[0]))
    states: List[Optional[int]] = []
    for raw in reply[1:]:
        text = to_text(raw)
        states.append(-1 if text == '' else None if text == '-' else _ms(text))
    return now, states


def _ms(text: str) -> int:
    """A score or TIME-derived text (an integral number of ms) as an exact int."""
    return int(Decimal(text))


def _gone(state: Optional[int], now: int) -> bool:
    return state is not None and (state < 0 or state <= now)


def op_unique_visible(model: Any, args: List[Any], lookups: List[Any]) -> Operation[List[Any]]:
    """``get_unique.lua``'s reply for ``args`` without the expired (or gone) entities; the
    expiry states of the same lookups are read in the same transaction."""
    reply, states = yield Batch(model, (
        Script(model, 'get_unique', (), args, args[0]),
        Script(model, 'expire_live', (expiry_key(model._namespace), args[0]),
               [model._namespace + ':'] + list(lookups))))
    now, gone = _parse_states(states)
    kept: List[Any] = []
    for position, state in enumerate(gone):
        if _gone(state, now):
            held = session.get('%s:%s' % (model._namespace, to_text(reply[2 * position])))
            if held is not None:
                session.forget(held)
        else:
            kept += reply[2 * position:2 * position + 2]
    return kept


def op_fetch_visible(model: Any, pks: List[str], result: List[Any], missing: List[int],
                     track: bool, fields: List[Any]) -> Operation[List[Any]]:
    """``Model._fetch`` for models with ``_ttl``: the rows the session lacks and the expiry
    state of every stored entity in one transaction; expired (or gone) ones become None.
    ``fields``: ``Model._row_fields`` of the client."""
    checked = [position for position, obj in enumerate(result)
               if obj is None or not (obj._new or obj._id_pending)]
    steps: List[Script] = []
    if missing:
        steps.append(Script(model, 'get_rows', [pks[position] for position in missing], fields))
    steps.append(_states_step(model, [pks[position].rpartition(':')[2] for position in checked]))
    replies = yield Batch(model, tuple(steps))
    rows = dict(zip(missing, replies[0])) if missing else {}
    now, states = _parse_states(replies[-1])
    result = list(result)
    for position, state in zip(checked, states):
        if _gone(state, now):
            if result[position] is not None:
                session.forget(result[position])
            result[position] = None
        elif rows.get(position):
            result[position] = model._from_script_row(rows[position], fields[0] != 0, track)
    return result


def op_visible(model: Any, entities: List[Any]) -> Operation[List[Any]]:
    """``entities`` with every stored one that is expired (or gone) replaced by None; those
    are forgotten by the session. Unsaved entities (and None) are kept as they are."""
    checked = [position for position, e in enumerate(entities)
               if e is not None and not e._new and not e._id_pending]
    if not checked:
        return entities
    now, states = yield from _op_states(model, [entities[p]._data[model._pkey]
                                                for p in checked])
    result = list(entities)
    for position, state in zip(checked, states):
        if _gone(state, now):
            session.forget(result[position])
            result[position] = None
    return result


def visible(model: Any, entities: List[Any]) -> List[Any]:
    """Blocking :func:`op_visible`."""
    return run(op_visible(model, entities))


def refuse_expired(entities: Sequence[Any]) -> None:
    """ValueError when one of the entities (of models with ``_ttl``) has expired."""
    if any(type(e)._ttl is not None and visible(type(e), [e])[0] is None for e in entities):
        raise ValueError('transfer(): an entity has expired')


def op_visible_ids(model: Any, ids: Sequence[Any], via: Any = None) -> Operation[List[Any]]:
    """The ids (in order) whose rows exist and have not expired."""
    if not ids:
        return list(ids)
    now, states = _parse_states((yield _states_step(model, [to_text(i) for i in ids], via)))
    return [i for i, state in zip(ids, states) if not _gone(state, now)]


def visible_ids(model: Any, ids: Sequence[Any]) -> List[Any]:
    """Blocking :func:`op_visible_ids`."""
    return run(op_visible_ids(model, ids))


def op_ttl_of(model: Any, ident: Any) -> Operation[Optional[float]]:
    """Operation: seconds until entity ``ident`` expires (0.0 once it has), None without
    expiry/row."""
    now, (state,) = yield from _op_states(model, [ident])
    if state is None or state < 0:
        return None
    return max(state - now, 0) / 1000.0


def ttl_of(model: Any, ident: Any) -> Optional[float]:
    """Blocking :func:`op_ttl_of`."""
    return run(op_ttl_of(model, ident))


# --------------------------------------------------------------------------- removal
class SweepResult:
    """What one :func:`sweep` call did."""

    __slots__ = ('removed', 'blocked', 'seen', 'due', 'wait')

    def __init__(self, removed: int, blocked: int, seen: int, due: int,
                 wait: Optional[float]) -> None:
        self.removed = removed  #: entities removed (cascaded ones not counted)
        self.blocked = blocked  #: expired entities an on_delete='restrict' policy keeps
        self.seen = seen        #: due ids looked at
        self.due = due          #: due ids when the call started
        self.wait = wait        #: seconds until the next id falls due (None: none left)

    def __repr__(self) -> str:
        return ('SweepResult(removed=%d, blocked=%d, seen=%d, due=%d, wait=%r)'
                % (self.removed, self.blocked, self.seen, self.due, self.wait))


def _text(value: Any) -> str:
    return value.decode('utf-8', 'replace') if isinstance(value, bytes) else value


def _decoded(row: Any) -> Dict[str, str]:
    """A flat HGETALL reply as text (a damaged row still decodes: its removal then releases
    the unique values the row really holds, as for a stale handle)."""
    return {_text(k): _text(v) for k, v in zip(row[::2], row[1::2])}


def _has_policies(model: Any) -> bool:
    return any(action != 'no action' for _ns, _attr, action in _references_to(model))


def _op_remove_plain(model: Any, rows: List[Tuple[str, Dict[str, str]]],
                     via: Any = None) -> Operation[int]:
    """Remove due entities of a model no on_delete policy refers to, in one script call
    (again without the renewed one, if any)."""
    plans: List[WritePlan] = []
    for ident, row in rows:
        old = dict(row)
        old[model._pkey] = ident
        plans.append(plan_write(model, old, {}, delete=True)._replace(expiry=_DUE))
    removed = 0
    while plans:
        done, failure = yield from op_run_plans(model if via is None else via, plans)
        removed += done
        if failure is None:
            break
        if not isinstance(failure, StillAlive):
            raise failure
        plans = plans[done + 1:]
    return removed


def _remove_plain(model: Any, conn: Any, rows: List[Tuple[str, Dict[str, str]]]) -> int:
    """Blocking :func:`_op_remove_plain` on the client ``conn``."""
    return run(_op_remove_plain(model, rows, Client(conn)))


def _op_remove_with_policies(model: Any, rows: List[Tuple[str, Dict[str, str]]]
                             ) -> Operation[Tuple[int, int]]:
    """Remove due entities one by one, applying on_delete policies like ``delete()`` (whose
    saves of referring entities do not sweep again)."""
    from ._ops_delete import op_delete  # (it imports rom._write, which imports this module)
    removed = blocked = 0
    for ident, row in rows:
        data = dict(row)
        data[model._pkey] = ident
        try:
            entity = model._from_stored(data, False, track=False)
        except Exception:  # an unloadable row: the policies only need the id
            entity = model._from_stored({model._pkey: ident}, False, track=False)
        try:
            if (yield from op_delete(entity, {'_rom_expired': True}, False)):
                removed += 1
        except RestrictError:
            blocked += 1
    return removed, blocked


def op_sweep(model: Any, limit: int = 100, offset: int = 0) -> Operation[SweepResult]:
    """Operation of :func:`sweep` (the blocking and the asyncio drivers run the same)."""
    ns = model._namespace
    reply = yield Script(model, 'expire_due', (expiry_key(ns),),
                         (ns + ':', max(offset, 0), limit))
    now, due, later = _ms(to_text(reply[0])), int(reply[1]), to_text(reply[2])
    rows = [(to_text(reply[i]), _decoded(reply[i + 1])) for i in range(3, len(reply), 2)]
    for ident, _row in rows:
        held = session.get('%s:%s' % (ns, ident))
        if held is not None:
            session.forget(held)
    if _has_policies(model):
        removed, blocked = yield from _op_remove_with_policies(model, rows)
    else:
        removed, blocked = (yield from _op_remove_plain(model, rows)), 0
    wait = None
    if due > len(rows):
        wait = 0.0
    elif later:
        wait = max(_ms(later) - now, 0) / 1000.0
    return SweepResult(removed, blocked, len(rows), due, wait)


def sweep(model: Any, limit: int = 100, offset: int = 0) -> SweepResult:
    """Remove up to ``limit`` expired entities of ``model`` (skipping the first ``offset``
    due ids), each atomically with its index entries, unique claims and bookkeeping."""
    return run(op_sweep(model, limit, offset))


async def asweep(model: Any, limit: int = 100, offset: int = 0) -> SweepResult:
    """Awaitable :func:`sweep` (same arguments and result; never blocks the event loop)."""
    return await arun(op_sweep(model, limit, offset))


# --------------------------------------------------------------------------- after writes
#: per model class: the monotonic time its writes next look for due entities
_next_check: 'weakref.WeakKeyDictionary[Any, float]' = weakref.WeakKeyDictionary()


def _written_models(plans: Iterable[WritePlan], clock: float) -> List[Any]:
    """The models of ``plans`` (each once); an expiry a plan set brings its model's next
    check forward to the moment it falls due."""
    wall = time.time()
    models: List[Any] = []
    for plan in plans:
        model = MODELS.get(plan.namespace)
        if model is None:
            continue
        if model not in models:
            models.append(model)
        op, ms = plan.expiry or ('', '')
        op = op.lstrip('!')
        soon = None
        if op in ('in', 'renew'):
            soon = clock + int(ms) / 1000.0
        elif op == 'at':
            soon = clock + max(int(ms) / 1000.0 - wall, 0.0)
        if soon is not None:
            _next_check[model] = min(_next_check.get(model, 0.0), soon)
    return models


def op_after_write(plans: Iterable[WritePlan]) -> Operation[None]:
    """After saves of models with ``_ttl`` (by either driver): remove a few due entities of
    those models, at most every ``WRITE_SWEEP_INTERVAL`` seconds per model unless one is
    known to be due. A failure is a warning: the saves succeeded, later writes retry.

    The sweep's own writes (saves of referring entities by on_delete policies) do not
    sweep again (they run with ``sweep=False``); while one sweep of a model is in flight,
    other writes of the model (other tasks or threads) do not start another.
    """
    clock = time.monotonic()
    for model in _written_models(plans, clock):
        if clock < _next_check.get(model, 0.0):
            continue
        previous = _next_check.get(model)
        _next_check[model] = clock + WRITE_SWEEP_INTERVAL  # (in flight: no second sweep)
        try:
            result = yield from op_sweep(model, WRITE_SWEEP)
        except BaseException as exc:
            if previous is None:  # not done: the next write of the model tries again
                _next_check.pop(model, None)
            else:
                _next_check[model] = previous
            if not isinstance(exc, Exception):
                raise
            warnings.warn('rom: removing expired entities after a save failed: %s: %s'
                          % (type(exc).__name__, exc), RuntimeWarning, stacklevel=2)
            return
        wait = result.wait
        if wait is None or (result.seen and not result.removed):
            wait = WRITE_SWEEP_INTERVAL  # (e.g. all kept by restrict: do not retry at once)
        _next_check[model] = time.monotonic() + min(wait, WRITE_SWEEP_INTERVAL)


# --------------------------------------------------------------------------- job, reaper
class ExpiryJob:
    """Remove every due entity of a model in blocks; iterate for ``(done, total)`` progress.

    ``removed`` and ``blocked`` (kept by ``on_delete='restrict'``) are set as it runs.
    """

    def __init__(self, model: Any, block_size: int = 100) -> None:
        if getattr(model, '_ttl', None) is None:
            raise ValueError('model %s does not declare _ttl' % (model.__name__,))
        self.model = model
        self.block_size = block_size
        self.removed = 0
        self.blocked = 0

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        total: Optional[int] = None
        while True:
            result = sweep(self.model, self.block_size, self.blocked)
            if total is None:
                total = result.due
            self.removed += result.removed
            self.blocked += result.blocked
            done = self.removed + self.blocked
            total = max(total, done)
            yield done, total
            if not result.seen:
                return


def expiring_models() -> List[Any]:
    """Every registered model that declares ``_ttl`` (each once)."""
    found: List[Any] = []
    for model in MODELS.values():
        if getattr(model, '_ttl', None) is not None and model not in found \
                and not getattr(model, '_is_root_model', False):
            found.append(model)
    return found


class Reaper(threading.Thread):
    """A daemon thread removing expired entities every ``interval`` seconds.

    ``models``: the models to sweep (default: every model declaring ``_ttl`` at each
    round). Errors are reported as warnings and the next round tries again. ``stop()``
    ends the thread (and waits for it).
    """

    def __init__(self, models: Optional[Sequence[Any]] = None, interval: float = 1.0,
                 block_size: int = 100) -> None:
        super().__init__(name='rom-expiry-reaper', daemon=True)
        if not interval > 0:
            raise ValueError('Reaper interval must be positive, got %r' % (interval,))
        self.models = list(models) if models is not None else None
        self.interval = interval
        self.block_size = block_size
        self.removed = 0
        self.rounds = 0
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                for model in (self.models if self.models is not None else expiring_models()):
                    job = ExpiryJob(model, self.block_size)
                    for _ in job:
                        if self._stopping.is_set():
                            break
                    self.removed += job.removed
            except Exception as exc:
                warnings.warn('rom expiry reaper: %s: %s' % (type(exc).__name__, exc),
                              RuntimeWarning)
            finally:
                session.rollback()
            self.rounds += 1
            self._stopping.wait(self.interval)

    def stop(self, timeout: Optional[float] = None) -> None:
        """Ask the thread to stop and wait for it (up to ``timeout`` seconds)."""
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)


__all__ = ['EXPIRY_FIELD', 'ExpiryJob', 'Reaper', 'SweepResult', 'asweep', 'expiring_models',
           'op_after_write', 'op_sweep', 'sweep', 'ttl_of', 'visible', 'visible_ids']
