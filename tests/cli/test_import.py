"""streamstate import: langgraph-checkpoint-aws Valkey data and SqliteSaver into streamstate.

The source data is written by the real packages (langgraph-checkpoint-aws on database 3
of a private server, SqliteSaver in a tmp file) by whole graph runs that stop at an
interrupt; after the import the run is resumed on streamstate and must end as it does
on the source, with the same history.
"""

from __future__ import annotations

import operator
import sqlite3
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
import valkey
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from streamstate import AgentCoreValkeySaver, ValkeySaver
from streamstate.importer import (
    ImportReport,
    SaverSource,
    ValkeyLayoutSource,
    import_checkpoints,
)
from streamstate.server import EmbeddedServer
from tests.cli.conftest import cli_env, run_cli

pytest.importorskip("langgraph_checkpoint_aws")


class State(TypedDict):
    log: Annotated[list[str], operator.add]
    answer: str


def _graph(checkpointer: Any) -> Any:
    def plan(state: State) -> dict[str, Any]:
        return {"log": ["plan"]}

    def ask(state: State) -> dict[str, Any]:
        return {"log": ["ask"], "answer": interrupt({"question": "ok?"})}

    def act(state: State) -> dict[str, Any]:
        return {"log": [f"act:{state['answer']}"]}

    b = StateGraph(State)
    b.add_node("plan", plan)
    b.add_node("ask", ask)
    b.add_node("act", act)
    b.add_edge(START, "plan")
    b.add_edge("plan", "ask")
    b.add_edge("ask", "act")
    b.add_edge("act", END)
    return b.compile(checkpointer=checkpointer)


