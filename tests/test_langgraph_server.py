"""The LangGraph Server factories, driven as the server drives them.

``langgraph-api`` (the server behind ``langgraph dev``) imports the object a
``langgraph.json`` ``path`` names (a dotted module path, or ``./file.py:name``), calls
it, enters the async context manager it returns once per event-loop thread, checks
which optional methods the yielded saver overrides, runs graphs through it, and exits it
at shutdown. ``load`` and ``serve`` below do the same steps, so these tests need no
server installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import random
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import valkey
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.conformance.capabilities import DetectedCapabilities
from langgraph.config import get_store
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.store.base import BaseStore
from langgraph.types import Command, interrupt
from typing_extensions import TypedDict

from streamstate import AsyncValkeySaver, AsyncValkeyStore
from streamstate.errors import ConfigError
from streamstate.langgraph_server import ServerSettings

CHECKPOINTER = "streamstate.langgraph_server.checkpointer"
STORE = "streamstate.langgraph_server.store"


def load(path: str) -> Any:
    """What the server does with a ``path``: a file when it has ``/`` or ``.py:``,
    else ``module.attribute`` split at the last dot."""
    if "/" in path or ".py:" in path:
        file, name = path.rsplit(":", 1)
        spec = importlib.util.spec_from_file_location(f"m{uuid.uuid4().hex}", file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module_name, name = path.rsplit(".", 1)
        module = importlib.import_module(module_name)
    return module.__dict__[name]


@contextlib.asynccontextmanager
async def serve(value: Any) -> AsyncIterator[Any]:
    """Enter what ``load`` gave as the server does: an instance as is, a context
    manager entered, a callable called and its result entered."""
    if isinstance(value, (BaseCheckpointSaver, BaseStore)):
        yield value
    elif hasattr(value, "__aenter__"):
        async with value as inner:
            yield inner
    elif callable(value):
        async with serve(value()) as inner:
            yield inner
    else:
        raise AssertionError(f"the server cannot use {value!r}")


def server_versions(current: Any, channel: Any = None) -> str:
    """The channel versions the server's checkpointer wrapper hands to graphs."""
    if current is None:
        number = 0
    elif isinstance(current, int):
        number = current
    else:
        number = int(str(current).split(".")[0])
    return f"{number + 1:032}.{random.random():.16f}"


class Chat(TypedDict):
    messages: Annotated[list, add_messages]


def agent_graph(saver: Any, store: Any = None) -> Any:
    """A node that remembers the user's words in the store and asks before answering."""

    def remember(state: Chat) -> dict[str, Any]:
        words = str(state["messages"][-1].content)
        if store is not None:
            get_store().put(("user", "alice"), words.split()[-1], {"text": words})
        return {"messages": [AIMessage(f"noted: {words}", id=f"a{len(state['messages'])}")]}

    def confirm(state: Chat) -> dict[str, Any]:
        answer = interrupt("send it?")
        return {"messages": [AIMessage(f"sent ({answer})", id=f"s{len(state['messages'])}")]}

    g = StateGraph(Chat)
    g.add_node("remember", remember)
    g.add_node("confirm", confirm)
    g.add_edge(START, "remember")
    g.add_edge("remember", "confirm")
    g.add_edge("confirm", END)
    return g.compile(checkpointer=saver, store=store)


@pytest.fixture
def server_env(monkeypatch: pytest.MonkeyPatch, valkey_url: str) -> str:
    """The environment of a server pointed at the test Valkey, with its own prefix."""
    prefix = f"lgs{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("STREAMSTATE_URL", valkey_url)
    monkeypatch.setenv("STREAMSTATE_PREFIX", prefix)
    monkeypatch.setenv("STREAMSTATE_TTL_SECONDS", "600")
    monkeypatch.setenv("STREAMSTATE_REFRESH_ON_READ", "true")
    for name in (
        "STREAMSTATE_STORE_TTL_SECONDS",
        "STREAMSTATE_STORE_INDEX",
        "STREAMSTATE_POOL_SIZE",
    ):
        monkeypatch.delenv(name, raising=False)
    return prefix


