"""Index search: compile filter records into Redis work, run it, expire temporary keys.

Used by ``rom._ops_query`` (``Query`` terminal calls) and re-exported by ``rom.index``. A
search takes at most two round trips: one for the work estimates (only when there are two or
more filters to order) and one transaction that builds the working set and reads, counts or
expires it. Every temporary key is deleted in the transaction that creates it or gets a TTL
there.

Searches are operations (``rom._io``): the ``op_*`` methods yield their Redis work and run
with either driver; the methods taking a ``conn`` are the blocking compat API.
"""
from __future__ import annotations

import uuid
from collections import namedtuple
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from redis.exceptions import ResponseError

from ._cluster import is_cluster_client, is_cluster_pipeline
from ._io import Batch, Client, ClientOf, Command, Operation, Script, run
from ._io import _queue as queue_step
from ._helpers import MAX_RANK, _to_score
from ._query_match import (MAX_PREFIX_SCORE, _find_prefix, _literal_prefix, _lua_to_like,
                           _normalise_pattern, _start_end)
from ._records import Geofilter, Pattern, Prefix, Suffix
from ._scripts import lua
from .exceptions import QueryError

#: plan steps (plain data, no connection inside)
_Keys = namedtuple('_Keys', 'keys')                          # SET/ZSET keys, OR-ed
_Range = namedtuple('_Range', 'key lo hi')                   # scored index range
_Scan = namedtuple('_Scan', 'index literal pattern')         # prefix/suffix/pattern scan
_Geo = namedtuple('_Geo', 'key lon lat radius measure count')
#: a query answered straight from one scored index (no working set)
_Direct = namedtuple('_Direct', 'key lo hi desc')

_NO_LIMIT = 2 ** 64
#: largest window (offset + count) a lone prefix filter answers without a working set
_TOP_LIMIT = 1000


def _estimate_args(step: Any) -> Tuple[str, Tuple[Any, ...]]:
    """Key and bounds sent to ``estimate_work.lua`` for a step (raises ValueError)."""
    if isinstance(step, _Keys):
        return step.keys[0], ()
    if isinstance(step, _Range):
        lo = '-inf' if step.lo is None else repr(float(step.lo))
        hi = 'inf' if step.hi is None else repr(float(step.hi))
        return step.key, (lo, hi)
    if isinstance(step, _Scan):
        start, end = _start_end(step.literal)
        return step.index, (start, '(' + end)
    return step.key, ((step.count,) if step.count else ())


def estimate_work_lua(conn: Any, index: str, prefix: Any) -> Any:
    """Queue/run the work estimate of one index (``prefix``: None, a count or ``(lo, hi)``).

    Always sent as EVAL (it is queued inside transactions).
    """
    if prefix is None:
        args: Tuple[Any, ...] = ()
    elif isinstance(prefix, (tuple, list)):
        args = tuple(prefix)
    else:
        args = (prefix,)
    return lua('estimate_work')(conn, [index], args, force_eval=True)


def lua_subrange(conn: Any, keys: Sequence[Any] = (), args: Sequence[Any] = (),
                 force_eval: bool = False) -> Any:
    """Copy members with ``lo <= score <= hi`` of ``keys[1]`` into ``keys[0]`` (with scores)."""
    return lua('subrange')(conn, keys, args, force_eval=force_eval)


def _scratch_key(index: str) -> str:
    return '%s:%s' % (index.partition(':')[0], uuid.uuid4())


def redis_prefix_lua(conn: Any, dest: str, index: str, prefix: Union[str, bytes],
                     is_first: bool, pattern: Optional[str] = None) -> Any:
    """Union (``is_first``) or intersect into ``dest`` the ids of ``index`` members whose
    token starts with ``prefix`` and, when given, matches ``pattern``: a like() pattern
    translated by ``_pattern_to_lua_pattern`` (compat; it is translated back and matched by
    rom's bounded matcher, never run as a Lua pattern; other Lua patterns raise QueryError)."""
    like = None if pattern is None else _normalise_pattern(_lua_to_like(pattern))
    return _prefix_scan(conn, dest, _Scan(index, prefix, like or None), is_first)


def _scan_args(scan: '_Scan') -> List[Any]:
    """``prefix_scan.lua``'s first four arguments for a scan step."""
    start, end = _start_end(scan.literal)
    if not scan.literal:
        end = 'inf'
    return [start, end, scan.literal, scan.pattern or '']


