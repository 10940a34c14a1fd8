"""The Valkey-backed checkpointers the benches compare, each opened on a server URL.

Every saver runs on the client library it ships for, with a pool of the same size:

* **streamstate** ``ValkeySaver`` / ``AsyncValkeySaver`` on valkey-py;
* **aws**: langgraph-checkpoint-aws ``ValkeySaver`` / ``AsyncValkeySaver`` on valkey-py;
* **hotkv**: langgraph-checkpoint-hotkv ``HotKVSaver`` / ``AsyncHotKVSaver`` on its own
  hotkv-client (pure-Python RESP3; it accepts ``redis://`` URLs). It has no TTL option;
* **plainredis**: langgraph-checkpoint-plainredis ``RedisSaver`` / ``AsyncRedisSaver`` on
  redis-py (RESP2, plain strings / hashes / sorted sets, no modules).

None of them needs a server module, so all run on the same plain valkey-server.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import valkey
import valkey.asyncio

POOL_SIZE = 32  # every saver gets the same pool; > 16 clients so no thread waits


def redis_url(url: str) -> str:
    """The same server as a ``redis://`` URL (redis-py and hotkv-client refuse ``valkey://``)."""
    return url.replace("valkey://", "redis://", 1)


# -- client pools ------------------------------------------------------------------------


@dataclass
class Opened:
    """A sync saver, and its pool: ``warm(n)`` opens n connections now; ``close()``."""

    saver: Any
    warm: Callable[[int], None]
    close: Callable[[], None]


@dataclass
class AsyncOpened:
    """An asyncio saver, and its pool (``warm`` and ``close`` are coroutines)."""

    saver: Any
    warm: Callable[[int], Awaitable[None]]
    close: Callable[[], Awaitable[None]]


def _valkey_sync(url: str, size: int) -> tuple[valkey.Valkey, Callable[[int], None], Any]:
    pool = valkey.ConnectionPool.from_url(url, max_connections=size, decode_responses=False)

    def warm(n: int) -> None:
        conns = [pool.get_connection("PING") for _ in range(n)]
        for conn in conns:
            pool.release(conn)

    return valkey.Valkey(connection_pool=pool), warm, pool.disconnect


def _valkey_async(url: str, size: int) -> tuple[valkey.asyncio.Valkey, Any, Any]:
    pool = valkey.asyncio.ConnectionPool.from_url(url, max_connections=size, decode_responses=False)

    async def warm(n: int) -> None:
        conns = [await pool.get_connection("PING") for _ in range(n)]
        for conn in conns:
            await pool.release(conn)

    return valkey.asyncio.Valkey(connection_pool=pool), warm, pool.disconnect


def _redis_sync(url: str, size: int) -> tuple[Any, Callable[[int], None], Any]:
    import redis

    pool = redis.ConnectionPool.from_url(redis_url(url), max_connections=size)

    def warm(n: int) -> None:
        conns = [pool.get_connection() for _ in range(n)]
        for conn in conns:
            pool.release(conn)

    return redis.Redis(connection_pool=pool), warm, pool.disconnect


def _redis_async(url: str, size: int) -> tuple[Any, Any, Any]:
    import redis.asyncio

    pool = redis.asyncio.ConnectionPool.from_url(redis_url(url), max_connections=size)

    async def warm(n: int) -> None:
        conns = [await pool.get_connection() for _ in range(n)]
        for conn in conns:
            await pool.release(conn)

    return redis.asyncio.Redis(connection_pool=pool), warm, pool.disconnect


def _hotkv_sync(url: str, size: int) -> tuple[Any, Callable[[int], None], Any]:
    import hotkv

    client = hotkv.HotKV.from_url(redis_url(url), max_connections=size)
    pool = client._pool  # hotkv-client has no public way to open connections ahead

    def warm(n: int) -> None:
        conns = [pool.get_connection() for _ in range(n)]
        for conn in conns:
            conn.connect()
            pool.release(conn)

    return client, warm, client.close


def _hotkv_async(url: str, size: int) -> tuple[Any, Any, Any]:
    import hotkv.asyncio

    client = hotkv.asyncio.HotKV.from_url(redis_url(url), max_connections=size)
    pool = client._pool

    async def warm(n: int) -> None:
        conns = [await pool.get_connection() for _ in range(n)]
        for conn in conns:
            await conn.connect()
            await pool.release(conn)

    return client, warm, client.close


# -- the checkpointers -------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpointer:
    """How to open one checkpointer, sync or asyncio, with or without a TTL."""

    name: str
    label: str  # the package, for table headers
    module: str  # imported to tell whether it is installed
    open_sync: Callable[[str, float | None], Opened]
    open_async: Callable[[str, float | None], AsyncOpened]  # call inside a running loop
    key_kind: Callable[[str], str]  # key name -> what it holds, for bytes-by-key reports
    has_ttl: bool = True

    def installed(self) -> bool:
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:  # a parent package is missing
            return False


def _second_part(key: str) -> str:
    """``prefix:kind:...`` -> ``kind`` (hotkv and plainredis name their keys so)."""
    parts = key.split(":", 2)
    return parts[1] if len(parts) > 1 else key


def _streamstate_kind(key: str) -> str:
    if "}:" in key:
        return key.rsplit("}:", 1)[1]
    return key.split(":")[1] if ":" in key else key


