"""The ``python -m rom`` command line (rom._cli): sub-commands, exit codes, progress."""
from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
import types

import pytest
import redis

import rom
from rom import _cli, util
from rom._limits import MAX_BLOCK_SIZE, MAX_SHARDS

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS_DIR)


@pytest.fixture
def models():
    """tests/cli_models.py imported in this process (re-registered after the registry reset)."""
    if TESTS_DIR not in sys.path:
        sys.path.insert(0, TESTS_DIR)
    module = sys.modules.get('cli_models')
    module = importlib.reload(module) if module else importlib.import_module('cli_models')
    return module


def run(*args, url=None, env_url=None, timeout=120):
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([TESTS_DIR, ROOT])
    env.pop('ROM_REDIS_URI', None)
    if env_url:
        env['ROM_REDIS_URI'] = env_url
    argv = [sys.executable, '-m', 'rom'] + list(args)
    if url:
        argv += ['--url', url]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


class TtyStream(io.StringIO):
    def isatty(self):
        return True


def _healthy(models, n=5):
    items = [models.CliItem(n=i, word='hello w%d' % i, email='e%d@x' % i) for i in range(n)]
    util.session.commit()
    return items


# --------------------------------------------------------------------------- subprocess runs

def test_help_texts():
    result = run('--help')
    assert result.returncode == 0
    for word in ('reindex', 'clean', 'check', 'package.module:ClassName', 'ROM_REDIS_URI',
                 'exit codes'):
        assert word in result.stdout
    result = run('check', '--help')
    assert result.returncode == 0
    for word in ('--url', '--quiet', '--json', '--block-size', 'dangling-entry',
                 'unique-duplicate'):
        assert word in result.stdout
    assert '--unsafe' in run('clean', '--help').stdout
    assert '--no-scan' in run('reindex', '--help').stdout


def test_check_healthy_and_corrupted(models, conn, redis_url):
    items = _healthy(models)
    result = run('check', 'cli_models:CliItem', url=redis_url)
    assert result.returncode == 0, result.stderr
    assert 'CliItem: 5 rows' in result.stdout and 'no problems' in result.stdout
    assert result.stderr == ''  # not a terminal: no progress bar
    conn.zadd('CliItem:n:idx', {str(items[2].id): 50})
    conn.delete('CliItem:%s' % items[4].id)
    result = run('check', 'cli_models:CliItem', url=redis_url)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.strip().split('\n')
    assert any(line.startswith('wrong-score: ') and 'CliItem:n:idx' in line for line in lines)
    assert any(line.startswith('dangling-entry: ') for line in lines)
    assert 'problem' in lines[-1]
    result = run('check', 'cli_models:CliItem', '--json', url=redis_url)
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc[0]['namespace'] == 'CliItem' and doc[0]['counts']['wrong-score'] == 1
    assert {'kind', 'key', 'member', 'id', 'message'} <= set(doc[0]['findings'][0])


def test_reindex_and_clean_through_rom_redis_uri(models, conn, redis_url):
    pipe = conn.pipeline(False)
    for i in range(1, 31):
        pipe.hset('CliItem:%d' % i, mapping={'id': str(i), 'n': str(i), 'word': 'x y',
                                             'email': 'm%d' % i})
    pipe.set('CliItem:id:', 40)
    pipe.hset('CliItem::', '35', '[["word:gone"],["n"],[["word","gone"]],{},{}]')
    pipe.sadd('CliItem:word:gone:idx', '35')
    pipe.zadd('CliItem:n:idx', {'35': 1})
    pipe.rpush('CliItem:36:notes', 'orphan')
    pipe.rpush('cli:other:37:notes', 'orphan')
    pipe.execute()
    result = run('reindex', 'cli_models:CliItem', env_url=redis_url)
    assert result.returncode == 0, result.stderr
    assert 'CliItem: indexes rebuilt' in result.stdout
    assert conn.zcard('CliItem:n:idx') == 31 and conn.scard('CliItem:word:x:idx') == 30
    result = run('clean', 'cli_models:CliItem', 'cli_models:CliOther', '--unsafe',
                 env_url=redis_url)
    assert result.returncode == 0, result.stderr
    assert conn.zcard('CliItem:n:idx') == 30 and not conn.exists('CliItem::')
    assert not conn.exists('CliItem:word:gone:idx')
    assert not conn.exists('CliItem:36:notes') and not conn.exists('cli:other:37:notes')
    assert '2 orphaned keys deleted' in result.stdout
    result = run('check', 'cli_models:CliItem', 'cli_models:CliOther', '-q', url=redis_url)
    assert result.returncode == 0 and result.stderr == ''


