"""LangGraph's conformance suite, all capabilities, for both Bedrock savers.

The suite invents its own thread ids (uuid4) and never creates sessions; the savers
map an id that is not a session to a session they create (found again through its
``sessionMetadata``), so the suite runs against them unchanged. Each capability gets a
fresh emulator, so ``list(None)`` and ``delete_for_runs`` see only its own sessions.

The suite is async-only; each class also runs through its sync methods, which a
facade calls in worker threads.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from streamstate import AsyncBedrockSessionSaver, BedrockSessionSaver
from streamstate.testing.aws_emulator import AwsEmulator

EXPECTED_TESTS = 81


class SyncMethods(BaseCheckpointSaver):
    """Each async method calls the wrapped saver's sync twin in a worker thread."""

    def __init__(self, inner: BaseCheckpointSaver) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner

    async def aput(self, *a: Any, **k: Any) -> Any:
        return await asyncio.to_thread(self.inner.put, *a, **k)

    async def aput_writes(self, *a: Any, **k: Any) -> Any:
        return await asyncio.to_thread(self.inner.put_writes, *a, **k)

    async def aget_tuple(self, *a: Any, **k: Any) -> Any:
        return await asyncio.to_thread(self.inner.get_tuple, *a, **k)

    async def alist(self, *a: Any, **k: Any) -> Any:
        for item in await asyncio.to_thread(lambda: list(self.inner.list(*a, **k))):
            yield item

    async def adelete_thread(self, *a: Any, **k: Any) -> Any:
        return await asyncio.to_thread(self.inner.delete_thread, *a, **k)

    async def adelete_for_runs(self, *a: Any, **k: Any) -> Any:
        return await asyncio.to_thread(self.inner.delete_for_runs, *a, **k)

    async def acopy_thread(self, *a: Any, **k: Any) -> Any:
        return await asyncio.to_thread(self.inner.copy_thread, *a, **k)

    async def aprune(self, *a: Any, **k: Any) -> Any:
        return await asyncio.to_thread(self.inner.prune, *a, **k)


def _factory(cls: type, sync_methods: bool) -> Any:
    async def factory():
        with AwsEmulator(page_cap=None) as emu:
            saver = cls(client=emu.agent_runtime_client())
            yield SyncMethods(saver) if sync_methods else saver

    return factory


VARIANTS = {
    "BedrockSessionSaver (sync methods)": (BedrockSessionSaver, True),
    "BedrockSessionSaver (async methods)": (BedrockSessionSaver, False),
    "AsyncBedrockSessionSaver (async methods)": (AsyncBedrockSessionSaver, False),
    "AsyncBedrockSessionSaver (sync methods)": (AsyncBedrockSessionSaver, True),
}


@pytest.mark.parametrize("name", list(VARIANTS))
async def test_conformance_all_capabilities(name: str) -> None:
    registered = checkpointer_test(name=name)(_factory(*VARIANTS[name]))
    report = await validate(registered)
    failures = {cap: r.failures for cap, r in report.results.items() if r.failures}
    assert not failures, failures
    assert {c.value for c in ALL_CAPABILITIES} == {
        cap for cap, r in report.results.items() if r.detected and r.passed
    }
    assert sum(r.tests_passed for r in report.results.values()) == EXPECTED_TESTS, report
