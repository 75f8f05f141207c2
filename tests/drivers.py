"""Run one behaviour test through both drivers: the blocking API and the asyncio API.

A test written once as ``async def`` takes the ``api`` fixture and awaits every I/O call
through it::

    async def test_save_and_get(api):
        user = User(email='a@x')
        await api.save(user)
        assert (await api.get(User, user.id)).email == 'a@x'

The fixture is parametrised: ``api`` is :class:`SyncApi` (each call is the blocking method,
``user.save()``) or :class:`AsyncApi` (each call is awaited, ``await user.asave()``). In
the async run the whole test body is one asyncio task, so its per-task session covers the
test as the per-thread session covers the sync run. The sync run has no event loop at all
(its awaits never suspend): rom sees exactly the blocking code it always saw. A test may
look at ``api.is_async``.

``async def`` tests are run by :func:`run_coroutine_test` (conftest's
``pytest_pyfunc_call``): one event loop per test, closed with its clients at the end. With
``ROM_TEST_NO_BLOCKING=1`` the blocking client factory raises during the [async] runs (a
diagnostic: it finds blocking I/O inside the event loop, rom's or the test body's own).
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import os
from typing import Any, AsyncIterator, Dict, Iterator, List

from rom.query import Query
from rom.util import session

__all__ = ['SyncApi', 'AsyncApi', 'run_coroutine_test', 'without_id_counters']


class _Pages:
    """A blocking iterator seen as an async one (``__anext__`` calls ``next``)."""

    def __init__(self, iterator: Any) -> None:
        self._iterator = iterator

    def __aiter__(self) -> _Pages:
        return self

    async def __anext__(self) -> Any:
        try:
            return next(self._iterator)
        except StopIteration:
            raise StopAsyncIteration from None


@contextlib.asynccontextmanager
async def _held(lock: Any) -> AsyncIterator[Any]:
    """A blocking lock's ``with`` seen as ``async with``."""
    with lock as held:
        yield held


class SyncApi:
    """The blocking API behind awaitable calls (each call returns at once)."""

    is_async = False

    # entities
    async def save(self, entity: Any, **kwargs: Any) -> Any:
        return entity.save(**kwargs)

    async def ttl(self, entity: Any) -> Any:
        return entity.ttl()

    async def delete(self, entity_or_query: Any, **kwargs: Any) -> Any:
        """``entity.delete(**kwargs)`` or ``query.delete(blocksize=...)``."""
        return entity_or_query.delete(**kwargs)

    async def refresh(self, entity: Any, **kwargs: Any) -> Any:
        return entity.refresh(**kwargs)

    async def transfer(self, entity: Any, *args: Any, **kwargs: Any) -> Any:
        return entity.transfer(*args, **kwargs)

    async def load(self, entity: Any, name: str) -> Any:
        """The value of relation ``name`` (read lazily by the blocking API)."""
        return getattr(entity, name)

    async def get(self, model: Any, ids: Any, **kwargs: Any) -> Any:
        return model.get(ids, **kwargs)

    async def get_by(self, model: Any, **kwargs: Any) -> Any:
        return model.get_by(**kwargs)

    # session
    async def commit(self, **kwargs: Any) -> Any:
        return session.commit(**kwargs)

    async def flush(self, **kwargs: Any) -> Any:
        return session.flush(**kwargs)

    async def session_save(self, *objects: Any, **kwargs: Any) -> Any:
        return session.save(*objects, **kwargs)

    async def session_delete(self, *objects: Any, **kwargs: Any) -> Any:
        return session.delete(*objects, **kwargs)

    async def session_refresh(self, *objects: Any, **kwargs: Any) -> Any:
        return session.refresh(*objects, **kwargs)

    async def session_refresh_all(self, *objects: Any, **kwargs: Any) -> Any:
        return session.refresh_all(*objects, **kwargs)

    # queries
    async def all(self, query: Any) -> Any:
        return query.all()

    async def first(self, query: Any) -> Any:
        return query.first()

    async def count(self, query: Any) -> Any:
        return query.count()

    async def cached_result(self, query: Any, timeout: Any) -> Any:
        return query.cached_result(timeout)

    async def exists(self, query: Any) -> Any:
        return query.exists()

    async def execute(self, query: Any) -> Any:
        return query.execute()

    async def select(self, query: Any, *names: Any, **kwargs: Any) -> Any:
        """The rows of ``query.select(*names, **kwargs)`` as a list."""
        return query.select(*names, **kwargs).all()

    async def page(self, query: Any, count: int, after: Any = None) -> Any:
        return query.page(count, after=after)

    async def list(self, iterable: Any) -> List[Any]:
        """Every item of a query (iterated) or of any other iterable."""
        return list(iterable)

    async def iter_result(self, query: Any, **kwargs: Any) -> List[Any]:
        """Every item of ``query.iter_result(**kwargs)`` (fetched page by page)."""
        return list(query.iter_result(**kwargs))

    # locks
    async def acquire(self, lock: Any) -> Any:
        return lock.acquire()

    async def release(self, lock: Any) -> Any:
        return lock.release()

    async def lock_refresh(self, lock: Any) -> Any:
        return lock.refresh()

    def hold(self, lock: Any) -> Any:
        """``async with api.hold(lock) as held:``: ``with lock`` (sync) / ``async with lock``."""
        return _held(lock)

    def iterate(self, query: Any, **kwargs: Any) -> Any:
        """An async iterator over ``query.iter_result(**kwargs)`` (nothing read yet)."""
        return _Pages(query.iter_result(**kwargs))

    async def next(self, iterator: Any) -> Any:
        """The next item of :meth:`iterate`'s iterator."""
        return await iterator.__anext__()


