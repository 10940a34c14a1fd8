"""``ValkeyCache``: LangGraph's node cache (``BaseCache``) on Valkey, sync and async.

A drop-in for ``langgraph_checkpoint_aws.ValkeyCache`` (same constructor and factories),
with one round trip per batch (``get``: one ``MGET``; ``set``: one script), TTLs in
seconds with millisecond precision, and a namespace registry so ``clear`` never runs
``KEYS`` or ``SCAN``. The layout is described in :mod:`streamstate.projections.cache`.

Sync methods run on a sync client, so they work anywhere, including inside a running
event loop; async methods run on an asyncio client. Given only one kind, the cache
derives the other from the same connection settings (one asyncio client per event loop,
since asyncio connections belong to the loop that opened them).

Example:
    ```python
    from streamstate import ValkeyCache

    with ValkeyCache.from_conn_string("valkey://localhost:6379", ttl_seconds=3600) as cache:
        graph = builder.compile(cache=cache)
        cache.set({"prompt-1": ("answer", 60)})
        cache.get(["prompt-1"])  # {"prompt-1": "answer"}
    ```
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import valkey
import valkey.asyncio
import valkey.asyncio.connection
import valkey.connection
from langgraph.cache.base import BaseCache, FullKey, Namespace, ValueT
from langgraph.checkpoint.serde.base import SerializerProtocol
from valkey.credentials import CredentialProvider

from streamstate.adapters import _cache_core as core
from streamstate.connection import (
    AsyncClient,
    SyncClient,
    async_client_from_url,
    client_from_url,
    resolve_wait,
    url_or_conn_string,
)
from streamstate.errors import ConfigError
from streamstate.eventlog._drive import acomplete, complete
from streamstate.eventlog.valkey._exec import (
    AsyncValkeyExecutor,
    RetryPolicy,
    ValkeyExecutor,
    is_cluster,
)
from streamstate.projections.cache import DEFAULT_PREFIX, CacheKeys
from streamstate.server import resolve_url

AnyClient = SyncClient | AsyncClient
AnyPool = valkey.ConnectionPool | valkey.asyncio.ConnectionPool

# Connection settings that are objects of one flavour (sync or asyncio) and cannot be
# handed to the other; retries are the executor's job anyway.
_FLAVOURED_KWARGS = frozenset({"retry", "valkey_connect_func", "command_packer", "encoder_class"})


class ValkeyCache(BaseCache[ValueT]):
    """LangGraph cache on Valkey, with sync and async methods on one object.

    Keys are ``(namespace, key)`` pairs as LangGraph passes them, or plain strings (the
    empty namespace). Values go through ``serde`` (LangGraph's ``JsonPlusSerializer`` by
    default, whose msgpack allow-list decides which classes may be revived).

    Args:
        client: A sync ``valkey.Valkey`` or an asyncio ``valkey.asyncio.Valkey`` client,
            created with ``decode_responses=False``.
        prefix: Key prefix; ``:`` is appended unless it ends with ``:`` or ``/``.
        ttl: Default TTL in seconds (fractions allowed) for entries set with a TTL of
            ``None``; ``None`` here means such entries never expire.
        serde: Serializer for values.
        async_client: An asyncio client to use for the async methods when ``client`` is
            a sync one (by default one is derived from ``client``'s pool settings).
        retry: Retry budget for connection errors (every cache call is idempotent).
        wait_replicas: Every ``set`` and ``clear`` returns only once this many replicas
            have it (``WAIT``, in the same round trip), else raises
            ``ReplicationTimeout``; 0 does not wait. ``get`` never waits. Default: the
            ``?wait_replicas=`` of the URL the client was made from, else 0.
        wait_timeout_ms: How long a write waits for its replicas (default: the URL's,
            else 1000).
        wait_aof: Wait for fsynced append-only files (``WAITAOF``; default: the URL's,
            else no).

    Raises:
        ConfigError: ``ttl`` is not a positive number, the prefix holds braces, the
            client decodes responses, two asyncio clients were given, or a bad
            ``wait_*`` setting.
    """

    def __init__(
        self,
        client: AnyClient | None,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl: float | None = None,
        serde: SerializerProtocol | None = None,
        async_client: AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        wait_replicas: int | None = None,
        wait_timeout_ms: int | None = None,
        wait_aof: bool | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self.ttl = core.check_ttl(ttl)
        if self.ttl is not None and self.ttl <= 0:
            raise ConfigError(f"ttl must be positive, got {ttl!r}")
        self._keys = CacheKeys(prefix)
        self.prefix = self._keys.prefix
        if isinstance(client, valkey.asyncio.Valkey) or _is_async_cluster(client):
            if async_client is not None:
                raise ConfigError("client is an asyncio client and async_client is given too")
            client, async_client = None, client
        if client is None and async_client is None:
            raise ConfigError("ValkeyCache needs a client (sync or asyncio)")
        self.client: Any = client  # sync or (from_conn_string's twin) asyncio
        self.async_client: AsyncClient | None = async_client
        self._retry = retry
        self._wait = resolve_wait(client or async_client, wait_replicas, wait_timeout_ms, wait_aof)
        self._lock = threading.Lock()
        self._sync = ValkeyExecutor(client, retry, self._wait) if client is not None else None
        self._async = (
            AsyncValkeyExecutor(async_client, retry, self._wait)
            if async_client is not None
            else None
        )
        self._sync_factory: Callable[[], SyncClient] | None = None
        self._async_factory: Callable[[], AsyncClient] | None = None
        self._cluster = is_cluster(client) or is_cluster(async_client)
        if self._cluster:
            if client is None or async_client is None:
                self._sync_factory, self._async_factory = _cluster_twins(client or async_client)
        elif client is None and async_client is not None:
            # not a cluster: one pool, of the other flavour than the twin's
            apool: Any = cast(Any, async_client).connection_pool
            self._sync_factory = lambda: valkey.Valkey.from_pool(counterpart_pool(apool))  # type: ignore[arg-type]
        elif async_client is None and client is not None:
            pool: Any = cast(Any, client).connection_pool
            self._async_factory = lambda: valkey.asyncio.Valkey.from_pool(counterpart_pool(pool))  # type: ignore[arg-type]
        # Clients this cache created, closed by close()/aclose(); never a caller's own.
        self._owned: list[SyncClient] = []
        self._closing: list[concurrent.futures.Future[None]] = []
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncValkeyExecutor] = (
            weakref.WeakKeyDictionary()
        )

    # Factories -------------------------------------------------------------------------

    @classmethod
    def from_conn_string(
        cls,
        url: str | None = None,
        *,
        conn_string: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        ttl: float | None = None,
        ttl_seconds: float | None = None,
        serde: SerializerProtocol | None = None,
        pool_size: int | None = 10,
        pool_timeout: float | None = None,
        retry: RetryPolicy | None = None,
        credential_provider: CredentialProvider | None = None,
        wait_replicas: int | None = None,
        wait_timeout_ms: int | None = None,
        wait_aof: bool | None = None,
    ) -> ValkeyCache[Any]:
        """A cache that owns its connections; use it as a (async) context manager.

        Args:
            url: ``valkey://``, ``valkeys://``, ``redis://``, ``rediss://`` or ``unix://``
                URL; ``None`` means ``STREAMSTATE_URL``, else the embedded server.
            conn_string: The same, under ``langgraph-checkpoint-aws``'s keyword name.
            prefix: Key prefix.
            ttl: Default TTL in seconds.
            ttl_seconds: The same, under ``langgraph-checkpoint-aws``'s keyword name.
            serde: Serializer for values.
            pool_size: Maximum connections per pool (``None``: unbounded).
            pool_timeout: Seconds to wait for a free connection when the pool is
                exhausted (``None``: open connections without waiting, up to the limit).
            retry: Retry budget for connection errors.
            credential_provider: Authenticates every connection (e.g.
                :class:`~streamstate.connection.ElastiCacheIAMProvider`).
            wait_replicas: As the constructor's; default: the URL's ``wait_replicas``.
            wait_timeout_ms: Likewise (``wait_timeout_ms``).
            wait_aof: Likewise (``wait_aof``).

        Returns:
            The cache; ``with``/``async with`` closes its connections on exit.

        Raises:
            ConfigError: Both spellings of an argument given, or a bad URL or TTL.
        """
        url = url_or_conn_string(url, conn_string)
        ttl = _one_of("ttl", ttl, "ttl_seconds", ttl_seconds)
        # Resolved once, so both clients reach the same (possibly embedded) server.
        url = resolve_url(url)
        pool: dict[str, Any] = {"credential_provider": credential_provider}
        if pool_timeout is not None:
            pool["pool_timeout"] = pool_timeout
        client = client_from_url(url, pool_size=pool_size, **pool)
        cache: ValkeyCache[Any] = cls(
            client,
            prefix=prefix,
            ttl=ttl,
            serde=serde,
            retry=retry,
            wait_replicas=wait_replicas,
            wait_timeout_ms=wait_timeout_ms,
            wait_aof=wait_aof,
        )
        cache._owned.append(client)
        cache._async_factory = lambda: async_client_from_url(url, pool_size=pool_size, **pool)
        return cache

    @classmethod
    def from_pool(
        cls,
        pool: AnyPool,
        *,
        ssl: bool = False,
        prefix: str = DEFAULT_PREFIX,
        ttl: float | None = None,
        ttl_seconds: float | None = None,
        serde: SerializerProtocol | None = None,
        retry: RetryPolicy | None = None,
        wait_replicas: int | None = None,
        wait_timeout_ms: int | None = None,
        wait_aof: bool | None = None,
    ) -> ValkeyCache[Any]:
        """A cache on an existing connection pool (sync or asyncio), which it never closes.

        The other flavour of pool is derived from ``pool``'s connection settings.

        Args:
            pool: A ``valkey.ConnectionPool`` or ``valkey.asyncio.ConnectionPool``.
            ssl: Asserts that the pool's connections use TLS (a pool's connection class,
                not this flag, decides that).
            prefix: Key prefix.
            ttl: Default TTL in seconds.
            ttl_seconds: The same, under ``langgraph-checkpoint-aws``'s keyword name.
            serde: Serializer for values.
            retry: Retry budget for connection errors.
            wait_replicas: As the constructor's.
            wait_timeout_ms: As the constructor's.
            wait_aof: As the constructor's.

        Raises:
            ConfigError: ``pool`` is None, ``ssl=True`` with a plain-text pool, or both
                ``ttl`` and ``ttl_seconds`` are given.
        """
        if pool is None:
            raise ConfigError("pool must be a connection pool, got None")
        if ssl and "SSL" not in pool.connection_class.__name__:
            raise ConfigError(
                f"ssl=True but the pool's connections are {pool.connection_class.__name__}; "
                "create the pool from a valkeys:// or rediss:// URL"
            )
        ttl = _one_of("ttl", ttl, "ttl_seconds", ttl_seconds)
        client: AnyClient
        if isinstance(pool, valkey.asyncio.ConnectionPool):
            client = valkey.asyncio.Valkey(connection_pool=pool)
        else:
            client = valkey.Valkey(connection_pool=pool)
        return cls(
            client,
            prefix=prefix,
            ttl=ttl,
            serde=serde,
            retry=retry,
            wait_replicas=wait_replicas,
            wait_timeout_ms=wait_timeout_ms,
            wait_aof=wait_aof,
        )

    # The cache -------------------------------------------------------------------------

    def get(self, keys: Sequence[FullKey]) -> dict[FullKey, ValueT]:
        """Get the cached values for ``keys`` in one round trip; misses are absent.

        Raises:
            BackendError: The server failed or could not be reached (never a miss).
            CodecError: A stored value could not be decoded.
        """
        flow = core.get_flow(self._keys, keys, self.serde, self._cluster)
        return complete(flow, self._executor().run)

    async def aget(self, keys: Sequence[FullKey]) -> dict[FullKey, ValueT]:
        """Async :meth:`get`."""
        flow = core.get_flow(self._keys, keys, self.serde, self._cluster)
        return await acomplete(flow, self._aexecutor().run)

    def set(self, pairs: Mapping[FullKey, tuple[ValueT, int | None]]) -> None:
        """Set ``{key: (value, ttl)}`` in one round trip, atomically with the registry.

        A ``ttl`` of ``None`` takes the cache's default TTL (or never expires); a ``ttl``
        of zero or less removes the entry, as one that expired on arrival.

        Raises:
            BackendError: The server failed or could not be reached.
            ConfigError: A key, pair or TTL is malformed.
        """
        flow = core.set_flow(self._keys, pairs, self.serde, self.ttl, self._cluster)
        complete(flow, self._executor().run)

    async def aset(self, pairs: Mapping[FullKey, tuple[ValueT, int | None]]) -> None:
        """Async :meth:`set`."""
        flow = core.set_flow(self._keys, pairs, self.serde, self.ttl, self._cluster)
        await acomplete(flow, self._aexecutor().run)

    def clear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        """Delete every entry of exactly ``namespaces`` (not of their children).

        ``None`` deletes every entry of this cache (this prefix) and nothing else.

        Raises:
            BackendError: The server failed or could not be reached.
        """
        complete(core.clear_flow(self._keys, namespaces, self._cluster), self._executor().run)

    async def aclear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        """Async :meth:`clear`."""
        await acomplete(
            core.clear_flow(self._keys, namespaces, self._cluster), self._aexecutor().run
        )

    # Execution: the only difference between the sync and async methods ------------------

    def _executor(self) -> ValkeyExecutor:
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    assert self._sync_factory is not None
                    client = self._sync_factory()
                    self._owned.append(client)
                    self._sync = ValkeyExecutor(client, self._retry, self._wait)
        return self._sync

    def _aexecutor(self) -> AsyncValkeyExecutor:
        if self._async is not None:
            return self._async
        loop = asyncio.get_running_loop()
        executor = self._by_loop.get(loop)
        if executor is None:
            with self._lock:
                executor = self._by_loop.get(loop)
                if executor is None:
                    assert self._async_factory is not None
                    executor = AsyncValkeyExecutor(self._async_factory(), self._retry, self._wait)
                    self._by_loop[loop] = executor
        return executor

    # Lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connections this cache opened (never a client or pool it was given).

        Asyncio clients are closed on their own loop: scheduled there if that loop is
        running (this one included, since a sync call cannot await), dropped with it if
        it has stopped. In async code prefer :meth:`aclose`, which awaits the close; call
        it before an ``asyncio.run`` returns, as a stopped loop's sockets can only leak.
        """
        with self._lock:
            owned, self._owned = self._owned, []
            loops = list(self._by_loop.items())
            self._by_loop.clear()
            if self._sync_factory is not None:
                self._sync = None
            self._closing = [f for f in self._closing if not f.done()]
        for client in owned:
            client.close()
        for loop, executor in loops:
            if loop.is_running() and not loop.is_closed():
                # Held until done: a loop keeps only weak references to its tasks.
                future = asyncio.run_coroutine_threadsafe(executor.client.aclose(), loop)
                self._closing.append(future)

    async def aclose(self) -> None:
        """Close the connections this cache opened, awaiting this loop's asyncio client."""
        executor = self._by_loop.pop(asyncio.get_running_loop(), None)
        if executor is not None:
            await executor.client.aclose()
        self.close()

    def __enter__(self) -> ValkeyCache[ValueT]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> ValkeyCache[ValueT]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def counterpart_pool(pool: AnyPool) -> AnyPool:
    """An empty pool of the other flavour (sync <-> asyncio) with ``pool``'s settings.

    Host, port or path, database, credentials, TLS options and timeouts carry over;
    flavour-specific objects (a ``Retry``, a connect callback) do not.

    Raises:
        ConfigError: The pool uses a connection class valkey-py has no twin for.
    """
    to_async = not isinstance(pool, valkey.asyncio.ConnectionPool)
    module = valkey.asyncio.connection if to_async else valkey.connection
    name = pool.connection_class.__name__
    connection_class = getattr(module, name, None)
    if connection_class is None:
        raise ConfigError(
            f"cannot derive a {'n asyncio' if to_async else ' sync'} pool from connection "
            f"class {name}; pass both clients (client=..., async_client=...)"
        )
    accepted = _init_params(connection_class)
    kwargs = {
        k: v
        for k, v in pool.connection_kwargs.items()
        if k in accepted and k not in _FLAVOURED_KWARGS
    }
    if isinstance(pool, (valkey.BlockingConnectionPool, valkey.asyncio.BlockingConnectionPool)):
        blocking = (
            valkey.asyncio.BlockingConnectionPool if to_async else valkey.BlockingConnectionPool
        )
        return blocking(
            connection_class=connection_class,
            max_connections=pool.max_connections,
            timeout=pool.timeout,
            **kwargs,
        )
    plain = valkey.asyncio.ConnectionPool if to_async else valkey.ConnectionPool
    return plain(connection_class=connection_class, max_connections=pool.max_connections, **kwargs)


