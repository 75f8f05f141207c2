"""Maintenance jobs repair indexes and never damage rows (issue 19).

Each test damages a database the way it happens in practice (a referenced row deleted by
hand, index keys dropped, fields missing), runs a maintenance job, and compares full
database dumps: every row keeps its stored fields byte for byte; only index entries and
the ``-index-data-`` bookkeeping change, as rom 1.1.2's rules say.
"""
from __future__ import annotations

import json

import pytest

import rom
from rom import util
from rom._audit import audit_model
from rom._reindex import ReindexSummary
from rom.testing import dump_database

from test_cli import models  # noqa: F401  (fixture)

POLICIES = ['no action', 'restrict', 'cascade', 'set null', 'set default']
RELATIONS = ['ManyToOne', 'OneToOne']


def _rows(dump, ns):
    """Every row hash of ``ns`` without its bookkeeping field."""
    prefix = ns.encode() + b':'
    out = {}
    for key, (kind, value) in dump.items():
        rest = key[len(prefix):]
        if key.startswith(prefix) and rest.isdigit() and kind == b'hash':
            out[key] = {k: v for k, v in value.items() if k != b'-index-data-'}
    return out


def _blog(relation, policy):
    class Author(rom.Model):
        name = rom.Text(index=True, keygen=rom.FULL_TEXT)

    kwargs = {'on_delete': policy}
    if policy == 'set default':
        kwargs['default'] = None  # a nullable reference: its default is "no author"
    column = getattr(rom, relation)

    class Post(rom.Model):
        author = column('Author', **kwargs)
        title = rom.Text(index=True, keygen=rom.FULL_TEXT)
        views = rom.Integer(index=True)

    return Author, Post


@pytest.mark.parametrize('relation', RELATIONS)
@pytest.mark.parametrize('policy', POLICIES)
def test_reindex_keeps_a_reference_to_a_row_deleted_by_hand(conn, relation, policy):
    Author, Post = _blog(relation, policy)
    ann, bob = Author(name='ann'), Author(name='bob')
    util.session.commit()
    posts = [Post(author=ann if i % 2 else bob, title='post %d' % i, views=i)
             for i in range(1, 7)]
    util.session.commit()
    util.session.rollback()
    conn.delete('Author:%d' % ann.id)  # as a manual cleanup or a partial restore does
    before = dump_database(conn)

    summary = ReindexSummary()
    list(util.refresh_indices(Post, summary=summary))
    after = dump_database(conn)

    # rows: byte-identical (the author field of ann's posts included)
    assert _rows(after, 'Post') == _rows(before, 'Post')
    assert _rows(after, 'Author') == _rows(before, 'Author')
    for post in posts:
        assert conn.hget('Post:%d' % post.id, 'author') == (
            str(ann.id if post.views % 2 else bob.id).encode())
    # index entries: only the dangling reference lost its entry (rom 1.1.2's rule)
    orphans = {str(p.id).encode() for p in posts if p.views % 2}
    expected_idx = {m: s for m, s in before[b'Post:author:idx'][1] if m not in orphans}
    assert dict(after[b'Post:author:idx'][1]) == expected_idx
    for post in posts:
        data = json.loads(conn.hget('Post:%d' % post.id, '-index-data-'))
        assert ('author' in data[1]) == (post.views % 2 == 0)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    allowed = {b'Post:author:idx'} | {b'Post:%d' % p.id for p in posts if p.views % 2}
    assert changed <= allowed
    # the summary says what happened, and check reports the dangling references
    assert summary.dangling == {'author': 3} and summary.rows == 6 and not summary.skipped
    report = audit_model(Post)
    dangling = [f for f in report.findings if f.kind == 'dangling-reference']
    assert sorted(f.id for f in dangling) == sorted(o.decode() for o in orphans)
    # a second reindex changes nothing at all
    list(util.refresh_indices(Post))
    assert dump_database(conn) == after


