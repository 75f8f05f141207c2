"""Lua script loading: ``_script_load`` and the registry of rom's own scripts.

Scripts live in ``rom/scripts/*.lua``; each is wrapped once and called with an explicit
client. Calls use EVALSHA and fall back to EVAL when the server answers NOSCRIPT (after
``SCRIPT FLUSH``, a restart or a failover). Inside a pipeline the script is queued as EVAL,
so it runs whether or not that server has it cached (fixes reference bug util #9).
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Callable, Dict, Sequence, Set, Union

from redis.client import Pipeline
from redis.exceptions import NoScriptError, ResponseError

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
    sent = [False]
    sent_nodes: Set[str] = set()  # on a cluster: the nodes this process sent the source to

    def call(conn: Any, keys: Sequence[Any] = (), args: Sequence[Any] = (),
             force_eval: bool = False, route: Any = None) -> Any:
        keys = tuple(route_keys(conn, keys, route))
        args = tuple(args)
        if isinstance(conn, Pipeline) or is_cluster_pipeline(conn):
            # EVAL, not EVALSHA: a queued EVALSHA fails at EXEC on a server that has not cached
            # the script (SCRIPT FLUSH, restart, failover), after the other commands ran.
            conn.execute_command('EVAL', source, len(keys), *keys, *args)
            return conn
        first = not sent[0]
        if keys and is_cluster_client(conn):  # each node caches scripts on its own
            node = node_name(conn, keys[0])
            first = node not in sent_nodes
            sent_nodes.add(node)
        if force_eval or first:
            sent[0] = True
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
