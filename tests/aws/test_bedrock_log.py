"""The shared event-log contract on the Bedrock backend (sync and async), plus what only
this backend has: alias sessions, large entries across steps, idempotent retries,
ended sessions, and the step layout seen through the emulator."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from streamstate.eventlog.bedrock import (
    K_CONT,
    META_KEY,
    AsyncBedrockEventLog,
    BedrockEventLog,
    SessionNotActive,
    step_kind,
)
from streamstate.eventlog.codec import Codec
from streamstate.testing.aws_emulator import AwsEmulator
from streamstate.testing.eventlog import EventLogContract, SyncToAsync, make_event

PAGE_CAP = 7


@pytest.fixture(scope="module")
def emulator() -> Iterator[AwsEmulator]:
    # a small page cap, so every listing in these tests paginates
    with AwsEmulator(page_cap=PAGE_CAP) as emu:
        yield emu


@pytest.fixture(scope="module")
def client(emulator: AwsEmulator) -> Any:
    return emulator.agent_runtime_client()


class TestBedrockEventLog(EventLogContract):
    @pytest.fixture
    def log(self, client: Any) -> Any:
        return SyncToAsync(BedrockEventLog(client, codec=Codec()))


class TestAsyncBedrockEventLog(EventLogContract):
    @pytest.fixture
    def log(self, client: Any) -> Any:
        return AsyncBedrockEventLog(client, codec=Codec())


del EventLogContract  # collected through the subclasses only


def _kinds(emulator: AwsEmulator, sid: str) -> list[str]:
    """Kinds of every step of a session, listed through the API."""
    pages = emulator.agent_runtime_client().get_paginator("list_invocation_steps")
    return [
        step_kind(s["invocationStepId"])
        for page in pages.paginate(sessionIdentifier=sid)
        for s in page["invocationStepSummaries"]
    ]


def test_name_that_is_no_session_gets_an_alias_session(client: Any) -> None:
    log = BedrockEventLog(client)
    name = f"audit-{uuid.uuid4().hex[:8]}"
    log.append(name, [make_event(1)])
    sid = log.core._resolved[name]
    assert client.get_session(sessionIdentifier=sid)["sessionMetadata"] == {META_KEY: name}
    # a fresh process (no cache) finds the same session through ListSessions
    assert BedrockEventLog(client).read(name)[0].event == make_event(1)


def test_session_id_names_its_own_session(client: Any) -> None:
    sid = client.create_session()["sessionId"]
    log = BedrockEventLog(client)
    log.append(sid, [make_event(2)])
    assert log.core._resolved[sid] == sid
    assert [e.event for e in BedrockEventLog(client).read(sid)] == [make_event(2)]


def test_large_event_spans_steps_and_reads_back(emulator: AwsEmulator, client: Any) -> None:
    log = BedrockEventLog(client, codec=Codec.plain(), max_block_chars=64, max_blocks_per_step=2)
    big = make_event(3, size=1000)
    name = f"big-{uuid.uuid4().hex[:8]}"
    result = log.append(name, [big, make_event(4)])
    assert result.appended
    sid = log.core._resolved[name]
    assert _kinds(emulator, sid).count(K_CONT) > 5
    again = BedrockEventLog(client, codec=Codec.plain())
    assert [e.event for e in again.read(name)] == [big, make_event(4)]
    assert [e.event for e in again.read(name, count=1, reverse=True)] == [make_event(4)]


def test_retried_append_with_key_writes_nothing(emulator: AwsEmulator, client: Any) -> None:
    name = f"idem-{uuid.uuid4().hex[:8]}"
    first = BedrockEventLog(client).append(name, [make_event(5)], idempotency_key="k")
    # another process retrying the same append after a lost reply
    again = BedrockEventLog(client).append(name, [make_event(5)], idempotency_key="k")
    assert first.appended and not again.appended and again.ids == first.ids
    assert BedrockEventLog(client).length(name) == 1


def test_ended_session_reads_but_refuses_writes(client: Any) -> None:
    sid = client.create_session()["sessionId"]
    log = AsyncBedrockEventLog(client)
    sync = BedrockEventLog(client, core=log.core)
    sync.append(sid, [make_event(6)])
    client.end_session(sessionIdentifier=sid)
    assert [e.event for e in sync.read(sid)] == [make_event(6)]
    with pytest.raises(SessionNotActive, match="ENDED"):
        sync.append(sid, [make_event(7)])


def test_deleted_session_is_recreated_on_next_append(client: Any) -> None:
    name = f"gone-{uuid.uuid4().hex[:8]}"
    a, b = BedrockEventLog(client), BedrockEventLog(client)
    a.append(name, [make_event(8)])
    assert b.delete(name) is True
    # `a` still caches the deleted session; its next append resolves the name again
    a.append(name, [make_event(9)])
    assert [e.event for e in b.read(name)] == [make_event(9)]


def test_extra_ops_and_ttl_are_refused(client: Any) -> None:
    from streamstate.errors import ConfigError
    from streamstate.eventlog.ops import set_

    log = BedrockEventLog(client)
    with pytest.raises(ConfigError):
        log.append("x", [make_event(1)], extra_ops=[set_("k", "v")])
    with pytest.raises(ConfigError):
        log.append("x", [make_event(1)], ttl=5)


def _alias_sessions(client: Any, name: str) -> list[str]:
    pages = client.get_paginator("list_sessions").paginate()
    sids = [s["sessionId"] for page in pages for s in page["sessionSummaries"]]
    return [
        sid
        for sid in sids
        if (client.get_session(sessionIdentifier=sid).get("sessionMetadata") or {}).get(META_KEY)
        == name
    ]


def _append_all_at_once(logs: list[BedrockEventLog], name: str, first: int) -> None:
    start = threading.Barrier(len(logs))

    def append(i: int) -> None:
        start.wait()
        logs[i].append(name, [make_event(first + i)])

    with ThreadPoolExecutor(len(logs)) as pool:
        for done in [pool.submit(append, i) for i in range(len(logs))]:
            done.result()


@pytest.mark.parametrize("shared_cache", [True, False], ids=["one-process", "many-processes"])
def test_racing_first_appends_to_a_new_name_all_land_in_one_session(
    emulator: AwsEmulator, client: Any, shared_cache: bool
) -> None:
    """LangGraph writes a step's checkpoint and writes at once, so the first appends to a
    new thread race to create its alias session: every one must land, in one session
    (losing creators remove theirs), whether the writers share a process's cache or not."""
    writers = 6
    for round_no in range(8):
        name = f"race-{uuid.uuid4().hex[:8]}"
        shared = BedrockEventLog(client)
        logs = [shared if shared_cache else BedrockEventLog(client) for _ in range(writers)]
        created = emulator.call_count("CreateSession")
        _append_all_at_once(logs, name, 100 * round_no)
        if shared_cache:  # one process creates once, its other writers wait for it
            assert emulator.call_count("CreateSession") == created + 1
        got = sorted(e.event.checkpoint_id for e in BedrockEventLog(client).read(name))
        assert got == sorted(make_event(100 * round_no + i).checkpoint_id for i in range(writers))
        assert len(_alias_sessions(client, name)) == 1


async def test_racing_async_first_appends_share_one_creator(
    emulator: AwsEmulator, client: Any
) -> None:
    """The async driver's concurrent appends wait for one creator, without blocking
    the event loop (a thread lock held across a call would deadlock it)."""
    log = AsyncBedrockEventLog(client)
    for round_no in range(4):
        name = f"arace-{uuid.uuid4().hex[:8]}"
        events = [make_event(100 * round_no + i) for i in range(6)]
        created = emulator.call_count("CreateSession")
        await asyncio.gather(*(log.append(name, [event]) for event in events))
        assert emulator.call_count("CreateSession") == created + 1
        got = sorted(e.event.checkpoint_id for e in await log.read(name))
        assert got == sorted(e.checkpoint_id for e in events)
        assert len(_alias_sessions(client, name)) == 1
