"""A sharded model for the ``python -m rom reshard`` tests (declared by the test, with the
shard count it needs, as ``shard_cli_models:Thing``)."""
from __future__ import annotations

from typing import Any

import rom

Thing: Any = None


def columns() -> dict:
    return {'email': rom.Text(unique=True), 'n': rom.Integer(index=True),
            'name': rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True)}


def declare(shards: int) -> Any:
    global Thing
    Thing = type('Thing', (rom.Model,), dict(columns(), _shards=shards))
    return Thing


def declare_flat() -> Any:
    return type('FlatThing', (rom.Model,), dict(columns(), _cluster=True))
