"""AgentCoreMemorySaver: call budgets, splitting, references, options (on the emulator)."""

from __future__ import annotations

import os
import uuid
from typing import Any

import boto3
import pytest
from botocore.config import Config
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from pydantic import SecretStr

from streamstate import AgentCoreMemorySaver
from streamstate.errors import ConfigError
from streamstate.eventlog.agentcore import Limits
from streamstate.eventlog.events import CheckpointPut, WritesPut
from streamstate.testing.aws_emulator import AwsEmulator
from tests.aws.test_agentcore_helpers import calls, config, emulator, in_process

__all__ = ["emulator"]


def make_saver(
    emulator: AwsEmulator, memory_id: str | None = None, **kw: Any
) -> AgentCoreMemorySaver:
    memory_id = memory_id or emulator.create_memory("saver")
    return AgentCoreMemorySaver(
        memory_id, client=in_process(emulator, emulator.agentcore_client()), **kw
    )


def checkpoint(step: int, values: dict[str, Any], versions: dict[str, Any]) -> Any:
    cp = empty_checkpoint()
    return {
        **cp,
        "id": str(uuid6(clock_seq=step)),
        "channel_values": values,
        "channel_versions": versions,
    }


class Thread:
    """Puts a sequence of checkpoints as a graph run would: versions bumped per change."""

    def __init__(
        self, saver: AgentCoreMemorySaver, thread_id: str | None = None, ns: str = ""
    ) -> None:
        self.saver = saver
        self.config = config(thread_id or uuid.uuid4().hex, ns=ns)
        self.values: dict[str, Any] = {}
        self.versions: dict[str, Any] = {}
        self.step = 0

    def put(self, changes: dict[str, Any], **metadata: Any) -> Any:
        new = {ch: self.saver.get_next_version(self.versions.get(ch)) for ch in changes}
        self.values.update(changes)
        self.versions.update(new)
        cp = checkpoint(self.step, dict(self.values), dict(self.versions))
        self.config = self.saver.put(
            self.config, cp, {"source": "loop", "step": self.step, **metadata}, new
        )
        self.step += 1
        return self.config


# -- configuration ----------------------------------------------------------------------------


def test_actor_id_is_required_and_named(emulator: AwsEmulator) -> None:
    saver = make_saver(emulator)
    no_actor = {"configurable": {"thread_id": "t-1"}}
    for call in (
        lambda: saver.get_tuple(no_actor),
        lambda: list(saver.list(no_actor)),
        lambda: saver.put(no_actor, empty_checkpoint(), {}, {}),
    ):
        with pytest.raises(ValueError, match=r'\["actor_id"\] is required'):
            call()
    with pytest.raises(ConfigError, match="thread_id"):
        saver.get_tuple({"configurable": {"thread_id": "has.dot", "actor_id": "a"}})
    with pytest.raises(ConfigError, match="memory_id"):
        AgentCoreMemorySaver("YOUR_MEMORY_ID", region_name="us-east-1")


