"""Behaviour of the Bedrock savers beyond the conformance suite: thread ids and
sessions, the session client, ended sessions, copy into a session, retraction,
large checkpoints, delta channels, construction."""

from __future__ import annotations

import operator
import random
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from streamstate import AsyncBedrockSessionSaver, BedrockSessionSaver
from streamstate.errors import ConfigError
from streamstate.eventlog.bedrock import (
    K_CHECKPOINT,
    K_RETRACT,
    META_KEY,
    BedrockConflict,
    BedrockNotFound,
    SessionNotActive,
    step_kind,
)
from streamstate.testing.aws_emulator import AwsEmulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[AwsEmulator]:
    with AwsEmulator(page_cap=None) as emu:
        yield emu


@pytest.fixture
def saver(emulator: AwsEmulator) -> BedrockSessionSaver:
    return BedrockSessionSaver(client=emulator.agent_runtime_client())


def _put(saver: Any, thread_id: str, parent: Any = None, **meta: Any) -> Any:
    config = generate_config(thread_id)
    if parent is not None:
        config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
    checkpoint = generate_checkpoint(channel_values={"v": len(meta)}, channel_versions={"v": 1})
    return saver.put(config, checkpoint, generate_metadata(**meta), {"v": 1})


def _kinds(emulator: AwsEmulator, sid: str) -> list[str]:
    """Kinds of every step of a session, listed through the API."""
    pages = emulator.agent_runtime_client().get_paginator("list_invocation_steps")
    return [
        step_kind(s["invocationStepId"])
        for page in pages.paginate(sessionIdentifier=sid)
        for s in page["invocationStepSummaries"]
    ]


# --------------------------------------------------------------------------- sessions


def test_session_id_is_used_as_is(emulator: AwsEmulator, saver: BedrockSessionSaver) -> None:
    sid = saver.session_client.create_session().session_id
    emulator.reset_calls()
    stored = _put(saver, sid)
    assert emulator.call_count("CreateSession") == 0
    assert stored["configurable"]["thread_id"] == sid
    assert K_CHECKPOINT in _kinds(emulator, sid)


def test_session_arn_is_a_thread_id(saver: BedrockSessionSaver) -> None:
    info = saver.session_client.create_session()
    _put(saver, info.session_arn)
    tup = saver.get_tuple(generate_config(info.session_arn))
    assert tup is not None and tup.config["configurable"]["thread_id"] == info.session_arn
    assert saver.get_tuple(generate_config(info.session_id)) is not None


def test_other_thread_ids_get_a_session_found_again_by_metadata(
    emulator: AwsEmulator, saver: BedrockSessionSaver
) -> None:
    thread_id = f"session-{uuid.uuid4().hex[:6]}"
    _put(saver, thread_id, step=1)
    sid = saver._log._resolved[thread_id]
    info = saver.session_client.get_session(sid)
    assert info.session_metadata == {META_KEY: thread_id}
    fresh = BedrockSessionSaver(client=emulator.agent_runtime_client())
    tup = fresh.get_tuple(generate_config(thread_id))
    assert tup is not None and tup.metadata["step"] == 1
    assert tup.config["configurable"]["thread_id"] == thread_id


def test_racing_creators_converge_on_the_oldest_session(emulator: AwsEmulator) -> None:
    thread_id = f"race-{uuid.uuid4().hex[:6]}"
    client = emulator.agent_runtime_client()
    # another process created an alias for this thread first
    first = client.create_session(sessionMetadata={META_KEY: thread_id})["sessionId"]
    late = BedrockSessionSaver(client=client)
    _put(late, thread_id)
    assert late._log._resolved[thread_id] == first


