"""Whole graphs on the Valkey savers: subgraphs, Send fan-out, interrupts, update_state,
history, time travel, encryption and strict msgpack — sync and async."""

from __future__ import annotations

import itertools
import operator
import os
import subprocess
import sys
import textwrap
import uuid
from typing import Annotated, Any

import pytest
import valkey
import valkey.asyncio
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send, interrupt
from typing_extensions import TypedDict

from streamstate import (
    AgentCoreValkeySaver,
    AsyncAgentCoreValkeySaver,
    AsyncValkeySaver,
    ValkeySaver,
)


class State(TypedDict):
    items: Annotated[list[str], operator.add]
    answer: str


class Sub(TypedDict):
    items: Annotated[list[str], operator.add]


def build_graph(checkpointer: Any) -> Any:
    sub = StateGraph(Sub)
    sub.add_node("inner", lambda s: {"items": ["sub"]})
    sub.add_edge(START, "inner")
    subgraph = sub.compile()

    def fan_out(state: State) -> list[Send]:
        return [Send("work", {"items": [f"job-{i}"], "answer": ""}) for i in range(3)]

    def work(state: State) -> dict[str, Any]:
        return {"items": [f"done-{state['items'][-1]}"]}

    def ask(state: State) -> dict[str, Any]:
        answer = interrupt({"question": "approve?", "count": len(state["items"])})
        return {"answer": answer}

    g = StateGraph(State)
    g.add_node("start", lambda s: {"items": ["start"]})
    g.add_node("work", work)
    g.add_node("sub", subgraph)
    g.add_node("ask", ask)
    g.add_edge(START, "start")
    g.add_conditional_edges("start", fan_out, ["work"])
    g.add_edge("work", "sub")
    g.add_edge("sub", "ask")
    g.add_edge("ask", END)
    return g.compile(checkpointer=checkpointer)


def reference_run() -> tuple[dict[str, Any], dict[str, Any]]:
    """The same graph on LangGraph's InMemorySaver: what every saver must reproduce."""
    from langgraph.checkpoint.memory import InMemorySaver

    graph = build_graph(InMemorySaver())
    config = {"configurable": {"thread_id": "reference"}}
    interrupted = graph.invoke({"items": [], "answer": ""}, config)
    return interrupted, graph.invoke(Command(resume="yes"), config)


INTERRUPTED, FINAL = reference_run()
EXPECTED_ITEMS = FINAL["items"]


def config_for(saver: Any, thread: str | None = None) -> dict[str, Any]:
    configurable: dict[str, Any] = {"thread_id": thread or f"g-{uuid.uuid4().hex[:8]}"}
    if isinstance(saver, (AgentCoreValkeySaver, AsyncAgentCoreValkeySaver)):
        configurable["actor_id"] = "agent/1"
    return {"configurable": configurable}


SYNC = [ValkeySaver, AgentCoreValkeySaver]
ASYNC = [AsyncValkeySaver, AsyncAgentCoreValkeySaver]


@pytest.fixture(params=SYNC, ids=lambda c: c.__name__)
def sync_saver(request: pytest.FixtureRequest, valkey_url: str):
    client = valkey.Valkey.from_url(valkey_url)
    yield request.param(client)
    client.close()


@pytest.fixture(params=ASYNC, ids=lambda c: c.__name__)
async def async_saver(request: pytest.FixtureRequest, valkey_url: str):
    client = valkey.asyncio.Valkey.from_url(valkey_url)
    yield request.param(client)
    await client.aclose()


def test_interrupt_resume_subgraph_fan_out_sync(sync_saver: Any) -> None:
    graph = build_graph(sync_saver)
    config = config_for(sync_saver)
    out = graph.invoke({"items": [], "answer": ""}, config)
    assert out["__interrupt__"][0].value == INTERRUPTED["__interrupt__"][0].value
    state = graph.get_state(config)
    assert state.next == ("ask",)
    assert sorted(state.values["items"]) == sorted(EXPECTED_ITEMS)
    # a new saver instance (another process would do the same) resumes the thread
    resumed = build_graph(type(sync_saver)(sync_saver.client)).invoke(Command(resume="yes"), config)
    assert resumed["answer"] == "yes"
    assert resumed == FINAL
    assert graph.get_state(config).next == ()


