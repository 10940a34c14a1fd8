"""The AWS emulator, exercised only through real boto3 clients (and raw HTTP where
botocore's own client-side validation would stop a request before it is sent)."""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.paginate import TokenDecoder
from hypothesis import given, settings
from hypothesis import strategies as st

from streamstate.testing.aws_emulator import (
    AGENT_RUNTIME,
    AGENTCORE,
    AwsEmulator,
    _decode_token,
    _encode_token,
)

PAGE_CAP = 7


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def emulator() -> Iterator[AwsEmulator]:
    with AwsEmulator(page_cap=PAGE_CAP) as emu:
        yield emu


@pytest.fixture(scope="module")
def ac(emulator: AwsEmulator) -> Any:
    return emulator.agentcore_client()


@pytest.fixture(scope="module")
def br(emulator: AwsEmulator) -> Any:
    return emulator.agent_runtime_client()


@pytest.fixture
def memory_id(emulator: AwsEmulator) -> str:
    return emulator.create_memory("test")


@pytest.fixture
def actor() -> str:
    # "/" and ":" are legal in actor ids and must survive percent-encoding
    return f"user/{uuid.uuid4().hex[:8]}:tenant"


@pytest.fixture
def faults(emulator: AwsEmulator) -> Iterator[AwsEmulator]:
    """The emulator, with every injected fault cleared afterwards."""
    yield emulator
    emulator.clear_faults()


@pytest.fixture(autouse=True)
def no_emulator_bugs(emulator: AwsEmulator) -> Iterator[None]:
    yield
    assert emulator.internal_errors == []


# --------------------------------------------------------------------------- helpers
def conv(text: str, role: str = "USER") -> dict[str, Any]:
    return {"conversational": {"content": {"text": text}, "role": role}}


def put(ac: Any, memory_id: str, actor: str, session: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("payload", [conv("hello")])
    kw.setdefault("eventTimestamp", time.time())
    return ac.create_event(memoryId=memory_id, actorId=actor, sessionId=session, **kw)["event"]


def list_events(ac: Any, memory_id: str, actor: str, session: str, **kw: Any) -> list[dict]:
    paginator = ac.get_paginator("list_events")
    pages = paginator.paginate(memoryId=memory_id, actorId=actor, sessionId=session, **kw)
    return [event for page in pages for event in page["events"]]


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["eventId"] for e in events]


