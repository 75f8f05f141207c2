"""The documentation cannot drift from the code.

* Every ``>>>`` example of every ``docs/**/*.rst`` page is run with :mod:`doctest`
  (``ELLIPSIS | NORMALIZE_WHITESPACE``), one test per page, against the test server: the
  autouse fixture of ``conftest.py`` points ``rom.util.CONNECTION`` at an empty database and
  empties the model registry before each page, so models declared on one page do not clash
  with another page's.
* The HTML build runs with warnings as errors (``sphinx-build -W --keep-going``), and every
  public name of ``rom``, ``rom.columns``, ``rom.model``, ``rom.query``, ``rom.index``,
  ``rom.util`` and ``rom.exceptions`` must be documented in the API reference, with a
  docstring for every public class, function and method.

Sphinx is part of the ``dev`` extra, so a missing Sphinx is a failure, not a skip.
"""
from __future__ import annotations

import doctest
import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / 'docs'
PAGES = sorted(p for p in DOCS.rglob('*.rst') if '_build' not in p.parts)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

PUBLIC_MODULES = ['rom', 'rom.columns', 'rom.model', 'rom.query', 'rom.index', 'rom.util',
                  'rom.exceptions']

# Pages that exist only to hold examples must have some; the others may have none.
EXAMPLE_PAGES = {
    'getting-started.rst', 'models.rst', 'indexes.rst', 'queries.rst', 'relations.rst',
    'session.rst', 'concurrency.rst', 'maintenance.rst', 'expiring.rst', 'migrating.rst',
    'storage.rst',
}


def _page_id(path: Path) -> str:
    return str(path.relative_to(DOCS))


def test_docs_pages_exist():
    names = {p.name for p in PAGES}
    assert EXAMPLE_PAGES <= names, sorted(EXAMPLE_PAGES - names)
    assert 'index.rst' in names


@pytest.mark.parametrize('page', PAGES, ids=_page_id)
def test_examples_run(page: Path) -> None:
    text = page.read_text(encoding='utf-8')
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {'__name__': 'docs_' + page.stem.replace('-', '_')},
                              _page_id(page), str(page), 0)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: List[str] = []
    modules_before = set(sys.modules)
    try:
        runner.run(test, out=report.append, clear_globs=True)
    finally:
        import rom.util
        rom.util.session.rollback()
        for name in set(sys.modules) - modules_before:  # modules a page built by hand
            if getattr(sys.modules[name], '__file__', None) is None:
                del sys.modules[name]
    assert runner.failures == 0, ''.join(report)
    if page.name in EXAMPLE_PAGES:
        assert runner.tries > 0, '%s has no >>> example' % (page,)


# --------------------------------------------------------------------------- API reference

def _public_names(module_name: str) -> List[str]:
    return list(importlib.import_module(module_name).__all__)


def test_public_classes_and_functions_have_docstrings():
    missing = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                continue
            if inspect.isclass(obj) or inspect.isfunction(obj):
                if not (obj.__dict__.get('__doc__') if inspect.isclass(obj) else obj.__doc__):
                    missing.append('%s.%s' % (module_name, name))
            if inspect.isclass(obj):
                for attr in dir(obj):
                    if attr.startswith('_'):
                        continue
                    raw = inspect.getattr_static(obj, attr)
                    func = raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else raw
                    if (inspect.isfunction(func) or isinstance(func, property)) \
                            and not func.__doc__:
                        missing.append('%s.%s.%s' % (module_name, name, attr))
    assert not missing, missing


def _documented(inventory_path: Path) -> Set[str]:
    from sphinx.util.inventory import InventoryFile
    with open(inventory_path, 'rb') as f:
        inventory = InventoryFile.load(f, '', os.path.join)
    names: Set[str] = set()
    for role, entries in inventory.items():
        if role.startswith('py:'):
            names.update(entries)
    return names


@pytest.fixture(scope='module')
def built_docs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, object]:
    out = tmp_path_factory.mktemp('docs')
    proc = subprocess.run(
        [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b', 'html',
         '-d', str(out / 'doctrees'), str(DOCS), str(out / 'html')],
        cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=300)
    return {'returncode': proc.returncode, 'output': proc.stdout, 'html': out / 'html'}


def test_sphinx_build_has_no_warnings(built_docs):
    import sphinx  # noqa: F401  (part of the dev extra: its absence is a failure)
    assert built_docs['returncode'] == 0, built_docs['output']


def test_every_public_name_is_in_the_api_reference(built_docs):
    assert built_docs['returncode'] == 0, built_docs['output']
    documented = _documented(Path(str(built_docs['html'])) / 'objects.inv')
    missing = []
    for module_name in PUBLIC_MODULES:
        for name in _public_names(module_name):
            obj = getattr(importlib.import_module(module_name), name)
            if inspect.ismodule(obj):
                if obj.__name__ not in documented:
                    missing.append(obj.__name__)
                continue
            if '%s.%s' % (module_name, name) in documented:
                continue
            # the package re-exports names documented in their home module
            home = getattr(obj, '__module__', None)
            homes = [m for m in PUBLIC_MODULES[1:]
                     if name in _public_names(m) and getattr(importlib.import_module(m),
                                                             name) is obj]
            if module_name == 'rom' and any('%s.%s' % (m, name) in documented for m in homes):
                continue
            missing.append('%s.%s (defined in %s)' % (module_name, name, home))
    assert not missing, missing
