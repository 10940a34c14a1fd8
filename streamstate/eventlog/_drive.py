"""Drivers for multi-step operations written once as generators.

A flow is a generator that yields a call (something the backend executes) and
receives its reply — or, if the call failed, has the exception thrown in at the yield,
so a flow can handle a backend error itself. It yields :class:`Emit` to hand results
to the caller. The drivers below are the only code that differs between the shells.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Emit:
    """Results a flow hands to its caller before it continues."""

    items: list[Any]


Flow = Generator[Any, Any, R]

_DONE = object()


class _Stepper:
    def __init__(self, flow: Flow[Any]) -> None:
        self.flow = flow
        self.result: Any = None

    def next(self, reply: Any, error: BaseException | None) -> Any:
        try:
            return self.flow.throw(error) if error is not None else self.flow.send(reply)
        except StopIteration as stop:
            self.result = stop.value
            return _DONE


def drive(flow: Flow[Any], run: Callable[[Any], Any]) -> Iterator[Any]:
    """Run a flow synchronously, yielding what it emits."""
    stepper = _Stepper(flow)
    reply: Any = None
    error: BaseException | None = None
    while (step := stepper.next(reply, error)) is not _DONE:
        reply, error = None, None
        if isinstance(step, Emit):
            yield from step.items
            continue
        try:
            reply = run(step)
        except Exception as exc:
            error = exc


async def adrive(flow: Flow[Any], run: Callable[[Any], Awaitable[Any]]) -> AsyncIterator[Any]:
    """Run a flow on an event loop, yielding what it emits."""
    stepper = _Stepper(flow)
    reply: Any = None
    error: BaseException | None = None
    while (step := stepper.next(reply, error)) is not _DONE:
        reply, error = None, None
        if isinstance(step, Emit):
            for item in step.items:
                yield item
            continue
        try:
            reply = await run(step)
        except Exception as exc:
            error = exc


def complete(flow: Flow[R], run: Callable[[Any], Any]) -> R:
    """Run a flow to completion and return its result (emitted items are discarded)."""
    stepper = _Stepper(flow)
    reply: Any = None
    error: BaseException | None = None
    while (step := stepper.next(reply, error)) is not _DONE:
        reply, error = None, None
        if isinstance(step, Emit):
            continue
        try:
            reply = run(step)
        except Exception as exc:
            error = exc
    return stepper.result


async def acomplete(flow: Flow[R], run: Callable[[Any], Awaitable[Any]]) -> R:
    stepper = _Stepper(flow)
    reply: Any = None
    error: BaseException | None = None
    while (step := stepper.next(reply, error)) is not _DONE:
        reply, error = None, None
        if isinstance(step, Emit):
            continue
        try:
            reply = await run(step)
        except Exception as exc:
            error = exc
    return stepper.result
