"""Every saver on a real Valkey Cluster: conformance, one shard per session, the round-trip
budget, a primary killed mid-load, and a slot migrated mid-load."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
import valkey
import valkey.asyncio.cluster
import valkey.cluster
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.conformance import checkpointer_test, validate

from streamstate import AsyncValkeySaver, ValkeySaver
from streamstate.connection import async_client_from_url, client_from_url
from streamstate.eventlog.valkey import RetryPolicy
from streamstate.projections.checkpoints import (
    GET_TUPLE,
    LIST_PAGE,
    REGISTER,
    THREAD_DELETE,
    THREAD_WRITE,
    thread_keys,
)
from streamstate.testing.cluster import LocalCluster
from tests.adapters.test_conformance import EXPECTED_TESTS, SyncFacade


def _cfg(thread: str, cid: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if cid:
        c["checkpoint_id"] = cid
    return {"configurable": c}


def _put(
    saver: Any, thread: str, parent: dict[str, Any] | None = None, i: int = 0
) -> dict[str, Any]:
    cp = empty_checkpoint()
    version = saver.get_next_version(None, None)
    cp["channel_values"] = {"n": i}
    cp["channel_versions"] = {"n": version}
    return saver.put(parent or _cfg(thread), cp, {"source": "loop", "step": i}, {"n": version})


@pytest.mark.parametrize("mode", ["async", "sync-through-async", "sync"])
async def test_conformance_on_the_cluster(cluster: LocalCluster, mode: str) -> None:
    prefix = f"c{uuid.uuid4().hex[:6]}"

    async def factory():
        if mode == "async":
            client = async_client_from_url(cluster.url)
            yield AsyncValkeySaver(client, prefix=prefix)
            await client.aclose()
        else:
            client = client_from_url(cluster.url)
            saver = ValkeySaver(client, prefix=prefix)
            yield SyncFacade(saver) if mode == "sync" else saver
            client.close()

    report = await validate(checkpointer_test(name=f"cluster-{mode}")(factory))
    failures = {c: r.failures for c, r in report.results.items() if r.failures}
    assert not failures, failures
    assert sum(r.tests_passed for r in report.results.values()) == EXPECTED_TESTS


def test_every_key_of_a_thread_is_on_one_shard(cluster: LocalCluster) -> None:
    client = client_from_url(cluster.url)
    saver = ValkeySaver(client)
    thread = "shard/{evil}*:" + uuid.uuid4().hex[:6]
    config = _put(saver, thread)
    saver.put_writes(config, [("a", 1)], "task")
    keys = saver.log.keyspace.session(("t", thread))
    slots = {client.keyslot(k) for k in thread_keys(keys)}
    assert len(slots) == 1
    for key in thread_keys(keys):
        assert client.exists(key) == 1


def _cluster_calls(cluster: LocalCluster) -> dict[str, int]:
    total: dict[str, int] = {}
    for port in cluster.primary_ports():
        stats = valkey.Valkey(port=port).info("commandstats")
        for name, v in stats.items():
            total[name.removeprefix("cmdstat_")] = total.get(
                name.removeprefix("cmdstat_"), 0
            ) + int(v["calls"])
    return total


def test_round_trip_budget_on_the_cluster(cluster: LocalCluster) -> None:
    from tests.conftest import _script_inner_commands

    client = client_from_url(cluster.url)
    saver = ValkeySaver(client)
    thread = f"rt-{uuid.uuid4().hex[:6]}"
    first = _put(saver, thread)  # the first put also registers the thread (another shard)
    saver.put_writes(first, [("x", 1)], "warm")
    saver.get_tuple(_cfg(thread))
    list(saver.list(_cfg(thread), limit=5))
    for script in (THREAD_WRITE, THREAD_DELETE, GET_TUPLE, LIST_PAGE, REGISTER):
        client.script_load(script.source)  # on every primary, whatever ran before this test
    inner = _script_inner_commands()
    ops = {
        "put": lambda: _put(saver, thread, first, 1),
        "put_writes": lambda: saver.put_writes(first, [("a", 1), ("b", 2)], "t1"),
        "get_tuple": lambda: saver.get_tuple(_cfg(thread)),
        "list page": lambda: list(saver.list(_cfg(thread), limit=5)),
        "delete_thread": lambda: saver.delete_thread(thread),
    }
    for name, op in ops.items():
        before = _cluster_calls(cluster)
        op()
        after = _cluster_calls(cluster)
        delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        # INFO and CLIENT SETINFO come from reading the counters; CLUSTER * is topology;
        # REPLCONF is a replica's once-a-second acknowledgement to its primary
        sent = sum(
            v
            for k, v in delta.items()
            if k not in inner
            and k not in ("info", "replconf")
            and not k.startswith(("cluster", "client|"))
        )
        assert sent == 1, (name, delta, sorted(set(delta) - inner))


class Load:
    """Writers putting checkpoints to several threads, recording what was acknowledged."""

    def __init__(self, make_saver: Any, threads: int | list[str] = 4) -> None:
        self.make_saver = make_saver
        self.threads = (
            threads
            if isinstance(threads, list)
            else [f"load-{uuid.uuid4().hex[:6]}-{i}" for i in range(threads)]
        )
        self.acked: dict[str, list[str]] = {t: [] for t in self.threads}
        self.errors: list[BaseException] = []
        self.stop = threading.Event()

    def _run(self, thread: str) -> None:
        saver = self.make_saver()
        parent = None
        i = 0
        while not self.stop.is_set():
            try:
                parent = _put(saver, thread, parent, i)
                saver.put_writes(parent, [("w", i)], f"task-{i}")
            except Exception as exc:  # the load reports, the test decides
                self.errors.append(exc)
                time.sleep(0.05)
                continue
            self.acked[thread].append(parent["configurable"]["checkpoint_id"])
            i += 1

    def __enter__(self) -> Load:
        self.workers = [threading.Thread(target=self._run, args=(t,)) for t in self.threads]
        for w in self.workers:
            w.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for w in self.workers:
            w.join(30)

    def verify(self, saver: ValkeySaver) -> int:
        total = 0
        for thread, ids in self.acked.items():
            stored = [t.config["configurable"]["checkpoint_id"] for t in saver.list(_cfg(thread))]
            assert set(ids) <= set(stored), f"lost acknowledged checkpoints in {thread}"
            # no duplicates in the log: one checkpoint event per stored id
            entries = saver.log.read(("t", thread))
            cps = [
                e.event.checkpoint_id for e in entries if type(e.event).__name__ == "CheckpointPut"
            ]
            assert len(cps) == len(set(cps))
            total += len(ids)
        return total


def _patient() -> RetryPolicy:
    return RetryPolicy(attempts=60, budget=30, initial_wait=0.05, max_wait=0.5)


def _threads_on_every_primary(url: str, per_primary: int = 2) -> dict[str, int]:
    """Thread ids, ``per_primary`` on each primary of the cluster: thread -> its port."""
    probe = client_from_url(url)
    try:
        keyspace = ValkeySaver(probe).log.keyspace
        primaries = {node.port for node in probe.get_primaries()}
        placed: dict[str, int] = {}
        while any(sum(p == port for p in placed.values()) < per_primary for port in primaries):
            thread = f"load-{uuid.uuid4().hex[:8]}"
            port = probe.get_node_from_key(keyspace.session(("t", thread)).log).port
            if sum(p == port for p in placed.values()) < per_primary:
                placed[thread] = port
        return placed
    finally:
        probe.close()


def test_primary_killed_during_a_load_fails_over(tmp_path) -> None:
    with LocalCluster(tmp_path, primaries=3, replicas=1, node_timeout_ms=1000) as cluster:
        url = cluster.url

        def make() -> ValkeySaver:
            # Valkey replicates asynchronously: only writes a replica confirmed survive
            # the failover for certain (without the wait, 1 run in 4 lost some)
            client = client_from_url(url, socket_timeout=2)
            return ValkeySaver(client, retry=_patient(), wait_replicas=1)

        # threads on every shard: the killed primary's replica takes over with no replica
        # of its own, so wait_replicas=1 cannot confirm its threads' writes any more; the
        # other shards' threads must carry on (with random ids, all of them landed on the
        # killed shard about 1 run in 80)
        placed = _threads_on_every_primary(url)
        with Load(make, threads=list(placed)) as load:
            time.sleep(1.0)
            victim = cluster.primary_ports()[0]
            cluster.kill(victim)
            time.sleep(1.0)
            cluster.wait_ok(60)
            time.sleep(1.5)
            others = [t for t, port in placed.items() if port != victim]
            assert len(others) == 4
            before = sum(len(load.acked[t]) for t in others)
            time.sleep(1.5)
            after = sum(len(load.acked[t]) for t in others)
            assert after > before, "writers on the shards that kept a replica did not carry on"
        live = client_from_url(f"valkey://127.0.0.1:{cluster.live_ports()[0]}/0?cluster=true")
        assert load.verify(ValkeySaver(live)) > 0


def test_slot_migrated_during_a_load_loses_nothing(tmp_path) -> None:
    with LocalCluster(tmp_path, primaries=3, replicas=0) as cluster:
        url = cluster.url

        def make() -> ValkeySaver:
            return ValkeySaver(client_from_url(url), retry=_patient())

        probe = client_from_url(url)
        with Load(make, threads=3) as load:
            time.sleep(0.5)
            for thread in load.threads:
                key = ValkeySaver(probe).log.keyspace.session(("t", thread)).log
                _migrate_slot(probe, probe.keyslot(key), cluster)
            time.sleep(1.0)
        assert load.verify(ValkeySaver(client_from_url(url))) > 0


def _migrate_slot(client: valkey.cluster.ValkeyCluster, slot: int, cluster: LocalCluster) -> None:
    """Move one slot to another primary key by key (MIGRATING/IMPORTING, then MIGRATE)."""
    nodes = {p: valkey.Valkey(port=p) for p in cluster.primary_ports()}
    ids = {p: n.cluster("myid") for p, n in nodes.items()}
    ids = {p: (i.decode() if isinstance(i, bytes) else i) for p, i in ids.items()}
    source = next(
        p
        for p, n in nodes.items()
        if n.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) > 0 or _owns(n, slot, ids[p])
    )
    target = next(p for p in nodes if p != source)
    nodes[target].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
    nodes[source].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
    while keys := nodes[source].execute_command("CLUSTER", "GETKEYSINSLOT", slot, 50):
        nodes[source].execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        time.sleep(0.05)  # let writers hit the half-migrated slot (ASK / TRYAGAIN)
    for node in nodes.values():
        node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])


def _owns(node: valkey.Valkey, slot: int, node_id: str) -> bool:
    for start, end, primary, *_ in node.execute_command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            pid = primary[2].decode() if isinstance(primary[2], bytes) else primary[2]
            return pid == node_id
    return False


def test_a_run_deleted_and_reused_is_registered_again(cluster: LocalCluster) -> None:
    """On a cluster the run registry is written outside the put's script, once per
    process; deleting the run must make the next put of that run register it again,
    or a second delete_for_runs would miss the thread."""
    saver = ValkeySaver(client_from_url(cluster.url))
    thread, run = f"rerun-{uuid.uuid4().hex[:6]}", f"run-{uuid.uuid4().hex[:6]}"

    def put(parent: dict[str, Any] | None, i: int) -> dict[str, Any]:
        cp = empty_checkpoint()
        version = saver.get_next_version(None, None)
        cp["channel_values"] = {"n": i}
        cp["channel_versions"] = {"n": version}
        return saver.put(parent or _cfg(thread), cp, {"step": i, "run_id": run}, {"n": version})

    put(None, 0)
    saver.delete_for_runs([run])
    assert saver.get_tuple(_cfg(thread)) is None
    put(None, 1)
    saver.delete_for_runs([run])
    assert saver.get_tuple(_cfg(thread)) is None
