"""Faults on AgentCore calls: retried ones leave exactly one event, the rest raise."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.config import Config
from langgraph.checkpoint.base import empty_checkpoint

from streamstate import AgentCoreMemorySaver
from streamstate.errors import BackendError
from streamstate.eventlog.agentcore import AgentCoreError, AgentCoreNotFound
from streamstate.testing.aws_emulator import AwsEmulator
from tests.aws.test_agentcore_helpers import config, emulator, faults

__all__ = ["emulator", "faults"]


def put_one(saver: AgentCoreMemorySaver) -> tuple[Any, Any]:
    cfg = config(uuid.uuid4().hex)
    cp = {**empty_checkpoint(), "channel_values": {"a": 1}, "channel_versions": {"a": "1"}}
    return cfg, saver.put(cfg, cp, {"step": 0}, {"a": "1"})


def events_in(saver: AgentCoreMemorySaver, cfg: Any) -> int:
    return saver.log.length(("actor-1", cfg["configurable"]["thread_id"]))


@pytest.fixture
def saver(emulator: AwsEmulator) -> AgentCoreMemorySaver:
    return AgentCoreMemorySaver(
        emulator.create_memory("faults"), client=emulator.agentcore_client()
    )


@pytest.mark.parametrize("status", [429, 409])
def test_throttling_and_retryable_conflict_are_retried(
    faults: AwsEmulator, saver: AgentCoreMemorySaver, status: int
) -> None:
    faults.inject_fault("CreateEvent", status, count=2)
    faults.reset_calls()
    cfg, stored = put_one(saver)
    assert faults.call_count("CreateEvent") == 3
    assert events_in(saver, cfg) == 1
    assert saver.get_tuple(stored).checkpoint["channel_values"] == {"a": 1}


def test_a_lost_answer_is_retried_with_the_same_client_token(
    faults: AwsEmulator, saver: AgentCoreMemorySaver
) -> None:
    faults.inject_fault("CreateEvent", 500, after_commit=True)
    faults.reset_calls()
    cfg, _ = put_one(saver)
    tokens = [c.params["clientToken"] for c in faults.calls if c.operation == "CreateEvent"]
    assert len(tokens) == 2 and tokens[0] == tokens[1]
    assert events_in(saver, cfg) == 1


def test_a_legacy_mode_client_gets_the_409_retried_by_streamstate(faults: AwsEmulator) -> None:
    # botocore's legacy mode does not retry RetryableConflictException; we do
    client = faults.agentcore_client(config=Config(retries={"mode": "legacy", "max_attempts": 2}))
    saver = AgentCoreMemorySaver(faults.create_memory("legacy"), client=client)
    faults.inject_fault("CreateEvent", 409, count=2)
    cfg, _ = put_one(saver)
    assert events_in(saver, cfg) == 1


@pytest.mark.parametrize(
    ("status", "code"), [(403, "AccessDeniedException"), (400, "ValidationException")]
)
def test_client_errors_raise(
    faults: AwsEmulator, saver: AgentCoreMemorySaver, status: int, code: str
) -> None:
    faults.inject_fault("CreateEvent", status)
    faults.reset_calls()
    with pytest.raises(AgentCoreError) as err:
        put_one(saver)
    assert err.value.code == code and err.value.status == status
    assert err.value.operation == "CreateEvent"
    assert faults.call_count("CreateEvent") == 1  # not retried


def test_a_server_error_is_never_a_missing_checkpoint(
    faults: AwsEmulator, saver: AgentCoreMemorySaver
) -> None:
    cfg, _ = put_one(saver)
    faults.inject_fault("ListEvents", 500, count=10)
    with pytest.raises(BackendError, match="ServiceException"):
        saver.get_tuple(cfg)
    faults.clear_faults()
    assert saver.get_tuple(cfg) is not None


def test_a_missing_memory_raises_not_found(faults: AwsEmulator) -> None:
    saver = AgentCoreMemorySaver("gone-0123456789", client=faults.agentcore_client())
    with pytest.raises(AgentCoreNotFound, match="gone-0123456789"):
        saver.get_tuple(config("t-1"))


async def test_async_methods_raise_the_same_errors(
    faults: AwsEmulator, saver: AgentCoreMemorySaver
) -> None:
    faults.inject_fault("ListEvents", 403)
    with pytest.raises(AgentCoreError, match="AccessDenied"):
        await saver.aget_tuple(config("t-1"))