def _prefix_scan(conn: Any, dest: str, scan: '_Scan', is_first: bool) -> Any:
    """Run (or queue, on a pipeline) ``prefix_scan.lua`` in 'store' mode for one scan step."""
    return _guard(lambda: lua('prefix_scan')(
        conn, [dest, _scratch_key(scan.index), scan.index],
        _scan_args(scan) + ['1' if is_first else '0'], force_eval=_is_pipeline(conn)))


def _scan_step(via: Any, scan: '_Scan', mode: str, k: int = 0) -> Script:
    """``prefix_scan.lua`` read-only: ``mode`` 'count' or 'top' (``k`` smallest ids)."""
    # the first two keys are unused in these modes (the index itself: one slot on a cluster)
    return Script(via, 'prefix_scan', (scan.index, scan.index, scan.index),
                  tuple(_scan_args(scan)) + ('1', mode, k))


def guarded(step: Union[Command, Script, Batch]) -> Operation[Any]:
    """The reply of ``step``; the scan script's out-of-budget error becomes QueryError."""
    try:
        return (yield step)
    except ResponseError as exc:
        _too_costly(exc)
        raise


def _guard(call: Callable[[], Any]) -> Any:
    """``call()``, turning the scan script's out-of-budget error into QueryError."""
    try:
        return call()
    except ResponseError as exc:
        _too_costly(exc)
        raise


def _too_costly(exc: ResponseError) -> None:
    if 'ROM_LIKE_TOO_COSTLY' in str(exc):
        raise QueryError('like(): this pattern needs too much matching work on this index '
                         '(the scan script\'s budget, see docs/guarantees); use fewer '
                         '"?" wildcards or a longer literal start') from None


def _pattern_scan(index: str, pattern: str) -> '_Scan':
    """The scan step of a like() pattern: its literal start bounds the scan, and the
    normalised pattern (None when it has no wildcard left) is matched by the script."""
    like = _normalise_pattern(pattern)
    literal = _literal_prefix(like)
    return _Scan(index, literal, like if like != literal else None)


def is_cluster(conn: Any) -> bool:
    """True for a Redis Cluster client, blocking or asyncio."""
    if is_cluster_client(conn):
        return True
    if not type(conn).__module__.startswith('redis.asyncio'):
        return False
    from ._aconnect import is_async_cluster
    return is_async_cluster(conn)


class Work:
    """Steps queued for one MULTI/EXEC (a pipeline without a client): ``batch()`` is the
    step that sends them. ``first`` is True while the working set is still empty."""

    __slots__ = ('via', 'cluster', 'steps', 'first')

    def __init__(self, via: Any, cluster: bool) -> None:
        self.via = via
        self.cluster = cluster
        self.steps: List[Union[Command, Script]] = []
        self.first = True

    def command(self, *args: Any) -> None:
        self.steps.append(Command(self.via, args))

    def script(self, name: str, keys: Sequence[Any], args: Sequence[Any] = (),
               route: Any = None) -> None:
        self.steps.append(Script(self.via, name, tuple(keys), tuple(args), route, True))

    def keyed(self, keys: Sequence[Any], *command: Any) -> None:
        """Queue ``command`` (which names ``keys``). On a Redis Cluster it goes through
        ``keyed_command.lua``, so the client routes it without a COMMAND GETKEYS round trip;
        elsewhere it is sent as is."""
        if self.cluster:
            self.script('keyed_command', keys, command)
        else:
            self.command(*command)

    def intersect(self, dest: str, key: str, w_dest: Any = 0, w_key: Any = 0) -> None:
        """Union ``key`` into the working set ``dest`` while it is empty, else intersect."""
        if self.first:
            self.keyed((dest, key), 'ZUNIONSTORE', dest, 1, key, 'WEIGHTS', w_key)
        else:
            self.keyed((dest, key), 'ZINTERSTORE', dest, 2, dest, key, 'WEIGHTS', w_dest, w_key)
        self.first = False

    def batch(self) -> Batch:
        """The step sending the queued work in one transaction; the queue starts afresh."""
        steps, self.steps = tuple(self.steps), []
        return Batch(self.via, steps)


def _is_pipeline(conn: Any) -> bool:
    return hasattr(conn, 'command_stack') or is_cluster_pipeline(conn)


