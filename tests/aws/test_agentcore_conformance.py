"""LangGraph's conformance suite, all capabilities, for AgentCoreMemorySaver on the emulator.

Run once through the async methods and once through the sync ones (``SyncFacade``).
The suite's configs carry no ``actor_id``; ``ActorConfigs`` adds one as an AgentCore
application would. Each capability suite gets a fresh memory, so ``list(None)`` and
``delete_for_runs`` see only that suite's sessions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from streamstate import AgentCoreMemorySaver
from streamstate.testing.aws_emulator import AwsEmulator
from tests.adapters.test_conformance import EXPECTED_TESTS, ActorConfigs, SyncFacade


def _with_actor(config: Any) -> Any:
    if config is None:
        return None
    return {**config, "configurable": {"actor_id": "actor-1", **config.get("configurable", {})}}


class SyncActorConfigs:
    """``ActorConfigs`` for the sync methods, which ``SyncFacade`` drives."""

    def put(self, config: Any, *a: Any, **k: Any) -> Any:
        return super().put(_with_actor(config), *a, **k)  # type: ignore[misc]

    def put_writes(self, config: Any, *a: Any, **k: Any) -> Any:
        return super().put_writes(_with_actor(config), *a, **k)  # type: ignore[misc]

    def get_tuple(self, config: Any) -> Any:
        return super().get_tuple(_with_actor(config))  # type: ignore[misc]

    def list(self, config: Any, **k: Any) -> Any:
        if k.get("before") is not None:
            k["before"] = _with_actor(k["before"])
        return super().list(_with_actor(config), **k)  # type: ignore[misc]


class ConformanceAgentCoreMemorySaver(SyncActorConfigs, ActorConfigs, AgentCoreMemorySaver):
    pass


@pytest.fixture(scope="module")
def emulator() -> Iterator[AwsEmulator]:
    with AwsEmulator() as emu:
        yield emu


@pytest.mark.parametrize("facade", [False, True], ids=["async methods", "sync methods"])
async def test_conformance_all_capabilities(emulator: AwsEmulator, facade: bool) -> None:
    async def factory() -> Any:
        saver = ConformanceAgentCoreMemorySaver(
            emulator.create_memory("conformance"), client=emulator.agentcore_client()
        )
        yield SyncFacade(saver) if facade else saver

    name = f"AgentCoreMemorySaver ({'sync' if facade else 'async'} methods)"
    report = await validate(checkpointer_test(name=name)(factory))
    failures = {cap: result.failures for cap, result in report.results.items() if result.failures}
    assert not failures, failures
    assert {c.value for c in ALL_CAPABILITIES} == {
        cap for cap, r in report.results.items() if r.detected and r.passed
    }
    assert sum(r.tests_passed for r in report.results.values()) == EXPECTED_TESTS, report
    assert emulator.internal_errors == []
