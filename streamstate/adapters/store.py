"""LangGraph stores on the event log: ``ValkeyStore`` and ``AsyncValkeyStore``.

Every put and delete is an event (``ItemPut`` / ``ItemDeleted``) on the stream of the
store's session, ``("store", collection_name)``; the item views are updated in the same
atomic script (``streamstate.projections.items``) and the vector index is an in-process
projection of the same stream (``streamstate.projections.vectors``). The same script
deletes the entries a write supersedes and, a bounded share per write, sweeps expired
items and repacks the stream, so the log holds what is live and stays the source of
truth for it.

Both classes run the same flows from ``_store_core``; a shell only executes them (log
calls, and embeddings through the sync or the async API). LangGraph's ``batch`` and
``abatch`` are written once, in :class:`_StoreShell`, and run through each class's
:class:`~streamstate.adapters._shell.Execution`; the store's own methods keep one name
in both classes (sync in one, async in the other), so each class has its own, in the
same order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import valkey
import valkey.asyncio
from langgraph.store.base import BaseStore, Op, Result, TTLConfig
from valkey.credentials import CredentialProvider

from streamstate.adapters import _store_core as core
from streamstate.adapters._bridge import LoopBound
from streamstate.adapters._shell import Execution, InThreads, OnLoop
from streamstate.adapters._store_core import (
    Compaction,
    EmbedDocuments,
    EmbedQueries,
    ValkeyIndexConfig,
)
from streamstate.connection import (
    AsyncClient,
    SyncClient,
    async_client_from_url,
    client_from_url,
    resolve_wait,
    url_or_conn_string,
)
from streamstate.eventlog.keys import Keyspace
from streamstate.eventlog.valkey import AsyncValkeyEventLog, ValkeyEventLog
from streamstate.projections.items import ItemsProjection

__all__ = ["AsyncValkeyStore", "Compaction", "ValkeyIndexConfig", "ValkeyStore"]

T = TypeVar("T")


class _StoreShell(BaseStore):
    """What both shells share: settings, TTL support, the core, and LangGraph's batch
    methods, which drive the core's flow through the class's execution."""

    supports_ttl = True
    _exec: Execution

    def _configure(
        self,
        log: ValkeyEventLog | AsyncValkeyEventLog,
        index: ValkeyIndexConfig | None,
        ttl: TTLConfig | None,
    ) -> None:
        settings = core.resolve_settings(log.keyspace, index, ttl)
        self.index_config = index
        self.ttl_config = ttl
        self.embeddings = settings.embeddings
        self._core = core.StoreCore(
            settings,
            log.keyspace,
            log.codec,
            cluster=log.cluster,
            register=log.register_sessions,
            max_payload_bytes=log.max_payload_bytes,
        )

    @property
    def session(self) -> tuple[str, str]:
        """The log session holding this store's events."""
        return self._core.settings.session

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return self._exec.complete(self._core.batch(list(ops), time.time()))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await self._exec.acomplete(self._core.batch(list(ops), time.time()))


