"""Models imported by ``python -m rom`` in tests/test_cli.py (PYTHONPATH includes tests/)."""
from __future__ import annotations

import rom


class CliItem(rom.Model):
    """An indexed model for the CLI tests."""

    n = rom.Integer(index=True)
    word = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True)
    email = rom.Text(unique=True)
    notes = rom.UnsafeColumn()


class CliOther(rom.Model):
    """A second model, in a namespace containing ':'."""

    _namespace = 'cli:other'
    n = rom.Integer(index=True)
    notes = rom.UnsafeColumn()


def not_a_model() -> None:
    """Something importable that is not a model."""
