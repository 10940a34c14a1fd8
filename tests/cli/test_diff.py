"""``streamstate diff``: what changed between two checkpoints, from the log alone."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import pytest
import valkey
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, RemoveMessage
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from rich.console import Console
from typing_extensions import TypedDict

from streamstate import ValkeySaver
from streamstate import inspect as si
from streamstate._inspect_cli import print_diff
from streamstate.audit import ValkeyAudit
from streamstate.demo.agent import build_agent, user_message
from streamstate.errors import ConfigError, NotFound
from tests.cli.conftest import Result, interrupted_checkpoint


def _checkpoints(saver: ValkeySaver, thread_id: str) -> list[str]:
    """Root checkpoint ids, oldest first."""
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    return [t.config["configurable"]["checkpoint_id"] for t in saver.list(config)][::-1]


def test_default_is_the_newest_against_its_parent(
    cli: Callable[..., Result], saver: ValkeySaver, agent_thread: str
) -> None:
    ids = _checkpoints(saver, agent_thread)
    result = cli("diff", agent_thread, "--json")
    assert result.code == 0, result.err
    d = json.loads(result.out)
    assert (d["from"]["checkpoint_id"], d["to"]["checkpoint_id"]) == (ids[-2], ids[-1])
    assert d["path"] == [ids[-2], ids[-1]]
    changes = {c["channel"]: c for c in d["channels"]}
    assert changes["answer"]["change"] == "added"
    assert changes["answer"]["after"].startswith("Here is what I found")
    (appended,) = changes["messages"]["messages"]
    assert appended["change"] == "appended"
    assert appended["after"]["content"] == changes["answer"]["after"]
    newest = saver.get_tuple({"configurable": {"thread_id": agent_thread}})
    assert appended["index"] == len(newest.checkpoint["channel_values"]["messages"]) - 1
    assert {m["key"]: (m["before"], m["after"]) for m in d["metadata"]}["step"] == (3, 4)
    assert [(t["node"], [w["channel"] for w in t["writes"]]) for t in d["tasks"]] == [
        ("publish", ["answer", "messages"])
    ]
    assert d["pending"] == [] and d["interrupts"] == [] and d["resumes"] == []


def test_interrupt_and_resume(
    cli: Callable[..., Result], saver: ValkeySaver, agent_thread: str
) -> None:
    waited = interrupted_checkpoint(saver, agent_thread)
    ids = _checkpoints(saver, agent_thread)
    after = ids[ids.index(waited) + 1]
    d = json.loads(cli("diff", agent_thread, waited, after, "--json").out)
    assert d["path"] == [waited, after]
    (interrupt,) = d["interrupts"]
    assert interrupt["node"] == "review" and interrupt["resumed"] is True
    assert interrupt["value"][0]["value"]["question"] == "Publish this answer?"
    resumes = {(r["node"], json.dumps(r["value"])) for r in d["resumes"]}
    assert ("(input)", json.dumps({"approved": True})) in resumes
    changes = {c["channel"]: c for c in d["channels"]}
    assert changes["verdict"] == {"channel": "verdict", "change": "added", "after": "approved"}


def test_a_waiting_interrupt_is_pending(saver: ValkeySaver) -> None:
    thread_id = f"wait-{uuid.uuid4().hex[:8]}"
    build_agent(saver).invoke(
        {"messages": [user_message(1)]}, {"configurable": {"thread_id": thread_id}}
    )
    d = si.diff(ValkeyAudit.from_saver(saver), thread_id)
    assert [(t.node, [c for c, _v in t.writes]) for t in d.pending] == [
        ("review", ["__interrupt__"])
    ]
    ((task, value, resumed),) = d.interrupts
    assert task.node == "review" and resumed is False
    assert value[0].value["question"] == "Publish this answer?"


def test_across_several_steps(
    cli: Callable[..., Result], saver: ValkeySaver, agent_thread: str
) -> None:
    ids = _checkpoints(saver, agent_thread)
    d = json.loads(cli("diff", agent_thread, ids[0], ids[-1], "--json").out)
    assert d["path"] == ids
    assert [t["node"] for t in d["tasks"]][:2] == ["__start__", "research"]
    (messages,) = [c for c in d["channels"] if c["channel"] == "messages"]
    assert messages["change"] == "added"
    assert [m["change"] for m in messages["messages"]] == ["appended"] * 6
    # the other way round is not a path along parent links
    back = json.loads(cli("diff", agent_thread, ids[-1], ids[0], "--json").out)
    assert back["path"] is None and back["tasks"] == []
    assert {m["change"] for c in back["channels"] for m in c.get("messages", [])} == {"removed"}


class Chat(TypedDict):
    messages: Annotated[list[BaseMessage], add_messages]


def test_messages_matched_by_id(valkey_url: str, client: valkey.Valkey) -> None:
    saver = ValkeySaver(client)

    def first(state: Chat) -> dict[str, Any]:
        return {"messages": [AIMessage("draft", id="a1"), AIMessage("aside", id="a2")]}

    def second(state: Chat) -> dict[str, Any]:
        return {
            "messages": [
                AIMessage("final", id="a1"),
                RemoveMessage(id="h1"),
                AIMessage("more", id="a3"),
            ]
        }

    g = StateGraph(Chat)
    g.add_node("first", first)
    g.add_node("second", second)
    g.add_edge(START, "first")
    g.add_edge("first", "second")
    graph = g.compile(checkpointer=saver)
    thread_id = f"msgs-{uuid.uuid4().hex[:8]}"
    graph.invoke(
        {"messages": [HumanMessage("hi", id="h1")]}, {"configurable": {"thread_id": thread_id}}
    )

    d = si.diff(valkey_url, thread_id)
    (change,) = [c for c in d.channels if c.channel == "messages"]
    got = [(m.change, m.id, m.index, m.fields) for m in change.messages or []]
    assert got == [
        ("edited", "a1", 0, ("content",)),
        ("appended", "a3", 2, ()),
        ("removed", "h1", 0, ()),
    ]
    edited = change.messages[0]
    assert (edited.before.content, edited.after.content) == ("draft", "final")


def test_built_on_the_log_not_the_views(
    valkey_url: str, saver: ValkeySaver, agent_thread: str, client: valkey.Valkey
) -> None:
    expected = si.diff(valkey_url, agent_thread).as_json()
    keys = saver.log.keyspace.session(("t", agent_thread))
    views = [keys.view(v) for v in ("v", "z")]
    dump = {k: client.dump(k) for k in views}
    client.delete(*views)
    try:
        assert si.diff(valkey_url, agent_thread).as_json() == expected
    finally:
        for k, v in dump.items():
            client.restore(k, 0, v, replace=True)


def test_names_and_errors(
    cli: Callable[..., Result], saver: ValkeySaver, agent_thread: str, valkey_url: str
) -> None:
    ids = _checkpoints(saver, agent_thread)
    by_tail = si.diff(valkey_url, agent_thread, "…" + ids[2][-8:])
    assert by_tail.after.checkpoint_id == ids[2]
    assert by_tail.before is not None and by_tail.before.checkpoint_id == ids[1]
    now = si.diff(valkey_url, agent_thread, "@now")
    assert now.after.checkpoint_id == ids[-1]
    with pytest.raises(NotFound, match="not found"):
        si.diff(valkey_url, agent_thread, "no-such-checkpoint")
    with pytest.raises(NotFound, match="was made by"):
        si.diff(valkey_url, agent_thread, "@2000-01-01T00:00:00Z")
    assert si.diff(valkey_url, agent_thread, ids[3][:23]).after.checkpoint_id == ids[3]
    with pytest.raises(ConfigError, match=r"names \d+ checkpoints"):
        si.diff(valkey_url, agent_thread, ids[0][:8])  # uuid6 ids of one run share a head
    for args in (("no-such-thread-x",), (agent_thread, "@yesterday")):
        result = cli("diff", *args)
        assert result.code == 2 and "Traceback" not in result.err, result


def test_text_fits_80_columns(
    cli: Callable[..., Result], valkey_url: str, saver: ValkeySaver, agent_thread: str
) -> None:
    ids = _checkpoints(saver, agent_thread)
    d = si.diff(valkey_url, agent_thread, ids[0], ids[-1])
    out = io.StringIO()
    print_diff(Console(file=out, width=80, color_system=None), d)
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any(line.startswith("  + answer = ") for line in lines)
    assert any("interrupt in review (resumed)" in line for line in lines)
    assert any("tasks whose writes made it" in line for line in lines)
    text = cli("diff", agent_thread)
    assert text.code == 0, text.err
    assert "+ answer = " in text.out and "~ messages: 1 appended" in text.out