def streamstate(compress: bool = True) -> Checkpointer:
    """streamstate as shipped; ``compress=False`` is the diagnostic run without zstd (it
    shows what compression costs put and what it saves in memory)."""

    def kw(ttl: float | None) -> dict[str, Any]:
        from streamstate.eventlog.codec import Codec

        out: dict[str, Any] = {} if compress else {"codec": Codec.plain()}
        if ttl:
            out["ttl"] = ttl
        return out

    def open_sync(url: str, ttl: float | None = None) -> Opened:
        from streamstate.adapters.valkey_saver import ValkeySaver

        client, warm, close = _valkey_sync(url, POOL_SIZE)
        return Opened(ValkeySaver(client, **kw(ttl)), warm, close)

    def open_async(url: str, ttl: float | None = None) -> AsyncOpened:
        from streamstate.adapters.valkey_saver import AsyncValkeySaver

        client, warm, close = _valkey_async(url, POOL_SIZE)
        return AsyncOpened(AsyncValkeySaver(client, **kw(ttl)), warm, close)

    return Checkpointer(
        "streamstate",
        "streamstate" if compress else "streamstate (no compression)",
        "streamstate.adapters.valkey_saver",
        open_sync,
        open_async,
        _streamstate_kind,
    )


def aws() -> Checkpointer:
    def open_sync(url: str, ttl: float | None = None) -> Opened:
        from langgraph_checkpoint_aws.checkpoint.valkey import ValkeySaver

        client, warm, close = _valkey_sync(url, POOL_SIZE)
        return Opened(ValkeySaver(client, ttl=ttl), warm, close)

    def open_async(url: str, ttl: float | None = None) -> AsyncOpened:
        from langgraph_checkpoint_aws.checkpoint.valkey import AsyncValkeySaver

        client, warm, close = _valkey_async(url, POOL_SIZE)
        return AsyncOpened(AsyncValkeySaver(client, ttl=ttl), warm, close)

    return Checkpointer(
        "aws",
        "langgraph-checkpoint-aws",
        "langgraph_checkpoint_aws.checkpoint.valkey",
        open_sync,
        open_async,
        lambda key: key.split(":", 1)[0],
    )


def hotkv() -> Checkpointer:
    """langgraph-checkpoint-hotkv: no TTL option, so ``ttl`` is ignored (reported as such)."""

    def open_sync(url: str, ttl: float | None = None) -> Opened:
        from langgraph.checkpoint.hotkv import HotKVSaver

        client, warm, close = _hotkv_sync(url, POOL_SIZE)
        return Opened(HotKVSaver(client), warm, close)

    def open_async(url: str, ttl: float | None = None) -> AsyncOpened:
        from langgraph.checkpoint.hotkv import AsyncHotKVSaver

        client, warm, close = _hotkv_async(url, POOL_SIZE)
        return AsyncOpened(AsyncHotKVSaver(client), warm, close)

    return Checkpointer(
        "hotkv",
        "langgraph-checkpoint-hotkv",
        "langgraph.checkpoint.hotkv",
        open_sync,
        open_async,
        _second_part,
        has_ttl=False,
    )


def plainredis() -> Checkpointer:
    def open_sync(url: str, ttl: float | None = None) -> Opened:
        from langgraph_checkpoint_plainredis import RedisSaver

        client, warm, close = _redis_sync(url, POOL_SIZE)
        return Opened(RedisSaver(client, ttl=int(ttl) if ttl else None), warm, close)

    def open_async(url: str, ttl: float | None = None) -> AsyncOpened:
        from langgraph_checkpoint_plainredis import AsyncRedisSaver

        client, warm, close = _redis_async(url, POOL_SIZE)
        return AsyncOpened(AsyncRedisSaver(client, ttl=int(ttl) if ttl else None), warm, close)

    return Checkpointer(
        "plainredis",
        "langgraph-checkpoint-plainredis",
        "langgraph_checkpoint_plainredis",
        open_sync,
        open_async,
        _second_part,
    )


PEER_FACTORIES: dict[str, Callable[[], Checkpointer]] = {
    "aws": aws,
    "hotkv": hotkv,
    "plainredis": plainredis,
}


def peers(names: list[str] | None = None) -> tuple[list[Checkpointer], dict[str, str]]:
    """The peers asked for (default all) that are installed, and why the others are not run."""
    out, missing = [], {}
    for name in names or list(PEER_FACTORIES):
        cp = PEER_FACTORIES[name]()
        if cp.installed():
            out.append(cp)
        else:
            missing[name] = f"{cp.label} is not installed (pip install 'streamstate[bench]')"
    return out, missing


# -- uniform calls --------------------------------------------------------------------------


class SyncShell:
    """Uniform calls on a sync saver."""

    is_async = False

    def __init__(self, saver: Any) -> None:
        self.saver = saver

    def put(self, c: Any, cp: Any, md: Any, nv: Any) -> Any:
        return self.saver.put(c, cp, md, nv)

    def put_writes(self, c: Any, w: Any, t: str, p: str) -> Any:
        return self.saver.put_writes(c, w, t, p)

    def get_tuple(self, c: Any) -> Any:
        return self.saver.get_tuple(c)

    def list(self, c: Any, limit: int) -> list[Any]:
        return list(self.saver.list(c, limit=limit))


class AsyncShell:
    """Uniform calls on an async saver (each returns an awaitable)."""

    is_async = True

    def __init__(self, saver: Any) -> None:
        self.saver = saver

    def put(self, c: Any, cp: Any, md: Any, nv: Any) -> Any:
        return self.saver.aput(c, cp, md, nv)

    def put_writes(self, c: Any, w: Any, t: str, p: str) -> Any:
        return self.saver.aput_writes(c, w, t, p)

    def get_tuple(self, c: Any) -> Any:
        return self.saver.aget_tuple(c)

    async def list(self, c: Any, limit: int) -> list[Any]:
        return [t async for t in self.saver.alist(c, limit=limit)]
