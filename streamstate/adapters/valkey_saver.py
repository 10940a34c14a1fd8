"""LangGraph checkpointers on the Valkey event log.

``ValkeySaver`` / ``AsyncValkeySaver`` address a thread by ``thread_id``;
``AgentCoreValkeySaver`` / ``AsyncAgentCoreValkeySaver`` by ``actor_id`` + ``thread_id``
(the AgentCore session). Every method is plan (``_saver_core``), execute, read.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import valkey
import valkey.asyncio
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    CheckpointTuple,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from valkey.credentials import CredentialProvider

from streamstate.adapters import _saver_core as core
from streamstate.adapters._bridge import LoopBound
from streamstate.adapters._saver_shell import ActorSaverShell, CoreFlows, SaverShell
from streamstate.adapters._shell import Execution, InThreads, OnLoop
from streamstate.connection import (
    AsyncClient,
    async_client_from_url,
    client_from_url,
    resolve_wait,
    url_or_conn_string,
)
from streamstate.eventlog._drive import Flow
from streamstate.eventlog.codec import Codec
from streamstate.eventlog.keys import Keyspace
from streamstate.eventlog.valkey import AsyncValkeyEventLog, RetryPolicy, ValkeyEventLog
from streamstate.eventlog.valkey.log import DEFAULT_MAX_PAYLOAD


class _ValkeyFlows(CoreFlows):
    """The Valkey core's operations under the shell's flow names and arguments.

    A thread script that finds the thread's keys incomplete (evicted, or layout 1)
    repairs the thread from its log and runs again (``run_repairing``).
    """

    core: core.SaverCore

    def get_tuple_flow(self, config: RunnableConfig, serde: Any) -> Flow[CheckpointTuple | None]:
        thread, _ns, call = self.core.plan_get_tuple(config)
        reply = yield from self.core.run_repairing(thread, call)
        return self.core.read_tuple(thread, reply, serde)

    def put_flow(self, *args: Any) -> Flow[RunnableConfig]:
        thread, event, out = self.core.build_put(*args)
        yield from self.core.run_repairing(thread, self.core.plan_put(thread, event))
        return out

    def put_writes_flow(self, *args: Any) -> Flow[None]:
        thread, event = self.core.build_put_writes(*args)
        yield from self.core.run_repairing(thread, self.core.plan_put_writes(thread, event))

    def delete_thread_flow(self, thread_id: str, actor_id: str | None) -> Flow[None]:
        return self.core.delete_flow(thread_id, actor_id)

    def copy_thread_flow(self, source_id: str, target_id: str, _actor_id: str | None) -> Flow[None]:
        return self.core.copy_threads_flow(source_id, target_id)

    def prune_flow(
        self, thread_ids: Sequence[str], strategy: str, _actor_id: str | None, _serde: Any
    ) -> Flow[None]:
        return self.core.prune_flow(thread_ids, strategy)


class _SaverBase(SaverShell):
    """What every Valkey saver shares beyond I/O: the log, config checks, the core."""

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
        self._flows = _ValkeyFlows(self._core)
        self._exec = self._execution()

    def _execution(self) -> Execution:
        """Sync client: :class:`InThreads`; asyncio client: :class:`OnLoop`."""
        raise NotImplementedError

    @property
    def ttl(self) -> float | None:
        return self._core.ttl


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

    def _execution(self) -> Execution:
        return InThreads(self.log.run)

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


class AsyncValkeySaver(_SaverBase, LoopBound):
    """The asyncio twin of :class:`ValkeySaver` (same arguments, an asyncio client).

    Its sync methods work from threads other than the event loop that owns the client.
    """

    log_class = AsyncValkeyEventLog

    def __init__(self, client: AsyncClient, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.bind_loop()

    def _execution(self) -> Execution:
        return OnLoop(self, self.log.run)

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


class AgentCoreValkeySaver(ActorSaverShell, ValkeySaver):
    """:class:`ValkeySaver` addressed as AgentCore sessions: ``actor_id`` + ``thread_id``.

    ``config["configurable"]["actor_id"]`` is required; a missing one raises a
    ``ValueError`` that names it.
    """

    actors = True


class AsyncAgentCoreValkeySaver(ActorSaverShell, AsyncValkeySaver):
    """The asyncio twin of :class:`AgentCoreValkeySaver`."""

    actors = True
