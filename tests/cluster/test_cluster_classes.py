"""The store, the cache and the CLI on a real Valkey Cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
from langgraph.graph import START, StateGraph
from langgraph.types import CachePolicy
from typing_extensions import TypedDict

from streamstate import ValkeyCache, ValkeySaver, ValkeyStore
from streamstate.connection import async_client_from_url, client_from_url
from streamstate.testing.cluster import LocalCluster


def test_store_on_the_cluster(cluster: LocalCluster) -> None:
    store = ValkeyStore(client_from_url(cluster.url))
    base = f"s{uuid.uuid4().hex[:6]}"
    store.put((base, "a"), "k1", {"n": 1})
    store.put((base, "b", "c"), "k2", {"n": 2})
    assert store.get((base, "a"), "k1").value == {"n": 1}
    assert [i.key for i in store.search((base,), filter={"n": {"$gte": 2}})] == ["k2"]
    assert store.list_namespaces(prefix=(base,)) == [(base, "a"), (base, "b", "c")]
    store.delete((base, "a"), "k1")
    assert store.get((base, "a"), "k1") is None


def test_cache_on_the_cluster_sync_and_async(cluster: LocalCluster) -> None:
    import asyncio

    prefix = f"c{uuid.uuid4().hex[:6]}:"
    cache = ValkeyCache(client_from_url(cluster.url), prefix=prefix)
    spread = {((f"ns{i}",), f"k{i}"): (f"v{i}", None) for i in range(12)}  # many slots
    cache.set(spread)
    assert cache.get(list(spread)) == {k: v for k, (v, _) in spread.items()}
    cache.clear([("ns0",), ("ns1",)])
    got = cache.get(list(spread))
    assert set(got) == set(list(spread)[2:])
    cache.set({(("ns1", "child"), "x"): (1, None), (("ns1",), "y"): (2, 0.05)})

    async def main() -> None:
        assert await cache.aget([(("ns1", "child"), "x")]) == {(("ns1", "child"), "x"): 1}
        await cache.aclear()
        assert await cache.aget(list(spread)) == {}

    asyncio.run(main())
    cache.close()

    # the same through a cluster URL and an asyncio cluster client
    with ValkeyCache.from_conn_string(cluster.url, prefix=prefix, ttl=60) as owned:
        owned.set({(("n",), "k"): ("v", None)})
        assert owned.get([(("n",), "k")]) == {(("n",), "k"): "v"}
        owned.clear()
    async_only = ValkeyCache(async_client_from_url(cluster.url), prefix=prefix)
    async_only.set({(("n",), "k"): ("v2", None)})
    assert async_only.get([(("n",), "k")]) == {(("n",), "k"): "v2"}


def test_node_cache_in_a_graph_on_the_cluster(cluster: LocalCluster) -> None:
    class S(TypedDict):
        x: int
        y: int

    calls: list[int] = []

    def slow(state: S) -> dict[str, Any]:
        calls.append(state["x"])
        return {"y": state["x"] * 2}

    g = StateGraph(S)
    g.add_node("slow", slow, cache_policy=CachePolicy(ttl=60))
    g.add_edge(START, "slow")
    cache = ValkeyCache(client_from_url(cluster.url), prefix=f"g{uuid.uuid4().hex[:6]}:")
    graph = g.compile(cache=cache, checkpointer=ValkeySaver(client_from_url(cluster.url)))
    for i in range(3):
        out = graph.invoke({"x": 5, "y": 0}, {"configurable": {"thread_id": f"t{i}"}})
        assert out["y"] == 10
    assert calls == [5]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamstate.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "STREAMSTATE_URL": ""},
    )


def test_cli_on_the_cluster(cluster: LocalCluster) -> None:
    saver = ValkeySaver(client_from_url(cluster.url))
    g = StateGraph(int)
    g.add_node("inc", lambda x: x + 1)
    g.add_edge(START, "inc")
    graph = g.compile(checkpointer=saver)
    thread = f"cli-{uuid.uuid4().hex[:6]}"
    for i in range(3):
        graph.invoke(i, {"configurable": {"thread_id": thread}})
    history = _cli("--url", cluster.url, "--json", "history", thread)
    assert history.returncode == 0, history.stderr
    rows = [json.loads(line) for line in history.stdout.splitlines() if line.strip()]
    flat = rows[0] if len(rows) == 1 and isinstance(rows[0], list) else rows
    assert len(flat) == len(list(saver.list({"configurable": {"thread_id": thread}})))
    latest = saver.get_tuple({"configurable": {"thread_id": thread}})
    replay = _cli(
        "--url",
        cluster.url,
        "replay",
        thread,
        "--to",
        latest.config["configurable"]["checkpoint_id"],
    )
    assert replay.returncode == 0, replay.stderr
    verify = _cli("--url", cluster.url, "rebuild", "--session", thread, "--verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    tail = _cli("--url", cluster.url, "--json", "tail", thread)
    assert tail.returncode == 0, tail.stderr
    assert len([line for line in tail.stdout.splitlines() if line.strip()]) >= 6


@pytest.fixture(autouse=True)
def _no_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMSTATE_URL", raising=False)
