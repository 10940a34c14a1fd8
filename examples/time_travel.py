"""Time travel on the event log: list a thread's checkpoints, rebuild an old state
from the log alone, and fork a new thread from it.

    pip install 'streamstate[embedded,cli]'
    python examples/time_travel.py      # STREAMSTATE_URL=valkey://... to use your server

The same operations from a shell: ``streamstate history THREAD``,
``streamstate replay THREAD --to CHECKPOINT --fork NEW_THREAD``.
"""

from __future__ import annotations

import operator
import os
import uuid
from typing import Annotated

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

import streamstate
from streamstate import ValkeySaver


class State(TypedDict):
    steps: Annotated[list[str], operator.add]


def build(checkpointer: ValkeySaver):
    graph = StateGraph(State)
    graph.add_node("plan", lambda s: {"steps": ["plan"]})
    graph.add_node("draft", lambda s: {"steps": ["draft"]})
    graph.add_node("review", lambda s: {"steps": ["review"]})
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "draft")
    graph.add_edge("draft", "review")
    graph.add_edge("review", END)
    return graph.compile(checkpointer=checkpointer)


def main() -> None:
    url = os.environ.get("STREAMSTATE_URL")  # None: the embedded server
    thread = f"essay-{uuid.uuid4().hex[:8]}"
    with ValkeySaver.from_conn_string(url) as checkpointer:
        graph = build(checkpointer)
        final = graph.invoke({"steps": ["start"]}, {"configurable": {"thread_id": thread}})
        print("final:", final["steps"])

        # Every checkpoint, newest first, read from the thread's log.
        history = streamstate.history(checkpointer, thread)
        for entry in history:
            print(f"  step {entry.step}: {entry.checkpoint_id} wrote {entry.writes}")

        # The state after "plan", rebuilt from the log alone (no view is read).
        after_plan = next(e for e in history if e.step == 1)
        past = streamstate.replay(checkpointer, thread, after_plan.checkpoint_id)
        print("after plan:", past.checkpoint["channel_values"]["steps"])
        assert past.checkpoint["channel_values"]["steps"] == ["start", "plan"]

        # A new thread that starts there; running it redoes draft and review only.
        fork_config = streamstate.fork(
            checkpointer, thread, after_plan.checkpoint_id, f"{thread}-b"
        )
        forked = graph.invoke(None, fork_config)
        print("fork:", forked["steps"])
        assert forked["steps"] == final["steps"]
        original = graph.get_state({"configurable": {"thread_id": thread}})
        assert original.values["steps"] == final["steps"]


if __name__ == "__main__":
    main()
