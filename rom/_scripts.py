"""Lua script loading: ``_script_load`` and the registry of rom's own scripts.

Scripts live in ``rom/scripts/*.lua``; each is wrapped once and called with an explicit
client. Calls use EVALSHA and fall back to EVAL when the server answers NOSCRIPT (after
``SCRIPT FLUSH``, a restart or a failover). Inside a pipeline the script is queued as EVAL,
so it runs whether or not that server has it cached (fixes reference bug util #9).
"""
from __future__ import annotations

import hashlib
import os
import time
from typing import Any, Callable, Dict, Sequence, Set, Union

from redis.client import Pipeline
from redis.exceptions import ClusterError, NoScriptError, ResponseError, TryAgainError

from ._cluster import is_cluster_client, is_cluster_pipeline, node_name, route_keys

NO_SCRIPT_MESSAGES = ['NOSCRIPT', 'No matching script.']
_SCRIPT_DIR = os.path.join(os.path.dirname(__file__), 'scripts')


ScriptCall = Callable[..., Any]


def _is_no_script(err: ResponseError) -> bool:
    # redis-py maps the server's NOSCRIPT error to NoScriptError (and strips the code from
    # the message); a client with another reply parser may hand over a plain ResponseError.
    if isinstance(err, NoScriptError):
        return True
    message = str(err)
    return any(message.startswith(prefix) for prefix in NO_SCRIPT_MESSAGES)


def _script_load(script: Union[str, bytes]) -> ScriptCall:
    """Wrap a Lua source; returns ``call(conn, keys=[], args=[], force_eval=False, route=None)``.

    ``route`` is a key of the slot a keyless script works on: a Redis Cluster client gets it
    as the only key (to route the call); other clients never see it.
    """
    source = script.encode('utf-8') if isinstance(script, str) else script
    sha = hashlib.sha1(source).hexdigest()
    # where this process sent the source (each server caches scripts on its own): the
    # connection pools of plain clients, the node names of a cluster's masters
    sent_to: Set[Any] = set()

    def call(conn: Any, keys: Sequence[Any] = (), args: Sequence[Any] = (),
             force_eval: bool = False, route: Any = None) -> Any:
        keys = tuple(route_keys(conn, keys, route))
        args = tuple(args)
        if isinstance(conn, Pipeline) or is_cluster_pipeline(conn):
            # EVAL, not EVALSHA: a queued EVALSHA fails at EXEC on a server that has not cached
            # the script (SCRIPT FLUSH, restart, failover), after the other commands ran.
            conn.execute_command('EVAL', source, len(keys), *keys, *args)
            return conn
        if keys and is_cluster_client(conn):
            return _retry_while_slot_moves(lambda: _call_node(conn, keys, args, force_eval))
        server = id(getattr(conn, 'connection_pool', conn))
        first = server not in sent_to
        sent_to.add(server)
        return _call(conn, keys, args, force_eval or first)

    def _call_node(conn: Any, keys: Sequence[Any], args: Sequence[Any],
                   force_eval: bool) -> Any:
        node = node_name(conn, keys[0])  # each node caches scripts on its own
        first = node not in sent_to
        sent_to.add(node)
        return _call(conn, keys, args, force_eval or first)

    def _call(conn: Any, keys: Sequence[Any], args: Sequence[Any], force_eval: bool) -> Any:
        if force_eval:
            return conn.execute_command('EVAL', source, len(keys), *keys, *args)
        try:
            return conn.execute_command('EVALSHA', sha, len(keys), *keys, *args)
        except ResponseError as err:
            if not _is_no_script(err):
                raise
            return conn.execute_command('EVAL', source, len(keys), *keys, *args)

    call.sha = sha  # type: ignore[attr-defined]
    call.script = source  # type: ignore[attr-defined]
    return call


#: how long a script call on Redis Cluster waits for a move of its slot to end (seconds)
SLOT_MOVE_WAIT = 60.0


def _retry_while_slot_moves(call: Callable[[], Any]) -> Any:
    """``call()``, again while the cluster refuses it because its slot is being moved.

    redis-py follows ``MOVED``/``ASK`` and retries ``TRYAGAIN`` a few times, then raises
    ``ClusterError('TTL exhausted.')``; a keyless rom script is refused (``TRYAGAIN``) for
    as long as its slot moves (see ``rom._cluster.route_keys``) and did not run, so it is
    sent again, for up to ``SLOT_MOVE_WAIT`` seconds.
    """
    deadline = time.monotonic() + SLOT_MOVE_WAIT
    pause = 0.0
    while True:
        try:
            return call()
        except (TryAgainError, ClusterError) as err:
            pause = slot_move_pause(err, deadline, pause)
        time.sleep(pause)


def slot_move_pause(err: Exception, deadline: float, pause: float) -> float:
    """The pause before sending again a script call that ``err`` refused (the next one
    after ``pause``); raises ``err`` unless its slot is moving and ``deadline`` is ahead.
    Shared by the blocking and the asyncio drivers."""
    if isinstance(err, ClusterError) and 'TTL exhausted' not in str(err):
        raise err
    if not isinstance(err, (TryAgainError, ClusterError)):
        raise err
    pause = min(pause * 2, 0.2) if pause else 0.01
    if time.monotonic() + pause > deadline:
        raise err
    return pause


_LOADED: Dict[str, ScriptCall] = {}


_INCLUDE = b'-- include: '


def _read_script(filename: str) -> bytes:
    """A script's source; a first line ``-- include: <file>`` prepends that shared file."""
    with open(os.path.join(_SCRIPT_DIR, filename), 'rb') as handle:
        source = handle.read()
    if source.startswith(_INCLUDE):
        first_line = source.split(b'\n', 1)[0]
        source = _read_script(first_line[len(_INCLUDE):].strip().decode('ascii')) + source
    return source


def lua(name: str) -> ScriptCall:
    """The wrapped script ``rom/scripts/<name>.lua`` (read and wrapped once)."""
    call = _LOADED.get(name)
    if call is None:
        call = _LOADED[name] = _script_load(_read_script(name + '.lua'))
    return call
