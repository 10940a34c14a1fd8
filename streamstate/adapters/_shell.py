"""How an adapter runs a flow: the only code that differs between sync and async.

Every adapter method is a flow from its core (a generator that yields steps and
receives their replies, see :mod:`streamstate.eventlog._drive`). An :class:`Execution`
runs a flow to its result (``complete``) or to the items it emits (``drive``), from
sync code or from async code. Three ways to do that cover every adapter:

* :class:`Runners`: the backend has a sync and an async step runner (boto3 clients,
  whose async runner moves each call to a worker thread).
* :class:`InThreads`: a sync client only; async callers run the whole flow in a
  worker thread, so the event loop never blocks.
* :class:`OnLoop`: an asyncio client only; sync callers (from other threads) submit the
  whole flow to the loop that owns the client.
"""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Protocol, TypeVar

from streamstate.adapters._bridge import LoopBound, in_thread, iter_in_thread
from streamstate.eventlog._drive import Flow, acomplete, adrive, complete, drive

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


class Execution(Protocol):
    def complete(self, flow: Flow[R]) -> R:
        """Run ``flow`` to its result, blocking."""
        ...

    def acomplete(self, flow: Flow[R]) -> Awaitable[R]:
        """Run ``flow`` to its result without blocking the event loop."""
        ...

    def drive(self, flow: Flow[Any]) -> Iterator[Any]:
        """The items ``flow`` emits, lazily, blocking between them."""
        ...

    def adrive(self, flow: Flow[Any]) -> AsyncIterator[Any]:
        """The items ``flow`` emits, lazily, without blocking the event loop."""
        ...


class Runners:
    """Sync callers use ``run``, async callers ``arun``: each step runs in the caller's
    own flavour."""

    def __init__(self, run: Callable[[Any], Any], arun: Callable[[Any], Awaitable[Any]]) -> None:
        self.run = run
        self.arun = arun

    def complete(self, flow: Flow[R]) -> R:
        return complete(flow, self.run)

    async def acomplete(self, flow: Flow[R]) -> R:
        return await acomplete(flow, self.arun)

    def drive(self, flow: Flow[Any]) -> Iterator[Any]:
        return drive(flow, self.run)

    def adrive(self, flow: Flow[Any]) -> AsyncIterator[Any]:
        return adrive(flow, self.arun)


class InThreads:
    """A sync client: async callers run the flow (every step of it) in a worker thread."""

    def __init__(self, run: Callable[[Any], Any]) -> None:
        self.run = run

    def complete(self, flow: Flow[R]) -> R:
        return complete(flow, self.run)

    async def acomplete(self, flow: Flow[R]) -> R:
        return await in_thread(complete, flow, self.run)

    def drive(self, flow: Flow[Any]) -> Iterator[Any]:
        return drive(flow, self.run)

    def adrive(self, flow: Flow[Any]) -> AsyncIterator[Any]:
        return iter_in_thread(lambda: drive(flow, self.run))


class OnLoop:
    """An asyncio client: sync callers submit the flow to the client's event loop.

    ``owner`` keeps that loop (and names itself in the error a sync call from the
    wrong thread raises); an async call binds it if the constructor could not.
    """

    def __init__(self, owner: LoopBound, arun: Callable[[Any], Awaitable[Any]]) -> None:
        self.owner = owner
        self.arun = arun

    def complete(self, flow: Flow[R]) -> R:
        return self.owner.run_sync(self.acomplete(flow))

    async def acomplete(self, flow: Flow[R]) -> R:
        self.owner.bind_loop()
        return await acomplete(flow, self.arun)

    def drive(self, flow: Flow[Any]) -> Iterator[Any]:
        return self.owner.iter_sync(self.adrive(flow))

    async def adrive(self, flow: Flow[Any]) -> AsyncIterator[Any]:
        self.owner.bind_loop()
        async for item in adrive(flow, self.arun):
            yield item


def documented(method: F, doc: str) -> F:
    """``method`` under another docstring, for a class that documents a shared method
    in its own words (the function is copied; the shared one keeps its own)."""
    copy = types.FunctionType(
        method.__code__,
        method.__globals__,
        method.__name__,
        method.__defaults__,
        method.__closure__,
    )
    copy.__kwdefaults__ = method.__kwdefaults__
    copy.__annotations__ = dict(method.__annotations__)
    copy.__qualname__ = method.__qualname__
    copy.__module__ = method.__module__
    copy.__doc__ = doc
    return copy  # type: ignore[return-value]
