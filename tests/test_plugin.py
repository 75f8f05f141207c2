"""rom's pytest plugin, tested as a user would: the sample project in tests/sample_project
(models at module level, with relations) runs its own tests with pytest in a subprocess,
using only the plugin's fixtures. Also reset_rom_state() keeping the registry.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import rom
import rom.util
from rom.testing import model_registry, reset_rom_state, restore_model_registry

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'sample_project')


def run_sample(*args: str, url: str = '') -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(('PYTEST_', 'COV_'))}
    env.pop('ROM_TEST_REDIS_URL', None)
    if url:
        env['ROM_TEST_REDIS_URL'] = url
    env['PYTHONDONTWRITEBYTECODE'] = '1'
    return subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider']
                          + list(args), cwd=SAMPLE, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)


def test_sample_project_passes_on_an_embedded_server():
    result = run_sample()
    assert result.returncode == 0, result.stdout
    assert '10 passed' in result.stdout, result.stdout


def test_sample_project_passes_on_the_server_in_rom_test_redis_url(redis_url):
    result = run_sample(url=redis_url)
    assert result.returncode == 0, result.stdout
    assert '10 passed' in result.stdout, result.stdout


def test_the_entry_point_provides_the_fixtures():
    # -p no:rom disables the installed plugin: the fixtures are gone ...
    result = run_sample('-p', 'no:rom')
    assert result.returncode == 1, result.stdout
    assert "fixture 'rom_db' not found" in result.stdout, result.stdout
    # ... and -p rom.pytest_plugin enables it explicitly
    result = run_sample('-p', 'no:rom', '-p', 'rom.pytest_plugin')
    assert result.returncode == 0, result.stdout


def test_plugin_fixtures_are_not_autouse(pytestconfig):
    # installed in this very run (rom is installed): it must not change other projects' tests
    manager = pytestconfig.pluginmanager
    plugin = manager.get_plugin('rom')
    assert plugin is not None and plugin.__name__ == 'rom.pytest_plugin'
    names = [getattr(plugin, n) for n in ('rom_db', 'rom_redis_url', 'rom_roundtrips')]
    for fixture in names:
        marker = getattr(fixture, '_fixture_function_marker', None) or getattr(
            fixture, '_pytestfixturefunction', None)
        assert marker is not None and not marker.autouse


def test_reset_rom_state_keeps_models_and_their_relations(conn):
    class Author(rom.Model):
        name = rom.Text()
        books = rom.OneToMany('Book')

    class Book(rom.Model):
        author = rom.ManyToOne('Author', on_delete='cascade')

    reset_rom_state(conn)  # rom 1.1.2-style user fixture: used to break every relation
    assert rom.columns.MODELS['Book'] is Book
    author = Author(name='a')
    Book(author=author).save()
    rom.util.session.rollback()
    assert [b.author.name for b in Author.get(1).books] == ['a']
    assert conn.dbsize() > 0
    reset_rom_state(conn)
    assert conn.dbsize() == 0 and not rom.util.session.known


def test_reset_rom_state_can_forget_models(conn):
    class Gone(rom.Model):
        ref = rom.ManyToOne('Gone', on_delete='no action')
    reset_rom_state(conn, forget_models=True)
    assert list(rom.columns.MODELS) == ['Model']
    assert rom.columns.MODELS_REFERENCED == {}


def test_model_registry_snapshot_and_restore():
    class Kept(rom.Model):
        ref = rom.ManyToOne('Kept', on_delete='no action')
    snapshot = model_registry()

    class Later(rom.Model):
        ref = rom.ManyToOne('Kept', on_delete='no action')
    assert 'Later' in rom.columns.MODELS and len(rom.columns.MODELS_REFERENCED['Kept']) == 2
    restore_model_registry(snapshot)
    assert 'Later' not in rom.columns.MODELS and rom.columns.MODELS['Kept'] is Kept
    assert rom.columns.MODELS_REFERENCED['Kept'] == [('Kept', 'ref', 'no action')]
    assert rom.columns.MODELS['Model'] is rom.Model
    with pytest.raises(rom.ORMError):
        class Kept(rom.Model):  # noqa: F811 - still registered
            pass


def test_restore_keeping_module_level_models(tmp_path, monkeypatch):
    snapshot = model_registry()
    (tmp_path / 'late_models.py').write_text(
        'import rom\n'
        'class LateTarget(rom.Model):\n'
        '    pass\n'
        'class LateRef(rom.Model):\n'
        "    ref = rom.ManyToOne('LateTarget', on_delete='cascade')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import late_models  # noqa: F401 - registers two module-level models

    class Local(rom.Model):
        ref = rom.ManyToOne('LateTarget', on_delete='no action')
    try:
        restore_model_registry(snapshot, keep_module_level=True)
        assert rom.columns.MODELS['LateRef'] is late_models.LateRef
        assert 'Local' not in rom.columns.MODELS
        assert rom.columns.MODELS_REFERENCED['LateTarget'] == [('LateRef', 'ref', 'cascade')]
    finally:
        sys.modules.pop('late_models', None)