class ValkeyStore(_StoreShell):
    """A LangGraph ``BaseStore`` whose puts and deletes are events on a Valkey stream.

    Every ``get``, ``put``, ``delete``, filtered ``search`` and ``list_namespaces`` is
    one round trip (a batch of them too; a vector search adds one when the in-process
    index must catch up with other processes' writes).

    TTL (``supports_ttl``): ``ttl={"default_ttl": minutes, "refresh_on_read": True}``
    as LangGraph's ``TTLConfig``. ``default_ttl`` applies to puts that do not pass
    ``ttl=`` (``ttl=None`` means no expiry); an item expires that many minutes after it
    was last written or, with refresh, read. ``refresh_on_read`` (default ``True``, as
    in LangGraph) is what ``get`` and ``search`` do when their ``refresh_ttl`` is left
    ``None``; ``refresh_ttl=True`` / ``False`` overrides it per call. A refreshing read
    extends the TTL of the items it returns (not those an offset skips) in the same
    round trip as the read; ``updated_at`` is unchanged, items without a TTL are
    ignored. Expired items are never returned nor listed (``omit_expired`` is always
    on), even before they are swept. A read is not an event: the log keeps each put's
    own expiry and the store keeps read extensions beside the views, where a rebuild
    leaves them.

    Reclaiming: overwritten, deleted and expired items leave nothing behind. A write
    deletes from the stream the entries it supersedes; a delete leaves only a small
    tombstone for tails and other processes' vector indexes; writes sweep a few expired
    items each (``sweep_ttl`` sweeps them all, ``TTLConfig["sweep_interval_minutes"]``
    is accepted but not needed), and once the deleted entries outnumber the live ones
    they repack the stream a bounded step at a time, keeping entry ids. ``compact``
    does all of it at once. Rebuilding the views from the log gives the live views.

    Args:
        client: A ``valkey.Valkey`` client created with ``decode_responses=False``.
        index: Semantic search settings (``dims``, ``embed``, ``fields``, ...); without
            it, ``search`` filters but does not rank by similarity.
        ttl: ``default_ttl`` (minutes), ``refresh_on_read`` (see above).
        keyspace: Key prefix (default ``ss``).
        wait_replicas: Every put and delete returns only once this many replicas have
            it (``WAIT``, in the write's round trip), else raises ``ReplicationTimeout``;
            0 does not wait. Reads never wait. Default: the ``?wait_replicas=`` of the
            URL the client was made from (``client_from_url``), else 0.
        wait_timeout_ms: How long a write waits for its replicas (default: the URL's,
            else 1000).
        wait_aof: Wait for fsynced append-only files (``WAITAOF``): the primary's, and
            ``wait_replicas`` replicas' (default: the URL's, else no).

    Raises:
        ConfigError: a bad ``index``, ``ttl`` or ``wait_*`` setting (the message names the
            key).
    """

    def __init__(
        self,
        client: SyncClient,
        *,
        index: ValkeyIndexConfig | None = None,
        ttl: TTLConfig | None = None,
        keyspace: Keyspace | None = None,
        wait_replicas: int | None = None,
        wait_timeout_ms: int | None = None,
        wait_aof: bool | None = None,
    ) -> None:
        self._log = ValkeyEventLog(
            client,
            keyspace=keyspace,
            projections=[ItemsProjection()],
            wait=resolve_wait(client, wait_replicas, wait_timeout_ms, wait_aof),
        )
        self._configure(self._log, index, ttl)
        self._exec = InThreads(self._run)

    @classmethod
    @contextmanager
    def from_conn_string(
        cls,
        url: str | None = None,
        *,
        conn_string: str | None = None,
        index: ValkeyIndexConfig | None = None,
        ttl: TTLConfig | None = None,
        pool_size: int | None = 10,
        pool_timeout: float | None = None,
        credential_provider: CredentialProvider | None = None,
        wait_replicas: int | None = None,
        wait_timeout_ms: int | None = None,
        wait_aof: bool | None = None,
    ) -> Iterator[ValkeyStore]:
        """A store on a new client for ``url`` (no URL: the embedded server).

        ``conn_string`` is the same URL under ``langgraph-checkpoint-aws``'s keyword name;
        ``pool_size`` ``None`` leaves the pool unbounded; ``pool_timeout`` is how long a
        caller waits for a free connection (default: the connection module's).
        ``wait_replicas``, ``wait_timeout_ms`` and ``wait_aof`` default to the URL's
        parameters of the same names; ``credential_provider`` authenticates every
        connection. The vector index snapshot is saved and the client closed on exit.
        """
        pool: dict[str, Any] = {"pool_timeout": pool_timeout} if pool_timeout is not None else {}
        url = url_or_conn_string(url, conn_string)
        client = client_from_url(
            url, pool_size=pool_size, credential_provider=credential_provider, **pool
        )
        try:
            store = cls(
                client,
                index=index,
                ttl=ttl,
                wait_replicas=wait_replicas,
                wait_timeout_ms=wait_timeout_ms,
                wait_aof=wait_aof,
            )
            yield store
            store.close()
        finally:
            client.close()

    @classmethod
    @contextmanager
    def from_pool(
        cls,
        pool: valkey.ConnectionPool,
        *,
        index: ValkeyIndexConfig | None = None,
        ttl: TTLConfig | None = None,
        **wait: Any,
    ) -> Iterator[ValkeyStore]:
        """A store on an existing connection pool (left open on exit); ``wait_replicas``,
        ``wait_timeout_ms`` and ``wait_aof`` as the constructor's."""
        client = valkey.Valkey(connection_pool=pool)
        try:
            store = cls(client, index=index, ttl=ttl, **wait)
            yield store
            store.close()
        finally:
            client.close()

    def setup(self) -> None:
        """Idempotent; loads the vector index (snapshot, then the log's tail) if any."""
        self._exec.complete(self._core.setup())

    def save_vectors(self, *, force: bool = False) -> bool:
        """Write the vector index snapshot now; False if nothing was written."""
        return self._exec.complete(self._core.save_vectors(force=force))

    def sweep_ttl(self) -> int:
        """Remove every expired item now (views and log entries); returns how many.

        Writes already sweep a few each; this is for a store nobody writes to.
        """
        return self._exec.complete(self._core.sweep())

    def compact(self, *, full: bool = False) -> Compaction:
        """Sweep expired items and repack the log now, instead of a step per write.

        ``full`` also reads the whole log and deletes every entry no view names (only
        needed for entries written before the views named them: rebuild such a store's
        views once first). Other processes may keep writing meanwhile.
        """
        return self._exec.complete(self._core.compact(full=full))

    def close(self) -> None:
        """Save the vector index snapshot if it has unsaved entries."""
        self.save_vectors()

    def _run(self, step: Any) -> Any:
        if isinstance(step, EmbedDocuments):
            return self._core.settings.embeddings.embed_documents(step.texts)  # type: ignore[union-attr]
        if isinstance(step, EmbedQueries):
            embeddings = self._core.settings.embeddings
            return [embeddings.embed_query(text) for text in step.texts]  # type: ignore[union-attr]
        return self._log.run(step)


