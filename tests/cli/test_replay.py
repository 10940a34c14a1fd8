"""``history``, ``show`` and ``replay [--fork]``: state rebuilt from the log == get_tuple."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import valkey

from streamstate import AgentCoreValkeySaver, ValkeySaver
from streamstate.audit import ValkeyAudit, describe_tuple, fork, history, replay
from streamstate.demo.agent import build_agent
from tests.cli.conftest import Result, interrupted_checkpoint


def _config(thread_id: str, checkpoint_id: str, ns: str = "") -> dict:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


def test_replay_equals_get_tuple(
    cli: Callable[..., Result], saver: ValkeySaver, agent_thread: str
) -> None:
    target = interrupted_checkpoint(saver, agent_thread)
    result = cli("replay", agent_thread, "--to", target, "--json")
    assert result.code == 0, result.err
    replayed = json.loads(result.out)
    assert replayed.pop("matches_live") is True
    live = saver.get_tuple(_config(agent_thread, target))
    assert replayed == json.loads(json.dumps(describe_tuple(live), default=str))
    assert any(w["channel"] == "__interrupt__" for w in replayed["pending_writes"])
    assert replayed["channel_values"]["draft"].startswith("Here is what I found")


def test_replay_of_every_checkpoint_never_reads_a_view(
    valkey_url: str, saver: ValkeySaver, agent_thread: str, client: valkey.Valkey
) -> None:
    tuples = list(saver.list({"configurable": {"thread_id": agent_thread}}))
    assert {t.config["configurable"]["checkpoint_ns"] != "" for t in tuples} == {True, False}
    # With every view of the thread gone, only the log is left to replay from.
    keys = saver.log.keyspace.session(("t", agent_thread))
    views = [keys.view(v) for v in ("v", "z")]
    dump = {k: client.dump(k) for k in views}
    client.delete(*views)
    try:
        for tup in tuples:
            conf = tup.config["configurable"]
            got = replay(valkey_url, agent_thread, conf["checkpoint_id"], ns=conf["checkpoint_ns"])
            assert got == tup
    finally:
        for k, v in dump.items():
            client.restore(k, 0, v, replace=True)


def test_replay_fork_starts_a_thread_there(
    cli: Callable[..., Result], saver: ValkeySaver, agent_thread: str
) -> None:
    target = interrupted_checkpoint(saver, agent_thread)
    fork_id = f"{agent_thread}-fork"
    result = cli("replay", agent_thread, "--to", target, "--fork", fork_id)
    assert result.code == 0, result.err
    assert f"forked {fork_id} at checkpoint {target}" in result.out
    source = saver.get_tuple(_config(agent_thread, target))
    forked = saver.get_tuple({"configurable": {"thread_id": fork_id}})
    assert forked is not None
    assert forked.config["configurable"]["checkpoint_id"] == target
    assert forked.checkpoint == source.checkpoint
    assert forked.metadata == source.metadata
    # the interrupt, the resume answer and review's writes stay with the original
    assert source.pending_writes and forked.pending_writes == []
    assert forked.parent_config["configurable"] == {
        **source.parent_config["configurable"],
        "thread_id": fork_id,
    }
    # The fork keeps the history up to the checkpoint, and nothing after it.
    ids = [h.checkpoint_id for h in history(saver, fork_id, ns="")]
    assert ids[0] == target and len(ids) == len(history(saver, agent_thread, ns="")) - 2
    # A second fork onto the same thread is refused.
    again = cli("replay", agent_thread, "--to", target, "--fork", fork_id)
    assert again.code == 2
    assert "already exists" in again.err


def test_fork_continues_as_a_langgraph_thread(saver: ValkeySaver, agent_thread: str) -> None:
    from langgraph.types import Command

    graph = build_agent(saver)
    target = interrupted_checkpoint(saver, agent_thread)
    fork_id = f"{agent_thread}-alt"
    config = fork(saver, agent_thread, target, fork_id)
    assert graph.invoke(None, config).get("__interrupt__")  # time travel re-runs review
    final = graph.invoke(
        Command(resume={"approved": False}), {"configurable": {"thread_id": fork_id}}
    )
    assert final["verdict"] == "rejected"
    original = graph.get_state({"configurable": {"thread_id": agent_thread}}).values
    assert original["verdict"] == "approved"


def test_history_and_show(
    cli: Callable[..., Result], saver: ValkeySaver, agent_thread: str
) -> None:
    result = cli("history", agent_thread, "--json")
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    listed = list(saver.list({"configurable": {"thread_id": agent_thread}}))
    assert len(rows) == len(listed)
    assert {r["checkpoint_id"] for r in rows} == {
        t.config["configurable"]["checkpoint_id"] for t in listed
    }
    review = [r for r in rows if "review" in r["writes"]]
    assert review and "verdict" in review[0]["writes"]["review"]

    root = history(saver, agent_thread, ns="", limit=2)
    assert [r.ns for r in root] == ["", ""]

    table = cli("history", agent_thread, "--ns", "", "--limit", "3")
    assert table.code == 0, table.err
    assert f"history of {agent_thread} (3 checkpoints)" in table.out
    assert "publish → answer, messages" in table.out and "research:" not in table.out

    shown = cli("show", agent_thread, "--json")
    assert shown.code == 0, shown.err
    latest = saver.get_tuple({"configurable": {"thread_id": agent_thread}})
    assert json.loads(shown.out) == json.loads(json.dumps(describe_tuple(latest), default=str))
    tree = cli("show", agent_thread)
    assert "tool weather: light rain" in tree.out and "verdict = 'approved'" in tree.out


def test_actor_sessions(cli: Callable[..., Result], client: valkey.Valkey) -> None:
    saver = AgentCoreValkeySaver(client)
    thread_id, actor = f"actor-{uuid.uuid4().hex[:8]}", "alice"
    graph = build_agent(saver)
    config = {"configurable": {"thread_id": thread_id, "actor_id": actor}}
    from langgraph.types import Command

    from streamstate.demo.agent import user_message

    graph.invoke({"messages": [user_message(2)]}, config)
    graph.invoke(Command(resume={"approved": True}), config)

    result = cli("replay", thread_id, "--actor", actor, "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["matches_live"] is True and doc["actor_id"] == actor
    audit = ValkeyAudit(client)
    assert audit.replay(thread_id, actor_id=actor) == saver.get_tuple(config)
