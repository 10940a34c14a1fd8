"""LangGraph's published conformance suite, all capabilities, for every Valkey saver.

The suite is async-only, so sync methods are driven through it by subclasses whose
async methods call the sync ones in a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import valkey
import valkey.asyncio
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from streamstate import (
    AgentCoreValkeySaver,
    AsyncAgentCoreValkeySaver,
    AsyncValkeySaver,
    ValkeySaver,
)

EXPECTED_TESTS = 81


class SyncFacade(BaseCheckpointSaver):
    """Drives a saver's *sync* methods: each async method calls one in a worker thread.

    For the async classes this exercises their sync bridge from threads other than the
    event loop that owns the client.
    """

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
        items = await asyncio.to_thread(lambda: list(self.inner.list(*a, **k)))
        for item in items:
            yield item

    async def adelete_thread(self, *a: Any, **k: Any) -> Any:
        return await asyncio.to_thread(self.inner.delete_thread, *a, **k)

    async def adelete_for_runs(self, *a: Any, **k: Any) -> Any:
        return await asyncio.to_thread(self.inner.delete_for_runs, *a, **k)

    async def acopy_thread(self, *a: Any, **k: Any) -> Any:
        return await asyncio.to_thread(self.inner.copy_thread, *a, **k)

    async def aprune(self, *a: Any, **k: Any) -> Any:
        return await asyncio.to_thread(self.inner.prune, *a, **k)


def _with_actor(config: Any, actor: str = "actor-1") -> Any:
    if config is None:
        return None
    configurable = {**config.get("configurable", {})}
    configurable.setdefault("actor_id", actor)
    return {**config, "configurable": configurable}


class ActorConfigs:
    """Mixin: the conformance configs carry no actor_id; add one as an AgentCore app would."""

    async def aput(self, config: Any, *a: Any, **k: Any) -> Any:
        return await super().aput(_with_actor(config), *a, **k)  # type: ignore[misc]

    async def aput_writes(self, config: Any, *a: Any, **k: Any) -> Any:
        return await super().aput_writes(_with_actor(config), *a, **k)  # type: ignore[misc]

    async def aget_tuple(self, config: Any) -> Any:
        return await super().aget_tuple(_with_actor(config))  # type: ignore[misc]

    async def alist(self, config: Any, **k: Any) -> Any:
        if k.get("before") is not None:
            k["before"] = _with_actor(k["before"])
        async for item in super().alist(_with_actor(config), **k):  # type: ignore[misc]
            yield item


class ConformanceAgentCoreValkeySaver(ActorConfigs, AgentCoreValkeySaver):
    pass


class ConformanceAsyncAgentCoreValkeySaver(ActorConfigs, AsyncAgentCoreValkeySaver):
    pass


def _factories(url: str) -> dict[str, Any]:
    def sync_factory(cls: type, facade: bool = False) -> Any:
        async def factory():
            client = valkey.Valkey.from_url(url)
            saver = cls(client)
            yield SyncFacade(saver) if facade else saver
            client.close()

        return factory

    def async_factory(cls: type, facade: bool = False) -> Any:
        async def factory():
            client = valkey.asyncio.Valkey.from_url(url)
            saver = cls(client)
            yield SyncFacade(saver) if facade else saver
            await client.aclose()

        return factory

    return {
        "AsyncValkeySaver": async_factory(AsyncValkeySaver),
        "ValkeySaver (async methods)": sync_factory(ValkeySaver),
        "ValkeySaver (sync methods)": sync_factory(ValkeySaver, facade=True),
        "AsyncValkeySaver (sync methods)": async_factory(AsyncValkeySaver, facade=True),
        "AgentCoreValkeySaver": sync_factory(ConformanceAgentCoreValkeySaver),
        "AsyncAgentCoreValkeySaver": async_factory(ConformanceAsyncAgentCoreValkeySaver),
    }


NAMES = [
    "AsyncValkeySaver",
    "ValkeySaver (async methods)",
    "ValkeySaver (sync methods)",
    "AsyncValkeySaver (sync methods)",
    "AgentCoreValkeySaver",
    "AsyncAgentCoreValkeySaver",
]


@pytest.mark.parametrize("name", NAMES)
async def test_conformance_all_capabilities(name: str, private_server) -> None:
    # a private server per saver: list(None) and delete_for_runs see only this suite's data
    factory = _factories(private_server.url)[name]
    registered = checkpointer_test(name=name)(factory)
    report = await validate(registered)
    failures = {cap: result.failures for cap, result in report.results.items() if result.failures}
    assert not failures, failures
    assert {c.value for c in ALL_CAPABILITIES} == {
        cap for cap, r in report.results.items() if r.detected and r.passed
    }
    passed = sum(r.tests_passed for r in report.results.values())
    assert passed == EXPECTED_TESTS, report
