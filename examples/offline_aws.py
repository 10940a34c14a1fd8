"""Test an agent that keeps its state in AWS without AWS: the AgentCore Memory and Bedrock
session emulator that streamstate's own tests use ships with the package.

    pip install 'streamstate[aws]' langgraph
    python examples/offline_aws.py

``AwsEmulator`` serves both APIs on a loopback port; clients made by it are real boto3
clients (the same serialisation, retries and errors as in production), so the savers run
unchanged. It enforces the APIs' shapes, limits and pagination, and can inject throttling
and server faults (``emulator.inject_fault(...)``). It keeps its state in memory.
"""

from __future__ import annotations

import operator
from typing import Annotated

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from streamstate import AgentCoreMemorySaver, BedrockSessionSaver
from streamstate.testing.aws_emulator import AwsEmulator


class State(TypedDict):
    steps: Annotated[list[str], operator.add]


def build(checkpointer):
    graph = StateGraph(State)
    graph.add_node("plan", lambda s: {"steps": ["plan"]})
    graph.add_node("act", lambda s: {"steps": ["act"]})
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "act")
    graph.add_edge("act", END)
    return graph.compile(checkpointer=checkpointer)


def main() -> None:
    with AwsEmulator() as emulator:
        # AgentCore Memory: a thread is a session of an actor
        memory_id = emulator.create_memory("offline")
        agentcore = AgentCoreMemorySaver(memory_id, client=emulator.agentcore_client())
        config = {"configurable": {"thread_id": "session-1", "actor_id": "agent-1"}}
        build(agentcore).invoke({"steps": []}, config)
        state = build(agentcore).get_state(config)
        assert state.values["steps"] == ["plan", "act"], state.values
        checkpoints = list(agentcore.list(config))
        print(f"AgentCore Memory: {len(checkpoints)} checkpoints, state {state.values}")

        # Bedrock sessions: a thread is a session
        bedrock = BedrockSessionSaver(client=emulator.agent_runtime_client())
        session_id = bedrock.session_client.create_session().session_id
        config = {"configurable": {"thread_id": session_id}}
        build(bedrock).invoke({"steps": []}, config)
        state = build(bedrock).get_state(config)
        assert state.values["steps"] == ["plan", "act"], state.values
        print(f"Bedrock session {session_id}: state {state.values}")


if __name__ == "__main__":
    main()
