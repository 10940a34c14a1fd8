"""Replica-confirmed writes on a real Valkey Cluster: the WAIT goes to the node that took
the write, and a primary killed under load loses no acknowledged checkpoint or write."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import valkey

from streamstate import AsyncValkeySaver, ValkeyCache, ValkeySaver, ValkeyStore
from streamstate.connection import async_client_from_url, client_from_url
from streamstate.errors import ReplicationTimeout
from streamstate.eventlog.valkey import RetryPolicy
from streamstate.testing.cluster import LocalCluster
from tests.replication._load import Load
from tests.replication._ops import aput, calls, cfg, put, thread_id

WAIT = {"wait_replicas": 1, "wait_timeout_ms": 500}  # the failover load: timeouts expected
CONFIRMED = {"wait_replicas": 1, "wait_timeout_ms": 2000}  # where a write must be confirmed


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("cluster"), primaries=3, replicas=1).start()
    yield c
    c.stop()


def _owner(probe: Any, thread: str) -> int:
    key = ValkeySaver(probe).log.keyspace.session(("t", thread)).log
    return int(probe.get_node_from_key(key).port)


def _waits(cluster: LocalCluster) -> dict[int, int]:
    return {p: calls(valkey.Valkey(port=p, decode_responses=True), "wait") for p in cluster.ports}


def test_the_wait_runs_on_the_node_that_took_the_write(cluster: LocalCluster) -> None:
    probe = client_from_url(cluster.url)
    saver = ValkeySaver(client_from_url(cluster.url), **CONFIRMED)
    thread = thread_id()
    first = put(saver, thread)  # registers the thread (another shard), loads the scripts
    owner = _owner(probe, thread)
    before = _waits(cluster)
    for i in range(1, 4):
        out = put(saver, thread, first, i)
        saver.put_writes(out, [("a", i)], f"task-{i}")
    assert saver.get_tuple(cfg(thread)) is not None
    after = _waits(cluster)
    delta = {p: after[p] - before[p] for p in after if after[p] != before[p]}
    assert delta == {owner: 6}

    async def main() -> None:
        client = async_client_from_url(cluster.url)
        try:
            asaver = AsyncValkeySaver(client, **CONFIRMED)
            athread = thread_id()
            out = await aput(asaver, athread)
            await asaver.aput_writes(out, [("a", 1)], "t")
            assert (await asaver.aget_tuple(out)).pending_writes == [("t", "a", 1)]
        finally:
            await client.aclose()

    asyncio.run(main())
    store = ValkeyStore(client_from_url(cluster.url), **CONFIRMED)
    store.put(("a", thread), "k", {"v": 1})
    assert store.get(("a", thread), "k").value == {"v": 1}
    cache: ValkeyCache[Any] = ValkeyCache(
        client_from_url(cluster.url), prefix=f"c{uuid.uuid4().hex[:6]}:", **CONFIRMED
    )
    spread = {((f"ns{i}",), f"k{i}"): (i, None) for i in range(6)}  # several slots
    cache.set(spread)
    assert cache.get(list(spread)) == {k: v for k, (v, _) in spread.items()}
    cache.clear()


def test_a_paused_replica_makes_its_shard_refuse_to_acknowledge(cluster: LocalCluster) -> None:
    import os
    import signal

    probe = client_from_url(cluster.url)
    saver = ValkeySaver(client_from_url(cluster.url), wait_replicas=1, wait_timeout_ms=1000)
    thread = thread_id()
    first = put(saver, thread)
    owner = _owner(probe, thread)
    replica_port = next(
        p
        for p in cluster.live_ports()
        if valkey.Valkey(port=p, decode_responses=True).info("replication").get("master_port")
        == owner
    )
    pid = cluster.procs[replica_port].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(ReplicationTimeout):
            put(saver, thread, first, 1)
    finally:
        os.kill(pid, signal.SIGCONT)
    cluster.wait_ok()
    put(saver, thread, first, 2)


def _failover_under_load(tmp: Path) -> tuple[int, int]:
    patient = RetryPolicy(attempts=60, budget=30, initial_wait=0.05, max_wait=0.5)
    with LocalCluster(tmp, primaries=3, replicas=1, node_timeout_ms=1000) as cluster:
        url = cluster.url

        def make_saver() -> ValkeySaver:
            return ValkeySaver(client_from_url(url, socket_timeout=2), retry=patient, **WAIT)

        async def make_async() -> tuple[Any, Any]:
            client = async_client_from_url(url, socket_timeout=2)
            return AsyncValkeySaver(client, retry=patient, **WAIT), client.aclose

        probe = client_from_url(url)
        with Load(make_saver, make_async, threads=4, tasks=1) as load:
            load.wait_for(20)
            victim = _owner(probe, load.threads[0])
            hit = [t for t in load.threads if _owner(probe, t) == victim]
            cluster.kill(victim)
            cluster.wait_ok(60)  # its replica took over
            cluster.restart(victim)  # back as the new primary's replica
            cluster.wait_ok(60)
            load.wait_for(10, threads=hit)  # the writers of the failed shard carry on
        live = client_from_url(f"valkey://127.0.0.1:{cluster.live_ports()[0]}/0?cluster=true")
        checkpoints, writes = load.verify(ValkeySaver(live))
        print(f"acknowledged: {checkpoints} checkpoints, {writes} writes; {load.summary()}")
        return checkpoints, writes


@pytest.mark.slow
@pytest.mark.parametrize("run", range(20))
def test_cluster_failover_under_load_loses_nothing_acknowledged(tmp_path: Path, run: int) -> None:
    checkpoints, writes = _failover_under_load(tmp_path)
    assert checkpoints > 0 and writes > 0
