"""Calls per saver operation, counted by the emulator (the budgets the adapter
documents). The latest checkpoint costs the same however long the history is."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)

from streamstate import BedrockSessionSaver
from streamstate.testing.aws_emulator import AwsEmulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[AwsEmulator]:
    with AwsEmulator(page_cap=None) as emu:
        yield emu


@pytest.fixture
def saver(emulator: AwsEmulator) -> BedrockSessionSaver:
    return BedrockSessionSaver(client=emulator.agent_runtime_client())


class Calls:
    def __init__(self, emulator: AwsEmulator) -> None:
        self.emulator = emulator

    def __enter__(self) -> Counter[str]:
        self.emulator.reset_calls()
        self.counts: Counter[str] = Counter()
        return self.counts

    def __exit__(self, *exc: object) -> None:
        self.counts.update(c.operation for c in self.emulator.calls)


def _put(saver: Any, sid: str, parent: Any = None, ns: str = "") -> Any:
    config = generate_config(sid, checkpoint_ns=ns)
    if parent is not None:
        config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
    checkpoint = generate_checkpoint(
        channel_values={"a": 1, "b": 2}, channel_versions={"a": 1, "b": 1}
    )
    return saver.put(config, checkpoint, generate_metadata(), {"a": 1})


def test_put_and_put_writes(emulator: AwsEmulator, saver: BedrockSessionSaver) -> None:
    sid = saver.session_client.create_session().session_id
    with Calls(emulator) as first:
        stored = _put(saver, sid)
    # resolve the thread once, open the namespace and the checkpoint's writes
    assert first == {"GetSession": 1, "CreateInvocation": 2, "PutInvocationStep": 1}
    with Calls(emulator) as steady:
        stored = _put(saver, sid, stored)
    assert steady == {"CreateInvocation": 1, "PutInvocationStep": 1}
    with Calls(emulator) as writes:
        saver.put_writes(stored, [("a", 5)], "task-1")
    assert writes == {"PutInvocationStep": 1}
    with Calls(emulator) as again:
        saver.put_writes(stored, [("a", 5)], "task-1")
    assert again == {"PutInvocationStep": 1, "GetInvocationStep": 1}  # a duplicate


def test_get_tuple_does_not_scan_history(emulator: AwsEmulator, saver: BedrockSessionSaver) -> None:
    sid = saver.session_client.create_session().session_id
    stored = None
    for _ in range(40):
        stored = _put(saver, sid, stored)
    for task in ("t1", "t2", "t3"):
        saver.put_writes(stored, [("a", task)], task)
    with Calls(emulator) as by_id:
        tup = saver.get_tuple(stored)
    assert len(tup.pending_writes) == 3
    assert by_id == {"GetInvocationStep": 1 + 3, "ListInvocationSteps": 1}
    with Calls(emulator) as latest:
        assert saver.get_tuple(generate_config(sid)).config == stored
    assert latest == {"GetInvocationStep": 1 + 3, "ListInvocationSteps": 2}


def test_list_a_namespace(emulator: AwsEmulator, saver: BedrockSessionSaver) -> None:
    sid = saver.session_client.create_session().session_id
    stored = None
    for _ in range(5):
        stored = _put(saver, sid, stored)
    _put(saver, sid, ns="child:1")
    with Calls(emulator) as calls:
        assert len(list(saver.list(generate_config(sid), limit=3))) == 3
    # one listing of the namespace, then per checkpoint a get and a writes listing
    assert calls == {"ListInvocationSteps": 1 + 3, "GetInvocationStep": 3}


def test_resolving_thread_ids(emulator: AwsEmulator) -> None:
    client = emulator.agent_runtime_client()
    writer = BedrockSessionSaver(client=client)
    _put(writer, "named")
    with Calls(emulator) as fresh:
        BedrockSessionSaver(client=client).get_tuple(generate_config("named"))
    # a new process scans once: ListSessions, GetSession for each unseen session
    sessions = len(client.list_sessions(maxResults=1000)["sessionSummaries"])
    assert fresh["ListSessions"] == 1 and fresh["GetSession"] == sessions
    reader = BedrockSessionSaver(client=client)
    reader.get_tuple(generate_config("named"))
    with Calls(emulator) as cached:
        reader.get_tuple(generate_config("named"))
    assert "ListSessions" not in cached and "GetSession" not in cached
