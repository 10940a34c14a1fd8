"""The bedrock log's runner: the service's errors translated, and its client."""

from __future__ import annotations

from typing import Any

from streamstate.errors import (
    BedrockApiError,
    BedrockConflict,
    BedrockNotFound,
    BedrockUnavailable,
    BedrockValidationError,
)
from streamstate.eventlog import _aws
from streamstate.eventlog._aws import Call

# --------------------------------------------------------------------------- errors


class _SessionGone(Exception):
    """Internal: a cached session vanished (deleted elsewhere); resolve again."""


_UNAVAILABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "InternalServerException",
        "ServiceException",
        "ServiceUnavailableException",
        "ServiceUnavailable",
    }
)


def translate(exc: Exception, call: Call) -> BedrockApiError:
    """The one translation of a botocore exception into a Bedrock error."""
    from botocore.exceptions import ClientError, ParamValidationError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    operation = call.method
    if isinstance(exc, ClientError):
        error = exc.response.get("Error") or {}
        code = str(error.get("Code") or "ClientError")
        message = str(error.get("Message") or exc)
        status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        kind: type[BedrockApiError] = BedrockApiError
        if code == "ResourceNotFoundException":
            kind = BedrockNotFound
        elif code == "ConflictException":
            kind = BedrockConflict
        elif code == "ValidationException":
            kind = BedrockValidationError
        elif code in _UNAVAILABLE_CODES or (status is not None and status >= 500):
            kind = BedrockUnavailable
        return kind(message, operation=operation, code=code, status=status)
    kind = BedrockApiError
    if isinstance(exc, ParamValidationError):
        return BedrockValidationError(
            str(exc), operation=operation, code="ParamValidationError", status=None
        )
    if isinstance(exc, BotoConnectionError):
        kind = BedrockUnavailable
    return kind(str(exc), operation=operation, code=type(exc).__name__, status=None)


# --------------------------------------------------------------------------- runners


ApiCall = Call
"""The name :mod:`streamstate.adapters.bedrock` imports the shared call by."""

BATCH_SIZE = 16
"""Calls per :class:`~streamstate.eventlog._aws.Parallel` step: enough concurrency to hide
latency, not a burst to throttle."""


class SyncRunner(_aws.Runner):
    """The shared AWS runner with Bedrock's error translation; the flow shells call it."""

    def __init__(self, client: Any, *, workers: int = 8) -> None:
        super().__init__(client, translate, name="bedrock", max_workers=workers)

    def __call__(self, step: Any) -> Any:
        return self.run(step)


class AsyncRunner(SyncRunner):
    """The asyncio twin of :class:`SyncRunner`: boto3 calls run in worker threads,
    so the event loop never blocks on the network."""

    async def __call__(self, step: Any) -> Any:  # type: ignore[override]
        return await self.arun(step)
