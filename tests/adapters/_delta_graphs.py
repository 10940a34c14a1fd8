"""Shared helpers of the DeltaChannel tests (no tests here): every saver under test, a
chat graph whose messages live in a ``DeltaChannel``, and a scenario that drives it
through interrupts, a subgraph, ``update_state`` and a fork.

A ``DeltaChannel`` stores its value only every few updates (a ``_DeltaSnapshot``); in
between, reading a checkpoint rebuilds the channel from the saver's
``get_delta_channel_history``: the writes of the checkpoint's ancestors back to the
nearest stored value. So every read of this graph's state exercises that method, and a
saver that loses an ancestor's writes shows it as a wrong message list.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import pytest
import valkey
import valkey.asyncio
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage, ToolMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import _messages_delta_reducer
from langgraph.types import Command, interrupt
from typing_extensions import TypedDict

from streamstate import (
    AgentCoreMemorySaver,
    AgentCoreValkeySaver,
    AsyncBedrockSessionSaver,
    AsyncValkeySaver,
    BedrockSessionSaver,
    ValkeySaver,
)
from streamstate.testing.aws_emulator import AwsEmulator

SNAPSHOT_EVERY = 3
"""Small, so a thread has snapshots at several later steps and history between them."""


def delta_messages() -> Any:
    return DeltaChannel(_messages_delta_reducer, snapshot_frequency=SNAPSHOT_EVERY)


class Chat(TypedDict):
    messages: Annotated[list, delta_messages()]


# --------------------------------------------------------------------------- the graph


def _agent(state: Chat) -> dict[str, Any]:
    messages = state["messages"]
    last = messages[-1]
    n = len(messages)
    if isinstance(last, HumanMessage) and "weather" in str(last.content):
        city = str(last.content).rsplit(" ", 1)[-1]
        call = {"name": "weather", "args": {"city": city}, "id": f"call-{last.id}"}
        return {"messages": [AIMessage("", tool_calls=[call], id=f"ai-{last.id}-{n}")]}
    return {"messages": [AIMessage(f"answer after {n} messages", id=f"ai-final-{last.id}-{n}")]}


def _route(state: Chat) -> str:
    last = state["messages"][-1]
    return "approve" if isinstance(last, AIMessage) and last.tool_calls else END


def _approve(state: Chat) -> dict[str, Any]:
    call = state["messages"][-1].tool_calls[0]
    answer = interrupt({"run tool": call["name"], "city": call["args"]["city"]})
    return {"messages": [HumanMessage(f"approved: {answer}", id=f"ok-{call['id']}")]}


def _tools(state: Chat) -> dict[str, Any]:
    call = next(m for m in reversed(state["messages"]) if isinstance(m, AIMessage)).tool_calls[0]
    return {
        "messages": [
            ToolMessage(
                f"sunny in {call['args']['city']}", tool_call_id=call["id"], id=f"t-{call['id']}"
            )
        ]
    }


def _research_graph() -> Any:
    def look(state: Chat) -> dict[str, Any]:
        n = len(state["messages"])
        return {"messages": [AIMessage(f"looked at {n} messages", id=f"look-{n}")]}

    def confirm(state: Chat) -> dict[str, Any]:
        n = len(state["messages"])
        return {"messages": [AIMessage(f"confirmed: {interrupt('keep notes?')}", id=f"conf-{n}")]}

    sub = StateGraph(Chat)
    sub.add_node("look", look)
    sub.add_node("confirm", confirm)
    sub.add_edge(START, "look")
    sub.add_edge("look", "confirm")
    sub.add_edge("confirm", END)
    return sub.compile()


def chat_graph(checkpointer: Any) -> Any:
    """agent -> (tool call) approve [interrupt] -> tools -> research [subgraph with an
    interrupt] -> agent -> END."""
    g = StateGraph(Chat)
    g.add_node("agent", _agent)
    g.add_node("approve", _approve)
    g.add_node("tools", _tools)
    g.add_node("research", _research_graph())
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", _route, ["approve", END])
    g.add_edge("approve", "tools")
    g.add_edge("tools", "research")
    g.add_edge("research", "agent")
    return g.compile(checkpointer=checkpointer)


# --------------------------------------------------------------------------- driving it


@dataclass
class Driver:
    """Runs a graph through its sync or async API (an async saver needs the latter)."""

    graph: Any
    aio: bool

    async def invoke(self, value: Any, config: Any) -> Any:
        if self.aio:
            return await self.graph.ainvoke(value, config)
        return self.graph.invoke(value, config)

    async def state(self, config: Any, **kw: Any) -> Any:
        if self.aio:
            return await self.graph.aget_state(config, **kw)
        return self.graph.get_state(config, **kw)

    async def history(self, config: Any) -> list[Any]:
        if self.aio:
            return [s async for s in self.graph.aget_state_history(config)]
        return list(self.graph.get_state_history(config))

    async def update(self, config: Any, values: Any, **kw: Any) -> Any:
        if self.aio:
            return await self.graph.aupdate_state(config, values, **kw)
        return self.graph.update_state(config, values, **kw)


def shown(messages: list[Any]) -> list[tuple[str, str | None, str]]:
    """Messages as (type, id, content): what a user would see, comparable across savers."""
    return [(m.type, m.id, str(m.content)) for m in messages]


def outcome(out: Any) -> Any:
    """An invoke's result, comparable across savers."""
    result: dict[str, Any] = {"messages": shown(out.get("messages", []))}
    if "__interrupt__" in out:
        result["interrupts"] = [i.value for i in out["__interrupt__"]]
    return result


