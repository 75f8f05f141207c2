"""Redis Cluster: cluster-mode models on a real local cluster (rom.testing.LocalCluster).

Every test here runs against real ``redis-server`` processes in cluster mode through
``redis.cluster.RedisCluster``; nothing is mocked. Marked ``cluster`` (``-m cluster``).
"""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

import rom
import rom.util
from rom import util
from rom._audit import audit_model
from rom._cluster import hash_tag
from rom.exceptions import ORMError, RestrictError, UniqueKeyViolation
from rom.testing import LocalCluster, counting_client, instrument, start_local_cluster

pytestmark = pytest.mark.cluster


def all_keys(client: Any) -> list:
    return sorted(client.scan_iter('*'))


def slots(client: Any) -> set:
    return {client.keyslot(key) for key in all_keys(client)}


# --------------------------------------------------------------------------- harness

def test_harness_starts_a_real_cluster(cluster: LocalCluster) -> None:
    assert len(cluster.master_nodes()) == 3
    info = cluster.nodes[0].client().execute_command('CLUSTER INFO')
    text = info if isinstance(info, dict) else info.decode()
    assert 'cluster_state' in text and (
        text['cluster_state'] == 'ok' if isinstance(text, dict) else 'cluster_state:ok' in text)
    client = cluster.client()
    try:
        # keys in different slots land on different masters and all read back
        for i in range(30):
            client.set('k%d' % i, i)
        assert [int(client.get('k%d' % i)) for i in range(30)] == list(range(30))
        owners = {client.get_node_from_key('k%d' % i).name for i in range(30)}
        assert len(owners) == 3
    finally:
        client.flushall()
        client.close()


def test_harness_with_replicas_and_stop() -> None:
    local = start_local_cluster(masters=3, replicas=1)
    try:
        assert len(local.nodes) == 6
        assert len(local.master_nodes()) == 3
        ports = [node.port for node in local.nodes]
    finally:
        local.stop()
    assert not any(node.running for node in local.nodes)
    for port in ports:
        with pytest.raises(redis.ConnectionError):
            redis.Redis(port=port, socket_connect_timeout=0.5).ping()


# --------------------------------------------------------------------------- declaration

def test_hash_tag_follows_redis_rules() -> None:
    assert hash_tag('{app}:User') == 'app'
    assert hash_tag('x{app}y:{b}') == 'app'
    assert hash_tag('{}:x') is None
    assert hash_tag('{}{x}') is None  # the first '{' decides, its '}' closes an empty tag
    assert hash_tag('User') is None and hash_tag('{open') is None


@pytest.fixture
def no_default_tag(monkeypatch: Any) -> None:
    """Models without ``_cluster`` are plain ones, also in the ROM_TEST_CLUSTER run."""
    monkeypatch.setattr(rom.Model, '_cluster', False, raising=False)


def test_cluster_model_gets_a_tagged_namespace(no_default_tag: None) -> None:
    class Plain(rom.Model):
        x = rom.Integer()

    class Tagged(rom.Model):
        _cluster = True
        x = rom.Integer()

    class Named(rom.Model):
        _cluster = True
        _namespace = '{app}:named'
        x = rom.Integer()

    assert Plain._namespace == 'Plain' and Plain._cluster_tag is None
    assert Tagged._namespace == '{Tagged}' and Tagged._cluster_tag == 'Tagged'
    assert Named._cluster_tag == 'app'

    class Grouped(rom.Model):
        _cluster = 'shop'
        x = rom.Integer()

    class Sub(Grouped):  # the setting is inherited
        y = rom.Integer()

    assert (Grouped._namespace, Sub._namespace) == ('{shop}:Grouped', '{shop}:Sub')
    assert Sub._cluster_tag == 'shop'
    for bad in ('{x}', 1):
        with pytest.raises(ORMError, match='_cluster'):
            type('Bad%s' % type(bad).__name__, (rom.Model,), {'_cluster': bad})


