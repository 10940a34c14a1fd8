"""Helpers for driving the ``streamstate`` command line as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import valkey
from langgraph.types import Command

from streamstate import ValkeySaver
from streamstate.demo.agent import build_agent, user_message

CLI = [sys.executable, "-m", "streamstate.cli"]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: no inherited STREAMSTATE_URL, UTF-8 output."""
    env = {k: v for k, v in os.environ.items() if k != "STREAMSTATE_URL"}
    env["PYTHONIOENCODING"] = "utf-8"
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    """Run ``streamstate ARGS`` to completion."""
    proc = subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env or cli_env(),
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def spawn_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``streamstate ARGS`` in the background (stdout piped, binary)."""
    return subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or cli_env()
    )


@pytest.fixture
def cli(valkey_url: str) -> Callable[..., Result]:
    """``cli(*args)`` runs a command against the session's test server (``--url``)."""

    def call(*args: str, **kwargs: Any) -> Result:
        return run_cli(*args, "--url", valkey_url, **kwargs)

    return call


@pytest.fixture
def saver(valkey_url: str) -> Iterator[ValkeySaver]:
    client = valkey.Valkey.from_url(valkey_url)
    yield ValkeySaver(client)
    client.close()


def run_agent(graph: Any, thread_id: str, i: int = 0, *, approve: bool = True) -> None:
    """One demo-agent run on a thread: ask, pause at the review interrupt, resume."""
    config = {"configurable": {"thread_id": thread_id}}
    graph.invoke({"messages": [user_message(i)]}, config)
    graph.invoke(Command(resume={"approved": approve}), config)


@pytest.fixture
def agent_thread(saver: ValkeySaver) -> str:
    """A thread the demo agent ran on (research subgraph, interrupt, resume)."""
    thread_id = f"cli-{uuid.uuid4().hex[:10]}"
    run_agent(build_agent(saver), thread_id)
    return thread_id


def interrupted_checkpoint(saver: ValkeySaver, thread_id: str) -> str:
    """The root checkpoint where the agent waited in review (it holds the interrupt)."""
    for tup in saver.list({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}):
        if any(channel == "__interrupt__" for _t, channel, _v in tup.pending_writes or []):
            return tup.config["configurable"]["checkpoint_id"]
    raise AssertionError(f"no interrupted checkpoint in {thread_id}")


def stream_ids(client: valkey.Valkey, session: Sequence[str], prefix: str = "ss") -> list[str]:
    from streamstate.eventlog.keys import Keyspace

    key = Keyspace(prefix).session(session).log
    return [i.decode() for i, _ in client.xrange(key)]


def stop_embedded(data_dir: Path) -> None:
    """Stop the embedded server a CLI process left running for ``data_dir``, if any."""
    from streamstate.server import STATE_FILE, EmbeddedServer

    if (data_dir / STATE_FILE).exists():
        server = EmbeddedServer(data_dir)
        server.start()
        server.stop()
