"""The one exception hierarchy of streamstate.

A miss returns ``None``; a failure raises one of these. Backends translate client
exceptions at a single point and always chain the original (``raise ... from exc``).
"""

from __future__ import annotations


class StreamstateError(Exception):
    """Base class of every error streamstate raises on purpose."""


class ConfigError(StreamstateError, ValueError):
    """Bad configuration or arguments; the message names the offending key."""


class CodecError(StreamstateError):
    """A stored entry could not be decoded (foreign, corrupt, or wrong key).

    Attributes:
        session: The session whose log held the entry, if known.
        entry_id: The stream entry id, if known.
        stage: The pipeline stage that failed (``header``, ``cipher``, ``zstd``, ``msgpack``).
    """

    def __init__(
        self,
        message: str,
        *,
        session: str | None = None,
        entry_id: str | None = None,
        stage: str | None = None,
    ) -> None:
        where = []
        if session is not None:
            where.append(f"session {session!r}")
        if entry_id is not None:
            where.append(f"entry {entry_id}")
        if stage is not None:
            where.append(f"stage {stage}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
        self.session = session
        self.entry_id = entry_id
        self.stage = stage


class BackendError(StreamstateError):
    """The storage backend failed; the server's message is kept."""


class BackendUnavailable(BackendError, ConnectionError):
    """The backend could not be reached within the retry budget."""


class ScriptError(BackendError):
    """A server-side script failed (nothing it would have written was written)."""


class ReplicationTimeout(BackendError):
    """A write was applied on the primary but not confirmed in time by the replicas
    (``WAIT``) or by the append-only files (``WAITAOF``) that ``wait_replicas`` /
    ``wait_aof`` asked for.

    The write is not acknowledged: a failover now may lose it. Retrying the same call
    (same checkpoint id, task id, item key) is safe: streamstate's writes are
    idempotent, so a retry appends nothing twice and waits again.

    Attributes:
        wanted: Replicas that had to confirm.
        confirmed: Replicas that confirmed within the timeout.
        timeout_ms: The wait, in milliseconds.
        local_fsynced: With ``wait_aof``, whether the primary fsynced its own AOF
            (``None`` without ``wait_aof``).
    """

    def __init__(
        self,
        message: str,
        *,
        wanted: int,
        confirmed: int,
        timeout_ms: int,
        local_fsynced: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.wanted = wanted
        self.confirmed = confirmed
        self.timeout_ms = timeout_ms
        self.local_fsynced = local_fsynced


class AwsError(BackendError):
    """An AWS call failed (after botocore's retries); the service's message is kept.

    Attributes:
        operation: The operation that failed, as the backend names it.
        code: The service's error code (``ValidationException``, ...), or the botocore
            exception's name when there was no response.
        status: The HTTP status, when there was a response.
    """

    def __init__(self, message: str, *, operation: str, code: str, status: int | None) -> None:
        super().__init__(message)
        self.operation = operation
        self.code = code
        self.status = status


class AgentCoreError(AwsError):
    """An AgentCore Memory call failed.

    Attributes:
        operation: The API operation (``CreateEvent``, ...).
        reason: ``ValidationException``'s reason, when the service gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        code: str,
        status: int | None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, operation=operation, code=code, status=status)
        self.reason = reason


class AgentCoreNotFound(AgentCoreError, LookupError):
    """ResourceNotFoundException: the memory, or an event or record a call named, is missing."""


class BedrockApiError(AwsError):
    """A Bedrock session-management call failed.

    Attributes:
        operation: The boto3 method that failed (``put_invocation_step``).
    """

    def __init__(self, message: str, *, operation: str, code: str, status: int | None) -> None:
        super().__init__(
            f"{operation}: {code}: {message}", operation=operation, code=code, status=status
        )


class BedrockNotFound(BedrockApiError, LookupError):
    """ResourceNotFoundException: the session, invocation or step does not exist."""


class BedrockConflict(BedrockApiError):
    """ConflictException: the id exists already, or the session is not ACTIVE."""


class BedrockValidationError(BedrockApiError, ValueError):
    """The request was rejected as invalid (never retried)."""


class BedrockUnavailable(BedrockApiError, BackendUnavailable):
    """Throttling, a 5xx or a connection failure outlived botocore's retries."""


class SessionNotActive(BackendError):
    """A write to a Bedrock session that is ENDED or EXPIRED: its content is read-only.

    Attributes:
        session_id: The Bedrock session.
        status: Its status (``ENDED`` or ``EXPIRED``).
    """

    def __init__(self, session_id: str, status: str) -> None:
        super().__init__(
            f"Bedrock session {session_id} is {status}: its checkpoints can still be read, "
            "but nothing can be added. Continue in a new session (session_client."
            "create_session()), or copy_thread() this thread into one."
        )
        self.session_id = session_id
        self.status = status


class ConflictError(StreamstateError):
    """An idempotency key or a compare-and-set precondition did not hold."""


class PayloadTooLarge(StreamstateError, ValueError):
    """A payload exceeds the configured maximum; refused before it was sent."""


class ThreadDamaged(StreamstateError):
    """A thread's stored data is incomplete in a way its log cannot repair: the log (or
    an entry a view points at) was evicted, trimmed or deleted apart from its views.
    The message names the thread and what is missing."""


class NotFound(StreamstateError, LookupError):
    """A named session, checkpoint or item does not exist (CLI and replay APIs)."""
