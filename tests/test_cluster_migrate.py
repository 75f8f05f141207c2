"""``python -m rom migrate``: rows from a model's old keys into cluster mode (rom._migrate).

Old rows are written by non-cluster models on a single server; the cluster-mode models
(tests/cluster_migrate_models.py) live on a real local 3-master cluster. Marked ``cluster``.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from typing import Any, Iterator, Tuple

import pytest
import redis

import rom
import rom.util
from rom import util
from rom._migrate import Migration, MigrationSummary
from rom.exceptions import ORMError, UniqueKeyViolation
from rom.testing import LocalCluster, restore_model_registry

pytestmark = pytest.mark.cluster

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS_DIR)


@pytest.fixture
def single(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the single test server (also in the ROM_TEST_CLUSTER run)."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def ccl(cluster: LocalCluster) -> Iterator[Any]:
    cluster.flushall()
    client = cluster.client()
    yield client
    util.session.rollback()
    client.close()


def write_old_rows(single: redis.Redis, authors: int = 6, posts: int = 30) -> None:
    """The old layout: non-cluster models Author/Post (namespaces 'Author', 'Post')."""
    restore_model_registry(({}, {}))

    class Author(rom.Model):
        _conn = single
        name = rom.Text(unique=True)
        posts = rom.OneToMany('Post', 'author')

    class Post(rom.Model):
        _conn = single
        author = rom.ManyToOne('Author', on_delete='cascade')
        title = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True)
        score = rom.Float(index=True)
        tags = rom.Json(default=list)
        notes = rom.UnsafeColumn()

    people = [Author(name='a%d' % i) for i in range(authors)]
    util.session.commit()
    for i in range(posts):
        post = Post(author=people[i % authors], title='hello post %d' % i, score=i / 2.0,
                    tags=['t%d' % (i % 3)])
        post.save()
        if i % 5 == 0:
            post.notes.rpush('n%d' % i, 'x')
    Post.get(posts).delete()  # a gap in the ids; the counter stays at `posts`
    util.session.rollback()
    restore_model_registry(({}, {}))


def new_models(conn: Any) -> Any:
    """tests/cluster_migrate_models.py, imported afresh with rom pointed at ``conn``."""
    restore_model_registry(({}, {}))
    rom.util.CONNECTION = conn
    if TESTS_DIR not in sys.path:
        sys.path.insert(0, TESTS_DIR)
    module = sys.modules.get('cluster_migrate_models')
    return importlib.reload(module) if module else importlib.import_module(
        'cluster_migrate_models')


def migrate(*argv: str, url: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ROM_REDIS_CLUSTER='1',
               PYTHONPATH=os.pathsep.join([TESTS_DIR, ROOT]))
    env.pop('ROM_REDIS_URI', None)
    return subprocess.run([sys.executable, '-m', 'rom', 'migrate', *argv, '--url', url],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def check_copied(m: Any, ccl: Any, posts: int = 29) -> None:
    util.session.rollback()
    assert len(m.Post.query.all()) == posts
    assert m.Author.get_by(name='a2').name == 'a2'
    assert sorted(p.id for p in m.Author.get_by(name='a1').posts) == [2, 8, 14, 20, 26]
    assert m.Post.get(8).author.name == 'a1'
    assert m.Post.get(10).tags == ['t0']
    assert m.Post.query.filter(title='post').count() == posts
    assert m.Post.query.startswith(title='hel').count() == posts
    assert sorted(p.id for p in m.Post.query.filter(score=(3, 4))) == [7, 8, 9]
    assert m.Post.get(11).notes.lrange(0, -1) == [b'n10', b'x']
    assert m.Post.get(30) is None
    with pytest.raises(UniqueKeyViolation):
        m.Author(name='a3').save()
    util.session.rollback()
    fresh = m.Post(author=m.Author.get(1), title='new', score=1.0)
    fresh.save()
    assert fresh.id > 30  # the id counter came along
    fresh.delete()
    util.session.rollback()
    slots = {ccl.keyslot(key) for key in ccl.scan_iter('{mig}*')}
    assert slots == {ccl.keyslot('{mig}')}


def test_cli_migrate_single_server_to_cluster(single: redis.Redis, ccl: Any,
                                              cluster: LocalCluster, redis_url: str) -> None:
    write_old_rows(single)
    before = sorted(single.keys('*'))
    models = ('cluster_migrate_models:Author', 'cluster_migrate_models:Post')
    dry = migrate(*models, '--source-url', redis_url, '--dry-run', url=cluster.url)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert 'Author -> {mig}:Author: 6 source rows: would create 6, update 0, 0 already ' \
        'copied' in dry.stdout, dry.stdout
    assert 'Post -> {mig}:Post: 29 source rows: would create 29' in dry.stdout
    counter = int(single.get('Post:id:'))  # ids are reserved in blocks: >= 30
    assert 'Post: 29 source rows: would create 29, update 0, 0 already copied; id counter ' \
        '0 -> %d' % counter in dry.stdout
    assert not list(ccl.scan_iter('*'))  # a dry run writes nothing

    done = migrate(*models, '--source-url', redis_url, '--block-size', '7', url=cluster.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '29 source rows: created 29, updated 0, 0 already copied, 6 UnsafeColumn keys ' \
        'copied; id counter 0 -> %d' % counter in done.stdout, done.stdout
    assert done.stdout.count('index audit: ') == 2, done.stdout
    assert sorted(single.keys('*')) == before  # the old keys are left as they were
    check_copied(new_models(ccl), ccl)

    again = migrate(*models, '--source-url', redis_url, url=cluster.url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert '29 source rows: created 0, updated 0, 29 already copied' in again.stdout
    single.delete('Post:3')  # deleted in the old layout after the copy
    stale = migrate(*models, '--source-url', redis_url, url=cluster.url)
    assert stale.returncode == 1 and '1 row(s) at the destination only: ids 3' in stale.stdout
    synced = migrate(*models, '--source-url', redis_url, '--delete-extra', url=cluster.url)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert '28 source rows: created 0, updated 0, 28 already copied, deleted 1 ' \
        'destination-only rows' in synced.stdout, synced.stdout


def test_interrupted_migration_resumes_without_duplicates(single: redis.Redis,
                                                          ccl: Any) -> None:
    write_old_rows(single)
    m = new_models(ccl)
    job = Migration(m.Post, source=single, block_size=4)
    first = MigrationSummary()
    for done, total in job.run(first):
        if done >= 12:
            break  # the process dies after three blocks
    assert (first.created, first.source_rows) == (12, 29)
    # a row changed and one deleted at the source after their copy, one added
    single.hset('Post:2', 'title', 'changed title')
    for _ in Migration(m.Author, source=single).run(MigrationSummary()):
        pass
    second = MigrationSummary()
    job = Migration(m.Post, source=single, block_size=4)
    for _ in job.run(second):
        pass
    assert (second.created, second.updated, second.unchanged) == (17, 1, 11), second
    assert not second.failed
    audit = job.audit(block_size=10)
    assert audit.ok, audit.lines()
    util.session.rollback()
    assert m.Post.query.filter(title='changed').count() == 1
    assert m.Post.query.filter(title='hello').count() == 28
    assert ccl.zcard('{mig}:Post:score:idx') == 29
    # a destination row the source does not have is reported by the audit, and deleted
    # (with its index entries) by a run with delete_extra
    single.delete('Post:5')
    audit = Migration(m.Post, source=single).audit()
    assert audit.extra == [5] and not audit.ok
    assert any('at the destination only' in line for line in audit.lines())
    dry = MigrationSummary()
    for _ in Migration(m.Post, source=single).run(dry, dry_run=True, delete_extra=True):
        pass
    assert (dry.deleted, dry.unchanged) == (1, 28) and ccl.exists('{mig}:Post:5')
    third = MigrationSummary()
    job = Migration(m.Post, source=single)
    for _ in job.run(third, delete_extra=True):
        pass
    assert (third.deleted, third.unchanged, third.failed) == (1, 28, [])
    assert 'deleted 1 destination-only rows' in third.line(False)
    assert not ccl.exists('{mig}:Post:5') and ccl.zscore('{mig}:Post:score:idx', '5') is None
    assert job.audit().ok


def test_migrate_on_one_server_and_refusals(single: redis.Redis) -> None:
    write_old_rows(single, authors=2, posts=4)
    m = new_models(single)  # cluster mode on a single server: the same server's old keys
    for model in (m.Author, m.Post):
        job = Migration(model)
        summary = MigrationSummary()
        for _ in job.run(summary):
            pass
        assert summary.created == summary.source_rows > 0
        assert job.audit().ok
    assert [p.id for p in m.Author.get(2).posts] == [2]  # (post 4 was deleted)
    with pytest.raises(ORMError, match='block_size must be at most 100000, not 100001'):
        Migration(m.Post, block_size=100_001)
    with pytest.raises(ORMError, match='block_size must be at least 1, not 0'):
        Migration(m.Post, block_size=0)
    summary = MigrationSummary()
    for _ in Migration(m.Post, block_size=100_000).run(summary):  # all rows in one block
        pass
    assert summary.unchanged == summary.source_rows > 0 and summary.created == 0
    with pytest.raises(ORMError, match='not a cluster-mode model'):
        Migration(type('Plain', (rom.Model,), {'x': rom.Integer()}))
    with pytest.raises(ORMError, match='_ttl'):
        Migration(type('Short', (rom.Model,), {'_cluster': True, '_ttl': 60,
                                               'x': rom.Integer()}))


def test_cli_migrate_usage_errors(cluster: LocalCluster) -> None:
    plain = migrate('cli_models:CliItem', url=cluster.url)
    assert plain.returncode == 2 and 'not a cluster-mode model' in plain.stderr
    two = migrate('cluster_migrate_models:Author', 'cluster_migrate_models:Post',
                  '--from-namespace', 'X', url=cluster.url)
    assert two.returncode == 2 and 'one MODEL' in two.stderr


def test_migrate_reads_old_keys_spread_over_a_cluster(ccl: Any) -> None:
    """The old rows may sit on a cluster too (every master is scanned; reads are pipelined
    over several slots)."""
    for i in range(1, 41):
        ccl.hset('Old:%d' % i, mapping={'id': i, 'name': 'n%d' % i})
    ccl.set('Old:id:', 45)
    assert len({ccl.get_node_from_key('Old:%d' % i).name for i in range(1, 41)}) == 3
    m = new_models(ccl)
    job = Migration(m.Author, source=ccl, from_namespace='Old', block_size=16)
    summary = MigrationSummary()
    for _ in job.run(summary):
        pass
    assert (summary.created, summary.counter) == (40, (0, 45))
    assert job.audit().ok
    util.session.rollback()
    assert m.Author.get_by(name='n17').id == 17
    assert ccl.get('{mig}:Author:id:') == b'45'
