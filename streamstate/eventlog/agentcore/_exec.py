"""The agentcore log's runner: the service's errors translated, and its client."""

from __future__ import annotations

from typing import Any

from streamstate.errors import (
    AgentCoreError,
    AgentCoreNotFound,
    BackendUnavailable,
)
from streamstate.eventlog import _aws
from streamstate.eventlog._aws import Call, operation_name
from streamstate.eventlog.agentcore._core import SERVICE

# -- the runner: AgentCore's translation of botocore's errors -----------------------------


def translate(exc: Exception, call: Call) -> Exception:
    """The one translation of a botocore exception into a streamstate error: a
    ``ClientError`` into :class:`AgentCoreError` (:class:`AgentCoreNotFound` for a
    missing resource), any other into :class:`BackendUnavailable`."""
    from botocore.exceptions import ClientError

    operation = operation_name(call.method)
    if not isinstance(exc, ClientError):
        return BackendUnavailable(f"{operation}: {exc}")
    response = exc.response
    error = response.get("Error", {})
    code = error.get("Code", "Unknown")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = f"{operation} failed: {code} ({status}): {error.get('Message', '')}"
    cls = AgentCoreNotFound if code == "ResourceNotFoundException" else AgentCoreError
    return cls(
        message, operation=operation, code=code, status=status, reason=response.get("reason")
    )


class Runner(_aws.Runner):
    """The shared AWS runner (:class:`streamstate.eventlog._aws.Runner`) with AgentCore's
    error translation."""

    def __init__(self, client: Any, *, conflict_attempts: int = 5, max_workers: int = 8) -> None:
        super().__init__(
            client,
            translate,
            name="agentcore",
            conflict_attempts=conflict_attempts,
            max_workers=max_workers,
        )


def make_client(**boto3_kwargs: Any) -> Any:
    """A ``bedrock-agentcore`` client from the usual boto3 options (``client``,
    ``session``, ``region_name``, ``endpoint_url``, ``config``, credentials...), or the
    one given: see :func:`streamstate.eventlog._aws.make_client`."""
    return _aws.make_client(SERVICE, **boto3_kwargs)
