"""Local emulator of AgentCore Memory (data plane) and Bedrock session management.

Tests talk to it through *real* boto3 clients (``endpoint_url`` points at it), so the
same serialisation, percent-encoding, retries and error mapping run as in production.
moto covers neither service well enough (no pagination, no filters, no Bedrock
sessions), hence this stdlib-only HTTP server with in-memory state behind one lock.

Where the service models and docs are silent, the emulator chooses (and documents):

* Listings are newest-first: events by eventId; sessions, actors, invocations and
  memory records by creation; invocation steps by ``invocationStepTime`` then creation.
  RetrieveMemoryRecords orders by score, then newest first.
* Every listing honours an emulator-wide ``page_cap`` (default 7) on top of
  ``maxResults``, so callers that ignore ``nextToken`` fail fast in tests. Tokens are
  opaque cursors ("after this key"), so inserts between pages never duplicate items,
  and are never valid base64, so botocore's paginators pass them back untouched.
* eventIds are ``"%019d#%08x"`` (milliseconds, hex suffix), strictly increasing across
  the emulator even within one millisecond (``event_id_source="clock"``). With
  ``event_id_source="event_timestamp"`` the prefix comes from ``eventTimestamp``
  instead (the real ids seen so far suggest this), and ordering follows it.
* ``eventTimestamp`` and other agentcore timestamps are kept at millisecond precision.
* Size limits in binary units: a CreateEvent JSON body over 10 MiB, a ``json`` payload
  content over 100 KiB or an image over 3.75 MiB (decoded) is a ValidationException.
  ``blob`` payloads have no per-item limit, only the event limit.
* Long-term extraction (opt-in per memory) runs synchronously inside CreateEvent.
* A branch event ``{name}`` without ``rootEventId`` must continue a branch that already
  exists in the session; ``main`` is implicit and cannot be forked into. A root event in
  another session gives ValidationException reason ``EventInOtherSession``; re-creating
  a branch with a different root gives reason ``ResourceConflict``.
* CreateEvent without ``sessionId`` (optional in the model) gets a generated one.
* Bedrock sessions: once a session is not ACTIVE, UpdateSession, EndSession,
  CreateInvocation and PutInvocationStep raise ConflictException (the model lists it
  for each, and the state, not the input, is what is wrong). PutInvocationStep with
  an existing ``invocationStepId`` is idempotent when the step is identical and a
  ConflictException otherwise.
* RetrieveMemoryRecords scores by token overlap (shared lowercase words divided by the
  query's words), default ``topK`` 10; zero-score records are still returned (as a
  vector search would) unless ``retrieve_min_score`` is raised.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import http.server
import json
import logging
import math
import random
import re
import secrets
import socket
import string
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:  # only for annotations: the emulator needs the stdlib alone
    from typing_extensions import Self

__all__ = [
    "AGENTCORE",
    "AGENT_RUNTIME",
    "ApiCall",
    "ApiError",
    "AwsEmulator",
    "Fault",
]

AGENTCORE = "bedrock-agentcore"
AGENT_RUNTIME = "bedrock-agent-runtime"

T = TypeVar("T")
logger = logging.getLogger(__name__)
Extractor = Callable[[dict[str, Any]], Iterable[str]]

# --------------------------------------------------------------------------- patterns
_MEMORY_ID_RE = re.compile(
    r"(?:arn:(?:aws|aws-cn|aws-us-gov):bedrock-agentcore:[a-z0-9-]+:[0-9]{12}:memory/)?"
    r"([a-zA-Z][a-zA-Z0-9-_]{0,99}-[a-zA-Z0-9]{10})"
)
_MEMORY_NAME_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9-_]{0,99}")
_ACTOR_ID_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-_/]*(?::[a-zA-Z0-9-_/]+)*[a-zA-Z0-9-_/]*")
_SESSION_ID_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-_]*")
_EVENT_ID_RE = re.compile(r"([0-9]+)#([a-fA-F0-9]+)")
_BRANCH_RE = _SESSION_ID_RE
_STRATEGY_RE = _SESSION_ID_RE
_RECORD_ID_RE = re.compile(r"mem-[a-zA-Z0-9-_]*")
_NAMESPACE_RE = re.compile(r"[a-zA-Z0-9/*][a-zA-Z0-9-_/*]*(?::[a-zA-Z0-9-_/*]+)*[a-zA-Z0-9-_/*]*")
_METADATA_TEXT_RE = re.compile(r"[a-zA-Z0-9\s._:/=+@-]*")
_REQUEST_ID_RE = re.compile(r"[a-zA-Z0-9_-]+")
_NS_VAR_NAME_RE = re.compile(r"(?!memoryStrategyId$|actorId$|sessionId$)[a-z][a-z0-9]*")
_NS_VAR_VALUE_RE = re.compile(r"[a-z0-9][a-z0-9-_]*")
_TEMPLATE_VAR_RE = re.compile(r"\{([A-Za-z0-9_]+)\}")
_UUID_RE = re.compile(r"[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}")
_SESSION_IDENT_RE = re.compile(
    r"(?:arn:aws(?:-[^:]+)?:bedrock:[a-z0-9-]+:[0-9]{12}:session/)?"
    r"([a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})"
)
_KMS_ARN_RE = re.compile(r"arn:aws(|-cn|-us-gov):kms:[a-zA-Z0-9-]*:[0-9]{12}:key/[a-zA-Z0-9-]{36}")
_S3_URI_RE = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.{1,1024}", re.DOTALL)
_NEXT_TOKEN_RE = re.compile(r"\S*")
_ISO_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?"
)
_WORD_RE = re.compile(r"[a-z0-9]+")

_ROLES = ("ASSISTANT", "USER", "TOOL", "OTHER")
_EVENT_FILTER_OPS = ("EQUALS_TO", "EXISTS", "NOT_EXISTS")
_RECORD_FILTER_OPS = (
    "EQUALS_TO",
    "EXISTS",
    "NOT_EXISTS",
    "BEFORE",
    "AFTER",
    "CONTAINS",
    "GREATER_THAN",
    "GREATER_THAN_OR_EQUALS",
    "LESS_THAN",
    "LESS_THAN_OR_EQUALS",
)
_IMAGE_FORMATS = ("png", "jpeg", "gif", "webp")
_MAX_IMAGES = 20
_MAX_IMAGE_BYTES = 3_932_160  # 3.75 MiB, the documented per-image limit
_MAX_JSON_CONTENT_BYTES = 100 * 1024  # "max 100 KB" for json payload content
_DEFAULT_TOP_K = 10

#: Default error code per HTTP status, per service (the two models differ).
_FAULT_CODES: dict[str, dict[int, str]] = {
    AGENTCORE: {
        400: "ValidationException",
        402: "ServiceQuotaExceededException",
        403: "AccessDeniedException",
        404: "ResourceNotFoundException",
        409: "RetryableConflictException",
        429: "ThrottledException",
        500: "ServiceException",
    },
    AGENT_RUNTIME: {
        400: "ValidationException",
        403: "AccessDeniedException",
        404: "ResourceNotFoundException",
        409: "ConflictException",
        429: "ThrottlingException",
        500: "InternalServerException",
    },
}

# (service, HTTP method, request URI template, operation, success status, handler)
_ROUTE_TABLE: tuple[tuple[str, str, str, str, int, str], ...] = (
    (AGENTCORE, "POST", "/memories/{memoryId}/events", "CreateEvent", 201, "_create_event"),
    (
        AGENTCORE,
        "GET",
        "/memories/{memoryId}/actor/{actorId}/sessions/{sessionId}/events/{eventId}",
        "GetEvent",
        200,
        "_get_event",
    ),
    (
        AGENTCORE,
        "DELETE",
        "/memories/{memoryId}/actor/{actorId}/sessions/{sessionId}/events/{eventId}",
        "DeleteEvent",
        200,
        "_delete_event",
    ),
    (
        AGENTCORE,
        "POST",
        "/memories/{memoryId}/actor/{actorId}/sessions/{sessionId}",
        "ListEvents",
        200,
        "_list_events",
    ),
    (
        AGENTCORE,
        "POST",
        "/memories/{memoryId}/actor/{actorId}/sessions",
        "ListSessions",
        200,
        "_list_memory_sessions",
    ),
    (AGENTCORE, "POST", "/memories/{memoryId}/actors", "ListActors", 200, "_list_actors"),
    (
        AGENTCORE,
        "POST",
        "/memories/{memoryId}/retrieve",
        "RetrieveMemoryRecords",
        200,
        "_retrieve_records",
    ),
    (
        AGENTCORE,
        "POST",
        "/memories/{memoryId}/memoryRecords",
        "ListMemoryRecords",
        200,
        "_list_records",
    ),
    (
        AGENTCORE,
        "GET",
        "/memories/{memoryId}/memoryRecord/{memoryRecordId}",
        "GetMemoryRecord",
        200,
        "_get_record",
    ),
    (
        AGENTCORE,
        "DELETE",
        "/memories/{memoryId}/memoryRecords/{memoryRecordId}",
        "DeleteMemoryRecord",
        200,
        "_delete_record",
    ),
    (
        AGENTCORE,
        "POST",
        "/memories/{memoryId}/memoryRecords/batchCreate",
        "BatchCreateMemoryRecords",
        201,
        "_batch_create_records",
    ),
    (
        AGENTCORE,
        "POST",
        "/memories/{memoryId}/memoryRecords/batchUpdate",
        "BatchUpdateMemoryRecords",
        200,
        "_batch_update_records",
    ),
    (
        AGENTCORE,
        "POST",
        "/memories/{memoryId}/memoryRecords/batchDelete",
        "BatchDeleteMemoryRecords",
        200,
        "_batch_delete_records",
    ),
    (AGENT_RUNTIME, "PUT", "/sessions/", "CreateSession", 201, "_create_session"),
    (AGENT_RUNTIME, "POST", "/sessions/", "ListSessions", 200, "_list_sessions"),
    (AGENT_RUNTIME, "GET", "/sessions/{sessionIdentifier}/", "GetSession", 200, "_get_session"),
    (
        AGENT_RUNTIME,
        "PUT",
        "/sessions/{sessionIdentifier}/",
        "UpdateSession",
        200,
        "_update_session",
    ),
    (AGENT_RUNTIME, "PATCH", "/sessions/{sessionIdentifier}", "EndSession", 200, "_end_session"),
    (
        AGENT_RUNTIME,
        "DELETE",
        "/sessions/{sessionIdentifier}/",
        "DeleteSession",
        200,
        "_delete_session",
    ),
    (
        AGENT_RUNTIME,
        "PUT",
        "/sessions/{sessionIdentifier}/invocations/",
        "CreateInvocation",
        201,
        "_create_invocation",
    ),
    (
        AGENT_RUNTIME,
        "POST",
        "/sessions/{sessionIdentifier}/invocations/",
        "ListInvocations",
        200,
        "_list_invocations",
    ),
    (
        AGENT_RUNTIME,
        "PUT",
        "/sessions/{sessionIdentifier}/invocationSteps/",
        "PutInvocationStep",
        201,
        "_put_invocation_step",
    ),
    (
        AGENT_RUNTIME,
        "POST",
        "/sessions/{sessionIdentifier}/invocationSteps/{invocationStepId}",
        "GetInvocationStep",
        200,
        "_get_invocation_step",
    ),
    (
        AGENT_RUNTIME,
        "POST",
        "/sessions/{sessionIdentifier}/invocationSteps/",
        "ListInvocationSteps",
        200,
        "_list_invocation_steps",
    ),
)


@dataclass(frozen=True)
class _Route:
    service: str
    method: str
    segments: tuple[str, ...]
    operation: str
    status: int
    handler: str

    def match(self, method: str, raw_segments: list[str]) -> dict[str, str] | None:
        """Match raw (still percent-encoded) segments; labels are unquoted one by one."""
        if method != self.method or len(raw_segments) != len(self.segments):
            return None
        labels: dict[str, str] = {}
        for want, got in zip(self.segments, raw_segments, strict=True):
            if want.startswith("{"):
                if not got:
                    return None
                labels[want[1:-1]] = unquote(got)
            elif want != got:
                return None
        return labels


_ROUTES = tuple(
    _Route(service, method, tuple(template.split("/")[1:]), op, status, handler)
    for service, method, template, op, status, handler in _ROUTE_TABLE
)
_OPERATION_SERVICES: dict[str, set[str]] = {
    op: {r.service for r in _ROUTES if r.operation == op} for op in {r.operation for r in _ROUTES}
}


# --------------------------------------------------------------------------- errors
class ApiError(Exception):
    """An error answer, serialised the way botocore's rest-json parser reads it.

    The code goes in the ``x-amzn-ErrorType`` header and the message in the JSON
    body; an agentcore ValidationException also carries ``reason`` and ``fieldList``.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        reason: str | None = None,
        field_name: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason
        self.field_name = field_name

    def body(self, service: str) -> dict[str, Any]:
        """The JSON error body; only agentcore's ValidationException models more fields."""
        out: dict[str, Any] = {"message": self.message}
        if service == AGENTCORE and self.code == "ValidationException":
            out["reason"] = self.reason or "FieldValidationFailed"
            if self.field_name is not None:
                out["fieldList"] = [{"name": self.field_name, "message": self.message}]
        return out


