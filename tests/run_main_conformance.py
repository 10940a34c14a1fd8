"""LangGraph's *main-branch* conformance suite against every streamstate saver.

The test suite runs the published ``langgraph-checkpoint-conformance`` (81 tests). Its
main branch has more (``get_delta_channel_history`` among them) and is not on PyPI, so
this runs it from a checkout, outside pytest (CI has no network to fetch it)::

    git clone https://github.com/langchain-ai/langgraph
    python -m tests.run_main_conformance langgraph/libs/checkpoint-conformance [NAME ...]

NAME filters the savers by substring. Each Valkey saver gets a flushed embedded server of
its own temporary directory, each AWS saver a fresh emulator; sync savers run through
their sync methods in worker threads too. Exits 1 unless every saver passes every test.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import valkey
import valkey.asyncio

from streamstate import (
    AsyncBedrockSessionSaver,
    AsyncValkeySaver,
    BedrockSessionSaver,
    ValkeySaver,
)
from streamstate.server import EmbeddedServer
from streamstate.testing.aws_emulator import AwsEmulator
from tests.adapters.test_conformance import (
    ConformanceAgentCoreValkeySaver,
    ConformanceAsyncAgentCoreValkeySaver,
    SyncFacade,
    _with_actor,
)
from tests.aws.test_agentcore_conformance import ConformanceAgentCoreMemorySaver
from tests.aws.test_bedrock_conformance import SyncMethods

Factory = Callable[[], AsyncIterator[Any]]


class DeltaThroughSync:
    """Adds ``get_delta_channel_history`` to a facade that calls sync methods in threads."""

    inner: Any

    async def aget_delta_channel_history(
        self, *, config: Any, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        return await asyncio.to_thread(
            lambda: self.inner.get_delta_channel_history(config=config, channels=channels)
        )


class SyncFacadeWithDelta(DeltaThroughSync, SyncFacade):
    pass


class SyncMethodsWithDelta(DeltaThroughSync, SyncMethods):
    pass


class ActorDelta:
    """The suite's configs carry no ``actor_id``: add one, as an AgentCore app would."""

    async def aget_delta_channel_history(
        self, *, config: Any, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        return await super().aget_delta_channel_history(  # type: ignore[misc]
            config=_with_actor(config), channels=channels
        )

    def get_delta_channel_history(self, *, config: Any, channels: Sequence[str]) -> Any:
        return super().get_delta_channel_history(  # type: ignore[misc]
            config=_with_actor(config), channels=channels
        )


class AgentCoreValkey(ActorDelta, ConformanceAgentCoreValkeySaver):
    pass


class AsyncAgentCoreValkey(ActorDelta, ConformanceAsyncAgentCoreValkeySaver):
    pass


class AgentCoreMemory(ActorDelta, ConformanceAgentCoreMemorySaver):
    pass


def _valkey(url: str, cls: type, *, is_async: bool, through_sync: bool) -> Factory:
    async def factory() -> AsyncIterator[Any]:
        if is_async:
            aclient = valkey.asyncio.Valkey.from_url(url)
            await aclient.flushall()
            saver = cls(aclient)
        else:
            client = valkey.Valkey.from_url(url)
            client.flushall()
            saver = cls(client)
        yield SyncFacadeWithDelta(saver) if through_sync else saver

    return factory


def _aws(make: Callable[[AwsEmulator], Any], wrap: Callable[[Any], Any] | None) -> Factory:
    async def factory() -> AsyncIterator[Any]:
        with AwsEmulator() as emulator:
            saver = make(emulator)
            yield wrap(saver) if wrap else saver

    return factory


def _factories(url: str) -> dict[str, Factory]:
    def agentcore_memory(e: AwsEmulator) -> Any:
        return AgentCoreMemory(e.create_memory("conformance"), client=e.agentcore_client())

    def bedrock(e: AwsEmulator) -> Any:
        return BedrockSessionSaver(client=e.agent_runtime_client())

    def async_bedrock(e: AwsEmulator) -> Any:
        return AsyncBedrockSessionSaver(client=e.agent_runtime_client())

    return {
        "ValkeySaver (async methods)": _valkey(
            url, ValkeySaver, is_async=False, through_sync=False
        ),
        "ValkeySaver (sync methods)": _valkey(url, ValkeySaver, is_async=False, through_sync=True),
        "AsyncValkeySaver": _valkey(url, AsyncValkeySaver, is_async=True, through_sync=False),
        "AsyncValkeySaver (sync methods)": _valkey(
            url, AsyncValkeySaver, is_async=True, through_sync=True
        ),
        "AgentCoreValkeySaver": _valkey(url, AgentCoreValkey, is_async=False, through_sync=False),
        "AsyncAgentCoreValkeySaver": _valkey(
            url, AsyncAgentCoreValkey, is_async=True, through_sync=False
        ),
        "AgentCoreMemorySaver (async methods)": _aws(agentcore_memory, None),
        "AgentCoreMemorySaver (sync methods)": _aws(agentcore_memory, SyncFacadeWithDelta),
        "BedrockSessionSaver (async methods)": _aws(bedrock, None),
        "BedrockSessionSaver (sync methods)": _aws(bedrock, SyncMethodsWithDelta),
        "AsyncBedrockSessionSaver": _aws(async_bedrock, None),
    }


async def run(names: Sequence[str]) -> bool:
    from langgraph.checkpoint.conformance import checkpointer_test, validate

    all_passed = True
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedServer(Path(tmp)).start()
        try:
            for name, factory in _factories(server.url).items():
                if names and not any(n in name for n in names):
                    continue
                report = await validate(checkpointer_test(name=name)(factory))
                passed = sum(r.tests_passed for r in report.results.values())
                failures = {c: r.failures for c, r in report.results.items() if r.failures}
                missing = [c for c, r in report.results.items() if not r.detected]
                ok = not failures and not missing
                all_passed &= ok
                print(f"{'ok  ' if ok else 'FAIL'} {name}: {passed} passed", flush=True)
                for cap, failed in failures.items():
                    print(f"     {cap}: {failed}")
                if missing:
                    print(f"     capabilities not detected: {', '.join(missing)}")
        finally:
            server.stop()
    return all_passed


def main(argv: Sequence[str]) -> int:
    if not argv or not Path(argv[0], "langgraph", "checkpoint", "conformance").is_dir():
        print(__doc__, file=sys.stderr)
        return 2
    # ``langgraph.checkpoint`` is a namespace package: a portion earlier on sys.path wins,
    # once the published suite (imported by the test modules above) is forgotten.
    sys.path.insert(0, str(Path(argv[0]).resolve()))
    for module in [m for m in sys.modules if m.startswith("langgraph.checkpoint.conformance")]:
        del sys.modules[module]
    import langgraph.checkpoint.conformance as suite

    print(f"suite: {Path(suite.__file__ or '').parent}")
    return 0 if asyncio.run(run(argv[1:])) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
