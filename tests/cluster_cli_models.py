"""Cluster-mode models for the ``python -m rom`` run on a local cluster (tests/test_cluster.py)."""
import rom


class CluItem(rom.Model):
    _cluster = 'cli'
    name = rom.Text(index=True, keygen=rom.IDENTITY, unique=True)
    n = rom.Integer(index=True)
