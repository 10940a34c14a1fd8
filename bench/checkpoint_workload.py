"""The checkpoint benches' workload: one real LangGraph thread, recorded once, replayed.

A ``StateGraph`` whose ``messages`` channel grows from 10 to 50 messages of ~250
characters (HumanMessage / AIMessage alternating), plus small ``turn``, ``status`` and
``stats`` channels; two tasks per superstep, so each checkpoint gets two ``put_writes``
of 2-3 writes. :class:`ThreadOps` replays it under a new ``thread_id`` and ``run_id``.
"""

from __future__ import annotations

import copy
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

_VOCABULARY = (
    "the of and to in is that for it as with was on be by this are from at or an have not "
    "which but agent tool result search weather order invoice customer account refund "
    "shipping policy model answer question context memory token stream delivery address "
    "payment status ticket update summary request"
)
_WORDS = tuple(_VOCABULARY.split())


@dataclass
class Step:
    """One checkpoint of the recorded thread and the writes made against it."""

    parent_id: str | None
    checkpoint: dict[str, Any]
    metadata: dict[str, Any]
    new_versions: dict[str, Any]
    writes: list[tuple[str, list[tuple[str, Any]], str]]  # (task_id, writes, task_path)
    n_messages: int

    @property
    def id(self) -> str:
        return self.checkpoint["id"]


def record_trace(history: int = 10, target: int = 50, seed: int = 7) -> list[Step]:
    """Run a small agent graph on a recording InMemorySaver; return its checkpoints."""
    from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.graph.message import add_messages

    rng = random.Random(seed)

    def text(n: int = 250) -> str:
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < n + 20:
            words.append(rng.choice(_WORDS))
        return " ".join(words)[:n]

    def message(i: int) -> Any:
        return HumanMessage(text()) if i % 2 == 0 else AIMessage(text())

    # functional form: evaluated now (this module uses postponed annotations)
    State = TypedDict(  # type: ignore[misc]  # noqa: UP013
        "State",
        {
            "messages": Annotated[list[AnyMessage], add_messages],
            "turn": int,
            "status": str,
            "stats": dict[str, int],
        },
    )

    def agent(s: State) -> dict[str, Any]:
        return {"messages": [message(len(s["messages"]))], "turn": s["turn"] + 1}

    def monitor(s: State) -> dict[str, Any]:
        n = len(s["messages"])
        return {"stats": {"messages": n, "tokens": 62 * n}}

    def route(node: str) -> Callable[[State], str]:
        return lambda s: node if len(s["messages"]) < target else END

    graph = StateGraph(State)
    graph.add_node("agent", agent)
    graph.add_node("monitor", monitor)
    graph.add_edge(START, "agent")
    graph.add_edge(START, "monitor")
    graph.add_conditional_edges("agent", route("agent"), ["agent", END])
    graph.add_conditional_edges("monitor", route("monitor"), ["monitor", END])

    calls: list[tuple[str, Any]] = []

    class Recorder(InMemorySaver):
        def put(self, config, checkpoint, metadata, new_versions):  # type: ignore[no-untyped-def]
            calls.append(
                (
                    "put",
                    copy.deepcopy(
                        (
                            config["configurable"].get("checkpoint_id"),
                            checkpoint,
                            dict(metadata),
                            new_versions,
                        )
                    ),
                )
            )
            return super().put(config, checkpoint, metadata, new_versions)

        def put_writes(self, config, writes, task_id, task_path=""):  # type: ignore[no-untyped-def]
            calls.append(
                (
                    "put_writes",
                    copy.deepcopy(
                        (config["configurable"]["checkpoint_id"], list(writes), task_id, task_path)
                    ),
                )
            )
            return super().put_writes(config, writes, task_id, task_path)

    app = graph.compile(checkpointer=Recorder())
    app.invoke(
        {
            "messages": [message(i) for i in range(history)],
            "turn": 0,
            "status": "open",
            "stats": {},
        },
        {"configurable": {"thread_id": "recording"}, "recursion_limit": 4 * target},
        durability="sync",  # checkpoints saved in order, before the next step's writes
    )
    steps: list[Step] = []
    by_id: dict[str, Step] = {}
    for kind, args in calls:
        if kind == "put":
            parent, cp, md, nv = args
            md.pop("thread_id", None)
            msgs = cp["channel_values"].get("messages") or []
            step = Step(parent, cp, md, nv, [], len(msgs))
            steps.append(step)
            by_id[step.id] = step
    for kind, args in calls:
        if kind == "put_writes":
            cid, writes, task_id, task_path = args
            by_id[cid].writes.append((task_id, writes, task_path))
    return steps


@dataclass
class ThreadOps:
    """The recorded thread replayed under a new thread_id and run_id (configs prebuilt)."""

    thread_id: str
    puts: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]]
    writes: list[list[tuple[dict[str, Any], list[tuple[str, Any]], str, str]]]
    ids: list[str]

    @classmethod
    def build(cls, trace: Sequence[Step], thread_id: str, steps: int | None = None) -> ThreadOps:
        run_id = str(uuid.uuid4())
        puts, writes, ids = [], [], []
        for step in trace[:steps]:
            conf: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
            if step.parent_id:
                conf["checkpoint_id"] = step.parent_id
            md = {**step.metadata, "run_id": run_id}
            puts.append(({"configurable": conf}, step.checkpoint, md, step.new_versions))
            wconf = {
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": "",
                    "checkpoint_id": step.id,
                }
            }
            writes.append([(wconf, w, t, p) for t, w, p in step.writes])
            ids.append(step.id)
        return cls(thread_id, puts, writes, ids)

    def latest_config(self) -> dict[str, Any]:
        return {"configurable": {"thread_id": self.thread_id, "checkpoint_ns": ""}}

    def id_config(self, cid: str) -> dict[str, Any]:
        return {
            "configurable": {"thread_id": self.thread_id, "checkpoint_ns": "", "checkpoint_id": cid}
        }
