"""AgentCoreMemoryStore on the emulator: put -> extraction -> search, and the rest."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Annotated, Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.store.base import BaseStore, Item, SearchItem
from typing_extensions import TypedDict

from streamstate import AgentCoreMemorySaver, AgentCoreMemoryStore
from streamstate.errors import ConfigError
from streamstate.testing.aws_emulator import AwsEmulator
from tests.aws.test_agentcore_helpers import calls, emulator

__all__ = ["emulator"]


@pytest.fixture
def memory_id(emulator: AwsEmulator) -> str:
    # the emulator's extraction: every USER message becomes a record under /facts/<actor>
    return emulator.create_memory("store", extraction_namespace="/facts/{actorId}")


@pytest.fixture
def store(emulator: AwsEmulator, memory_id: str) -> AgentCoreMemoryStore:
    return AgentCoreMemoryStore(memory_id, client=emulator.agentcore_client())


@pytest.fixture
def actor() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def add_records(emulator: AwsEmulator, memory_id: str, namespace: str, *rows: Any) -> None:
    client = emulator.agentcore_client()
    records = [
        {
            "requestIdentifier": f"r{i}",
            "namespaces": [namespace],
            "content": {"text": text},
            "timestamp": datetime.now(timezone.utc),
            **({"metadata": metadata} if metadata else {}),
        }
        for i, (text, metadata) in enumerate(rows)
    ]
    reply = client.batch_create_memory_records(memoryId=memory_id, records=records)
    assert not reply["failedRecords"]


def test_put_message_is_extracted_and_searchable(
    emulator: AwsEmulator, store: AgentCoreMemoryStore, actor: str
) -> None:
    emulator.reset_calls()
    store.put((actor, "session-1"), "k1", {"message": HumanMessage("I like sushi with tuna")})
    assert calls(emulator) == {"CreateEvent": 1}
    (call,) = emulator.calls
    assert call.params["payload"][0] == {
        "conversational": {"content": {"text": "I like sushi with tuna"}, "role": "USER"}
    }
    store.put((actor, "session-1"), "k2", {"message": HumanMessage("seafood is great")})
    store.put((actor, "session-1"), "k3", {"message": AIMessage("noted: you like sushi")})

    results = store.search(("facts", actor), query="sushi tuna", limit=5)
    assert [r.value["content"] for r in results] == ["I like sushi with tuna", "seafood is great"]
    assert all(isinstance(r, SearchItem) and r.namespace == ("facts", actor) for r in results)
    assert results[0].score == 1.0 and results[0].score > results[1].score
    assert [
        r.value["content"] for r in store.search(("facts", actor), query="sushi tuna", offset=1)
    ] == [results[1].value["content"]]
    # the record by id, then deleted
    record = store.get(("facts", actor), results[0].key)
    assert isinstance(record, Item) and record.value["content"] == "I like sushi with tuna"
    store.delete(("facts", actor), results[0].key)
    assert store.get(("facts", actor), results[0].key) is None
    store.delete(("facts", actor), results[0].key)  # deleting twice is a no-op


def test_roles_keys_and_get_of_a_message(
    emulator: AwsEmulator, store: AgentCoreMemoryStore, actor: str
) -> None:
    ns = (actor, "s-2")
    messages = {
        "h": (HumanMessage("hello"), "USER"),
        "a": (AIMessage("hi"), "ASSISTANT"),
        "t": (ToolMessage("42", tool_call_id="call-1"), "TOOL"),
        "o": ({"role": "system", "content": "be brief"}, "OTHER"),
    }
    emulator.reset_calls()
    for key, (message, _) in messages.items():
        store.put(ns, key, {"message": message, "note": key})
    roles = [c.params["payload"][0]["conversational"]["role"] for c in emulator.calls]
    assert roles == [role for _, role in messages.values()]
    keys = [c.params["metadata"]["ss.key"]["stringValue"] for c in emulator.calls]
    assert keys == ["=h", "=a", "=t", "=o"]
    item = store.get(ns, "t")
    assert item.value == {"message": messages["t"][0], "note": "t"}
    assert item.key == "t" and item.namespace == ns
    store.delete(ns, "t")
    assert store.get(ns, "t") is None
    assert store.get(ns, "never-put") is None


def test_bad_values_and_namespaces_raise(store: AgentCoreMemoryStore, actor: str) -> None:
    with pytest.raises(ValueError, match="message"):
        store.put((actor, "s"), "k", {"text": "not a message"})
    with pytest.raises(ConfigError, match="actor_id, session_id"):
        store.put(("only-one",), "k", {"message": HumanMessage("x")})
    with pytest.raises(ConfigError, match=r"\$ne"):
        store.search(("facts",), query="x", filter={"a": {"$ne": 1}})


def test_search_filters_on_record_metadata(
    emulator: AwsEmulator, store: AgentCoreMemoryStore, memory_id: str
) -> None:
    add_records(
        emulator,
        memory_id,
        "/prefs/u1",
        ("likes green tea", {"topic": {"stringValue": "drinks"}, "rank": {"numberValue": 2}}),
        ("likes black coffee", {"topic": {"stringValue": "drinks"}, "rank": {"numberValue": 5}}),
        ("likes hiking", {"topic": {"stringValue": "sports"}, "rank": {"numberValue": 9}}),
    )
    drinks = store.search(("prefs",), query="likes", filter={"topic": "drinks"})
    assert sorted(r.value["content"] for r in drinks) == ["likes black coffee", "likes green tea"]
    ranked = store.search(("prefs", "u1"), query="likes", filter={"rank": {"$gte": 5}})
    assert sorted(r.value["metadata"]["rank"] for r in ranked) == [5, 9]
    unscored = store.search(("prefs",), limit=2)  # no query: listed, newest first
    assert [r.score for r in unscored] == [None, None] and len(unscored) == 2


def test_list_namespaces(
    emulator: AwsEmulator, store: AgentCoreMemoryStore, memory_id: str
) -> None:
    add_records(emulator, memory_id, "/a/x/1", ("one", None))
    add_records(emulator, memory_id, "/a/y/2", ("two", None))
    add_records(emulator, memory_id, "/b/x", ("three", None))
    assert store.list_namespaces(prefix=("a",)) == [("a", "x", "1"), ("a", "y", "2")]
    assert store.list_namespaces(prefix=("a",), max_depth=2) == [("a", "x"), ("a", "y")]
    assert store.list_namespaces(suffix=("x",)) == [("b", "x")]
    assert store.list_namespaces(limit=1, offset=1) == [("a", "y", "2")]


async def test_async_api(emulator: AwsEmulator, store: AgentCoreMemoryStore, actor: str) -> None:
    await store.aput((actor, "s-async"), "k", {"message": HumanMessage("async users like tea")})
    found = await store.asearch(("facts", actor), query="tea")
    assert [r.value["content"] for r in found] == ["async users like tea"]
    item = await store.aget((actor, "s-async"), "k")
    assert item.value["message"].content == "async users like tea"
    await store.adelete((actor, "s-async"), "k")
    assert await store.aget((actor, "s-async"), "k") is None


def test_seed_pre_model_hook_pattern_in_a_graph(
    emulator: AwsEmulator, memory_id: str, actor: str
) -> None:
    """The usage example of the package we replace, with a fake model."""
    store = AgentCoreMemoryStore(memory_id, client=emulator.agentcore_client())
    saver = AgentCoreMemorySaver(memory_id, client=emulator.agentcore_client())

    class State(TypedDict):
        messages: Annotated[list[Any], add_messages]

    def pre_model_hook(state: State, config: RunnableConfig, *, store: BaseStore) -> dict:
        namespace = (config["configurable"]["actor_id"], config["configurable"]["thread_id"])
        for msg in reversed(state["messages"]):
            if isinstance(msg, HumanMessage):
                store.put(namespace, str(uuid.uuid4()), {"message": msg})
                break
        return {}

    def model(state: State, *, store: BaseStore) -> dict:
        last = state["messages"][-1].content
        prefs = store.search(("facts", actor), query=last, limit=5)
        return {"messages": [AIMessage(f"{len(prefs)} memories")]}

    builder = StateGraph(State)
    builder.add_node("pre", pre_model_hook)
    builder.add_node("model", model)
    builder.add_edge(START, "pre")
    builder.add_edge("pre", "model")
    graph = builder.compile(checkpointer=saver, store=store)
    config = {"configurable": {"thread_id": "session-1", "actor_id": actor}}
    graph.invoke({"messages": [("human", "I like sushi with tuna")]}, config)
    out = graph.invoke({"messages": [("human", "what sushi do I like")]}, config)
    assert out["messages"][-1].content == "2 memories"
    assert len(graph.get_state(config).values["messages"]) == 4


@pytest.fixture(autouse=True)
def no_extraction_errors(emulator: AwsEmulator) -> Iterator[None]:
    yield
    assert emulator.extraction_errors == []