@pytest.mark.parametrize('namespace', ['app:User', 'app:{User}', '{}:User', 'app{', 'a:{b}'])
def test_cluster_namespace_without_usable_tag_is_refused(namespace: str) -> None:
    with pytest.raises(ORMError, match='hash tag'):
        class Bad(rom.Model):
            _cluster = True
            _namespace = namespace
    assert 'Bad' not in rom.columns.MODELS


def test_cluster_models_relate_across_tags_but_not_to_plain_models(
        no_default_tag: None) -> None:
    class Owner(rom.Model):
        _cluster = True
        items = rom.OneToMany('Item')

    class Item(rom.Model):  # another hash tag: allowed (one call per slot, rom._cross_slot)
        _cluster = True
        owner = rom.ManyToOne('Owner', on_delete='no action')
    assert (Owner._cluster_tag, Item._cluster_tag) == ('Owner', 'Item')

    with pytest.raises(ORMError, match='only be related to cluster-mode models'):
        class Loose(rom.Model):  # a plain model referring to a cluster model
            owner = rom.ManyToOne('Owner', on_delete='no action')
    assert 'Loose' not in rom.columns.MODELS

    class Thing(rom.Model):  # the target defined after the reference: checked then
        _cluster = True
        _namespace = '{a}:Thing'
        ref = rom.ManyToOne('Later', on_delete='no action')

    with pytest.raises(ORMError, match='not in cluster mode'):
        class Later(rom.Model):
            x = rom.Integer()


# --------------------------------------------------------------------------- behaviour

def _models() -> Any:
    class User(rom.Model):
        _cluster = True
        _namespace = '{app}:User'
        name = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True, suffix=True)
        email = rom.Text(unique=True)
        age = rom.Integer(index=True)
        score = rom.Float(default=0.0)
        posts = rom.OneToMany('Post', 'user')
        geo_index = [rom.GeoIndex('loc', lambda data: {
            'lon': data['age'] / 10.0, 'lat': 1.0})]

    class Post(rom.Model):
        _cluster = True
        _namespace = '{app}:Post'
        user = rom.ManyToOne('User', on_delete='cascade')
        title = rom.Text(index=True, keygen=rom.SIMPLE)

    class Note(rom.Model):  # another slot
        _cluster = True
        text = rom.Text(index=True, keygen=rom.IDENTITY)

    return User, Post, Note


def test_crud_queries_and_keys_stay_in_one_slot(cconn: Any) -> None:
    User, Post, Note = _models()
    for i in range(12):
        user = User(name='bob %d' % i, email='b%d@x' % i, age=i)
        user.save()
        Post(user=user, title='t%02d' % i).save()
    Note(text='hello').save()
    assert User.get_by(email='b3@x').age == 3
    assert [u.age for u in User.get_by(age=(2, 4))] == [2, 3, 4]
    assert User.query.filter(age=(3, 7)).count() == 5
    assert [u.age for u in User.query.filter(name='bob').order_by('-age').limit(0, 3)] == \
        [11, 10, 9]
    assert User.query.startswith(name='bo').count() == 12
    assert User.query.endswith(name='ob').count() == 12
    assert User.query.like(name='b?b*').count() == 12
    # OR filter: a temporary union key, then an intersection, in one transaction
    assert User.query.filter(age=(0, 20)).filter(name=['1', '5']).count() == 2
    assert sorted(u.age for u in User.query.filter(name='bob').near(
        'loc', 0.1, 1.0, 15, 'km').all()) == [0, 1, 2]
    assert User.query.filter(age=(0, 1)).select('age').all() == [{'age': 0}, {'age': 1}]
    key = User.query.filter(name='bob').cached_result(30)
    assert cconn.zcard(key) == 12
    assert len(list(User.query.filter(name='bob').iter_result(pagesize=5))) == 12
    assert [p.title for p in User.get_by(email='b1@x').posts] == ['t01']
    with pytest.raises(UniqueKeyViolation):
        User(name='dup', email='b1@x', age=50).save()
    user_slot = cconn.keyslot('{app}')
    assert slots(cconn) == {user_slot, cconn.keyslot('{Note}')}
    assert not any(k.startswith(b'{app}:') and cconn.keyslot(k) != user_slot
                   for k in all_keys(cconn))