async def one_turn(drive: Driver, config: Any, text: str, transcript: list[Any]) -> None:
    """A user message, the tool approval interrupt, the subgraph's interrupt, done."""
    turn = uuid.uuid5(uuid.NAMESPACE_OID, text).hex[:8]
    transcript.append(
        outcome(await drive.invoke({"messages": [HumanMessage(text, id=turn)]}, config))
    )
    transcript.append(outcome(await drive.invoke(Command(resume="yes"), config)))
    transcript.append(outcome(await drive.invoke(Command(resume="keep"), config)))


async def scenario(drive: Driver, config: Any) -> list[Any]:
    """Three turns, an edit with ``update_state`` (a removal and an addition), a
    fourth turn, then a fork from the end of the first turn; returns what each step
    showed, including every state of the history."""
    transcript: list[Any] = []
    for city in ("Paris", "Oslo", "Lima"):
        await one_turn(drive, config, f"weather in {city}", transcript)
    first = (await drive.state(config)).values["messages"][0].id
    await drive.update(
        config,
        {"messages": [RemoveMessage(id=first), AIMessage("an edit", id="edit-1")]},
        as_node="agent",
    )
    transcript.append(shown((await drive.state(config)).values["messages"]))
    await one_turn(drive, config, "weather in Rome", transcript)
    history = await drive.history(config)
    transcript.append([(s.metadata["step"], shown(s.values.get("messages", []))) for s in history])
    # time travel: a new question from the state after the first turn
    after_first = next(s for s in reversed(history) if s.next == () and s.values.get("messages"))
    fork = await drive.invoke(
        {"messages": [HumanMessage("thanks", id="fork-1")]}, after_first.config
    )
    transcript.append(outcome(fork))
    transcript.append(shown((await drive.state(config)).values["messages"]))
    return transcript


# --------------------------------------------------------------------------- the savers


SAVERS = [
    "ValkeySaver",
    "AsyncValkeySaver",
    "AgentCoreValkeySaver",
    "AgentCoreMemorySaver",
    "BedrockSessionSaver",
    "AsyncBedrockSessionSaver",
]
ASYNC_ONLY = {"AsyncValkeySaver"}
"""Savers whose sync methods must not run on their own event loop: graphs use ainvoke."""


@dataclass
class Subject:
    """A saver under test and how to address a thread on it."""

    name: str
    saver: Any
    actor: str | None = None

    @property
    def aio(self) -> bool:
        return self.name in ASYNC_ONLY

    def config(self, thread: str | None = None) -> dict[str, Any]:
        configurable: dict[str, Any] = {"thread_id": thread or f"delta-{uuid.uuid4().hex[:12]}"}
        if self.actor is not None:
            configurable["actor_id"] = self.actor
        return {"configurable": configurable}

    def driver(self, graph_factory: Any = chat_graph) -> Driver:
        return Driver(graph_factory(self.saver), self.aio)


@pytest.fixture(scope="module")
def emulator() -> Iterator[AwsEmulator]:
    with AwsEmulator(page_cap=None) as emu:
        yield emu


@pytest.fixture(params=SAVERS)
async def subject(
    request: pytest.FixtureRequest, valkey_url: str, emulator: AwsEmulator
) -> AsyncIterator[Subject]:
    name = request.param
    if name == "AsyncValkeySaver":
        aclient = valkey.asyncio.Valkey.from_url(valkey_url)
        yield Subject(name, AsyncValkeySaver(aclient))
        await aclient.aclose()
        return
    if name in ("ValkeySaver", "AgentCoreValkeySaver"):
        client = valkey.Valkey.from_url(valkey_url)
        if name == "ValkeySaver":
            yield Subject(name, ValkeySaver(client))
        else:
            yield Subject(name, AgentCoreValkeySaver(client), actor="actor-1")
        client.close()
        return
    if name == "AgentCoreMemorySaver":
        memory = emulator.create_memory(f"delta{uuid.uuid4().hex[:8]}")
        saver = AgentCoreMemorySaver(memory, client=emulator.agentcore_client())
        yield Subject(name, saver, actor="actor-1")
        return
    cls = BedrockSessionSaver if name == "BedrockSessionSaver" else AsyncBedrockSessionSaver
    yield Subject(name, cls(client=emulator.agent_runtime_client()))
