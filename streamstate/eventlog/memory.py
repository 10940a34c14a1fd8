"""The in-memory event log: the reference backend of the contract, for tests.

``MemoryEventLog`` and ``AsyncMemoryEventLog`` keep every session in this process (one
:class:`MemoryLogCore` may be shared by both, as two clients of one server). They pass
:class:`~streamstate.testing.eventlog.EventLogContract` unchanged, as eventsourcing's
``popo`` recorders pass their test cases; where another backend behaves differently,
the contract (``streamstate.eventlog.contract``) says which of them is right.

Like the AWS logs, this one has no server-side projections: ``extra_ops`` and ``ttl``
raise :class:`~streamstate.errors.ConfigError`. Entry ids are ``"<n>-0"``, ``n``
counting appended entries from 1 across the whole core (no clock involved).

The core writes every contract method as a flow (:class:`~streamstate.eventlog.
_flow_shell.LogFlows`); the only step a flow yields is :class:`Wait`, which the sync
shell runs on a condition variable and the async shell in a worker thread.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from streamstate.errors import ConfigError
from streamstate.eventlog._drive import Emit, Flow
from streamstate.eventlog._flow_shell import AsyncFlowEventLog, FlowEventLog
from streamstate.eventlog.contract import AppendResult
from streamstate.eventlog.events import Event, LogEntry
from streamstate.eventlog.keys import SessionName
from streamstate.eventlog.ops import Op

__all__ = ["AsyncMemoryEventLog", "MemoryEventLog", "MemoryLogCore", "Wait"]


@dataclass(frozen=True)
class Wait:
    """Block until the core's change counter passes ``seen``, or ``seconds`` pass."""

    seen: int
    seconds: float


@dataclass
class _Group:
    next: int
    """Position in the log of the next entry never delivered to the group."""
    pending: dict[str, list[str]] = field(default_factory=dict)
    """Per consumer, ids delivered and not yet acknowledged, oldest first."""


@dataclass
class _Session:
    entries: list[LogEntry] = field(default_factory=list)
    idem: dict[str, list[str]] = field(default_factory=dict)
    groups: dict[str, _Group] = field(default_factory=dict)
    trimmed: int = 0
    """Entries dropped from the front by ``trim`` (group positions count them)."""


def order(entry_id: str) -> tuple[int, int]:
    """An entry id's place in the log (``"<n>-<m>"``, compared as numbers)."""
    major, _, minor = entry_id.partition("-")
    return int(major), int(minor or 0)


def _key(session: SessionName) -> tuple[str, ...]:
    return (session,) if isinstance(session, str) else tuple(session)