def test_cascade_and_restrict_on_cluster(cconn: Any) -> None:
    User, Post, _ = _models()

    class Tag(rom.Model):
        _cluster = True
        _namespace = '{app}:Tag'
        post = rom.ManyToOne('Post', on_delete='restrict')

    user = User(name='a', email='a@x', age=1)
    user.save()
    post = Post(user=user, title='p')
    post.save()
    tag = Tag(post=post)
    tag.save()
    with pytest.raises(RestrictError):
        post.delete()
    tag.delete()
    user.delete()
    util.session.rollback()
    assert Post.get(post.id) is None and User.get(user.id) is None
    assert Post.query.filter(title='p').count() == 0


def test_session_commit_and_delete_across_slots(cconn: Any) -> None:
    User, Post, Note = _models()
    entities = []
    for i in range(5):
        entities.append(User(name='u', email='u%d@x' % i, age=i))
        entities.append(Note(text='n%d' % i))
    util.session.commit()
    assert User.query.filter(name='u').count() == 5
    assert Note.query.filter(text='n3').count() == 1
    notes = Note.query.filter(text=['n1', 'n2']).all()
    util.session.delete(notes + [Note.get_by(text='n4')])
    assert sorted(n.text for n in Note.query.all()) == ['n0', 'n3']


def test_query_delete_lock_and_maintenance(cconn: Any) -> None:
    User, Post, Note = _models()
    for i in range(30):
        Note(text='n%d' % (i % 3)).save()
    Note.query.filter(text='n1').delete()
    assert Note.query.filter(text='n1').count() == 0
    assert Note.query.filter(text='n2').count() == 10
    note = Note.get_by(text='n2')[0]
    with util.EntityLock(note, 5, 5):
        assert cconn.keyslot('lock:%s' % note._pk) == cconn.keyslot('{Note}')
        assert cconn.exists('lock:%s' % note._pk)
    # remove an index entry behind rom's back: refresh_indices rebuilds it
    cconn.srem('{Note}:text:n2:idx', str(note.id))
    assert Note.query.filter(text='n2').count() == 9
    for _ in util.refresh_indices(Note, block_size=7):
        pass
    assert Note.query.filter(text='n2').count() == 10
    for _ in util.clean_old_index(Note):
        pass
    assert Note.query.filter(text='n0').count() == 10
    assert audit_model(Note, block_size=10).ok
    cconn.srem('{Note}:text:n0:idx', str(Note.get_by(text='n0')[0].id))
    assert audit_model(Note, block_size=10).counts == {'missing-entry': 1}


def test_scripts_recover_from_script_flush(cconn: Any, cluster: LocalCluster,
                                          scripts_reloaded: None) -> None:
    User, _, Note = _models()
    Note(text='a').save()
    for node in cluster.master_nodes():
        node.client().script_flush()
    Note(text='b').save()  # EVALSHA gets NOSCRIPT on that node and falls back to EVAL
    assert sorted(n.text for n in Note.query.all()) == ['a', 'b']


def test_default_models_keep_rom_keys(no_default_tag: None, redis_url: str) -> None:
    single = redis.Redis.from_url(redis_url)  # a single server, also in the cluster run
    single.flushdb()

    class Plain(rom.Model):
        _conn = single
        name = rom.Text(index=True, keygen=rom.IDENTITY)

    Plain(name='x').save()
    assert sorted(single.keys('*')) == [b'Plain:1', b'Plain:id:', b'Plain:name:x:idx']
    single.flushdb()
    single.close()


# --------------------------------------------------------------------------- failover