def test_reindex_writes_declared_defaults_of_missing_fields_and_nothing_else(conn):
    class Item(rom.Model):
        n = rom.Integer(index=True)
        f = rom.Float(index=True)
        flag = rom.Boolean(default=True, index=True)
        label = rom.Text(default='none', index=True, keygen=rom.IDENTITY)
        blob = rom.Json()

    pipe = conn.pipeline(False)
    # stored texts a save would normalise ('5' for a Float, ' 7' for an Integer, spaced
    # JSON): a reindex must keep them as they are
    pipe.hset('Item:1', mapping={'id': '1', 'n': '7', 'f': '5', 'blob': '{"a":  1}'})
    pipe.hset('Item:2', mapping={'id': '2', 'n': '8', 'f': '2.50', 'flag': '',
                                 'label': 'x', 'extra': 'not a column'})
    pipe.set('Item:id:', 2)
    pipe.execute()
    summary = ReindexSummary()
    list(util.refresh_indices(Item, summary=summary))
    one = conn.hgetall('Item:1')
    assert one.pop(b'-index-data-')
    assert one == {b'id': b'1', b'n': b'7', b'f': b'5', b'blob': b'{"a":  1}',
                   b'flag': b'1', b'label': b'none'}  # the declared defaults were written
    two = conn.hgetall('Item:2')
    assert two.pop(b'-index-data-')
    assert two == {b'id': b'2', b'n': b'8', b'f': b'2.50', b'flag': b'', b'label': b'x',
                   b'extra': b'not a column'}
    assert summary.defaults == {'flag': 1, 'label': 1}
    assert any("lacked 'flag'" in line for line in summary.lines())
    assert conn.zscore('Item:f:idx', '1') == 5.0
    assert conn.smembers('Item:label:none:idx') == {b'1'}
    assert audit_model(Item).ok


def test_every_job_on_a_damaged_database_keeps_every_row(conn):
    class Author(rom.Model):
        email = rom.Text(unique=True)
        name = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True, suffix=True)
        notes = rom.UnsafeColumn()

    class Post(rom.Model):
        author = rom.ManyToOne('Author', on_delete='cascade')
        title = rom.Text(index=True, keygen=rom.FULL_TEXT)

    authors = [Author(email='a%d@x' % i, name='name %d' % i) for i in range(6)]
    util.session.commit()
    posts = [Post(author=authors[i % 6], title='t %d' % i) for i in range(12)]
    util.session.commit()
    util.session.rollback()
    for a in authors:
        a.notes.rpush('n')
    # damage: rows deleted by hand, index keys dropped, a legacy bookkeeping field, a
    # stale unique claim
    conn.delete('Author:%d' % authors[0].id, 'Post:%d' % posts[1].id)
    conn.delete('Author:name:pre')
    conn.hset('Author:email:uidx', 'gone@x', '999')
    conn.hset('Post::', str(posts[2].id), '[["title:gone"],{},{},{},{}]')
    conn.sadd('Post:title:gone:idx', str(posts[2].id))
    before = dump_database(conn)

    list(util.clean_old_index(Author))
    list(util.clean_old_index(Post))
    util.clean_unsafe_cols(Author, Post)
    audit_model(Author)
    audit_model(Post)
    list(util.refresh_indices(Author))
    list(util.refresh_indices(Post))
    after = dump_database(conn)
    for ns in ('Author', 'Post'):
        assert _rows(after, ns) == _rows(before, ns)
    assert not conn.exists('Post::')
    assert conn.hget('Author:email:uidx', 'gone@x') is None
    assert conn.lrange('Author:%d:notes' % authors[0].id, 0, -1) == []  # orphan removed
    assert conn.lrange('Author:%d:notes' % authors[1].id, 0, -1) == [b'n']


# --------------------------------------------------------------------------- live systems (issue 12)

def _counter_model():
    class Live(rom.Model):
        n = rom.Integer(index=True)
        tag = rom.Text(index=True, keygen=rom.IDENTITY)
    return Live