def _is_async_cluster(client: Any) -> bool:
    import valkey.asyncio.cluster

    return isinstance(client, valkey.asyncio.cluster.ValkeyCluster)


def _cluster_twins(client: Any) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """Factories of a sync and an asyncio cluster client reaching the same cluster."""
    import valkey.asyncio.cluster
    import valkey.cluster

    # an asyncio cluster client learns its nodes on first use: fall back to its seeds
    node = client.get_default_node() or next(iter(client.nodes_manager.startup_nodes.values()))
    given = client.nodes_manager.connection_kwargs
    kwargs = {
        k: given[k]
        for k in ("username", "password", "socket_timeout", "socket_connect_timeout")
        if given.get(k) is not None
    }
    kwargs["decode_responses"] = False
    return (
        lambda: valkey.cluster.ValkeyCluster(host=node.host, port=node.port, **kwargs),
        lambda: valkey.asyncio.cluster.ValkeyCluster(host=node.host, port=node.port, **kwargs),
    )


def _init_params(cls: type) -> set[str]:
    """Keyword names a connection class accepts, along its whole ``__init__`` chain."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names |= set(inspect.signature(init).parameters) - {"self", "args", "kwargs"}
    return names


def _one_of(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    if value is not None and alias_value is not None:
        raise ConfigError(f"give {name} or {alias}, not both")
    return value if value is not None else alias_value