def _invalid(name: str, message: str, reason: str = "FieldValidationFailed") -> ApiError:
    message = f"{name}: {message}"
    return ApiError(400, "ValidationException", message, reason=reason, field_name=name)


def _not_found(message: str) -> ApiError:
    return ApiError(404, "ResourceNotFoundException", message)


def _conflict(message: str) -> ApiError:
    return ApiError(409, "ConflictException", message)


# --------------------------------------------------------------------------- validation
def _string(
    value: Any,
    name: str,
    *,
    required: bool = False,
    min_len: int = 0,
    max_len: int | None = None,
    pattern: re.Pattern[str] | None = None,
) -> str | None:
    if value is None:
        if required:
            raise _invalid(name, "is required")
        return None
    if not isinstance(value, str):
        raise _invalid(name, "must be a string")
    if len(value) < min_len:
        raise _invalid(name, f"length {len(value)} is below the minimum {min_len}")
    if max_len is not None and len(value) > max_len:
        raise _invalid(name, f"length {len(value)} exceeds the maximum {max_len}")
    if pattern is not None and not pattern.fullmatch(value):
        raise _invalid(name, f"does not match the pattern {pattern.pattern}")
    return value


def _req_string(value: Any, name: str, **kw: Any) -> str:
    result = _string(value, name, required=True, **kw)
    assert result is not None
    return result


