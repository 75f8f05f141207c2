"""Command line maintenance tool: ``python -m rom COMMAND MODEL...`` (reindex, clean, check,
expire, migrate, reshard).

Models are named ``package.module:ClassName``. The Redis server is the one rom would use
(``ROM_REDIS_URI``) unless ``--url`` is given; models that declare their own ``_conn`` keep
it. Progress goes to stderr, only when stderr is a terminal, and ``--quiet`` silences it.

Exit codes: 0 success (and, for ``check``, no findings); 1 ``check`` found problems;
2 usage error (bad arguments, a model that cannot be imported or is not a rom model);
3 the job failed (Redis unreachable, or an error raised while it ran).
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

import redis

from . import util
from ._audit import KINDS, audit_model
from ._cluster import PendingClusterClient
from ._expiry import ExpiryJob
from ._limits import MAX_BLOCK_SIZE, MAX_SHARDS, size_problem
from ._maintenance import ProgressLine, clean_old_index, clean_unsafe_cols, refresh_indices
from ._migrate import Migration, MigrationSummary
from ._reindex import ReindexSummary
from ._repair import repair_model
from ._registry import EntityMeta
from ._relations import UnsafeColumn
from .exceptions import ORMError
from ._shard_cli import add_parser as add_reshard_parser
from ._shard_cli import expand as expand_shards

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_FAILED = 3


class UsageError(Exception):
    """A command line problem reported with exit code 2."""


def load_model(spec: str) -> Any:
    """Import ``package.module:ClassName`` and return the model class.

    Raises:
        UsageError: the text is malformed, the module cannot be imported, the class is
            missing or it is not a rom model.
    """
    module_name, sep, class_name = spec.partition(':')
    if not sep or not module_name or not class_name:
        raise UsageError('model %r must be written as package.module:ClassName' % (spec,))
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError('cannot import module %r for model %r: %s: %s'
                         % (module_name, spec, type(exc).__name__, exc))
    for part in class_name.split('.'):
        if not hasattr(obj, part):
            raise UsageError('module %r has no attribute %r (model %r)'
                             % (module_name, class_name, spec))
        obj = getattr(obj, part)
    if not isinstance(obj, EntityMeta):
        raise UsageError('%r is not a rom model class (got %r)' % (spec, obj))
    return obj


# --------------------------------------------------------------------------- progress

class _Reporter:
    """Progress on stderr (terminal only, unless quiet) and messages on stdout."""

    def __init__(self, quiet: bool, stderr: TextIO, stdout: TextIO) -> None:
        self.quiet = quiet
        self.stderr = stderr
        self.stdout = stdout
        self.live = not quiet and _isatty(stderr)

    def line(self, label: str) -> Optional[ProgressLine]:
        if not self.live:
            return None
        return ProgressLine(stream=self.stderr, bar=30, label=label + ' ')

    def run(self, label: str, job: Any) -> int:
        """Consume a ``(done, total)`` job, showing progress; returns the last ``done``."""
        progress = self.line(label)
        last = 0
        for done, total in job:
            last = done
            if progress is not None:
                progress.update(done, total)
        if progress is not None:
            progress.finish()
        return last

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stdout)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


# --------------------------------------------------------------------------- commands

def _cmd_reindex(models: List[Any], args: argparse.Namespace, out: _Reporter) -> int:
    """rebuild the indexes of models by re-saving every entity

    Re-save every entity of each model so that its index entries and its -index-data-
    bookkeeping are rebuilt (refresh_indices). Use after adding or changing an index,
    or to migrate legacy <ns>:: data.
    """
    for model in models:
        start = time.time()
        summary = ReindexSummary()
        done = out.run('reindex %s' % model._namespace,
                       refresh_indices(model, block_size=args.block_size, scan=not args.no_scan,
                                       summary=summary))
        out.say('%s: indexes rebuilt (%d ids handled, %d rows indexed, in %.1fs)'
                % (model._namespace, done, summary.rows, time.time() - start))
        for line in summary.lines():  # changes and skipped rows are shown even with --quiet
            print('%s: %s' % (model._namespace, line), file=out.stdout)
    return EXIT_OK


def _cmd_clean(models: List[Any], args: argparse.Namespace, out: _Reporter) -> int:
    """remove index data left behind by deleted rows

    Remove legacy <ns>:: bookkeeping and unique-index fields that belong to rows which
    no longer exist (clean_old_index). With --unsafe, also delete UnsafeColumn keys
    whose row is gone (clean_unsafe_cols).
    """
    for model in models:
        start = time.time()
        out.run('clean %s' % model._namespace,
                clean_old_index(model, block_size=args.block_size))
        out.say('%s: stale legacy and unique index data removed (%.1fs)'
                % (model._namespace, time.time() - start))
    unsafe = [m for m in models if _has_unsafe_columns(m)]
    if args.unsafe and unsafe:
        examined, deleted = clean_unsafe_cols(*unsafe, block_size=max(args.block_size, 1000))
        out.say('unsafe columns of %s: %d keys examined, %d orphaned keys deleted'
                % (', '.join(m._namespace for m in unsafe), examined, deleted))
    elif args.unsafe:
        out.say('unsafe columns: no model given has an UnsafeColumn; nothing to examine')
    return EXIT_OK


def _has_unsafe_columns(model: Any) -> bool:
    return any(isinstance(col, UnsafeColumn) for col in model._columns.values())


def _cmd_check(models: List[Any], args: argparse.Namespace, out: _Reporter) -> int:
    """audit indexes against rows and report every problem

    Compare every row with the index entries it calls for, and every index entry with
    the row it names.
    """
    reports = []
    for model in models:
        lines: Dict[str, ProgressLine] = {}

        def progress(stage: str, done: int, total: int, _ns: str = model._namespace) -> None:
            line = lines.get(stage)
            if line is None:
                for previous in lines.values():
                    previous.finish()
                lines.clear()
                made = out.line('check %s %s' % (_ns, stage))
                if made is None:
                    return
                line = lines[stage] = made
            line.update(done, total)

        report = audit_model(model, block_size=args.block_size, progress=progress)
        for line in lines.values():
            line.finish()
        reports.append(report)
    if args.fix:
        return _fix(models, reports, args, out)
    if args.json:
        doc = [{'namespace': r.namespace, 'rows': r.rows, 'index_keys': r.index_keys,
                'entries': r.entries, 'counts': r.counts,
                'findings': [{'kind': f.kind, 'key': f.key, 'member': f.member, 'id': f.id,
                              'message': f.message} for f in r.findings]}
               for r in reports]
        print(json.dumps(doc, indent=2, sort_keys=True), file=out.stdout)
    else:
        for report in reports:
            for finding in report.findings:
                print('%s: %s' % (finding.kind, finding.message), file=out.stdout)
            if not out.quiet:
                print(report.summary(), file=out.stdout)
    return EXIT_FINDINGS if any(not r.ok for r in reports) else EXIT_OK


def _fix(models: List[Any], reports: List[Any], args: argparse.Namespace, out: _Reporter
         ) -> int:
    """``check --fix``: print the findings, repair them (or list the repairs with
    ``--dry-run``), then check again and print what is left."""
    for report in reports:
        for finding in report.findings:
            print('%s: %s' % (finding.kind, finding.message), file=out.stdout)
        print(report.summary(), file=out.stdout)
    remaining = 0
    for model, report in zip(models, reports):
        if report.ok:
            continue
        progress = out.line('fix %s' % (model._namespace,))
        summary = repair_model(model, report, dry_run=args.dry_run,
                               progress=progress.update if progress else None)
        if progress is not None:
            progress.finish()
        for line in summary.lines():
            print(line, file=out.stdout)
        if args.dry_run:
            remaining += len(report.findings)
            continue
        after = audit_model(model, block_size=args.block_size)
        for finding in after.findings:
            print('still: %s: %s' % (finding.kind, finding.message), file=out.stdout)
        print('after repair: ' + after.summary(), file=out.stdout)
        remaining += len(after.findings)
    return EXIT_FINDINGS if remaining else EXIT_OK


def _cmd_expire(models: List[Any], args: argparse.Namespace, out: _Reporter) -> int:
    """remove expired entities (models with _ttl)

    Remove every entity whose expiry time has passed, each atomically with its index
    entries, unique claims and bookkeeping; on_delete policies apply as for a delete.
    Safe to run while applications write, and from several processes at once.
    """  # (rom._expiry.ExpiryJob)
    without = [m._namespace for m in models if getattr(m, '_ttl', None) is None]
    if without:
        raise UsageError('%s: the model does not declare _ttl, so nothing of it expires'
                         % (', '.join(without),))
    for model in models:
        start = time.time()
        job = ExpiryJob(model, block_size=args.block_size)
        out.run('expire %s' % model._namespace, job)
        kept = (', %d kept by on_delete=restrict references' % job.blocked) if job.blocked else ''
        out.say('%s: %d expired entities removed%s (%.1fs)'
                % (model._namespace, job.removed, kept, time.time() - start))
    return EXIT_OK


def _cmd_migrate(models: List[Any], args: argparse.Namespace, out: _Reporter) -> int:
    """copy rows from the old keys into cluster mode (_cluster models)

    Copy every row of each model from its old, non-cluster keys (<old namespace>:<id>,
    on --source-url or the model's own server) into the cluster-mode layout the model
    now declares, with the same ids, through rom's write path (indexes, unique claims,
    bookkeeping). Rows already copied are left alone, so running it again after a crash
    or an interruption finishes the job. The old keys are not changed. Then compare
    both sides and audit the indexes (exit 1 on any finding).
    """  # (rom._migrate)
    if args.from_namespace and len(models) > 1:
        raise UsageError('--from-namespace names the old keys of one model; give one MODEL')
    source: Any = None
    if args.source_cluster and not args.source_url:
        raise UsageError('--source-cluster needs --source-url')
    if args.source_url:
        from redis.cluster import RedisCluster
        source = (RedisCluster.from_url(args.source_url) if args.source_cluster
                  else redis.Redis.from_url(args.source_url))
    failed = False
    try:
        for model in models:
            try:
                job = Migration(model, source, args.from_namespace, args.block_size)
            except ORMError as exc:
                raise UsageError(str(exc))
            start = time.time()
            summary = MigrationSummary()
            label = '%s %s -> %s' % ('dry run' if args.dry_run else 'migrate', job.old,
                                     model._namespace)
            out.run(label, job.run(summary, dry_run=args.dry_run,
                                   delete_extra=args.delete_extra))
            print('%s -> %s: %s (%.1fs)' % (job.old, model._namespace,
                                            summary.line(args.dry_run), time.time() - start),
                  file=out.stdout)
            for i, reason in summary.failed:
                print('not copied: %s:%d: %s' % (job.old, i, reason), file=out.stdout)
            failed = failed or bool(summary.failed)
            if args.dry_run or args.no_audit:
                continue
            audit = job.audit(args.block_size)
            for line in audit.lines():
                print('%s: %s' % (model._namespace, line), file=out.stdout)
            failed = failed or not audit.ok
    finally:
        if source is not None:
            source.close()
    return EXIT_FINDINGS if failed else EXIT_OK


# --------------------------------------------------------------------------- parser

_DESCRIPTION = """\
Maintenance for rom models stored in Redis.

  reindex  re-save every entity so its index entries are rebuilt (after adding or
           changing an index, or to migrate legacy index data)
  clean    remove index data left behind by deleted rows (legacy <ns>:: bookkeeping and
           unique-index fields); --unsafe also deletes orphaned UnsafeColumn keys
  check    audit the indexes against the rows and list every problem found
  expire   remove the expired entities of models that declare _ttl
  migrate  copy the rows of models now in cluster mode from their old keys (and server)
  reshard  move the rows of sharded models to another shard count (--shards N)

