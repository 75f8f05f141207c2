"""tools/run.py (the README's bootstrap runner): its options and where its venvs go.

The install itself is exercised by every CI run (it is how the suite gets run); these tests
check the option parsing and the per-spec environments without installing anything.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'tools', 'run.py')


def _load():
    spec = importlib.util.spec_from_file_location('rom_run_tool', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_options():
    run = _load()
    assert run.parse_options(['test', '-x']) == ([], None, ['test', '-x'])
    assert run.parse_options(['--with', 'redis==4.5.5', '--server=valkey', 'test', '-k', 'a']) \
        == (['redis==4.5.5'], 'valkey', ['test', '-k', 'a'])
    assert run.parse_options(['--with=hiredis', '--with', 'redis<6', 'docs']) \
        == (['hiredis', 'redis<6'], None, ['docs'])
    for bad in ([], ['nope'], ['--server', 'memcached', 'test'], ['--with'], ['--what', 'test'],
                ['--with', 'redis']):
        assert run.parse_options(bad) is None, bad


def test_one_venv_per_python_and_spec():
    run = _load()
    tag = 'cpython%d%d' % sys.version_info[:2]
    assert run.venv_dir() == os.path.join(ROOT, '.venv-run', tag)
    assert run.venv_dir(['redis==4.5.5']) == os.path.join(ROOT, '.venv-run', tag + '-redis-4.5.5')
    assert run.venv_dir(['b>1', 'a<2']) == os.path.join(ROOT, '.venv-run', tag + '-a-2-b-1')
    assert run.inputs_digest() != run.inputs_digest(['redis==4.5.5'])


def test_usage_on_a_bad_option():
    result = subprocess.run([sys.executable, SCRIPT, '--server', 'memcached', 'test'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=60)
    assert result.returncode == 2
    assert '--with SPEC' in result.stderr and '--server KIND' in result.stderr