async def test_interrupt_resume_subgraph_fan_out_async(async_saver: Any) -> None:
    graph = build_graph(async_saver)
    config = config_for(async_saver)
    out = await graph.ainvoke({"items": [], "answer": ""}, config)
    assert out["__interrupt__"][0].value == INTERRUPTED["__interrupt__"][0].value
    resumed = await graph.ainvoke(Command(resume="ok"), config)
    assert resumed["answer"] == "ok"
    assert sorted(resumed["items"]) == sorted(EXPECTED_ITEMS)
    history = [s async for s in graph.aget_state_history(config)]
    assert len(history) >= 5
    assert history[0].values["answer"] == "ok"


def test_fan_out_keeps_every_parallel_write(sync_saver: Any) -> None:
    graph = build_graph(sync_saver)
    config = config_for(sync_saver)
    graph.invoke({"items": [], "answer": ""}, config)
    # every Send task's write reached the state
    items = graph.get_state(config).values["items"]
    assert {"done-job-0", "done-job-1", "done-job-2"} <= set(items)


def test_update_state_history_and_time_travel(sync_saver: Any) -> None:
    graph = build_graph(sync_saver)
    config = config_for(sync_saver)
    graph.invoke({"items": [], "answer": ""}, config)
    graph.update_state(config, {"items": ["manual"]})
    assert graph.get_state(config).values["items"][-1] == "manual"

    history = list(graph.get_state_history(config))
    ids = [s.config["configurable"]["checkpoint_id"] for s in history]
    assert ids == sorted(ids, reverse=True)
    assert history[0].metadata["source"] == "update"
    # every parent link points to the next-older checkpoint
    for newer, older in itertools.pairwise(history):
        assert (
            newer.parent_config["configurable"]["checkpoint_id"]
            == older.config["configurable"]["checkpoint_id"]
        )

    # time travel: resume from the checkpoint before "ask" ran and fork the thread
    before_ask = next(s for s in history if s.next == ("ask",) and s.metadata["source"] == "loop")
    forked = graph.invoke(Command(resume="forked"), before_ask.config)
    assert forked["answer"] == "forked"
    latest = graph.get_state(config)
    assert latest.values["answer"] == "forked"
    assert (
        latest.parent_config["configurable"]["checkpoint_id"]
        == before_ask.config["configurable"]["checkpoint_id"]
    )
    # the original branch is still in history
    assert len(list(graph.get_state_history(config))) > len(history)


def test_encrypted_thread(valkey_url: str) -> None:
    serde = EncryptedSerializer.from_pycryptodome_aes(key=b"k" * 16)
    client = valkey.Valkey.from_url(valkey_url)
    saver = ValkeySaver(client, serde=serde)
    graph = build_graph(saver)
    config = config_for(saver)
    graph.invoke({"items": ["secret-value"], "answer": ""}, config)
    assert "secret-value" in graph.get_state(config).values["items"]
    # nothing readable reaches the server
    keys = saver.log.keyspace.session(("t", config["configurable"]["thread_id"]))
    raw = b"".join(v for v in client.hgetall(keys.view("blobs")).values())
    raw += b"".join(f for _, f in client.xrange(keys.log) for f in f.values())
    assert b"secret-value" not in raw
    # a saver without the key cannot read the thread
    with pytest.raises(Exception):  # noqa: B017 - the serde's own decryption error
        build_graph(ValkeySaver(client)).get_state(config)


