"""``check --fix`` (rom._repair): repairs what ``check`` finds; a second check finds nothing."""
from __future__ import annotations

import io
import json

import pytest

import rom
from rom import _cli, util
from rom._audit import audit_model
from rom._repair import repair_model
from rom.testing import dump_database

from test_cli import TtyStream, models  # noqa: F401  (fixture)
from test_reindex_safety import _rows


def _shop():
    class Shop(rom.Model):
        name = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True, suffix=True)
        rating = rom.Integer(index=True)
        email = rom.Text(unique=True)
        lon = rom.Float()
        lat = rom.Float()
        geo_index = [rom.GeoIndex('loc', lambda d: {'lon': d['lon'], 'lat': d['lat']})]
    return Shop


def _damage(conn, Shop):
    shops = [Shop(name='blue door %d' % i, rating=i, email='s%d@x' % i, lon=1.0 + i, lat=2.0)
             for i in range(8)]
    util.session.commit()
    util.session.rollback()
    ids = [str(s.id) for s in shops]
    conn.delete('Shop:' + ids[0])                       # row deleted by hand: dangling entries
    conn.srem('Shop:name:blue:idx', ids[1])             # missing entry
    conn.zadd('Shop:rating:idx', {ids[2]: 99})          # wrong score
    conn.sadd('Shop:name:green:idx', ids[3])            # stale entry of a live row
    conn.zadd('Shop:name:pre', {'green\0' + ids[3]: 1.0})
    conn.hdel('Shop:email:uidx', 's4@x')                # unclaimed unique value
    conn.hset('Shop:email:uidx', 'old@x', ids[5])       # stale claim of a live row
    conn.hset('Shop:email:uidx', 'gone@x', '999')       # claim of a missing row
    conn.zadd('Shop:loc:geo', {'998': 0})               # geo member of a missing row
    conn.hset('Shop::', '997', '[["name:gone"],{},{},{},{}]')  # legacy data of a missing row
    conn.sadd('Shop:name:gone:idx', '997')
    return shops


def test_fix_repairs_every_index_problem_and_keeps_rows(conn):
    Shop = _shop()
    _damage(conn, Shop)
    before = dump_database(conn)
    report = audit_model(Shop)
    kinds = set(report.counts)
    assert {'dangling-entry', 'missing-entry', 'wrong-score', 'stale-entry', 'unique-missing',
            'unique-stale'} <= kinds
    # a dry run writes nothing and says what it would do
    dry = repair_model(Shop, report, dry_run=True)
    assert dump_database(conn) == before
    assert any(line.startswith('Shop: would rows reindexed') for line in dry.lines())
    summary = repair_model(Shop, report)
    assert summary.done['rows reindexed'] >= 4
    assert summary.done['index entries removed (stale, or pointing at missing rows)'] >= 10
    assert summary.done['legacy bookkeeping fields removed'] == 1
    after = audit_model(Shop)
    assert after.ok, after.findings
    assert _rows(dump_database(conn), 'Shop') == _rows(before, 'Shop')
    assert conn.hget('Shop:email:uidx', 'old@x') is None
    assert conn.hget('Shop:email:uidx', 's4@x') is not None


def test_fix_never_removes_an_entry_written_since_the_check(conn):
    Shop = _shop()
    shops = _damage(conn, Shop)
    report = audit_model(Shop)
    # after the check: the deleted row comes back, and row 3 really calls for 'green' now
    ghost = Shop(name='blue door 0', rating=0, email='s0@x', lon=1.0, lat=2.0)
    ghost._data['id'] = shops[0].id
    ghost.save(force=True)
    live = Shop.get(shops[3].id)
    live.name = 'green door'
    live.save()
    util.session.rollback()
    repair_model(Shop, report)
    assert conn.sismember('Shop:name:blue:idx', str(shops[0].id))
    assert conn.sismember('Shop:name:green:idx', str(shops[3].id))
    assert conn.zscore('Shop:name:pre', 'green\0%s' % shops[3].id) is not None
    assert audit_model(Shop).ok


@pytest.mark.parametrize('policy', ['no action', 'restrict', 'cascade', 'set null',
                                    'set default'])
def test_fix_applies_on_delete_to_references_to_missing_rows(conn, policy):
    class Author(rom.Model):
        name = rom.Text()

    kwargs = {'on_delete': policy}
    if policy == 'set default':
        kwargs['default'] = None

    class Post(rom.Model):
        author = rom.ManyToOne('Author', **kwargs)
        title = rom.Text()

    ann, bob = Author(name='ann'), Author(name='bob')
    util.session.commit()
    kept, orphan = Post(author=bob, title='kept'), Post(author=ann, title='orphan')
    util.session.commit()
    util.session.rollback()
    conn.delete('Author:%d' % ann.id)
    report = audit_model(Post)
    refs = [f for f in report.findings if f.kind == 'dangling-reference']
    assert len(refs) == 1 and refs[0].id == str(orphan.id) and policy in refs[0].message
    # its index entry is left over too (a reindex drops it, as rom 1.1.2's does)
    assert {f.kind for f in report.findings} == {'dangling-reference', 'stale-entry',
                                                 'bookkeeping'}
    before = dump_database(conn)
    summary = repair_model(Post, report)
    row = conn.hgetall('Post:%d' % orphan.id)
    if policy == 'cascade':
        assert row == {}
        assert summary.done['rows deleted (on_delete cascade)'] == 1
    elif policy in ('set null', 'set default'):
        assert b'author' not in row and row[b'title'] == b'orphan'
        assert 'references' in ' '.join(summary.done)
    else:  # the reference stays: the user chose no automatic action
        assert _rows(dump_database(conn), 'Post') == _rows(before, 'Post')
        assert any("on_delete is '%s'" % policy in line for line in summary.lines())
    assert conn.hget('Post:%d' % kept.id, 'author') == str(bob.id).encode()
    left = {f.kind for f in audit_model(Post).findings}
    assert left == (set() if policy in ('cascade', 'set null', 'set default')
                    else {'dangling-reference'})