def test_reindex_retries_rows_changed_and_skips_rows_deleted_while_it_runs(conn, monkeypatch):
    Live = _counter_model()
    rows = [Live(n=i, tag='t%d' % (i % 3)) for i in range(40)]
    util.session.commit()
    util.session.rollback()
    conn.delete('Live:n:idx')  # every row needs a write
    from rom import _reindex
    real_read = _reindex.read_rows
    changed, deleted = rows[5], rows[17]
    calls = []

    def read_then_race(model, ids):
        out = real_read(model, ids)
        calls.append(list(ids))
        if len(calls) == 1:  # a concurrent writer acts between the read and the write
            other = redis_client(conn)
            other.hset('Live:%d' % changed.id, 'n', '1000')
            other.delete('Live:%d' % deleted.id)
        return out

    from rom import _maintenance
    monkeypatch.setattr(_reindex, 'read_rows', read_then_race)
    monkeypatch.setattr(_maintenance, 'read_rows', read_then_race)  # the job's read-ahead
    summary = ReindexSummary()
    job = util.refresh_indices(Live, block_size=100, summary=summary)
    list(job)
    assert summary.retried == 1  # the changed row was read again and written
    assert summary.skipped == [('Live:%d' % deleted.id,
                                'deleted by a concurrent writer while reindexing')]
    assert conn.zscore('Live:n:idx', str(changed.id)) == 1000
    assert conn.zscore('Live:n:idx', str(deleted.id)) is None
    assert calls[1] == [changed.id]
    assert any('read again' in line for line in summary.lines())


def redis_client(conn):
    import redis
    return redis.Redis(connection_pool=conn.connection_pool)


def test_reindex_command_on_a_live_system_exits_0(conn, redis_url, models):
    import os
    import subprocess
    import sys
    import threading
    from test_cli import ROOT, TESTS_DIR
    items = [models.CliItem(n=i, word='w%d' % i, email='e%d@x' % i) for i in range(3000)]
    util.session.commit()
    util.session.rollback()
    stop = threading.Event()
    errors = []

    def writer(seed):
        import random
        rng = random.Random(seed)
        client = redis_client(conn)
        while not stop.is_set():
            item = rng.choice(items)
            try:
                if rng.random() < 0.2:
                    client.delete('CliItem:%d' % item.id)
                else:
                    client.hset('CliItem:%d' % item.id, 'n', str(rng.randrange(1000)))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(2)]
    for t in threads:
        t.start()
    try:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS_DIR, ROOT]))
        result = subprocess.run([sys.executable, '-m', 'rom', 'reindex', 'cli_models:CliItem',
                                 '--url', redis_url, '--block-size', '20'], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=300)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert result.returncode == 0, result.stderr
    assert 'indexes rebuilt' in result.stdout


def test_reindex_keeps_a_foreign_model_reference_to_a_missing_object(conn):
    class Account:
        """A non-rom model: an ``id`` and a ``get(id)`` (here, an in-memory table)."""

        table = {}

        def __init__(self, id):
            self.id = id

        @classmethod
        def get(cls, id):
            return cls.table.get(int(id))

    Account.table.update({1: Account(1), 2: Account(2)})

    class Invoice(rom.Model):
        account = rom.ForeignModel(Account)
        total = rom.Integer(index=True)

    invoices = [Invoice(account=Account.table[1 + i % 2], total=i) for i in range(4)]
    util.session.commit()
    util.session.rollback()
    del Account.table[1]  # the object is gone from the other system
    before = dump_database(conn)
    list(util.refresh_indices(Invoice))
    after = dump_database(conn)
    assert _rows(after, 'Invoice') == _rows(before, 'Invoice')
    for invoice in invoices:
        assert conn.hget('Invoice:%d' % invoice.id, 'account') == (
            b'1' if invoice.total % 2 == 0 else b'2')
    assert {m for m, _ in after[b'Invoice:account:idx'][1]} == {
        str(i.id).encode() for i in invoices if i.total % 2}


def test_reindex_keeps_expiry_times_and_leaves_expired_rows_alone(conn):
    import time

    class Visit(rom.Model):
        _ttl = 3600
        _ttl_renew = True   # a save would restart the expiry time: a reindex must not
        n = rom.Integer(index=True)

    live, gone = Visit(n=1), Visit(n=2)
    util.session.commit()
    gone.expire_in(0.05)
    gone.save()
    util.session.rollback()
    time.sleep(0.2)
    before = dump_database(conn)
    conn.delete('Visit:n:idx')
    list(util.refresh_indices(Visit))
    after = dump_database(conn)
    assert _rows(after, 'Visit') == _rows(before, 'Visit')  # -expire-at- included
    assert conn.hget('Visit:%d' % live.id, '-expire-at-') == \
        before[b'Visit:%d' % live.id][1][b'-expire-at-']
    assert conn.zrange('Visit:n:idx', 0, -1) == [str(live.id).encode()]
