"""The AWS plumbing both logs share (``streamstate.eventlog._aws``): one runner, one set
of steps, and errors under one base class whatever the service."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from streamstate.errors import (
    AgentCoreError,
    AgentCoreNotFound,
    AwsError,
    BackendUnavailable,
    BedrockNotFound,
    BedrockUnavailable,
)
from streamstate.eventlog import _aws, agentcore, bedrock


def _client_error(code: str, status: int = 400, method: str = "get_event") -> ClientError:
    body = {"Error": {"Code": code, "Message": "said the service"}}
    return ClientError({**body, "ResponseMetadata": {"HTTPStatusCode": status}}, method)


class _Config:
    def __init__(self, mode: str) -> None:
        self.retries = {"mode": mode}


class _Meta:
    def __init__(self, mode: str) -> None:
        self.config = _Config(mode)


class StubClient:
    """Answers ``ok``, raises ``missing``, and fails ``flaky`` ``fails`` times first."""

    def __init__(self, mode: str = "standard", fails: int = 0) -> None:
        self.meta = _Meta(mode)
        self.fails = fails
        self.calls: list[str] = []

    def ok(self, **params: Any) -> Any:
        self.calls.append("ok")
        return {"echo": params}

    def missing(self, **params: Any) -> Any:
        self.calls.append("missing")
        raise _client_error("ResourceNotFoundException", 404)

    def flaky(self, **params: Any) -> Any:
        self.calls.append("flaky")
        if self.fails:
            self.fails -= 1
            raise _client_error("RetryableConflictException", 409)
        return "done"

    def offline(self, **params: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="http://nowhere")


RUNNERS = {
    "agentcore": lambda c: agentcore.Runner(c),
    "bedrock": lambda c: bedrock.SyncRunner(c),
}


@pytest.fixture(params=sorted(RUNNERS))
def service(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_both_runners_are_the_shared_runner(service: str) -> None:
    assert isinstance(RUNNERS[service](StubClient()), _aws.Runner)


def test_parallel_settles_only_when_asked(service: str) -> None:
    runner = RUNNERS[service](StubClient())
    calls = (_aws.Call("ok", {"n": 1}), _aws.Call("missing", {}), _aws.Call("ok", {"n": 2}))
    settled = runner.run(_aws.Parallel(calls, settle=True))
    assert settled[0] == {"echo": {"n": 1}} and settled[2] == {"echo": {"n": 2}}
    assert isinstance(settled[1], AwsError) and isinstance(settled[1], LookupError)
    with pytest.raises(AwsError):
        runner.run(_aws.Parallel(calls))
    again = asyncio.run(runner.arun(_aws.Parallel(calls, settle=True)))
    assert [type(r) for r in again] == [type(r) for r in settled]


def test_missing_ok_answers_none(service: str) -> None:
    runner = RUNNERS[service](StubClient())
    assert runner.run(_aws.Call("missing", {}, missing_ok=True)) is None
    assert asyncio.run(runner.arun(_aws.Call("missing", {}, missing_ok=True))) is None


def test_legacy_mode_retries_the_retryable_conflict_itself(service: str) -> None:
    legacy = StubClient("legacy", fails=2)
    assert RUNNERS[service](legacy).run(_aws.Call("flaky", {})) == "done"
    assert legacy.calls == ["flaky"] * 3
    standard = StubClient("standard", fails=1)  # botocore retries it: we do not
    with pytest.raises(AwsError):
        RUNNERS[service](standard).run(_aws.Call("flaky", {}))
    assert standard.calls == ["flaky"]


def test_each_service_keeps_its_error_classes() -> None:
    missing = _aws.Call("missing", {})
    with pytest.raises(AgentCoreNotFound) as ac:
        agentcore.Runner(StubClient()).run(missing)
    assert ac.value.operation == "Missing" and ac.value.code == "ResourceNotFoundException"
    assert isinstance(ac.value, AgentCoreError) and ac.value.status == 404
    with pytest.raises(BedrockNotFound) as br:
        bedrock.SyncRunner(StubClient()).run(missing)
    assert br.value.operation == "missing" and br.value.status == 404
    assert str(br.value) == "missing: ResourceNotFoundException: said the service"
    offline = _aws.Call("offline", {})
    with pytest.raises(BackendUnavailable):
        agentcore.Runner(StubClient()).run(offline)
    with pytest.raises(BedrockUnavailable):
        bedrock.SyncRunner(StubClient()).run(offline)


def test_clock_steps() -> None:
    runner = _aws.Runner(StubClient(), agentcore.translate)
    assert isinstance(runner.run(_aws.CLOCK), float)
    assert runner.run(_aws.NOW) > 1_600_000_000 * 10**6  # wall clock, microseconds
    assert isinstance(runner.run(_aws.Sleep(0)), float)