async def test_checkpointer_runs_graphs_as_the_server_uses_it(
    server_env: str, valkey_url: str
) -> None:
    async with serve(load(CHECKPOINTER)) as saver:
        assert isinstance(saver, AsyncValkeySaver)
        # every optional capability the server and the conformance suite probe for
        capabilities = DetectedCapabilities.from_instance(saver)
        assert not capabilities.missing, capabilities.missing
        for method in ("adelete_thread", "adelete_for_runs", "acopy_thread", "aprune"):
            assert getattr(type(saver), method) is not getattr(BaseCheckpointSaver, method)
        # environment honoured
        assert saver.ttl == 600
        assert saver.log.keyspace.prefix == server_env
        assert saver._core.refresh_on_read
        saver.get_next_version = server_versions  # type: ignore[method-assign]
        graph = agent_graph(saver)
        config = {"configurable": {"thread_id": str(uuid.uuid4())}}
        out = await graph.ainvoke({"messages": [HumanMessage("hello", id="h1")]}, config)
        assert out["__interrupt__"][0].value == "send it?"
        done = await graph.ainvoke(Command(resume="yes"), config)
        assert [m.content for m in done["messages"]] == ["hello", "noted: hello", "sent (yes)"]
        thread = config["configurable"]["thread_id"]
        copy = str(uuid.uuid4())
        await saver.acopy_thread(thread, copy)
        await saver.aprune([copy], strategy="keep_latest")
        state = await graph.aget_state({"configurable": {"thread_id": copy}})
        assert [m.content for m in state.values["messages"]][-1] == "sent (yes)"
        await saver.adelete_thread(copy)
        assert await saver.aget_tuple({"configurable": {"thread_id": copy}}) is None
    # the thread's keys carry the prefix and the TTL
    client = valkey.Valkey.from_url(valkey_url)
    try:
        keys = [k.decode() for k in client.scan_iter(match=f"{server_env}:*", count=1000)]
        assert any(thread in k for k in keys)
        ttls = [client.pttl(k) for k in keys if thread in k]
        assert ttls and all(0 < t <= 600_000 for t in ttls)
    finally:
        client.close()


async def test_one_checkpointer_per_event_loop_thread(server_env: str) -> None:
    """The server enters the factory once per thread that runs an event loop."""
    factory = load(CHECKPOINTER)
    results: list[Any] = []

    async def worker(n: int) -> None:
        async with serve(factory) as saver:
            graph = agent_graph(saver)
            config = {"configurable": {"thread_id": f"worker-{n}-{uuid.uuid4().hex}"}}
            await graph.ainvoke({"messages": [HumanMessage(f"w{n}", id=f"h{n}")]}, config)
            done = await graph.ainvoke(Command(resume="ok"), config)
            results.append((n, saver, done["messages"][-1].content))

    threads = [threading.Thread(target=asyncio.run, args=(worker(n),)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted((n, text) for n, _s, text in results) == [(0, "sent (ok)"), (1, "sent (ok)")]
    assert results[0][1] is not results[1][1]


EMBED = '''
def embed(texts):
    """A tiny deterministic embedding: counts of four letters."""
    return [[float(t.count(c)) + 0.01 for c in "aeio"] for t in texts]
'''


async def test_store_serves_a_graph_with_semantic_search(
    server_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "embed.py").write_text(EMBED)
    index = f'{{"dims": 4, "embed": "{tmp_path}/embed.py:embed", "index_type": "flat"}}'
    monkeypatch.setenv("STREAMSTATE_STORE_INDEX", index)
    monkeypatch.setenv("STREAMSTATE_STORE_TTL_SECONDS", "3600")
    async with serve(load(STORE)) as memory, serve(load(CHECKPOINTER)) as saver:
        assert isinstance(memory, AsyncValkeyStore)
        assert memory.ttl_config == {"default_ttl": 60.0, "refresh_on_read": True}
        graph = agent_graph(saver, memory)
        for words in ("aaaa banana", "ooo potato"):
            config = {"configurable": {"thread_id": str(uuid.uuid4())}}
            await graph.ainvoke({"messages": [HumanMessage(words, id="h1")]}, config)
        hits = await memory.asearch(("user", "alice"), query="a fan of bananas", limit=2)
        assert [h.value["text"] for h in hits] == ["aaaa banana", "ooo potato"]
        assert (await memory.aget(("user", "alice"), "banana")).value == {"text": "aaaa banana"}


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("STREAMSTATE_TTL_SECONDS", "soon", "STREAMSTATE_TTL_SECONDS"),
        ("STREAMSTATE_TTL_SECONDS", "-5", "STREAMSTATE_TTL_SECONDS"),
        ("STREAMSTATE_STORE_TTL_SECONDS", "0", "STREAMSTATE_STORE_TTL_SECONDS"),
        ("STREAMSTATE_REFRESH_ON_READ", "maybe", "STREAMSTATE_REFRESH_ON_READ"),
        ("STREAMSTATE_POOL_SIZE", "0", "STREAMSTATE_POOL_SIZE"),
        ("STREAMSTATE_STORE_INDEX", "{dims: 4}", "STREAMSTATE_STORE_INDEX"),
        ("STREAMSTATE_STORE_INDEX", '{"dims": 4, "embed": "./nowhere.py:f"}', "nowhere.py"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        ServerSettings.from_env({name: value})


def test_defaults_and_store_ttl_in_minutes() -> None:
    assert ServerSettings.from_env({}) == ServerSettings()
    settings = ServerSettings.from_env(
        {"STREAMSTATE_STORE_TTL_SECONDS": "90", "STREAMSTATE_REFRESH_ON_READ": "0"}
    )
    assert settings.store_ttl() == {"default_ttl": 1.5, "refresh_on_read": False}
    assert ServerSettings.from_env({}).store_ttl() is None
