"""``streamstate fork``: a new thread at a checkpoint, without that checkpoint's pending
writes, so an interrupt there asks again (as LangGraph's own fork does); and ``history``
showing each checkpoint's own writes on update and fork rows."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from langgraph.types import Command

import streamstate
from streamstate import ValkeySaver
from streamstate.demo.agent import build_agent, user_message
from tests.cli.conftest import Result, interrupted_checkpoint


def _thread(thread_id: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    conf: dict[str, Any] = {"thread_id": thread_id}
    if checkpoint_id is not None:
        conf |= {"checkpoint_ns": "", "checkpoint_id": checkpoint_id}
    return {"configurable": conf}


def test_fork_asks_the_human_again(
    cli: Callable[..., Result], saver: ValkeySaver, agent_thread: str
) -> None:
    graph = build_agent(saver)
    target = interrupted_checkpoint(saver, agent_thread)
    source = saver.get_tuple(_thread(agent_thread, target))
    assert {c for _t, c, _v in source.pending_writes} >= {"__interrupt__", "__resume__"}

    fork_id = f"{agent_thread}-fork"
    made = cli("fork", agent_thread, fork_id, "--to", target[-8:], "--json")
    assert made.code == 0, made.err
    assert json.loads(made.out)["fork"] == {
        "thread_id": fork_id,
        "checkpoint_ns": "",
        "checkpoint_id": target,
    }
    forked = saver.get_tuple(_thread(fork_id))
    assert forked.config["configurable"]["checkpoint_id"] == target
    assert forked.checkpoint == source.checkpoint and forked.metadata == source.metadata
    assert forked.pending_writes == []  # no interrupt, no resume answer, no review writes
    assert graph.get_state(_thread(fork_id)).next == ("review",)

    # Resumed by its thread id, as any thread is: review runs again and interrupts again,
    # instead of reusing the original human's {"approved": True}.
    again = graph.invoke(None, _thread(fork_id))
    assert again["__interrupt__"][0].value["question"] == "Publish this answer?"
    assert "verdict" not in again
    final = graph.invoke(Command(resume={"approved": False}), _thread(fork_id))
    assert final["verdict"] == "rejected"
    assert graph.get_state(_thread(agent_thread)).values["verdict"] == "approved"


def test_fork_behaves_as_langgraphs_own_fork(saver: ValkeySaver, agent_thread: str) -> None:
    """LangGraph's fork of the same checkpoint (update_state as ``__copy__``) also leaves
    the pending writes behind and interrupts again when resumed: the same semantics."""
    from streamstate.audit import fork

    graph = build_agent(saver)
    target = interrupted_checkpoint(saver, agent_thread)
    ours = fork(saver, agent_thread, target, f"{agent_thread}-ours")
    theirs = graph.update_state(_thread(agent_thread, target), None, as_node="__copy__")
    for config in (ours, theirs):
        assert saver.get_tuple(config).pending_writes == []
        assert graph.invoke(None, config).get("__interrupt__"), config


def test_fork_needs_a_new_thread(cli: Callable[..., Result], agent_thread: str) -> None:
    first = cli("fork", agent_thread, f"{agent_thread}-f")
    assert first.code == 0, first.err
    assert "forked " in first.out and "runs the next step again" in first.out
    again = cli("fork", agent_thread, f"{agent_thread}-f")
    assert again.code == 2 and "already exists" in again.err
    missing = cli("fork", agent_thread, f"{agent_thread}-g", "--to", "ffffffff")
    assert missing.code == 2 and "not found" in missing.err


def test_history_shows_each_checkpoints_own_writes(
    cli: Callable[..., Result], saver: ValkeySaver
) -> None:
    graph = build_agent(saver)
    thread_id = f"own-{uuid.uuid4().hex[:10]}"
    config = _thread(thread_id)
    graph.invoke({"messages": [user_message(0)]}, config)
    waiting = graph.get_state(config).config
    # an update while review waits, then the resume, then LangGraph's fork of the wait
    graph.update_state(config, {"draft": "edited"}, as_node="draft")
    graph.invoke(Command(resume={"approved": True}), config)
    graph.update_state(waiting, None, as_node="__copy__")

    result = cli("history", thread_id, "--ns", "", "--json")
    assert result.code == 0, result.err
    rows = {r["source"]: r for r in json.loads(result.out) if r["source"] in ("update", "fork")}
    # the update row: the update's writes, not the waiting review's __interrupt__
    assert rows["update"]["writes"] == {"(update)": ["draft", "branch:to:review"]}
    # the fork row is a copy: no task's writes made it (not its parent's draft writes)
    assert rows["fork"]["writes"] == {}
    # the library says the same
    library = {h.source: h for h in streamstate.history(saver, thread_id, ns="")}
    assert library["update"].writes == rows["update"]["writes"]
    assert library["fork"].writes == {}

    table = cli("history", thread_id, "--ns", "")
    assert table.code == 0, table.err
    update_line = next(line for line in table.out.splitlines() if " update " in line)
    assert "(update) → draft, branch:to:review" in update_line
    assert "__interrupt__" not in update_line