def raw(emulator: AwsEmulator, method: str, path: str, body: Any = None) -> tuple[int, Any, dict]:
    """An unsigned request, for inputs botocore refuses to send."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        emulator.endpoint_url + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.loads(exc.read() or b"{}")


# --------------------------------------------------------------------------- events
def test_event_round_trip(ac: Any, memory_id: str, actor: str) -> None:
    payload = [
        conv("hi there"),
        conv("hello", "ASSISTANT"),
        {"blob": "a JSON string, as langgraph-checkpoint-aws sends"},
        {"blob": {"nested": [1, 2.5, None, True]}},
        {"json": {"content": {"k": "v"}}},
    ]
    metadata = {"kind": {"stringValue": "checkpoint"}, "ns:thread/1": {"stringValue": "a b=c"}}
    event = put(ac, memory_id, actor, "s-1", payload=payload, metadata=metadata)
    assert re.fullmatch(r"\d{19}#[0-9a-f]{8}", event["eventId"])
    assert (event["actorId"], event["sessionId"], event["memoryId"]) == (actor, "s-1", memory_id)
    assert "branch" not in event

    got = ac.get_event(memoryId=memory_id, actorId=actor, sessionId="s-1", eventId=event["eventId"])
    assert got["event"]["payload"] == payload
    assert got["event"]["metadata"] == metadata

    deleted = ac.delete_event(
        memoryId=memory_id, actorId=actor, sessionId="s-1", eventId=event["eventId"]
    )
    assert deleted["eventId"] == event["eventId"]
    with pytest.raises(ac.exceptions.ResourceNotFoundException):
        ac.get_event(memoryId=memory_id, actorId=actor, sessionId="s-1", eventId=event["eventId"])
    with pytest.raises(ac.exceptions.ResourceNotFoundException):
        ac.delete_event(
            memoryId=memory_id, actorId=actor, sessionId="s-1", eventId=event["eventId"]
        )


def test_event_in_other_session_is_not_found(ac: Any, memory_id: str, actor: str) -> None:
    event = put(ac, memory_id, actor, "s-1")
    with pytest.raises(ac.exceptions.ResourceNotFoundException):
        ac.get_event(memoryId=memory_id, actorId=actor, sessionId="s-2", eventId=event["eventId"])


def test_event_ids_strictly_increase(ac: Any, memory_id: str, actor: str) -> None:
    made = [put(ac, memory_id, actor, "s")["eventId"] for _ in range(30)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_timestamps_int_or_float_kept_to_the_millisecond(
    emulator: AwsEmulator, ac: Any, memory_id: str, actor: str
) -> None:
    stamp = datetime(2025, 1, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    event = put(ac, memory_id, actor, "s", eventTimestamp=stamp)
    assert event["eventTimestamp"] == stamp.replace(microsecond=123000)

    # botocore <= 1.43 sends whole seconds as a JSON integer
    path = f"/memories/{memory_id}/events"
    body = {"actorId": "a", "sessionId": "s", "eventTimestamp": 1735732800, "payload": []}
    status, _, answer = raw(emulator, "POST", path, body)
    assert status == 201
    assert answer["event"]["eventTimestamp"] == 1735732800


def test_session_id_generated_when_omitted(ac: Any, memory_id: str) -> None:
    event = ac.create_event(
        memoryId=memory_id, actorId="a", eventTimestamp=time.time(), payload=[]
    )["event"]
    assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9-_]*", event["sessionId"])


def test_list_events_newest_first_across_pages(
    emulator: AwsEmulator, ac: Any, memory_id: str, actor: str
) -> None:
    made = [put(ac, memory_id, actor, "s", payload=[conv(f"m{i}")])["eventId"] for i in range(17)]
    emulator.reset_calls()
    events = list_events(ac, memory_id, actor, "s", includePayloads=True)
    assert ids(events) == made[::-1]
    assert events[0]["payload"] == [conv("m16")]
    assert emulator.call_count("ListEvents") == 3  # 7 + 7 + 3 under the page cap

    for kw in ({"includePayloads": False}, {}):
        assert all(e["payload"] == [] for e in list_events(ac, memory_id, actor, "s", **kw))


def test_list_events_max_results_and_tokens(ac: Any, memory_id: str, actor: str) -> None:
    made = [put(ac, memory_id, actor, "s")["eventId"] for _ in range(8)]
    first = ac.list_events(
        memoryId=memory_id, actorId=actor, sessionId="s", includePayloads=False, maxResults=3
    )
    assert ids(first["events"]) == made[::-1][:3]
    # events added between pages neither repeat nor hide older ones
    put(ac, memory_id, actor, "s")
    rest = list_events(
        ac,
        memory_id,
        actor,
        "s",
        includePayloads=False,
        PaginationConfig={"StartingToken": first["nextToken"]},
    )
    assert ids(rest) == made[::-1][3:]

    last = ac.list_events(memoryId=memory_id, actorId=actor, sessionId="s", maxResults=100)
    assert len(last["events"]) == PAGE_CAP and "nextToken" in last

    with pytest.raises(ac.exceptions.ValidationException):
        ac.list_events(memoryId=memory_id, actorId=actor, sessionId="s", nextToken="garbage")


@settings(max_examples=300, deadline=None)
@given(
    operation=st.sampled_from(["ListEvents", "ListSessions", "ListInvocationSteps"]),
    key=st.lists(st.integers(min_value=-(2**63), max_value=2**63), min_size=1, max_size=3),
)
def test_tokens_are_never_taken_for_botocore_resume_tokens(operation: str, key: list[int]) -> None:
    """botocore's paginator base64-decodes a ``StartingToken`` and sends the keys of a
    JSON object it finds as request parameters; an emulator token must never decode.
    (Unpadded base64 JSON tokens did, one ListEvents token in 24: a flaky test.)"""
    token = _encode_token(operation, tuple(key))
    with pytest.raises(ValueError):
        TokenDecoder().decode(token)
    assert _decode_token(token, operation) == tuple(key)


def test_list_events_of_unknown_session_is_empty(ac: Any, memory_id: str) -> None:
    answer = ac.list_events(memoryId=memory_id, actorId="nobody", sessionId="none")
    assert answer["events"] == [] and "nextToken" not in answer


@pytest.fixture(scope="module")
def filled_session(emulator: AwsEmulator, ac: Any) -> tuple[str, list[str]]:
    """A memory with 23 events in one session, and their ids oldest first."""
    memory = emulator.create_memory("filled")
    return memory, [put(ac, memory, "a", "s")["eventId"] for _ in range(23)]


@settings(max_examples=20, deadline=None)
@given(page_size=st.integers(min_value=1, max_value=100))
def test_any_page_size_yields_every_event_once(
    ac: Any, filled_session: tuple[str, list[str]], page_size: int
) -> None:
    memory, made = filled_session
    events = list_events(ac, memory, "a", "s", PaginationConfig={"PageSize": page_size})
    assert ids(events) == made[::-1]


def test_branch_filters(ac: Any, memory_id: str, actor: str) -> None:
    def add(**kw: Any) -> str:
        return put(ac, memory_id, actor, "s", **kw)["eventId"]

    e1, e2, e3 = add(), add(), add()
    a1 = add(branch={"name": "alt", "rootEventId": e2})
    a2 = add(branch={"name": "alt"})
    b1 = add(branch={"name": "alt2", "rootEventId": a1})
    m4 = add()

    def listed(name: str | None, parents: bool = False) -> list[str]:
        kw: dict[str, Any] = {}
        if name is not None:
            kw["filter"] = {"branch": {"name": name, "includeParentBranches": parents}}
        return ids(list_events(ac, memory_id, actor, "s", **kw))

    assert listed(None) == [m4, b1, a2, a1, e3, e2, e1]
    assert listed("main") == [m4, e3, e2, e1]
    assert listed("main", parents=True) == [m4, e3, e2, e1]
    assert listed("alt") == [a2, a1]
    assert listed("alt", parents=True) == [a2, a1, e2, e1]
    assert listed("alt2", parents=True) == [b1, a1, e2, e1]
    assert listed("nope") == []

    event = ac.get_event(memoryId=memory_id, actorId=actor, sessionId="s", eventId=a1)["event"]
    assert event["branch"] == {"name": "alt", "rootEventId": e2}


def test_branch_errors(ac: Any, memory_id: str, actor: str) -> None:
    root = put(ac, memory_id, actor, "s")["eventId"]
    other = put(ac, memory_id, actor, "other")["eventId"]
    put(ac, memory_id, actor, "s", branch={"name": "alt", "rootEventId": root})

    cases = [
        ({"name": "fresh"}, "FieldValidationFailed"),  # continuing a branch nobody created
        ({"name": "new", "rootEventId": "123#abc"}, "FieldValidationFailed"),  # no such root
        ({"name": "new", "rootEventId": other}, "EventInOtherSession"),
        ({"name": "alt", "rootEventId": other}, "ResourceConflict"),  # alt forks from root
        ({"name": "main", "rootEventId": root}, "FieldValidationFailed"),
    ]
    for branch, reason in cases:
        with pytest.raises(ac.exceptions.ValidationException) as info:
            put(ac, memory_id, actor, "s", branch=branch)
        assert info.value.response["reason"] == reason, branch


def test_event_metadata_filters(ac: Any, memory_id: str, actor: str) -> None:
    def add(**meta: str) -> str:
        metadata = {k: {"stringValue": v} for k, v in meta.items()}
        return put(ac, memory_id, actor, "s", **({"metadata": metadata} if meta else {}))["eventId"]

    cp1 = add(kind="cp", thread="t1")
    wr = add(kind="write", thread="t1")
    cp2 = add(kind="cp")
    bare = add()

    def listed(*exprs: dict[str, Any]) -> list[str]:
        return ids(list_events(ac, memory_id, actor, "s", filter={"eventMetadata": list(exprs)}))

    def expr(key: str, op: str, value: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"left": {"metadataKey": key}, "operator": op}
        if value is not None:
            out["right"] = {"metadataValue": {"stringValue": value}}
        return out

    assert listed(expr("kind", "EQUALS_TO", "cp")) == [cp2, cp1]
    assert listed(expr("thread", "EXISTS")) == [wr, cp1]
    assert listed(expr("thread", "NOT_EXISTS")) == [bare, cp2]
    assert listed(expr("kind", "EQUALS_TO", "cp"), expr("thread", "EXISTS")) == [cp1]

    with pytest.raises(ac.exceptions.ValidationException):
        listed(*[expr("kind", "EXISTS")] * 6)
    with pytest.raises(ac.exceptions.ValidationException):
        listed(expr("kind", "EQUALS_TO"))


def test_client_token_idempotency(ac: Any, memory_id: str, actor: str) -> None:
    stamp = time.time()
    first = put(ac, memory_id, actor, "s", clientToken="tok-1", eventTimestamp=stamp)
    again = put(ac, memory_id, actor, "s", clientToken="tok-1", eventTimestamp=stamp)
    assert again == first
    assert ids(list_events(ac, memory_id, actor, "s")) == [first["eventId"]]

    with pytest.raises(ac.exceptions.ValidationException) as info:
        put(ac, memory_id, actor, "s", clientToken="tok-1", payload=[conv("changed")])
    assert info.value.response["reason"] == "IdempotentParameterMismatchException"


# Inputs botocore sends without complaint (it checks no max, pattern or enum).
CREATE_EVENT_VIOLATIONS = {
    "101 payload items": ({"payload": [conv("x")] * 101}, "payload"),
    "role BOT": ({"payload": [conv("x", "BOT")]}, "payload[0].conversational.role"),
    "text over 100000": (
        {"payload": [conv("x" * 100_001)]},
        "payload[0].conversational.content.text",
    ),
    "json over 100 KB": (
        {"payload": [{"json": {"content": "x" * 103_000}}]},
        "payload[0].json.content",
    ),
    "16 metadata entries": (
        {"metadata": {f"k{i}": {"stringValue": "v"} for i in range(16)}},
        "metadata",
    ),
    "metadata key pattern": ({"metadata": {"bad#key": {"stringValue": "v"}}}, "metadata key"),
    "metadata value length": (
        {"metadata": {"k": {"stringValue": "v" * 257}}},
        "metadata[k].stringValue",
    ),
    "actorId 300 chars": ({"actorId": "a" * 300}, "actorId"),
    "actorId pattern": ({"actorId": "alice smith"}, "actorId"),
    "sessionId with colon": ({"sessionId": "s:1"}, "sessionId"),
    "sessionId 101 chars": ({"sessionId": "s" * 101}, "sessionId"),
    "branch name pattern": ({"branch": {"name": "-bad"}}, "branch.name"),
    "extractionMode enum": ({"extractionMode": "ALWAYS"}, "extractionMode"),
    "namespace variable name": (
        {"extractionConfig": {"namespaceVariables": {"actorId": "x"}}},
        "extractionConfig.namespaceVariables key",
    ),
}


@pytest.mark.parametrize("case", CREATE_EVENT_VIOLATIONS, ids=list(CREATE_EVENT_VIOLATIONS))
def test_create_event_validation(ac: Any, memory_id: str, case: str) -> None:
    overrides, field = CREATE_EVENT_VIOLATIONS[case]
    kw: dict[str, Any] = {"actorId": "a", "sessionId": "s", "payload": [conv("x")]}
    kw.update(overrides)
    with pytest.raises(ac.exceptions.ValidationException) as info:
        ac.create_event(memoryId=memory_id, eventTimestamp=time.time(), **kw)
    response = info.value.response
    assert response["Error"]["Code"] == "ValidationException"
    assert response["reason"] == "FieldValidationFailed"
    assert response["fieldList"][0]["name"] == field


def test_list_max_results_over_100(ac: Any, memory_id: str) -> None:
    with pytest.raises(ac.exceptions.ValidationException):
        ac.list_events(memoryId=memory_id, actorId="a", sessionId="s", maxResults=101)
    with pytest.raises(ac.exceptions.ValidationException):
        ac.list_actors(memoryId=memory_id, maxResults=1000)


def test_union_needs_exactly_one_member(emulator: AwsEmulator, memory_id: str) -> None:
    body = {
        "actorId": "a",
        "sessionId": "s",
        "eventTimestamp": time.time(),
        "payload": [{"blob": "x", "json": {"content": 1}}],
    }
    status, headers, answer = raw(emulator, "POST", f"/memories/{memory_id}/events", body)
    assert status == 400
    assert headers["x-amzn-ErrorType"] == "ValidationException"
    assert answer["reason"] == "FieldValidationFailed"


def test_unparsable_body_and_unknown_route(emulator: AwsEmulator, memory_id: str) -> None:
    request = urllib.request.Request(
        f"{emulator.endpoint_url}/memories/{memory_id}/events", data=b"{nope", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 400
    assert json.loads(info.value.read())["reason"] == "CannotParse"
    status, _, _ = raw(emulator, "GET", "/nowhere")
    assert status == 404


def test_unknown_memory_is_not_found(ac: Any) -> None:
    missing = "nothere-abcdefghij"
    calls = [
        lambda: ac.create_event(
            memoryId=missing, actorId="a", sessionId="s", eventTimestamp=time.time(), payload=[]
        ),
        lambda: ac.list_events(memoryId=missing, actorId="a", sessionId="s"),
        lambda: ac.get_event(memoryId=missing, actorId="a", sessionId="s", eventId="1#a"),
        lambda: ac.list_sessions(memoryId=missing, actorId="a"),
        lambda: ac.list_actors(memoryId=missing),
        lambda: ac.retrieve_memory_records(
            memoryId=missing, namespace="/x", searchCriteria={"searchQuery": "q"}
        ),
        lambda: ac.list_memory_records(memoryId=missing, namespace="/x"),
    ]
    for call in calls:
        with pytest.raises(ac.exceptions.ResourceNotFoundException):
            call()
    with pytest.raises(ac.exceptions.ValidationException):
        ac.list_actors(memoryId="not a memory id")


def test_memory_arn_is_accepted(emulator: AwsEmulator, ac: Any, memory_id: str) -> None:
    arn = emulator.memory_arn(memory_id)
    event = put(ac, arn, "a", "s")
    assert event["memoryId"] == memory_id
    assert ids(list_events(ac, memory_id, "a", "s")) == [event["eventId"]]


def test_event_size_limit(ac: Any, memory_id: str) -> None:
    limit = 10 * 1024 * 1024
    put(ac, memory_id, "a", "s", payload=[{"blob": "x" * (limit - 4096)}])
    with pytest.raises(ac.exceptions.ValidationException) as info:
        put(ac, memory_id, "a", "s", payload=[{"blob": "x" * (limit + 1)}])
    assert "exceeds the maximum" in info.value.response["Error"]["Message"]


def test_list_sessions_and_actors(ac: Any, memory_id: str) -> None:
    sessions = [f"s{i}" for i in range(9)]
    made = {s: put(ac, memory_id, "alice", s)["eventId"] for s in sessions}
    for i in range(8):
        put(ac, memory_id, f"actor-{i}", "s0")

    summaries = [
        s
        for page in ac.get_paginator("list_sessions").paginate(memoryId=memory_id, actorId="alice")
        for s in page["sessionSummaries"]
    ]
    assert [s["sessionId"] for s in summaries] == sessions[::-1]
    assert {s["actorId"] for s in summaries} == {"alice"}
    assert all(isinstance(s["createdAt"], datetime) for s in summaries)

    ac.delete_event(memoryId=memory_id, actorId="alice", sessionId="s3", eventId=made["s3"])
    with_events = [
        s["sessionId"]
        for page in ac.get_paginator("list_sessions").paginate(
            memoryId=memory_id, actorId="alice", filter={"eventFilter": "HAS_EVENTS"}
        )
        for s in page["sessionSummaries"]
    ]
    assert "s3" not in with_events and len(with_events) == 8

    actors = [
        a["actorId"]
        for page in ac.get_paginator("list_actors").paginate(memoryId=memory_id)
        for a in page["actorSummaries"]
    ]
    assert actors == [f"actor-{i}" for i in range(7, -1, -1)] + ["alice"]


# --------------------------------------------------------------------------- records
def seed_records(ac: Any, memory_id: str, items: list[tuple[str, str, dict | None]]) -> list[str]:
    records = []
    for i, (namespace, text, metadata) in enumerate(items):
        record: dict[str, Any] = {
            "requestIdentifier": f"r{i}",
            "namespaces": [namespace],
            "content": {"text": text},
            "timestamp": time.time(),
        }
        if metadata:
            record["metadata"] = metadata
        records.append(record)
    answer = ac.batch_create_memory_records(memoryId=memory_id, records=records)
    assert answer["failedRecords"] == []
    assert [r["requestIdentifier"] for r in answer["successfulRecords"]] == [
        f"r{i}" for i in range(len(items))
    ]
    return [r["memoryRecordId"] for r in answer["successfulRecords"]]


def test_record_crud(ac: Any, memory_id: str) -> None:
    (rid,) = seed_records(ac, memory_id, [("/facts/alice", "likes green tea", None)])
    assert re.fullmatch(r"mem-[a-zA-Z0-9-_]{36,46}", rid)
    record = ac.get_memory_record(memoryId=memory_id, memoryRecordId=rid)["memoryRecord"]
    assert record["content"] == {"text": "likes green tea"}
    assert record["namespaces"] == ["/facts/alice"]
    assert record["memoryStrategyId"] == "default"

    updated = ac.batch_update_memory_records(
        memoryId=memory_id,
        records=[
            {"memoryRecordId": rid, "timestamp": time.time(), "content": {"text": "likes coffee"}},
            {"memoryRecordId": "mem-" + "0" * 36, "timestamp": time.time()},
        ],
        recordExpirySpecification={"recordExpiryDurationDays": 31},
    )
    assert [r["memoryRecordId"] for r in updated["successfulRecords"]] == [rid]
    assert updated["failedRecords"][0]["errorCode"] == 404
    record = ac.get_memory_record(memoryId=memory_id, memoryRecordId=rid)["memoryRecord"]
    assert record["content"] == {"text": "likes coffee"}
    assert record["expiresAt"] > datetime.now(timezone.utc) + timedelta(days=30)

    assert ac.delete_memory_record(memoryId=memory_id, memoryRecordId=rid)["memoryRecordId"] == rid
    with pytest.raises(ac.exceptions.ResourceNotFoundException):
        ac.get_memory_record(memoryId=memory_id, memoryRecordId=rid)
    with pytest.raises(ac.exceptions.ValidationException):
        ac.get_memory_record(memoryId=memory_id, memoryRecordId="rec-" + "x" * 40)  # pattern


def test_batch_delete_and_idempotent_batch_create(ac: Any, memory_id: str) -> None:
    record = {
        "requestIdentifier": "r0",
        "namespaces": ["/n"],
        "content": {"text": "t"},
        "timestamp": time.time(),
    }
    first = ac.batch_create_memory_records(memoryId=memory_id, records=[record], clientToken="c1")
    again = ac.batch_create_memory_records(memoryId=memory_id, records=[record], clientToken="c1")
    assert again["successfulRecords"] == first["successfulRecords"]
    rid = first["successfulRecords"][0]["memoryRecordId"]

    deleted = ac.batch_delete_memory_records(
        memoryId=memory_id, records=[{"memoryRecordId": rid}, {"memoryRecordId": rid}]
    )
    assert [r["status"] for r in deleted["successfulRecords"]] == ["SUCCEEDED"]
    assert [r["status"] for r in deleted["failedRecords"]] == ["FAILED"]
    assert ac.list_memory_records(memoryId=memory_id, namespace="/n")["memoryRecordSummaries"] == []


def test_list_records_namespace_and_path(ac: Any, memory_id: str) -> None:
    items = [("/facts/alice", f"alice fact {i}", None) for i in range(9)]
    items += [("/facts/bob", "bob fact", None), ("/factsheet", "other", None)]
    made = seed_records(ac, memory_id, items)

    def listed(**kw: Any) -> list[str]:
        pages = ac.get_paginator("list_memory_records").paginate(memoryId=memory_id, **kw)
        return [r["memoryRecordId"] for p in pages for r in p["memoryRecordSummaries"]]

    assert listed(namespace="/facts/alice") == made[:9][::-1]
    assert listed(namespacePath="/facts") == made[:10][::-1]
    assert listed(namespacePath="/") == made[::-1]
    assert listed(namespace="/facts") == []
    for kw in ({}, {"namespace": "/a", "namespacePath": "/a"}):
        with pytest.raises(ac.exceptions.ValidationException):
            ac.list_memory_records(memoryId=memory_id, **kw)


def test_retrieve_ranking_topk_and_filters(ac: Any, memory_id: str) -> None:
    day = 86_400
    now = time.time()
    seed_records(
        ac,
        memory_id,
        [
            (
                "/p",
                "alice likes green tea",
                {"n": {"numberValue": 5}, "tags": {"stringListValue": ["drink", "tea"]}},
            ),
            (
                "/p",
                "alice likes hiking in green hills",
                {"n": {"numberValue": 1}, "when": {"dateTimeValue": now - day}},
            ),
            (
                "/p",
                "bob plays chess",
                {"kind": {"stringValue": "hobby"}, "when": {"dateTimeValue": now + day}},
            ),
            ("/q", "green tea elsewhere", None),
        ],
    )

    def retrieve(**criteria: Any) -> list[tuple[str, float]]:
        answer = ac.retrieve_memory_records(
            memoryId=memory_id,
            namespace="/p",
            searchCriteria={"searchQuery": "green tea", **criteria},
        )
        return [(r["content"]["text"], r["score"]) for r in answer["memoryRecordSummaries"]]

    ranked = retrieve()
    assert [t for t, _ in ranked] == [
        "alice likes green tea",
        "alice likes hiking in green hills",
        "bob plays chess",
    ]
    assert [s for _, s in ranked] == [1.0, 0.5, 0.0]
    assert [t for t, _ in retrieve(topK=1)] == ["alice likes green tea"]

    def only(op: str, key: str, value: dict[str, Any] | None = None) -> list[str]:
        expr: dict[str, Any] = {"left": {"metadataKey": key}, "operator": op}
        if value is not None:
            expr["right"] = {"metadataValue": value}
        return [t for t, _ in retrieve(metadataFilters=[expr])]

    assert only("GREATER_THAN", "n", {"numberValue": 2}) == ["alice likes green tea"]
    assert only("LESS_THAN_OR_EQUALS", "n", {"numberValue": 1}) == [
        "alice likes hiking in green hills"
    ]
    assert only("CONTAINS", "tags", {"stringValue": "tea"}) == ["alice likes green tea"]
    assert only("EQUALS_TO", "kind", {"stringValue": "hobby"}) == ["bob plays chess"]
    assert only("BEFORE", "when", {"dateTimeValue": now}) == ["alice likes hiking in green hills"]
    assert only("AFTER", "when", {"dateTimeValue": now}) == ["bob plays chess"]
    assert only("NOT_EXISTS", "n") == ["bob plays chess"]
    with pytest.raises(ac.exceptions.ValidationException):
        only("GREATER_THAN", "n", {"stringValue": "x"})

    path = ac.retrieve_memory_records(
        memoryId=memory_id, namespacePath="/", searchCriteria={"searchQuery": "green tea"}
    )
    assert len(path["memoryRecordSummaries"]) == 4
    with pytest.raises(ac.exceptions.ValidationException):
        ac.retrieve_memory_records(memoryId=memory_id, searchCriteria={"searchQuery": "q"})


def test_retrieve_paginates(ac: Any, memory_id: str) -> None:
    seed_records(ac, memory_id, [("/p", f"word{i} common", None) for i in range(12)])
    pages = list(
        ac.get_paginator("retrieve_memory_records").paginate(
            memoryId=memory_id, namespace="/p", searchCriteria={"searchQuery": "common", "topK": 12}
        )
    )
    assert [len(p["memoryRecordSummaries"]) for p in pages] == [7, 5]


def test_extraction_hook(emulator: AwsEmulator, ac: Any) -> None:
    memory_id = emulator.create_memory("extract", extraction_namespace="/facts/{actorId}/{topic}")
    config = {"namespaceVariables": {"topic": "food"}}
    put(
        ac,
        memory_id,
        "alice",
        "s",
        payload=[conv("I like tea"), conv("noted", "ASSISTANT")],
        extractionConfig=config,
    )
    put(
        ac,
        memory_id,
        "alice",
        "s",
        payload=[conv("secret")],
        extractionMode="SKIP",
        extractionConfig=config,
    )
    records = ac.list_memory_records(memoryId=memory_id, namespace="/facts/alice/food")
    assert [r["content"]["text"] for r in records["memoryRecordSummaries"]] == ["I like tea"]

    put(ac, memory_id, "alice", "s")  # the template needs {topic}: extraction is skipped
    assert len(emulator.extraction_errors) == 1
    emulator.extraction_errors.clear()


# --------------------------------------------------------------------------- bedrock sessions
def step_payload(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"contentBlocks": list(blocks) or [{"text": "hi"}]}


def test_session_lifecycle(br: Any) -> None:
    created = br.create_session(sessionMetadata={"thread": "t1"}, tags={"team": "a"})
    sid, arn = created["sessionId"], created["sessionArn"]
    assert re.fullmatch(r"[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}", sid)
    assert arn.endswith(f":session/{sid}") and created["sessionStatus"] == "ACTIVE"
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201

    for ident in (sid, arn):
        got = br.get_session(sessionIdentifier=ident)
        assert got["sessionMetadata"] == {"thread": "t1"}
        assert got["createdAt"] == created["createdAt"]

    updated = br.update_session(sessionIdentifier=sid, sessionMetadata={"thread": "t2"})
    assert updated["lastUpdatedAt"] >= created["createdAt"]
    assert br.get_session(sessionIdentifier=sid)["sessionMetadata"] == {"thread": "t2"}

    with pytest.raises(br.exceptions.ConflictException):
        br.delete_session(sessionIdentifier=sid)
    assert br.end_session(sessionIdentifier=arn)["sessionStatus"] == "ENDED"
    with pytest.raises(br.exceptions.ConflictException):
        br.update_session(sessionIdentifier=sid, sessionMetadata={})
    with pytest.raises(br.exceptions.ConflictException):
        br.end_session(sessionIdentifier=sid)
    assert br.get_session(sessionIdentifier=sid)["sessionStatus"] == "ENDED"

    br.delete_session(sessionIdentifier=sid)
    with pytest.raises(br.exceptions.ResourceNotFoundException):
        br.get_session(sessionIdentifier=sid)


def test_session_validation(br: Any) -> None:
    bad = [
        lambda: br.create_session(sessionMetadata={f"k{i}": "v" for i in range(51)}),
        lambda: br.create_session(sessionMetadata={"k" * 101: "v"}),
        lambda: br.create_session(sessionMetadata={"k": "v" * 5001}),
        lambda: br.create_session(encryptionKeyArn="not-a-key"),
        lambda: br.get_session(sessionIdentifier=str(uuid.uuid4()).upper()),
        lambda: br.list_sessions(maxResults=1001),
    ]
    for call in bad:
        with pytest.raises(br.exceptions.ValidationException):
            call()
    with pytest.raises(br.exceptions.ResourceNotFoundException):
        br.get_session(sessionIdentifier=str(uuid.uuid4()))


def test_list_sessions_paginates(emulator: AwsEmulator, br: Any) -> None:
    made = [br.create_session()["sessionId"] for _ in range(9)]
    emulator.reset_calls()
    listed = [
        s["sessionId"]
        for page in br.get_paginator("list_sessions").paginate()
        for s in page["sessionSummaries"]
    ]
    assert listed[:9] == made[::-1]  # newest first; older sessions of other tests follow
    assert emulator.call_count("ListSessions", service=AGENT_RUNTIME) >= 2
    assert emulator.call_count("ListSessions", service=AGENTCORE) == 0


def test_invocations(br: Any) -> None:
    sid = br.create_session()["sessionId"]
    chosen = str(uuid.uuid4())
    created = br.create_invocation(sessionIdentifier=sid, invocationId=chosen, description="d")
    assert (created["invocationId"], created["sessionId"]) == (chosen, sid)
    with pytest.raises(br.exceptions.ConflictException):
        br.create_invocation(sessionIdentifier=sid, invocationId=chosen)
    more = [br.create_invocation(sessionIdentifier=sid)["invocationId"] for _ in range(8)]
    listed = [
        i["invocationId"]
        for page in br.get_paginator("list_invocations").paginate(sessionIdentifier=sid)
        for i in page["invocationSummaries"]
    ]
    assert listed == [*more[::-1], chosen]
    with pytest.raises(br.exceptions.ValidationException):
        br.create_invocation(sessionIdentifier=sid, description="x" * 201)
    with pytest.raises(br.exceptions.ValidationException):
        br.create_invocation(sessionIdentifier=sid, invocationId="NOT-A-UUID")


def test_invocation_steps(br: Any) -> None:
    sid = br.create_session()["sessionId"]
    inv_a = br.create_invocation(sessionIdentifier=sid)["invocationId"]
    inv_b = br.create_invocation(sessionIdentifier=sid)["invocationId"]
    base = datetime(2025, 1, 1, tzinfo=timezone.utc)
    image = {"image": {"format": "png", "source": {"bytes": b"\x89PNG\r\n"}}}
    s3_image = {"image": {"format": "jpeg", "source": {"s3Location": {"uri": "s3://bkt/k.jpg"}}}}
    steps = []
    for i in range(9):
        steps.append(
            br.put_invocation_step(
                sessionIdentifier=sid,
                invocationIdentifier=inv_a if i % 3 else inv_b,
                invocationStepTime=base + timedelta(seconds=i),
                payload=step_payload({"text": f"step {i}"}, image, s3_image),
            )["invocationStepId"]
        )

    got = br.get_invocation_step(
        sessionIdentifier=sid, invocationIdentifier=inv_a, invocationStepId=steps[1]
    )["invocationStep"]
    assert got["payload"]["contentBlocks"] == [{"text": "step 1"}, image, s3_image]
    assert got["invocationStepTime"] == base + timedelta(seconds=1)
    with pytest.raises(br.exceptions.ResourceNotFoundException):
        br.get_invocation_step(
            sessionIdentifier=sid, invocationIdentifier=inv_b, invocationStepId=steps[1]
        )

    def listed(**kw: Any) -> list[str]:
        pages = br.get_paginator("list_invocation_steps").paginate(sessionIdentifier=sid, **kw)
        return [s["invocationStepId"] for p in pages for s in p["invocationStepSummaries"]]

    assert listed() == steps[::-1]
    assert listed(invocationIdentifier=inv_b) == [steps[6], steps[3], steps[0]]
    latest = br.list_invocation_steps(sessionIdentifier=sid, maxResults=1)
    assert [s["invocationStepId"] for s in latest["invocationStepSummaries"]] == [steps[8]]
    assert "nextToken" in latest


def test_invocation_step_ids_are_idempotent(br: Any) -> None:
    sid = br.create_session()["sessionId"]
    inv = br.create_invocation(sessionIdentifier=sid)["invocationId"]
    step_id = str(uuid.uuid4())
    stamp = datetime(2025, 1, 1, tzinfo=timezone.utc)
    kw = {
        "sessionIdentifier": sid,
        "invocationIdentifier": inv,
        "invocationStepId": step_id,
        "invocationStepTime": stamp,
    }
    assert br.put_invocation_step(payload=step_payload(), **kw)["invocationStepId"] == step_id
    assert br.put_invocation_step(payload=step_payload(), **kw)["invocationStepId"] == step_id
    with pytest.raises(br.exceptions.ConflictException):
        br.put_invocation_step(payload=step_payload({"text": "other"}), **kw)


def test_invocation_step_errors(br: Any) -> None:
    sid = br.create_session()["sessionId"]
    inv = br.create_invocation(sessionIdentifier=sid)["invocationId"]
    now = datetime.now(timezone.utc)

    def put_step(payload: dict[str, Any], invocation: str = inv) -> Any:
        return br.put_invocation_step(
            sessionIdentifier=sid,
            invocationIdentifier=invocation,
            invocationStepTime=now,
            payload=payload,
        )

    def image(fmt: str = "png", data: bytes = b"x") -> dict[str, Any]:
        return {"image": {"format": fmt, "source": {"bytes": data}}}

    invalid = [
        step_payload(*[image()] * 21),
        step_payload(image(data=b"x" * (3_932_160 + 1))),
        step_payload(image(fmt="bmp")),
        step_payload({"image": {"format": "png", "source": {"s3Location": {"uri": "http://x"}}}}),
    ]
    for payload in invalid:
        with pytest.raises(br.exceptions.ValidationException):
            put_step(payload)
    put_step(step_payload(*[image()] * 20))
    put_step(step_payload(image(data=b"x" * 3_932_160)))

    with pytest.raises(br.exceptions.ResourceNotFoundException):
        put_step(step_payload(), invocation=str(uuid.uuid4()))
    with pytest.raises(br.exceptions.ValidationException):
        put_step(step_payload(), invocation=str(uuid.uuid4()).upper())

    br.end_session(sessionIdentifier=sid)
    with pytest.raises(br.exceptions.ConflictException):  # ended: readable, not writable
        put_step(step_payload())
    with pytest.raises(br.exceptions.ConflictException):
        br.create_invocation(sessionIdentifier=sid)
    assert len(br.list_invocation_steps(sessionIdentifier=sid)["invocationStepSummaries"]) == 2


# --------------------------------------------------------------------------- faults and calls
def test_throttling_is_retried(faults: AwsEmulator, memory_id: str) -> None:
    client = faults.agentcore_client(max_attempts=3)
    fault = faults.inject_fault("CreateEvent", status=429, count=1)
    faults.reset_calls()
    event = put(client, memory_id, "a", "s")
    assert faults.call_count("CreateEvent") == 2 and fault.remaining == 0
    assert ids(list_events(client, memory_id, "a", "s")) == [event["eventId"]]


def test_retryable_conflict_is_retried(faults: AwsEmulator, memory_id: str) -> None:
    client = faults.agentcore_client(max_attempts=3)
    faults.inject_fault("CreateEvent", status=409, count=2)
    faults.reset_calls()
    put(client, memory_id, "a", "s")
    assert faults.call_count("CreateEvent") == 3


def test_errors_surface_when_retries_run_out(faults: AwsEmulator, memory_id: str) -> None:
    client = faults.agentcore_client(max_attempts=2)
    faults.inject_fault("ListEvents", status=500, count=2)
    with pytest.raises(client.exceptions.ServiceException):
        client.list_events(memoryId=memory_id, actorId="a", sessionId="s")

    faults.inject_fault("GetEvent", status=402)
    with pytest.raises(client.exceptions.ServiceQuotaExceededException):
        client.get_event(memoryId=memory_id, actorId="a", sessionId="s", eventId="1#a")

    faults.inject_fault("ListActors", status=429, count=1)
    once = faults.agentcore_client(max_attempts=1)
    with pytest.raises(client.exceptions.ThrottledException):  # classes shared across clients
        once.list_actors(memoryId=memory_id)


def test_lost_response_is_idempotent_through_client_token(
    faults: AwsEmulator, memory_id: str
) -> None:
    # botocore's own retry reuses the auto-filled clientToken
    client = faults.agentcore_client(max_attempts=3)
    faults.inject_fault("CreateEvent", status=500, after_commit=True)
    faults.reset_calls()
    event = put(client, memory_id, "a", "s")
    tokens = [c.params["clientToken"] for c in faults.calls if c.operation == "CreateEvent"]
    assert len(tokens) == 2 and tokens[0] == tokens[1]
    assert ids(list_events(client, memory_id, "a", "s")) == [event["eventId"]]

    # without retries the caller sees the error, although the event was stored
    once = faults.agentcore_client(max_attempts=1)
    faults.inject_fault("CreateEvent", status=500, after_commit=True)
    stamp = time.time()
    with pytest.raises(once.exceptions.ServiceException):
        put(once, memory_id, "a", "s2", clientToken="mine", eventTimestamp=stamp)
    again = put(once, memory_id, "a", "s2", clientToken="mine", eventTimestamp=stamp)
    assert ids(list_events(client, memory_id, "a", "s2")) == [again["eventId"]]


def test_agent_runtime_faults(faults: AwsEmulator) -> None:
    client = faults.agent_runtime_client(max_attempts=1)
    faults.inject_fault("CreateSession", status=429)
    with pytest.raises(client.exceptions.ThrottlingException):
        client.create_session()
    faults.inject_fault("ListSessions", status=500, service=AGENT_RUNTIME)
    with pytest.raises(client.exceptions.InternalServerException):
        client.list_sessions()

    sid = client.create_session()["sessionId"]
    inv = client.create_invocation(sessionIdentifier=sid)["invocationId"]
    retrying = faults.agent_runtime_client(max_attempts=3)
    faults.inject_fault("PutInvocationStep", status=500, after_commit=True)
    step_id = str(uuid.uuid4())
    retrying.put_invocation_step(
        sessionIdentifier=sid,
        invocationIdentifier=inv,
        invocationStepId=step_id,
        invocationStepTime=datetime(2025, 1, 1, tzinfo=timezone.utc),
        payload=step_payload(),
    )
    steps = client.list_invocation_steps(sessionIdentifier=sid)["invocationStepSummaries"]
    assert [s["invocationStepId"] for s in steps] == [step_id]


def test_inject_fault_rejects_mistakes(emulator: AwsEmulator) -> None:
    with pytest.raises(ValueError):
        emulator.inject_fault("CreateEvents")
    with pytest.raises(ValueError):
        emulator.inject_fault("CreateSession", status=402)
    with pytest.raises(ValueError):
        emulator.inject_fault("CreateEvent", service=AGENT_RUNTIME)


def test_call_log(emulator: AwsEmulator, ac: Any, br: Any, memory_id: str, actor: str) -> None:
    emulator.reset_calls()
    put(ac, memory_id, actor, "s")
    ac.list_sessions(memoryId=memory_id, actorId=actor)
    br.list_sessions(maxResults=2)
    calls = emulator.calls
    assert [op for op, _ in calls] == ["CreateEvent", "ListSessions", "ListSessions"]
    assert calls[0].params["actorId"] == actor  # URI labels and body merged, decoded
    assert calls[0].params["memoryId"] == memory_id
    assert calls[2].params == {"maxResults": "2"}  # query strings stay strings
    assert [c.service for c in calls] == [AGENTCORE, AGENTCORE, AGENT_RUNTIME]
    assert emulator.call_count("ListSessions") == 2
    emulator.reset_calls()
    assert emulator.calls == []


def test_event_ids_from_event_timestamps() -> None:
    with AwsEmulator(event_id_source="event_timestamp", page_cap=None) as emu:
        ac = emu.agentcore_client()
        memory_id = emu.create_memory()
        late = put(ac, memory_id, "a", "s", eventTimestamp=1_700_000_100)
        early = put(ac, memory_id, "a", "s", eventTimestamp=1_700_000_000.5)
        assert early["eventId"].startswith("0000001700000000500#")
        assert ids(list_events(ac, memory_id, "a", "s")) == [late["eventId"], early["eventId"]]


def test_blob_bytes_are_base64_on_the_wire(emulator: AwsEmulator, br: Any) -> None:
    sid = br.create_session()["sessionId"]
    inv = br.create_invocation(sessionIdentifier=sid)["invocationId"]
    emulator.reset_calls()
    br.put_invocation_step(
        sessionIdentifier=sid,
        invocationIdentifier=inv,
        invocationStepTime=datetime.now(timezone.utc),
        payload=step_payload({"image": {"format": "gif", "source": {"bytes": b"GIF89a"}}}),
    )
    (call,) = emulator.calls
    sent = call.params["payload"]["contentBlocks"][0]["image"]["source"]["bytes"]
    assert base64.b64decode(sent) == b"GIF89a"