def _integer(value: Any, name: str, *, lo: int, hi: int | None, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise _invalid(name, "must be an integer") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(name, "must be an integer")
    if value < lo or (hi is not None and value > hi):
        raise _invalid(name, f"must be between {lo} and {hi}")
    return value


def _boolean(value: Any, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid(name, "must be a boolean")
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(name, "must be a number")
    if not math.isfinite(value):
        raise _invalid(name, "must be finite")
    return float(value)


def _epoch_ms(value: Any, name: str) -> int:
    """Epoch seconds (int or float, as botocore sends them) to whole milliseconds."""
    if value is None:
        raise _invalid(name, "is required")
    # round first: 1.001 * 1000 is 1000.9999999999999 in binary floating point
    return math.floor(round(_number(value, name) * 1000, 3))


def _struct(value: Any, name: str, *, required: bool = False) -> dict[str, Any]:
    if value is None:
        if required:
            raise _invalid(name, "is required")
        return {}
    if not isinstance(value, dict):
        raise _invalid(name, "must be an object")
    return value


def _list(
    value: Any, name: str, *, required: bool = False, min_len: int = 0, max_len: int | None = None
) -> list[Any]:
    if value is None:
        if required:
            raise _invalid(name, "is required")
        return []
    if not isinstance(value, list):
        raise _invalid(name, "must be a list")
    if len(value) < min_len:
        raise _invalid(name, f"has {len(value)} items, the minimum is {min_len}")
    if max_len is not None and len(value) > max_len:
        raise _invalid(name, f"has {len(value)} items, the maximum is {max_len}")
    return value


def _map(value: Any, name: str, *, min_len: int = 0, max_len: int) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid(name, "must be a map")
    if len(value) < min_len:
        raise _invalid(name, f"has {len(value)} entries, the minimum is {min_len}")
    if len(value) > max_len:
        raise _invalid(name, f"has {len(value)} entries, the maximum is {max_len}")
    return value


def _enum(value: Any, name: str, allowed: Iterable[str], *, required: bool = False) -> str | None:
    allowed = tuple(allowed)
    if value is None:
        if required:
            raise _invalid(name, "is required")
        return None
    if value not in allowed:
        raise _invalid(name, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _union(value: Any, name: str, members: tuple[str, ...]) -> tuple[str, Any]:
    """Return the single member set in a Smithy union (botocore checks this too)."""
    obj = _struct(value, name, required=True)
    unknown = sorted(set(obj) - set(members))
    if unknown:
        raise _invalid(name, f"unknown union member(s) {', '.join(unknown)}")
    present = [key for key in members if key in obj]
    if len(present) != 1:
        raise _invalid(name, f"exactly one of {', '.join(members)} must be set")
    return present[0], obj[present[0]]


def _fingerprint(params: dict[str, Any], *, skip: tuple[str, ...]) -> str:
    body = {k: v for k, v in params.items() if k not in skip}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _check_event_metadata(value: Any) -> dict[str, Any] | None:
    metadata = _map(value, "metadata", max_len=15)
    if metadata is None:
        return None
    for key, item in metadata.items():
        _string(key, "metadata key", min_len=1, max_len=128, pattern=_METADATA_TEXT_RE)
        _, text = _union(item, f"metadata[{key}]", ("stringValue",))
        _string(
            text,
            f"metadata[{key}].stringValue",
            required=True,
            max_len=256,
            pattern=_METADATA_TEXT_RE,
        )
    return metadata


def _check_payload_item(item: Any, name: str) -> None:
    kind, value = _union(item, name, ("conversational", "blob", "json"))
    if kind == "conversational":
        conv = _struct(value, f"{name}.conversational", required=True)
        _, text = _union(conv.get("content"), f"{name}.conversational.content", ("text",))
        _string(
            text, f"{name}.conversational.content.text", required=True, min_len=1, max_len=100_000
        )
        _enum(conv.get("role"), f"{name}.conversational.role", _ROLES, required=True)
    elif kind == "json":
        data = _struct(value, f"{name}.json", required=True)
        if "content" not in data:
            raise _invalid(f"{name}.json.content", "is required")
        size = len(json.dumps(data["content"]).encode())
        if size > _MAX_JSON_CONTENT_BYTES:
            raise _invalid(
                f"{name}.json.content", f"is {size} bytes, the maximum is {_MAX_JSON_CONTENT_BYTES}"
            )


def _check_branch(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    branch = _struct(value, "branch")
    _string(
        branch.get("name"), "branch.name", required=True, min_len=1, max_len=100, pattern=_BRANCH_RE
    )
    _string(branch.get("rootEventId"), "branch.rootEventId", pattern=_EVENT_ID_RE)
    unknown = set(branch) - {"name", "rootEventId"}
    if unknown:
        raise _invalid("branch", f"unknown member(s) {', '.join(sorted(unknown))}")
    return {k: v for k, v in branch.items() if v is not None}


def _check_namespace_vars(value: Any) -> dict[str, str]:
    config = _struct(value, "extractionConfig")
    variables = _map(
        config.get("namespaceVariables"),
        "extractionConfig.namespaceVariables",
        min_len=1,
        max_len=5,
    )
    for key, item in (variables or {}).items():
        _string(
            key,
            "extractionConfig.namespaceVariables key",
            min_len=1,
            max_len=32,
            pattern=_NS_VAR_NAME_RE,
        )
        _string(
            item,
            f"extractionConfig.namespaceVariables[{key}]",
            required=True,
            min_len=1,
            max_len=64,
            pattern=_NS_VAR_VALUE_RE,
        )
    return dict(variables or {})


def _check_event_filters(value: Any) -> list[tuple[str, str, str | None]]:
    """Parse filter.eventMetadata into (key, operator, expected stringValue)."""
    items = _list(value, "filter.eventMetadata", min_len=1, max_len=5)
    parsed = []
    for i, raw in enumerate(items):
        name = f"filter.eventMetadata[{i}]"
        expr = _struct(raw, name, required=True)
        _, key = _union(expr.get("left"), f"{name}.left", ("metadataKey",))
        key = _req_string(
            key, f"{name}.left.metadataKey", min_len=1, max_len=128, pattern=_METADATA_TEXT_RE
        )
        op = _enum(expr.get("operator"), f"{name}.operator", _EVENT_FILTER_OPS, required=True)
        expected = None
        if op == "EQUALS_TO":
            if expr.get("right") is None:
                raise _invalid(f"{name}.right", "is required for EQUALS_TO")
            _, meta_value = _union(expr["right"], f"{name}.right", ("metadataValue",))
            _, expected = _union(meta_value, f"{name}.right.metadataValue", ("stringValue",))
            expected = _req_string(
                expected,
                f"{name}.right.metadataValue.stringValue",
                max_len=256,
                pattern=_METADATA_TEXT_RE,
            )
        assert op is not None
        parsed.append((key, op, expected))
    return parsed


def _check_record_value(value: Any, name: str) -> dict[str, Any]:
    kind, item = _union(
        value, name, ("stringValue", "stringListValue", "numberValue", "dateTimeValue")
    )
    if kind == "stringValue":
        _string(
            item,
            f"{name}.stringValue",
            required=True,
            min_len=1,
            max_len=256,
            pattern=_METADATA_TEXT_RE,
        )
    elif kind == "stringListValue":
        for j, text in enumerate(
            _list(item, f"{name}.stringListValue", required=True, min_len=1, max_len=5)
        ):
            _string(
                text,
                f"{name}.stringListValue[{j}]",
                required=True,
                min_len=1,
                max_len=64,
                pattern=_METADATA_TEXT_RE,
            )
    elif kind == "numberValue":
        item = _number(item, f"{name}.numberValue")
    else:
        item = _epoch_ms(item, f"{name}.dateTimeValue") / 1000
    return {kind: item}


def _check_record_metadata(value: Any, name: str) -> dict[str, dict[str, Any]] | None:
    metadata = _map(value, name, min_len=1, max_len=20)
    if metadata is None:
        return None
    out = {}
    for key, item in metadata.items():
        _string(key, f"{name} key", min_len=1, max_len=128, pattern=_METADATA_TEXT_RE)
        out[key] = _check_record_value(item, f"{name}[{key}]")
    return out


def _check_record_filters(value: Any, name: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    items = _list(value, name, min_len=1, max_len=5)
    parsed = []
    for i, raw in enumerate(items):
        item_name = f"{name}[{i}]"
        expr = _struct(raw, item_name, required=True)
        _, key = _union(expr.get("left"), f"{item_name}.left", ("metadataKey",))
        key = _req_string(
            key, f"{item_name}.left.metadataKey", min_len=1, max_len=128, pattern=_METADATA_TEXT_RE
        )
        op = _enum(expr.get("operator"), f"{item_name}.operator", _RECORD_FILTER_OPS, required=True)
        assert op is not None
        right = None
        if op not in ("EXISTS", "NOT_EXISTS"):
            if expr.get("right") is None:
                raise _invalid(f"{item_name}.right", f"is required for {op}")
            _, raw_value = _union(expr["right"], f"{item_name}.right", ("metadataValue",))
            right = _check_record_value(raw_value, f"{item_name}.right.metadataValue")
            kind = next(iter(right))
            wanted = {
                "BEFORE": ("dateTimeValue",),
                "AFTER": ("dateTimeValue",),
                "CONTAINS": ("stringValue", "stringListValue"),
                "GREATER_THAN": ("numberValue",),
                "GREATER_THAN_OR_EQUALS": ("numberValue",),
                "LESS_THAN": ("numberValue",),
                "LESS_THAN_OR_EQUALS": ("numberValue",),
            }.get(op)
            if wanted is not None and kind not in wanted:
                raise _invalid(f"{item_name}.right", f"{op} needs a {' or '.join(wanted)}")
        parsed.append((key, op, right))
    return parsed


def _record_matches(
    metadata: dict[str, dict[str, Any]] | None,
    filters: list[tuple[str, str, dict[str, Any] | None]],
) -> bool:
    for key, op, right in filters:
        value = (metadata or {}).get(key)
        if op == "EXISTS":
            ok = value is not None
        elif op == "NOT_EXISTS":
            ok = value is None
        elif value is None or right is None:
            ok = False
        else:
            (have_kind, have), (want_kind, want) = (
                next(iter(value.items())),
                next(iter(right.items())),
            )
            if op == "EQUALS_TO":
                ok = have_kind == want_kind and have == want
            elif op == "CONTAINS":
                needles = want if want_kind == "stringListValue" else [want]
                # a list holds the needle as an item, a string as a substring
                ok = have_kind in ("stringListValue", "stringValue") and all(
                    n in have for n in needles
                )
            elif have_kind != want_kind:
                ok = False
            elif op in ("BEFORE", "LESS_THAN"):
                ok = have < want
            elif op in ("AFTER", "GREATER_THAN"):
                ok = have > want
            elif op == "GREATER_THAN_OR_EQUALS":
                ok = have >= want
            else:  # LESS_THAN_OR_EQUALS
                ok = have <= want
        if not ok:
            return False
    return True


def _namespace_selector(params: dict[str, Any]) -> Callable[[list[str]], bool]:
    """namespace (exact) XOR namespacePath (hierarchical prefix), as the model says."""
    namespace = _string(
        params.get("namespace"), "namespace", min_len=1, max_len=1024, pattern=_NAMESPACE_RE
    )
    path = _string(
        params.get("namespacePath"), "namespacePath", min_len=1, max_len=1024, pattern=_NAMESPACE_RE
    )
    if (namespace is None) == (path is None):
        raise _invalid("namespace", "exactly one of namespace or namespacePath is required")
    if namespace is not None:
        return lambda namespaces: namespace in namespaces
    assert path is not None
    base = path.rstrip("/")
    prefix = base + "/"
    return lambda namespaces: any(n in (path, base) or n.startswith(prefix) for n in namespaces)


def _words(text: str) -> set[str]:
    return set(_WORD_RE.findall(text.lower()))


def _relevance(query: set[str], text: str) -> float:
    if not query:
        return 0.0
    return round(len(query & _words(text)) / len(query), 6)


def _parse_iso(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise _invalid(name, "must be an ISO-8601 timestamp string")
    match = _ISO_RE.fullmatch(value)
    if match is None:
        raise _invalid(name, f"{value!r} is not an ISO-8601 timestamp")
    year, month, day, hour, minute, sec, frac, zulu, sign, off_h, off_m = match.groups()
    try:
        stamp = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(sec),
            int((frac or "0")[:6].ljust(6, "0")),
            tzinfo=timezone.utc,
        )
    except ValueError as exc:
        raise _invalid(name, str(exc)) from None
    if sign and not zulu:
        offset = (int(off_h) * 60 + int(off_m)) * 60
        stamp = datetime.fromtimestamp(
            stamp.timestamp() - (offset if sign == "+" else -offset), tz=timezone.utc
        )
    return stamp


def _iso(stamp: datetime) -> str:
    return stamp.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


# --------------------------------------------------------------------------- pagination
def _encode_token(operation: str, key: tuple[Any, ...]) -> str:
    """``t`` and the hex of the cursor's JSON, padded to an even number of bytes.

    That is 4k+1 characters of base64's alphabet, which no base64 decoder accepts. The
    shape matters: botocore's paginator base64-decodes a ``StartingToken`` and, when
    that gives a JSON object, takes it for a resume token of its own and sends its keys
    as request parameters. Unpadded urlsafe base64 of the JSON, as tokens once were,
    was standard base64 whenever the JSON length was a multiple of 3 and no ``-`` or
    ``_`` came out: about one ListEvents token in 24, depending on the event id in it.
    """
    raw = json.dumps({"op": operation, "after": list(key)}, separators=(",", ":"))
    if len(raw) % 2:
        raw += " "
    return "t" + raw.encode().hex()


def _decode_token(token: str, operation: str) -> tuple[Any, ...]:
    try:
        if not token.startswith("t"):
            raise ValueError(token)
        data = json.loads(bytes.fromhex(token[1:]))
        if data["op"] != operation:
            raise ValueError(operation)
        return tuple(data["after"])
    except (ValueError, KeyError, TypeError):
        raise _invalid("nextToken", "is not a token this operation issued") from None


def _paginate(
    items: list[T], key: Callable[[T], tuple[Any, ...]], operation: str, token: Any, size: int
) -> tuple[list[T], str | None]:
    """Page through items already in answer order, with ``key`` increasing along it.

    The token records the key of the last item served, so later pages stay correct
    when items are added or deleted between calls.
    """
    start = 0
    if token is not None:
        if not isinstance(token, str) or not token:
            raise _invalid("nextToken", "must be a non-empty string")
        after = _decode_token(token, operation)
        start = next((i for i, item in enumerate(items) if key(item) > after), len(items))
    page = items[start : start + size]
    more = start + size < len(items)
    return page, (_encode_token(operation, key(page[-1])) if more and page else None)


# --------------------------------------------------------------------------- state
def _event_order(event_id: str) -> tuple[int, int]:
    match = _EVENT_ID_RE.fullmatch(event_id)
    if match is None:
        raise _invalid("eventId", "is malformed")
    return int(match.group(1)), int(match.group(2), 16)


@dataclass
class _Event:
    event_id: str
    order: tuple[int, int]
    actor_id: str
    session_id: str
    timestamp_ms: int
    payload: list[Any]
    branch: dict[str, str] | None
    metadata: dict[str, Any] | None

    @property
    def branch_name(self) -> str:
        return self.branch["name"] if self.branch else "main"

    def wire(self, memory_id: str, *, include_payload: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "memoryId": memory_id,
            "actorId": self.actor_id,
            "sessionId": self.session_id,
            "eventId": self.event_id,
            "eventTimestamp": self.timestamp_ms / 1000,
            "payload": self.payload if include_payload else [],
        }
        if self.branch is not None:
            out["branch"] = self.branch
        if self.metadata:
            out["metadata"] = self.metadata
        return out


@dataclass
class _Branch:
    root_event_id: str
    parent: str


@dataclass
class _MemorySession:
    actor_id: str
    session_id: str
    created_ms: int
    seq: int
    events: dict[str, _Event] = field(default_factory=dict)
    branches: dict[str, _Branch] = field(default_factory=dict)


@dataclass
class _Record:
    record_id: str
    text: str
    strategy_id: str
    namespaces: list[str]
    created_ms: int
    timestamp_ms: int
    metadata: dict[str, dict[str, Any]] | None
    expires_ms: int | None
    seq: int

    def wire(self, *, score: float | None = None, full: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "memoryRecordId": self.record_id,
            "content": {"text": self.text},
            "memoryStrategyId": self.strategy_id,
            "namespaces": self.namespaces,
            "createdAt": self.created_ms / 1000,
            "timestamp": self.timestamp_ms / 1000,
        }
        if score is not None:
            out["score"] = score
        if self.metadata:
            out["metadata"] = self.metadata
        if full and self.expires_ms is not None:
            out["expiresAt"] = self.expires_ms / 1000
        return out


@dataclass
class _Memory:
    memory_id: str
    strategy_id: str
    extraction_namespace: str | None
    extractor: Extractor | None
    sessions: dict[tuple[str, str], _MemorySession] = field(default_factory=dict)
    actors: dict[str, int] = field(default_factory=dict)
    records: dict[str, _Record] = field(default_factory=dict)
    tokens: dict[tuple[str, str], tuple[str, dict[str, Any]]] = field(default_factory=dict)


@dataclass
class _Invocation:
    invocation_id: str
    created_at: datetime
    seq: int
    description: str | None


@dataclass
class _Step:
    step_id: str
    invocation_id: str
    step_time: datetime
    payload: dict[str, Any]
    seq: int


@dataclass
class _BedrockSession:
    session_id: str
    arn: str
    status: str
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, str] | None
    encryption_key_arn: str | None
    tags: dict[str, str] | None
    seq: int
    invocations: dict[str, _Invocation] = field(default_factory=dict)
    steps: dict[str, _Step] = field(default_factory=dict)


# --------------------------------------------------------------------------- public API
class ApiCall(tuple):
    """One request the emulator answered: an ``(operation, params)`` pair.

    ``params`` merges URI labels, query string and JSON body. ``service`` tells the two
    ``ListSessions`` operations apart.
    """

    service: str

    def __new__(cls, operation: str, params: dict[str, Any], service: str) -> Self:
        self = super().__new__(cls, (operation, params))
        self.service = service
        return self

    @property
    def operation(self) -> str:
        return self[0]

    @property
    def params(self) -> dict[str, Any]:
        return self[1]


@dataclass
class Fault:
    """An injected error, served to the next ``remaining`` matching requests.

    With ``after_commit`` the request is executed (state changes are kept) and the
    error replaces the answer, which is how a lost response looks to a client.
    """

    operation: str
    status: int
    remaining: int
    code: str | None = None
    message: str | None = None
    after_commit: bool = False
    service: str | None = None

    def applies(self, service: str, operation: str) -> bool:
        return (
            self.remaining > 0
            and self.operation == operation
            and (self.service is None or self.service == service)
        )

    def error(self, service: str) -> ApiError:
        code = self.code or _FAULT_CODES[service][self.status]
        message = self.message or f"injected {code} ({self.status})"
        return ApiError(self.status, code, message, reason="FieldValidationFailed")


class AwsEmulator:
    """AgentCore Memory data plane plus Bedrock session management, over local HTTP.

    One server answers both services (AgentCore routes start with ``/memories``,
    Bedrock session routes with ``/sessions``). State lives in memory behind one lock.

    Args:
        page_cap: Upper bound on any page size, whatever ``maxResults`` asks, so
            pagination is always exercised. ``None`` disables it.
        max_event_bytes: Largest CreateEvent JSON body accepted (documented: 10 MB).
        event_id_source: ``"clock"`` (strictly increasing ids) or
            ``"event_timestamp"`` (prefix from the event's own timestamp).
        retrieve_min_score: RetrieveMemoryRecords drops records scoring below this.
        account_id: Account used in session ARNs.
        region: Region used in ARNs and by the client helpers.
        host: Interface to bind; port 0 picks a free port.
    """

    def __init__(
        self,
        *,
        page_cap: int | None = 7,
        max_event_bytes: int = 10 * 1024 * 1024,
        event_id_source: str = "clock",
        retrieve_min_score: float = 0.0,
        account_id: str = "123456789012",
        region: str = "us-east-1",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if event_id_source not in ("clock", "event_timestamp"):
            raise ValueError(
                f"event_id_source must be 'clock' or 'event_timestamp', not {event_id_source!r}"
            )
        if page_cap is not None and page_cap < 1:
            raise ValueError("page_cap must be at least 1 or None")
        self.page_cap = page_cap
        self.max_event_bytes = max_event_bytes
        self.event_id_source = event_id_source
        self.retrieve_min_score = retrieve_min_score
        self.account_id = account_id
        self.region = region
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._memories: dict[str, _Memory] = {}
        self._sessions: dict[str, _BedrockSession] = {}
        self._faults: list[Fault] = []
        self._calls: list[ApiCall] = []
        self._seq = 0
        self._last_order = (0, 0)
        self._rng = random.Random()
        self._boto_session: Any = None
        self.internal_errors: list[str] = []
        self.extraction_errors: list[str] = []

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> AwsEmulator:
        """Bind and serve in a daemon thread; returns self for chaining."""
        if self._server is not None:
            return self
        server = _Server((self._host, self._port), _Handler)
        server.emulator = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="aws-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __repr__(self) -> str:
        where = self.endpoint_url if self._server is not None else "stopped"
        return f"AwsEmulator({where}, page_cap={self.page_cap})"

    # ----------------------------------------------------------------- clients
    def agentcore_client(self, *, max_attempts: int = 3, **kwargs: Any) -> Any:
        """A real boto3 ``bedrock-agentcore`` client pointed at this emulator.

        Args:
            max_attempts: Total attempts per call, the first included, with the
                ``standard`` retry mode. (botocore's ``retries["max_attempts"]`` counts
                retries only; this is its ``total_max_attempts``.)
            **kwargs: Passed to ``Session.client``; a ``config`` is merged over ours.
        """
        return self._client(AGENTCORE, max_attempts, kwargs)

    def agent_runtime_client(self, *, max_attempts: int = 3, **kwargs: Any) -> Any:
        """A real boto3 ``bedrock-agent-runtime`` client; arguments as agentcore_client."""
        return self._client(AGENT_RUNTIME, max_attempts, kwargs)

    def _client(self, service: str, max_attempts: int, kwargs: dict[str, Any]) -> Any:
        import boto3  # imported lazily: the emulator itself is stdlib-only
        from botocore.config import Config

        config = Config(retries={"mode": "standard", "total_max_attempts": max_attempts})
        if kwargs.get("config") is not None:
            config = config.merge(kwargs.pop("config"))
        options: dict[str, Any] = {
            "region_name": self.region,
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "aws_session_token": "testing",
            "config": config,
        }
        options.update(kwargs)
        with self._lock:
            # one session per emulator, so every client shares the same exception classes
            if self._boto_session is None:
                self._boto_session = boto3.session.Session()
            return self._boto_session.client(service, **options)

    # ----------------------------------------------------------------- test helpers
    def create_memory(
        self,
        name: str = "memory",
        *,
        strategy_id: str = "default",
        extraction_namespace: str | None = None,
        extractor: Extractor | None = None,
    ) -> str:
        """Create a memory (the control plane is out of scope) and return its id.

        Args:
            name: Memory name; the id is ``name-`` plus 10 random alphanumerics.
            strategy_id: memoryStrategyId given to extracted records and to batch
                records that name none.
            extraction_namespace: Enables a trivial synchronous long-term extraction:
                each USER conversational message becomes one record in this namespace
                template (``{actorId}``, ``{sessionId}``, ``{memoryStrategyId}`` and
                extractionConfig namespaceVariables are substituted).
            extractor: Replaces the default extraction; called with the event as
                returned by GetEvent, it yields record texts.
        """
        if not _MEMORY_NAME_RE.fullmatch(name):
            raise ValueError(f"memory name {name!r} does not match {_MEMORY_NAME_RE.pattern}")
        _req_string(strategy_id, "strategy_id", min_len=1, max_len=100, pattern=_STRATEGY_RE)
        if extractor is not None and extraction_namespace is None:
            raise ValueError("an extractor needs an extraction_namespace")
        alphabet = string.ascii_letters + string.digits
        with self._lock:
            while True:
                memory_id = f"{name}-{''.join(secrets.choice(alphabet) for _ in range(10))}"
                if memory_id not in self._memories:
                    break
            self._memories[memory_id] = _Memory(
                memory_id, strategy_id, extraction_namespace, extractor
            )
        return memory_id

    def memory_arn(self, memory_id: str) -> str:
        """The ARN form of a memory id, which every memoryId parameter also accepts."""
        return f"arn:aws:bedrock-agentcore:{self.region}:{self.account_id}:memory/{memory_id}"

    def set_session_status(self, session_id: str, status: str) -> None:
        """Force a Bedrock session's status (e.g. EXPIRED, which no API produces here)."""
        _enum(status, "status", ("ACTIVE", "EXPIRED", "ENDED"), required=True)
        with self._lock:
            self._sessions[session_id].status = status

    def inject_fault(
        self,
        operation: str,
        status: int = 500,
        count: int = 1,
        *,
        code: str | None = None,
        message: str | None = None,
        after_commit: bool = False,
        service: str | None = None,
    ) -> Fault:
        """Answer the next ``count`` calls of ``operation`` with an error.

        The code defaults from the status and the service's model: 429 is
        ThrottledException (agentcore) or ThrottlingException (agent-runtime), 500 is
        ServiceException or InternalServerException, 409 is RetryableConflictException
        or ConflictException. ``service`` disambiguates ``ListSessions``. Faults are
        served before the request touches state unless ``after_commit`` is set.
        """
        services = _OPERATION_SERVICES.get(operation)
        if services is None:
            raise ValueError(f"unknown operation {operation!r}")
        if service is not None:
            if service not in services:
                raise ValueError(f"{operation} is not a {service} operation")
            services = {service}
        if code is None:
            missing = [s for s in services if status not in _FAULT_CODES[s]]
            if missing:
                raise ValueError(f"no default error code for status {status} in {missing}")
        if count < 1:
            raise ValueError("count must be at least 1")
        fault = Fault(operation, status, count, code, message, after_commit, service)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def calls(self) -> list[ApiCall]:
        """Every request answered so far (retries included), oldest first; a copy."""
        with self._lock:
            return list(self._calls)

    def call_count(self, operation: str, *, service: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for call in self._calls
                if call[0] == operation and (service is None or call.service == service)
            )

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    # ----------------------------------------------------------------- dispatch
    def handle(self, method: str, raw_path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """Answer one HTTP request; the server thread calls this, tests may too."""
        split = urlsplit(raw_path)
        raw_segments = split.path.split("/")[1:]
        for route in _ROUTES:
            labels = route.match(method, raw_segments)
            if labels is not None:
                break
        else:
            message = f"no route for {method} {split.path}"
            return self._error_response(
                AGENTCORE, ApiError(404, "UnknownOperationException", message)
            )
        service = route.service
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        try:
            data = json.loads(body) if body.strip() else {}
            problem = None if isinstance(data, dict) else "the body is not a JSON object"
        except ValueError as exc:
            data, problem = {}, str(exc)
        if problem is not None:
            with self._lock:
                self._calls.append(ApiCall(route.operation, {**query, **labels}, service))
            return self._error_response(
                service, _invalid("body", f"cannot parse: {problem}", reason="CannotParse")
            )
        params = {**data, **query, **labels}
        with self._lock:
            self._calls.append(ApiCall(route.operation, params, service))
            fault = next((f for f in self._faults if f.applies(service, route.operation)), None)
            if fault is not None:
                fault.remaining -= 1
                if not fault.after_commit:
                    return self._error_response(service, fault.error(service))
            try:
                result = getattr(self, route.handler)(params, len(body))
            except ApiError as exc:
                return self._error_response(service, exc)
            except Exception as exc:  # an emulator bug: log it, keep it, answer 500
                logger.exception("aws emulator bug in %s", route.operation)
                self.internal_errors.append(traceback.format_exc())
                code = _FAULT_CODES[service][500]
                return self._error_response(service, ApiError(500, code, repr(exc)))
            if fault is not None:
                return self._error_response(service, fault.error(service))
        return route.status, self._headers(), json.dumps(result).encode()

    def _headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "x-amzn-RequestId": str(uuid.uuid4())}

    def _error_response(self, service: str, error: ApiError) -> tuple[int, dict[str, str], bytes]:
        headers = self._headers()
        headers["x-amzn-ErrorType"] = error.code
        return error.status, headers, json.dumps(error.body(service)).encode()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _page_size(self, value: Any, *, default: int, maximum: int) -> int:
        size = _integer(value, "maxResults", lo=1, hi=maximum, default=default)
        return size if self.page_cap is None else min(size, self.page_cap)

    # ----------------------------------------------------------------- agentcore: events
    def _memory(self, params: dict[str, Any]) -> _Memory:
        raw = _req_string(params.get("memoryId"), "memoryId", min_len=12)
        match = _MEMORY_ID_RE.fullmatch(raw)
        if match is None:
            raise _invalid("memoryId", f"does not match the pattern {_MEMORY_ID_RE.pattern}")
        memory = self._memories.get(match.group(1))
        if memory is None:
            raise _not_found(f"Memory {match.group(1)} not found")
        return memory

    def _actor_session(self, params: dict[str, Any]) -> tuple[str, str]:
        actor = _req_string(
            params.get("actorId"), "actorId", min_len=1, max_len=255, pattern=_ACTOR_ID_RE
        )
        session = _req_string(
            params.get("sessionId"), "sessionId", min_len=1, max_len=100, pattern=_SESSION_ID_RE
        )
        return actor, session

    def _new_event_id(self, memory: _Memory, timestamp_ms: int) -> tuple[str, tuple[int, int]]:
        if self.event_id_source == "event_timestamp":
            taken = {e for s in memory.sessions.values() for e in s.events}
            while True:
                order = (timestamp_ms, self._rng.getrandbits(32))
                event_id = f"{order[0]:019d}#{order[1]:08x}"
                if event_id not in taken:
                    return event_id, order
        last_ms, last_suffix = self._last_order
        ms = max(_now_ms(), last_ms)
        suffix = self._rng.getrandbits(31)
        if ms == last_ms:
            suffix = last_suffix + 1 + self._rng.getrandbits(16)
            if suffix > 0xFFFFFFFF:  # suffix space exhausted: borrow the next millisecond
                ms, suffix = ms + 1, self._rng.getrandbits(31)
        self._last_order = (ms, suffix)
        return f"{ms:019d}#{suffix:08x}", (ms, suffix)

    def _find_event(self, memory: _Memory, event_id: str) -> _Event | None:
        for session in memory.sessions.values():
            if event_id in session.events:
                return session.events[event_id]
        return None

    def _create_event(self, p: dict[str, Any], body_size: int) -> dict[str, Any]:
        memory = self._memory(p)
        if body_size > self.max_event_bytes:
            raise _invalid(
                "payload",
                f"event size {body_size} bytes exceeds the maximum {self.max_event_bytes}",
            )
        actor = _req_string(
            p.get("actorId"), "actorId", min_len=1, max_len=255, pattern=_ACTOR_ID_RE
        )
        session_id = _string(
            p.get("sessionId"), "sessionId", min_len=1, max_len=100, pattern=_SESSION_ID_RE
        ) or str(uuid.uuid4())
        timestamp_ms = _epoch_ms(p.get("eventTimestamp"), "eventTimestamp")
        payload = _list(p.get("payload"), "payload", required=True, max_len=100)
        for i, item in enumerate(payload):
            _check_payload_item(item, f"payload[{i}]")
        branch = _check_branch(p.get("branch"))
        metadata = _check_event_metadata(p.get("metadata"))
        mode = _enum(p.get("extractionMode"), "extractionMode", ("SKIP",))
        variables = _check_namespace_vars(p.get("extractionConfig"))
        token = _string(p.get("clientToken"), "clientToken")
        fingerprint = _fingerprint({**p, "memoryId": memory.memory_id}, skip=("clientToken",))
        if token is not None:
            replay = self._replay(memory, "CreateEvent", token, fingerprint)
            if replay is not None:
                return replay

        session = memory.sessions.get((actor, session_id))
        new_branch: _Branch | None = None
        if branch is not None:
            new_branch = self._check_branch_target(memory, session, branch)

        if session is None:
            session = _MemorySession(actor, session_id, _now_ms(), self._next_seq())
            memory.sessions[(actor, session_id)] = session
            memory.actors.setdefault(actor, self._next_seq())
        event_id, order = self._new_event_id(memory, timestamp_ms)
        event = _Event(event_id, order, actor, session_id, timestamp_ms, payload, branch, metadata)
        session.events[event_id] = event
        if new_branch is not None and branch is not None:
            session.branches[branch["name"]] = new_branch
        response = {"event": event.wire(memory.memory_id)}
        if token is not None:
            memory.tokens[("CreateEvent", token)] = (fingerprint, response)
        if mode != "SKIP" and memory.extraction_namespace is not None:
            self._extract(memory, response["event"], variables)
        return response

    def _check_branch_target(
        self, memory: _Memory, session: _MemorySession | None, branch: dict[str, str]
    ) -> _Branch | None:
        """Validate a CreateEvent branch; return the branch to register if it is new."""
        name, root = branch["name"], branch.get("rootEventId")
        if name == "main":
            if root is not None:
                raise _invalid("branch.name", "main is the implicit trunk and cannot be forked")
            return None
        existing = session.branches.get(name) if session is not None else None
        if root is None:
            if existing is None:
                raise _invalid(
                    "branch.rootEventId",
                    f"branch {name!r} does not exist in this session; create it with a rootEventId",
                )
            return None
        if existing is not None:
            if existing.root_event_id != root:
                raise _invalid(
                    "branch.rootEventId",
                    f"branch {name!r} already forks from {existing.root_event_id}",
                    reason="ResourceConflict",
                )
            return None
        root_event = session.events.get(root) if session is not None else None
        if root_event is None:
            if self._find_event(memory, root) is not None:
                raise _invalid(
                    "branch.rootEventId",
                    f"event {root} belongs to another session",
                    reason="EventInOtherSession",
                )
            raise _invalid("branch.rootEventId", f"event {root} does not exist in this session")
        return _Branch(root, root_event.branch_name)

    def _replay(
        self, memory: _Memory, operation: str, token: str, fingerprint: str
    ) -> dict[str, Any] | None:
        seen = memory.tokens.get((operation, token))
        if seen is None:
            return None
        if seen[0] != fingerprint:
            raise _invalid(
                "clientToken",
                "the token was already used with different parameters",
                reason="IdempotentParameterMismatchException",
            )
        return seen[1]

    def _get_event(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        memory = self._memory(p)
        event = self._lookup_event(memory, p)
        return {"event": event.wire(memory.memory_id)}

    def _lookup_event(self, memory: _Memory, p: dict[str, Any]) -> _Event:
        actor, session_id = self._actor_session(p)
        event_id = _req_string(p.get("eventId"), "eventId", pattern=_EVENT_ID_RE)
        session = memory.sessions.get((actor, session_id))
        event = session.events.get(event_id) if session is not None else None
        if event is None:
            raise _not_found(f"Event {event_id} not found")
        return event

    def _delete_event(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        memory = self._memory(p)
        event = self._lookup_event(memory, p)
        del memory.sessions[(event.actor_id, event.session_id)].events[event.event_id]
        return {"eventId": event.event_id}

    def _list_events(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        memory = self._memory(p)
        actor, session_id = self._actor_session(p)
        include = _boolean(p.get("includePayloads"), "includePayloads")
        filt = _struct(p.get("filter"), "filter")
        size = self._page_size(p.get("maxResults"), default=20, maximum=100)
        session = memory.sessions.get((actor, session_id))
        events = list(session.events.values()) if session is not None else []
        if filt.get("branch") is not None:
            branch = _struct(filt["branch"], "filter.branch")
            name = _req_string(
                branch.get("name"), "filter.branch.name", min_len=1, max_len=100, pattern=_BRANCH_RE
            )
            parents = _boolean(
                branch.get("includeParentBranches"), "filter.branch.includeParentBranches"
            )
            scope = self._branch_scope(session, name, parents)
            events = [
                e
                for e in events
                if e.branch_name in scope
                and ((limit := scope[e.branch_name]) is None or e.order <= limit)
            ]
        if filt.get("eventMetadata") is not None:
            filters = _check_event_filters(filt["eventMetadata"])
            events = [e for e in events if _event_matches(e.metadata, filters)]
        events.sort(key=lambda e: e.order, reverse=True)
        page, token = _paginate(
            events, lambda e: (-e.order[0], -e.order[1]), "ListEvents", p.get("nextToken"), size
        )
        out: dict[str, Any] = {
            "events": [e.wire(memory.memory_id, include_payload=include) for e in page]
        }
        if token is not None:
            out["nextToken"] = token
        return out

    @staticmethod
    def _branch_scope(
        session: _MemorySession | None, name: str, include_parents: bool
    ) -> dict[str, tuple[int, int] | None]:
        """Branch name -> last event order included (None: all of that branch)."""
        scope: dict[str, tuple[int, int] | None] = {name: None}
        current = name
        while include_parents and session is not None and current in session.branches:
            branch = session.branches[current]
            if branch.parent in scope:
                break
            scope[branch.parent] = _event_order(branch.root_event_id)
            current = branch.parent
        return scope

    def _list_memory_sessions(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        memory = self._memory(p)
        actor = _req_string(
            p.get("actorId"), "actorId", min_len=1, max_len=255, pattern=_ACTOR_ID_RE
        )
        filt = _struct(p.get("filter"), "filter")
        has_events = _enum(filt.get("eventFilter"), "filter.eventFilter", ("HAS_EVENTS",))
        size = self._page_size(p.get("maxResults"), default=20, maximum=100)
        sessions = sorted(
            (
                s
                for s in memory.sessions.values()
                if s.actor_id == actor and (has_events is None or s.events)
            ),
            key=lambda s: -s.seq,
        )
        page, token = _paginate(
            sessions, lambda s: (-s.seq,), "ListSessions", p.get("nextToken"), size
        )
        out: dict[str, Any] = {
            "sessionSummaries": [
                {"sessionId": s.session_id, "actorId": s.actor_id, "createdAt": s.created_ms / 1000}
                for s in page
            ]
        }
        if token is not None:
            out["nextToken"] = token
        return out

    def _list_actors(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        memory = self._memory(p)
        size = self._page_size(p.get("maxResults"), default=20, maximum=100)
        actors = sorted(memory.actors.items(), key=lambda a: -a[1])
        page, token = _paginate(actors, lambda a: (-a[1],), "ListActors", p.get("nextToken"), size)
        out: dict[str, Any] = {"actorSummaries": [{"actorId": a} for a, _ in page]}
        if token is not None:
            out["nextToken"] = token
        return out

    # ----------------------------------------------------------------- agentcore: records
    def _extract(self, memory: _Memory, event: dict[str, Any], variables: dict[str, str]) -> None:
        """The trivial long-term extraction: runs synchronously, never fails the call."""
        values = {
            "actorId": event["actorId"],
            "sessionId": event["sessionId"],
            "memoryStrategyId": memory.strategy_id,
            **variables,
        }
        template = memory.extraction_namespace or ""
        unknown = [v for v in _TEMPLATE_VAR_RE.findall(template) if v not in values]
        if unknown:
            self.extraction_errors.append(
                f"{event['eventId']}: namespace template {template!r} needs {unknown}"
            )
            return
        namespace = _TEMPLATE_VAR_RE.sub(lambda m: values[m.group(1)], template)
        if not _NAMESPACE_RE.fullmatch(namespace) or len(namespace) > 1024:
            self.extraction_errors.append(f"{event['eventId']}: bad namespace {namespace!r}")
            return
        extractor = memory.extractor or _default_extractor
        for text in extractor(event):
            if not text:
                continue
            self._add_record(
                memory,
                text[:16000],
                memory.strategy_id,
                [namespace],
                event["eventTimestamp"] * 1000,
                None,
                None,
            )

    def _add_record(
        self,
        memory: _Memory,
        text: str,
        strategy_id: str,
        namespaces: list[str],
        timestamp_ms: float,
        metadata: dict[str, dict[str, Any]] | None,
        expires_ms: int | None,
    ) -> _Record:
        while True:
            record_id = f"mem-{uuid.uuid4()}"
            if record_id not in memory.records:
                break
        record = _Record(
            record_id,
            text,
            strategy_id,
            namespaces,
            _now_ms(),
            int(timestamp_ms),
            metadata,
            expires_ms,
            self._next_seq(),
        )
        memory.records[record_id] = record
        return record

    def _record_id(self, value: Any, name: str = "memoryRecordId") -> str:
        return _req_string(value, name, min_len=40, max_len=50, pattern=_RECORD_ID_RE)

    def _retrieve_records(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        memory = self._memory(p)
        selects = _namespace_selector(p)
        criteria = _struct(p.get("searchCriteria"), "searchCriteria", required=True)
        query = _req_string(
            criteria.get("searchQuery"), "searchCriteria.searchQuery", min_len=1, max_len=10_000
        )
        strategy = _string(
            criteria.get("memoryStrategyId"),
            "searchCriteria.memoryStrategyId",
            min_len=1,
            max_len=100,
            pattern=_STRATEGY_RE,
        )
        top_k = _integer(
            criteria.get("topK"), "searchCriteria.topK", lo=1, hi=100, default=_DEFAULT_TOP_K
        )
        filters = []
        if criteria.get("metadataFilters") is not None:
            filters = _check_record_filters(
                criteria["metadataFilters"], "searchCriteria.metadataFilters"
            )
        size = self._page_size(p.get("maxResults"), default=20, maximum=100)
        words = _words(query)
        scored = [
            (_relevance(words, r.text), r)
            for r in memory.records.values()
            if selects(r.namespaces)
            and (strategy is None or r.strategy_id == strategy)
            and _record_matches(r.metadata, filters)
        ]
        scored = [sr for sr in scored if sr[0] >= self.retrieve_min_score]
        scored.sort(key=lambda sr: (-sr[0], -sr[1].seq))
        page, token = _paginate(
            scored[:top_k],
            lambda sr: (-sr[0], -sr[1].seq),
            "RetrieveMemoryRecords",
            p.get("nextToken"),
            size,
        )
        out: dict[str, Any] = {"memoryRecordSummaries": [r.wire(score=s) for s, r in page]}
        if token is not None:
            out["nextToken"] = token
        return out

    def _list_records(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        memory = self._memory(p)
        selects = _namespace_selector(p)
        strategy = _string(
            p.get("memoryStrategyId"),
            "memoryStrategyId",
            min_len=1,
            max_len=100,
            pattern=_STRATEGY_RE,
        )
        filters = []
        if p.get("metadataFilters") is not None:
            filters = _check_record_filters(p["metadataFilters"], "metadataFilters")
        size = self._page_size(p.get("maxResults"), default=20, maximum=100)
        records = sorted(
            (
                r
                for r in memory.records.values()
                if selects(r.namespaces)
                and (strategy is None or r.strategy_id == strategy)
                and _record_matches(r.metadata, filters)
            ),
            key=lambda r: -r.seq,
        )
        page, token = _paginate(
            records, lambda r: (-r.seq,), "ListMemoryRecords", p.get("nextToken"), size
        )
        out: dict[str, Any] = {"memoryRecordSummaries": [r.wire() for r in page]}
        if token is not None:
            out["nextToken"] = token
        return out

    def _lookup_record(self, memory: _Memory, p: dict[str, Any]) -> _Record:
        record_id = self._record_id(p.get("memoryRecordId"))
        _string(p.get("namespace"), "namespace", min_len=1, max_len=1024, pattern=_NAMESPACE_RE)
        record = memory.records.get(record_id)
        if record is None:
            raise _not_found(f"Memory record {record_id} not found")
        return record

    def _get_record(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        record = self._lookup_record(self._memory(p), p)
        return {"memoryRecord": record.wire(full=True)}

    def _delete_record(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        memory = self._memory(p)
        record = self._lookup_record(memory, p)
        del memory.records[record.record_id]
        return {"memoryRecordId": record.record_id}

    @staticmethod
    def _expiry(value: Any) -> tuple[str, int | None] | None:
        if value is None:
            return None
        kind, item = _union(
            value, "recordExpirySpecification", ("recordExpiryDurationDays", "action")
        )
        if kind == "action":
            _enum(item, "recordExpirySpecification.action", ("REMOVE",), required=True)
            return "remove", None
        days = _integer(
            item, "recordExpirySpecification.recordExpiryDurationDays", lo=31, hi=None, default=31
        )
        return "days", days

    def _batch_create_records(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        memory = self._memory(p)
        items = _list(p.get("records"), "records", required=True, max_len=100)
        expiry = self._expiry(p.get("recordExpirySpecification"))
        checked = []
        seen: set[str] = set()
        for i, raw in enumerate(items):
            name = f"records[{i}]"
            item = _struct(raw, name, required=True)
            request_id = _req_string(
                item.get("requestIdentifier"),
                f"{name}.requestIdentifier",
                min_len=1,
                max_len=80,
                pattern=_REQUEST_ID_RE,
            )
            if request_id in seen:
                raise _invalid(f"{name}.requestIdentifier", f"{request_id!r} is repeated")
            seen.add(request_id)
            namespaces = self._namespaces(
                item.get("namespaces"), f"{name}.namespaces", required=True
            )
            _, text = _union(item.get("content"), f"{name}.content", ("text",))
            text = _req_string(text, f"{name}.content.text", min_len=1, max_len=16_000)
            timestamp_ms = _epoch_ms(item.get("timestamp"), f"{name}.timestamp")
            strategy = _string(
                item.get("memoryStrategyId"),
                f"{name}.memoryStrategyId",
                min_len=1,
                max_len=100,
                pattern=_STRATEGY_RE,
            )
            metadata = _check_record_metadata(item.get("metadata"), f"{name}.metadata")
            checked.append((request_id, namespaces, text, timestamp_ms, strategy, metadata))
        token = _string(p.get("clientToken"), "clientToken")
        fingerprint = _fingerprint({**p, "memoryId": memory.memory_id}, skip=("clientToken",))
        if token is not None:
            replay = self._replay(memory, "BatchCreateMemoryRecords", token, fingerprint)
            if replay is not None:
                return replay
        expires_ms = None
        if expiry is not None and expiry[0] == "days" and expiry[1] is not None:
            expires_ms = _now_ms() + expiry[1] * 86_400_000
        successful = []
        for request_id, namespaces, text, timestamp_ms, strategy, metadata in checked:
            record = self._add_record(
                memory,
                text,
                strategy or memory.strategy_id,
                namespaces,
                timestamp_ms,
                metadata,
                expires_ms,
            )
            successful.append(
                {
                    "memoryRecordId": record.record_id,
                    "status": "SUCCEEDED",
                    "requestIdentifier": request_id,
                }
            )
        response = {"successfulRecords": successful, "failedRecords": []}
        if token is not None:
            memory.tokens[("BatchCreateMemoryRecords", token)] = (fingerprint, response)
        return response

    @staticmethod
    def _namespaces(value: Any, name: str, *, required: bool = False) -> list[str]:
        namespaces = _list(value, name, required=required, max_len=1)
        for j, namespace in enumerate(namespaces):
            _string(
                namespace,
                f"{name}[{j}]",
                required=True,
                min_len=1,
                max_len=1024,
                pattern=_NAMESPACE_RE,
            )
        return list(namespaces)

    def _batch_update_records(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        memory = self._memory(p)
        items = _list(p.get("records"), "records", required=True, max_len=100)
        expiry = self._expiry(p.get("recordExpirySpecification"))
        successful, failed = [], []
        for i, raw in enumerate(items):
            name = f"records[{i}]"
            item = _struct(raw, name, required=True)
            record_id = self._record_id(item.get("memoryRecordId"), f"{name}.memoryRecordId")
            timestamp_ms = _epoch_ms(item.get("timestamp"), f"{name}.timestamp")
            text = None
            if item.get("content") is not None:
                _, text = _union(item["content"], f"{name}.content", ("text",))
                text = _req_string(text, f"{name}.content.text", min_len=1, max_len=16_000)
            namespaces = None
            if item.get("namespaces") is not None:
                namespaces = self._namespaces(item["namespaces"], f"{name}.namespaces")
            self._namespaces(item.get("sourceNamespaces"), f"{name}.sourceNamespaces")
            strategy = _string(
                item.get("memoryStrategyId"),
                f"{name}.memoryStrategyId",
                min_len=1,
                max_len=100,
                pattern=_STRATEGY_RE,
            )
            metadata = _check_record_metadata(item.get("metadata"), f"{name}.metadata")
            record = memory.records.get(record_id)
            if record is None:
                failed.append(
                    {
                        "memoryRecordId": record_id,
                        "status": "FAILED",
                        "errorCode": 404,
                        "errorMessage": "memory record not found",
                    }
                )
                continue
            record.timestamp_ms = timestamp_ms
            if text is not None:
                record.text = text
            if namespaces is not None:
                record.namespaces = namespaces
            if strategy is not None:
                record.strategy_id = strategy
            if metadata is not None:
                record.metadata = metadata
            if expiry is not None:
                record.expires_ms = (
                    None if expiry[0] == "remove" else _now_ms() + (expiry[1] or 0) * 86_400_000
                )
            successful.append({"memoryRecordId": record_id, "status": "SUCCEEDED"})
        return {"successfulRecords": successful, "failedRecords": failed}

    def _batch_delete_records(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        memory = self._memory(p)
        items = _list(p.get("records"), "records", required=True, max_len=100)
        successful, failed = [], []
        for i, raw in enumerate(items):
            name = f"records[{i}]"
            item = _struct(raw, name, required=True)
            record_id = self._record_id(item.get("memoryRecordId"), f"{name}.memoryRecordId")
            _string(
                item.get("namespace"),
                f"{name}.namespace",
                min_len=1,
                max_len=1024,
                pattern=_NAMESPACE_RE,
            )
            if memory.records.pop(record_id, None) is None:
                failed.append(
                    {
                        "memoryRecordId": record_id,
                        "status": "FAILED",
                        "errorCode": 404,
                        "errorMessage": "memory record not found",
                    }
                )
            else:
                successful.append({"memoryRecordId": record_id, "status": "SUCCEEDED"})
        return {"successfulRecords": successful, "failedRecords": failed}

    # ----------------------------------------------------------------- bedrock sessions
    def _bedrock_session(self, p: dict[str, Any]) -> _BedrockSession:
        ident = _req_string(p.get("sessionIdentifier"), "sessionIdentifier")
        match = _SESSION_IDENT_RE.fullmatch(ident)
        if match is None:
            raise _invalid("sessionIdentifier", "must be a lowercase session UUID or ARN")
        session = self._sessions.get(match.group(1))
        if session is None:
            raise _not_found(f"Session {match.group(1)} not found")
        return session

    @staticmethod
    def _require_active(session: _BedrockSession, action: str) -> None:
        if session.status != "ACTIVE":
            raise _conflict(f"cannot {action}: session {session.session_id} is {session.status}")

    @staticmethod
    def _session_metadata(value: Any) -> dict[str, str] | None:
        metadata = _map(value, "sessionMetadata", max_len=50)
        for key, item in (metadata or {}).items():
            _string(key, "sessionMetadata key", min_len=1, max_len=100)
            _string(item, f"sessionMetadata[{key}]", required=True, max_len=5000)
        return metadata

    def _list_query(self, p: dict[str, Any]) -> tuple[int, Any]:
        size = self._page_size(p.get("maxResults"), default=20, maximum=1000)
        token = _string(
            p.get("nextToken"), "nextToken", min_len=1, max_len=2048, pattern=_NEXT_TOKEN_RE
        )
        return size, token

    def _create_session(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        metadata = self._session_metadata(p.get("sessionMetadata"))
        key_arn = _string(
            p.get("encryptionKeyArn"),
            "encryptionKeyArn",
            min_len=1,
            max_len=2048,
            pattern=_KMS_ARN_RE,
        )
        tags = _map(p.get("tags"), "tags", min_len=1, max_len=200)
        for key, item in (tags or {}).items():
            _string(key, "tags key", min_len=1, max_len=128, pattern=_METADATA_TEXT_RE)
            _string(item, f"tags[{key}]", required=True, max_len=256, pattern=_METADATA_TEXT_RE)
        session_id = str(uuid.uuid4())
        now = _utcnow()
        arn = f"arn:aws:bedrock:{self.region}:{self.account_id}:session/{session_id}"
        session = _BedrockSession(
            session_id, arn, "ACTIVE", now, now, metadata, key_arn, tags, self._next_seq()
        )
        self._sessions[session_id] = session
        return {
            "sessionId": session_id,
            "sessionArn": arn,
            "sessionStatus": "ACTIVE",
            "createdAt": _iso(now),
        }

    @staticmethod
    def _session_wire(session: _BedrockSession) -> dict[str, Any]:
        return {
            "sessionId": session.session_id,
            "sessionArn": session.arn,
            "sessionStatus": session.status,
            "createdAt": _iso(session.created_at),
            "lastUpdatedAt": _iso(session.updated_at),
        }

    def _get_session(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        session = self._bedrock_session(p)
        out = self._session_wire(session)
        if session.metadata is not None:
            out["sessionMetadata"] = session.metadata
        if session.encryption_key_arn is not None:
            out["encryptionKeyArn"] = session.encryption_key_arn
        return out

    def _update_session(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        session = self._bedrock_session(p)
        metadata = self._session_metadata(p.get("sessionMetadata"))
        self._require_active(session, "update")
        session.metadata = metadata
        session.updated_at = _utcnow()
        return self._session_wire(session)

    def _end_session(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        session = self._bedrock_session(p)
        self._require_active(session, "end")
        session.status = "ENDED"
        session.updated_at = _utcnow()
        return {
            "sessionId": session.session_id,
            "sessionArn": session.arn,
            "sessionStatus": session.status,
        }

    def _delete_session(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        session = self._bedrock_session(p)
        if session.status == "ACTIVE":
            raise _conflict(f"session {session.session_id} is ACTIVE; end it before deleting")
        del self._sessions[session.session_id]
        return {}

    def _list_sessions(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        size, token = self._list_query(p)
        sessions = sorted(self._sessions.values(), key=lambda s: -s.seq)
        page, next_token = _paginate(sessions, lambda s: (-s.seq,), "ListSessions", token, size)
        out: dict[str, Any] = {"sessionSummaries": [self._session_wire(s) for s in page]}
        if next_token is not None:
            out["nextToken"] = next_token
        return out

    def _create_invocation(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        session = self._bedrock_session(p)
        invocation_id = _string(p.get("invocationId"), "invocationId", pattern=_UUID_RE)
        description = _string(p.get("description"), "description", min_len=1, max_len=200)
        self._require_active(session, "create an invocation")
        invocation_id = invocation_id or str(uuid.uuid4())
        if invocation_id in session.invocations:
            raise _conflict(f"invocation {invocation_id} already exists")
        invocation = _Invocation(invocation_id, _utcnow(), self._next_seq(), description)
        session.invocations[invocation_id] = invocation
        session.updated_at = invocation.created_at
        return {
            "invocationId": invocation_id,
            "sessionId": session.session_id,
            "createdAt": _iso(invocation.created_at),
        }

    def _list_invocations(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        session = self._bedrock_session(p)
        size, token = self._list_query(p)
        invocations = sorted(session.invocations.values(), key=lambda i: -i.seq)
        page, next_token = _paginate(
            invocations, lambda i: (-i.seq,), "ListInvocations", token, size
        )
        out: dict[str, Any] = {
            "invocationSummaries": [
                {
                    "invocationId": i.invocation_id,
                    "sessionId": session.session_id,
                    "createdAt": _iso(i.created_at),
                }
                for i in page
            ]
        }
        if next_token is not None:
            out["nextToken"] = next_token
        return out

    def _put_invocation_step(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        session = self._bedrock_session(p)
        invocation_id = _req_string(
            p.get("invocationIdentifier"), "invocationIdentifier", pattern=_UUID_RE
        )
        step_id = _string(p.get("invocationStepId"), "invocationStepId", pattern=_UUID_RE)
        step_time = _parse_iso(p.get("invocationStepTime"), "invocationStepTime")
        payload = _check_step_payload(p.get("payload"))
        self._require_active(session, "add an invocation step")
        if invocation_id not in session.invocations:
            raise _not_found(f"Invocation {invocation_id} not found")
        step_id = step_id or str(uuid.uuid4())
        existing = session.steps.get(step_id)
        if existing is not None:
            if (existing.invocation_id, existing.step_time, existing.payload) == (
                invocation_id,
                step_time,
                payload,
            ):
                return {"invocationStepId": step_id}
            raise _conflict(f"invocation step {step_id} already exists with other content")
        session.steps[step_id] = _Step(step_id, invocation_id, step_time, payload, self._next_seq())
        session.updated_at = _utcnow()
        return {"invocationStepId": step_id}

    def _get_invocation_step(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        session = self._bedrock_session(p)
        invocation_id = _req_string(
            p.get("invocationIdentifier"), "invocationIdentifier", pattern=_UUID_RE
        )
        step_id = _req_string(p.get("invocationStepId"), "invocationStepId", pattern=_UUID_RE)
        step = session.steps.get(step_id)
        if step is None or step.invocation_id != invocation_id:
            raise _not_found(f"Invocation step {step_id} not found")
        return {
            "invocationStep": {
                "invocationId": step.invocation_id,
                "invocationStepId": step.step_id,
                "invocationStepTime": _iso(step.step_time),
                "sessionId": session.session_id,
                "payload": step.payload,
            }
        }

    def _list_invocation_steps(self, p: dict[str, Any], _size: int) -> dict[str, Any]:
        session = self._bedrock_session(p)
        invocation_id = _string(
            p.get("invocationIdentifier"), "invocationIdentifier", pattern=_UUID_RE
        )
        size, token = self._list_query(p)
        steps = [
            s
            for s in session.steps.values()
            if invocation_id is None or s.invocation_id == invocation_id
        ]

        def key(step: _Step) -> tuple[float, int]:
            return (-step.step_time.timestamp(), -step.seq)

        steps.sort(key=key)
        page, next_token = _paginate(steps, key, "ListInvocationSteps", token, size)
        out: dict[str, Any] = {
            "invocationStepSummaries": [
                {
                    "invocationId": s.invocation_id,
                    "invocationStepId": s.step_id,
                    "invocationStepTime": _iso(s.step_time),
                    "sessionId": session.session_id,
                }
                for s in page
            ]
        }
        if next_token is not None:
            out["nextToken"] = next_token
        return out


def _event_matches(
    metadata: dict[str, Any] | None, filters: list[tuple[str, str, str | None]]
) -> bool:
    for key, op, expected in filters:
        value = (metadata or {}).get(key)
        if op == "EXISTS" and value is None:
            return False
        if op == "NOT_EXISTS" and value is not None:
            return False
        if op == "EQUALS_TO" and (value is None or value.get("stringValue") != expected):
            return False
    return True


def _default_extractor(event: dict[str, Any]) -> Iterator[str]:
    for item in event["payload"]:
        conversational = item.get("conversational")
        if conversational is not None and conversational["role"] == "USER":
            yield conversational["content"]["text"]


def _check_step_payload(value: Any) -> dict[str, Any]:
    _, blocks = _union(value, "payload", ("contentBlocks",))
    blocks = _list(blocks, "payload.contentBlocks", required=True, min_len=1)
    images = 0
    for i, block in enumerate(blocks):
        name = f"payload.contentBlocks[{i}]"
        kind, item = _union(block, name, ("text", "image"))
        if kind == "text":
            _string(item, f"{name}.text", required=True, min_len=1)
            continue
        images += 1
        image = _struct(item, f"{name}.image", required=True)
        _enum(image.get("format"), f"{name}.image.format", _IMAGE_FORMATS, required=True)
        source_kind, source = _union(
            image.get("source"), f"{name}.image.source", ("bytes", "s3Location")
        )
        if source_kind == "bytes":
            if not isinstance(source, str):
                raise _invalid(f"{name}.image.source.bytes", "must be a base64 string")
            try:
                size = len(base64.b64decode(source, validate=True))
            except (binascii.Error, ValueError):
                raise _invalid(f"{name}.image.source.bytes", "is not valid base64") from None
            if size < 1 or size > _MAX_IMAGE_BYTES:
                raise _invalid(
                    f"{name}.image.source.bytes",
                    f"is {size} bytes; images must be 1..{_MAX_IMAGE_BYTES} bytes",
                )
        else:
            location = _struct(source, f"{name}.image.source.s3Location", required=True)
            _string(
                location.get("uri"),
                f"{name}.image.source.s3Location.uri",
                required=True,
                min_len=1,
                max_len=1024,
                pattern=_S3_URI_RE,
            )
    if images > _MAX_IMAGES:
        raise _invalid(
            "payload.contentBlocks", f"has {images} images, the maximum is {_MAX_IMAGES}"
        )
    return value


# --------------------------------------------------------------------------- HTTP shell
class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: AwsEmulator

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        with self._open_lock:
            self._open.add(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Drop idle keep-alive connections so handler threads end with the server."""
        with self._open_lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            with contextlib.suppress(OSError):  # already closed by the client
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    # headers and body go out in two writes: without TCP_NODELAY, Nagle plus delayed
    # ACKs add about 40 ms to every call
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, payload = self.server.emulator.handle(self.command, self.path, body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging; ``AwsEmulator.calls`` records requests."""
