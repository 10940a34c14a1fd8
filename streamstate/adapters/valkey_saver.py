"""LangGraph checkpointers on the Valkey event log.

``ValkeySaver`` / ``AsyncValkeySaver`` address a thread by ``thread_id``;
``AgentCoreValkeySaver`` / ``AsyncAgentCoreValkeySaver`` by ``actor_id`` + ``thread_id``
(the AgentCore session). Every method is plan (``_saver_core``), execute, read.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import valkey
import valkey.asyncio
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from valkey.credentials import CredentialProvider

from streamstate.adapters import _saver_core as core
from streamstate.adapters._bridge import LoopBound, in_thread, iter_in_thread
from streamstate.adapters._checkpoints import next_version
from streamstate.connection import (
    async_client_from_url,
    client_from_url,
    resolve_wait,
    url_or_conn_string,
)
from streamstate.eventlog._drive import acomplete, adrive, complete, drive
from streamstate.eventlog.codec import Codec
from streamstate.eventlog.keys import Keyspace
from streamstate.eventlog.valkey import AsyncValkeyEventLog, RetryPolicy, ValkeyEventLog
from streamstate.eventlog.valkey.log import DEFAULT_MAX_PAYLOAD


class _SaverBase(BaseCheckpointSaver[str]):
    """What every Valkey saver shares beyond I/O: versions, config checks, the core."""

    actors = False
    log_class: type[ValkeyEventLog] | type[AsyncValkeyEventLog]
    _core: core.SaverCore

    def __init__(
        self,
        client: Any,
        *,
        ttl: float | None = None,
        serde: SerializerProtocol | None = None,
        prefix: str = "ss",
        codec: Codec | None = None,
        retry: RetryPolicy | None = None,
        max_payload_bytes: int | None = DEFAULT_MAX_PAYLOAD,
        refresh_on_read: bool = False,
        wait_replicas: int | None = None,
        wait_timeout_ms: int | None = None,
        wait_aof: bool | None = None,
    ) -> None:
        super().__init__(serde=serde)
        codec = codec or Codec()
        self.client = client
        self.log = self.log_class(
            client,
            retry=retry,
            max_payload_bytes=max_payload_bytes,
            keyspace=Keyspace(prefix),
            codec=codec,
            wait=resolve_wait(client, wait_replicas, wait_timeout_ms, wait_aof),
        )
        self._core = core.SaverCore(
            self.log, codec, ttl=ttl, actors=self.actors, refresh_on_read=refresh_on_read
        )
        self._core.serde = self.serde

    @property
    def ttl(self) -> float | None:
        return self._core.ttl

    def get_next_version(self, current: str | None, channel: None = None) -> str:
        return next_version(current)


class ValkeySaver(_SaverBase):
    """A LangGraph checkpointer that appends every checkpoint and write to a Valkey stream.

    Args:
        client: A ``valkey.Valkey`` client (``decode_responses=False``).
        ttl: Seconds a thread lives after its last write (sub-second honoured); every key
            of the thread expires together.
        serde: Serializer for channel values and metadata (LangGraph's default).
        prefix: Key prefix.
        codec: Codec for stored entries (compression, optional cipher).
        retry: Retry budget for connection errors.
        max_payload_bytes: Refuse a checkpoint or write larger than this many bytes
            (``PayloadTooLarge``) before sending it; ``None`` for no limit.
        refresh_on_read: With ``ttl``, reading a thread (``get_tuple``, ``list``) also
            restarts its TTL, in the same round trip; without it only writes do.
        wait_replicas: Every write (``put``, ``put_writes``, deletes, ...) returns only
            once this many replicas have it (``WAIT``, in the write's round trip), else
            raises ``ReplicationTimeout``; 0 does not wait. Default: the
            ``?wait_replicas=`` of the URL the client was made from
            (``client_from_url``), else 0.
        wait_timeout_ms: How long a write waits for its replicas (default: the URL's,
            else 1000).
        wait_aof: Wait for fsynced append-only files (``WAITAOF``): the primary's, and
            ``wait_replicas`` replicas' (default: the URL's, else no).
    """

    log_class = ValkeyEventLog

    @classmethod
    @contextlib.contextmanager
    def from_conn_string(
        cls,
        url: str | None = None,
        *,
        conn_string: str | None = None,
        ttl_seconds: float | None = None,
        pool_size: int = 10,
        serde: SerializerProtocol | None = None,
        credential_provider: CredentialProvider | None = None,
        **kwargs: Any,
    ) -> Iterator[ValkeySaver]:
        """A saver on a new client for ``url`` (no URL: the embedded server), closed on exit.

        ``conn_string`` is the same URL under ``langgraph-checkpoint-aws``'s keyword name.
        The URL's ``wait_replicas``, ``wait_timeout_ms`` and ``wait_aof`` parameters are
        the defaults of the arguments of the same names; ``credential_provider`` (e.g.
        :class:`~streamstate.connection.ElastiCacheIAMProvider`) authenticates every
        connection.
        """
        url = url_or_conn_string(url, conn_string)
        client = client_from_url(url, pool_size=pool_size, credential_provider=credential_provider)
        try:
            yield cls(client, ttl=ttl_seconds, serde=serde, **kwargs)
        finally:
            client.close()

    @classmethod
    @contextlib.contextmanager
    def from_pool(
        cls,
        pool: valkey.ConnectionPool,
        *,
        ttl_seconds: float | None = None,
        serde: SerializerProtocol | None = None,
        **kwargs: Any,
    ) -> Iterator[ValkeySaver]:
        """A saver on a client sharing ``pool`` (the pool stays open: the caller owns it)."""
        yield cls(valkey.Valkey(connection_pool=pool), ttl=ttl_seconds, serde=serde, **kwargs)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        thread, event, out = self._core.build_put(
            config, checkpoint, metadata, new_versions, self.serde
        )
        self._run(thread, self._core.plan_put(thread, event))
        return out

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        thread, event = self._core.build_put_writes(config, writes, task_id, task_path, self.serde)
        self._run(thread, self._core.plan_put_writes(thread, event))

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread, _ns, call = self._core.plan_get_tuple(config)
        return self._core.read_tuple(thread, self._run(thread, call), self.serde)

    def _run(self, thread: core.Thread, call: Any) -> Any:
        reply = self.log.run(call)
        if self._core.incomplete(reply):  # evicted keys or layout 1: repair, then again
            complete(self._core.repair_flow(thread), self.log.run)
            reply = self._core.checked(thread, self.log.run(call))
        return reply

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        flow = self._core.list_flow(config, filter, before, limit, self.serde)
        return drive(flow, self.log.run)

    def delete_thread(self, thread_id: str) -> None:
        complete(self._core.delete_flow(thread_id), self.log.run)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        complete(self._core.delete_for_runs_flow(run_ids), self.log.run)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        complete(self._core.copy_threads_flow(source_thread_id, target_thread_id), self.log.run)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        complete(self._core.prune_flow(thread_ids, strategy), self.log.run)

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return complete(self._core.delta_flow(config, channels, self.serde), self.log.run)

    # The async interface of the sync class runs the sync methods in worker threads.

    async def aput(self, config, checkpoint, metadata, new_versions):  # type: ignore[no-untyped-def]
        return await in_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config, writes, task_id, task_path=""):  # type: ignore[no-untyped-def]
        return await in_thread(self.put_writes, config, writes, task_id, task_path)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await in_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        make = lambda: self.list(config, filter=filter, before=before, limit=limit)  # noqa: E731
        async for item in iter_in_thread(make):
            yield item

    async def adelete_thread(self, thread_id: str) -> None:
        await in_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await in_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await in_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await in_thread(self.prune, thread_ids, strategy=strategy)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await in_thread(self.get_delta_channel_history, config=config, channels=channels)


class AsyncValkeySaver(_SaverBase, LoopBound):
    """The asyncio twin of :class:`ValkeySaver` (same arguments, an asyncio client).

    Its sync methods work from threads other than the event loop that owns the client.
    """

    log_class = AsyncValkeyEventLog

    def __init__(self, client: valkey.asyncio.Valkey, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.bind_loop()

    @classmethod
    @contextlib.asynccontextmanager
    async def from_conn_string(
        cls,
        url: str | None = None,
        *,
        conn_string: str | None = None,
        ttl_seconds: float | None = None,
        pool_size: int = 10,
        serde: SerializerProtocol | None = None,
        credential_provider: CredentialProvider | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AsyncValkeySaver]:
        """As :meth:`ValkeySaver.from_conn_string`, on an asyncio client."""
        url = url_or_conn_string(url, conn_string)
        client = async_client_from_url(
            url, pool_size=pool_size, credential_provider=credential_provider
        )
        try:
            yield cls(client, ttl=ttl_seconds, serde=serde, **kwargs)
        finally:
            await client.aclose()

    @classmethod
    @contextlib.asynccontextmanager
    async def from_pool(
        cls,
        pool: valkey.asyncio.ConnectionPool,
        *,
        ttl_seconds: float | None = None,
        serde: SerializerProtocol | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AsyncValkeySaver]:
        yield cls(
            valkey.asyncio.Valkey(connection_pool=pool), ttl=ttl_seconds, serde=serde, **kwargs
        )

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        self.bind_loop()
        thread, event, out = self._core.build_put(
            config, checkpoint, metadata, new_versions, self.serde
        )
        await self._arun(thread, self._core.plan_put(thread, event))
        return out

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        thread, event = self._core.build_put_writes(config, writes, task_id, task_path, self.serde)
        await self._arun(thread, self._core.plan_put_writes(thread, event))

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        self.bind_loop()
        thread, _ns, call = self._core.plan_get_tuple(config)
        return self._core.read_tuple(thread, await self._arun(thread, call), self.serde)

    async def _arun(self, thread: core.Thread, call: Any) -> Any:
        reply = await self.log.run(call)
        if self._core.incomplete(reply):  # evicted keys or layout 1: repair, then again
            await acomplete(self._core.repair_flow(thread), self.log.run)
            reply = self._core.checked(thread, await self.log.run(call))
        return reply

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        self.bind_loop()
        flow = self._core.list_flow(config, filter, before, limit, self.serde)
        async for item in adrive(flow, self.log.run):
            yield item

    async def adelete_thread(self, thread_id: str) -> None:
        await acomplete(self._core.delete_flow(thread_id), self.log.run)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await acomplete(self._core.delete_for_runs_flow(run_ids), self.log.run)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await acomplete(
            self._core.copy_threads_flow(source_thread_id, target_thread_id), self.log.run
        )

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await acomplete(self._core.prune_flow(thread_ids, strategy), self.log.run)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await acomplete(self._core.delta_flow(config, channels, self.serde), self.log.run)

    # The sync interface of the async class submits to the client's event loop.

    def put(self, config, checkpoint, metadata, new_versions):  # type: ignore[no-untyped-def]
        return self.run_sync(self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(self, config, writes, task_id, task_path=""):  # type: ignore[no-untyped-def]
        return self.run_sync(self.aput_writes(config, writes, task_id, task_path))

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.run_sync(self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        return self.iter_sync(self.alist(config, filter=filter, before=before, limit=limit))

    def delete_thread(self, thread_id: str) -> None:
        self.run_sync(self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self.run_sync(self.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.run_sync(self.acopy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self.run_sync(self.aprune(thread_ids, strategy=strategy))

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return self.run_sync(self.aget_delta_channel_history(config=config, channels=channels))


class AgentCoreValkeySaver(ValkeySaver):
    """:class:`ValkeySaver` addressed as AgentCore sessions: ``actor_id`` + ``thread_id``.

    ``config["configurable"]["actor_id"]`` is required; a missing one raises a
    ``ValueError`` that names it.
    """

    actors = True

    def delete_thread(self, thread_id: str, actor_id: str | None = None) -> None:  # type: ignore[override]
        """Delete the session of ``actor_id``, or of every actor when it is ``None``."""
        complete(self._core.delete_flow(thread_id, actor_id), self.log.run)

    async def adelete_thread(self, thread_id: str, actor_id: str | None = None) -> None:  # type: ignore[override]
        await in_thread(self.delete_thread, thread_id, actor_id)


class AsyncAgentCoreValkeySaver(AsyncValkeySaver):
    """The asyncio twin of :class:`AgentCoreValkeySaver`."""

    actors = True

    async def adelete_thread(self, thread_id: str, actor_id: str | None = None) -> None:  # type: ignore[override]
        await acomplete(self._core.delete_flow(thread_id, actor_id), self.log.run)

    def delete_thread(self, thread_id: str, actor_id: str | None = None) -> None:  # type: ignore[override]
        self.run_sync(self.adelete_thread(thread_id, actor_id))
