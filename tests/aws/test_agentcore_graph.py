"""Whole graphs on AgentCoreMemorySaver: interrupts, subgraphs, Send fan-out; sync and async."""

from __future__ import annotations

import operator
import uuid
from typing import Annotated, Any

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send, interrupt
from typing_extensions import TypedDict

from streamstate import AgentCoreMemorySaver
from streamstate.testing.aws_emulator import AwsEmulator
from tests.aws.test_agentcore_helpers import emulator

__all__ = ["emulator"]


class State(TypedDict):
    items: list[str]
    results: Annotated[list[str], operator.add]
    answer: str


@pytest.fixture
def saver(emulator: AwsEmulator) -> AgentCoreMemorySaver:
    return AgentCoreMemorySaver(emulator.create_memory("graph"), client=emulator.agentcore_client())


def cfg() -> Any:
    return {"configurable": {"thread_id": uuid.uuid4().hex, "actor_id": "user/alice:1"}}


async def run(graph: Any, inputs: Any, config: Any, use_async: bool) -> Any:
    if use_async:
        return await graph.ainvoke(inputs, config)
    return graph.invoke(inputs, config)


def approval_graph(saver: AgentCoreMemorySaver) -> Any:
    def ask(state: State) -> dict[str, Any]:
        return {"answer": interrupt({"question": f"approve {len(state['items'])} items?"})}

    def finish(state: State) -> dict[str, Any]:
        return {"results": [f"{state['answer']}:{i}" for i in state["items"]]}

    builder = StateGraph(State)
    builder.add_node("ask", ask)
    builder.add_node("finish", finish)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", "finish")
    builder.add_edge("finish", END)
    return builder.compile(checkpointer=saver)


@pytest.mark.parametrize("use_async", [False, True], ids=["invoke", "ainvoke"])
async def test_interrupt_then_resume(saver: AgentCoreMemorySaver, use_async: bool) -> None:
    graph, config = approval_graph(saver), cfg()
    first = await run(graph, {"items": ["a", "b"], "results": []}, config, use_async)
    assert first["__interrupt__"][0].value == {"question": "approve 2 items?"}
    state = graph.get_state(config)
    assert state.next == ("ask",) and state.tasks[0].interrupts
    done = await run(graph, Command(resume="yes"), config, use_async)
    assert done["results"] == ["yes:a", "yes:b"]
    assert graph.get_state(config).next == ()
    history = list(graph.get_state_history(config))
    assert [h.metadata["step"] for h in history] == sorted(
        (h.metadata["step"] for h in history), reverse=True
    )
    # a fresh saver (no cache, as in another process) sees the same thread
    other = AgentCoreMemorySaver(saver.memory_id, client=saver.client)
    assert approval_graph(other).get_state(config).values["results"] == ["yes:a", "yes:b"]


def subgraph_graph(saver: AgentCoreMemorySaver) -> Any:
    class Sub(TypedDict):
        items: list[str]
        results: Annotated[list[str], operator.add]

    def review(state: Sub) -> dict[str, Any]:
        verdict = interrupt("review?")
        return {"results": [f"{verdict}:{i}" for i in state["items"]]}

    sub = StateGraph(Sub)
    sub.add_node("review", review)
    sub.add_edge(START, "review")
    sub.add_edge("review", END)

    def prepare(state: State) -> dict[str, Any]:
        return {"items": [i.upper() for i in state["items"]]}

    builder = StateGraph(State)
    builder.add_node("prepare", prepare)
    builder.add_node("child", sub.compile())
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "child")
    builder.add_edge("child", END)
    return builder.compile(checkpointer=saver)


@pytest.mark.parametrize("use_async", [False, True], ids=["invoke", "ainvoke"])
async def test_subgraph_interrupt_and_resume(saver: AgentCoreMemorySaver, use_async: bool) -> None:
    graph, config = subgraph_graph(saver), cfg()
    first = await run(graph, {"items": ["x", "y"], "results": []}, config, use_async)
    assert first["__interrupt__"][0].value == "review?"
    state = graph.get_state(config, subgraphs=True)
    (task,) = state.tasks
    assert task.name == "child" and task.state.values["items"] == ["X", "Y"]
    sub_ns = task.state.config["configurable"]["checkpoint_ns"]
    assert sub_ns.startswith("child:")
    listed = list(saver.list({"configurable": {**config["configurable"], "checkpoint_ns": sub_ns}}))
    assert listed and all(t.config["configurable"]["checkpoint_ns"] == sub_ns for t in listed)
    done = await run(graph, Command(resume="ok"), config, use_async)
    assert done["results"] == ["ok:X", "ok:Y"]


def fan_out_graph(saver: AgentCoreMemorySaver) -> Any:
    class Job(TypedDict):
        item: str

    def work(job: Job) -> dict[str, Any]:
        return {"results": [job["item"] * 2]}

    def dispatch(state: State) -> list[Send]:
        return [Send("work", {"item": i}) for i in state["items"]]

    def reduce(state: State) -> dict[str, Any]:
        return {"answer": ",".join(sorted(state["results"]))}

    builder = StateGraph(State)
    builder.add_node("work", work)
    builder.add_node("reduce", reduce)
    builder.add_conditional_edges(START, dispatch, ["work"])
    builder.add_edge("work", "reduce")
    builder.add_edge("reduce", END)
    return builder.compile(checkpointer=saver)


@pytest.mark.parametrize("use_async", [False, True], ids=["invoke", "ainvoke"])
async def test_send_fan_out(
    emulator: AwsEmulator, saver: AgentCoreMemorySaver, use_async: bool
) -> None:
    graph, config = fan_out_graph(saver), cfg()
    items = [f"i{n}" for n in range(9)]  # more writes than one emulator page holds
    out = await run(graph, {"items": items, "results": []}, config, use_async)
    assert out["answer"] == ",".join(sorted(i * 2 for i in items))
    emulator.reset_calls()
    again = await run(graph, {"items": ["z"], "results": []}, config, use_async)
    assert again["results"][-1] == "zz"
    # reads only to load the thread (latest checkpoint + its writes); every put and
    # put_writes of the run is a single CreateEvent, with no read before it
    ops = {c.operation for c in emulator.calls}
    assert ops == {"ListEvents", "CreateEvent"}
    assert sum(c.operation == "ListEvents" for c in emulator.calls) == 2
    latest = saver.get_tuple(config)
    assert latest.checkpoint["channel_values"]["answer"] == again["answer"]
