"""The executor's thin script path: a call cut off mid-reply (a cancelled task, a socket
timeout) never leaves its reply on a pooled connection for the next call to read."""

from __future__ import annotations

import asyncio

import pytest
import valkey
import valkey.asyncio

from streamstate.errors import BackendUnavailable
from streamstate.eventlog.valkey._core import ScriptCall
from streamstate.eventlog.valkey._exec import (
    AsyncValkeyExecutor,
    RetryPolicy,
    ValkeyExecutor,
    thin_path,
)
from streamstate.eventlog.valkey.scripts import LuaScript

# Busy for ARGV[1] iterations, then answers ARGV[2]: a reply that arrives late.
SLOW_ECHO = LuaScript(
    "test_slow_echo",
    "local n = 0\nfor i = 1, tonumber(ARGV[1]) do n = n + 1 end\nreturn ARGV[2]\n",
)
SLOW = 30_000_000  # ~0.3-1 s of server time


def echo(value: str, spin: int = 0) -> ScriptCall:
    return ScriptCall(SLOW_ECHO, keys=["thin-path"], args=[spin, value], idempotent=False)


def test_the_thin_path_is_taken_only_where_a_pool_is_owned(valkey_url: str) -> None:
    pooled = valkey.Valkey.from_url(valkey_url)
    single = valkey.Valkey.from_url(valkey_url, single_connection_client=True)
    try:
        assert thin_path(pooled)
        assert not thin_path(single)
        assert thin_path(valkey.asyncio.Valkey.from_url(valkey_url))
        assert not thin_path(
            valkey.asyncio.Valkey.from_url(valkey_url, single_connection_client=True)
        )
    finally:
        pooled.close()
        single.close()


def test_a_timed_out_call_leaves_no_reply_behind(valkey_url: str) -> None:
    client = valkey.Valkey.from_url(valkey_url, socket_timeout=0.1, max_connections=1)
    run = ValkeyExecutor(client, retry=RetryPolicy(attempts=1)).run
    try:
        with pytest.raises(BackendUnavailable):
            run(echo("late", SLOW))
        # the late reply must not be taken for this call's
        for value in ("a", "b", "c"):
            assert _eventually(lambda v=value: run(echo(v))) == value.encode()
    finally:
        client.close()


def _eventually(call):  # the server may still be busy with the slow script
    for _ in range(100):
        try:
            return call()
        except BackendUnavailable:
            continue
    raise AssertionError("the server stayed busy")


async def test_a_cancelled_call_leaves_no_reply_behind(valkey_url: str) -> None:
    client = valkey.asyncio.Valkey.from_url(valkey_url, max_connections=1)
    run = AsyncValkeyExecutor(client).run
    try:
        task = asyncio.ensure_future(run(echo("late", SLOW)))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for value in ("a", "b", "c"):
            assert await run(echo(value)) == value.encode()
    finally:
        await client.aclose()
