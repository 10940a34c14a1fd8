"""ValkeyCache as a compiled graph's node cache: a cached node runs once per input."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import CachePolicy

from streamstate.adapters.cache import ValkeyCache


class State(TypedDict):
    x: int
    y: int


def build(calls: list[int], cache: ValkeyCache[Any], ttl: int | None = None) -> Any:
    def expensive(state: State) -> dict[str, int]:
        calls.append(state["x"])
        return {"y": state["x"] * 2}

    builder = StateGraph(State)
    builder.add_node("expensive", expensive, cache_policy=CachePolicy(ttl=ttl))
    builder.add_edge(START, "expensive")
    builder.add_edge("expensive", END)
    return builder.compile(cache=cache)


@pytest.fixture
async def cache(valkey_url: str, sid: str) -> Any:
    async with ValkeyCache.from_conn_string(valkey_url, prefix=f"test:{sid}:") as c:
        yield c


def test_sync_graph_runs_a_cached_node_once(cache: ValkeyCache[Any]) -> None:
    calls: list[int] = []
    graph = build(calls, cache)
    assert graph.invoke({"x": 1}) == {"x": 1, "y": 2}
    assert graph.invoke({"x": 1}) == {"x": 1, "y": 2}
    assert graph.invoke({"x": 2}) == {"x": 2, "y": 4}
    assert calls == [1, 2]

    graph.clear_cache()
    assert graph.invoke({"x": 1}) == {"x": 1, "y": 2}
    assert calls == [1, 2, 1]


async def test_async_graph_runs_a_cached_node_once(cache: ValkeyCache[Any]) -> None:
    calls: list[int] = []
    graph = build(calls, cache)
    assert await graph.ainvoke({"x": 1}) == {"x": 1, "y": 2}
    assert await graph.ainvoke({"x": 1}) == {"x": 1, "y": 2}
    assert await graph.ainvoke({"x": 3}) == {"x": 3, "y": 6}
    assert calls == [1, 3]

    await graph.aclear_cache()
    await graph.ainvoke({"x": 3})
    assert calls == [1, 3, 3]


async def test_sync_invoke_inside_a_running_loop(cache: ValkeyCache[Any]) -> None:
    calls: list[int] = []
    graph = build(calls, cache)
    graph.invoke({"x": 5})  # the cache's sync methods, with this test's loop running
    await graph.ainvoke({"x": 5})  # and the async ones see the same entry
    assert calls == [5]


async def test_a_cached_node_runs_again_after_its_ttl(cache: ValkeyCache[Any]) -> None:
    calls: list[int] = []
    graph = build(calls, cache, ttl=1)
    await graph.ainvoke({"x": 7})
    await graph.ainvoke({"x": 7})
    assert calls == [7]
    await asyncio.sleep(1.2)
    await graph.ainvoke({"x": 7})
    assert calls == [7, 7]