class AsyncApi(SyncApi):
    """The asyncio API (``a``-prefixed methods, awaited)."""

    is_async = True

    async def save(self, entity: Any, **kwargs: Any) -> Any:
        return await entity.asave(**kwargs)

    async def ttl(self, entity: Any) -> Any:
        return await entity.attl()

    async def delete(self, entity_or_query: Any, **kwargs: Any) -> Any:
        return await entity_or_query.adelete(**kwargs)

    async def refresh(self, entity: Any, **kwargs: Any) -> Any:
        return await entity.arefresh(**kwargs)

    async def transfer(self, entity: Any, *args: Any, **kwargs: Any) -> Any:
        return await entity.atransfer(*args, **kwargs)

    async def load(self, entity: Any, name: str) -> Any:
        await entity.aload(name)
        return getattr(entity, name)

    async def get(self, model: Any, ids: Any, **kwargs: Any) -> Any:
        return await model.aget(ids, **kwargs)

    async def get_by(self, model: Any, **kwargs: Any) -> Any:
        return await model.aget_by(**kwargs)

    async def commit(self, **kwargs: Any) -> Any:
        return await session.acommit(**kwargs)

    async def flush(self, **kwargs: Any) -> Any:
        return await session.aflush(**kwargs)

    async def session_save(self, *objects: Any, **kwargs: Any) -> Any:
        return await session.asave(*objects, **kwargs)

    async def session_delete(self, *objects: Any, **kwargs: Any) -> Any:
        return await session.adelete(*objects, **kwargs)

    async def session_refresh(self, *objects: Any, **kwargs: Any) -> Any:
        return await session.arefresh(*objects, **kwargs)

    async def session_refresh_all(self, *objects: Any, **kwargs: Any) -> Any:
        return await session.arefresh_all(*objects, **kwargs)

    async def all(self, query: Any) -> Any:
        return await query.aall()

    async def first(self, query: Any) -> Any:
        return await query.afirst()

    async def count(self, query: Any) -> Any:
        return await query.acount()

    async def cached_result(self, query: Any, timeout: Any) -> Any:
        return await query.acached_result(timeout)

    async def exists(self, query: Any) -> Any:
        return await query.aexists()

    async def execute(self, query: Any) -> Any:
        return await query.aexecute()

    async def select(self, query: Any, *names: Any, **kwargs: Any) -> Any:
        return await query.aselect(*names, **kwargs)

    async def page(self, query: Any, count: int, after: Any = None) -> Any:
        return await query.apage(count, after=after)

    async def list(self, iterable: Any) -> List[Any]:
        if isinstance(iterable, Query):
            return [item async for item in iterable]
        return list(iterable)

    async def iter_result(self, query: Any, **kwargs: Any) -> List[Any]:
        return [item async for item in self.iterate(query, **kwargs)]

    def iterate(self, query: Any, **kwargs: Any) -> Any:
        return query.aiter_result(**kwargs) if kwargs else query.__aiter__()

    async def acquire(self, lock: Any) -> Any:
        return await lock.aacquire()

    async def release(self, lock: Any) -> Any:
        return await lock.arelease()

    async def lock_refresh(self, lock: Any) -> Any:
        return await lock.arefresh()

    def hold(self, lock: Any) -> Any:
        return lock


def without_id_counters(api: SyncApi, snapshot: Dict[Any, Any]) -> Dict[Any, Any]:
    """A key -> value snapshot of the database without the id counters (``<ns>:id:``) in
    the async run: there a new entity takes its id at its first save, so a save refused
    before anything is written has still moved the counter (the blocking API moved it when
    the entity was built, before the test's snapshot). Unchanged in the sync run."""
    if not api.is_async:
        return snapshot
    return {k: v for k, v in snapshot.items()
            if not (k.decode() if isinstance(k, bytes) else k).endswith(':id:')}


def run_coroutine_test(function: Any, funcargs: Dict[str, Any]) -> None:
    """Run an ``async def`` test in a fresh event loop, closing rom's async clients after.

    The ``[sync]`` variant (``api`` is a :class:`SyncApi`) runs outside any event loop: its
    awaits never suspend, so the coroutine is driven to its end by hand, and rom sees plain
    blocking code (per-thread session, ids taken at construction), exactly as before.
    """
    names = inspect.signature(function).parameters
    kwargs = {name: funcargs[name] for name in names if name in funcargs}
    if isinstance(kwargs.get('api'), SyncApi) and not kwargs['api'].is_async:
        _run_without_loop(function(**kwargs))
        return

    async def main() -> None:
        try:
            if os.environ.get('ROM_TEST_NO_BLOCKING'):
                with _blocking_factory_raises():
                    await function(**kwargs)
            else:
                await function(**kwargs)
        finally:
            from rom._aconnect import aclose_loop_clients
            await aclose_loop_clients()

    asyncio.run(main())
    gc.collect()  # a client or connection left open is reported by this test, not a later one


def _run_without_loop(coroutine: Any) -> None:
    """Drive a coroutine that never suspends (every await completes at once)."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError('a [sync] test body awaited something that suspends (it needs an '
                       'event loop): check api.is_async before using asyncio')


@contextlib.contextmanager
def _blocking_factory_raises() -> Iterator[None]:
    """``ROM_TEST_NO_BLOCKING=1``: the blocking client factory raises in the [async] runs, so
    a test fails where rom (or the test body itself) would block the event loop on Redis."""
    import rom.util

    def refuse(*args: Any) -> Any:
        raise RuntimeError('the blocking client factory was called inside the event loop')

    saved = rom.util._connect, rom.util.get_connection
    rom.util._connect = rom.util.get_connection = refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        rom.util._connect, rom.util.get_connection = saved  # type: ignore[assignment]