def test_failover_keeps_indexes_consistent() -> None:
    local = start_local_cluster(masters=3, replicas=1, node_timeout_ms=1000)
    try:
        client = local.client()
        rom.util.CONNECTION = client
        util.session.rollback()

        class Acct(rom.Model):
            _cluster = True
            name = rom.Text(unique=True)
            n = rom.Integer(index=True)

        owner = client.get_node_from_key('{Acct}')
        victim = next(node for node in local.nodes if node.port == owner.port)
        errors: list = []
        saved: list = []
        stop = threading.Event()

        def writer() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    Acct(name='w%d' % i, n=i).save()
                    saved.append(time.monotonic())
                except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
                    errors.append(exc)
                    time.sleep(0.05)
                util.session.rollback()

        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(0.5)
        victim.kill()
        before = len(saved)  # writes acknowledged until the master died
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(saved) < before + 50:
            time.sleep(0.05)
        stop.set()
        thread.join(30)
        assert len(saved) >= before + 50, 'writes did not resume after the failover'
        local.wait_state_ok(30)
        # every existing row is indexed exactly once, and no entry points at a missing row
        ids = {int(k.split(b':')[1]) for k in client.scan_iter('{Acct}:*')
               if k.split(b':')[1].isdigit()}
        indexed = {int(m) for m in client.zrange('{Acct}:n:idx', 0, -1)}
        assert indexed == ids
        uniques = client.hgetall('{Acct}:name:uidx')
        assert {int(v) for v in uniques.values()} == ids
        assert len(uniques) == len(ids)
        for row in ids:
            assert Acct.get(row).name in {k.decode() for k in uniques}
        report = audit_model(Acct, block_size=50)
        assert report.ok, report.summary()
        # the writer blocks while redis-py retries, then goes on with the promoted replica
        pause = max((b - a for a, b in zip(saved, saved[1:])), default=0.0)
        assert pause > 0.5, 'the killed node did not serve the model (no pause in writes)'
        print('\ncluster/failover: %d saves before the kill; longest pause in writes %.2f s; '
              '%d failed attempts; %d rows; audit clean' % (before, pause, len(errors), len(ids)))
    finally:
        local.stop()


def test_transfer_on_cluster(cconn: Any) -> None:
    class Wallet(rom.Model):
        _cluster = True
        _namespace = '{bank}:Wallet'
        balance = rom.Integer(index=True)

    class Txn(rom.Model):
        _cluster = True
        _namespace = '{bank}:Txn'
        done = rom.Boolean(default=False)

    class Elsewhere(rom.Model):
        _cluster = True
        done = rom.Boolean(default=False)

    a, b, txn = Wallet(balance=10), Wallet(balance=0), Txn()
    util.session.commit()
    a.transfer(b, 'balance', 4, txn, 'done')
    assert (Wallet.get(a.id).balance, Wallet.get(b.id).balance) == (6, 4)
    assert [w.id for w in Wallet.query.filter(balance=(4, 4))] == [b.id]
    other = Elsewhere()
    other.save()
    with pytest.raises(ValueError, match='one hash tag'):
        a.transfer(b, 'balance', 1, other, 'done')
    assert (Wallet.get(a.id).balance, Wallet.get(b.id).balance) == (6, 4)


def test_decoding_cluster_client(cluster: LocalCluster) -> None:
    cluster.flushall()
    client = cluster.client(decode_responses=True)
    rom.util.CONNECTION = client
    try:
        class Word(rom.Model):
            _cluster = True
            text = rom.Text(index=True, keygen=rom.IDENTITY, unique=True)

        Word(text='caf\xe9').save()
        util.session.rollback()
        assert Word.get_by(text='caf\xe9').text == 'caf\xe9'
        assert Word.query.filter(text='caf\xe9').count() == 1
    finally:
        util.session.rollback()
        client.close()


