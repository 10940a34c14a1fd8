"""Large fan-outs: thousands of writes, channels and Send()s in one step, atomically.

A server-side script passes at most ~8,000 values to one command, so events this large
are stored as several log entries appended by one script call (still one round trip,
still all or nothing).
"""

from __future__ import annotations

import operator
import uuid
from typing import Annotated, Any, TypedDict

import valkey
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from streamstate import ValkeySaver
from streamstate.adapters._checkpoints import Thread
from streamstate.eventlog._drive import complete
from streamstate.eventlog.events import BlobsPut, CheckpointPut, WritesPut
from streamstate.eventlog.keys import Keyspace
from streamstate.projections.checkpoints import MAX_VALUES_PER_ENTRY, thread_keys


def _cfg(thread: str, cid: str | None = None) -> Any:
    c: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if cid:
        c["checkpoint_id"] = cid
    return {"configurable": c}


def _rebuilt_equals_live(saver: ValkeySaver, thread: str) -> None:
    shadow = Keyspace("ss-verify")
    complete(saver._core.rebuild_flow(Thread(thread), shadow), saver.log.run)
    keys = saver.log.keyspace.session(("t", thread))
    live = saver.log.snapshot(thread_keys(keys)[1:])
    rebuilt = saver.log.snapshot(thread_keys(shadow.session(("t", thread)))[1:])
    saver.client.delete(*thread_keys(shadow.session(("t", thread)))[1:])
    assert list(live.values()) == list(rebuilt.values())


def test_put_writes_of_10000_writes_is_one_call_and_all_or_nothing(
    valkey_url: str, count_commands
) -> None:
    client = valkey.Valkey.from_url(valkey_url)
    saver = ValkeySaver(client)
    thread = f"fan-w-{uuid.uuid4().hex[:6]}"
    config = saver.put(_cfg(thread), empty_checkpoint(), {}, {})
    writes = [(f"ch{i % 7}", {"i": i}) for i in range(10_000)]
    with count_commands(client) as counted:
        saver.put_writes(config, writes, "task-big")
    assert counted.scripts == 1
    entries = saver.log.read(("t", thread))
    parts = [e.event for e in entries if isinstance(e.event, WritesPut)]
    assert len(parts) == -(-10_000 // MAX_VALUES_PER_ENTRY)
    assert sum(len(p.writes) for p in parts) == 10_000
    got = saver.get_tuple(config)
    assert got is not None
    assert got.pending_writes == [("task-big", ch, v) for ch, v in writes]
    saver.put_writes(config, writes, "task-big")  # a retry appends nothing
    assert saver.log.length(("t", thread)) == len(entries)
    _rebuilt_equals_live(saver, thread)


def test_put_with_5000_new_channels(valkey_url: str) -> None:
    client = valkey.Valkey.from_url(valkey_url)
    saver = ValkeySaver(client)
    thread = f"fan-c-{uuid.uuid4().hex[:6]}"
    cp = empty_checkpoint()
    version = saver.get_next_version(None, None)
    cp["channel_values"] = {f"c{i}": i for i in range(5_000)}
    cp["channel_versions"] = {f"c{i}": version for i in range(5_000)}
    config = saver.put(_cfg(thread), cp, {"step": 1}, dict(cp["channel_versions"]))
    kinds = [type(e.event) for e in saver.log.read(("t", thread))]
    assert kinds == [BlobsPut, BlobsPut, CheckpointPut]
    got = saver.get_tuple(config)
    assert got is not None and got.checkpoint["channel_values"] == cp["channel_values"]
    # a retried put finds the checkpoint and appends nothing
    saver.put(_cfg(thread), cp, {"step": 1}, dict(cp["channel_versions"]))
    assert saver.log.length(("t", thread)) == 3
    # the next checkpoint changes one channel and stores only that one
    cp2 = empty_checkpoint()
    v2 = saver.get_next_version(version, None)
    cp2["channel_values"] = {**cp["channel_values"], "c0": -1}
    cp2["channel_versions"] = {**cp["channel_versions"], "c0": v2}
    config2 = saver.put(config, cp2, {"step": 2}, {"c0": v2})
    got2 = saver.get_tuple(config2)
    assert got2 is not None and got2.checkpoint["channel_values"] == cp2["channel_values"]
    _rebuilt_equals_live(saver, thread)
    # prune keeps the newest checkpoint self-contained, split again into entries
    saver.prune([thread])
    after = saver.get_tuple(_cfg(thread))
    assert after is not None and after.checkpoint["channel_values"] == cp2["channel_values"]
    _rebuilt_equals_live(saver, thread)


class _MapState(TypedDict):
    n: int
    results: Annotated[list[int], operator.add]


def test_a_map_reduce_graph_of_5000_sends(valkey_url: str) -> None:
    def fan_out(state: _MapState) -> list[Send]:
        return [Send("work", {"n": i, "results": []}) for i in range(state["n"])]

    def work(state: _MapState) -> dict[str, list[int]]:
        return {"results": [state["n"] * 2]}

    builder = StateGraph(_MapState)
    builder.add_node("work", work)
    builder.add_conditional_edges(START, fan_out, ["work"])
    builder.add_edge("work", END)
    saver = ValkeySaver(valkey.Valkey.from_url(valkey_url))
    graph = builder.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": f"fan-g-{uuid.uuid4().hex[:6]}"}}
    out = graph.invoke({"n": 5_000, "results": []}, config)
    assert sorted(out["results"]) == [2 * i for i in range(5_000)]
    state = graph.get_state(config)
    assert sorted(state.values["results"]) == sorted(out["results"])
