"""DeltaChannel on every saver: whole graphs, and ``get_delta_channel_history`` against
LangGraph's reference semantics.

The reference is ``BaseCheckpointSaver.get_delta_channel_history`` itself: the default
walk, ``get_tuple`` of each ancestor, which every saver inherits and overrides for
speed. Each override must give exactly what the default walk gives on the same saver,
on real graphs (the differential test) and on the edge cases LangGraph's newest
conformance suite checks (a snapshot seed at a later step, a plain-value seed from a
migrated channel, the seed ancestor's own writes, writes of ancestors only), built here
with ``put`` / ``put_writes``. ``prune(keep_latest)`` and ``copy_thread`` must keep what
a delta channel is rebuilt from.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver, Checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from langgraph.types import Command

from streamstate.adapters._delta import (
    COUNTERS,
    delta_channels,
    filter_delta_channels,
    with_delta_ancestors,
)
from streamstate.errors import CodecError
from tests.adapters._delta_graphs import (
    Driver,
    Subject,
    chat_graph,
    emulator,
    one_turn,
    outcome,
    scenario,
    shown,
    subject,
)

__all__ = ["emulator", "subject"]

_REFERENCE: dict[str, Any] = {}


async def reference(name: str, run: Any) -> Any:
    """What LangGraph's InMemorySaver shows for a run (computed once)."""
    if name not in _REFERENCE:
        drive = Driver(chat_graph(InMemorySaver()), aio=False)
        _REFERENCE[name] = await run(drive, {"configurable": {"thread_id": "reference"}})
    return _REFERENCE[name]


# --------------------------------------------------------------------------- whole graphs


async def test_graph_shows_what_in_memory_saver_shows(subject: Subject) -> None:
    """Interrupts, a subgraph that interrupts, update_state with a removal, a fork:
    every result and every state of the history as on InMemorySaver."""
    expected = await reference("scenario", scenario)
    assert await scenario(subject.driver(), subject.config()) == expected


async def test_new_saver_instance_rebuilds_the_thread(subject: Subject) -> None:
    """Another process (a new saver on the same backend) reads the same messages."""
    config = subject.config()
    drive = subject.driver()
    transcript: list[Any] = []
    await one_turn(drive, config, "weather in Paris", transcript)
    await one_turn(drive, config, "weather in Oslo", transcript)
    before = shown((await drive.state(config)).values["messages"])
    again = type(subject.saver).__new__(type(subject.saver))
    again.__dict__.update(subject.saver.__dict__)  # same client, no shared caches needed
    after = shown((await Driver(chat_graph(again), subject.aio).state(config)).values["messages"])
    assert after == before and len(before) == 14  # seven messages a turn


# --------------------------------------------------------------------------- differential


async def _checkpoints(subject: Subject, config: Any) -> list[Any]:
    """Every checkpoint of the thread, in every namespace."""
    saver = subject.saver
    if subject.aio:
        return [t async for t in saver.alist(config)]
    return list(saver.list(config))


async def _both(subject: Subject, config: Any, channels: list[str]) -> tuple[Any, Any]:
    """(the saver's own history, the default walk's) for the same checkpoint."""
    saver = subject.saver
    if subject.aio:
        mine = await saver.aget_delta_channel_history(config=config, channels=channels)
        base = await BaseCheckpointSaver.aget_delta_channel_history(
            saver, config=config, channels=channels
        )
        return mine, base
    mine = saver.get_delta_channel_history(config=config, channels=channels)
    base = BaseCheckpointSaver.get_delta_channel_history(saver, config=config, channels=channels)
    amine = await saver.aget_delta_channel_history(config=config, channels=channels)
    assert amine == mine, "the async method disagrees with the sync one"
    return mine, base


async def test_history_equals_the_default_walk_on_real_graphs(subject: Subject) -> None:
    """At every checkpoint of every namespace, for every channel (and one never
    written), the saver's history is the default walk's."""
    config = subject.config()
    await scenario(subject.driver(), config)
    tuples = await _checkpoints(subject, config)
    namespaces = {t.config["configurable"]["checkpoint_ns"] for t in tuples}
    assert len(namespaces) > 1, "the subgraph's checkpoints are part of the walk"
    seeded = replayed = 0
    for tup in tuples:
        channels = sorted({*tup.checkpoint["channel_versions"], "messages", "never-written"})
        mine, base = await _both(subject, tup.config, channels)
        assert mine == base, tup.config
        seeded += "seed" in mine["messages"] and isinstance(
            mine["messages"]["seed"], _DeltaSnapshot
        )
        replayed += bool(mine["messages"]["writes"])
    assert seeded and replayed  # snapshots and replayed writes both occurred


