"""Whole graphs on both Bedrock savers, sync and async: interrupt and resume, a
subgraph that interrupts, and a Send fan-out whose parallel tasks' writes must all
survive an interrupt of one of them (the lost-concurrent-writes bug class)."""

from __future__ import annotations

import operator
import re
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send, interrupt
from typing_extensions import TypedDict

from streamstate import AsyncBedrockSessionSaver, BedrockSessionSaver
from streamstate.testing.aws_emulator import AwsEmulator

SAVERS = [BedrockSessionSaver, AsyncBedrockSessionSaver]


@pytest.fixture(scope="module")
def emulator() -> Iterator[AwsEmulator]:
    with AwsEmulator(page_cap=None) as emu:
        yield emu


@pytest.fixture(params=SAVERS, ids=lambda c: c.__name__)
def saver(request: pytest.FixtureRequest, emulator: AwsEmulator) -> Any:
    return request.param(client=emulator.agent_runtime_client())


def _session(saver: Any) -> str:
    # a real session, as the seed's users create it (thread ids need not be sessions)
    return saver.client.create_session()["sessionId"]


async def _run(graph: Any, value: Any, config: dict[str, Any], mode: str) -> Any:
    if mode == "sync":
        return graph.invoke(value, config)
    return await graph.ainvoke(value, config)


async def _state(graph: Any, config: dict[str, Any], mode: str, **kw: Any) -> Any:
    if mode == "sync":
        return graph.get_state(config, **kw)
    return await graph.aget_state(config, **kw)


# --------------------------------------------------------------------------- graphs


class Chat(TypedDict):
    log: Annotated[list[str], operator.add]


def approval_graph(saver: Any) -> Any:
    def ask(state: Chat) -> dict[str, Any]:
        answer = interrupt({"question": "ship it?"})
        return {"log": [f"answer:{answer}"]}

    def done(state: Chat) -> dict[str, Any]:
        return {"log": ["done"]}

    builder = StateGraph(Chat)
    builder.add_node("ask", ask)
    builder.add_node("done", done)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", "done")
    builder.add_edge("done", END)
    return builder.compile(checkpointer=saver)


def nested_graph(saver: Any) -> Any:
    def inner_step(state: Chat) -> dict[str, Any]:
        return {"log": [f"inner:{interrupt('inner?')}"]}

    inner = StateGraph(Chat)
    inner.add_node("inner_step", inner_step)
    inner.add_edge(START, "inner_step")
    inner.add_edge("inner_step", END)

    def before(state: Chat) -> dict[str, Any]:
        return {"log": ["before"]}

    outer = StateGraph(Chat)
    outer.add_node("before", before)
    outer.add_node("child", inner.compile())
    outer.add_edge(START, "before")
    outer.add_edge("before", "child")
    outer.add_edge("child", END)
    return outer.compile(checkpointer=saver)


class Fan(TypedDict, total=False):
    n: int
    results: Annotated[list[int], operator.add]


def fan_out_graph(saver: Any, runs: Counter[int], lock: threading.Lock) -> Any:
    def work(arg: dict[str, int]) -> dict[str, Any]:
        i = arg["i"]
        with lock:
            runs[i] += 1
        if i == 0:
            interrupt("worker 0 needs a human")
        return {"results": [i]}

    def fan(state: Fan) -> list[Send]:
        return [Send("work", {"i": i}) for i in range(state["n"])]

    builder = StateGraph(Fan)
    builder.add_node("work", work)
    builder.add_conditional_edges(START, fan, ["work"])
    builder.add_edge("work", END)
    return builder.compile(checkpointer=saver)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_interrupt_then_resume(saver: Any, mode: str) -> None:
    graph = approval_graph(saver)
    config = {"configurable": {"thread_id": _session(saver)}}
    first = await _run(graph, {"log": ["start"]}, config, mode)
    assert first["__interrupt__"][0].value == {"question": "ship it?"}
    state = await _state(graph, config, mode)
    assert state.next == ("ask",)
    final = await _run(graph, Command(resume="yes"), config, mode)
    assert final == {"log": ["start", "answer:yes", "done"]}
    assert (await _state(graph, config, mode)).next == ()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_subgraph_interrupt_resumes_inside_the_subgraph(saver: Any, mode: str) -> None:
    graph = nested_graph(saver)
    config = {"configurable": {"thread_id": f"nested-{mode}-{id(saver)}"}}
    first = await _run(graph, {"log": []}, config, mode)
    assert first["__interrupt__"][0].value == "inner?"
    state = await _state(graph, config, mode, subgraphs=True)
    (task,) = state.tasks
    assert task.state is not None and task.state.next == ("inner_step",)
    final = await _run(graph, Command(resume="ok"), config, mode)
    # the same run on LangGraph's in-memory saver (the subgraph's output "log" is
    # added to the parent's, so "before" appears twice)
    reference = nested_graph(InMemorySaver())
    ref_config = {"configurable": {"thread_id": "ref"}}
    reference.invoke({"log": []}, ref_config)
    assert final == reference.invoke(Command(resume="ok"), ref_config)
    assert final["log"][-1] == "inner:ok"


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_parallel_writes_all_survive_an_interrupt(saver: Any, mode: str) -> None:
    runs: Counter[int] = Counter()
    graph = fan_out_graph(saver, runs, threading.Lock())
    config = {"configurable": {"thread_id": _session(saver)}}
    n = 8
    first = await _run(graph, {"n": n, "results": []}, config, mode)
    assert "__interrupt__" in first
    # the checkpoint holds the writes of all 7 finished tasks plus the interrupt
    state = await _state(graph, config, mode)
    finished = [t for t in state.tasks if t.result is not None]
    assert len(finished) == n - 1
    final = await _run(graph, Command(resume="go"), config, mode)
    assert sorted(final["results"]) == list(range(n))
    # finished tasks were not re-run on resume: their stored writes were used
    assert {i: runs[i] for i in range(1, n)} == dict.fromkeys(range(1, n), 1)
    assert runs[0] == 2


async def _history_script(saver: Any, thread_id: str, mode: str) -> list[Any]:
    """Run, resume, read the history, then fork from the interrupted checkpoint with
    another answer; returns what a user would see at each point."""
    graph = approval_graph(saver)
    config = {"configurable": {"thread_id": thread_id}}
    seen: list[Any] = [await _run(graph, {"log": ["a"]}, config, mode)]
    seen.append(await _run(graph, Command(resume="1"), config, mode))
    if mode == "sync":
        history = list(graph.get_state_history(config))
    else:
        history = [s async for s in graph.aget_state_history(config)]
    seen.append([(s.metadata["step"], s.next, s.values) for s in history])
    paused = next(s for s in history if s.next == ("ask",))
    seen.append(await _run(graph, Command(resume="2"), paused.config, mode))
    tup = (
        saver.get_tuple(paused.config) if mode == "sync" else await saver.aget_tuple(paused.config)
    )
    seen.append([(channel, value) for _task, channel, value in tup.pending_writes])
    return seen


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_history_and_fork_match_the_in_memory_saver(saver: Any, mode: str) -> None:
    ours = await _history_script(saver, _session(saver), mode)
    reference = await _history_script(InMemorySaver(), "ref", mode)

    def shown(value: Any) -> str:
        # interrupt ids hash the checkpoint id, which differs between the two runs
        return re.sub(r"id='[0-9a-f]+'", "id=_", repr(value))

    assert [shown(x) for x in ours] == [shown(x) for x in reference]
