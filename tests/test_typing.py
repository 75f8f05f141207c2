"""rom's public API is typed: tests/typing/check_models.py passes ``mypy --strict``."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKS = os.path.join(ROOT, 'tests', 'typing', 'check_models.py')



def run_mypy(path: str, tmp_path: object, mypypath: bool = True,
             config_text: str = '[mypy]\n') -> subprocess.CompletedProcess:
    """mypy --strict on ``path`` with no project config; rom is found from this checkout
    (``mypypath``) or only as installed in this environment."""
    config = os.path.join(str(tmp_path), 'mypy.ini')
    with open(config, 'w') as f:
        f.write(config_text)
    env = dict(os.environ)
    env.pop('MYPYPATH', None)
    if mypypath:
        env['MYPYPATH'] = ROOT
    return subprocess.run(
        [sys.executable, '-m', 'mypy', '--config-file', config, '--strict',
         '--warn-unused-ignores', '--cache-dir', os.path.join(ROOT, '.mypy_cache'),
         '--no-error-summary', '--hide-error-context', path],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
        cwd=str(tmp_path), env=env, timeout=600)


def test_typed_models_pass_mypy_strict(tmp_path):
    result = run_mypy(CHECKS, tmp_path)
    assert result.returncode == 0, result.stdout


def test_a_wrong_expectation_fails(tmp_path):
    # the check is not vacuous: a wrong type and an error mypy no longer reports both fail
    path = os.path.join(str(tmp_path), 'wrong.py')
    with open(path, 'w') as f:
        f.write(textwrap.dedent('''
            from typing import Optional
            from typing_extensions import assert_type
            import rom

            class Wrong(rom.Model):
                email = rom.Text(required=True)
                age = rom.Integer()

            def check(w: Wrong) -> None:
                assert_type(w.email, Optional[str])
                w.age = 3  # type: ignore[assignment]
        '''))
    result = run_mypy(path, tmp_path)
    assert result.returncode == 1, result.stdout
    assert 'wrong.py:11: error: Expression is of type "str"' in result.stdout, result.stdout
    assert 'wrong.py:12: error: Unused "type: ignore" comment' in result.stdout, result.stdout


def test_sample_project_models_pass_mypy_strict(tmp_path):
    # an application's models with typed relations (tests/sample_project, see test_plugin.py)
    result = run_mypy(os.path.join(ROOT, 'tests', 'sample_project', 'blog'), tmp_path)
    assert result.returncode == 0, result.stdout


def test_mypy_finds_the_installed_rom(tmp_path):
    # as installed by tools/run.py (editable, compat mode) or by pip: no stub errors
    path = os.path.join(str(tmp_path), 'uses_rom.py')
    with open(path, 'w') as f:
        f.write('import rom\nfrom typing_extensions import assert_type\n'
                'assert_type(rom.Model.get(1), "rom.Model | None")\n')
    result = run_mypy(path, tmp_path, mypypath=False)
    assert result.returncode == 0, result.stdout


def test_rom_itself_passes_mypy():
    # the project's own configuration ([tool.mypy] in pyproject.toml), as `tox -e type` runs it
    result = subprocess.run(
        [sys.executable, '-m', 'mypy', '--no-error-summary', '--cache-dir',
         os.path.join(ROOT, '.mypy_cache'), 'rom'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, cwd=ROOT,
        timeout=600)
    assert result.returncode == 0, result.stdout


def test_constructor_keywords_with_the_mypy_plugin(tmp_path):
    path = os.path.join(ROOT, 'tests', 'typing', 'check_constructors.py')
    result = run_mypy(path, tmp_path, config_text='[mypy]\nplugins = rom.mypy_plugin\n')
    assert result.returncode == 0, result.stdout
    # without the plugin the constructors take any keyword: the expected errors disappear
    result = run_mypy(path, tmp_path)
    assert result.returncode == 1 and 'Unused "type: ignore" comment' in result.stdout