# --------------------------------------------------------------------------- edge cases


class Chain:
    """A thread built with put / put_writes: each step stores some channel values
    (a stored value is what ends a channel's walk) and gets some writes."""

    def __init__(self, subject: Subject) -> None:
        self.subject = subject
        self.saver = subject.saver
        self.thread = subject.config()
        self.configs: list[Any] = []
        self.versions: dict[str, Any] = {}

    async def step(
        self,
        values: dict[str, Any] | None = None,
        writes: list[tuple[str, Any]] | None = None,
        *,
        touched: tuple[str, ...] = (),
        run: str | None = None,
    ) -> Any:
        """Store a checkpoint whose parent is the previous one. ``values`` are stored
        (their versions move); ``touched`` channels get a new version and no value, as
        a DeltaChannel between snapshots; other channels keep their version."""
        values = values or {}
        new = {}
        for ch in [*values, *touched]:
            new[ch] = self.saver.get_next_version(self.versions.get(ch), None)
        self.versions.update(new)
        config = {**self.thread, "configurable": dict(self.thread["configurable"])}
        config["configurable"]["checkpoint_ns"] = ""
        if self.configs:
            config["configurable"]["checkpoint_id"] = self.configs[-1]["configurable"][
                "checkpoint_id"
            ]
        checkpoint = Checkpoint(
            v=1,
            id=str(uuid6(clock_seq=len(self.configs))),
            ts="2025-01-01T00:00:00+00:00",
            channel_values=dict(values),
            channel_versions=dict(self.versions),
            versions_seen={},
            updated_channels=sorted(new),
        )
        metadata: dict[str, Any] = {"source": "loop", "step": len(self.configs), "parents": {}}
        if run is not None:
            metadata["run_id"] = run
        stored = await self.saver.aput(config, checkpoint, metadata, new)
        if self.subject.actor is not None:
            stored["configurable"]["actor_id"] = self.subject.actor
        self.configs.append(stored)
        if writes:
            await self.saver.aput_writes(stored, writes, f"task-{len(self.configs)}")
        return stored

    async def history(self, channels: list[str], at: int = -1) -> dict[str, Any]:
        """The saver's history at a step, after checking it equals the default walk's."""
        config = self.configs[at]
        mine = await self.saver.aget_delta_channel_history(config=config, channels=channels)
        base = await BaseCheckpointSaver.aget_delta_channel_history(
            self.saver, config=config, channels=channels
        )
        assert mine == base
        return dict(mine)


def values(history: dict[str, Any]) -> list[Any]:
    return [w[2] for w in history["writes"]]


async def test_writes_oldest_first_and_never_the_targets_own(subject: Subject) -> None:
    chain = Chain(subject)
    await chain.step(writes=[("ch", "w0")])
    for i in (1, 2, 3):
        await chain.step(writes=[("ch", f"w{i}"), ("other", f"o{i}")], touched=("ch",))
    await chain.step(writes=[("ch", "pending at the target")], touched=("ch",))
    history = await chain.history(["ch"])
    assert values(history["ch"]) == ["w0", "w1", "w2", "w3"]
    assert "seed" not in history["ch"]  # the walk reached the root: start empty
    assert [w[1] for w in history["ch"]["writes"]] == ["ch"] * 4


async def test_seed_is_the_nearest_snapshot_at_a_later_step(subject: Subject) -> None:
    chain = Chain(subject)
    await chain.step({"ch": _DeltaSnapshot(["a"])}, [("ch", "older than both seeds")])
    await chain.step(writes=[("ch", "b")], touched=("ch",))
    await chain.step({"ch": _DeltaSnapshot(["a", "b", "c"])}, [("ch", "d")])
    await chain.step(writes=[("ch", "e")], touched=("ch",))
    await chain.step(touched=("ch",))
    history = await chain.history(["ch"])
    assert history["ch"]["seed"] == _DeltaSnapshot(["a", "b", "c"])
    # the seed ancestor's own writes produced its child: they are replayed
    assert values(history["ch"]) == ["d", "e"]
    earlier = await chain.history(["ch"], at=2)  # the snapshot's own checkpoint
    assert earlier["ch"]["seed"] == _DeltaSnapshot(["a"])
    assert values(earlier["ch"]) == ["older than both seeds", "b"]


