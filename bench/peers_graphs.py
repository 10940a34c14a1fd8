"""Deterministic LangGraph workloads for ``bench peers`` (no model, no network).

* ``react``: an agent/tools loop over ``add_messages``; the agent calls a tool every other
  turn; one turn = one ``invoke`` with a new HumanMessage on the same thread.
* ``fanout``: a router that ``Send``s to 4 runs of a two-node subgraph, then a join.
* ``wide``: 300 channels, set once; a chain of 10 nodes each updating 3 of them.
* ``delta chat``: one node answering each message, its ``messages`` channel a LangGraph
  ``DeltaChannel`` (beta: stores a snapshot every N updates, and otherwise is rebuilt from
  the writes of ancestor checkpoints); one turn = one ``invoke`` with a new HumanMessage.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Send

TEXT = "The quick brown fox jumps over the lazy dog while the agent ponders its next step. " * 3
WIDE_CHANNELS = 300
WIDE_NODES = 10


class ReactState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    turn: int


def react_graph() -> StateGraph:
    def agent(state: ReactState) -> dict[str, Any]:
        last = state["messages"][-1]
        turn = state.get("turn", 0)
        if isinstance(last, HumanMessage) and turn % 2 == 0:
            call = {"name": "lookup", "args": {"q": f"turn {turn}"}, "id": f"call-{turn}"}
            return {"messages": [AIMessage(content="", tool_calls=[call])]}
        return {"messages": [AIMessage(content=f"Answer {turn}: {TEXT}")], "turn": turn + 1}

    def tools(state: ReactState) -> dict[str, Any]:
        call = state["messages"][-1].tool_calls[0]  # type: ignore[union-attr]
        return {"messages": [ToolMessage(content=f"result: {TEXT}", tool_call_id=call["id"])]}

    def route(state: ReactState) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

    g = StateGraph(ReactState)
    g.add_node("agent", agent)
    g.add_node("tools", tools)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", route, ["tools", END])
    g.add_edge("tools", "agent")
    return g


def react_inputs(turns: int) -> list[dict[str, Any]]:
    return [{"messages": [HumanMessage(content=f"Question {i}: {TEXT}")]} for i in range(turns)]


class SubState(TypedDict):
    item: int
    notes: Annotated[list[str], operator.add]


class FanState(TypedDict):
    topic: str
    notes: Annotated[list[str], operator.add]
    summary: str


def fanout_graph() -> StateGraph:
    sub = StateGraph(SubState)
    sub.add_node("research", lambda s: {"notes": [f"research {s['item']}: {TEXT}"]})
    sub.add_node("write", lambda s: {"notes": [f"draft {s['item']}: {TEXT}"]})
    sub.add_edge(START, "research")
    sub.add_edge("research", "write")
    sub.add_edge("write", END)

    def router(state: FanState) -> list[Send]:
        return [Send("worker", {"item": i, "notes": []}) for i in range(4)]

    g = StateGraph(FanState)
    g.add_node("plan", lambda s: {"notes": [f"plan for {s['topic']}"]})
    g.add_node("worker", sub.compile())
    g.add_node("join", lambda s: {"summary": f"{len(s['notes'])} notes"})
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", router, ["worker"])
    g.add_edge("worker", "join")
    g.add_edge("join", END)
    return g


def fanout_inputs(n: int) -> list[dict[str, Any]]:
    return [{"topic": f"topic {i}"} for i in range(n)]


WideState = TypedDict("WideState", {f"c{i}": str for i in range(WIDE_CHANNELS)})  # type: ignore[misc]


def wide_graph() -> StateGraph:
    def node(k: int) -> Callable[[Any], dict[str, str]]:
        def update(state: Any) -> dict[str, str]:
            return {
                f"c{(k * 3 + j) % WIDE_CHANNELS}": f"node {k} v{j} {TEXT[:60]}" for j in range(3)
            }

        return update

    g = StateGraph(WideState)
    prev = START
    for k in range(WIDE_NODES):
        g.add_node(f"n{k}", node(k))
        g.add_edge(prev, f"n{k}")
        prev = f"n{k}"
    g.add_edge(prev, END)
    return g


def wide_inputs(n: int) -> list[dict[str, Any]]:
    first = {f"c{i}": f"initial value {i} {TEXT[:40]}" for i in range(WIDE_CHANNELS)}
    return [first] + [{"c0": f"again {i}"} for i in range(1, n)]


def delta_channel_missing() -> str:
    """Why the delta chat graph cannot be built with the installed langgraph ('' if it can)."""
    try:
        from langgraph.channels.delta import DeltaChannel  # noqa: F401
        from langgraph.graph.message import _messages_delta_reducer  # noqa: F401
    except ImportError as exc:
        return f"the installed langgraph has no DeltaChannel / _messages_delta_reducer ({exc})"
    return ""


def delta_chat_graph() -> StateGraph:
    """A chat whose ``messages`` channel is ``DeltaChannel(_messages_delta_reducer)``."""
    from langgraph.channels.delta import DeltaChannel
    from langgraph.graph.message import _messages_delta_reducer

    # functional form: evaluated now (this module uses postponed annotations)
    ChatState = TypedDict(  # type: ignore[misc]  # noqa: UP013
        "ChatState", {"messages": Annotated[list, DeltaChannel(_messages_delta_reducer)]}
    )

    def reply(state: Any) -> dict[str, Any]:
        n = len(state["messages"])
        return {"messages": [AIMessage(content=f"Answer {n}: {TEXT}")]}

    g = StateGraph(ChatState)
    g.add_node("reply", reply)
    g.add_edge(START, "reply")
    g.add_edge("reply", END)
    return g


def chat_inputs(turns: int) -> list[dict[str, Any]]:
    return [{"messages": [HumanMessage(content=f"Message {i}: {TEXT}")]} for i in range(turns)]


# scenario name -> (graph builder, inputs for one thread); each thread is fresh.
SCENARIOS: dict[str, tuple[Callable[[], StateGraph], Callable[[], list[dict[str, Any]]]]] = {
    "react-10": (react_graph, lambda: react_inputs(10)),
    "react-100": (react_graph, lambda: react_inputs(100)),
    "fanout-4": (fanout_graph, lambda: fanout_inputs(3)),
    "wide-300": (wide_graph, lambda: wide_inputs(3)),
}
LABEL = {
    "react-10": "ReAct agent, 10 turns",
    "react-100": "ReAct agent, 100 turns",
    "fanout-4": "fan-out: Send to 4 subgraphs (3 invokes)",
    "wide-300": "wide state: 300 channels, 10 nodes x 3 updates (3 invokes)",
    "react-10-async": "ReAct agent, 10 turns (asyncio, ainvoke)",
}
