"""The event-log contract every backend implements (Valkey streams, AgentCore, Bedrock).

:class:`EventLog` states each method's guarantees; :class:`AsyncEventLog` is the same
contract with awaitable methods. ``streamstate.testing.eventlog.EventLogContract`` tests
it, and ``streamstate.eventlog.memory`` is the reference backend: where a backend does
otherwise, the contract is right and the backend has a known discrepancy (listed here;
there is none now).

Common rules:

* A session is a name (or a tuple of name parts); sessions never share entries, groups
  or idempotency keys. A session nobody appended to reads as empty.
* Entry ids are strings ``"<int>-<int>"``, strictly increasing within a session in
  append order (compare them as pairs of integers, never as text).
* A failure raises (a ``StreamstateError``); it never looks like an empty result.
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
    """What an append did."""

    appended: bool
    """False exactly when the append was a duplicate (its idempotency key was used
    before) and wrote nothing. An empty append is not a duplicate: True."""
    ids: list[str] = field(default_factory=list)
    """Ids of the new entries, one per event, in order (``[]`` for an empty append);
    for a duplicate, the earlier append's ids, all of them, when the backend knows them
    (``[]`` when it does not; Valkey data written by 0.1.0 names only the last)."""


class EventLog(Protocol):
    """The synchronous event log: append, read, tail, consumer groups, delete, trim."""

    def append(
        self,
        session: SessionName,
        events: Sequence[Event],
        *,
        idempotency_key: str | None = None,
        extra_ops: Sequence[Op] = (),
        ttl: float | None = None,
    ) -> AppendResult:
        """Add ``events`` at the end of the session's log, in order, atomically.

        The entries and every op the log's projections derive from them (plus
        ``extra_ops``) are written together or not at all; a reader never sees one
        without the other.

        Args:
            session: The session; created by its first append.
            events: The events, one entry each. Empty: nothing is written and the
                result is ``AppendResult(True, [])`` (``extra_ops`` still apply on a
                backend with projections). Its ``idempotency_key`` is not recorded:
                it makes no later append a duplicate, and a retried empty append
                applies its ``extra_ops`` again.
            idempotency_key: Makes a retry safe: a second append with the same key to
                the same session writes nothing and returns ``appended=False``, however
                long after, while the session exists. Do not reuse a key after deleting
                its session: the reference and Valkey forget it, AgentCore's service
                still refuses it (``AgentCoreError``).
            extra_ops: View ops to apply in the same atomic step. Backends without
                server-side projections (AgentCore, Bedrock, in-memory) raise
                ``ConfigError`` if any are given.
            ttl: Seconds until every key of the session expires, restarted by each
                append. Backends without a TTL raise ``ConfigError`` unless it is None.

        Returns:
            See :class:`AppendResult`.

        Raises:
            PayloadTooLarge: The append exceeds the backend's limit (nothing was sent).
            BackendError: The backend failed; the append may or may not have been
                applied (retry with the same ``idempotency_key``).
        """
        ...

    def read(
        self,
        session: SessionName,
        start: str | None = None,
        end: str | None = None,
        *,
        count: int | None = None,
        reverse: bool = False,
    ) -> list[LogEntry]:
        """The entries with ``start <= id <= end``, oldest first (newest first with
        ``reverse``), at most ``count`` of them.

        Bounds are inclusive and keep their meaning with ``reverse`` (``start`` is the
        lower bound); ``None`` is unbounded. ``count`` counts from the first entry in
        the order of the result, so ``reverse=True, count=1`` is the newest entry. A
        missing session reads as ``[]``.
        """
        ...

    def tail(
        self,
        session: SessionName,
        from_id: str | None = None,
        *,
        block_ms: int = 1000,
        idle_timeout: float | None = None,
    ) -> Iterator[LogEntry]:
        """The entries with id ``> from_id``, oldest first, then each entry as it is
        appended, each exactly once, lazily.

        ``from_id=None`` starts after the session's current last entry: only entries
        appended after the call. Between entries the iterator blocks, polling every
        ``block_ms``; it ends after ``idle_timeout`` seconds without a new entry
        (rounded up to whole polls, at least one), never when that is None. A tail
        acknowledges nothing and affects no consumer group.
        """
        ...

    def ensure_group(self, session: SessionName, group: str, start_id: str = "0") -> bool:
        """Create the consumer group ``group`` if it does not exist.

        The new group will deliver the entries with id ``> start_id``: ``"0"`` every
        entry, ``"$"`` only entries appended from now on. Works on a session with no
        entries. Returns True if the group was created, False if it existed (its
        position and pending entries are unchanged).
        """
        ...

    def group_read(
        self,
        session: SessionName,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block_ms: int | None = None,
    ) -> list[LogEntry]:
        """At most ``count`` entries for ``consumer``, oldest first (at-least-once).

        If the consumer has pending entries (delivered to it, not acknowledged), those
        are returned again, and nothing new, so a consumer that restarts under the
        same name resumes where it failed. Otherwise the group's next undelivered
        entries are returned and become the consumer's pending entries; each entry is
        delivered to one consumer of the group. With ``block_ms`` and nothing new, the
        call waits up to that long for an append; with None it returns ``[]`` at once.
        Pending entries that were trimmed or deleted meanwhile are dropped (as if
        acknowledged).
        """
        ...

    def ack(self, session: SessionName, group: str, ids: Sequence[str]) -> int:
        """Acknowledge delivered entries; returns how many of ``ids`` were pending in
        the group (an unknown or already acknowledged id counts 0)."""
        ...

    def delete(self, session: SessionName) -> bool:
        """Remove the session: its log, every view, its groups and idempotency keys.

        Returns True if the session existed, False otherwise. A later append starts a
        new, empty log (see ``append`` on reusing its idempotency keys).
        """
        ...

    def trim(
        self, session: SessionName, *, maxlen: int | None = None, minid: str | None = None
    ) -> int:
        """Drop the oldest entries: all but the newest ``maxlen``, and every entry with
        id ``< minid``. Returns how many were dropped. The views are kept, but the
        dropped entries can no longer be read, tailed or replayed into a view."""
        ...

    def length(self, session: SessionName) -> int:
        """The number of entries the session holds now (0 if it does not exist)."""
        ...


class AsyncEventLog(Protocol):
    """:class:`EventLog` with awaitable methods (``tail`` is an async iterator); every
    method has its sync twin's semantics, exactly."""

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
