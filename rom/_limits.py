"""Upper bounds of the sizes a user chooses (pure: no I/O).

* ``MAX_SHARDS`` (1024) -- ``_shards = N`` and ``python -m rom reshard --shards N``. Every
  shard is a class and a hash slot, and a query or a ``count()`` of a sharded model visits
  every shard; 1024 gives one shard per master to the largest cluster Redis Cluster is
  designed for (1,000 nodes) while keeping a query's fan-out bounded.
* ``MAX_BLOCK_SIZE`` (100,000) -- ``--block-size`` of the maintenance commands and the
  block size of :class:`rom._migrate.Migration` (rows read or written per round trip). One
  block is one pipelined reply or one script call the server runs without serving anyone
  else: beyond 100,000 rows that pause and the reply's memory grow with no gain in speed.
* ``MAX_IDS_PER_BLOCK`` (1,000,000) -- a model's ``_ids_per_block``. A block's unused ids
  are gaps once its process exits, and the counter is a 64-bit integer: a bound keeps the
  gaps of restarts small and the counter far from its end.
"""
from __future__ import annotations

from typing import Any, Optional

__all__ = ['MAX_SHARDS', 'MAX_BLOCK_SIZE', 'MAX_IDS_PER_BLOCK', 'size_problem']

MAX_SHARDS = 1024
MAX_BLOCK_SIZE = 100_000
MAX_IDS_PER_BLOCK = 1_000_000


def size_problem(value: Any, high: int) -> Optional[str]:
    """None when ``value`` is an ``int`` from 1 to ``high``, else what is wrong with it
    (``'must be at most 1024, not 1025'``), to end an error message."""
    if type(value) is not int:
        return 'must be a whole number from 1 to %d, not %r' % (high, value)
    if value < 1:
        return 'must be at least 1, not %d' % (value,)
    if value > high:
        return 'must be at most %d, not %d' % (high, value)
    return None
