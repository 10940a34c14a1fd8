"""The event-log contract over a core that writes every method as a flow.

The AgentCore, Bedrock and in-memory logs keep all their logic in a core whose flows
are named after the contract (:class:`LogFlows`). The two shells below are the only code that
runs those flows: a method body is one call to the core and one driver, written once
for sync and once for async. A backend subclasses them and adds only its constructor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from streamstate.eventlog._drive import Flow, acomplete, adrive, complete, drive
from streamstate.eventlog.contract import AppendResult
from streamstate.eventlog.events import Event, LogEntry
from streamstate.eventlog.keys import SessionName
from streamstate.eventlog.ops import Op


class LogFlows(Protocol):
    """One flow per contract method; the shells pass the keyword arguments by name.

    The session comes positionally, as the cores name it differently. ``append`` is
    ``log_append_flow`` because AgentCore's ``append_flow`` is its raw CreateEvent.
    """

    def log_append_flow(
        self,
        session: SessionName,
        events: Sequence[Event],
        idempotency_key: str | None,
        extra_ops: Sequence[Op],
        ttl: float | None,
        /,
    ) -> Flow[AppendResult]: ...

    def read_flow(
        self,
        session: SessionName,
        start: str | None,
        end: str | None,
        /,
        *,
        count: int | None,
        reverse: bool,
    ) -> Flow[list[LogEntry]]: ...

    def tail_flow(
        self,
        session: SessionName,
        from_id: str | None,
        /,
        *,
        block_ms: int,
        idle_timeout: float | None,
    ) -> Flow[None]: ...

    def ensure_group_flow(
        self, session: SessionName, group: str, start_id: str, /
    ) -> Flow[bool]: ...

    def group_read_flow(
        self,
        session: SessionName,
        group: str,
        consumer: str,
        /,
        *,
        count: int,
        block_ms: int | None,
    ) -> Flow[list[LogEntry]]: ...

    def ack_flow(self, session: SessionName, group: str, ids: Sequence[str], /) -> Flow[int]: ...

    def delete_flow(self, session: SessionName, /) -> Flow[bool]: ...

    def trim_flow(
        self, session: SessionName, /, *, maxlen: int | None, minid: str | None
    ) -> Flow[int]: ...

    def length_flow(self, session: SessionName, /) -> Flow[int]: ...


C = TypeVar("C", bound=LogFlows)


class FlowEventLog(Generic[C]):
    """The synchronous contract over ``core``'s flows.

    A backend's constructor sets ``core``, and ``run`` (as an attribute or a method):
    what executes one step a flow yields.
    """

    core: C
    run: Callable[[Any], Any]

    def append(
        self,
        session: SessionName,
        events: Sequence[Event],
        *,
        idempotency_key: str | None = None,
        extra_ops: Sequence[Op] = (),
        ttl: float | None = None,
    ) -> AppendResult:
        flow = self.core.log_append_flow(session, events, idempotency_key, extra_ops, ttl)
        return complete(flow, self.run)

    def read(
        self,
        session: SessionName,
        start: str | None = None,
        end: str | None = None,
        *,
        count: int | None = None,
        reverse: bool = False,
    ) -> list[LogEntry]:
        flow = self.core.read_flow(session, start, end, count=count, reverse=reverse)
        return complete(flow, self.run)

    def tail(
        self,
        session: SessionName,
        from_id: str | None = None,
        *,
        block_ms: int = 1000,
        idle_timeout: float | None = None,
    ) -> Iterator[LogEntry]:
        flow = self.core.tail_flow(session, from_id, block_ms=block_ms, idle_timeout=idle_timeout)
        return drive(flow, self.run)

    def ensure_group(self, session: SessionName, group: str, start_id: str = "0") -> bool:
        return complete(self.core.ensure_group_flow(session, group, start_id), self.run)

    def group_read(
        self,
        session: SessionName,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block_ms: int | None = None,
    ) -> list[LogEntry]:
        flow = self.core.group_read_flow(session, group, consumer, count=count, block_ms=block_ms)
        return complete(flow, self.run)

    def ack(self, session: SessionName, group: str, ids: Sequence[str]) -> int:
        return complete(self.core.ack_flow(session, group, ids), self.run)

    def delete(self, session: SessionName) -> bool:
        return complete(self.core.delete_flow(session), self.run)

    def trim(
        self, session: SessionName, *, maxlen: int | None = None, minid: str | None = None
    ) -> int:
        return complete(self.core.trim_flow(session, maxlen=maxlen, minid=minid), self.run)

    def length(self, session: SessionName) -> int:
        return complete(self.core.length_flow(session), self.run)


class AsyncFlowEventLog(Generic[C]):
    """The asyncio twin of :class:`FlowEventLog`: same methods, awaitable ``run``."""

    core: C
    run: Callable[[Any], Awaitable[Any]]

    async def append(
        self,
        session: SessionName,
        events: Sequence[Event],
        *,
        idempotency_key: str | None = None,
        extra_ops: Sequence[Op] = (),
        ttl: float | None = None,
    ) -> AppendResult:
        flow = self.core.log_append_flow(session, events, idempotency_key, extra_ops, ttl)
        return await acomplete(flow, self.run)

    async def read(
        self,
        session: SessionName,
        start: str | None = None,
        end: str | None = None,
        *,
        count: int | None = None,
        reverse: bool = False,
    ) -> list[LogEntry]:
        flow = self.core.read_flow(session, start, end, count=count, reverse=reverse)
        return await acomplete(flow, self.run)

    def tail(
        self,
        session: SessionName,
        from_id: str | None = None,
        *,
        block_ms: int = 1000,
        idle_timeout: float | None = None,
    ) -> AsyncIterator[LogEntry]:
        flow = self.core.tail_flow(session, from_id, block_ms=block_ms, idle_timeout=idle_timeout)
        return adrive(flow, self.run)

    async def ensure_group(self, session: SessionName, group: str, start_id: str = "0") -> bool:
        return await acomplete(self.core.ensure_group_flow(session, group, start_id), self.run)

    async def group_read(
        self,
        session: SessionName,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block_ms: int | None = None,
    ) -> list[LogEntry]:
        flow = self.core.group_read_flow(session, group, consumer, count=count, block_ms=block_ms)
        return await acomplete(flow, self.run)

    async def ack(self, session: SessionName, group: str, ids: Sequence[str]) -> int:
        return await acomplete(self.core.ack_flow(session, group, ids), self.run)

    async def delete(self, session: SessionName) -> bool:
        return await acomplete(self.core.delete_flow(session), self.run)

    async def trim(
        self, session: SessionName, *, maxlen: int | None = None, minid: str | None = None
    ) -> int:
        return await acomplete(self.core.trim_flow(session, maxlen=maxlen, minid=minid), self.run)

    async def length(self, session: SessionName) -> int:
        return await acomplete(self.core.length_flow(session), self.run)
