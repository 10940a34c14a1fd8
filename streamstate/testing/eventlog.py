"""``EventLogContract``: one reusable test case for every event-log backend.

A backend's test module subclasses it and provides one fixture, ``log``, returning an
object with the async contract (:class:`~streamstate.eventlog.contract.AsyncEventLog`).
Sync backends are wrapped with :class:`SyncToAsync`, so the same assertions exercise the
sync path. Sessions are unique per test, so the case runs on a shared server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from streamstate.eventlog.events import Event, LogEntry, Write, WritesPut


def make_event(i: int, *, size: int = 8) -> WritesPut:
    """A small distinct event for contract tests."""
    return WritesPut(
        ns="",
        checkpoint_id=f"cp-{i:06d}",
        task_id=f"task-{i}",
        task_path="",
        writes=[Write(0, "ch", ("bytes", bytes([i % 256]) * size))],
    )


class SyncToAsync:
    """Runs a sync event log's methods in a worker thread, behind the async contract."""

    def __init__(self, log: Any) -> None:
        self.sync = log

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.sync, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call

    async def tail(self, *args: Any, **kwargs: Any) -> AsyncIterator[LogEntry]:
        it = self.sync.tail(*args, **kwargs)
        done: Any = object()
        while (item := await asyncio.to_thread(next, it, done)) is not done:
            yield item


class EventLogContract:
    """The event-log contract as tests; subclass and provide the ``log`` fixture."""

    @pytest.fixture
    def session(self) -> str:
        return f"contract-{uuid.uuid4().hex[:10]}"

    @staticmethod
    def events_of(entries: Sequence[LogEntry]) -> list[Event]:
        return [e.event for e in entries]

    async def test_append_then_read_in_order(self, log: Any, session: str) -> None:
        events = [make_event(i) for i in range(5)]
        result = await log.append(session, events[:2])
        assert result.appended and len(result.ids) == 2
        await log.append(session, events[2:])
        entries = await log.read(session)
        assert self.events_of(entries) == events
        ids = [e.id for e in entries]
        assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
        assert len(set(ids)) == 5

    async def test_read_bounds_reverse_and_count(self, log: Any, session: str) -> None:
        events = [make_event(i) for i in range(6)]
        await log.append(session, events)
        entries = await log.read(session)
        ids = [e.id for e in entries]
        assert [e.id for e in await log.read(session, ids[1], ids[3])] == ids[1:4]
        assert [e.id for e in await log.read(session, count=2)] == ids[:2]
        assert [e.id for e in await log.read(session, reverse=True)] == ids[::-1]
        assert [e.id for e in await log.read(session, reverse=True, count=2)] == ids[:-3:-1]
        assert [e.id for e in await log.read(session, ids[2], None, reverse=True)] == ids[:1:-1]

    async def test_missing_session_reads_empty(self, log: Any, session: str) -> None:
        assert await log.read(session) == []
        assert await log.length(session) == 0

    async def test_idempotent_append(self, log: Any, session: str) -> None:
        first = await log.append(session, [make_event(1)], idempotency_key="op-1")
        again = await log.append(session, [make_event(1)], idempotency_key="op-1")
        assert first.appended and not again.appended
        assert again.ids == first.ids
        other = await log.append(session, [make_event(2)], idempotency_key="op-2")
        assert other.appended
        assert await log.length(session) == 2

    async def test_sessions_are_isolated(self, log: Any, session: str) -> None:
        await log.append(session + "-a", [make_event(1)])
        await log.append(session + "-b", [make_event(2)])
        assert self.events_of(await log.read(session + "-a")) == [make_event(1)]
        assert self.events_of(await log.read(session + "-b")) == [make_event(2)]

    async def test_tail_receives_events_appended_after_it_started(
        self, log: Any, session: str
    ) -> None:
        await log.append(session, [make_event(0)])  # before the tail: not delivered
        received: list[Event] = []
        probe = make_event(99)

        async def consume() -> None:
            async for entry in log.tail(session, block_ms=100, idle_timeout=10):
                received.append(entry.event)
                if entry.event == make_event(3):
                    return

        task = asyncio.create_task(consume())
        # When the tail takes its starting point is not observable, and a loaded machine
        # can delay it past any sleep: append probes until it delivers one, so it is live.
        deadline = asyncio.get_running_loop().time() + 10
        while not received and asyncio.get_running_loop().time() < deadline:
            await log.append(session, [probe])
            await asyncio.sleep(0.05)
        for i in range(1, 4):
            await log.append(session, [make_event(i)])
        await asyncio.wait_for(task, 10)
        assert received[:-3] and all(e == probe for e in received[:-3])
        assert received[-3:] == [make_event(1), make_event(2), make_event(3)]

    async def test_tail_from_id(self, log: Any, session: str) -> None:
        await log.append(session, [make_event(i) for i in range(4)])
        entries = await log.read(session)
        got = [e async for e in log.tail(session, entries[1].id, block_ms=50, idle_timeout=0.2)]
        assert got == entries[2:]

    async def test_consumer_group_delivers_once(self, log: Any, session: str) -> None:
        await log.append(session, [make_event(i) for i in range(6)])
        assert await log.ensure_group(session, "audit") is True
        assert await log.ensure_group(session, "audit") is False
        a = await log.group_read(session, "audit", "a", count=4)
        await log.ack(session, "audit", [e.id for e in a])
        b = await log.group_read(session, "audit", "b", count=10)
        await log.ack(session, "audit", [e.id for e in b])
        assert [e.id for e in a + b] == [e.id for e in await log.read(session)]
        assert await log.group_read(session, "audit", "a", count=10) == []

    async def test_unacknowledged_events_are_redelivered(self, log: Any, session: str) -> None:
        await log.append(session, [make_event(i) for i in range(3)])
        await log.ensure_group(session, "g")
        first = await log.group_read(session, "g", "worker", count=10)
        assert len(first) == 3
        await log.ack(session, "g", [first[0].id])
        # "restart": the same consumer asks again and gets what it did not acknowledge
        again = await log.group_read(session, "g", "worker", count=10)
        assert [e.id for e in again] == [e.id for e in first[1:]]
        await log.ack(session, "g", [e.id for e in again])
        await log.append(session, [make_event(9)])
        new = await log.group_read(session, "g", "worker", count=10)
        assert self.events_of(new) == [make_event(9)]

    async def test_delete_removes_the_session(self, log: Any, session: str) -> None:
        await log.append(session, [make_event(1)])
        assert await log.delete(session) is True
        assert await log.read(session) == []
        assert await log.delete(session) is False

    async def test_trim_drops_oldest(self, log: Any, session: str) -> None:
        await log.append(session, [make_event(i) for i in range(5)])
        assert await log.trim(session, maxlen=2) == 3
        assert self.events_of(await log.read(session)) == [make_event(3), make_event(4)]