def test_auto_create_off_requires_real_sessions(emulator: AwsEmulator) -> None:
    strict = BedrockSessionSaver(client=emulator.agent_runtime_client(), auto_create_sessions=False)
    assert strict.get_tuple(generate_config("not-a-session")) is None
    with pytest.raises(ConfigError, match="create_session"):
        _put(strict, "not-a-session")
    sid = strict.session_client.create_session().session_id
    _put(strict, sid)
    assert strict.get_tuple(generate_config(sid)) is not None


async def test_async_session_client(emulator: AwsEmulator) -> None:
    saver = AsyncBedrockSessionSaver(client=emulator.agent_runtime_client())
    info = await saver.session_client.create_session(session_metadata={"app": "x"})
    assert (await saver.session_client.get_session(info.session_id)).session_metadata == {
        "app": "x"
    }
    with pytest.raises(BedrockConflict):
        await saver.session_client.delete_session(info.session_id)  # still ACTIVE
    assert (await saver.session_client.end_session(info)).session_status == "ENDED"
    await saver.session_client.delete_session(info.session_id)
    with pytest.raises(BedrockNotFound):
        await saver.session_client.get_session(info.session_id)


def test_ended_session_reads_and_refuses_writes(saver: BedrockSessionSaver) -> None:
    sid = saver.session_client.create_session().session_id
    stored = _put(saver, sid, step=7)
    saver.session_client.end_session(sid)
    tup = saver.get_tuple(generate_config(sid))
    assert tup is not None and tup.metadata["step"] == 7
    assert len(list(saver.list(generate_config(sid)))) == 1
    with pytest.raises(SessionNotActive, match=r"ENDED.*can still be read"):
        _put(saver, sid, stored)
    with pytest.raises(SessionNotActive):
        saver.put_writes(stored, [("ch", 1)], "task")


def test_delete_thread_ends_and_deletes_the_session(saver: BedrockSessionSaver) -> None:
    sid = saver.session_client.create_session().session_id
    _put(saver, sid)
    saver.delete_thread(sid)
    with pytest.raises(BedrockNotFound):
        saver.session_client.get_session(sid)
    assert saver.get_tuple(generate_config(sid)) is None
    # the id can be used again: the saver gives it a new session
    _put(saver, sid, step=2)
    assert saver.get_tuple(generate_config(sid)).metadata["step"] == 2


def test_copy_into_a_created_session(emulator: AwsEmulator, saver: BedrockSessionSaver) -> None:
    source = f"src-{uuid.uuid4().hex[:6]}"
    first = _put(saver, source, step=0)
    second = _put(saver, source, first, step=1)
    saver.put_writes(second, [("ch", "w")], "task-1")
    target = saver.session_client.create_session().session_id
    emulator.reset_calls()
    saver.copy_thread(source, target)
    assert emulator.call_count("CreateSession") == 0  # the target session is used
    copied = list(saver.list(generate_config(target)))
    assert [t.metadata["step"] for t in copied] == [1, 0]
    assert copied[0].pending_writes[0][1:] == ("ch", "w")
    assert copied[0].parent_config["configurable"]["thread_id"] == target
    saver.copy_thread(source, target)  # again: nothing new
    assert len(list(saver.list(generate_config(target)))) == 2


def test_list_all_threads(emulator: AwsEmulator) -> None:
    with AwsEmulator(page_cap=3) as own:
        saver = BedrockSessionSaver(client=own.agent_runtime_client())
        sid = saver.session_client.create_session().session_id
        _put(saver, sid, step=1)
        _put(saver, "named-thread", step=2)
        saver.put(
            generate_config("named-thread", checkpoint_ns="child:1"),
            generate_checkpoint(),
            generate_metadata(step=3),
            {},
        )
        saver.session_client.create_session()  # an empty session lists nothing
        got = {
            (t.config["configurable"]["thread_id"], t.config["configurable"]["checkpoint_ns"])
            for t in saver.list(None)
        }
        assert got == {(sid, ""), ("named-thread", ""), ("named-thread", "child:1")}
        assert len(list(saver.list(None, filter={"step": 3}))) == 1
        assert len(list(saver.list(None, limit=2))) == 2
        # no checkpoint_ns in the config: every namespace of the thread
        assert len(list(saver.list({"configurable": {"thread_id": "named-thread"}}))) == 2


