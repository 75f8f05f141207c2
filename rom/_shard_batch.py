"""One round trip per master for the per-shard work of a sharded query.

Each shard's part of a query is what the unsharded search code (``rom._search``) would send
for it: one transaction (``MULTI ... EXEC``), or one command for the fast paths. Here it is
*recorded* instead of sent (``_Recorder``, a pipeline that only keeps its commands), and the
recorded work of every shard a master holds goes to that master in one packed write on one
connection; masters are served in parallel. :func:`op_scatter` is that logic, as an
operation yielding a :class:`~rom._io.Scatter` step: the blocking driver serves it with a
thread per master (:func:`serve`), the asyncio driver with a task per master
(``rom._shard_abatch``). Queries with two or more filters first fetch the filters' work
estimates the same way (one more round trip).

A shard whose reply says its slot moved (``MOVED``/``ASK``/``TRYAGAIN``, during a
resharding or failover) is sent again through the cluster client, which follows the
redirection.
"""
from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from redis.client import Pipeline
from redis.exceptions import (AskError, ClusterDownError, MovedError, NoScriptError,
                              ResponseError, TryAgainError)

from ._cluster import is_cluster_client
from ._maint_io import pooled_connection
from ._search import _guard

Command = Tuple[Any, ...]
#: a shard's work: (shard class, commands, transaction?)
Job = Tuple[Any, List[Command], bool]
_REDIRECTS = ('MOVED', 'ASK', 'TRYAGAIN', 'CLUSTERDOWN')


class NeedEstimates(Exception):
    """Raised by a recording build that needs the filters' work estimates first."""

    def __init__(self, commands: List[Command]) -> None:
        super().__init__('estimates needed')
        self.commands = commands


class _Recorder(Pipeline):
    """A pipeline that records the commands queued on it (never connects)."""

    def __init__(self, owner: 'RecordingClient') -> None:  # no connection pool
        self.owner = owner
        self.commands: List[Command] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(args)
        return self

    def execute(self, raise_on_error: bool = True) -> List[Any]:
        if self.owner.estimates is None:
            raise NeedEstimates(self.commands)
        return self.owner.estimates

    def reset(self) -> None:  # type: ignore[override]
        pass


class RecordingClient:
    """What ``GeneralIndex`` code receives as its client: ``pipeline()`` gives recorders;
    ``estimates`` answers the estimate transaction of ``_order`` (None: raise NeedEstimates)."""

    def __init__(self, estimates: Optional[List[Any]] = None) -> None:
        self.estimates = estimates
        self.last: Optional[_Recorder] = None

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> _Recorder:
        self.last = _Recorder(self)
        return self.last


def record_steps(steps: Sequence[Any]) -> List[Command]:
    """The commands of ``rom._io`` steps (``Command``/``Script``), scripts as EVAL."""
    from ._io import _queue
    recorder = _Recorder(RecordingClient())
    for step in steps:
        _queue(recorder, step)
    return recorder.commands


class _OneSlot:
    """What a recorded operation's ``ClientOf`` step receives: not a cluster client (the
    recorded work goes to one node, raw, all its keys in the shard's slot)."""


def record_op(client: 'RecordingClient', operation: Any) -> Any:
    """Drive a ``GeneralIndex`` operation without I/O: its estimate batch is answered from
    ``client.estimates`` (None: raise :class:`NeedEstimates` with the batch's commands);
    returns the operation's result (work queued on a ``Work``, not sent)."""
    from ._io import Batch, ClientOf
    reply: Any = None
    while True:
        try:
            step = operation.send(reply)
        except StopIteration as stop:
            return stop.value
        if isinstance(step, ClientOf):
            reply = _OneSlot()
        elif isinstance(step, Batch):
            if client.estimates is None:
                raise NeedEstimates(record_steps(step.steps))
            reply = list(client.estimates)
        else:
            raise TypeError('a query build did I/O: %r' % (step,))


def record(call: Callable[[Any], Any]) -> List[Command]:
    """The commands ``call(recorder)`` queues on a recording pipeline."""
    recorder = _Recorder(RecordingClient())
    call(recorder)
    return recorder.commands


_pool: List[Any] = []  # [(pid, executor)]: one shared pool of threads per process
_pool_lock = threading.Lock()
#: threads serving masters in parallel (the calling thread serves one more)
MAX_THREADS = 32


def _executor() -> ThreadPoolExecutor:
    with _pool_lock:
        if not _pool or _pool[0][0] != os.getpid():  # (a forked child makes its own)
            _pool[:] = [(os.getpid(), ThreadPoolExecutor(MAX_THREADS, 'rom-shards'))]
        return _pool[0][1]


def record_script(name: str, keys: Sequence[Any], args: Sequence[Any]) -> List[Command]:
    """The command calling ``rom/scripts/<name>.lua`` (as EVAL; sent as EVALSHA)."""
    from ._scripts import lua
    return record(lambda pipe: lua(name)(pipe, keys, args))


def _node_client(conn: Any, shard: Any) -> Tuple[str, Any]:
    if is_cluster_client(conn):
        node = conn.get_node_from_key(shard._namespace)
        return node.name, conn.get_redis_connection(node)
    return '', conn


_SHAS: Dict[bytes, str] = {}


