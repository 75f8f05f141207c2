"""``python -m rom reshard``: rows move to another shard count; queries, unique lookups and
the audit agree with an unsharded twin afterwards; an interrupted job is re-run."""
from __future__ import annotations

import io
import random
from typing import Any, List

import pytest

import rom
import rom.util
from rom import util
from rom._audit import audit_model
from rom._cli import main
from rom._shard import forget_checks
from rom._shard_reshard import reshard
from rom.exceptions import ORMError
from rom.testing import restore_model_registry

import shard_cli_models as models

pytestmark = pytest.mark.cluster


def cli(*argv: str) -> Any:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue() + err.getvalue()


def redeclare(shards: int) -> Any:
    """The application restarted with ``_shards = shards`` (and the twin kept)."""
    flat = rom.columns.MODELS['FlatThing']
    restore_model_registry(({}, {}))
    forget_checks()
    util.session.rollback()
    rom.columns.MODELS['FlatThing'] = rom.columns.MODELS[flat._namespace] = flat
    return models.declare(shards)


def ids(items: Any) -> List[int]:
    return [e.id for e in items]


def same_results(sharded: Any, flat: Any, conn: Any) -> None:
    util.session.rollback()
    assert ids(sharded.query.all()) == ids(flat.query.all())
    for query in (lambda m: m.query.order_by('-n').limit(3, 20),
                  lambda m: m.query.filter(name='b').order_by('n'),
                  lambda m: m.query.startswith(name='a').filter(n=(10, 60))):
        assert ids(query(sharded)) == ids(query(flat)) or \
            sorted(ids(query(sharded))) == sorted(ids(query(flat)))
    for entity in flat.query.all():
        assert sharded.get_by(email=entity.email).id == entity.id
    for shard in sharded._shard_models:
        report = audit_model(shard, block_size=50)
        assert report.ok, report.summary()
        keys = list(conn.scan_iter(match='%s:*' % (shard._namespace,)))
        assert all(int(k.decode().rpartition(':')[2]) % len(sharded._shard_models) ==
                   shard._shard_index for k in keys if k.decode().rpartition(':')[2].isdigit())


def fill(sharded: Any, flat: Any, count: int) -> None:
    rng = random.Random(4)
    for i in range(count):
        row = dict(email='t%d@x' % i, n=rng.randint(0, 99),
                   name=' '.join(rng.sample(['a', 'b', 'c', 'ab', 'bc'], 2)))
        sharded(**row).save()
        flat(**row).save()
    for ident in (3, 17, 40):
        sharded.get(ident).delete()
        flat.get(ident).delete()
    util.session.rollback()


def test_reshard_grow_and_shrink(cconn: Any) -> None:
    sharded, flat = models.declare(4), models.declare_flat()
    fill(sharded, flat, 90)
    code, text = cli('reshard', 'shard_cli_models:Thing', '--shards', '7', '--dry-run')
    assert code == 0 and 'would move' in text and cconn.get('{Thing}:shards') == b'4'
    code, text = cli('reshard', 'shard_cli_models:Thing', '--shards', '7')
    assert code == 0, text
    assert '87 rows' in text and 'declare _shards = 7' in text
    assert cconn.get('{Thing}:shards') == b'7'
    forget_checks()
    with pytest.raises(ORMError, match='_shards = 4'):
        sharded.query.order_by('n').count()  # the old declaration is refused
    sharded = redeclare(7)
    same_results(sharded, flat, cconn)
    assert cli('check', 'shard_cli_models:Thing')[0] == 0  # the audit walks every shard
    code, text = cli('reshard', 'shard_cli_models:Thing', '--shards', '3')
    assert code == 0, text
    sharded = redeclare(3)
    same_results(sharded, flat, cconn)
    sharded(email='new@x', n=1, name='c').save()
    flat(email='new@x', n=1, name='c').save()
    same_results(sharded, flat, cconn)


def test_interrupted_reshard_is_refused_then_finished(cconn: Any) -> None:
    sharded, flat = models.declare(3), models.declare_flat()
    fill(sharded, flat, 60)
    job = reshard(sharded, 5, block_size=10)
    next(job)
    next(job)
    del job  # the process stopped here: some rows moved, the rest did not
    forget_checks()
    with pytest.raises(ORMError, match='being resharded'):
        sharded.get(5)
    code, text = cli('reshard', 'shard_cli_models:Thing', '--shards', '4')
    assert code == 3 and 'unfinished reshard from 3 to 5' in text
    code, text = cli('reshard', 'shard_cli_models:Thing', '--shards', '5')
    assert code == 0, text
    same_results(redeclare(5), flat, cconn)


def test_reshard_shard_count_and_block_bounds(cconn: Any) -> None:
    """reshard() and ``reshard --shards``: 1024 shards at most, blocks of 100,000 rows."""
    sharded, flat = models.declare(2), models.declare_flat()
    fill(sharded, flat, 45)
    with pytest.raises(ORMError, match='shard count must be at most 1024, not 1025'):
        next(reshard(sharded, 1025, dry_run=True))
    with pytest.raises(ORMError, match='block_size must be at most 100000, not 100001'):
        next(reshard(sharded, 4, dry_run=True, block_size=100_001))
    assert cli('reshard', 'shard_cli_models:Thing', '--shards', '1025')[0] == 2
    code, text = cli('reshard', 'shard_cli_models:Thing', '--shards', '1024', '--dry-run',
                     '--block-size', '100000')
    assert code == 0 and '42 rows' in text and 'from 2 to 1024 shards' in text, text
    assert cconn.get('{Thing}:shards') == b'2'


def test_reshard_usage_errors(cconn: Any) -> None:
    assert cli('reshard', 'tests_missing:X', '--shards', '2')[0] == 2
    code, text = cli('reshard', 'shard_cli_models:declare_flat', '--shards', '2')
    assert code == 2