def _history(graph: Any, config: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    return [
        (s.config["configurable"]["checkpoint_id"], s.values, s.next)
        for s in graph.get_state_history(config)
    ]


def _run_to_interrupt(graph: Any, config: dict[str, Any]) -> None:
    out = graph.invoke({"log": ["start"], "answer": ""}, config)
    assert "__interrupt__" in out


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    s = EmbeddedServer(tmp_path / "valkey").start()
    yield s
    s.stop()


def _db(url: str, n: int) -> str:
    base = url.split("?", 1)[0].rstrip("/")
    return f"{base}/{n}"


def _log_length(saver: ValkeySaver, sessions: list[tuple[str, ...]]) -> int:
    return sum(saver.log.length(s) for s in sessions)


def test_import_langgraph_checkpoint_aws_valkey(server: EmbeddedServer) -> None:
    from langgraph_checkpoint_aws import AgentCoreValkeySaver as AwsAgentCoreValkeySaver
    from langgraph_checkpoint_aws import ValkeySaver as AwsValkeySaver

    src_client = valkey.Valkey.from_url(_db(server.url, 3))
    dst_client = valkey.Valkey.from_url(server.url)
    aws = _graph(AwsValkeySaver(src_client))
    aws_ac = _graph(AwsAgentCoreValkeySaver(src_client))
    t1, t2 = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    c1 = {"configurable": {"thread_id": t1}}
    c2 = {"configurable": {"thread_id": t2, "actor_id": "alice"}}
    _run_to_interrupt(aws, c1)
    _run_to_interrupt(aws_ac, c2)

    target, actor_target = ValkeySaver(dst_client), AgentCoreValkeySaver(dst_client)
    source = ValkeyLayoutSource(src_client)
    report = import_checkpoints(source, target, actor_target=actor_target, verify=True)
    assert report.ok, report.mismatches
    assert report.threads == 2 and report.checkpoints >= 6 and report.writes >= 4

    sessions = [("t", t1), ("a", "alice", t2)]
    before = _log_length(target, sessions)
    again = import_checkpoints(source, target, actor_target=actor_target, verify=True)
    assert again.ok and again.checkpoints == report.checkpoints
    assert _log_length(target, sessions) == before  # nothing imported twice

    for src_graph, dst_saver, config in ((aws, target, c1), (aws_ac, actor_target, c2)):
        dst_graph = _graph(dst_saver)
        assert _history(dst_graph, config) == _history(src_graph, config)
        assert dst_graph.get_state(config).tasks[0].interrupts  # the pending interrupt
        # the AWS package's history order differs only by its own sorting of ids
        dst_final = dst_graph.invoke(Command(resume="yes"), config)
        src_final = src_graph.invoke(Command(resume="yes"), config)
        assert dst_final == src_final
        assert dst_final["log"] == ["start", "plan", "ask", "act:yes"]
    src_client.close()
    dst_client.close()


def _sqlite_graph(path: Path) -> tuple[Any, sqlite3.Connection]:
    conn = sqlite3.connect(path, check_same_thread=False)
    return _graph(SqliteSaver(conn)), conn


def test_import_sqlite_resumes_after_a_crash(server: EmbeddedServer, tmp_path: Path) -> None:
    path = tmp_path / "source.db"
    graph, conn = _sqlite_graph(path)
    threads = [f"s-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    for t in threads:
        _run_to_interrupt(graph, {"configurable": {"thread_id": t}})
    source = SaverSource(SqliteSaver(conn))
    client = valkey.Valkey.from_url(server.url)
    target = ValkeySaver(client)
    sessions = [("t", t) for t in threads]

    dry = import_checkpoints(source, target, dry_run=True)
    assert dry.checkpoints > 0 and _log_length(target, sessions) == 0

    class Crash(Exception):
        pass

    done = 0

    def crash_after_five(_: Any) -> None:
        nonlocal done
        done += 1
        if done == 5:
            raise Crash

    with pytest.raises(Crash):
        import_checkpoints(source, target, on_checkpoint=crash_after_five)
    partial = _log_length(target, sessions)
    assert partial > 0

    report = import_checkpoints(source, target, verify=True)
    assert report.ok, report.mismatches
    assert report.checkpoints == dry.checkpoints and report.writes == dry.writes
    full = _log_length(target, sessions)
    assert full > partial
    assert import_checkpoints(source, target).checkpoints == dry.checkpoints
    assert _log_length(target, sessions) == full

    dst = _graph(target)
    for t in threads:
        config = {"configurable": {"thread_id": t}}
        assert _history(dst, config) == _history(graph, config)
        imported = _history(graph, config)
        assert dst.invoke(Command(resume="no"), config) == graph.invoke(
            Command(resume="no"), config
        )
        src_after, dst_after = _history(graph, config), _history(dst, config)
        # new checkpoints get new ids on each side; the imported ones keep theirs
        assert [h[1:] for h in dst_after] == [h[1:] for h in src_after]
        assert dst_after[-len(imported) :] == imported == src_after[-len(imported) :]
    client.close()
    conn.close()


def test_cli_import_from_a_factory(server: EmbeddedServer, tmp_path: Path) -> None:
    path = tmp_path / "source.db"
    graph, conn = _sqlite_graph(path)
    thread = f"c-{uuid.uuid4().hex[:8]}"
    _run_to_interrupt(graph, {"configurable": {"thread_id": thread}})
    conn.close()
    module = tmp_path / "my_source.py"
    module.write_text(
        "from langgraph.checkpoint.sqlite import SqliteSaver\n"
        f"def make():\n    return SqliteSaver.from_conn_string({str(path)!r})\n"
    )
    env = cli_env(PYTHONPATH=f"{tmp_path}:{':'.join(sys.path)}")
    dry = run_cli("import", "my_source:make", "--dry-run", "--json", "--url", server.url, env=env)
    assert dry.code == 0, dry.err
    assert '"dry_run": true' in dry.out and '"threads": 1' in dry.out
    res = run_cli("import", "my_source:make", "--verify", "--url", server.url, env=env)
    assert res.code == 0, res.err
    assert "verified" in res.out
    bad = run_cli("import", "nope_module:make", "--url", server.url, env=env)
    assert bad.code == 2 and "nope_module" in bad.err


def test_report_counts_are_plain() -> None:
    assert ImportReport().ok
