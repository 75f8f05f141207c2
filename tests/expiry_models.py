"""Models imported by ``python -m rom expire`` in tests/test_expiry.py (PYTHONPATH has tests/)."""
from __future__ import annotations

import rom


class ExpToken(rom.Model):
    """Short-lived tokens: 30 ms by default."""

    _ttl = 0.03
    value = rom.Text(unique=True)
    n = rom.Integer(index=True)


class ExpForever(rom.Model):
    """A model without _ttl (``expire`` refuses it)."""

    n = rom.Integer(index=True)