class GeneralIndex:
    """Per-model search engine bound to a namespace (``Model._gindex``)."""

    #: models with ``_ttl``: their expiry set (set by rom._ttl.check_model); queries then
    #: drop expired ids from their working set, and take a fast path only when the same
    #: transaction finds no entity of the model due
    expiry_key: Optional[str] = None

    def __init__(self, namespace: str, cluster: bool = False) -> None:
        self.namespace = namespace
        # bare temporary keys (OR unions, geo results): '<uuid>' as in rom 1.1.2, or
        # '<ns>:<uuid>' for a cluster model (same hash slot as its other keys)
        self._temp_prefix = namespace + ':' if cluster else ''

    def __repr__(self) -> str:
        return 'GeneralIndex(%r)' % (self.namespace,)

    # -- compilation (no I/O) -------------------------------------------------------------
    def _compile(self, filters: Sequence[Any]) -> List[Any]:
        ns = self.namespace
        steps: List[Any] = []
        for flt in filters:
            if isinstance(flt, str):
                steps.append(_Keys(['%s:%s:idx' % (ns, flt)]))
            elif isinstance(flt, Prefix):
                steps.append(_Scan('%s:%s:pre' % (ns, flt.attr), flt.prefix, None))
            elif isinstance(flt, Suffix):
                steps.append(_Scan('%s:%s:suf' % (ns, flt.attr), flt.suffix, None))
            elif isinstance(flt, Pattern):
                steps.append(_pattern_scan('%s:%s:pre' % (ns, flt.attr), flt.pattern))
            elif isinstance(flt, list):
                if flt:
                    steps.append(_Keys(['%s:%s:idx' % (ns, f) for f in flt]))
            elif isinstance(flt, Geofilter):
                steps.append(_Geo('%s:%s:geo' % (ns, flt.name), flt.lon, flt.lat, flt.radius,
                                  flt.measure, flt.count))
            elif isinstance(flt, tuple):
                if len(flt) != 3:
                    raise QueryError('a range filter must be (column, low, high), got %r'
                                     % (flt,))
                steps.append(_Range('%s:%s:idx' % (ns, flt[0]), flt[1], flt[2]))
            else:
                raise QueryError('unknown filter %r (expected a token, a list of tokens, a '
                                 'range tuple, Prefix, Suffix, Pattern or Geofilter)' % (flt,))
        return steps

    # -- execution (operations: see rom._io) -------------------------------------------
    def _op_order(self, via: Any, steps: List[Any]) -> Operation[List[Any]]:
        """Steps sorted by abs(work estimate), stable; one transaction when >= 2 steps."""
        estimates = [_estimate_args(step) for step in steps]  # validates range endpoints
        if len(steps) < 2:
            return steps
        sizes = yield Batch(via, tuple(Script(via, 'estimate_work', (key,), args, None, True)
                                       for key, args in estimates))
        order = sorted(range(len(steps)), key=lambda i: abs(int(sizes[i])))
        return [steps[i] for i in order]

    def _op_prepare(self, via: Any, filters: Sequence[Any]) -> Operation[Tuple[Work, str]]:
        """The filters queued on a new :class:`Work` transaction: ``(work, temp_key)``."""
        steps = yield from self._op_order(via, self._compile(filters))
        conn = yield ClientOf(via)
        temp = '%s:%s' % (self.namespace, uuid.uuid4())
        work = Work(Client(conn), is_cluster(conn))
        for step in steps:
            first = work.first
            if isinstance(step, _Keys):
                if len(step.keys) == 1:
                    work.intersect(temp, step.keys[0], 0, 0)
                elif first:
                    work.keyed((temp,) + tuple(step.keys), 'ZUNIONSTORE', temp,
                               len(step.keys), *step.keys, 'WEIGHTS', *([0] * len(step.keys)))
                    work.first = False
                else:
                    union = '%s%s' % (self._temp_prefix, uuid.uuid4())
                    work.keyed((union,) + tuple(step.keys), 'ZUNIONSTORE', union,
                               len(step.keys), *step.keys, 'WEIGHTS', *([0] * len(step.keys)))
                    work.intersect(temp, union, 0, 0)
                    work.command('DEL', union)
            elif isinstance(step, _Range):
                lo = '-inf' if step.lo is None else _to_score(step.lo)
                hi = 'inf' if step.hi is None else _to_score(step.hi)
                if first:
                    work.script('subrange', [temp, step.key], [lo, hi])
                    work.first = False
                else:
                    work.intersect(temp, step.key, 0, 1)
                    if step.lo is not None:
                        work.command('ZREMRANGEBYSCORE', temp, '-inf', _to_score(step.lo, True))
                    if step.hi is not None:
                        work.command('ZREMRANGEBYSCORE', temp, _to_score(step.hi, True), 'inf')
            elif isinstance(step, _Scan):
                work.script('prefix_scan', [temp, _scratch_key(step.index), step.index],
                            _scan_args(step) + ['1' if first else '0'])
                work.first = False
            else:
                dest = temp if first else '%s%s' % (self._temp_prefix, uuid.uuid4())
                cmd: List[Any] = ['GEORADIUS', step.key, repr(step.lon), repr(step.lat),
                                  step.radius, step.measure]
                if step.count and step.count >= 0:
                    cmd += ['COUNT', step.count]
                work.keyed((step.key, dest), *cmd, 'STOREDIST', dest)
                if not first:
                    work.keyed((temp, dest), 'ZINTERSTORE', temp, 2, temp, dest, 'WEIGHTS', 0, 1)
                    work.command('DEL', dest)
                work.first = False
        return work, temp

    def _prepare(self, conn: Any, filters: Sequence[Any]) -> Tuple[Any, Callable[..., None], str]:
        """The filters queued on a transaction of ``conn``: ``(pipeline, intersect, temp_key)``.

        ``intersect(dest, key, w_dest, w_key)`` unions ``key`` into the working set while it
        is empty and intersects afterwards (queued on the pipeline at once).
        """
        work, temp = run(self._op_prepare(Client(conn), filters))
        pipe = conn.pipeline(True)
        for step in work.steps:
            queue_step(pipe, step)

        def intersect(dest: str, key: str, w_dest: Any = 0, w_key: Any = 0) -> None:
            done = len(work.steps)
            work.intersect(dest, key, w_dest, w_key)
            for step in work.steps[done:]:
                queue_step(pipe, step)
        return pipe, intersect, temp

    def op_build(self, via: Any, filters: Sequence[Any],
                 order_by: Optional[str]) -> Operation[Tuple[Work, str]]:
        """The whole working-set build (filters, then ordering) queued on a :class:`Work`."""
        work, temp = yield from self._op_prepare(via, filters)
        if order_by:
            desc = order_by.startswith('-')
            column = order_by.lstrip('-')
            work.intersect(temp, '%s:%s:idx' % (self.namespace, column), 0, -1 if desc else 1)
        self.drop_expired(work, temp)
        return work, temp

    def drop_expired(self, work: Work, temp: str) -> None:
        """Models with ``_ttl``: queue the removal of expired ids from a working set."""
        if self.expiry_key is not None:
            work.script('expire_filter', [temp, self.expiry_key])

    def _direct(self, filters: Sequence[Any], order_by: Optional[str]) -> Optional[_Direct]:
        """The index to read pages from directly, when the result order allows it.

        That is the case for an ``order_by`` without filters, and for a single range filter
        without ``order_by`` or ordered by the same column: the result order is then the
        index's own (score, then member bytes; descending scores keep ties ascending).
        """
        real = [f for f in filters if not (isinstance(f, list) and not f)]
        column = order_by.lstrip('-') if order_by else None
        desc = order_by is not None and order_by.startswith('-')
        if not real:
            if column is None:
                return None
            return _Direct('%s:%s:idx' % (self.namespace, column), '-inf', 'inf', desc)
        if len(real) != 1 or type(real[0]) is not tuple or len(real[0]) != 3:
            return None
        attr, lo, hi = real[0]
        if column is not None and column != attr:
            return None
        _estimate_args(_Range(attr, lo, hi))  # the general path's endpoint validation
        return _Direct('%s:%s:idx' % (self.namespace, attr),
                       '-inf' if lo is None else _to_score(lo),
                       'inf' if hi is None else _to_score(hi), desc)

    def _fast(self, filters: Sequence[Any], order_by: Optional[str], offset: int,
              count: Optional[int]) -> Any:
        """A plan answering the window ``offset, count`` without a working set, or None.

        Besides :meth:`_direct` plans, a lone prefix/suffix/pattern filter without
        ``order_by`` qualifies for small windows: the scan then keeps only the
        ``offset + count`` smallest ids (the general path's order) instead of storing all.
        """
        if offset < 0:
            return None
        plan = self._direct(filters, order_by)
        if plan is not None or order_by:
            return plan
        real = [f for f in filters if not (isinstance(f, list) and not f)]
        if len(real) != 1 or not isinstance(real[0], (Prefix, Suffix, Pattern)):
            return None
        if not count or count <= 0 or offset + count > _TOP_LIMIT:
            return None
        return self._compile(real)[0]

    def op_page(self, via: Any, plan: Any, offset: int, count: int
                ) -> Operation[Optional[List[Any]]]:
        """Ids at ranks ``offset .. offset+count-1`` of a fast plan (count <= 0: to the end).

        Models with ``_ttl``: None when an entity of the model is due to be removed (the
        caller then takes the general path, which drops expired ids).
        """
        if isinstance(plan, _Scan):
            step = _scan_step(via, plan, 'top', offset + count)
        else:
            step = Script(via, 'index_page', (plan.key,), (
                plan.lo, plan.hi, '1' if plan.desc else '0', offset, count))
        reply = yield from self.op_unless_due(via, step)
        if reply is None:
            return None
        return list(reply[offset:]) if isinstance(plan, _Scan) else reply

    def op_unless_due(self, via: Any, step: Union[Command, Script]) -> Operation[Any]:
        """The reply of ``step``; for models with ``_ttl`` in one transaction after counting
        the due entities, and None instead of the reply when there are any."""
        if self.expiry_key is None:
            return (yield from guarded(step))
        due, reply = yield from guarded(Batch(via, (
            Script(via, 'expire_pending', (self.expiry_key,), (), None, True), step)))
        return None if int(due) else reply

    def op_search(self, via: Any, filters: Sequence[Any], order_by: Optional[str],
                  offset: Optional[int] = None, count: Optional[int] = None,
                  timeout: Optional[int] = None) -> Operation[Any]:
        """Operation of :meth:`search`."""
        if not filters and not order_by:
            return []
        if timeout is None:
            plan = self._fast(filters, order_by, offset or 0, count)
            if plan is not None:
                ids = yield from self.op_page(via, plan, offset or 0,
                                              count if count and count > 0 else 0)
                if ids is not None:
                    return ids
        work, temp = yield from self.op_build(via, filters, order_by)
        if timeout is not None:
            work.command('EXPIRE', temp, timeout)
            yield from guarded(work.batch())
            return temp
        offset = offset or 0
        end = min(offset + count - 1, MAX_RANK) if count and count > 0 else -1
        work.command('ZRANGE', temp, offset, end)
        work.command('DEL', temp)
        return (yield from guarded(work.batch()))[-2]

    def search(self, conn: Any, filters: Sequence[Any], order_by: Optional[str],
               offset: Optional[int] = None, count: Optional[int] = None,
               timeout: Optional[int] = None) -> Any:
        """Ids matching ``filters`` in result order (``offset``/``count`` window), or, with
        ``timeout``, the name of the result key kept for ``timeout`` seconds."""
        return run(self.op_search(Client(conn), filters, order_by, offset, count, timeout))

    def _fast_count(self, via: Any, real: List[Any]) -> Optional[Union[Command, Script]]:
        """The step counting ``real`` without a working set, or None."""
        if len(real) == 1 and isinstance(real[0], (Prefix, Suffix, Pattern)):
            return _scan_step(via, self._compile(real)[0], 'count')
        if len(real) == 1 and isinstance(real[0], str):
            key = '%s:%s:idx' % (self.namespace, real[0])
            return Script(via, 'estimate_work', (key,))
        if real and type(real[0]) is tuple and len(real[0]) == 3 and (
                len(real) == 1 or (len(real) == 2 and real[1] == real[0][0])):
            plan = self._direct(real[:1], None)
            if plan is not None:
                return Command(via, ('ZCOUNT', plan.key, plan.lo, plan.hi))
        return None

    def op_count(self, via: Any, filters: Sequence[Any]) -> Operation[int]:
        """Operation of :meth:`count`."""
        real = [f for f in filters if not (isinstance(f, list) and not f)]
        fast = self._fast_count(via, real)
        if fast is not None:
            found = yield from self.op_unless_due(via, fast)  # (None: some due, _ttl models)
            if found is not None:
                return int(found)
        work, temp = yield from self._op_prepare(via, filters)
        self.drop_expired(work, temp)
        work.command('ZCARD', temp)
        work.command('DEL', temp)
        return int((yield from guarded(work.batch()))[-2])

    def count(self, conn: Any, filters: Sequence[Any]) -> int:
        """The number of ids matching ``filters``."""
        return run(self.op_count(Client(conn), filters))