class AsyncValkeyStore(_StoreShell, LoopBound):
    """The asyncio twin of :class:`ValkeyStore` (same arguments, awaitable methods).

    Its sync methods (``get``, ``put``, ...) work from any thread but the event loop's
    own: they run the async ones on that loop and wait.
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        index: ValkeyIndexConfig | None = None,
        ttl: TTLConfig | None = None,
        keyspace: Keyspace | None = None,
        wait_replicas: int | None = None,
        wait_timeout_ms: int | None = None,
        wait_aof: bool | None = None,
    ) -> None:
        self._log = AsyncValkeyEventLog(
            client,
            keyspace=keyspace,
            projections=[ItemsProjection()],
            wait=resolve_wait(client, wait_replicas, wait_timeout_ms, wait_aof),
        )
        self._configure(self._log, index, ttl)
        self._exec = OnLoop(self, self._run)
        self.bind_loop()

    @classmethod
    @asynccontextmanager
    async def from_conn_string(
        cls,
        url: str | None = None,
        *,
        conn_string: str | None = None,
        index: ValkeyIndexConfig | None = None,
        ttl: TTLConfig | None = None,
        pool_size: int | None = 10,
        pool_timeout: float | None = None,
        credential_provider: CredentialProvider | None = None,
        wait_replicas: int | None = None,
        wait_timeout_ms: int | None = None,
        wait_aof: bool | None = None,
    ) -> AsyncIterator[AsyncValkeyStore]:
        """A store on a new client for ``url`` (no URL: the embedded server).

        ``conn_string`` is the same URL under ``langgraph-checkpoint-aws``'s keyword name;
        ``pool_size`` ``None`` leaves the pool unbounded; ``pool_timeout`` is how long a
        caller waits for a free connection (default: the connection module's).
        ``wait_replicas``, ``wait_timeout_ms`` and ``wait_aof`` default to the URL's
        parameters of the same names; ``credential_provider`` authenticates every
        connection. The vector index snapshot is saved and the client closed on exit.
        """
        pool: dict[str, Any] = {"pool_timeout": pool_timeout} if pool_timeout is not None else {}
        url = url_or_conn_string(url, conn_string)
        client = async_client_from_url(
            url, pool_size=pool_size, credential_provider=credential_provider, **pool
        )
        try:
            store = cls(
                client,
                index=index,
                ttl=ttl,
                wait_replicas=wait_replicas,
                wait_timeout_ms=wait_timeout_ms,
                wait_aof=wait_aof,
            )
            yield store
            await store.close()
        finally:
            await client.aclose()

    @classmethod
    @asynccontextmanager
    async def from_pool(
        cls,
        pool: valkey.asyncio.ConnectionPool,
        *,
        index: ValkeyIndexConfig | None = None,
        ttl: TTLConfig | None = None,
        **wait: Any,
    ) -> AsyncIterator[AsyncValkeyStore]:
        """A store on an existing connection pool (left open on exit); ``wait_replicas``,
        ``wait_timeout_ms`` and ``wait_aof`` as the constructor's."""
        client = valkey.asyncio.Valkey(connection_pool=pool)
        try:
            store = cls(client, index=index, ttl=ttl, **wait)
            yield store
            await store.close()
        finally:
            await client.aclose()

    async def setup(self) -> None:
        """Idempotent; loads the vector index (snapshot, then the log's tail) if any."""
        await self._exec.acomplete(self._core.setup())

    async def save_vectors(self, *, force: bool = False) -> bool:
        """Write the vector index snapshot now; False if nothing was written."""
        return await self._exec.acomplete(self._core.save_vectors(force=force))

    async def sweep_ttl(self) -> int:
        """Remove every expired item now (views and log entries); returns how many."""
        return await self._exec.acomplete(self._core.sweep())

    async def compact(self, *, full: bool = False) -> Compaction:
        """Sweep expired items and repack the log now (see :meth:`ValkeyStore.compact`)."""
        return await self._exec.acomplete(self._core.compact(full=full))

    async def close(self) -> None:
        """Save the vector index snapshot if it has unsaved entries."""
        await self.save_vectors()

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the store's loop and wait (what the sync methods do)."""
        try:
            loop = _loop_of(self)
        except BaseException:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    async def _run(self, step: Any) -> Any:
        if isinstance(step, EmbedDocuments):
            return await self._core.settings.embeddings.aembed_documents(step.texts)  # type: ignore[union-attr]
        if isinstance(step, EmbedQueries):
            embeddings = self._core.settings.embeddings
            return await asyncio.gather(*(embeddings.aembed_query(t) for t in step.texts))  # type: ignore[union-attr]
        return await self._log.run(step)


def _loop_of(store: AsyncValkeyStore) -> asyncio.AbstractEventLoop:
    """The loop a sync call must run on, refusing calls that would deadlock it."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if store.loop is None:
        raise RuntimeError(
            "AsyncValkeyStore's sync methods need the store's event loop running in another "
            "thread; create the store inside that loop, or use ValkeyStore"
        )
    if running is store.loop:
        raise asyncio.InvalidStateError(
            "Synchronous calls to AsyncValkeyStore from its own event loop would block it; "
            "use the async methods (aget, aput, asearch, ...) there"
        )
    return store.loop
