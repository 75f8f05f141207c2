"""Run one behaviour test through both drivers: the blocking API and the asyncio API.

A test written once as ``async def`` takes the ``api`` fixture and awaits every I/O call
through it::

    async def test_save_and_get(api):
        user = User(email='a@x')
        await api.save(user)
        assert (await api.get(User, user.id)).email == 'a@x'

The fixture is parametrised: ``api`` is :class:`SyncApi` (each call is the blocking method,
``user.save()``) or :class:`AsyncApi` (each call is awaited, ``await user.asave()``). The
whole test body runs as one asyncio task, so the per-task session of the async run covers
the test as the per-thread session covers the sync run. Tests without I/O-free differences
need nothing else; a test may look at ``api.is_async``.

``async def`` tests are run by :func:`run_coroutine_test` (conftest's
``pytest_pyfunc_call``), one event loop per test, closed with its clients at the end.
"""
from __future__ import annotations

import asyncio
import inspect
from typing import Any, Dict

from rom.util import session

__all__ = ['SyncApi', 'AsyncApi', 'run_coroutine_test']


class SyncApi:
    """The blocking API behind awaitable calls (each call returns at once)."""

    is_async = False

    async def save(self, entity: Any, **kwargs: Any) -> Any:
        return entity.save(**kwargs)

    async def delete(self, entity: Any, **kwargs: Any) -> Any:
        return entity.delete(**kwargs)

    async def refresh(self, entity: Any, **kwargs: Any) -> Any:
        return entity.refresh(**kwargs)

    async def get(self, model: Any, ids: Any, **kwargs: Any) -> Any:
        return model.get(ids, **kwargs)

    async def get_by(self, model: Any, **kwargs: Any) -> Any:
        return model.get_by(**kwargs)

    async def commit(self, **kwargs: Any) -> Any:
        return session.commit(**kwargs)

    async def all(self, query: Any) -> Any:
        return query.all()

    async def first(self, query: Any) -> Any:
        return query.first()

    async def count(self, query: Any) -> Any:
        return query.count()


class AsyncApi(SyncApi):
    """The asyncio API (``a``-prefixed methods, awaited)."""

    is_async = True

    async def save(self, entity: Any, **kwargs: Any) -> Any:
        return await entity.asave(**kwargs)

    async def delete(self, entity: Any, **kwargs: Any) -> Any:
        return await entity.adelete(**kwargs)

    async def refresh(self, entity: Any, **kwargs: Any) -> Any:
        return await entity.arefresh(**kwargs)

    async def get(self, model: Any, ids: Any, **kwargs: Any) -> Any:
        return await model.aget(ids, **kwargs)

    async def get_by(self, model: Any, **kwargs: Any) -> Any:
        return await model.aget_by(**kwargs)

    async def commit(self, **kwargs: Any) -> Any:
        return await session.acommit(**kwargs)

    async def all(self, query: Any) -> Any:
        return await query.aall()

    async def first(self, query: Any) -> Any:
        return await query.afirst()

    async def count(self, query: Any) -> Any:
        return await query.acount()


def run_coroutine_test(function: Any, funcargs: Dict[str, Any]) -> None:
    """Run an ``async def`` test in a fresh event loop, closing rom's async clients after."""
    names = inspect.signature(function).parameters
    kwargs = {name: funcargs[name] for name in names if name in funcargs}

    async def main() -> None:
        try:
            await function(**kwargs)
        finally:
            from rom._aconnect import aclose_loop_clients
            await aclose_loop_clients()

    asyncio.run(main())
