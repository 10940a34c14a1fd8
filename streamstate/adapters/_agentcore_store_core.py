"""Pure translation between LangGraph's store calls and AgentCore Memory.

Every operation is a flow (a generator that yields planned calls and receives their
replies, see ``streamstate.eventlog._drive``); ``AgentCoreMemoryStore`` only runs them.
The checkpointer's half is :mod:`streamstate.adapters._agentcore_core`.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, cast

from langchain_core.messages import BaseMessage, convert_to_messages
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.store.base import (
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    validate_op_namespace,
)

from streamstate.errors import ConfigError
from streamstate.eventlog._aws import Call
from streamstate.eventlog._drive import Flow
from streamstate.eventlog.agentcore import (
    ACTOR_ID_RE,
    KIND,
    SESSION_ID_RE,
    LogCore,
    eq,
    meta_value,
)

ROLES = {"human": "USER", "ai": "ASSISTANT", "tool": "TOOL"}
"""LangChain message types to AgentCore roles; any other type is OTHER."""

KIND_MSG = "msg"
KEY = "ss.key"
MAX_TEXT = 100_000
"""Characters per conversational payload item (the service's limit)."""


def utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    return datetime.now(timezone.utc)


RECORD_ID_RE = re.compile(r"mem-[a-zA-Z0-9-_]{36,46}")
NAMESPACE_RE = re.compile(r"[a-zA-Z0-9/*][a-zA-Z0-9-_/*]*(?::[a-zA-Z0-9-_/*]+)*[a-zA-Z0-9-_/*]*")
_FILTER_OPS = {
    "$eq": "EQUALS_TO",
    "$gt": "GREATER_THAN",
    "$gte": "GREATER_THAN_OR_EQUALS",
    "$lt": "LESS_THAN",
    "$lte": "LESS_THAN_OR_EQUALS",
    "$contains": "CONTAINS",
}
_DATE_OPS = {"GREATER_THAN": "AFTER", "LESS_THAN": "BEFORE"}


def record_value(value: Any) -> dict[str, Any]:
    """A Python filter value as a record MetadataValue."""
    if isinstance(value, bool):
        return {"stringValue": "true" if value else "false"}
    if isinstance(value, (int, float)):
        return {"numberValue": value}
    if isinstance(value, datetime):
        return {"dateTimeValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return {"stringListValue": list(value)}
    raise ConfigError(f"cannot filter memory records on {value!r}")


def record_filters(filter: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """A LangGraph search filter as RetrieveMemoryRecords ``metadataFilters`` (max 5)."""
    out: list[dict[str, Any]] = []
    for key, cond in (filter or {}).items():
        conds = cond if isinstance(cond, dict) else {"$eq": cond}
        for op, value in conds.items():
            if op == "$exists":
                operator = "EXISTS" if value else "NOT_EXISTS"
                out.append({"left": {"metadataKey": key}, "operator": operator})
                continue
            if op not in _FILTER_OPS:
                raise ConfigError(
                    f"filter operator {op!r} on {key!r} has no AgentCore equivalent; "
                    f"use one of {sorted([*_FILTER_OPS, '$exists'])}"
                )
            operator = _FILTER_OPS[op]
            if isinstance(value, datetime):
                operator = _DATE_OPS.get(operator, operator)
            out.append(
                {
                    "left": {"metadataKey": key},
                    "operator": operator,
                    "right": {"metadataValue": record_value(value)},
                }
            )
    if len(out) > 5:
        raise ConfigError(f"AgentCore accepts at most 5 metadata filters, got {len(out)}")
    return out


def _plain(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (metadata or {}).items():
        if isinstance(value, dict) and len(value) == 1:
            out[key] = next(iter(value.values()))
        else:
            out[key] = value
    return out


class StoreCore:
    """Everything AgentCoreMemoryStore does that is not I/O.

    * ``put(ns, key, {"message": m})``, ``ns == (actor_id, session_id)``: one CreateEvent
      with a conversational payload (fed to long-term extraction) and the value itself
      (a blob, so ``get`` gives it back); the key goes in ``ss.key`` metadata.
    * ``get``/``delete`` of a memory record id (``mem-...``): GetMemoryRecord /
      DeleteMemoryRecord; of a message key: ListEvents / DeleteEvent by ``ss.key``.
    * ``search``: RetrieveMemoryRecords on the namespace path (ListMemoryRecords
      without a query); ``list_namespaces``: ListMemoryRecords pages.

    Args:
        log: The AgentCore log core (memory id, calls).
        serde: Serializer for stored message values.
        namespace_root: Prefix of every namespace path (``"/"``: ``("facts", "u1")`` is
            ``/facts/u1``, as AgentCore's default strategy namespaces are written).
        strategy_id: Restrict searches to one memory strategy.
    """

    def __init__(
        self,
        log: LogCore,
        serde: SerializerProtocol,
        *,
        namespace_root: str = "/",
        strategy_id: str | None = None,
    ) -> None:
        if namespace_root not in ("", "/"):
            raise ConfigError(f"namespace_root must be '/' or '', got {namespace_root!r}")
        self.log = log
        self.serde = serde
        self.root = namespace_root
        self.strategy_id = strategy_id

    # namespaces -----------------------------------------------------------------------------

    def path(self, namespace: tuple[str, ...]) -> str:
        path = self.root + "/".join(namespace)
        if not path:
            raise ConfigError("an empty namespace has no AgentCore path with namespace_root=''")
        return path

    def namespace_of(self, path: str) -> tuple[str, ...]:
        body = path[len(self.root) :] if path.startswith(self.root) else path
        return tuple(p for p in body.strip("/").split("/") if p)

    # batch -------------------------------------------------------------------------------------

    def batch_flow(self, ops: Iterable[Op]) -> Flow[list[Result]]:
        results: list[Result] = []
        for op in ops:
            validate_op_namespace(op)
            if isinstance(op, GetOp):
                results.append((yield from self.get_flow(op.namespace, op.key)))
            elif isinstance(op, PutOp):
                if op.value is None:
                    yield from self.delete_flow(op.namespace, op.key)
                else:
                    yield from self.put_flow(op.namespace, op.key, op.value)
                results.append(None)
            elif isinstance(op, SearchOp):
                results.append((yield from self.search_flow(op)))
            elif isinstance(op, ListNamespacesOp):
                results.append((yield from self.list_namespaces_flow(op)))
            else:
                raise ConfigError(f"unknown store operation {type(op).__name__}")
        return results

    def _session(self, namespace: tuple[str, ...]) -> tuple[str, str] | None:
        if len(namespace) != 2:
            return None
        actor, session = namespace
        ok = ACTOR_ID_RE.fullmatch(actor) and SESSION_ID_RE.fullmatch(session)
        return (actor, session) if ok and len(actor) <= 255 and len(session) <= 100 else None

    # put -----------------------------------------------------------------------------------

    def put_flow(
        self, namespace: tuple[str, ...], key: str, value: Mapping[str, Any]
    ) -> Flow[None]:
        where = self._session(namespace)
        if where is None:
            raise ConfigError(
                "AgentCoreMemoryStore.put stores a conversation message: the namespace must "
                f"be (actor_id, session_id) of AgentCore ids, got {namespace!r}"
            )
        message = value.get("message") if isinstance(value, Mapping) else None
        if message is None:
            raise ConfigError(
                "AgentCoreMemoryStore.put stores a conversation message: the value must be "
                '{"message": <a LangChain message>}, got keys ' + repr(sorted(value))
            )
        if not isinstance(message, BaseMessage):
            message = convert_to_messages([message])[0]
            value = {**value, "message": message}
        role = ROLES.get(message.type, "OTHER")
        text = str(message.text)
        payload: list[dict[str, Any]] = [
            {"conversational": {"content": {"text": text[i : i + MAX_TEXT]}, "role": role}}
            for i in range(0, len(text), MAX_TEXT)
            if text[i : i + MAX_TEXT].strip()
        ]
        kind, data = self.serde.dumps_typed(dict(value))
        payload.append({"blob": {"ss": 1, "t": kind, "d": base64.b64encode(data).decode("ascii")}})
        actor, session = where
        _, stamp = self.log.clock.next(actor, session)
        params = {
            "memoryId": self.log.memory_id,
            "actorId": actor,
            "sessionId": session,
            "eventTimestamp": stamp,
            "payload": payload,
            "metadata": {KIND: {"stringValue": KIND_MSG}, KEY: {"stringValue": meta_value(key)}},
            "clientToken": str(uuid.uuid4()),
        }
        yield Call("create_event", params)

    # get and delete ------------------------------------------------------------------------

    def _record_params(self, namespace: tuple[str, ...], key: str) -> dict[str, Any]:
        params = {"memoryId": self.log.memory_id, "memoryRecordId": key}
        path = self.root + "/".join(namespace)
        if path and len(path) <= 1024 and NAMESPACE_RE.fullmatch(path):
            params["namespace"] = path  # used by IAM conditions only
        return params

    def _message_events(self, where: tuple[str, str], key: str, payloads: bool) -> Flow[list[Any]]:
        actor, session = where
        filters = [eq(KIND, KIND_MSG), eq(KEY, meta_value(key))]
        events: list[Any] = []
        token = None
        while True:
            call = self.log.list_call(actor, session, filters, payloads=payloads, token=token)
            reply = yield call
            events.extend(reply.get("events", []))
            token = reply.get("nextToken")
            if not token or payloads:
                return events

    def get_flow(self, namespace: tuple[str, ...], key: str) -> Flow[Item | None]:
        if RECORD_ID_RE.fullmatch(key):
            call = Call("get_memory_record", self._record_params(namespace, key), missing_ok=True)
            reply = yield call
            if reply is None:
                return None
            return self.item_of(reply["memoryRecord"], namespace)
        where = self._session(namespace)
        if where is None:
            return None
        events = yield from self._message_events(where, key, payloads=True)
        for raw in events:
            for item in raw.get("payload", []):
                blob = item.get("blob")
                if isinstance(blob, dict) and blob.get("ss") == 1 and "d" in blob:
                    value = self.serde.loads_typed((blob["t"], base64.b64decode(blob["d"])))
                    stamp = utc(raw.get("eventTimestamp"))
                    return Item(
                        value=value,
                        key=key,
                        namespace=namespace,
                        created_at=stamp,
                        updated_at=stamp,
                    )
        return None

    def delete_flow(self, namespace: tuple[str, ...], key: str) -> Flow[None]:
        if RECORD_ID_RE.fullmatch(key):
            params = self._record_params(namespace, key)
            yield Call("delete_memory_record", params, missing_ok=True)  # absent: nothing to do
            return
        where = self._session(namespace)
        if where is None:
            return
        for raw in (yield from self._message_events(where, key, payloads=False)):
            yield self.log.delete_call(where[0], where[1], raw["eventId"])

    # search --------------------------------------------------------------------------------

    def item_of(
        self,
        record: Mapping[str, Any],
        namespace: tuple[str, ...],
        *,
        score: Any = None,
        search: bool = False,
    ) -> Item:
        namespaces = record.get("namespaces") or []
        value: dict[str, Any] = {
            "content": (record.get("content") or {}).get("text", ""),
            "memory_strategy_id": record.get("memoryStrategyId"),
            "namespaces": list(namespaces),
        }
        if record.get("metadata"):
            value["metadata"] = _plain(record["metadata"])
        created = utc(record.get("createdAt"))
        updated = utc(record.get("timestamp") or record.get("createdAt"))
        if not search:
            return Item(
                value=value,
                key=record["memoryRecordId"],
                namespace=namespace,
                created_at=created,
                updated_at=updated,
            )
        ns = self.namespace_of(namespaces[0]) if namespaces else namespace
        return SearchItem(
            namespace=ns or namespace,
            key=record["memoryRecordId"],
            value=value,
            created_at=created,
            updated_at=updated,
            score=float(score) if score is not None else None,
        )

    def search_flow(self, op: SearchOp) -> Flow[list[SearchItem]]:
        want = max(0, op.offset) + max(0, op.limit)
        if want == 0:
            return []
        filters = record_filters(op.filter)
        params: dict[str, Any] = {
            "memoryId": self.log.memory_id,
            "namespacePath": self.path(op.namespace_prefix),
            "maxResults": min(want, 100),
        }
        if op.query:
            criteria: dict[str, Any] = {"searchQuery": op.query, "topK": min(want, 100)}
            if filters:
                criteria["metadataFilters"] = filters
            if self.strategy_id:
                criteria["memoryStrategyId"] = self.strategy_id
            params["searchCriteria"] = criteria
            method = "retrieve_memory_records"
        else:
            if filters:
                params["metadataFilters"] = filters
            if self.strategy_id:
                params["memoryStrategyId"] = self.strategy_id
            method = "list_memory_records"
        records: list[Any] = []
        token = None
        while len(records) < want:
            reply = yield Call(method, {**params, **({"nextToken": token} if token else {})})
            records.extend(reply.get("memoryRecordSummaries", []))
            token = reply.get("nextToken")
            if not token:
                break
        return [
            cast(
                SearchItem, self.item_of(r, op.namespace_prefix, score=r.get("score"), search=True)
            )
            for r in records[op.offset : want]
        ]

    def list_namespaces_flow(self, op: ListNamespacesOp) -> Flow[list[tuple[str, ...]]]:
        prefix: tuple[str, ...] = ()
        for cond in op.match_conditions or ():
            if cond.match_type == "prefix":
                fixed = []
                for label in cond.path:
                    if label == "*":
                        break
                    fixed.append(label)
                prefix = tuple(fixed)
                break
        params = {
            "memoryId": self.log.memory_id,
            "namespacePath": self.path(prefix),
            "maxResults": 100,
        }
        if self.strategy_id:
            params["memoryStrategyId"] = self.strategy_id
        found: set[tuple[str, ...]] = set()
        token = None
        while True:
            reply = yield Call(
                "list_memory_records", {**params, **({"nextToken": token} if token else {})}
            )
            for record in reply.get("memoryRecordSummaries", []):
                for path in record.get("namespaces") or []:
                    ns = self.namespace_of(path)
                    if ns and all(_matches(ns, c) for c in op.match_conditions or ()):
                        found.add(ns[: op.max_depth] if op.max_depth is not None else ns)
            token = reply.get("nextToken")
            if not token:
                break
        ordered = sorted(found)
        return ordered[op.offset : op.offset + op.limit]


def _matches(namespace: tuple[str, ...], cond: Any) -> bool:
    path = tuple(cond.path)
    if len(namespace) < len(path):
        return False
    part = namespace[: len(path)] if cond.match_type == "prefix" else namespace[-len(path) :]
    return all(p == "*" or p == n for p, n in zip(path, part)) if path else True