Models are named package.module:ClassName (the module must be importable, e.g. through
PYTHONPATH). The server is ROM_REDIS_URI (default redis://localhost:6379/0) unless --url
is given; a model with its own _conn keeps it.
"""

_EPILOG = """\
exit codes: 0 success (check: no problems), 1 check found problems, 2 usage error
(bad arguments or model), 3 the job failed (e.g. Redis unreachable).
"""


def _sized(high: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number from 1 to ``high`` (rom._limits)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError('%r is not a whole number' % (text,))
        problem = size_problem(value, high)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value
    parse.__name__ = 'whole number'  # (argparse names the type in some messages)
    return parse


Option = Tuple[Tuple[str, ...], Dict[str, Any]]


def switch(flag: str, help: str, **kwargs: Any) -> Option:
    """A ``store_true`` option for :func:`add_command`."""
    return (flag,), dict(action='store_true', help=help, **kwargs)


def add_command(sub: Any, name: str, func: Callable[..., int], default_block: int,
                options: Sequence[Option] = (), epilog: str = _EPILOG, details: str = '',
                **defaults: Any) -> argparse.ArgumentParser:
    """Add subcommand ``name`` running ``func``: MODEL..., ``--url``, ``--block-size``
    (default ``default_block``, at most ``MAX_BLOCK_SIZE``), ``--quiet``, then
    ``options`` (``(flags, add_argument keywords)`` pairs); ``defaults`` are set too.

    The first paragraph of ``func``'s docstring is the command's help line, the rest
    (then ``details``) its description."""
    summary, _, rest = inspect.cleandoc(func.__doc__ or '').partition('\n\n')
    parser = sub.add_parser(name, help=' '.join(summary.split()), description=rest + details,
                            epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('models', metavar='MODEL', nargs='+',
                        help='model class as package.module:ClassName (one or more)')
    parser.add_argument('--url', metavar='URL',
                        help='Redis URL to use instead of ROM_REDIS_URI, e.g. '
                             'redis://localhost:6379/0 (models with their own _conn keep it)')
    parser.add_argument('--block-size', metavar='N', type=_sized(MAX_BLOCK_SIZE),
                        default=default_block,
                        help='rows or entries handled per round trip, 1 to %d (default '
                             '%%(default)s)' % (MAX_BLOCK_SIZE,))
    parser.add_argument('-q', '--quiet', action='store_true',
                        help='no progress bar, notes or summary lines (check still prints '
                             'its findings)')
    for flags, kwargs in options:
        parser.add_argument(*flags, **kwargs)
    parser.set_defaults(func=func, **defaults)
    return parser


_CHECK_EPILOG = ('exit codes: 0 no problems, 1 problems found, 2 usage error, 3 the check\n'
                 'failed (e.g. Redis unreachable).')


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m rom`` argument parser."""
    parser = argparse.ArgumentParser(
        prog='python -m rom', description=_DESCRIPTION, epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    add_command(
        sub, 'reindex', _cmd_reindex, 1000,
        [switch('--no-scan', 'walk the ids 1..<id counter> instead of finding rows with SCAN')])
    add_command(
        sub, 'clean', _cmd_clean, 100,
        [switch('--unsafe', 'also delete orphaned UnsafeColumn keys (<ns>:<id>:<attr>)')])
    add_command(
        sub, 'check', _cmd_check, 1000,
        [switch('--json', 'print the findings as JSON instead of text'),
         switch('--fix', 'repair what was found: rewrite the index entries of rows whose '
                         'entries are wrong, remove entries and unique claims of missing '
                         "rows or that rows no longer call for, apply a reference column's "
                         'on_delete to references to missing rows; row fields are never '
                         'rewritten otherwise. Then check again (exit 0 when clean)'),
         switch('--dry-run', 'with --fix: list the repairs without writing anything')],
        epilog=_CHECK_EPILOG, details='\n\nProblem kinds:\n\n' + '\n'.join(
            '  %-17s %s' % (kind, text) for kind, text in KINDS.items()))
    add_command(
        sub, 'expire', _cmd_expire, 100)
    add_command(
        sub, 'migrate', _cmd_migrate, 500,
        [(('--from-namespace',), dict(
            metavar='NS', help='namespace of the old keys (default: the class name)')),
         (('--source-url',), dict(
             metavar='URL', help='Redis URL of the server holding the old keys (default: '
                                 'the destination)')),
         switch('--source-cluster', '--source-url names a node of a Redis Cluster'),
         switch('--dry-run', 'count what would be created, updated or left; write nothing'),
         switch('--delete-extra', 'also delete the destination rows whose old row is gone (a '
                                  'final sync before switching over; never once the '
                                  'application writes the new layout)'),
         switch('--no-audit', 'skip the final comparison and index audit')],
        fix=False, json=False)
    add_reshard_parser(sub, add_command, switch, _sized(MAX_SHARDS))  # sharding hook
    return parser


def main(argv: Optional[Sequence[str]] = None, stdout: Optional[TextIO] = None,
         stderr: Optional[TextIO] = None) -> int:
    """Run the command line tool; returns the exit code."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    if getattr(args, 'dry_run', False) and not args.fix and args.command != 'migrate':
        print('%s: error: --dry-run needs --fix' % (parser.prog,), file=stderr)
        return EXIT_USAGE
    if getattr(args, 'fix', False) and args.json:
        print('%s: error: --fix cannot be combined with --json' % (parser.prog,), file=stderr)
        return EXIT_USAGE
    try:
        models = [load_model(spec) for spec in args.models]
        models = expand_shards(models, args.command)  # sharding hook: jobs walk the shards
    except UsageError as exc:
        print('%s: error: %s' % (parser.prog, exc), file=stderr)
        return EXIT_USAGE
    if args.url:
        try:
            util.CONNECTION = (PendingClusterClient(args.url) if util.REDIS_CLUSTER
                               else redis.Redis.from_url(args.url))  # ROM_REDIS_CLUSTER=1
        except ValueError as exc:
            print('%s: error: invalid --url %r: %s' % (parser.prog, args.url, exc), file=stderr)
            return EXIT_USAGE
        for model in models:
            if hasattr(model, '_conn') and not args.quiet:
                print('note: model %s has its own _conn; --url does not apply to it'
                      % (model._namespace,), file=stderr)
    out = _Reporter(args.quiet, stderr, stdout)
    try:
        func: Callable[..., int] = args.func
        return func(models, args, out)
    except UsageError as exc:
        print('%s: error: %s' % (parser.prog, exc), file=stderr)
        return EXIT_USAGE
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        # (a read timeout is a TimeoutError or a ConnectionError depending on redis-py)
        print('%s: error: cannot reach Redis: %s' % (parser.prog, exc), file=stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print('\n%s: interrupted' % (parser.prog,), file=stderr)
        return 130
    except Exception as exc:
        print('%s: error: %s failed: %s: %s' % (parser.prog, args.command,
                                                type(exc).__name__, exc), file=stderr)
        return EXIT_FAILED
