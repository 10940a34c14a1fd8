"""Replica-confirmed writes (``wait_replicas`` / ``wait_timeout_ms`` / ``wait_aof``):
one round trip per write, reads never wait, NOSCRIPT and retries, WAITAOF, and the
options reaching every class from its arguments and from the URL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import valkey
import valkey.asyncio.connection
import valkey.connection

from streamstate import (
    AgentCoreValkeySaver,
    AsyncValkeySaver,
    AsyncValkeyStore,
    ValkeyCache,
    ValkeySaver,
    ValkeyStore,
)
from streamstate.connection import async_client_from_url, client_from_url, url_wait_options
from streamstate.errors import BackendError, ConfigError, ReplicationTimeout
from streamstate.eventlog.events import CheckpointPut
from streamstate.eventlog.valkey._exec import WaitPolicy, waits
from streamstate.testing.replication import ReplicaSet
from tests.replication._ops import calls, cfg, checkpoint, put, thread_id

# Generous where the write must be confirmed (a loaded machine can delay a replica's
# acknowledgement), short where it must time out (a paused or cut replica).
WAIT = {"wait_replicas": 1, "wait_timeout_ms": 2000}
SHORT = {"wait_replicas": 1, "wait_timeout_ms": 500}


@contextlib.contextmanager
def sends() -> Iterator[list[int]]:
    """Counts requests sent (one ``send_packed_command``: a command or a whole pipeline)."""
    count = [0]
    sync_cls = valkey.connection.AbstractConnection
    async_cls = valkey.asyncio.connection.AbstractConnection
    sync_send, async_send = sync_cls.send_packed_command, async_cls.send_packed_command

    def send(conn: Any, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return sync_send(conn, *args, **kwargs)

    async def asend(conn: Any, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return await async_send(conn, *args, **kwargs)

    sync_cls.send_packed_command = send  # type: ignore[method-assign]
    async_cls.send_packed_command = asend  # type: ignore[method-assign]
    try:
        yield count
    finally:
        sync_cls.send_packed_command = sync_send  # type: ignore[method-assign]
        async_cls.send_packed_command = async_send  # type: ignore[method-assign]


def _checkpoint_events(saver: ValkeySaver, thread: str, cid: str) -> int:
    entries = saver.log.read(("t", thread))
    return sum(
        1 for e in entries if isinstance(e.event, CheckpointPut) and e.event.checkpoint_id == cid
    )


def test_a_waited_write_is_one_round_trip_and_reads_never_wait(replica_set: ReplicaSet) -> None:
    primary = replica_set.primary.client()
    saver = ValkeySaver(client_from_url(replica_set.url), **WAIT)
    store = ValkeyStore(client_from_url(replica_set.url), **WAIT)
    cache: ValkeyCache[Any] = ValkeyCache(client_from_url(replica_set.url), **WAIT)
    thread, ns = thread_id(), ("docs", thread_id())
    first = put(saver, thread)  # loads the scripts, registers the thread
    saver.put_writes(first, [("a", 0)], "warm")
    store.put(ns, "warm", {"n": 0})
    cache.set({(("n",), "warm"): (0, None)})
    ops = {
        "put": (lambda: put(saver, thread, first, 1), 1),
        "put_writes": (lambda: saver.put_writes(first, [("a", 1), ("b", 2)], "t1"), 1),
        "store put": (lambda: store.put(ns, "k", {"n": 1}), 1),
        "cache set": (lambda: cache.set({(("n",), "k"): (1, None)}), 1),
        "get_tuple": (lambda: saver.get_tuple(cfg(thread)), 0),
        "list page": (lambda: list(saver.list(cfg(thread), limit=5)), 0),
        "store get": (lambda: store.get(ns, "k"), 0),
        "store search": (lambda: store.search(ns, filter={"n": 1}), 0),
        "cache get": (lambda: cache.get([(("n",), "k")]), 0),
    }
    for op, _ in ops.values():
        op()  # loads every script (NOSCRIPT costs one more round trip, once)
    for name, (op, waited) in ops.items():
        before = calls(primary, "wait")
        with sends() as count:
            op()
        assert count[0] == 1, (name, count[0])
        assert calls(primary, "wait") - before == waited, name


def test_noscript_falls_back_and_the_write_still_waits(replica_set: ReplicaSet) -> None:
    saver = ValkeySaver(client_from_url(replica_set.url), **WAIT)
    thread = thread_id()
    first = put(saver, thread)
    replica_set.primary.client().script_flush()
    before = calls(replica_set.primary.client(), "wait")
    second = put(saver, thread, first, 1)
    assert calls(replica_set.primary.client(), "wait") > before
    cid = second["configurable"]["checkpoint_id"]
    assert _checkpoint_events(saver, thread, cid) == 1
    replica = ValkeySaver(client_from_url(replica_set.replicas[0].url))
    assert replica.get_tuple(second) is not None  # confirmed: the replica has it


def test_a_retry_that_finds_its_write_applied_waits_for_the_replicas_again(
    replica_set: ReplicaSet,
) -> None:
    """``WAIT`` covers what *its connection* wrote. A retry that finds its write applied
    writes nothing; on a fresh connection ``WAIT`` would then count a replica that is
    connected but far behind. The retry must still wait until the replica has it."""
    replica = replica_set.replicas[0]
    saver = ValkeySaver(client_from_url(replica_set.url), **SHORT)
    thread = thread_id()
    first = put(saver, thread)
    cp, meta, versions = checkpoint(saver, 1)
    replica.pause()  # linked, but acknowledging nothing
    try:
        with pytest.raises(ReplicationTimeout):
            saver.put(first, cp, meta, versions)
        # why a fence is needed: a fresh connection's WAIT returns at once
        raw = replica_set.primary.client()
        assert raw.execute_command("WAIT", 1, 100) == 1
        # the same put from another process (a fresh saver, fresh connections)
        retry = ValkeySaver(client_from_url(replica_set.url), **SHORT)
        with pytest.raises(ReplicationTimeout):
            retry.put(first, cp, meta, versions)
        # and again from the first saver, on whatever connection its pool gives
        with pytest.raises(ReplicationTimeout):
            saver.put(first, cp, meta, versions)
    finally:
        replica.resume()
    replica_set.wait_synced()
    out = saver.put(first, cp, meta, versions)  # now confirmed; still one event
    assert _checkpoint_events(saver, thread, out["configurable"]["checkpoint_id"]) == 1


def test_a_retry_after_a_timeout_appends_once_and_is_confirmed(replica_set: ReplicaSet) -> None:
    replica = replica_set.replicas[0]
    saver = ValkeySaver(client_from_url(replica_set.url), **SHORT)
    thread = thread_id()
    first = put(saver, thread)
    cp, meta, versions = checkpoint(saver, 1)
    replica_set.cut(replica)
    with pytest.raises(ReplicationTimeout) as info:
        saver.put(first, cp, meta, versions)
    assert "applied on the primary" in str(info.value)
    with pytest.raises(ReplicationTimeout):
        saver.put_writes(first, [("x", 1)], "task")
    replica.resume()
    replica_set.wait_synced()
    out = saver.put(first, cp, meta, versions)
    saver.put_writes(first, [("x", 1)], "task")
    assert _checkpoint_events(saver, thread, out["configurable"]["checkpoint_id"]) == 1
    found = saver.get_tuple(first)
    assert found is not None and found.pending_writes == [("task", "x", 1)]


def test_wait_aof(tmp_path: Any) -> None:
    """``WAITAOF``: a replica reports its fsynced offset with its acknowledgements, up to
    a second apart: the wait needs a timeout above a second."""
    with ReplicaSet(tmp_path / "aof", replicas=1, appendfsync="always") as rs:
        primary = rs.primary.client()
        saver = ValkeySaver(
            client_from_url(rs.url), wait_aof=True, wait_replicas=1, wait_timeout_ms=2500
        )
        thread = thread_id()
        first = put(saver, thread)
        assert calls(primary, "waitaof") >= 1 and calls(primary, "wait") == 0
        local_only = ValkeySaver(client_from_url(rs.url), wait_aof=True)  # no replica asked
        put(local_only, thread, first, 1)
        rs.replicas[0].pause()
        try:
            with pytest.raises(ReplicationTimeout) as info:
                put(saver, thread, first, 2)
            assert info.value.local_fsynced is True and info.value.confirmed == 0
            put(local_only, thread, first, 3)  # the primary's own fsync needs no replica
        finally:
            rs.replicas[0].resume()
    with ReplicaSet(tmp_path / "noaof", replicas=1, appendonly=False) as rs:
        saver = ValkeySaver(client_from_url(rs.url), wait_aof=True)
        with pytest.raises(BackendError, match=r"WAITAOF .* write itself was applied"):
            put(saver, thread_id())


async def test_async_classes_wait(replica_set: ReplicaSet) -> None:
    primary = replica_set.primary.client()
    client = async_client_from_url(replica_set.url)
    try:
        saver = AsyncValkeySaver(client, **WAIT)
        store = AsyncValkeyStore(client, **WAIT)
        before = calls(primary, "wait")
        cp, meta, versions = checkpoint(saver, 0)
        out = await saver.aput(cfg(thread_id()), cp, meta, versions)
        await saver.aput_writes(out, [("a", 1)], "task")
        await store.aput(("a",), "k", {"v": 1})
        waited = calls(primary, "wait")
        assert waited - before >= 3  # (more on a first call: NOSCRIPT, then EVAL)
        assert (await store.aget(("a",), "k")).value == {"v": 1}
        assert (await saver.aget_tuple(out)) is not None
        assert calls(primary, "wait") == waited
    finally:
        await client.aclose()


def test_url_parameters_reach_every_class(replica_set: ReplicaSet) -> None:
    url = f"{replica_set.url}?wait_replicas=1&wait_timeout_ms=2000&wait_aof=0"
    want = WaitPolicy(1, 2000, False)
    assert url_wait_options(url) == {
        "wait_replicas": 1,
        "wait_timeout_ms": 2000,
        "wait_aof": False,
    }
    with ValkeySaver.from_conn_string(url) as saver:
        assert saver.log.executor.wait == want
        put(saver, thread_id())
    # a client made from the URL carries its options to any class built on it
    assert ValkeySaver(client_from_url(url)).log.executor.wait == want
    assert ValkeyStore(client_from_url(url), wait_replicas=2)._log.executor.wait == WaitPolicy(
        2, 2000, False
    )
    with AgentCoreValkeySaver.from_conn_string(url, wait_timeout_ms=250) as saver:
        assert saver.log.executor.wait == WaitPolicy(1, 250, False)  # the argument wins
    with ValkeyStore.from_conn_string(url) as store:
        assert store._log.executor.wait == want
        store.put(("a",), "k", {"v": 1})
    with ValkeyCache.from_conn_string(url) as cache:
        assert cache._executor().wait == want
        cache.set({"k": ("v", None)})

        async def in_loop() -> None:
            assert cache._aexecutor().wait == want
            assert await cache.aget(["k"]) == {"k": "v"}
            await cache.aclose()  # this loop's connections, before the loop ends

        asyncio.run(in_loop())
    with ValkeyCache.from_conn_string(url, wait_replicas=0) as cache:
        assert cache._executor().wait is None  # nothing to wait for

    async def async_classes() -> None:
        async with AsyncValkeySaver.from_conn_string(url) as asaver:
            assert asaver.log.executor.wait == want
        async with AsyncValkeyStore.from_conn_string(url) as astore:
            assert astore._log.executor.wait == want

    asyncio.run(async_classes())


def test_bad_wait_settings_are_config_errors(replica_set: ReplicaSet) -> None:
    client = client_from_url(replica_set.url, socket_timeout=1)
    with pytest.raises(ConfigError, match="wait_replicas"):
        ValkeySaver(client, wait_replicas=-1)
    with pytest.raises(ConfigError, match="wait_timeout_ms"):
        ValkeySaver(client, wait_replicas=1, wait_timeout_ms=0)
    with pytest.raises(ConfigError, match="socket_timeout"):
        ValkeySaver(client, wait_replicas=1, wait_timeout_ms=900)
    with pytest.raises(ConfigError, match="wait_replicas"):
        url_wait_options(f"{replica_set.url}?wait_replicas=one")
    with pytest.raises(ConfigError, match="wait_aof"):
        url_wait_options(f"{replica_set.url}?wait_aof=maybe")
    assert WaitPolicy.of(0, 1000, False) is None


def test_only_writes_wait() -> None:
    from streamstate.eventlog.valkey._core import Command, ScriptCall
    from streamstate.projections.checkpoints import GET_TUPLE, LIST_PAGE, THREAD_WRITE

    assert waits(ScriptCall(THREAD_WRITE, ["k"]))
    assert not waits(ScriptCall(GET_TUPLE, ["k"])) and not waits(ScriptCall(LIST_PAGE, ["k"]))
    assert waits(Command(("DEL", "k"))) and waits(Command(("SADD", "s", "m")))
    assert not waits(Command(("XRANGE", "k", "-", "+"))) and not waits(Command(("MGET", "a")))