def test_cluster_from_the_environment(cluster: LocalCluster, tmp_path: Any) -> None:
    import os
    import subprocess
    import sys
    cluster.flushall()
    script = tmp_path / 'app.py'
    script.write_text(
        'import rom, rom.util\n'
        'from redis.cluster import RedisCluster\n'
        'assert not isinstance(rom.util.CONNECTION, RedisCluster)  # no I/O at import\n'
        'class Env(rom.Model):\n'
        '    _cluster = True\n'
        '    name = rom.Text(index=True, keygen=rom.IDENTITY)\n'
        'Env(name="x").save()\n'
        'assert isinstance(rom.util.CONNECTION, RedisCluster)\n'
        'print(Env.query.filter(name="x").count())\n')
    env = dict(os.environ, ROM_REDIS_URI=cluster.url, ROM_REDIS_CLUSTER='1')
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '1'
    assert cluster.client().exists('{Env}:1')


def _ops(model: Any, k: int) -> dict:
    """Operations on a model with ``name`` (unique), ``n`` and ``tag`` (indexes); ``k``
    picks other entities each pass."""
    return {
        'save new': lambda: model(name='new%d' % k, n=99, tag='t').save(),
        'get': lambda: model.get(k),
        'get_by unique': lambda: model.get_by(name='x%d' % k),
        'count filtered': lambda: model.query.filter(n=(2, 8)).count(),
        'order+limit': lambda: model.query.filter(n=(0, 50)).order_by('-n').limit(0, 5).all(),
        'two filters': lambda: model.query.filter(n=(0, 50)).filter(tag='t').all(),
        'delete': lambda: model.get(k + 4).delete(),
    }


def _measure(clients: list, model: Any) -> dict:
    """Round trips and commands per operation, summed over ``clients`` (every node of a
    cluster); second pass, so scripts are already cached."""
    from contextlib import ExitStack

    from rom.testing import roundtrips
    for i in range(10):
        model(name='x%d' % i, n=i, tag='t').save()
    out = {}
    for k in (1, 2):
        for name, op in _ops(model, k).items():
            util.session.rollback()
            with ExitStack() as stack:
                counters = [stack.enter_context(roundtrips(c)) for c in clients]
                op()
            out[name] = (sum(rt.count for rt in counters),
                         [cmd for rt in counters for cmd in rt.commands])
    return out


def test_roundtrips_match_one_server(cconn: Any, redis_url: str, no_default_tag: None) -> None:
    """Each operation takes as many round trips on the cluster as on one server."""
    def declare(cluster: bool) -> Any:
        body = {'name': rom.Text(unique=True), 'n': rom.Integer(index=True),
                'tag': rom.Text(index=True, keygen=rom.IDENTITY)}
        if cluster:
            body['_cluster'] = True
        return type('Rt%s' % ('C' if cluster else 'S'), (rom.Model,), body)

    clustered = declare(True)
    counted = []
    for node in cconn.get_nodes():  # count what the cluster client sends to any node
        counted.append(instrument(node.redis_connection))
        node.redis_connection.connection_pool.reset()  # drop connections made before
    on_cluster = _measure(counted, clustered)
    conn = counting_client(redis_url)  # a single server, also in the ROM_TEST_CLUSTER run
    conn.flushdb()
    rom.util.CONNECTION = conn
    single = _measure([conn], declare(False))
    conn.flushdb()
    conn.close()
    assert {op: rt for op, (rt, _) in on_cluster.items()} == \
        {op: rt for op, (rt, _) in single.items()}, (on_cluster, single)
    for op in single:
        if op == 'two filters':  # ZUNIONSTORE/ZINTERSTORE go as EVAL of keyed_command.lua
            assert len(on_cluster[op][1]) == len(single[op][1])
            assert 'COMMAND' not in on_cluster[op][1]
        else:
            assert on_cluster[op] == single[op]
    assert all(count >= 1 for count, _ in single.values())