def test_prune_retracts_and_keeps_data_readable_by_the_log(
    emulator: AwsEmulator, saver: BedrockSessionSaver
) -> None:
    thread_id = f"prune-{uuid.uuid4().hex[:6]}"
    a = _put(saver, thread_id, step=0)
    b = _put(saver, thread_id, a, step=1)
    saver.put_writes(b, [("ch", "x")], "t")
    saver.prune([thread_id])
    assert [t.metadata["step"] for t in saver.list(generate_config(thread_id))] == [1]
    assert saver.get_tuple(a) is None
    assert saver.get_tuple(b).pending_writes[0][1:] == ("ch", "x")
    sid = saver._log._resolved[thread_id]
    assert _kinds(emulator, sid).count(K_RETRACT) == 1
    # the log keeps every event: retraction hides checkpoints from the saver only
    assert len(saver.log.read(thread_id)) == 3
    saver.prune([thread_id])  # idempotent
    assert _kinds(emulator, sid).count(K_RETRACT) == 1


def test_large_checkpoint_spans_several_steps(saver: BedrockSessionSaver) -> None:
    import os

    thread_id = f"big-{uuid.uuid4().hex[:6]}"
    blob = os.urandom(900_000).hex()  # incompressible: about 2.4 MB of base64
    config = generate_config(thread_id)
    checkpoint = generate_checkpoint(channel_values={"big": blob}, channel_versions={"big": 1})
    stored = saver.put(config, checkpoint, generate_metadata(), {"big": 1})
    saver.put_writes(stored, [("big", blob)], "t")
    tup = BedrockSessionSaver(client=saver.client).get_tuple(generate_config(thread_id))
    assert tup.checkpoint["channel_values"]["big"] == blob
    assert tup.pending_writes[0][2] == blob


def test_versions_are_increasing_strings(saver: BedrockSessionSaver) -> None:
    v1 = saver.get_next_version(None)
    v2 = saver.get_next_version(v1)
    assert isinstance(v1, str) and v1 < v2


def test_with_allowlist_clone_shares_the_store(saver: BedrockSessionSaver) -> None:
    clone = saver.with_allowlist([("collections", "OrderedDict")])
    sid = saver.session_client.create_session().session_id
    _put(clone, sid, step=4)
    assert saver.get_tuple(generate_config(sid)).metadata["step"] == 4


def test_construction(emulator: AwsEmulator) -> None:
    from pydantic import SecretStr

    saver = AsyncBedrockSessionSaver(
        region_name=emulator.region,
        endpoint_url=emulator.endpoint_url,
        aws_access_key_id=SecretStr("testing"),
        aws_secret_access_key=SecretStr("testing"),
        aws_session_token="testing",
    )
    assert saver.client.meta.config.retries["mode"] == "standard"
    with pytest.raises(ConfigError, match="not both"):
        BedrockSessionSaver(client=saver.client, region_name="us-east-1")
    with pytest.raises(ConfigError, match="thread_id"):
        BedrockSessionSaver(client=saver.client).get_tuple({"configurable": {}})


# --------------------------------------------------------------------------- delta channels


def _extend(state: Any, writes: Any) -> list[Any]:
    out = list(state or [])
    for w in writes:
        out.extend(w)
    return out


class DeltaState(TypedDict, total=False):
    items: Annotated[list[str], DeltaChannel(_extend, snapshot_frequency=3)]
    total: Annotated[int, operator.add]