def test_every_boto3_option_builds_a_working_client(
    emulator: AwsEmulator, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory_id = emulator.create_memory("options")
    common = {"region_name": emulator.region, "endpoint_url": emulator.endpoint_url}
    credentials = tmp_path / "credentials"
    credentials.write_text("[streamstate-test]\naws_access_key_id = k\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    savers = [
        AgentCoreMemorySaver(
            memory_id,
            aws_access_key_id=SecretStr("k"),
            aws_secret_access_key=SecretStr("s"),
            aws_session_token="t",
            config=Config(connect_timeout=5),
            **common,
        ),
        AgentCoreMemorySaver(
            memory_id,
            session=boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s"),
            **common,
        ),
        AgentCoreMemorySaver(memory_id, credentials_profile_name="streamstate-test", **common),
        AgentCoreMemorySaver(memory_id, client=emulator.agentcore_client()),
    ]
    for saver in savers:
        thread = Thread(saver)
        thread.put({"a": 1})
        assert saver.get_tuple(thread.config).checkpoint["channel_values"] == {"a": 1}
    # a client we build retries with botocore's standard mode; a user config wins
    assert savers[0].client.meta.config.retries["mode"] == "standard"
    assert savers[0].client.meta.config.connect_timeout == 5
    with pytest.raises(ConfigError, match="client"):
        AgentCoreMemorySaver(memory_id, client=emulator.agentcore_client(), region_name="x")
    with pytest.raises(ConfigError, match="session"):
        AgentCoreMemorySaver(
            memory_id, session=boto3.session.Session(), credentials_profile_name="p"
        )


# -- call budgets ------------------------------------------------------------------------------


def test_put_and_put_writes_are_one_create_event_each(emulator: AwsEmulator) -> None:
    saver = make_saver(emulator)
    thread = Thread(saver)
    thread.put({"messages": ["hi"], "branch": "x"})
    emulator.reset_calls()
    stored = thread.put({"messages": ["hi", "there"]})
    assert calls(emulator) == {"CreateEvent": 1}
    emulator.reset_calls()
    saver.put_writes(stored, [("messages", ["more"]), ("branch", "y")], "task-1", "path")
    assert calls(emulator) == {"CreateEvent": 1}
    # by id: one listing returns the checkpoint and its writes
    emulator.reset_calls()
    tup = saver.get_tuple(thread.config)
    assert calls(emulator) == {"ListEvents": 1}
    assert tup.checkpoint["channel_values"] == {"messages": ["hi", "there"], "branch": "x"}
    assert tup.pending_writes == [("task-1", "messages", ["more"]), ("task-1", "branch", "y")]
    # latest: the newest checkpoint event, then its writes (they may be stored before it)
    emulator.reset_calls()
    assert saver.get_tuple(config(thread.config["configurable"]["thread_id"])) == tup
    assert calls(emulator) == {"ListEvents": 2}


@pytest.mark.parametrize("fresh_reader", [False, True], ids=["same saver", "cold saver"])
def test_get_tuple_latest_costs_the_same_after_5_and_500_checkpoints(
    emulator: AwsEmulator, fresh_reader: bool
) -> None:
    memory_id = emulator.create_memory("budget")
    saver = make_saver(emulator, memory_id)
    thread = Thread(saver)
    # a large value written once: later checkpoints reference it instead of carrying it
    thread.put({"big": "x" * 50_000, "n": 0})
    budgets = {}
    for total in (5, 500):
        while thread.step < total:
            thread.put({"n": thread.step})
        saver.put_writes(thread.config, [("n", -1)], "task")
        reader = make_saver(emulator, memory_id) if fresh_reader else saver
        emulator.reset_calls()
        tup = reader.get_tuple(config(thread.config["configurable"]["thread_id"]))
        budgets[total] = calls(emulator)
        assert tup.checkpoint["channel_values"] == {"big": "x" * 50_000, "n": total - 1}
        assert tup.pending_writes == [("task", "n", -1)]
    # the latest checkpoint, its writes, and one GetEvent (the referenced big value)
    assert budgets[5] == budgets[500] == {"ListEvents": 2, "GetEvent": 1}


def test_cold_put_reads_the_parent_once(emulator: AwsEmulator) -> None:
    """A channel whose value is not in channel_values (a DeltaChannel's) is located in
    the parent checkpoint: one ListEvents, then the put's single CreateEvent."""
    memory_id = emulator.create_memory("cold")
    thread = Thread(make_saver(emulator, memory_id))
    thread.put({"delta": "seed", "n": 0})
    cold = make_saver(emulator, memory_id)
    versions = {**thread.versions, "n": cold.get_next_version(thread.versions["n"])}
    cp = checkpoint(9, {"n": 1}, versions)  # "delta" keeps its version, value omitted
    emulator.reset_calls()
    stored = cold.put(thread.config, cp, {"step": 1}, {"n": versions["n"]})
    assert calls(emulator) == {"ListEvents": 1, "CreateEvent": 1}
    assert cold.get_tuple(stored).checkpoint["channel_values"] == {"delta": "seed", "n": 1}


# -- splitting ----------------------------------------------------------------------------------


def test_checkpoint_over_10_mb_is_split_and_read_back(emulator: AwsEmulator) -> None:
    memory_id = emulator.create_memory("big")
    saver = make_saver(emulator, memory_id)
    thread = Thread(saver)
    blob = os.urandom(12 * 1024 * 1024)  # incompressible: 16 MB of base64
    emulator.reset_calls()
    stored = thread.put({"blob": blob, "small": 1})
    assert calls(emulator)["CreateEvent"] == 2
    thread.put({"small": 2})  # references the split event
    for reader in (saver, make_saver(emulator, memory_id)):
        assert reader.get_tuple(stored).checkpoint["channel_values"] == {"blob": blob, "small": 1}
        latest = reader.get_tuple(config(thread.config["configurable"]["thread_id"]))
        assert latest.checkpoint["channel_values"] == {"blob": blob, "small": 2}
    listed = list(saver.list(config(thread.config["configurable"]["thread_id"])))
    assert [t.checkpoint["channel_values"]["small"] for t in listed] == [2, 1]


def test_checkpoint_with_many_channels(emulator: AwsEmulator) -> None:
    # 150 small channels fit one event: our items hold bytes, not channels
    saver = make_saver(emulator)
    thread = Thread(saver)
    values = {f"ch{i}": i for i in range(150)}
    emulator.reset_calls()
    thread.put(values)
    assert calls(emulator) == {"CreateEvent": 1}
    assert saver.get_tuple(thread.config).checkpoint["channel_values"] == values
    # with 1 KB items, 150 incompressible channels need more than 100 items: split
    small = make_saver(emulator, limits=Limits(max_item_chars=1000))
    thread = Thread(small)
    values = {f"ch{i}": os.urandom(700) for i in range(150)}
    emulator.reset_calls()
    thread.put(values)
    assert calls(emulator)["CreateEvent"] >= 2
    assert small.get_tuple(thread.config).checkpoint["channel_values"] == values


# -- rewrites keep referenced values ----------------------------------------------------------


def test_prune_copy_and_delete_for_runs_keep_referenced_values(emulator: AwsEmulator) -> None:
    saver = make_saver(emulator)
    big = "B" * 40_000
    thread = Thread(saver)
    thread.put({"big": big, "n": 0}, run_id="run-1")
    for i in range(1, 4):
        thread.put({"n": i}, run_id="run-2")
    saver.put_writes(thread.config, [("n", 99)], "task")
    tid = thread.config["configurable"]["thread_id"]
    expected = {"big": big, "n": 3}

    copy = uuid.uuid4().hex
    saver.copy_thread(tid, copy)
    assert saver.get_tuple(config(copy)).checkpoint["channel_values"] == expected

    saver.delete_for_runs(["run-1"])  # the run whose checkpoint holds "big"
    listed = list(saver.list(config(tid)))
    assert [t.metadata["run_id"] for t in listed] == ["run-2"] * 3
    assert all(t.checkpoint["channel_values"]["big"] == big for t in listed)
    assert listed[0].pending_writes == [("task", "n", 99)]

    saver.prune([copy], strategy="keep_latest")
    (only,) = list(saver.list(config(copy)))
    assert only.checkpoint["channel_values"] == expected
    assert only.pending_writes == [("task", "n", 99)]
    saver.prune([copy], strategy="delete")
    assert saver.get_tuple(config(copy)) is None


# -- list, namespaces, escaping -------------------------------------------------------------------


def test_list_across_namespaces_threads_and_filters(emulator: AwsEmulator) -> None:
    saver = make_saver(emulator)
    tid = uuid.uuid4().hex
    odd_ns = "outer:1|inner:2 with spaces and ünïcode"
    root, child = Thread(saver, tid), Thread(saver, tid, ns=odd_ns)
    ids = [root.put({"a": i}, tag=f"t{i}")["configurable"]["checkpoint_id"] for i in range(3)]
    child_id = child.put({"a": "child"})["configurable"]["checkpoint_id"]
    other = Thread(saver)
    other.put({"a": "other"})

    everything = list(saver.list({"configurable": {"thread_id": tid, "actor_id": "actor-1"}}))
    assert [t.config["configurable"]["checkpoint_id"] for t in everything] == [child_id, *ids[::-1]]
    assert [t.config["configurable"]["checkpoint_ns"] for t in everything] == [odd_ns, "", "", ""]
    assert [t.checkpoint["id"] for t in saver.list(config(tid, ns=odd_ns))] == [child_id]
    assert saver.get_tuple(config(tid, ns=odd_ns)).checkpoint["channel_values"] == {"a": "child"}
    assert [t.metadata["tag"] for t in saver.list(config(tid), filter={"tag": "t1"})] == ["t1"]
    before = config(tid, checkpoint_id=ids[2])
    assert [t.checkpoint["id"] for t in saver.list(config(tid), before=before, limit=1)] == [ids[1]]
    all_threads = {t.config["configurable"]["thread_id"] for t in saver.list(None)}
    assert all_threads == {tid, other.config["configurable"]["thread_id"]}


def test_long_ids_are_hashed_in_metadata_and_kept_exactly(emulator: AwsEmulator) -> None:
    saver = make_saver(emulator)
    thread = Thread(saver)
    long_id = "cp-" + "z" * 300
    cp = {**checkpoint(0, {"a": 1}, {"a": "1"}), "id": long_id}
    stored = saver.put(thread.config, cp, {}, {"a": "1"})
    saver.put_writes(stored, [("a", 2)], "task:with|odd#chars")
    tup = saver.get_tuple(stored)
    assert tup.checkpoint["id"] == long_id
    assert tup.pending_writes == [("task:with|odd#chars", "a", 2)]


# -- delta channels, allowlist, the log ----------------------------------------------------------


def test_delta_channel_history_matches_the_base_walk(emulator: AwsEmulator) -> None:
    """A DeltaChannel is seeded once; later checkpoints bump its version without a value,
    so its history is the writes since the seed."""
    saver = make_saver(emulator)
    thread = Thread(saver)
    thread.put({"d": "seed", "n": 0})
    for i in range(1, 5):
        saver.put_writes(thread.config, [("d", f"w{i}"), ("n", i)], f"task-{i}", f"~{i}")
        new = {ch: saver.get_next_version(thread.versions[ch]) for ch in ("d", "n")}
        thread.versions.update(new)
        cp = checkpoint(i, {"n": i}, dict(thread.versions))  # no value for "d"
        thread.config = saver.put(thread.config, cp, {"step": i}, new)
    saver.put_writes(thread.config, [("d", "pending")], "task-last")
    channels = ["d", "n", "missing"]
    got = saver.get_delta_channel_history(config=thread.config, channels=channels)
    want = BaseCheckpointSaver.get_delta_channel_history(
        saver, config=thread.config, channels=channels
    )
    assert got == want
    assert got["d"]["seed"] == "seed"
    assert [w[2] for w in got["d"]["writes"]] == ["w1", "w2", "w3", "w4"]
    assert got["missing"] == {"writes": []}


async def test_async_methods_and_allowlist(emulator: AwsEmulator) -> None:
    saver = make_saver(emulator).with_allowlist([("collections", "OrderedDict")])
    assert isinstance(saver, AgentCoreMemorySaver)
    cfg = config(uuid.uuid4().hex)
    cp = checkpoint(0, {"a": 1}, {"a": "1"})
    stored = await saver.aput(cfg, cp, {"source": "input", "step": -1}, {"a": "1"})
    await saver.aput_writes(stored, [("a", 2)], "task")
    tup = await saver.aget_tuple(cfg)
    assert tup.checkpoint["channel_values"] == {"a": 1}
    assert [t.checkpoint["id"] async for t in saver.alist(cfg)] == [cp["id"]]
    history = await saver.aget_delta_channel_history(config=stored, channels=["a"])
    assert history == {"a": {"writes": []}}
    await saver.adelete_thread(cfg["configurable"]["thread_id"], actor_id="actor-1")
    assert await saver.aget_tuple(cfg) is None


def test_the_log_reads_a_threads_events(emulator: AwsEmulator) -> None:
    saver = make_saver(emulator)
    thread = Thread(saver)
    stored = thread.put({"a": 1})
    saver.put_writes(stored, [("a", 2)], "task")
    events = [
        e.event for e in saver.log.read(("actor-1", thread.config["configurable"]["thread_id"]))
    ]
    assert [type(e) for e in events] == [CheckpointPut, WritesPut]
    assert events[1].checkpoint_id == stored["configurable"]["checkpoint_id"]


def test_writes_stored_before_their_checkpoint_are_found(emulator: AwsEmulator) -> None:
    """LangGraph saves a step's writes concurrently with the checkpoint they belong to."""
    saver = make_saver(emulator)
    thread = Thread(saver)
    first = thread.put({"a": 0})
    cp = checkpoint(1, {"a": 1}, {"a": saver.get_next_version(thread.versions["a"])})
    own = {**thread.config, "configurable": {**first["configurable"], "checkpoint_id": cp["id"]}}
    saver.put_writes(own, [("a", "early")], "task-early")  # before its checkpoint exists
    stored = saver.put(first, cp, {"step": 1}, {"a": cp["channel_versions"]["a"]})
    saver.put_writes(stored, [("a", "late")], "task-late")
    expected = [("task-early", "a", "early"), ("task-late", "a", "late")]
    tid = thread.config["configurable"]["thread_id"]
    assert saver.get_tuple(config(tid)).pending_writes == expected
    assert saver.get_tuple(stored).pending_writes == expected
    assert next(iter(saver.list(config(tid)))).pending_writes == expected