@pytest.mark.parametrize('args,needle', [
    ([], 'COMMAND'),
    (['frobnicate', 'cli_models:CliItem'], 'invalid choice'),
    (['check'], 'MODEL'),
    (['check', 'cli_models.CliItem'], 'package.module:ClassName'),
    (['check', 'no_such_module_xyz:Thing'], 'cannot import'),
    (['check', 'cli_models:Missing'], 'no attribute'),
    (['check', 'cli_models:not_a_model'], 'not a rom model'),
    (['check', 'cli_models:CliItem', '--block-size', '0'], 'at least 1'),
    (['check', 'cli_models:CliItem', '--block-size', '100001'], 'at most 100000, not 100001'),
    (['reshard', 'cli_models:CliItem', '--shards', '1025'], 'at most 1024, not 1025'),
    (['reshard', 'cli_models:CliItem', '--shards', 'many'], "'many' is not a whole number"),
])
def test_usage_errors_exit_2(args, needle, redis_url):
    result = run(*args, url=redis_url if args else None)
    assert result.returncode == 2
    assert needle in result.stderr
    assert 'Traceback' not in result.stderr


def test_unreachable_server_exits_3():
    result = run('check', 'cli_models:CliItem', url='redis://127.0.0.1:1/0')
    assert result.returncode == 3
    assert 'cannot reach Redis' in result.stderr and 'Traceback' not in result.stderr


@pytest.mark.parametrize('command', ['reindex', 'clean', 'check', 'expire', 'migrate',
                                     'reshard'])
def test_block_size_bound(command, capsys):
    """--block-size takes 1 to MAX_BLOCK_SIZE (100,000) in every command; more is a usage
    error (exit 2, no traceback)."""
    extra = ['--shards', '2'] if command == 'reshard' else []
    at = [command, 'cli_models:CliItem', '--block-size', '100000'] + extra
    assert MAX_BLOCK_SIZE == 100000
    assert _cli.build_parser().parse_args(at).block_size == 100000
    over = [command, 'cli_models:CliItem', '--block-size', '100001'] + extra
    assert _cli.main(over, io.StringIO(), io.StringIO()) == 2
    err = capsys.readouterr().err
    assert 'argument --block-size: must be at most 100000, not 100001' in err
    assert 'Traceback' not in err


def test_shards_bound(capsys):
    """reshard --shards takes 1 to MAX_SHARDS (1024)."""
    assert MAX_SHARDS == 1024
    args = _cli.build_parser().parse_args(['reshard', 'cli_models:CliItem', '--shards', '1024'])
    assert args.shards == 1024
    for bad, text in (('1025', 'at most 1024, not 1025'), ('0', 'at least 1, not 0')):
        assert _cli.main(['reshard', 'cli_models:CliItem', '--shards', bad]) == 2
        assert 'argument --shards: must be ' + text in capsys.readouterr().err


# --------------------------------------------------------------------------- in-process runs

def test_largest_block_size_runs(models, conn):
    """The commands work with the largest block (every row in one block)."""
    _healthy(models, 20)
    texts = {}
    for command in ('reindex', 'clean', 'check'):
        out = io.StringIO()
        assert _cli.main([command, 'cli_models:CliItem', '--block-size', '100000'], out,
                         io.StringIO()) == 0, command
        texts[command] = out.getvalue()
    assert 'CliItem: indexes rebuilt (20 ids handled, 20 rows indexed' in texts['reindex']
    assert 'stale legacy and unique index data removed' in texts['clean']
    assert conn.zcard('CliItem:n:idx') == 20