class MemoryLogCore:
    """Every session's log, groups and idempotency keys, behind one lock.

    Each flow does its work at once under the lock; only ``tail`` and a blocking
    ``group_read`` yield, to wait for the next append.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.appended = threading.Condition(self.lock)
        self.changes = 0
        self._last = 0
        self._sessions: dict[tuple[str, ...], _Session] = {}

    # the two executors of the one step -------------------------------------------------

    def run(self, step: Wait) -> None:
        with self.appended:
            self.appended.wait_for(lambda: self.changes > step.seen, timeout=step.seconds)

    async def arun(self, step: Wait) -> None:
        await asyncio.to_thread(self.run, step)

    # flows ---------------------------------------------------------------------------

    def log_append_flow(
        self,
        session: SessionName,
        events: Sequence[Event],
        idempotency_key: str | None,
        extra_ops: Sequence[Op],
        ttl: float | None,
        /,
    ) -> Flow[AppendResult]:
        if extra_ops:
            raise ConfigError("the in-memory log has no server-side projections (extra_ops)")
        if ttl is not None:
            raise ConfigError("the in-memory log has no TTL: pass ttl=None")
        with self.appended:
            if not events:
                return AppendResult(True, [])
            s = self._sessions.setdefault(_key(session), _Session())
            if idempotency_key is not None and idempotency_key in s.idem:
                return AppendResult(False, list(s.idem[idempotency_key]))
            ids = []
            for event in events:
                self._last += 1
                ids.append(f"{self._last}-0")
                s.entries.append(LogEntry(ids[-1], event))
            if idempotency_key is not None:
                s.idem[idempotency_key] = ids
            self.changes += 1
            self.appended.notify_all()
        return AppendResult(True, ids)
        yield  # a flow, though it never waits

    def read_flow(
        self,
        session: SessionName,
        start: str | None,
        end: str | None,
        /,
        *,
        count: int | None,
        reverse: bool,
    ) -> Flow[list[LogEntry]]:
        low = order(start) if start is not None else (0, 0)
        high = order(end) if end is not None else (math.inf, math.inf)
        with self.lock:
            s = self._sessions.get(_key(session))
            found = [e for e in (s.entries if s else []) if low <= order(e.id) <= high]
        if reverse:
            found.reverse()
        return found if count is None else found[:count]
        yield

    def tail_flow(
        self,
        session: SessionName,
        from_id: str | None,
        /,
        *,
        block_ms: int,
        idle_timeout: float | None,
    ) -> Flow[None]:
        with self.lock:
            after = order(from_id) if from_id is not None else (self._last, 0)
        max_idle = (
            None if idle_timeout is None else max(1, math.ceil(idle_timeout * 1000 / block_ms))
        )
        idle = 0
        while max_idle is None or idle < max_idle:
            with self.lock:
                seen = self.changes
                s = self._sessions.get(_key(session))
                new = [e for e in (s.entries if s else []) if order(e.id) > after]
            if new:
                idle = 0
                after = order(new[-1].id)
                yield Emit(new)
                continue
            idle += 1
            yield Wait(seen, block_ms / 1000)

    def ensure_group_flow(self, session: SessionName, group: str, start_id: str, /) -> Flow[bool]:
        with self.lock:
            s = self._sessions.setdefault(_key(session), _Session())
            if group in s.groups:
                return False
            if start_id == "$":
                position = s.trimmed + len(s.entries)
            else:
                after = order(start_id)
                position = s.trimmed + sum(1 for e in s.entries if order(e.id) <= after)
            s.groups[group] = _Group(position)
        return True
        yield

    def group_read_flow(
        self,
        session: SessionName,
        group: str,
        consumer: str,
        /,
        *,
        count: int,
        block_ms: int | None,
    ) -> Flow[list[LogEntry]]:
        waited = False
        while True:
            with self.lock:
                seen = self.changes
                s = self._sessions.get(_key(session))
                g = s.groups.get(group) if s else None
                if s is None or g is None:
                    raise ConfigError(f"no consumer group {group!r} on session {session!r}")
                mine = g.pending.setdefault(consumer, [])
                if mine:  # redelivery first; entries trimmed meanwhile are acknowledged
                    live = {e.id: e for e in s.entries}
                    mine[:] = [i for i in mine if i in live]
                    if mine:
                        return [live[i] for i in mine[:count]]
                start = max(g.next - s.trimmed, 0)
                new = s.entries[start : start + count]
                if new:
                    g.next = s.trimmed + start + len(new)
                    mine.extend(e.id for e in new)
                    return new
            if block_ms is None or waited:
                return []
            waited = True
            yield Wait(seen, block_ms / 1000)

    def ack_flow(self, session: SessionName, group: str, ids: Sequence[str], /) -> Flow[int]:
        done = 0
        with self.lock:
            s = self._sessions.get(_key(session))
            g = s.groups.get(group) if s else None
            for pending in g.pending.values() if g else ():
                before = len(pending)
                pending[:] = [i for i in pending if i not in ids]
                done += before - len(pending)
        return done
        yield

    def delete_flow(self, session: SessionName, /) -> Flow[bool]:
        with self.lock:
            s = self._sessions.pop(_key(session), None)
        return s is not None
        yield

    def trim_flow(
        self, session: SessionName, /, *, maxlen: int | None, minid: str | None
    ) -> Flow[int]:
        with self.lock:
            s = self._sessions.get(_key(session))
            if s is None:
                return 0
            keep = s.entries
            if maxlen is not None:
                keep = keep[max(len(keep) - maxlen, 0) :]
            if minid is not None:
                keep = [e for e in keep if order(e.id) >= order(minid)]
            dropped = len(s.entries) - len(keep)
            s.entries, s.trimmed = list(keep), s.trimmed + dropped
        return dropped
        yield

    def length_flow(self, session: SessionName, /) -> Flow[int]:
        with self.lock:
            s = self._sessions.get(_key(session))
            return len(s.entries) if s else 0
        yield


class MemoryEventLog(FlowEventLog[MemoryLogCore]):
    """The synchronous contract, in this process.

    Args:
        core: The sessions to share with other logs (an :class:`AsyncMemoryEventLog`);
            by default a new, empty one.
    """

    def __init__(self, core: MemoryLogCore | None = None) -> None:
        self.core = core or MemoryLogCore()
        self.run = self.core.run


class AsyncMemoryEventLog(AsyncFlowEventLog[MemoryLogCore]):
    """The asyncio twin of :class:`MemoryEventLog` (same arguments, awaitable methods)."""

    def __init__(self, core: MemoryLogCore | None = None) -> None:
        self.core = core or MemoryLogCore()
        self.run = self.core.arun
