"""ValkeyCache on a real server: values, TTLs, exact clears, registry hygiene, errors.

Every behaviour test runs twice through the ``shell`` fixture: once awaiting the async
methods, once calling the sync methods directly inside the test's running event loop
(which is how LangGraph's sync API gets used from async applications).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
import valkey
import valkey.asyncio
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from streamstate.adapters.cache import ValkeyCache, counterpart_pool
from streamstate.errors import BackendUnavailable, CodecError, ConfigError, ScriptError
from streamstate.eventlog.valkey import RetryPolicy
from streamstate.projections.cache import CacheKeys
from streamstate.server import free_port
from tests._short_ttl import SHORT_TTLS, Window

HOSTILE_NAMESPACES: list[tuple[str, ...]] = [
    (),
    ("",),
    ("a",),
    ("a", "b"),
    ("a/b",),
    ("a:b",),
    ("a", ""),
    ("*",),
    ("a*",),
    ("{a}",),
    ("}", "{"),
    ("ns",),
    ("a,b",),
    ("%61",),
    ("\n", "?[]"),
]
HOSTILE_KEYS = ["k", "*", "{k}", "k:e:k", "", "%2A"]


class Shell:
    """One test body, two ways in: awaited async methods, or sync methods in the loop."""

    def __init__(self, cache: ValkeyCache[Any], flavour: str) -> None:
        self.cache = cache
        self.flavour = flavour

    async def get(self, keys: Sequence[Any]) -> dict[Any, Any]:
        if self.flavour == "sync":
            return self.cache.get(keys)
        return await self.cache.aget(keys)

    async def set(self, pairs: Mapping[Any, tuple[Any, float | None]]) -> None:
        if self.flavour == "sync":
            return self.cache.set(pairs)
        return await self.cache.aset(pairs)

    async def clear(self, namespaces: Sequence[tuple[str, ...]] | None = None) -> None:
        if self.flavour == "sync":
            return self.cache.clear(namespaces)
        return await self.cache.aclear(namespaces)


@pytest.fixture
def prefix(sid: str) -> str:
    return f"test:{sid}:"


@pytest.fixture
async def cache(valkey_url: str, prefix: str) -> AsyncIterator[ValkeyCache[Any]]:
    async with ValkeyCache.from_conn_string(valkey_url, prefix=prefix) as c:
        yield c


@pytest.fixture(params=["sync", "async"])
def shell(request: pytest.FixtureRequest, cache: ValkeyCache[Any]) -> Shell:
    return Shell(cache, request.param)


def our_keys(client: valkey.Valkey, prefix: str) -> set[bytes]:
    """Every key under a test prefix (a test-only SCAN; the cache never scans)."""
    return set(client.scan_iter(match=f"{prefix}*", count=1000))


# Values and key forms ---------------------------------------------------------------


async def test_values_round_trip(shell: Shell) -> None:
    values = {
        (("a",), "dict"): {"x": [1, 2.5, "three"], "y": None},
        (("a",), "bytes"): b"\x00\xff",
        (("a",), "none"): None,
        (("b", "c"), "list"): ["t", 1],
        ((), "text"): "ü" * 1000,
    }
    await shell.set({k: (v, None) for k, v in values.items()})
    got = await shell.get([*values, (("a",), "missing"), (("zz",), "dict")])
    assert got == values  # misses are absent, a stored None is a hit


async def test_string_keys_as_in_the_aws_readme(shell: Shell) -> None:
    cache_key = "expensive_computation_key"
    assert not await shell.get([cache_key])
    await shell.set({cache_key: ("response", 3600), "key2": ([1], 1800)})
    assert await shell.get([cache_key, "key2", "key3"]) == {cache_key: "response", "key2": [1]}
    # A string key is the empty namespace, and results use the caller's own key objects.
    assert await shell.get([((), cache_key)]) == {((), cache_key): "response"}
    await shell.set({("users", "u1"): ("alice", None)})
    assert await shell.get([(("users",), "u1"), ("users", "u1")]) == {
        (("users",), "u1"): "alice",
        ("users", "u1"): "alice",
    }


async def test_overwrite_replaces_value_and_ttl(shell: Shell, client: valkey.Valkey) -> None:
    key = (("a",), "k")
    await shell.set({key: ("old", 100)})
    await shell.set({key: ("new", None)})
    assert await shell.get([key]) == {key: "new"}
    assert client.pttl(shell.cache._keys.entry(("a",), "k")) == -1


# TTL ----------------------------------------------------------------------------------


async def test_sub_second_ttl_expires(shell: Shell, client: valkey.Valkey) -> None:
    short, long_ = (("t",), "short"), (("t",), "long")
    for ttl in SHORT_TTLS:
        window = Window(ttl)
        await shell.set({short: ("s", ttl), long_: ("l", 30)})
        pttl = client.pttl(shell.cache._keys.entry(("t",), "short"))
        got = await shell.get([short, long_])
        if window.in_time():
            break
    assert 0 < pttl <= ttl * 1000
    assert got == {short: "s", long_: "l"}
    await asyncio.sleep(ttl + 0.25)
    assert await shell.get([short, long_]) == {long_: "l"}


async def test_none_ttl_never_expires_without_a_default(
    shell: Shell, client: valkey.Valkey
) -> None:
    await shell.set({"forever": (1, None)})
    assert client.pttl(shell.cache._keys.entry((), "forever")) == -1


async def test_none_ttl_takes_the_default(
    valkey_url: str, prefix: str, client: valkey.Valkey
) -> None:
    async with ValkeyCache.from_conn_string(valkey_url, prefix=prefix, ttl_seconds=0.5) as cache:
        cache.set({"d": (1, None), "own": (2, 60)})
        entry = cache._keys.entry
        assert 0 < client.pttl(entry((), "d")) <= 500
        assert 50_000 < client.pttl(entry((), "own")) <= 60_000
        await cache.aset({"d2": (1, None)})
        assert 0 < client.pttl(entry((), "d2")) <= 500


async def test_non_positive_ttl_removes_the_entry(shell: Shell) -> None:
    await shell.set({"k": ("v", None)})
    await shell.set({"k": ("ignored", 0)})
    assert await shell.get(["k"]) == {}


# clear --------------------------------------------------------------------------------


async def test_clear_removes_exactly_the_given_namespaces(shell: Shell) -> None:
    keys = [(ns, k) for ns in HOSTILE_NAMESPACES for k in HOSTILE_KEYS]
    await shell.set({key: (repr(key), None) for key in keys})
    assert await shell.get(keys) == {key: repr(key) for key in keys}  # no collisions

    doomed = [("a",), ("{a}",), (), ("*",)]
    await shell.clear(doomed)
    assert await shell.get(keys) == {key: repr(key) for key in keys if key[0] not in doomed}

    await shell.clear([("never-used",)])
    await shell.clear([])
    assert len(await shell.get(keys)) == len(keys) - len(doomed) * len(HOSTILE_KEYS)


async def test_clear_keeps_child_namespaces(shell: Shell) -> None:
    await shell.set({(("a",), "k"): (1, None), (("a", "b"), "k"): (2, None)})
    await shell.clear([("a",)])
    assert await shell.get([(("a",), "k"), (("a", "b"), "k")]) == {(("a", "b"), "k"): 2}


async def test_clear_all_removes_every_key_of_this_prefix_only(
    shell: Shell, valkey_url: str, prefix: str, client: valkey.Valkey
) -> None:
    # A prefix that extends ours: a glob over ours would match its keys.
    other = ValkeyCache.from_conn_string(valkey_url, prefix=prefix + "other:")
    with other:
        other.set({(("a",), "k"): ("mine", None), "s": ("mine", 60)})
        await shell.set({(ns, "k"): (1, None) for ns in HOSTILE_NAMESPACES})
        await shell.set({"expiring": (1, 30)})

        await shell.clear()
        assert await shell.get([(ns, "k") for ns in HOSTILE_NAMESPACES] + ["expiring"]) == {}
        own = {k for k in our_keys(client, prefix) if not k.startswith(other.prefix.encode())}
        assert own == set()  # entries, indexes and the registry are all gone
        assert other.get([(("a",), "k"), "s"]) == {(("a",), "k"): "mine", "s": "mine"}
        other.clear()
        assert our_keys(client, prefix) == set()


async def test_clear_of_a_large_namespace(shell: Shell) -> None:
    keys = [(("big",), str(i)) for i in range(2500)]
    await shell.set({k: (i, None) for i, k in enumerate(keys)})
    await shell.clear([("big",)])
    assert await shell.get(keys) == {}


# Registry hygiene ----------------------------------------------------------------------


async def test_expired_entries_leave_no_registry_behind(
    shell: Shell, prefix: str, client: valkey.Valkey
) -> None:
    for ttl in SHORT_TTLS:
        window = Window(ttl)
        await shell.set({((f"n{i}",), "k"): (i, ttl) for i in range(5)})
        ttls = {key: client.pttl(key) for key in our_keys(client, prefix)}
        if window.in_time():
            break
    # Indexes and the registry expire with their latest entry.
    assert ttls and all(0 < ms <= ttl * 1000 for ms in ttls.values()), ttls
    await asyncio.sleep(ttl + 0.2)
    assert our_keys(client, prefix) == set()


async def test_stale_registry_members_are_pruned_on_write(
    shell: Shell, client: valkey.Valkey
) -> None:
    keys: CacheKeys = shell.cache._keys
    await shell.set({(("gone",), "k"): (1, 0.1), (("kept",), "k"): (1, None)})
    await shell.set({(("mixed",), "short"): (1, 0.1), (("mixed",), "long"): (1, None)})
    await asyncio.sleep(0.25)
    await shell.set({(("new",), "k"): (1, 60)})
    assert set(client.zrange(keys.registry, 0, -1)) == {
        keys.index(("kept",)).encode(),
        keys.index(("mixed",)).encode(),
        keys.index(("new",)).encode(),
    }
    await shell.set({(("mixed",), "other"): (1, 60)})
    assert set(client.zrange(keys.index(("mixed",)), 0, -1)) == {
        keys.entry(("mixed",), "long").encode(),
        keys.entry(("mixed",), "other").encode(),
    }
    assert client.pttl(keys.registry) == -1  # "kept" never expires


async def test_clear_refits_the_registry(shell: Shell, client: valkey.Valkey) -> None:
    keys: CacheKeys = shell.cache._keys
    await shell.set({(("forever",), "k"): (1, None), (("brief",), "k"): (1, 0.1)})
    await shell.set({(("later",), "k"): (1, 30)})
    await asyncio.sleep(0.25)
    assert client.pttl(keys.registry) == -1
    await shell.clear([("forever",)])
    # "brief" expired and is pruned; without "forever" the registry now expires too.
    assert client.zrange(keys.registry, 0, -1) == [keys.index(("later",)).encode()]
    assert 20_000 < client.pttl(keys.registry) <= 30_000


async def test_index_expiry_follows_its_latest_entry(shell: Shell, client: valkey.Valkey) -> None:
    keys: CacheKeys = shell.cache._keys
    await shell.set({(("x",), "a"): (1, 10), (("x",), "b"): (1, 20)})
    assert 10_000 < client.pttl(keys.index(("x",))) <= 20_000
    assert 10_000 < client.pttl(keys.registry) <= 20_000
    await shell.set({(("x",), "c"): (1, None)})
    assert client.pttl(keys.index(("x",))) == -1


# Errors -----------------------------------------------------------------------------------


async def test_a_server_error_raises(shell: Shell, client: valkey.Valkey) -> None:
    keys: CacheKeys = shell.cache._keys
    client.set(keys.index(("trap",)), "not a sorted set")
    with pytest.raises(ScriptError, match="WRONGTYPE"):
        await shell.set({(("trap",), "k"): (1, None)})
    with pytest.raises(ScriptError, match="WRONGTYPE"):
        await shell.clear([("trap",)])


async def test_a_foreign_value_raises_instead_of_missing(
    shell: Shell, client: valkey.Valkey
) -> None:
    client.set(shell.cache._keys.entry(("a",), "k"), b"written by someone else")
    with pytest.raises(CodecError, match="no type prefix"):
        await shell.get([(("a",), "k")])


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_an_unreachable_server_raises_instead_of_missing(flavour: str) -> None:
    url = f"valkey://127.0.0.1:{free_port()}"
    retry = RetryPolicy(attempts=2, budget=1.0, max_wait=0.05)
    async with ValkeyCache.from_conn_string(url, retry=retry) as cache:
        shell = Shell(cache, flavour)
        with pytest.raises(BackendUnavailable):
            await shell.get(["k"])
        with pytest.raises(BackendUnavailable):
            await shell.set({"k": (1, None)})
        with pytest.raises(BackendUnavailable):
            await shell.clear()


@dataclasses.dataclass
class Secret:
    value: int


async def test_the_serde_allow_list_decides_what_is_revived(valkey_url: str, prefix: str) -> None:
    strict = JsonPlusSerializer(allowed_msgpack_modules=None)
    with (
        ValkeyCache.from_conn_string(valkey_url, prefix=prefix) as writer,
        ValkeyCache.from_conn_string(valkey_url, prefix=prefix, serde=strict) as reader,
    ):
        writer.set({"s": (Secret(1), None)})
        assert writer.get(["s"]) == {"s": Secret(1)}
        assert reader.get(["s"]) == {"s": {"value": 1}}  # not a Secret


# Clients, pools, loops -------------------------------------------------------------------


def test_sync_client_derives_async_clients_per_loop(valkey_url: str, prefix: str) -> None:
    client = valkey.Valkey.from_url(valkey_url)
    cache: ValkeyCache[Any] = ValkeyCache(client, prefix=prefix)
    cache.set({"k": ("v", None)})

    async def read() -> dict[Any, Any]:
        try:
            return await cache.aget(["k"])
        finally:
            await cache.aclose()  # this loop's client; the caller's sync client stays open

    # Two loops one after the other: asyncio connections never cross loops.
    assert asyncio.run(read()) == {"k": "v"}
    assert asyncio.run(read()) == {"k": "v"}
    cache.clear()
    cache.close()
    assert client.ping()  # the caller's client is still open
    client.close()


async def test_async_client_derives_a_sync_client(valkey_url: str, prefix: str) -> None:
    aclient = valkey.asyncio.Valkey.from_url(valkey_url)
    cache: ValkeyCache[Any] = ValkeyCache(aclient, prefix=prefix, ttl=60)
    await cache.aset({"k": ("v", None)})
    assert cache.get(["k"]) == {"k": "v"}  # sync, inside this running loop
    cache.clear()
    assert await cache.aget(["k"]) == {}
    await cache.aclose()
    assert await aclient.ping()
    await aclient.aclose()


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_from_pool_of_either_flavour(valkey_url: str, prefix: str, flavour: str) -> None:
    pool: Any
    if flavour == "sync":
        pool = valkey.ConnectionPool.from_url(valkey_url, max_connections=4)
    else:
        pool = valkey.asyncio.ConnectionPool.from_url(valkey_url, max_connections=4)
    async with ValkeyCache.from_pool(pool, prefix=prefix, ttl_seconds=30) as cache:
        cache.set({"s": (1, None)})
        await cache.aset({"a": (2, None)})
        assert cache.get(["s", "a"]) == await cache.aget(["s", "a"]) == {"s": 1, "a": 2}
        assert cache.ttl == 30
        await cache.aclear()
    assert pool.connection_kwargs["host"]  # the caller's pool is left alone
    if flavour == "async":
        await pool.disconnect()
    else:
        pool.disconnect()


def test_counterpart_pool_keeps_connection_settings() -> None:
    sync = valkey.BlockingConnectionPool.from_url(
        "valkeys://user:pw@example.com:6380/3", max_connections=7, timeout=2, socket_timeout=4
    )
    derived = counterpart_pool(sync)
    assert isinstance(derived, valkey.asyncio.BlockingConnectionPool)
    assert derived.connection_class is valkey.asyncio.connection.SSLConnection
    assert derived.max_connections == 7 and derived.timeout == 2
    kw = derived.connection_kwargs
    assert (kw["host"], kw["port"], kw["db"], kw["username"], kw["password"]) == (
        "example.com",
        6380,
        3,
        "user",
        "pw",
    )
    assert kw["socket_timeout"] == 4
    back = counterpart_pool(valkey.asyncio.ConnectionPool.from_url("unix:///tmp/v.sock"))
    assert isinstance(back, valkey.ConnectionPool)
    assert back.connection_class is valkey.connection.UnixDomainSocketConnection
    assert back.connection_kwargs["path"] == "/tmp/v.sock"


def test_sync_calls_from_threads(valkey_url: str, prefix: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ValkeyCache.from_conn_string(valkey_url, prefix=prefix, pool_size=4, pool_timeout=5) as c:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: c.set({str(i): (i, None)}), range(64)))
        assert c.get([str(i) for i in range(64)]) == {str(i): i for i in range(64)}
        c.clear()


async def test_sync_close_inside_a_loop_closes_its_async_client(
    valkey_url: str, prefix: str
) -> None:
    with ValkeyCache.from_conn_string(valkey_url, prefix=prefix) as cache:
        await cache.aset({"k": (1, None)})
        pool = cache._by_loop[asyncio.get_running_loop()].client.connection_pool
        assert pool._available_connections
    # close() could not await, so it scheduled the close on this loop.
    await asyncio.gather(*(asyncio.wrap_future(f) for f in cache._closing))
    assert not any(c.is_connected for c in pool._available_connections)
    async with ValkeyCache.from_conn_string(valkey_url, prefix=prefix) as cache:
        await cache.aclear()


def test_the_aws_readme_example_runs_with_only_the_import_changed(valkey_url: str) -> None:
    from streamstate import ValkeyCache

    with ValkeyCache.from_conn_string(valkey_url, ttl_seconds=3600, pool_size=10) as cache:
        cache_key = "expensive_computation_key"
        result = cache.get([cache_key])
        if not result:
            cache.set({cache_key: ("response content", 3600)})  # Cache for 1 hour
        assert cache.get([cache_key]) == {cache_key: "response content"}

        cache.set({"key1": ("value1", 3600), "key2": ("value2", 1800), "key3": ("value3", 7200)})
        results = cache.get(["key1", "key2", "key3"])
        assert results == {"key1": "value1", "key2": "value2", "key3": "value3"}
        cache.clear([()])  # the README's keys live in the empty namespace


# Configuration --------------------------------------------------------------------------


def test_factory_arguments(valkey_url: str, prefix: str) -> None:
    with ValkeyCache.from_conn_string(conn_string=valkey_url, prefix=prefix.rstrip(":")) as c:
        assert c.prefix == prefix
    with pytest.raises(ConfigError, match="not both"):
        ValkeyCache.from_conn_string(valkey_url, ttl=1, ttl_seconds=1)
    with pytest.raises(ConfigError, match="not both"):
        ValkeyCache.from_conn_string(valkey_url, conn_string=valkey_url)
    with pytest.raises(ConfigError, match="scheme"):
        ValkeyCache.from_conn_string("http://localhost")
    with pytest.raises(ValueError, match="ttl must be positive"):
        ValkeyCache.from_conn_string(valkey_url, ttl_seconds=0)
    with pytest.raises(ConfigError, match="braces"):
        ValkeyCache.from_conn_string(valkey_url, prefix="a{b}")
    with pytest.raises(ValueError, match="pool"):
        ValkeyCache.from_pool(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="ssl=True"):
        ValkeyCache.from_pool(valkey.ConnectionPool.from_url(valkey_url), ssl=True)
    with pytest.raises(ConfigError, match="decode_responses"):
        ValkeyCache(valkey.Valkey.from_url(valkey_url, decode_responses=True))
