"""``streamstate tail``: decoded events, live following, and an at-least-once audit group."""

from __future__ import annotations

import json
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import valkey

from streamstate import ValkeySaver
from streamstate.demo.agent import build_agent
from tests.cli.conftest import Result, run_agent, spawn_cli, stream_ids


def _lines(proc: Any) -> queue.Queue[str]:
    """A queue filled with the process's stdout lines by a reader thread."""
    out: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for raw in proc.stdout:
            out.put(raw.decode("utf-8"))

    threading.Thread(target=pump, daemon=True).start()
    return out


def _take(lines: queue.Queue[str], n: int, timeout: float = 20) -> list[dict[str, Any]]:
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(got)} of {n} lines: {got[-3:]}")
        try:
            got.append(json.loads(lines.get(timeout=left)))
        except queue.Empty:
            continue
    return got


def _wait_blocked_in_write(pid: int, timeout: float = 30) -> None:
    """Wait until the process sleeps writing to its full stdout pipe (Linux ``wchan``)."""
    wchan = Path(f"/proc/{pid}/wchan")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if "pipe_write" in wchan.read_text():
                return
        except OSError:  # no /proc: give it time to fill the pipe instead
            time.sleep(3)
            return
        time.sleep(0.05)
    raise AssertionError("the tail never filled its stdout pipe")


def _put_checkpoints(saver: ValkeySaver, thread_id: str, n: int, payload: int = 64) -> None:
    """``n`` checkpoints, each followed by one task's writes (two log events each)."""
    from langgraph.checkpoint.base import empty_checkpoint

    config: dict[str, Any] = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    for i in range(n):
        cp = empty_checkpoint()
        version = saver.get_next_version(None, None)
        cp["channel_values"] = {"notes": f"note {i}"}
        cp["channel_versions"] = {"notes": version}
        config = saver.put(config, cp, {"source": "loop", "step": i}, {"notes": version})
        saver.put_writes(config, [("notes", "x" * payload), ("count", i)], f"task-{i}")


def test_tail_prints_the_log_and_exits(cli: Callable[..., Result], agent_thread: str) -> None:
    result = cli("tail", agent_thread)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert any(" checkpoint " in line and "step -1 input" in line for line in lines)
    # a writes event: its node on the first line, then one indented line per write
    at = next(i for i, line in enumerate(lines) if " writes " in line and "by review" in line)
    assert lines[at + 1].startswith("    __interrupt__ = ")
    assert any("tool weather: light rain" in line for line in lines)


def test_tail_json_from_an_id(
    cli: Callable[..., Result], agent_thread: str, client: valkey.Valkey
) -> None:
    ids = stream_ids(client, ("t", agent_thread))
    result = cli("tail", agent_thread, "--json", "--from", ids[4])
    assert result.code == 0, result.err
    events = [json.loads(line) for line in result.out.splitlines()]
    assert [e["id"] for e in events] == ids[5:]
    assert {e["type"] for e in events} == {"checkpoint", "writes"}
    assert all(e["session"] == ["t", agent_thread] for e in events)
    writes = [e for e in events if e["type"] == "writes" and e["node"] == "publish"]
    assert writes and writes[0]["writes"][0]["channel"] == "answer"


def test_follow_sees_every_event_in_order(
    valkey_url: str, saver: ValkeySaver, client: valkey.Valkey
) -> None:
    thread_id = f"follow-{uuid.uuid4().hex[:10]}"
    # Started before the thread exists: following waits for it.
    proc = spawn_cli("tail", thread_id, "--follow", "--json", "--url", valkey_url)
    try:
        lines = _lines(proc)
        graph = build_agent(saver)
        run_agent(graph, thread_id, 0)
        first = len(stream_ids(client, ("t", thread_id)))
        seen = _take(lines, first)
        # More writes while the tail is following.
        run_agent(graph, thread_id, 1, approve=False)
        ids = stream_ids(client, ("t", thread_id))
        seen += _take(lines, len(ids) - first)
        assert [e["id"] for e in seen] == ids
        assert lines.empty()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert proc.returncode == 130
    assert b"Traceback" not in proc.stderr.read()


def test_group_resumes_after_kill(
    valkey_url: str, saver: ValkeySaver, client: valkey.Valkey
) -> None:
    thread_id = f"group-{uuid.uuid4().hex[:10]}"
    group_args = ("--group", "audit", "--consumer", "c1", "--format", "jsonl", "--url", valkey_url)
    # ~1.5 KB lines: a batch outgrows the pipe, so the consumer blocks in the middle of
    # it with printed but unacknowledged events, and is killed there.
    _put_checkpoints(saver, thread_id, 100, payload=1500)
    proc = spawn_cli("tail", thread_id, "--follow", *group_args)
    key = saver.log.keyspace.session(("t", thread_id)).log
    _wait_blocked_in_write(proc.pid)
    assert proc.poll() is None
    assert client.xinfo_groups(key)[0]["pending"] > 0
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    printed = proc.stdout.read().decode("utf-8").split("\n")[:-1]  # drop a cut line
    first = [json.loads(line)["id"] for line in printed]
    assert first, "the consumer printed nothing before it was killed"

    _put_checkpoints(saver, thread_id, 10)  # more events while no consumer runs
    proc2 = spawn_cli("tail", thread_id, *group_args)
    out, err = proc2.communicate(timeout=30)
    assert proc2.returncode == 0, err.decode()
    second = [json.loads(line)["id"] for line in out.decode("utf-8").splitlines()]

    ids = stream_ids(client, ("t", thread_id))
    assert set(first) | set(second) == set(ids), "an event was lost"
    assert second == sorted(second, key=lambda i: tuple(map(int, i.split("-"))))
    # What the killed consumer printed without acknowledging came again.
    assert set(first) & set(second)
    assert client.xinfo_groups(key)[0]["pending"] == 0


def test_tail_unknown_session(cli: Callable[..., Result]) -> None:
    # Without --follow; with it, the tail waits for the session to appear.
    result = cli("tail", f"nope-{uuid.uuid4().hex[:8]}")
    assert result.code == 2
    assert result.out == ""
    assert len(result.err.strip().splitlines()) == 1
    assert "not found" in result.err