async def test_plain_value_seed_of_a_migrated_channel(subject: Subject) -> None:
    """A thread that stored the channel as a plain value before it became a
    DeltaChannel: the nearest plain value seeds it, and its own writes are replayed."""
    chain = Chain(subject)
    await chain.step({"ch": [10]}, [("ch", "subsumed by [10, 20]")])
    await chain.step({"ch": [10, 20]}, [("ch", "first delta-era write")])
    await chain.step(writes=[("ch", "second")], touched=("ch",))
    await chain.step(writes=[("ch", "pending")], touched=("ch",))
    history = await chain.history(["ch"])
    assert history["ch"]["seed"] == [10, 20]
    assert values(history["ch"]) == ["first delta-era write", "second"]


async def test_channels_end_their_walks_independently(subject: Subject) -> None:
    chain = Chain(subject)
    for step in range(6):
        stored = {}
        if step == 1:
            stored["a"] = _DeltaSnapshot("a@1")
        if step == 3:
            stored["b"] = _DeltaSnapshot("b@3")
        touched = tuple(ch for ch in "abc" if ch not in stored)  # written, not stored
        await chain.step(stored, [(ch, f"{ch}{step}") for ch in "abc"], touched=touched)
    history = await chain.history(["a", "b", "c", "d"])
    assert history["a"]["seed"] == _DeltaSnapshot("a@1")
    assert values(history["a"]) == ["a1", "a2", "a3", "a4"]
    assert history["b"]["seed"] == _DeltaSnapshot("b@3")
    assert values(history["b"]) == ["b3", "b4"]
    assert "seed" not in history["c"] and values(history["c"]) == [f"c{i}" for i in range(5)]
    assert history["d"] == {"writes": []}
    assert await chain.history([]) == {}


async def test_a_version_shared_with_an_older_checkpoint_seeds_where_it_is_read(
    subject: Subject,
) -> None:
    """A channel not written since its snapshot keeps that version: get_tuple of the
    later checkpoints shows the snapshot, so the walk stops at the first of them."""
    chain = Chain(subject)
    await chain.step({"ch": _DeltaSnapshot(["s"])}, [("ch", "at the snapshot")])
    await chain.step(writes=[("x", "unrelated")], touched=("x",))
    await chain.step(writes=[("ch", "at the nearest reader")], touched=("x",))
    await chain.step(touched=("ch",))
    history = await chain.history(["ch", "x"])
    assert history["ch"]["seed"] == _DeltaSnapshot(["s"])
    assert values(history["ch"]) == ["at the nearest reader"]
    assert "seed" not in history["x"] and values(history["x"]) == ["unrelated"]


async def test_history_after_delete_for_runs_equals_the_default_walk(subject: Subject) -> None:
    """The checkpoint holding a shared version is deleted (or retracted) with its run:
    the walk still agrees with get_tuple's view of the surviving checkpoints."""
    chain = Chain(subject)
    doomed = f"run-{uuid.uuid4().hex}"
    await chain.step({"ch": _DeltaSnapshot(["s"])}, [("ch", "w0")], run=doomed)
    await chain.step(writes=[("x", "x1"), ("ch", "w1")], touched=("x",), run="kept-run")
    await chain.step(writes=[("ch", "w2")], touched=("ch",), run="kept-run")
    await chain.step(touched=("ch",), run="kept-run")
    await subject.saver.adelete_for_runs([doomed])
    history = await chain.history(["ch", "x"])
    assert values(history["ch"])[-1] == "w2"


async def test_unknown_thread_or_checkpoint_has_empty_history(subject: Subject) -> None:
    config = subject.config()
    saver = subject.saver
    assert await saver.aget_delta_channel_history(config=config, channels=["ch"]) == {
        "ch": {"writes": []}
    }


# --------------------------------------------------------------------------- prune, copy


async def _prune(subject: Subject, thread_id: str) -> None:
    await subject.saver.aprune([thread_id], strategy="keep_latest")


async def _copy(subject: Subject, source: str, target: str) -> None:
    await subject.saver.acopy_thread(source, target)


async def _resume_turn(drive: Driver, config: Any, transcript: list[Any]) -> None:
    transcript.append(outcome(await drive.invoke(Command(resume="yes"), config)))
    transcript.append(outcome(await drive.invoke(Command(resume="keep"), config)))


async def _mid_turn(drive: Driver, config: Any) -> list[Any]:
    """Two turns, then a third stopped at its first interrupt: the latest checkpoint
    stores no messages (no snapshot since several updates), so reading it needs the
    writes of its ancestors."""
    transcript: list[Any] = []
    for city in ("Paris", "Oslo"):
        await one_turn(drive, config, f"weather in {city}", transcript)
    question = {"messages": [HumanMessage("weather in Lima", id="lima")]}
    transcript.append(outcome(await drive.invoke(question, config)))
    return transcript