def _delta_graph(saver: Any) -> Any:
    def add(state: DeltaState) -> dict[str, Any]:
        return {"items": [f"x{state.get('total', 0)}"], "total": 1}

    def idle(state: DeltaState) -> dict[str, Any]:
        return {"total": 1}

    builder = StateGraph(DeltaState)
    builder.add_node("add", add)
    builder.add_node("idle", idle)
    builder.add_edge(START, "add")
    builder.add_edge("add", "idle")
    builder.add_edge("idle", END)
    return builder.compile(checkpointer=saver)


def _delta_script(saver: Any, fresh: Any) -> list[Any]:
    config = {"configurable": {"thread_id": "delta-thread"}}
    graph = _delta_graph(saver)
    seen = [graph.invoke({"items": [f"in{i}"]}, config) for i in range(5)]
    graph = _delta_graph(fresh())  # a new process: nothing cached
    history = list(graph.get_state_history(config))
    seen.append([s.values for s in history])
    reader = graph.checkpointer
    for snap in history:
        got = reader.get_delta_channel_history(config=snap.config, channels=["items"])
        seen.append(
            (
                [(w[1], w[2]) for w in got["items"]["writes"]],
                repr(got["items"].get("seed", "no seed")),
            )
        )
    return seen


def test_delta_channels_match_the_in_memory_saver(emulator: AwsEmulator) -> None:
    reference_saver = InMemorySaver()
    reference = _delta_script(reference_saver, lambda: reference_saver)
    make = lambda: BedrockSessionSaver(client=emulator.agent_runtime_client())  # noqa: E731
    assert _delta_script(make(), make) == reference


# --------------------------------------------------------------------------- coarse clocks


class CoarseClock:
    """A client whose service keeps step times to the second and lists ties in any
    order (the model promises neither precision nor a tie order)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._rng = random.Random(7)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    @staticmethod
    def _floor(item: dict[str, Any]) -> dict[str, Any]:
        return {**item, "invocationStepTime": item["invocationStepTime"].replace(microsecond=0)}

    def list_invocation_steps(self, **kw: Any) -> Any:
        reply = self._client.list_invocation_steps(**kw)
        items = [self._floor(s) for s in reply["invocationStepSummaries"]]
        groups: dict[Any, list[dict[str, Any]]] = {}
        for s in items:
            groups.setdefault(s["invocationStepTime"], []).append(s)
        shuffled = []
        for _, group in sorted(groups.items(), key=lambda kv: kv[0], reverse=True):
            self._rng.shuffle(group)
            shuffled += group
        return {**reply, "invocationStepSummaries": shuffled}

    def get_invocation_step(self, **kw: Any) -> Any:
        reply = self._client.get_invocation_step(**kw)
        return {**reply, "invocationStep": self._floor(reply["invocationStep"])}


def test_coarse_service_clock_keeps_order(emulator: AwsEmulator) -> None:
    saver = BedrockSessionSaver(client=CoarseClock(emulator.agent_runtime_client()))
    sid = saver.session_client.create_session().session_id
    stored = None
    for step in range(12):
        stored = _put(saver, sid, stored, step=step)
    fresh = BedrockSessionSaver(client=CoarseClock(emulator.agent_runtime_client()))
    assert fresh.get_tuple(generate_config(sid)).metadata["step"] == 11
    steps = [t.metadata["step"] for t in fresh.list(generate_config(sid))]
    assert steps == list(range(11, -1, -1))
    newest = fresh.log.read(sid, count=3, reverse=True)
    assert [e.event.checkpoint_id for e in newest] == [
        t.checkpoint["id"] for t in list(fresh.list(generate_config(sid)))[:3]
    ]


@pytest.mark.parametrize("cls", [BedrockSessionSaver, AsyncBedrockSessionSaver])
def test_constructor_shows_its_parameters(cls: type) -> None:
    """help(), IDEs and inspect see the documented arguments, not ``*args, **kwargs``."""
    import inspect

    params = inspect.signature(cls).parameters
    for name in ("client", "session", "region_name", "credentials_profile_name", "config"):
        assert name in params, name
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
