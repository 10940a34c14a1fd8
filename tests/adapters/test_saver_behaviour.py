"""Checkpointer properties beyond the conformance suite: round-trip budget, TTL, errors,
channel de-duplication, server-side filters, the delta-history fast path, rebuild."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import pytest
import valkey
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.types import Command

from streamstate import ValkeySaver
from streamstate.adapters._checkpoints import Thread
from streamstate.errors import BackendUnavailable, ScriptError
from streamstate.eventlog._drive import complete
from streamstate.eventlog.keys import Keyspace
from streamstate.eventlog.valkey import RetryPolicy
from streamstate.projections.checkpoints import INLINE_MAX, decode_writes_record, thread_keys
from tests.adapters.test_saver_graphs import build_graph


def _cfg(thread: str, ns: str = "", cid: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
    if cid:
        c["checkpoint_id"] = cid
    return {"configurable": c}


def _put_chain(saver: ValkeySaver, thread: str, n: int, **meta: Any) -> list[dict[str, Any]]:
    """n checkpoints; channel "big" written once, "counter" every time."""
    configs = []
    parent = _cfg(thread)
    version = None
    for i in range(n):
        cp = empty_checkpoint()
        version = saver.get_next_version(version, None)
        cp["channel_values"] = {"big": "x" * 2000, "counter": i}
        big_version = (configs and configs[0]["big"]) or version
        cp["channel_versions"] = {"big": big_version, "counter": version}
        new_versions = {"counter": version} if i else {"big": version, "counter": version}
        parent = saver.put(parent, cp, {"source": "loop", "step": i, **meta}, new_versions)
        configs.append({"config": parent, "big": big_version})
    return [c["config"] for c in configs]


@pytest.fixture
def counted_saver(private_server):
    client = valkey.Valkey.from_url(private_server.url)
    yield ValkeySaver(client), client
    client.close()


def test_round_trip_budget(counted_saver, count_commands) -> None:
    saver, client = counted_saver
    thread = "rt"
    configs = _put_chain(saver, thread, 3)  # scripts are loaded by now
    saver.put_writes(configs[-1], [("a", 1)], "warmup")
    saver.delete_thread("warm")

    budget = {
        "put": lambda: _put_chain(saver, thread, 1),
        "put_writes": lambda: saver.put_writes(configs[-1], [("a", 1), ("b", 2), ("c", 3)], "t1"),
        "get_tuple latest": lambda: saver.get_tuple(_cfg(thread)),
        "get_tuple by id": lambda: saver.get_tuple(configs[0]),
        "list page": lambda: list(saver.list(_cfg(thread), limit=10)),
        "list filtered": lambda: list(saver.list(_cfg(thread), filter={"step": 1})),
        "delete_thread": lambda: saver.delete_thread(thread),
    }
    for name, op in budget.items():
        if name != "delete_thread":
            op()  # first use loads the script (EVALSHA misses once)
        with count_commands(client) as counted:
            op()
        assert counted.round_trips == 1, (name, counted.delta)


def test_put_writes_retry_appends_nothing(counted_saver) -> None:
    saver, client = counted_saver
    [config] = _put_chain(saver, "idem", 1)
    for _ in range(3):
        saver.put_writes(config, [("a", 1), ("b", 2)], "task")
        saver.put(_cfg("idem"), saver.get_tuple(config).checkpoint, {}, {})
    keys = saver.log.keyspace.session(("t", "idem"))
    assert client.xlen(keys.log) == 2  # one checkpoint, one writes event


def test_unchanged_channel_is_stored_once(valkey_url: str) -> None:
    saver = ValkeySaver(valkey.Valkey.from_url(valkey_url))
    thread = f"dedup-{uuid.uuid4().hex[:6]}"
    configs = _put_chain(saver, thread, 10)
    keys = saver.log.keyspace.session(("t", thread))
    fields = [f.decode() for f in saver.client.hkeys(keys.view("v")) if f.startswith(b"b:")]
    assert sum(":big:" in f for f in fields) == 1
    assert sum(":counter:" in f for f in fields) == 10
    for i, config in enumerate(configs):
        values = saver.get_tuple(config).checkpoint["channel_values"]
        assert values == {"big": "x" * 2000, "counter": i}


def test_filter_never_fetches_values_of_non_matching_checkpoints(
    counted_saver, count_commands
) -> None:
    saver, client = counted_saver
    _put_chain(saver, "flt", 20)
    with count_commands(client) as counted:
        found = list(saver.list(_cfg("flt"), filter={"step": 7}))
    assert [t.metadata["step"] for t in found] == [7]
    # one HMGET of channel values, for the one match (and no write fields exist)
    assert counted.delta.get("hmget", 0) == 1, counted.delta


def test_ttl_covers_all_keys_and_refreshes(valkey_url: str) -> None:
    client = valkey.Valkey.from_url(valkey_url)
    saver = ValkeySaver(client, ttl=1.5)
    thread = f"ttl-{uuid.uuid4().hex[:6]}"
    [config] = _put_chain(saver, thread, 1)
    saver.put_writes(config, [("a", 1)], "t")
    keys = saver.log.keyspace.session(("t", thread))
    existing = [k for k in client.keys(f"ss:{{{keys.tag}}}:*")]
    assert sorted(existing) == sorted(k.encode() for k in thread_keys(keys))
    for key in existing:
        assert 0 < client.pttl(key) <= 1500, key
    time.sleep(1.0)
    saver.put_writes(config, [("b", 2)], "t2")  # a write refreshes every key
    assert all(client.pttl(k) > 1000 for k in existing)
    time.sleep(1.7)
    assert saver.get_tuple(_cfg(thread)) is None
    assert client.exists(*existing) == 0


def test_server_errors_are_raised_not_reported_as_missing(valkey_url: str) -> None:
    client = valkey.Valkey.from_url(valkey_url)
    saver = ValkeySaver(client)
    thread = f"err-{uuid.uuid4().hex[:6]}"
    keys = saver.log.keyspace.session(("t", thread))
    _put_chain(saver, thread, 1)
    client.delete(keys.view("z"))
    client.set(keys.view("z"), "not a sorted set")
    with pytest.raises(ScriptError, match="WRONGTYPE"):
        saver.get_tuple(_cfg(thread))

    down = valkey.Valkey(port=1, socket_connect_timeout=0.1)
    quick = RetryPolicy(attempts=2, budget=1, initial_wait=0.01, max_wait=0.02)
    with pytest.raises(BackendUnavailable):
        ValkeySaver(down, retry=quick).get_tuple(_cfg("x"))


@pytest.mark.parametrize("view", ["log", "v", "z"])
def test_a_clobbered_key_fails_the_write_before_anything_is_written(
    valkey_url: str, view: str
) -> None:
    """Whatever key of a thread a foreign writer broke, put and put_writes refuse before
    anything is written."""
    client = valkey.Valkey.from_url(valkey_url)
    saver = ValkeySaver(client)
    thread = f"clob-{view}-{uuid.uuid4().hex[:6]}"
    first = _put_chain(saver, thread, 2)[-1]
    keys = saver.log.keyspace.session(("t", thread))
    key = keys.log if view == "log" else keys.view(view)
    entries = client.xrange(keys.log)
    client.delete(key)
    client.set(key, "not ours")
    cp = empty_checkpoint()
    cp["channel_values"] = {"counter": 99}
    cp["channel_versions"] = {"counter": saver.get_next_version(None, None)}
    put = lambda: saver.put(first, cp, {"step": 99}, dict(cp["channel_versions"]))  # noqa: E731
    writes = lambda: saver.put_writes(first, [("a", 1)], f"task-{uuid.uuid4().hex[:6]}")  # noqa: E731
    views = {k: client.dump(k) for k in (keys.view("v"), keys.view("z")) if k != key}
    for call in (put, writes):
        with pytest.raises(ScriptError, match="WRONGTYPE"):
            call()
        if view != "log":
            assert client.xrange(keys.log) == entries
        assert {k: client.dump(k) for k in views} == views
    assert client.get(key) == b"not ours"


def test_delta_history_matches_the_parent_walk(valkey_url: str, count_commands) -> None:
    client = valkey.Valkey.from_url(valkey_url)
    saver = ValkeySaver(client)
    graph = build_graph(saver)
    config = {"configurable": {"thread_id": f"delta-{uuid.uuid4().hex[:6]}"}}
    graph.invoke({"items": [], "answer": ""}, config)
    graph.invoke(Command(resume="yes"), config)
    channels = ["items", "answer", "branch:to:work", "__no_such__"]
    for state in graph.get_state_history(config):
        fast = saver.get_delta_channel_history(config=state.config, channels=channels)
        walk = BaseCheckpointSaver.get_delta_channel_history(
            saver, config=state.config, channels=channels
        )
        assert fast == walk
    with count_commands(client) as counted:
        saver.get_delta_channel_history(config=state.config, channels=channels)
    assert counted.scripts == 1


def test_rebuilt_views_equal_live_views(valkey_url: str) -> None:
    client = valkey.Valkey.from_url(valkey_url)
    saver = ValkeySaver(client)
    graph = build_graph(saver)
    thread = f"rebuild-{uuid.uuid4().hex[:6]}"
    config = {"configurable": {"thread_id": thread}}
    graph.invoke({"items": [], "answer": ""}, config)
    graph.invoke(Command(resume="yes"), config)
    graph.update_state(config, {"answer": "edited"})
    session = ("t", thread)
    live_keys = saver.log.keyspace.session(session)
    shadow = Keyspace("ss-verify")
    replayed = complete(saver._core.rebuild_flow(Thread(thread), shadow), saver.log.run)
    assert replayed == client.xlen(live_keys.log)
    live = saver.log.snapshot(thread_keys(live_keys)[1:])
    rebuilt = saver.log.snapshot(thread_keys(shadow.session(session))[1:])
    assert list(live.values()) == list(rebuilt.values())
    assert all(kind != "none" for kind, _ in live.values())


def test_prune_and_delete_for_runs_keep_the_log_replayable(valkey_url: str) -> None:
    client = valkey.Valkey.from_url(valkey_url)
    saver = ValkeySaver(client)
    thread = f"prune-{uuid.uuid4().hex[:6]}"
    configs = _put_chain(saver, thread, 5, run_id="run-a")
    saver.put_writes(configs[-1], [("w", 1)], "task")
    more = _put_chain(saver, thread + "-b", 3, run_id="run-b")
    saver.delete_for_runs(["run-a"])
    assert saver.get_tuple(_cfg(thread)) is None
    assert saver.get_tuple(more[-1]) is not None

    configs = _put_chain(saver, thread, 5)
    saver.put_writes(configs[-1], [("w", 1)], "task")
    saver.prune([thread])
    kept = list(saver.list(_cfg(thread)))
    assert [t.config for t in kept] == [configs[-1]]
    assert kept[0].checkpoint["channel_values"] == {"big": "x" * 2000, "counter": 4}
    assert kept[0].pending_writes == [("task", "w", 1)]
    session = ("t", thread)
    assert client.xlen(saver.log.keyspace.session(session).log) == 2
    shadow = Keyspace("ss-verify")
    complete(saver._core.rebuild_flow(Thread(thread), shadow), saver.log.run)
    live_keys = thread_keys(saver.log.keyspace.session(session))[1:]
    assert list(saver.log.snapshot(live_keys).values()) == list(
        saver.log.snapshot(thread_keys(shadow.session(session))[1:]).values()
    )


def test_views_point_into_the_log_for_large_values_and_inline_small_ones(
    valkey_url: str,
) -> None:
    client = valkey.Valkey.from_url(valkey_url)
    saver = ValkeySaver(client)
    thread = f"refs-{uuid.uuid4().hex[:6]}"
    big = os.urandom(INLINE_MAX).hex()  # incompressible: stored above INLINE_MAX
    cp = empty_checkpoint()
    v = saver.get_next_version(None, None)
    cp["channel_values"] = {"big": big, "small": 7}
    cp["channel_versions"] = {"big": v, "small": v}
    config = saver.put(_cfg(thread), cp, {}, {"big": v, "small": v})
    saver.put_writes(config, [("big", big), ("small", "=1|y|")], "task")

    keys = saver.log.keyspace.session(("t", thread))
    [cp_entry, writes_entry] = client.xrange(keys.log)
    stored = {  # (entry id, field) -> the value's bytes in the log
        (cp_entry[0].decode(), k.decode()): val for k, val in cp_entry[1].items()
    } | {(writes_entry[0].decode(), k.decode()): val for k, val in writes_entry[1].items()}
    view = client.hgetall(keys.view("v"))
    refs = [v for f, v in view.items() if f.startswith(b"b:")]
    pointers = [r for r in refs if not r.startswith(b"=")]
    inline = [r for r in refs if r.startswith(b"=")]
    assert len(pointers) == 1 and len(inline) == 1, refs  # "big" and "small"
    entry, field = pointers[0].decode().rsplit(".", 1)  # a pointer names a large value
    assert len(stored[entry, field]) > INLINE_MAX
    length, value = inline[0][1:].split(b"|", 1)  # inline: the log's bytes, length-prefixed
    assert int(length) == len(value) and value == stored[cp_entry[0].decode(), "1"]
    # the put_writes call is one record: the large value by field number, the small inline
    [record] = [v for f, v in view.items() if f.startswith(b"w:")]
    entry_id, task_path, items = decode_writes_record(record)
    assert entry_id == writes_entry[0].decode() and task_path == ""
    assert items == [(0, "big", 0), (1, "small", stored[entry_id, "1"])]
    assert len(stored[entry_id, "0"]) > INLINE_MAX >= len(stored[entry_id, "1"])

    got = saver.get_tuple(config)
    assert got is not None
    assert got.checkpoint["channel_values"] == {"big": big, "small": 7}
    assert sorted(got.pending_writes) == [("task", "big", big), ("task", "small", "=1|y|")]


def test_special_writes_overwrite_and_retries_append_nothing(counted_saver) -> None:
    saver, _client = counted_saver
    [config] = _put_chain(saver, "special", 1)
    log = ("t", "special")
    saver.put_writes(config, [("__interrupt__", {"q": 1})], "task")
    saver.put_writes(config, [("__interrupt__", {"q": 1})], "task")  # a retry
    assert saver.log.length(log) == 2
    saver.put_writes(config, [("__interrupt__", {"q": 2})], "task")  # a new value
    assert saver.log.length(log) == 3
    assert saver.get_tuple(config).pending_writes == [("task", "__interrupt__", {"q": 2})]
    saver.put_writes(config, [("a", 1)], "task")
    saver.put_writes(config, [("a", 2)], "task")  # ordinary: the first write wins
    assert ("task", "a", 1) in saver.get_tuple(config).pending_writes