def _by_sha(command: Command) -> Command:
    """``EVAL source ...`` as ``EVALSHA sha ...`` (other commands unchanged)."""
    if command[0] != 'EVAL':
        return command
    source = command[1]
    sha = _SHAS.get(source)
    if sha is None:
        sha = _SHAS[source] = hashlib.sha1(source).hexdigest()
    return ('EVALSHA', sha) + tuple(command[2:])


def packed_jobs(jobs: Sequence[Job], sha: bool) -> List[Command]:
    """The commands of one master's jobs, in one list (transactions inside MULTI/EXEC)."""
    packed: List[Command] = []
    for _, commands, transaction in jobs:
        if sha:
            commands = [_by_sha(c) for c in commands]
        packed += ([('MULTI',)] + commands + [('EXEC',)]) if transaction else commands
    return packed


def split_replies(jobs: Sequence[Job], replies: List[Any]) -> List[Any]:
    """One reply (or error) per job from the replies of :func:`packed_jobs`' commands."""
    out: List[Any] = []
    at = 0
    for _, commands, transaction in jobs:
        if not transaction:
            out.append(replies[at])
            at += len(commands)
            continue
        part = replies[at:at + len(commands) + 2]
        at += len(commands) + 2
        errors = [r for r in part if isinstance(r, ResponseError)]
        exec_reply = part[-1]
        if not errors and isinstance(exec_reply, list):
            errors = [r for r in exec_reply if isinstance(r, ResponseError)]
        out.append(errors[0] if errors else exec_reply)
    return out


def _send(client: Any, jobs: List[Job], sha: bool = True) -> List[Any]:
    """Send the jobs of one master in one packed write; one reply (or error) per job.

    Scripts go as EVALSHA (``sha``): a job that meets NOSCRIPT is sent again with EVAL by
    the scatter (query work is read-only but for temporary keys, which the job's own
    transaction deletes or gives a TTL whatever its scripts did).
    """
    packed = packed_jobs(jobs, sha)
    pool = client.connection_pool
    connection = pooled_connection(pool)
    replies: List[Any] = []
    try:
        connection.send_packed_command(connection.pack_commands(packed))
        for _ in packed:
            try:
                replies.append(connection.read_response())
            except ResponseError as err:
                replies.append(err)
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)
    return split_replies(jobs, replies)


def _no_script(error: Any) -> bool:
    return isinstance(error, NoScriptError) or str(error).startswith('NOSCRIPT')


def _redirected(error: Any) -> bool:
    """A reply saying the slot is served elsewhere (or not now); EXECABORT: a command of a
    transaction was refused when queued (such as MOVED)."""
    if isinstance(error, (MovedError, AskError, TryAgainError, ClusterDownError)):
        return True
    text = str(error)
    return any(text.startswith(word) for word in _REDIRECTS) or 'EXECABORT' in text


def again(conn: Any, job: Job) -> Any:
    """A job sent through the cluster client itself (it follows MOVED/ASK)."""
    _, commands, transaction = job
    pipe = conn.pipeline(transaction)
    for command in commands:
        pipe.execute_command(*command)
    replies = pipe.execute()
    return replies if transaction else replies[0]


def op_scatter(via: Any, jobs: Sequence[Job]) -> Any:
    """Operation: the replies of ``jobs`` (EXEC replies for transactions) with the client
    of ``via``: one :class:`~rom._io.Scatter` step (each master's jobs in one packed write,
    masters in parallel), then a job whose script the master lacked is sent again with
    EVAL, and one whose slot moved through the cluster client (``Resend``). Script errors
    raise as the unsharded path raises them."""
    from ._aconnect import is_async_client
    from ._io import ClientOf, Resend, Scatter
    if not jobs:
        return []
    conn = yield ClientOf(via)
    if is_async_client(conn):
        from ._shard_abatch import node_client
    else:
        node_client = _node_client
    groups: Dict[str, Tuple[Any, List[int]]] = {}
    for position, job in enumerate(jobs):
        name, client = node_client(conn, job[0])
        groups.setdefault(name, (client, []))[1].append(position)
    replies: List[Any] = [None] * len(jobs)
    work = list(groups.values())
    sent = yield Scatter([(client, [jobs[p] for p in positions], True)
                          for client, positions in work])
    for (_, positions), got in zip(work, sent):
        for position, reply in zip(positions, got):
            replies[position] = reply
    for position, reply in enumerate(replies):
        if isinstance(reply, ResponseError) and _no_script(reply):
            client = node_client(conn, jobs[position][0])[1]
            replies[position] = reply = (yield Scatter([(client, [jobs[position]], False)]))[0][0]
        if isinstance(reply, ResponseError):
            if not _redirected(reply):
                _guard(lambda: _raise(reply))
            try:
                replies[position] = yield Resend(via, jobs[position])
            except ResponseError as exc:
                _guard(lambda: _raise(exc))
    return replies


def serve(groups: List[Tuple[Any, List[Job], bool]]) -> List[List[Any]]:
    """A :class:`~rom._io.Scatter` with blocking clients: ``_send`` of each group, a thread
    per master (the calling thread serves one)."""
    if len(groups) <= 1:
        return [_send(*group) for group in groups]
    pool = _executor()
    futures = [pool.submit(_send, *group) for group in groups[1:]]
    first = _send(*groups[0])
    return [first] + [future.result() for future in futures]


def _raise(error: BaseException) -> None:
    raise error
