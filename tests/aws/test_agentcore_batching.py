"""Batched saving on AgentCoreMemorySaver: CreateEvent calls per run, counted by the emulator.

A 6-node chain, run once per mode; the final state, the history (ids, values) and an
interrupt resumed must be the same in every mode, and the calls:

* ``off``: one CreateEvent per put and per put_writes (15 for 6 nodes);
* ``step``: one per checkpoint (the step's writes travel with it: 8);
* ``deferred``: one per run, whatever its length.
"""

from __future__ import annotations

import operator
import uuid
from typing import Annotated, Any

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from typing_extensions import TypedDict

from streamstate import AgentCoreMemorySaver
from streamstate.testing.aws_emulator import AwsEmulator
from tests.aws.test_agentcore_helpers import calls, emulator, in_process

__all__ = ["emulator"]

NODES = 6


class State(TypedDict):
    trail: Annotated[list[str], operator.add]
    answer: str


def chain(saver: AgentCoreMemorySaver, *, ask_at: int | None = None) -> Any:
    b = StateGraph(State)

    def node(i: int) -> Any:
        def run(state: State) -> dict[str, Any]:
            out: dict[str, Any] = {"trail": [f"n{i}"]}
            if i == ask_at:
                out["answer"] = interrupt(f"continue after n{i}?")
            return out

        return run

    for i in range(NODES):
        b.add_node(f"n{i}", node(i))
    b.add_edge(START, "n0")
    for i in range(NODES - 1):
        b.add_edge(f"n{i}", f"n{i + 1}")
    b.add_edge(f"n{NODES - 1}", END)
    return b.compile(checkpointer=saver)


def make(emulator: AwsEmulator, memory: str, batching: str) -> AgentCoreMemorySaver:
    client = in_process(emulator, emulator.agentcore_client())
    return AgentCoreMemorySaver(memory, client=client, batching=batching)


def cfg(saver: AgentCoreMemorySaver | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "configurable": {"thread_id": uuid.uuid4().hex, "actor_id": "user/alice"}
    }
    if saver is not None:
        config["callbacks"] = [saver.flush_handler()]
    return config


def history(graph: Any, config: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(s.values, s.next, s.metadata["step"]) for s in graph.get_state_history(config)]


def creates(emulator: AwsEmulator) -> int:
    return calls(emulator)["CreateEvent"]


@pytest.fixture
def memory(emulator: AwsEmulator) -> str:
    return emulator.create_memory("batching")


def run_counted(
    emulator: AwsEmulator, saver: AgentCoreMemorySaver, config: Any, durability: str = "sync"
) -> int:
    graph = chain(saver)
    emulator.reset_calls()
    out = graph.invoke({"trail": [], "answer": ""}, config, durability=durability)
    assert out["trail"] == [f"n{i}" for i in range(NODES)]
    saver.flush()
    return creates(emulator)


def test_create_event_calls_per_mode(emulator: AwsEmulator, memory: str) -> None:
    """With ``durability="sync"`` LangGraph saves in a fixed order, so counts are exact."""
    counts = {}
    histories = {}
    for mode in ("off", "step", "deferred"):
        saver = make(emulator, memory, mode)
        config = cfg(saver if mode == "deferred" else None)
        counts[mode] = run_counted(emulator, saver, config)
        assert saver.pending == 0
        plain = {"configurable": config["configurable"]}
        histories[mode] = history(chain(saver), plain)
        # a fresh saver (another process) reads the same thread back
        assert history(chain(make(emulator, memory, "off")), plain) == histories[mode]
    print(f"\nCreateEvent calls for one {NODES}-node run: {counts}")
    puts = NODES + 2  # the input checkpoint, the first step's, one per node
    writes = NODES + 1  # the input task's, one per node
    assert counts["off"] == puts + writes
    assert counts["step"] == puts  # every step's writes travel with its checkpoint
    assert counts["deferred"] == 1
    assert histories["off"] == histories["step"] == histories["deferred"]


def test_calls_with_async_durability(emulator: AwsEmulator, memory: str) -> None:
    """LangGraph's default saves in the background: a step's writes may reach the saver
    after the next checkpoint, and then wait for the one after (or the flush)."""
    counts = {}
    for mode in ("off", "step", "deferred"):
        saver = make(emulator, memory, mode)
        config = cfg(saver if mode == "deferred" else None)
        counts[mode] = run_counted(emulator, saver, config, durability="async")
    print(f"\nwith durability='async': {counts}")
    assert counts["off"] == 2 * NODES + 3
    assert NODES + 2 <= counts["step"] < counts["off"]
    assert counts["deferred"] == 1


def test_deferred_flushes_at_the_end_of_the_run(emulator: AwsEmulator, memory: str) -> None:
    saver = make(emulator, memory, "deferred")
    config = cfg(saver)
    emulator.reset_calls()
    chain(saver).invoke({"trail": [], "answer": ""}, config)
    assert creates(emulator) == 1 and saver.pending == 0  # the handler flushed


def test_deferred_loses_what_was_never_flushed(emulator: AwsEmulator, memory: str) -> None:
    saver = make(emulator, memory, "deferred")
    config = cfg()  # no flush handler: a crash before any flush
    chain(saver).invoke({"trail": [], "answer": ""}, config)
    assert saver.pending > 0
    other = make(emulator, memory, "off")
    assert other.get_tuple(config) is None  # never sent
    with saver:
        pass
    assert saver.pending == 0
    assert other.get_tuple(config).checkpoint["channel_values"]["trail"] == [
        f"n{i}" for i in range(NODES)
    ]


@pytest.mark.parametrize("mode", ["step", "deferred"])
def test_interrupt_resumes_the_same(emulator: AwsEmulator, memory: str, mode: str) -> None:
    results = {}
    for m in ("off", mode):
        saver = make(emulator, memory, m)
        config = cfg(saver)
        graph = chain(saver, ask_at=3)
        first = graph.invoke({"trail": [], "answer": ""}, config)
        assert first["__interrupt__"]
        # another saver (process) sees the pending interrupt
        reader = chain(make(emulator, memory, "off"), ask_at=3)
        plain = {"configurable": config["configurable"]}
        assert reader.get_state(plain).tasks[0].interrupts
        final = reader.invoke(Command(resume="yes"), plain)
        results[m] = (final, history(reader, plain))
    assert results["off"][0] == results[mode][0]
    assert results["off"][0]["answer"] == "yes"
    assert [h[1:] for h in results["off"][1]] == [h[1:] for h in results[mode][1]]
    assert [h[0] for h in results["off"][1]] == [h[0] for h in results[mode][1]]


def test_list_and_get_by_id_inside_a_batch(emulator: AwsEmulator, memory: str) -> None:
    saver = make(emulator, memory, "deferred")
    config = cfg(saver)
    chain(saver).invoke({"trail": [], "answer": ""}, config)
    reader = make(emulator, memory, "off")
    plain = {"configurable": config["configurable"]}
    listed = list(reader.list(plain))
    assert len(listed) == NODES + 2
    for tup in listed:
        again = reader.get_tuple(tup.config)
        assert again is not None
        assert again.checkpoint == tup.checkpoint
        assert again.pending_writes == tup.pending_writes
    reader.prune([plain["configurable"]["thread_id"]], actor_id="user/alice")
    left = list(reader.list(plain))
    assert len(left) == 1 and left[0].checkpoint == listed[0].checkpoint
