"""The quick-start demo runs green against the test server and shows every query kind."""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_demo_runs(redis_url, conn):
    env = dict(os.environ, ROM_REDIS_URI=redis_url,
               PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'examples', 'quickstart.py')],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert 'get_by(email=' in out and '-> Ada Lovelace' in out
    assert 'filter(age=(40, 80))' in out and 'Alan Turing' in out
    assert 'filter(name="hopper") -> Grace Brewster Hopper' in out
    assert 'endswith(email="example.org") -> Alan Turing' in out
    assert 'startswith(name="ed") -> Edsger Wybe Dijkstra' in out
    assert 'like(email="a*@*example.*") -> Ada Lovelace' in out
    near = out.split('near("home"')[1].splitlines()[0]
    assert near.index('Ada') < near.index('Alan') < near.index('Edsger') and 'Grace' not in near
    assert '0 users left' in out
    for key in conn.keys('*'):  # only the id counter and expiring query results remain
        assert key == b'QuickstartUser:id:' or conn.ttl(key) > 0, key