async def _needs_history(subject: Subject, config: Any) -> None:
    latest = await subject.saver.aget_tuple(config)
    assert "messages" in latest.checkpoint["channel_versions"]
    assert "messages" not in latest.checkpoint["channel_values"]


async def test_prune_keep_latest_keeps_the_delta_history(subject: Subject) -> None:
    """After pruning, the latest state reads the same, the thread goes on as if it had
    not been pruned, and checkpoints were actually dropped."""
    config = subject.config()
    drive = subject.driver()
    transcript = await _mid_turn(drive, config)
    await _needs_history(subject, config)
    before = shown((await drive.state(config)).values["messages"])
    count = len(await _checkpoints(subject, config))
    await _prune(subject, config["configurable"]["thread_id"])
    assert shown((await drive.state(config)).values["messages"]) == before
    assert len(await _checkpoints(subject, config)) < count
    await _resume_turn(drive, config, transcript)
    await one_turn(drive, config, "weather in Rome", transcript)
    ref = Driver(chat_graph(InMemorySaver()), aio=False)
    ref_config = {"configurable": {"thread_id": "prune-reference"}}
    expected = await _mid_turn(ref, ref_config)
    await _resume_turn(ref, ref_config, expected)
    await one_turn(ref, ref_config, "weather in Rome", expected)
    assert transcript == expected


async def test_copy_thread_keeps_the_delta_history(subject: Subject) -> None:
    """A copy reads the same messages, after a prune too, and goes on on its own."""
    config = subject.config()
    drive = subject.driver()
    await _mid_turn(drive, config)
    await _needs_history(subject, config)
    source = config["configurable"]["thread_id"]
    before = shown((await drive.state(config)).values["messages"])
    copy = subject.config()
    await _copy(subject, source, copy["configurable"]["thread_id"])
    assert shown((await drive.state(copy)).values["messages"]) == before
    await _prune(subject, source)
    pruned_copy = subject.config()
    await _copy(subject, source, pruned_copy["configurable"]["thread_id"])
    assert shown((await drive.state(pruned_copy)).values["messages"]) == before
    more: list[Any] = []
    await _resume_turn(drive, pruned_copy, more)
    assert shown((await drive.state(config)).values["messages"]) == before  # source unmoved
    assert len((await drive.state(pruned_copy)).values["messages"]) == len(before) + 5


# --------------------------------------------------------------------------- the pure rule


def test_filter_names_the_delta_channels_whatever_the_serde_returns() -> None:
    """The counters' stored form is read without a serde: JSON from LangGraph's serde,
    ``~tuple`` forms from one that keeps tuples; keys may hold quotes and commas."""
    json_form = '{"a\\"b,c":[1,1],"messages":[3,2]}'
    tuple_form = '{"a\\"b,c":~tuple[1,1],"m:x":~tuple[3,2],"z":{"nested":1}}'
    chans = ['a"b,c', "messages", "m:x", "nested", "z", "other"]
    assert filter_delta_channels({COUNTERS: json_form}, chans) == {'a"b,c', "messages"}
    assert filter_delta_channels({COUNTERS: tuple_form}, chans) == {'a"b,c', "m:x", "z"}
    assert filter_delta_channels({"step": "3"}, chans) == set()
    with pytest.raises(CodecError):
        filter_delta_channels({COUNTERS: "~dict{1:2}"}, chans)
    assert delta_channels({COUNTERS: {"messages": (1, 1)}}, chans) == {"messages"}
    assert delta_channels(None, chans) == delta_channels({"step": 1}, chans) == set()


def test_ancestors_kept_back_to_each_channels_value() -> None:
    """Chain 0 <- 1 <- 2 <- 3 <- 4: ``a`` is stored at 1, ``b`` at 3; 4 keeps 1..4."""
    parents = {0: None, 1: 0, 2: 1, 3: 2, 4: 3, 9: None}
    stored = {1: {"a"}, 3: {"b"}}
    kept = with_delta_ancestors(
        {4, 9},
        deltas=lambda k: {"a", "b"} if k == 4 else set(),
        stores=lambda k: stored.get(k, set()),
        parent=parents.__getitem__,
    )
    assert kept == {1, 2, 3, 4, 9}
    never = with_delta_ancestors(
        {4}, deltas=lambda k: {"c"}, stores=lambda k: set(), parent=parents.__getitem__
    )
    assert never == {0, 1, 2, 3, 4}  # no value anywhere: the whole chain, as the walk reads
