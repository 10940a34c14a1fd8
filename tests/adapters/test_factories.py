"""The factories every class shares with langgraph-checkpoint-aws: the URL under either
keyword name, bounded and unbounded pools, and the wait for a free connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import valkey

from streamstate import (
    AgentCoreValkeySaver,
    AsyncValkeySaver,
    AsyncValkeyStore,
    ValkeyCache,
    ValkeySaver,
    ValkeyStore,
)
from streamstate.connection import async_client_from_url, client_from_url
from streamstate.errors import BackendUnavailable, ConfigError

SYNC = [ValkeySaver, AgentCoreValkeySaver, ValkeyStore, ValkeyCache]
ASYNC = [AsyncValkeySaver, AsyncValkeyStore]


def _pool_of(obj: Any) -> Any:
    for attr in ("client", "_client"):
        client = getattr(obj, attr, None)
        if client is not None:
            return client.connection_pool
    log = getattr(obj, "log", None) or obj._log
    return log.client.connection_pool


@pytest.mark.parametrize("cls", SYNC, ids=lambda c: c.__name__)
def test_conn_string_is_the_url_under_its_other_name(cls: Any, valkey_url: str) -> None:
    with cls.from_conn_string(conn_string=valkey_url) as obj:
        kwargs = _pool_of(obj).connection_kwargs
        assert f"{kwargs['host']}:{kwargs['port']}" in valkey_url
    with (
        pytest.raises(ConfigError, match="url or conn_string"),
        cls.from_conn_string(valkey_url, conn_string=valkey_url),
    ):
        pass


@pytest.mark.parametrize("cls", ASYNC, ids=lambda c: c.__name__)
async def test_async_conn_string_is_the_url_under_its_other_name(cls: Any, valkey_url: str) -> None:
    async with cls.from_conn_string(conn_string=valkey_url) as obj:
        kwargs = _pool_of(obj).connection_kwargs
        assert f"{kwargs['host']}:{kwargs['port']}" in valkey_url
    with pytest.raises(ConfigError, match="url or conn_string"):
        async with cls.from_conn_string(valkey_url, conn_string=valkey_url):
            pass


@pytest.mark.parametrize("make", [client_from_url, async_client_from_url])
def test_pool_size_none_is_an_unbounded_pool(make: Callable[..., Any], valkey_url: str) -> None:
    client = make(valkey_url, pool_size=None)
    pool = client.connection_pool
    assert not isinstance(
        pool, (valkey.BlockingConnectionPool, valkey.asyncio.BlockingConnectionPool)
    )
    assert pool.max_connections >= 2**31 - 1


def test_store_and_cache_work_on_an_unbounded_pool(valkey_url: str) -> None:
    with ValkeyStore.from_conn_string(valkey_url, pool_size=None) as store:
        store.put(("factories",), "k", {"v": 1})
        assert store.get(("factories",), "k").value == {"v": 1}
    # a timeout with no bound has nothing to wait for: still an unbounded plain pool
    with ValkeyCache.from_conn_string(valkey_url, pool_size=None, pool_timeout=2) as cache:
        assert not isinstance(cache._sync.client.connection_pool, valkey.BlockingConnectionPool)
        cache.set({(("factories",), "k"): ({"v": 2}, None)})
        assert cache.get([(("factories",), "k")]) == {(("factories",), "k"): {"v": 2}}


def test_store_pool_timeout_bounds_the_wait_for_a_connection(valkey_url: str) -> None:
    with ValkeyStore.from_conn_string(valkey_url, pool_size=1, pool_timeout=0.2) as store:
        pool = store._log.client.connection_pool
        held = pool.get_connection("PING")  # the only connection, taken
        try:
            with pytest.raises(BackendUnavailable, match="No connection available"):
                store.get(("factories",), "k")
        finally:
            pool.release(held)
        assert store.get(("factories",), "missing") is None


async def test_async_store_pool_timeout_is_passed_on(valkey_url: str) -> None:
    async with AsyncValkeyStore.from_conn_string(valkey_url, pool_size=3, pool_timeout=0.5) as s:
        pool = _pool_of(s)
        assert isinstance(pool, valkey.asyncio.BlockingConnectionPool)
        assert (pool.max_connections, pool.timeout) == (3, 0.5)