def test_check_fix_command_line(conn, models):
    items = [models.CliItem(n=i, word='hello w%d' % i, email='e%d@x' % i) for i in range(5)]
    util.session.commit()
    conn.delete('CliItem:%d' % items[0].id)
    conn.zadd('CliItem:n:idx', {str(items[1].id): 50})
    out, err = io.StringIO(), io.StringIO()
    code = _cli.main(['check', 'cli_models:CliItem', '--fix', '--dry-run'], out, err)
    text = out.getvalue()
    assert code == 1 and 'would rows reindexed: 1' in text and 'dangling-entry' in text
    assert conn.zscore('CliItem:n:idx', str(items[1].id)) == 50
    out = io.StringIO()
    err = TtyStream()
    code = _cli.main(['check', 'cli_models:CliItem', '--fix'], out, err)
    text = out.getvalue()
    assert code == 0, text
    assert 'fix CliItem [' in err.getvalue() and '100.0% done' in err.getvalue()
    assert 'rows reindexed: 1' in text and 'after repair: CliItem' in text
    assert 'no problems found' in text.split('after repair:')[1]
    out = io.StringIO()
    assert _cli.main(['check', 'cli_models:CliItem'], out, err) == 0
    assert _cli.main(['check', 'cli_models:CliItem', '--dry-run'], out, err) == 2
    assert _cli.main(['check', 'cli_models:CliItem', '--fix', '--json'], out, err) == 2


def test_reindex_and_clean_summaries_on_the_command_line(conn, models):
    items = [models.CliItem(n=i, word='w', email='e%d@x' % i) for i in range(3)]
    other = models.CliOther(n=1)
    util.session.commit()
    conn.hdel('CliItem:%d' % items[0].id, 'n')  # no default: nothing to write
    out, err = io.StringIO(), io.StringIO()
    assert _cli.main(['reindex', 'cli_models:CliItem'], out, err) == 0
    assert '3 rows indexed' in out.getvalue()
    out = io.StringIO()
    assert _cli.main(['clean', 'cli_models:CliItem', '--unsafe'], out, err) == 0
    assert 'unsafe columns of CliItem:' in out.getvalue()
    assert other.id


def test_clean_unsafe_skips_models_without_unsafe_columns(conn):
    import sys
    import types
    module = types.ModuleType('plain_models_for_clean')

    class Plain(rom.Model):
        n = rom.Integer(index=True)

    module.Plain = Plain
    sys.modules['plain_models_for_clean'] = module
    try:
        Plain(n=1).save()
        out, err = io.StringIO(), io.StringIO()
        assert _cli.main(['clean', 'plain_models_for_clean:Plain', '--unsafe'], out, err) == 0
        assert 'keys examined' not in out.getvalue()
        assert 'no model given has an UnsafeColumn' in out.getvalue()
    finally:
        del sys.modules['plain_models_for_clean']


def test_fix_summary_json_free_lines():
    from rom._repair import RepairSummary
    summary = RepairSummary('X', dry_run=True)
    assert summary.lines() == ['X: nothing to repair']
    summary.count('rows reindexed', 2)
    assert summary.lines() == ['X: would rows reindexed: 2']
    assert json.dumps(summary.done)


def test_check_of_rows_deleted_by_hand_does_not_walk_every_entry(conn, roundtrips):
    class Big(rom.Model):
        n = rom.Integer(index=True)
        t = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True)
        u = rom.Text(unique=True)

    rows = [Big(n=i, t='common w%d' % (i % 5), u='u%d' % i) for i in range(2000)]
    util.session.commit()
    util.session.rollback()
    conn.delete('Big:%d' % rows[10].id, 'Big:%d' % rows[11].id)
    with roundtrips(conn) as rt:
        report = audit_model(Big, block_size=1000)
    assert report.counts == {'dangling-entry': 2 * 6}  # n, t:common, t:w?, t:pre (x2), u
    assert {f.id for f in report.findings} == {str(rows[10].id), str(rows[11].id)}
    # walking the 2,000-member keys entry by entry would read them from the client (and
    # every row again); they are scanned inside Redis instead
    walked = {'SSCAN', 'ZSCAN', 'HSCAN', 'SMEMBERS', 'ZRANGE', 'HGETALL'} & set(rt.commands)
    assert not walked, rt.commands
    repair_model(Big, report)
    assert audit_model(Big).ok
