"""Missing keys never give a silent wrong answer, and a TTL frees everything.

A thread is three keys (log, views hash ``v``, index ``z``). Eviction or a stray DEL
can remove any one of them. Losing a view is repaired from the log on the next read or
write; losing the log (or an entry a view points at) raises ``ThreadDamaged`` naming the
thread. Nothing answers ``None``, an empty list or a checkpoint missing values.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import valkey
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.types import Command

from streamstate import AgentCoreValkeySaver, AsyncValkeySaver, ValkeySaver
from streamstate.errors import ThreadDamaged
from streamstate.projections.checkpoints import thread_keys
from streamstate.server import EmbeddedServer
from tests._short_ttl import Window
from tests.adapters.test_saver_graphs import EXPECTED_ITEMS, build_graph


def _graph_thread(saver: Any) -> tuple[Any, dict[str, Any]]:
    graph = build_graph(saver)
    config = {"configurable": {"thread_id": f"evict-{uuid.uuid4().hex[:8]}"}}
    graph.invoke({"items": [], "answer": ""}, config)  # stops at the interrupt
    return graph, config


def _everything(saver: ValkeySaver, config: dict[str, Any]) -> dict[str, Any]:
    tuples = list(saver.list(config))
    return {
        "latest": saver.get_tuple(config),
        "list": tuples,
        "by_id": [saver.get_tuple(t.config) for t in tuples],
        "subgraph": list(saver.list({"configurable": {**config["configurable"],
                                                     "checkpoint_ns": tuples[-1].config[
                                                         "configurable"]["checkpoint_ns"]}})),
    }  # fmt: skip


@pytest.mark.parametrize("lost", ["v", "z"])
def test_a_lost_view_is_repaired_from_the_log(valkey_url: str, lost: str) -> None:
    saver = ValkeySaver(valkey.Valkey.from_url(valkey_url))
    _graph, config = _graph_thread(saver)
    before = _everything(saver, config)
    assert any(t.pending_writes for t in before["list"])  # the interrupt is pending
    keys = saver.log.keyspace.session(("t", config["configurable"]["thread_id"]))
    saver.client.delete(keys.view(lost))
    assert _everything(saver, config) == before
    assert saver.client.exists(*thread_keys(keys)) == 3


@pytest.mark.parametrize("lost", ["v", "z"])
def test_a_put_after_a_lost_view_keeps_every_channel(valkey_url: str, lost: str) -> None:
    """The next step stores only changed channels: it must not run on a half thread."""
    saver = ValkeySaver(valkey.Valkey.from_url(valkey_url))
    graph, config = _graph_thread(saver)
    keys = saver.log.keyspace.session(("t", config["configurable"]["thread_id"]))
    saver.client.delete(keys.view(lost))
    final = graph.invoke(Command(resume="yes"), config)
    assert final["items"] == EXPECTED_ITEMS
    assert graph.get_state(config).values["items"] == EXPECTED_ITEMS


async def test_the_async_saver_repairs_too(valkey_url: str) -> None:
    import valkey.asyncio

    client = valkey.asyncio.Valkey.from_url(valkey_url)
    saver = AsyncValkeySaver(client)
    graph = build_graph(saver)
    config = {"configurable": {"thread_id": f"evict-a-{uuid.uuid4().hex[:8]}"}}
    await graph.ainvoke({"items": [], "answer": ""}, config)
    before = await saver.aget_tuple(config)
    listed = [t async for t in saver.alist(config)]
    keys = saver.log.keyspace.session(("t", config["configurable"]["thread_id"]))
    await client.delete(keys.view("v"))
    assert await saver.aget_tuple(config) == before
    await client.delete(keys.view("z"))
    assert [t async for t in saver.alist(config)] == listed
    await client.aclose()


def test_a_lost_log_is_a_clear_error_never_a_miss(valkey_url: str) -> None:
    saver = ValkeySaver(valkey.Valkey.from_url(valkey_url))
    graph, config = _graph_thread(saver)
    thread = config["configurable"]["thread_id"]
    tuples = list(saver.list(config))
    keys = saver.log.keyspace.session(("t", thread))
    saver.client.delete(keys.log)
    for read in (
        lambda: saver.get_tuple(config),
        lambda: saver.get_tuple(tuples[-1].config),
        lambda: list(saver.list(config)),
        lambda: saver.get_delta_channel_history(config=config, channels=["items"]),
        lambda: graph.invoke(Command(resume="yes"), config),
    ):
        with pytest.raises(ThreadDamaged, match=thread):
            read()
    assert saver.client.exists(keys.log) == 0  # nothing was written on a broken thread
    saver.delete_thread(thread)  # the way out: delete, then start again
    assert saver.get_tuple(config) is None


def test_a_trimmed_log_entry_is_a_clear_error(valkey_url: str) -> None:
    saver = ValkeySaver(valkey.Valkey.from_url(valkey_url))
    _graph, config = _graph_thread(saver)
    keys = saver.log.keyspace.session(("t", config["configurable"]["thread_id"]))
    saver.client.xtrim(keys.log, maxlen=1, approximate=False)
    with pytest.raises(ThreadDamaged, match="gone"):
        list(saver.list(config))


def _mirror_write(saver: ValkeySaver, thread: str, n: int) -> list[dict[str, Any]]:
    configs = []
    parent: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    version = None
    for i in range(n):
        cp = empty_checkpoint()
        version = saver.get_next_version(version, None)
        cp["channel_values"] = {"text": f"{thread}-{i}-" + "x" * 300, "i": i}
        cp["channel_versions"] = {"text": version, "i": version}
        try:
            parent = saver.put(parent, cp, {"step": i}, {"text": version, "i": version})
            saver.put_writes(parent, [("out", i)], f"task-{i}")
        except ThreadDamaged as exc:  # eviction took the log mid-thread: a clear refusal
            assert thread in str(exc)
            break
        configs.append(parent)
    return configs


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru"])
def test_a_real_eviction_run_gives_right_answers_or_clear_errors(
    tmp_path: Path, policy: str
) -> None:
    """Fill a small server past maxmemory, then read every thread back: each read is the
    state written, a ThreadDamaged error, or None for a thread none of whose keys is left."""
    config = {"maxmemory": "3mb", "maxmemory-policy": policy}
    with EmbeddedServer(tmp_path / "v", config=config) as server:
        client = valkey.Valkey.from_url(server.url)
        saver = ValkeySaver(client, ttl=3600)
        threads = {}
        for t in range(300):
            thread = f"fill-{t}"
            threads[thread] = _mirror_write(saver, thread, 4)
        evicted = int(client.info("stats")["evicted_keys"])
        assert evicted > 0, "the run never reached maxmemory"
        outcomes = {"right": 0, "repaired": 0, "damaged": 0, "gone": 0}
        for thread, configs in threads.items():
            if not configs:
                continue
            keys = saver.log.keyspace.session(("t", thread))
            present = client.exists(*thread_keys(keys))
            try:
                got = saver.get_tuple(configs[-1])
            except ThreadDamaged as exc:
                assert thread in str(exc)
                outcomes["damaged"] += 1
                continue
            if got is None:
                assert client.exists(keys.log) == 0, f"{thread}: None while its log exists"
                outcomes["gone"] += 1
                continue
            i = len(configs) - 1
            assert got.checkpoint["channel_values"] == {
                "text": f"{thread}-{i}-" + "x" * 300,
                "i": i,
            }
            assert got.pending_writes == [(f"task-{i}", "out", i)]
            try:  # the repairs write too, so eviction can strike between two reads
                history = list(saver.list({"configurable": {"thread_id": thread}}))
            except ThreadDamaged as exc:
                assert thread in str(exc)
                outcomes["damaged"] += 1
                continue
            assert [t.config for t in history] == list(reversed(configs))
            outcomes["right" if present == 3 else "repaired"] += 1
        assert outcomes["right"] + outcomes["repaired"] > 0, outcomes
        print(policy, "evicted keys", evicted, outcomes)


def _empty_within(client: valkey.Valkey, seconds: float) -> bool:
    """Whether the server holds no key within ``seconds`` (keys expiring meanwhile)."""
    deadline = time.monotonic() + seconds
    while client.dbsize() and time.monotonic() < deadline:
        time.sleep(0.2)
    return client.dbsize() == 0


def test_ttl_frees_every_key_and_registry(private_server: EmbeddedServer, count_commands) -> None:
    client = valkey.Valkey.from_url(private_server.url)
    # a loaded machine may take longer than a second to write them all: then, once the
    # first attempt's keys have expired, again with a longer TTL
    for ttl in (1.0, 4.0):
        assert _empty_within(client, 20), sorted(client.scan_iter(count=1000))[:10]
        saver = ValkeySaver(client, ttl=ttl)
        actors = AgentCoreValkeySaver(client, ttl=ttl)
        window = Window(ttl)
        for t in range(1000):
            thread = f"ttl-{ttl}-{t}"
            cfg: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
            meta = {"run_id": f"run-{t % 10}"}
            if t % 4 == 0:
                cfg["configurable"]["actor_id"] = f"actor-{t % 3}"
                config = actors.put(cfg, empty_checkpoint(), meta, {})
                actors.put_writes(config, [("a", t)], "task")
            else:
                config = saver.put(cfg, empty_checkpoint(), meta, {})
                saver.put_writes(config, [("a", t)], "task")
        written = client.dbsize()
        if window.in_time():
            break
    assert written > 3000
    assert all(client.pttl(k) != -1 for k in client.scan_iter(count=1000))  # nothing forever
    assert _empty_within(client, 20), sorted(client.scan_iter(count=1000))[:10]
    assert list(saver.list(None)) == []  # loads the scripts
    with count_commands(client) as counted:
        assert list(saver.list(None)) == []
    assert counted.round_trips <= 3, counted.delta


def test_refresh_on_read_keeps_a_read_thread_alive(valkey_url: str) -> None:
    client = valkey.Valkey.from_url(valkey_url)
    fresh = ValkeySaver(client, ttl=1.5, refresh_on_read=True)
    plain = ValkeySaver(client, ttl=1.5)
    configs = {}
    for name, saver in (("fresh", fresh), ("plain", plain)):
        cfg = {"configurable": {"thread_id": f"{name}-{uuid.uuid4().hex[:6]}"}}
        configs[name] = saver.put(cfg, empty_checkpoint(), {}, {})
    for _ in range(3):
        time.sleep(0.8)
        assert fresh.get_tuple(configs["fresh"]) is not None
        plain.get_tuple(configs["plain"])
    assert fresh.get_tuple(configs["fresh"]) is not None  # 2.4 s after its only write
    assert plain.get_tuple(configs["plain"]) is None
    registry = client.zrange("ss:threads", 0, -1)
    thread = configs["fresh"]["configurable"]["thread_id"]
    assert f"t,{thread}".encode() in registry


def test_registries_outlive_a_thread_that_keeps_writing(valkey_url: str) -> None:
    """With a TTL, a thread written to every 0.4 s lives on past its TTL, and so do its
    registry entries, its older runs' included: delete_for_runs still finds it."""
    client = valkey.Valkey.from_url(valkey_url)
    saver = ValkeySaver(client, ttl=1.0)
    thread = f"keep-{uuid.uuid4().hex[:6]}"
    parent: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    parent = saver.put(parent, empty_checkpoint(), {"run_id": "old-run", "step": 0}, {})
    for step in range(1, 8):  # 2.8 s: almost three TTLs
        time.sleep(0.4)
        parent = saver.put(parent, empty_checkpoint(), {"run_id": "new-run", "step": step}, {})
    assert client.zscore("ss:runs:old-run", f"t,{thread}") is not None
    assert client.zscore("ss:threads", f"t,{thread}") is not None
    every = {"configurable": {"thread_id": thread}}
    assert [t.metadata["step"] for t in saver.list(every)][-1] == 0
    saver.delete_for_runs(["old-run"])
    assert [t.metadata["step"] for t in saver.list(every)] == [7, 6, 5, 4, 3, 2, 1]