def test_strict_msgpack_run(valkey_url: str, tmp_path) -> None:
    """A whole run in a process started with LANGGRAPH_STRICT_MSGPACK=true."""
    script = tmp_path / "strict.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import valkey, sys
            sys.path.insert(0, {os.path.dirname(__file__)!r})
            from langgraph.checkpoint.serde import _msgpack
            assert _msgpack.STRICT_MSGPACK_ENABLED
            from streamstate import ValkeySaver
            from test_saver_graphs import build_graph, EXPECTED_ITEMS
            from langgraph.types import Command
            saver = ValkeySaver(valkey.Valkey.from_url({valkey_url!r}))
            graph = build_graph(saver)
            config = {{"configurable": {{"thread_id": "strict-{uuid.uuid4().hex[:6]}"}}}}
            graph.invoke({{"items": [], "answer": ""}}, config)
            out = graph.invoke(Command(resume="yes"), config)
            assert sorted(out["items"]) == sorted(EXPECTED_ITEMS), out
            print("ok")
            """
        )
    )
    env = {**os.environ, "LANGGRAPH_STRICT_MSGPACK": "true"}
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_sync_methods_of_async_saver_from_another_thread(valkey_url: str) -> None:
    """The async class's sync API works from threads other than its loop's."""
    import asyncio
    import threading

    results: dict[str, Any] = {}

    async def main() -> None:
        client = valkey.asyncio.Valkey.from_url(valkey_url)
        saver = AsyncValkeySaver(client)
        graph = build_graph(saver)
        config = config_for(saver)
        await graph.ainvoke({"items": [], "answer": ""}, config)

        def from_thread() -> None:
            results["tuple"] = saver.get_tuple(config)
            results["history"] = list(saver.list(config, limit=3))

        t = threading.Thread(target=from_thread)
        t.start()
        while t.is_alive():
            await asyncio.sleep(0.01)
        with pytest.raises(ValueError, match="thread other than"):
            saver.get_tuple(config)
        await client.aclose()

    asyncio.run(main())
    assert results["tuple"].checkpoint["channel_values"]["items"]
    assert len(results["history"]) == 3


def test_missing_actor_id_is_named(valkey_url: str) -> None:
    saver = AgentCoreValkeySaver(valkey.Valkey.from_url(valkey_url))
    with pytest.raises(ValueError, match="actor_id"):
        saver.get_tuple({"configurable": {"thread_id": "t"}})


def test_agentcore_delete_thread_for_one_or_all_actors(valkey_url: str) -> None:
    saver = AgentCoreValkeySaver(valkey.Valkey.from_url(valkey_url))
    thread = f"s-{uuid.uuid4().hex[:6]}"
    graphs = {a: build_graph(saver) for a in ("a1", "a2", "a3")}
    for actor, graph in graphs.items():
        graph.invoke(
            {"items": [], "answer": ""}, {"configurable": {"thread_id": thread, "actor_id": actor}}
        )

    def exists(actor: str) -> bool:
        return (
            saver.get_tuple({"configurable": {"thread_id": thread, "actor_id": actor}}) is not None
        )

    saver.delete_thread(thread, actor_id="a1")
    assert [exists(a) for a in ("a1", "a2", "a3")] == [False, True, True]
    saver.delete_thread(thread)
    assert [exists(a) for a in ("a1", "a2", "a3")] == [False, False, False]


def test_seed_usage_from_conn_string(valkey_url: str) -> None:
    """The seed README's example, with only the import changed."""
    with ValkeySaver.from_conn_string(valkey_url, ttl_seconds=3600, pool_size=10) as checkpointer:
        builder = StateGraph(int)
        builder.add_node("add_one", lambda x: x + 1)
        builder.set_entry_point("add_one")
        builder.set_finish_point("add_one")
        graph = builder.compile(checkpointer=checkpointer)
        config = {"configurable": {"thread_id": f"session-{uuid.uuid4().hex[:6]}"}}
        assert graph.invoke(1, config) == 2
        assert checkpointer.client.ping()

    pool = valkey.ConnectionPool.from_url(valkey_url, max_connections=20)
    with AgentCoreValkeySaver.from_pool(pool, ttl_seconds=1800) as checkpointer:
        config = {
            "configurable": {
                "thread_id": "user-session-123",
                "actor_id": "assistant-agent",
                "checkpoint_ns": "",
            }
        }
        graph = builder.compile(checkpointer=checkpointer)
        assert graph.invoke(41, config) == 42
    pool.disconnect()
