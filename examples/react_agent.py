"""A ReAct-style agent whose thread lives in Valkey, with a human approval interrupt.

The "model" is a few lines of rules so the example runs offline; swap in any chat model
with tool calling (``ChatBedrockConverse``, ``ChatOpenAI``, ...) and nothing else changes.

    pip install 'streamstate[embedded,cli]'
    python examples/react_agent.py      # STREAMSTATE_URL=valkey://... to use your server
"""

from __future__ import annotations

import os
import uuid
from typing import Annotated

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, interrupt
from typing_extensions import TypedDict

from streamstate import ValkeySaver


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def get_weather(city: str) -> str:
    """The tool the agent may call."""
    return f"It is sunny and 21 degrees in {city}."


def model(state: State) -> dict:
    """Reason: ask for the tool on a weather question, answer once it has a result."""
    last = state["messages"][-1]
    if isinstance(last, ToolMessage):
        return {"messages": [AIMessage(f"Here you go: {last.content}")]}
    city = str(last.content).rstrip("?").split()[-1]
    call = {"name": "get_weather", "args": {"city": city}, "id": f"call-{uuid.uuid4().hex[:8]}"}
    return {"messages": [AIMessage("", tool_calls=[call])]}


def tools(state: State) -> dict:
    """Act, after a human approves the call (the run stops here until resumed)."""
    call = state["messages"][-1].tool_calls[0]
    if interrupt({"approve": call["name"], "args": call["args"]}) != "yes":
        return {"messages": [ToolMessage("The user declined.", tool_call_id=call["id"])]}
    result = get_weather(**call["args"])
    return {"messages": [ToolMessage(result, tool_call_id=call["id"])]}


def route(state: State) -> str:
    last = state["messages"][-1]
    return "tools" if isinstance(last, AIMessage) and last.tool_calls else END


def build(checkpointer: ValkeySaver):
    graph = StateGraph(State)
    graph.add_node("model", model)
    graph.add_node("tools", tools)
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", route, ["tools", END])
    graph.add_edge("tools", "model")
    return graph.compile(checkpointer=checkpointer)


def main() -> None:
    url = os.environ.get("STREAMSTATE_URL")  # None: the embedded server
    with ValkeySaver.from_conn_string(url, ttl_seconds=3600) as checkpointer:
        agent = build(checkpointer)
        config = {"configurable": {"thread_id": f"react-{uuid.uuid4().hex[:8]}"}}

        paused = agent.invoke(
            {"messages": [HumanMessage("What is the weather in Lisbon?")]}, config
        )
        print("interrupted, asking:", paused["__interrupt__"][0].value)

        # A later request, even in another process, resumes the same thread.
        done = build(checkpointer).invoke(Command(resume="yes"), config)
        print("answer:", done["messages"][-1].content)

        steps = list(agent.get_state_history(config))
        print(f"{len(steps)} checkpoints in thread {config['configurable']['thread_id']}")
        assert done["messages"][-1].content.endswith("21 degrees in Lisbon.")


if __name__ == "__main__":
    main()
