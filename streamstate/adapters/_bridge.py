"""Bridges between the sync and async halves of LangGraph's interfaces.

An async class gets its sync methods by submitting coroutines to the loop that owns
its client (from another thread); a sync class gets its async methods by running the
sync method in a worker thread. Each bridge is written once here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

from streamstate.errors import ConfigError

T = TypeVar("T")


class LoopBound:
    """Runs coroutines on the loop that owns an asyncio client, from other threads."""

    loop: asyncio.AbstractEventLoop | None = None

    def bind_loop(self) -> None:
        if self.loop is None:
            with contextlib.suppress(RuntimeError):
                self.loop = asyncio.get_running_loop()

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self.loop is None or not self.loop.is_running():
            coro.close()
            raise ConfigError(
                f"{type(self).__name__}'s sync methods run on the event loop that owns its "
                "client; that loop is not running. Use the async methods (aget_tuple, ...), "
                "or the sync class."
            )
        if running is self.loop:
            coro.close()
            raise ConfigError(
                f"synchronous calls to {type(self).__name__} are only allowed from a thread "
                "other than its event loop's; in async code use the async methods, e.g. "
                "`await saver.aget_tuple(config)`"
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def iter_sync(self, agen: AsyncIterator[T]) -> Iterator[T]:
        while True:
            try:
                yield self.run_sync(agen.__anext__())  # type: ignore[arg-type]
            except StopAsyncIteration:
                return


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def iter_in_thread(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    it = await asyncio.to_thread(make)
    done = object()
    while (item := await asyncio.to_thread(next, it, done)) is not done:
        yield item  # type: ignore[misc]
