"""Operations without I/O, and the two drivers that run them (sync and asyncio).

rom's logic is written once, as *operations*: generators that yield the Redis work they
need (a :class:`Command`, a :class:`Script` call, or a :class:`Batch` of those sent in one
round trip) and receive the reply, or have the error raised at the ``yield``. They never
touch a client. Two small drivers do the I/O:

* :func:`run` sends each step with the blocking client (``rom.util._connect``);
* :func:`arun` awaits each step on the asyncio client (``rom._aconnect.aconnect``).

Every step names the client it goes to with ``via``: a model class or an entity (its
client is looked up by the driver, sync or async as the driver is), or a :class:`Client`
wrapping a concrete client the caller passed (``_conn=`` arguments, ``Lock(conn, ...)``).
A :class:`ClientOf` step returns the concrete client itself, for logic that must *inspect*
it (``decode_responses``, cluster or not); the logic must not do I/O with it. A
:class:`Sleep` step waits (``time.sleep`` or ``asyncio.sleep``, as the driver is).

Example::

    def op_get_name(model, pk):
        name = yield Command(model, ('HGET', '%s:%s' % (model._namespace, pk), 'name'))
        return name

    run(op_get_name(User, 1))          # sync
    await arun(op_get_name(User, 1))   # in a coroutine
"""
from __future__ import annotations

import time
from contextvars import ContextVar
from typing import (Any, Callable, Dict, Generator, NamedTuple, Optional, Sequence, Tuple, TypeVar,
                    Union)

from ._connect import connect
from ._cluster import is_cluster_client
from ._scripts import _retry_while_slot_moves, lua

__all__ = ['Client', 'Command', 'Script', 'Batch', 'ClientOf', 'Sleep', 'Scatter', 'Resend', 'Step',
           'Operation',
           'run', 'arun', 'run_step', 'client_of']

R = TypeVar('R')


class Client(NamedTuple):
    """A concrete client given by the caller (sync or async, as the driver needs)."""
    conn: Any


class Command(NamedTuple):
    """One Redis command: ``execute_command(*args)`` on the client of ``via``."""
    via: Any
    args: Tuple[Any, ...]


class Script(NamedTuple):
    """A call of ``rom/scripts/<name>.lua`` (EVALSHA with EVAL fallback; EVAL in a batch).

    ``route`` is a key of the slot a keyless script works on (Redis Cluster routing).
    """
    via: Any
    name: str
    keys: Sequence[Any] = ()
    args: Sequence[Any] = ()
    route: Any = None
    force_eval: bool = False


class Batch(NamedTuple):
    """Several commands/scripts in one round trip (a pipeline); the reply is their list.

    ``transaction`` wraps them in MULTI/EXEC. With ``raise_on_error=False`` failed steps
    come back as exception instances in the list instead of raising.
    """
    via: Any
    steps: Tuple[Union[Command, Script], ...]
    transaction: bool = True
    raise_on_error: bool = True


class ClientOf(NamedTuple):
    """The concrete client of ``via`` (to inspect it, never to do I/O with it)."""
    via: Any


class Sleep(NamedTuple):
    """Wait ``seconds`` (blocking driver: ``time.sleep``; asyncio driver: ``asyncio.sleep``)."""
    seconds: float


class Scatter(NamedTuple):
    """Packed writes to several masters at once (the per-shard work of a sharded model, see
    ``rom._shard_batch.op_scatter``): ``groups`` are ``(node client, jobs, sha)``; the reply
    is, per group, one reply per job. The masters are served in parallel: threads in the
    blocking driver, asyncio tasks in the asyncio driver."""
    groups: Sequence[Any]


class Resend(NamedTuple):
    """One job of a :class:`Scatter` sent again through the (cluster) client of ``via``,
    which follows a moved slot; the reply is the job's."""
    via: Any
    job: Any


Step = Union[Command, Script, Batch, ClientOf, Sleep, Scatter, Resend]
Operation = Generator[Step, Any, R]


def client_of(via: Any) -> Any:
    """The blocking client a step goes to."""
    return via.conn if isinstance(via, Client) else connect(via)


def _queue(pipe: Any, step: Union[Command, Script]) -> None:
    if isinstance(step, Command):
        pipe.execute_command(*step.args)
    else:
        lua(step.name)(pipe, step.keys, step.args, force_eval=True, route=step.route)


def _sleep(step: Sleep) -> None:
    time.sleep(step.seconds)


def _command(step: Command) -> Any:
    return client_of(step.via).execute_command(*step.args)


def _script(step: Script) -> Any:
    return lua(step.name)(client_of(step.via), step.keys, step.args,
                          force_eval=step.force_eval, route=step.route)


def _batch(step: Batch) -> Any:
    conn = client_of(step.via)
    if step.transaction and is_cluster_client(conn):
        # a refused MULTI/EXEC (TRYAGAIN while its slot moves) ran nothing: send it again
        return _retry_while_slot_moves(lambda: _batch_once(conn, step))
    return _batch_once(conn, step)


def _batch_once(conn: Any, step: Batch) -> Any:
    pipe = conn.pipeline(step.transaction)
    try:
        for item in step.steps:
            _queue(pipe, item)
        return pipe.execute(raise_on_error=step.raise_on_error)
    finally:
        pipe.reset()


def _scatter(step: Scatter) -> Any:
    from ._shard_batch import serve
    return serve(list(step.groups))


def _resend(step: Resend) -> Any:
    from ._shard_batch import again
    return again(client_of(step.via), step.job)


# the blocking driver's work per kind of step (one dict lookup instead of an isinstance chain)
_BLOCKING_WORK: Dict[type, Callable[[Any], Any]] = {
    Command: _command, Script: _script, Batch: _batch, ClientOf: lambda step: client_of(step.via),
    Sleep: _sleep, Scatter: _scatter, Resend: _resend,
}


def run_step(step: Step) -> Any:
    """Do one step with the blocking client; returns the reply."""
    work = _BLOCKING_WORK.get(type(step))
    if work is None:
        raise TypeError('not a rom I/O step: %r' % (step,))
    return work(step)


class _Done(NamedTuple):
    value: Any


def _advance(operation: Operation[Any], reply: Any, error: Optional[BaseException]) -> Any:
    """The operation's next step after ``reply`` (or ``error``), or ``_Done(result)``."""
    try:
        return operation.send(reply) if error is None else operation.throw(error)
    except StopIteration as stop:
        return _Done(stop.value)


def run(operation: Operation[R]) -> R:
    """Drive ``operation`` to its end with blocking I/O; returns its result."""
    reply, error = None, None
    while True:
        step = _advance(operation, reply, error)
        if type(step) is _Done:
            return step.value  # type: ignore[no-any-return]
        try:
            reply, error = run_step(step), None
        except Exception as exc:  # delivered at the operation's yield
            reply, error = None, exc


#: True while the asyncio driver advances an operation (pure code that must not block,
#: such as the sharding hooks of the write plan, checks it)
IN_ARUN: ContextVar[bool] = ContextVar('rom_in_arun', default=False)


async def arun(operation: Operation[R]) -> R:
    """Drive ``operation`` to its end with asyncio I/O; returns its result."""
    from ._aio_driver import arun_step
    reply, error = None, None
    while True:
        token = IN_ARUN.set(True)
        try:
            step = _advance(operation, reply, error)
        finally:
            IN_ARUN.reset(token)
        if type(step) is _Done:
            return step.value  # type: ignore[no-any-return]
        try:
            reply, error = await arun_step(step), None
        except Exception as exc:  # delivered at the operation's yield
            reply, error = None, exc
