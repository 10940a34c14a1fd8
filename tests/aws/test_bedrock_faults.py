"""Faults: throttling and 5xx are retried without duplicating a step, other errors
raise, and a failed read is never mistaken for a missing checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)

from streamstate import AsyncBedrockSessionSaver, BedrockSessionSaver
from streamstate.errors import BackendUnavailable
from streamstate.eventlog.bedrock import (
    K_CHECKPOINT,
    K_WRITES,
    BedrockApiError,
    BedrockUnavailable,
    BedrockValidationError,
    step_kind,
)
from streamstate.testing.aws_emulator import AwsEmulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[AwsEmulator]:
    with AwsEmulator(page_cap=None) as emu:
        yield emu


@pytest.fixture
def faults(emulator: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsEmulator]:
    """The emulator, faults cleared afterwards. botocore's own backoff (up to seconds
    for throttling) is shortened: what is tested is that retries happen and resend the
    same step, not how long botocore waits."""
    from botocore.retries.standard import ExponentialBackoff

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.001)
    emulator.reset_calls()
    yield emulator
    emulator.clear_faults()


@pytest.fixture(params=[BedrockSessionSaver, AsyncBedrockSessionSaver], ids=lambda c: c.__name__)
def saver(request: pytest.FixtureRequest, emulator: AwsEmulator) -> Any:
    # 3 attempts in all, botocore "standard" mode (the emulator helper's client)
    return request.param(client=emulator.agent_runtime_client(max_attempts=3))


def _session(saver: Any) -> str:
    return saver.client.create_session()["sessionId"]


def _kinds(emulator: AwsEmulator, sid: str) -> list[str]:
    """Kinds of every step of a session, listed through the API."""
    pages = emulator.agent_runtime_client().get_paginator("list_invocation_steps")
    return [
        step_kind(s["invocationStepId"])
        for page in pages.paginate(sessionIdentifier=sid)
        for s in page["invocationStepSummaries"]
    ]


def _checkpoint(saver: Any, sid: str) -> Any:
    return saver.put(generate_config(sid), generate_checkpoint(), generate_metadata(), {})


@pytest.mark.parametrize("status", [429, 500])
async def test_put_retried_without_duplicate(faults: AwsEmulator, saver: Any, status: int) -> None:
    sid = _session(saver)
    _checkpoint(saver, sid)  # namespace and invocations exist: only the step is retried
    faults.reset_calls()
    faults.inject_fault("PutInvocationStep", status, count=2)
    stored = await saver.aput(generate_config(sid), generate_checkpoint(), generate_metadata(), {})
    assert faults.call_count("PutInvocationStep") == 3
    assert _kinds(faults, sid).count(K_CHECKPOINT) == 2
    assert (await saver.aget_tuple(stored)) is not None


async def test_lost_reply_after_commit_is_not_a_duplicate(faults: AwsEmulator, saver: Any) -> None:
    sid = _session(saver)
    stored = _checkpoint(saver, sid)
    # the step is stored, then the reply is lost: botocore resends the same step id
    faults.inject_fault("PutInvocationStep", 500, count=1, after_commit=True)
    saver.put_writes(stored, [("ch", "v")], "task-1")
    assert _kinds(faults, sid).count(K_WRITES) == 1
    assert len(saver.get_tuple(stored).pending_writes) == 1


async def test_validation_error_raises_and_is_not_retried(faults: AwsEmulator, saver: Any) -> None:
    sid = _session(saver)
    _checkpoint(saver, sid)
    faults.reset_calls()
    faults.inject_fault("PutInvocationStep", 400, code="ValidationException", message="bad step")
    with pytest.raises(BedrockValidationError, match="bad step"):
        await saver.aput(generate_config(sid), generate_checkpoint(), generate_metadata(), {})
    assert faults.call_count("PutInvocationStep") == 1


async def test_read_failure_is_never_a_miss(faults: AwsEmulator, saver: Any) -> None:
    sid = _session(saver)
    stored = _checkpoint(saver, sid)
    faults.inject_fault("GetInvocationStep", 500, count=3)
    with pytest.raises(BedrockUnavailable) as info:
        await saver.aget_tuple(stored)
    assert isinstance(info.value, BackendUnavailable)
    faults.clear_faults()
    faults.inject_fault("ListInvocationSteps", 403, code="AccessDeniedException")
    with pytest.raises(BedrockApiError, match="AccessDenied"):
        saver.get_tuple(generate_config(sid))


async def test_session_lookup_failure_is_never_a_miss(faults: AwsEmulator, saver: Any) -> None:
    faults.inject_fault("GetSession", 500, count=3)
    with pytest.raises(BedrockUnavailable):
        await saver.aget_tuple(generate_config("6c1d7a52-59f4-4c3e-9d0b-0b7e2f4c1a11"))
    faults.clear_faults()
    faults.inject_fault("ListSessions", 429, count=3, service="bedrock-agent-runtime")
    with pytest.raises(BedrockUnavailable, match="Throttling"):
        saver.get_tuple(generate_config("not-a-session-id"))


async def test_throttled_session_creation_is_retried(faults: AwsEmulator, saver: Any) -> None:
    faults.inject_fault("CreateSession", 429, count=1)
    stored = await saver.aput(
        generate_config("fresh-thread-" + str(id(saver))),
        generate_checkpoint(),
        generate_metadata(),
        {},
    )
    assert faults.call_count("CreateSession") == 2
    assert (await saver.aget_tuple(stored)) is not None
