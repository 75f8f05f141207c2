"""``python -m rom`` and sharded models: maintenance jobs walk every shard; ``reshard``.

Hooked into ``rom._cli`` by two calls: :func:`add_parser` (the ``reshard`` command) and
:func:`expand` (``reindex``/``clean``/``check``/``expire`` given a sharded model work on
each of its shard classes, which hold its rows and indexes).
"""
from __future__ import annotations

import argparse
import time
from typing import Any, List

from ._limits import MAX_SHARDS

__all__ = ['add_parser', 'expand']


def expand(models: List[Any], command: str) -> List[Any]:
    """The shard classes in place of each sharded model (except for ``reshard``)."""
    from ._shard import is_sharded
    if command == 'reshard':
        return models
    out: List[Any] = []
    for model in models:
        out.extend(model._shard_models if is_sharded(model) else [model])
    return out


def _cmd_reshard(models: List[Any], args: argparse.Namespace, out: Any) -> int:
    """move the rows of sharded models to another shard count

    Move every row of each sharded model whose shard changes to its shard under the
    new count (row, indexes and unique index in one atomic call per row, then the old
    copy is deleted). Application processes refuse the model while it runs (a write
    pause); re-run it after a crash. Afterwards declare _shards = <new count>.
    """
    from ._cli import EXIT_OK, UsageError
    from ._shard import is_sharded
    from ._shard_reshard import ReshardSummary, reshard
    for model in models:
        if not is_sharded(model):
            raise UsageError('%s is not a sharded model (it declares no _shards)'
                             % (model.__name__,))
    for model in models:
        start = time.time()
        summary: List[ReshardSummary] = []
        out.run('reshard %s' % model.__name__,
                reshard(model, args.shards, args.reshard_dry_run, args.block_size, summary))
        done = summary[0]
        out.say('%s: %d rows, %d %s from %d to %d shards (%.1fs)%s' % (
            model.__name__, done.rows, done.moved,
            'would move' if args.reshard_dry_run else 'moved', done.old, done.new,
            time.time() - start,
            '' if args.reshard_dry_run else '; now declare _shards = %d' % (done.new,)))
    return EXIT_OK


def add_parser(sub: Any, add_command: Any, switch: Any, shard_count: Any) -> None:
    """Add the ``reshard`` command to the ``python -m rom`` subparsers (``add_command`` and
    ``switch`` build commands as ``rom._cli`` does; ``shard_count`` parses ``--shards``)."""
    add_command(
        sub, 'reshard', _cmd_reshard, 500,
        [(('--shards',), dict(type=shard_count, required=True, metavar='N',
                              help='the new shard count, 1 to %d' % (MAX_SHARDS,))),
         switch('--dry-run', 'count the rows that would move; write nothing',
                dest='reshard_dry_run')])
