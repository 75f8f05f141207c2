"""pytest plugin for projects using rom: a real Redis per run, a clean database per test.

Installed with rom (entry point ``pytest11``; ``pip install 'rom[testing]'`` adds pytest
and the embedded server) or enabled explicitly with ``-p rom.pytest_plugin``. It only
provides fixtures, none of them ``autouse``, so projects that do not ask for them are not
affected.

``rom_redis_url`` (session)
    URL of the test server: ``$ROM_TEST_REDIS_URL`` when set (that database is flushed before
    every test that uses ``rom_db``), otherwise an embedded ``redis-server`` started for the
    run (``rom[embedded]``: Redis, or Valkey on Python 3.13) and stopped at its end.
``rom_db``
    Per test: flushes the test database, points rom at it (``rom.util.CONNECTION``) and
    starts with a fresh session; afterwards rolls the session back, restores the previous
    connection and forgets models declared *inside* the test (or its fixtures). Models
    defined at a module's top level (your application's models, with their relations)
    stay registered, even when their module is first imported during a test. Yields the
    ``redis.Redis`` client.
``rom_roundtrips``
    ``with rom_roundtrips() as rt: ...`` counts the round trips (``rt.count``) and commands
    (``rt.commands``) rom sends to ``rom_db`` during the block.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

import pytest
import redis

from .testing import (RoundTrips, counting_client, model_registry, reset_rom_state,
                      restore_model_registry, roundtrips, stop_shared_server, test_server_url)

__all__ = ['rom_db', 'rom_redis_url', 'rom_roundtrips']


@pytest.fixture(scope='session')
def rom_redis_url() -> Iterator[str]:
    """URL of the Redis server the run uses (see the module docstring)."""
    try:
        yield test_server_url()
    finally:
        stop_shared_server()  # the embedded server, if one was started


@pytest.fixture(scope='session')
def _rom_client(rom_redis_url: str) -> Iterator[redis.Redis]:
    client = counting_client(rom_redis_url)
    yield client
    client.close()


@pytest.fixture
def rom_db(_rom_client: redis.Redis) -> Iterator[redis.Redis]:
    """A flushed database rom points at, a fresh session, the user's models kept."""
    import rom.util

    previous = rom.util.CONNECTION
    registry = model_registry()
    reset_rom_state(_rom_client)
    try:
        yield _rom_client
    finally:
        try:
            rom.util.session.rollback()
        finally:
            restore_model_registry(registry, keep_module_level=True)
            rom.util.CONNECTION = previous


@pytest.fixture
def rom_roundtrips(rom_db: redis.Redis) -> Callable[..., RoundTrips]:
    """``rom_roundtrips(conn=None)``: a round-trip counter over ``rom_db`` (or ``conn``)."""
    def counter(conn: Optional[Any] = None) -> RoundTrips:
        return roundtrips(rom_db if conn is None else conn)
    return counter