def test_progress_bar_only_on_a_terminal(models, conn):
    _healthy(models, 20)
    out, err = io.StringIO(), TtyStream()
    assert _cli.main(['check', 'cli_models:CliItem', '--block-size', '10'], out, err) == 0
    text = err.getvalue()
    assert '[' in text and '100.0% done' in text and 'check CliItem rows' in text
    assert 'check CliItem index entries' in text and text.endswith('\n')
    assert '\r' in text
    out, err = io.StringIO(), TtyStream()
    assert _cli.main(['reindex', 'cli_models:CliItem'], out, err) == 0
    assert 'reindex CliItem' in err.getvalue() and 'indexes rebuilt' in out.getvalue()
    out, err = io.StringIO(), TtyStream()
    assert _cli.main(['reindex', 'cli_models:CliItem', '--quiet'], out, err) == 0
    assert err.getvalue() == '' and out.getvalue() == ''
    out, err = io.StringIO(), io.StringIO()  # not a terminal
    assert _cli.main(['clean', 'cli_models:CliItem'], out, err) == 0
    assert err.getvalue() == '' and 'removed' in out.getvalue()


def test_url_sets_connection_but_not_for_models_with_own_conn(conn, redis_url, monkeypatch):
    class OwnConn(rom.Model):
        _conn = conn
        n = rom.Integer(index=True)

    for i in range(3):
        OwnConn(n=i).save()
    module = types.ModuleType('cli_inline_models')
    module.OwnConn = OwnConn
    monkeypatch.setitem(sys.modules, 'cli_inline_models', module)
    monkeypatch.setattr(util, 'CONNECTION', util.CONNECTION)
    out, err = io.StringIO(), io.StringIO()
    code = _cli.main(['check', 'cli_inline_models:OwnConn', '--url', 'redis://127.0.0.1:1/0'],
                     out, err)
    assert code == 0, err.getvalue()
    assert 'own _conn' in err.getvalue()
    assert util.CONNECTION.connection_pool.connection_kwargs['port'] == 1


def test_load_model():
    with pytest.raises(_cli.UsageError):
        _cli.load_model(':X')
    with pytest.raises(_cli.UsageError):
        _cli.load_model('os:path')
    assert _cli.load_model('rom:Model') is rom.Model


def test_job_errors_exit_3(conn, monkeypatch):
    class Broken(rom.Model):
        email = rom.Text(unique=True)

    a = Broken(email='x')
    a.save()
    module = types.ModuleType('cli_inline_broken')
    module.Broken = Broken
    monkeypatch.setitem(sys.modules, 'cli_inline_broken', module)
    conn.set('Broken:email:uidx', 'wrong type')
    out, err = io.StringIO(), io.StringIO()
    assert _cli.main(['clean', 'cli_inline_broken:Broken'], out, err) == 3
    assert 'clean failed' in err.getvalue()


def test_reindex_without_scan_and_bad_url(models, conn):
    pipe = conn.pipeline(False)
    for i in range(1, 13):
        pipe.hset('CliItem:%d' % i, mapping={'id': str(i), 'n': str(i), 'email': 'r%d' % i})
    pipe.set('CliItem:id:', 12)
    pipe.execute()
    out, err = io.StringIO(), io.StringIO()
    assert _cli.main(['reindex', 'cli_models:CliItem', '--no-scan', '--block-size', '5'],
                     out, err) == 0
    assert conn.zcard('CliItem:n:idx') == 12
    assert '12 ids handled' in out.getvalue()
    out, err = io.StringIO(), io.StringIO()
    assert _cli.main(['check', 'cli_models:CliItem', '--url', 'nonsense://x'], out, err) == 2
    assert 'invalid --url' in err.getvalue()
