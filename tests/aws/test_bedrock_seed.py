"""The langgraph-checkpoint-aws README examples for the Bedrock session savers, run
verbatim against the emulator with only the import changed.

The examples name a region and the ``default`` profile and no endpoint, so the test
provides what a user's machine would: a credentials file with a ``default`` profile,
and botocore's ``AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME`` pointing at the emulator.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamstate.testing.aws_emulator import AwsEmulator

SYNC_EXAMPLE = """
from langgraph.graph import StateGraph
from streamstate import BedrockSessionSaver

# Initialize the saver
session_saver = BedrockSessionSaver(
    region_name="us-west-2",  # Your AWS region
    credentials_profile_name="default",  # Optional: AWS credentials profile
)

# Create a session
session_id = session_saver.session_client.create_session().session_id

# Use with LangGraph
builder = StateGraph(int)
builder.add_node("add_one", lambda x: x + 1)
builder.set_entry_point("add_one")
builder.set_finish_point("add_one")

graph = builder.compile(checkpointer=session_saver)
config = {"configurable": {"thread_id": session_id}}
graph.invoke(1, config)
"""

ASYNC_EXAMPLE = """
from langgraph.graph import StateGraph
from streamstate import AsyncBedrockSessionSaver

# Initialize the saver
session_saver = AsyncBedrockSessionSaver(
    region_name="us-west-2",  # Your AWS region
    credentials_profile_name="default",  # Optional: AWS credentials profile
)

# Create a session
session_create_response = await session_saver.session_client.create_session()
session_id = session_create_response.session_id

# Use with LangGraph
builder = StateGraph(int)
builder.add_node("add_one", lambda x: x + 1)
builder.set_entry_point("add_one")
builder.set_finish_point("add_one")

graph = builder.compile(checkpointer=session_saver)
config = {"configurable": {"thread_id": session_id}}
await graph.ainvoke(1, config)
"""

ASYNC_USAGE = """
from streamstate import AsyncBedrockSessionSaver

# Async Bedrock usage
session_saver = AsyncBedrockSessionSaver(region_name="us-west-2")
session_id = (await session_saver.session_client.create_session()).session_id
"""


@pytest.fixture(scope="module")
def emulator() -> Iterator[AwsEmulator]:
    with AwsEmulator(page_cap=None) as emu:
        yield emu


@pytest.fixture
def aws_env(emulator: AwsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AwsEmulator:
    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = t\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME", emulator.endpoint_url)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return emulator


async def _run_async(source: str) -> dict[str, Any]:
    body = textwrap.indent(source, "    ")
    namespace: dict[str, Any] = {}
    exec(f"async def example():\n{body}\n    return locals()", namespace)
    return await namespace["example"]()


def test_sync_example(aws_env: AwsEmulator) -> None:
    namespace: dict[str, Any] = {}
    exec(SYNC_EXAMPLE, namespace)
    graph, config = namespace["graph"], namespace["config"]
    assert graph.get_state(config).values == 2
    session = aws_env.agent_runtime_client().get_session(sessionIdentifier=namespace["session_id"])
    assert session["sessionStatus"] == "ACTIVE"
    assert graph.invoke(5, config) == 6
    assert len(list(graph.get_state_history(config))) == 6


async def test_async_example(aws_env: AwsEmulator) -> None:
    namespace = await _run_async(ASYNC_EXAMPLE)
    graph, config = namespace["graph"], namespace["config"]
    assert (await graph.aget_state(config)).values == 2
    assert namespace["session_saver"].get_tuple(config).checkpoint["channel_values"] == {
        "__root__": 2
    }


async def test_async_usage_snippet(aws_env: AwsEmulator) -> None:
    namespace = await _run_async(ASYNC_USAGE)
    info = await namespace["session_saver"].session_client.get_session(namespace["session_id"])
    assert info.session_status == "ACTIVE"
