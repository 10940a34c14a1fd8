"""The event log on Valkey streams: ``ValkeyEventLog`` and ``AsyncValkeyEventLog``.

Both shells plan with ``_core``/``_flows``, execute with their executor, and read the
reply with ``_core``; methods appear in the same order in both classes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from streamstate.eventlog._drive import acomplete, adrive, complete, drive
from streamstate.eventlog.codec import Codec
from streamstate.eventlog.contract import AppendResult
from streamstate.eventlog.events import Event, LogEntry
from streamstate.eventlog.keys import Keyspace, SessionName
from streamstate.eventlog.ops import Op, Projection
from streamstate.eventlog.valkey import _core as core
from streamstate.eventlog.valkey import _flows as flows
from streamstate.eventlog.valkey._exec import (
    AsyncValkeyExecutor,
    RetryPolicy,
    ValkeyExecutor,
    WaitPolicy,
    capped_block_ms,
    is_cluster,
)

DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024
"""Appends above this many bytes are refused before they are sent (``None``: no limit)."""


class _LogConfig:
    """What both shells share: construction, key layout, codec, projections, and the
    planning of every call and flow. Subclasses only name their executor."""

    executor_class: type[Any]

    def __init__(
        self,
        client: Any,
        *,
        keyspace: Keyspace | None = None,
        codec: Codec | None = None,
        projections: Sequence[Projection] = (),
        retry: RetryPolicy | None = None,
        register_sessions: bool = True,
        max_payload_bytes: int | None = DEFAULT_MAX_PAYLOAD,
        wait: WaitPolicy | None = None,
    ) -> None:
        self.keyspace = keyspace or Keyspace()
        self.codec = codec or Codec()
        self.projections: tuple[Projection, ...] = tuple(projections)
        self.register_sessions = register_sessions
        self.cluster = is_cluster(client)
        self.max_payload_bytes = max_payload_bytes
        self.executor = self.executor_class(client, retry, wait)
        self.run = self.executor.run

    @property
    def client(self) -> Any:
        return self.executor.client

    def tail_flow(
        self,
        session: SessionName,
        from_id: str | None,
        block_ms: int,
        idle_timeout: float | None,
        strict: bool,
    ) -> flows.Flow[None]:
        return flows.tail(
            self.keyspace,
            self.codec,
            session,
            from_id,
            block_ms=capped_block_ms(self.client, block_ms),
            idle_timeout=idle_timeout,
            strict=strict,
        )

    def group_read_flow(
        self,
        session: SessionName,
        group: str,
        consumer: str,
        count: int,
        block_ms: int | None,
        strict: bool,
    ) -> flows.Flow[list[LogEntry]]:
        return flows.group_read(
            self.keyspace,
            self.codec,
            session,
            group,
            consumer,
            count=count,
            block_ms=None if block_ms is None else capped_block_ms(self.client, block_ms),
            strict=strict,
        )

    def rebuild_flow(self, session: SessionName, target: Keyspace | None) -> flows.Flow[int]:
        return flows.rebuild(self.keyspace, self.projections, self.codec, session, target=target)

    def plan_append(
        self,
        session: SessionName,
        events: Sequence[Event],
        **kwargs: Any,
    ) -> core.ScriptCall:
        call = core.plan_append(
            self.keyspace,
            self.projections,
            self.codec,
            session,
            events,
            register=self.register_sessions,
            cluster=self.cluster,
            **kwargs,
        )
        core.check_payload(call, self.max_payload_bytes)
        return call

    def plan_delete(self, session: SessionName) -> core.ScriptCall:
        return core.plan_delete(self.keyspace, self.projections, session, cluster=self.cluster)

    def plan_replace(
        self, session: SessionName, events: Sequence[Event], **kwargs: Any
    ) -> core.ScriptCall:
        call = core.plan_replace(
            self.keyspace,
            self.projections,
            self.codec,
            session,
            events,
            register=self.register_sessions,
            cluster=self.cluster,
            **kwargs,
        )
        core.check_payload(call, self.max_payload_bytes)
        return call


class ValkeyEventLog(_LogConfig):
    """A log of events per session on Valkey streams, with atomic projections.

    Args:
        client: A ``valkey.Valkey`` (or cluster) client created with
            ``decode_responses=False``.
        keyspace: Key prefix and layout (default prefix ``ss``).
        codec: Encoding pipeline for events (default msgpack + zstd).
        projections: Views updated atomically with every append.
        retry: Budget for retrying connection errors on idempotent calls.
        max_payload_bytes: Refuse (``PayloadTooLarge``) an append larger than this,
            before anything is sent; ``None`` for no limit.
        wait: Replica confirmation of every write, in the write's round trip
            (``WaitPolicy.of(replicas, timeout_ms, aof)``); ``None``: writes do not wait.
    """

    executor_class = ValkeyExecutor

    def append(
        self,
        session: SessionName,
        events: Sequence[Event],
        *,
        idempotency_key: str | None = None,
        guard: tuple[str, str] | None = None,
        skip_if_noop: bool = False,
        extra_ops: Sequence[Op] = (),
        ttl: float | None = None,
    ) -> AppendResult:
        call = self.plan_append(
            session,
            events,
            idempotency_key=idempotency_key,
            guard=guard,
            skip_if_noop=skip_if_noop,
            extra_ops=extra_ops,
            ttl=ttl,
        )
        return core.read_append(self.run(call))

    def read(
        self,
        session: SessionName,
        start: str | None = None,
        end: str | None = None,
        *,
        count: int | None = None,
        reverse: bool = False,
        strict: bool = True,
    ) -> list[LogEntry]:
        call = core.plan_read(self.keyspace, session, start, end, count=count, reverse=reverse)
        return core.read_entries(self.run(call), self.codec, session, strict=strict)

    def tail(
        self,
        session: SessionName,
        from_id: str | None = None,
        *,
        block_ms: int = 1000,
        idle_timeout: float | None = None,
        strict: bool = False,
    ) -> Iterator[LogEntry]:
        flow = self.tail_flow(session, from_id, block_ms, idle_timeout, strict)
        return drive(flow, self.run)

    def ensure_group(self, session: SessionName, group: str, start_id: str = "0") -> bool:
        return complete(flows.ensure_group(self.keyspace, session, group, start_id), self.run)

    def group_read(
        self,
        session: SessionName,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block_ms: int | None = None,
        strict: bool = False,
    ) -> list[LogEntry]:
        flow = self.group_read_flow(session, group, consumer, count, block_ms, strict)
        return complete(flow, self.run)

    def ack(self, session: SessionName, group: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return int(self.run(core.plan_ack(self.keyspace, session, group, ids)))

    def delete(self, session: SessionName) -> bool:
        return int(self.run(self.plan_delete(session))) > 0

    def trim(
        self, session: SessionName, *, maxlen: int | None = None, minid: str | None = None
    ) -> int:
        return int(self.run(core.plan_trim(self.keyspace, session, maxlen=maxlen, minid=minid)))

    def length(self, session: SessionName) -> int:
        return int(self.run(core.plan_length(self.keyspace, session)))

    def sessions(self) -> Iterator[tuple[str, ...]]:
        return drive(flows.sessions(self.keyspace), self.run)

    def rebuild(self, session: SessionName, *, target: Keyspace | None = None) -> int:
        flow = self.rebuild_flow(session, target)
        return complete(flow, self.run)

    def snapshot(self, keys: Sequence[str]) -> dict[str, tuple[str, Any]]:
        return complete(flows.snapshot(keys), self.run)


class AsyncValkeyEventLog(_LogConfig):
    """The asyncio twin of :class:`ValkeyEventLog` (same arguments, awaitable methods)."""

    executor_class = AsyncValkeyExecutor

    async def append(
        self,
        session: SessionName,
        events: Sequence[Event],
        *,
        idempotency_key: str | None = None,
        guard: tuple[str, str] | None = None,
        skip_if_noop: bool = False,
        extra_ops: Sequence[Op] = (),
        ttl: float | None = None,
    ) -> AppendResult:
        call = self.plan_append(
            session,
            events,
            idempotency_key=idempotency_key,
            guard=guard,
            skip_if_noop=skip_if_noop,
            extra_ops=extra_ops,
            ttl=ttl,
        )
        return core.read_append(await self.run(call))

    async def read(
        self,
        session: SessionName,
        start: str | None = None,
        end: str | None = None,
        *,
        count: int | None = None,
        reverse: bool = False,
        strict: bool = True,
    ) -> list[LogEntry]:
        call = core.plan_read(self.keyspace, session, start, end, count=count, reverse=reverse)
        return core.read_entries(await self.run(call), self.codec, session, strict=strict)

    def tail(
        self,
        session: SessionName,
        from_id: str | None = None,
        *,
        block_ms: int = 1000,
        idle_timeout: float | None = None,
        strict: bool = False,
    ) -> AsyncIterator[LogEntry]:
        flow = self.tail_flow(session, from_id, block_ms, idle_timeout, strict)
        return adrive(flow, self.run)

    async def ensure_group(self, session: SessionName, group: str, start_id: str = "0") -> bool:
        return await acomplete(
            flows.ensure_group(self.keyspace, session, group, start_id), self.run
        )

    async def group_read(
        self,
        session: SessionName,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block_ms: int | None = None,
        strict: bool = False,
    ) -> list[LogEntry]:
        flow = self.group_read_flow(session, group, consumer, count, block_ms, strict)
        return await acomplete(flow, self.run)

    async def ack(self, session: SessionName, group: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return int(await self.run(core.plan_ack(self.keyspace, session, group, ids)))

    async def delete(self, session: SessionName) -> bool:
        call = self.plan_delete(session)
        return int(await self.run(call)) > 0

    async def trim(
        self, session: SessionName, *, maxlen: int | None = None, minid: str | None = None
    ) -> int:
        call = core.plan_trim(self.keyspace, session, maxlen=maxlen, minid=minid)
        return int(await self.run(call))

    async def length(self, session: SessionName) -> int:
        return int(await self.run(core.plan_length(self.keyspace, session)))

    def sessions(self) -> AsyncIterator[tuple[str, ...]]:
        return adrive(flows.sessions(self.keyspace), self.run)

    async def rebuild(self, session: SessionName, *, target: Keyspace | None = None) -> int:
        flow = self.rebuild_flow(session, target)
        return await acomplete(flow, self.run)

    async def snapshot(self, keys: Sequence[str]) -> dict[str, tuple[str, Any]]:
        return await acomplete(flows.snapshot(keys), self.run)
