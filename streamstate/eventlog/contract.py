"""The event-log contract every backend implements (Valkey streams, AgentCore, Bedrock).

Semantics, exactly:

* ``append(session, events)`` adds the events at the end of the session's log, in
  order, together with every op the log's projections derive from them, all or nothing.
  With ``idempotency_key`` (or a ``guard``), a repeated append is a duplicate: nothing
  is written and ``appended`` is False. Ids are strictly increasing within a session.
* ``read(session, start, end, count, reverse)``: entries with ``start <= id <= end``
  (``None`` = unbounded), oldest first, or newest first with ``reverse``; at most
  ``count``. A missing session reads as empty.
* ``tail(session, from_id)``: entries with id ``> from_id`` as they are appended
  (``from_id=None``: only entries appended after the call), blocking between them;
  ends after ``idle_timeout`` seconds without an entry (``None``: never).
* Consumer groups: each entry is delivered to one consumer of a group; an entry stays
  pending until acknowledged, and a consumer that restarts under the same name gets
  its pending entries again before new ones (at-least-once).
* ``delete(session)`` removes the log and every view of the session; ``trim`` drops
  the oldest entries (views are kept; the trimmed part can no longer be replayed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from streamstate.eventlog.events import Event, LogEntry
from streamstate.eventlog.keys import SessionName
from streamstate.eventlog.ops import Op


@dataclass(frozen=True)
class AppendResult:
    appended: bool
    """False when the append was a duplicate and wrote nothing."""
    ids: list[str] = field(default_factory=list)
    """Ids of the new entries; for a duplicate, the earlier entry's id when known."""


class EventLog(Protocol):
    def append(
        self,
        session: SessionName,
        events: Sequence[Event],
        *,
        idempotency_key: str | None = None,
        extra_ops: Sequence[Op] = (),
        ttl: float | None = None,
    ) -> AppendResult: ...

    def read(
        self,
        session: SessionName,
        start: str | None = None,
        end: str | None = None,
        *,
        count: int | None = None,
        reverse: bool = False,
    ) -> list[LogEntry]: ...

    def tail(
        self,
        session: SessionName,
        from_id: str | None = None,
        *,
        block_ms: int = 1000,
        idle_timeout: float | None = None,
    ) -> Iterator[LogEntry]: ...

    def ensure_group(self, session: SessionName, group: str, start_id: str = "0") -> bool: ...

    def group_read(
        self,
        session: SessionName,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block_ms: int | None = None,
    ) -> list[LogEntry]: ...

    def ack(self, session: SessionName, group: str, ids: Sequence[str]) -> int: ...

    def delete(self, session: SessionName) -> bool: ...

    def trim(
        self, session: SessionName, *, maxlen: int | None = None, minid: str | None = None
    ) -> int: ...

    def length(self, session: SessionName) -> int: ...


class AsyncEventLog(Protocol):
    async def append(
        self,
        session: SessionName,
        events: Sequence[Event],
        *,
        idempotency_key: str | None = None,
        extra_ops: Sequence[Op] = (),
        ttl: float | None = None,
    ) -> AppendResult: ...

    async def read(
        self,
        session: SessionName,
        start: str | None = None,
        end: str | None = None,
        *,
        count: int | None = None,
        reverse: bool = False,
    ) -> list[LogEntry]: ...

    def tail(
        self,
        session: SessionName,
        from_id: str | None = None,
        *,
        block_ms: int = 1000,
        idle_timeout: float | None = None,
    ) -> AsyncIterator[LogEntry]: ...

    async def ensure_group(self, session: SessionName, group: str, start_id: str = "0") -> bool: ...

    async def group_read(
        self,
        session: SessionName,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block_ms: int | None = None,
    ) -> list[LogEntry]: ...

    async def ack(self, session: SessionName, group: str, ids: Sequence[str]) -> int: ...

    async def delete(self, session: SessionName) -> bool: ...

    async def trim(
        self, session: SessionName, *, maxlen: int | None = None, minid: str | None = None
    ) -> int: ...

    async def length(self, session: SessionName) -> int: ...