def test_concurrent_processes_on_cluster(cluster: LocalCluster) -> None:
    """Several processes race for the same unique values on the cluster: zero findings."""
    import cluster_workers as cw
    from race_workers import race_processes
    cluster.flushall()
    rom.util.CONNECTION = cluster.client()
    m = cw.define_models()
    procs = 3
    errors = race_processes(cw.worker, cluster.url, [100 + i for i in range(procs)], 250)
    for model in m.all:
        report = audit_model(model, block_size=50)
        assert report.ok, report.summary()
    emails = [u.email for u in m.User.query.all()]
    codes = [n.code for n in m.Note.query.all()]
    assert emails and codes
    assert len(emails) == len(set(emails)) and len(codes) == len(set(codes))
    print('\ncluster/concurrency: %d processes x 250 ops; allowed errors %s; %d users, %d notes'
          % (procs, errors, len(emails), len(codes)))


def test_cli_jobs_on_cluster(cluster: LocalCluster) -> None:
    """``python -m rom check / reindex`` with ROM_REDIS_CLUSTER=1 walk the cluster."""
    import os
    import subprocess
    import sys
    cluster.flushall()
    client = cluster.client()
    rom.util.CONNECTION = client
    import cluster_cli_models as models
    try:
        for i in range(30):
            models.CluItem(name='i%d' % i, n=i).save()
        util.session.rollback()
        client.srem('{cli}:CluItem:name:i3:idx', '4')  # damage one index entry
        here = os.path.dirname(os.path.abspath(__file__))
        env = dict(os.environ, ROM_REDIS_CLUSTER='1',
                   PYTHONPATH=os.pathsep.join([here, os.path.dirname(here)]))

        def run(*argv: str) -> Any:
            return subprocess.run([sys.executable, '-m', 'rom', *argv, '--url', cluster.url],
                                  env=env, capture_output=True, text=True, timeout=120)

        found = run('check', 'cluster_cli_models:CluItem')
        assert found.returncode != 0 and 'missing' in found.stdout + found.stderr, found
        fixed = run('reindex', 'cluster_cli_models:CluItem')
        assert fixed.returncode == 0, fixed.stderr
        clean = run('check', 'cluster_cli_models:CluItem')
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert models.CluItem.get_by(name='i3').n == 3
        assert models.CluItem.query.filter(name='i3').count() == 1
        client.zrem('{cli}:CluItem:n:idx', '7')  # damage again: check --fix repairs it
        repaired = run('check', 'cluster_cli_models:CluItem', '--fix')
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert run('check', 'cluster_cli_models:CluItem').returncode == 0
        assert [e.id for e in models.CluItem.query.filter(n=(6, 6))] == [7]
    finally:
        sys.modules.pop('cluster_cli_models', None)
        client.close()


def test_expiring_models_on_cluster(cconn: Any) -> None:
    """Models with ``_ttl`` keep their expiry set in the model's slot; expired entities
    vanish from get, get_by and queries."""
    class Token(rom.Model):
        _cluster = True
        _ttl = 3600
        value = rom.Text(unique=True)
        user = rom.Integer(index=True)

    live, dead = Token(value='a', user=1), Token(value='b', user=1)
    util.session.commit()
    assert 3599 < live.ttl() <= 3600
    dead.expire_at(0)  # in the past: expires at once
    dead.save()
    util.session.rollback()
    assert Token.get_by(value='a').id == live.id and Token.get_by(value='b') is None
    assert [t.id for t in Token.query.filter(user=1).all()] == [live.id]
    assert Token.get(dead.id) is None
    assert slots(cconn) == {cconn.keyslot('{Token}')}
    assert cconn.exists('{Token}:-expiry-')


def test_plain_model_on_cluster_client_is_a_clear_error(cconn: Any,
                                                        no_default_tag: None) -> None:
    class Loose(rom.Model):
        name = rom.Text(unique=True)

    with pytest.raises(ORMError, match='_cluster = True'):
        Loose(name='x').save()
    with pytest.raises(ORMError, match='_cluster = True'):
        Loose.get_by(name='x')
    assert not any(k.startswith(b'Loose:') and k != b'Loose:id:' for k in all_keys(cconn))
