"""The event log on Amazon Bedrock session management: one entry per invocation step.

Sessions
    A log session name (a LangGraph thread id, ``"audit-7"``, ``("t", "x")``) lives in
    one Bedrock session: the session whose id the name *is* (a lowercase session UUID or
    ARN that exists), else the oldest session whose ``sessionMetadata`` entry
    ``streamstate.session`` holds the name's tag. CreateSession picks its own ids, so a
    name that is not a session gets such an *alias* session on its first append. Aliases
    are found with ListSessions plus one GetSession per session this process has not
    seen yet (summaries carry no metadata), and cached. Two processes racing to create
    one alias both keep the oldest claimant and delete their own.

Invocations (ids are uuid5 of the session id and a role, so every process finds them)
    * one per checkpoint namespace, holding its ``CheckpointPut`` steps: the latest
      checkpoint is on the first page of that invocation's newest-first listing;
    * one per checkpoint, holding its ``WritesPut`` steps (one per task, so parallel
      tasks never overwrite each other) and its retraction marker; it is created with
      the checkpoint, so reading a checkpoint's writes lists only its own steps;
    * ``log`` for other events, ``control`` for trim marks, one per consumer group.

Steps
    Step ids are UUIDs chosen by the client, derived (uuid5) from the session id and an
    idempotency key, so a retried write (botocore's or the caller's) addresses the same
    step and never duplicates it. Their first hex digit is the step's *kind*, because a
    listing carries ids but no payloads: readers tell checkpoints, writes, continuations
    and control records apart without fetching them. A payload is ``contentBlocks`` of
    text: a JSON header (format, kind, entry id, step count, step index), then the
    codec-encoded event in base64, split into blocks. An event too large for one step
    continues in further steps whose ids derive from the first step's id and the entry
    id; the first step is written last, so a reader never sees half an entry.

Ordering
    Entry ids are ``"<microseconds>-<writer>"``: a per-process clock that never runs
    backwards (and moves past every id this process has read), and a random writer
    number that breaks ties between processes. ``invocationStepTime`` is set to the same
    microsecond, so the service's newest-first listing agrees with entry ids; readers
    still sort by the id in the payload and fetch every step that ties on the listed
    time, so a service that rounds times stays correct.

Not atomic, and other limits
    Bedrock has no multi-step transaction and no step deletion. An append of several
    events writes them one by one (a retry with the same key completes it). ``trim``
    writes a mark that readers honour; the steps stay stored until the session is
    deleted. ``delete`` ends and deletes the session(s). ``tail`` polls. Consumer groups
    keep deliveries in memory and persist acknowledgements as steps of the group's
    invocation: after a restart every unacknowledged entry is delivered again (to any
    consumer), which keeps the at-least-once promise.
"""

from __future__ import annotations

from streamstate.errors import (
    BedrockApiError,
    BedrockConflict,
    BedrockNotFound,
    BedrockUnavailable,
    BedrockValidationError,
    SessionNotActive,
)
from streamstate.eventlog.bedrock._core import (
    FIRST_KINDS,
    FORMAT,
    K_ACK,
    K_CHECKPOINT,
    K_CONT,
    K_EVENT,
    K_GROUP,
    K_RETRACT,
    K_TRIM,
    K_WRITES,
    MAX_META_VALUE,
    META_KEY,
    BedrockLogCore,
    EntryPlan,
    StepPlan,
    checkpoint_invocation,
    checkpoint_step_id,
    derived_id,
    id_key,
    invocation_for,
    namespace_invocation,
    read_header,
    retract_step_id,
    session_id_in,
    step_kind,
    time_of_us,
    us_of_time,
)
from streamstate.eventlog.bedrock._exec import (
    BATCH_SIZE,
    ApiCall,
    AsyncRunner,
    SyncRunner,
    translate,
)
from streamstate.eventlog.bedrock.log import (
    AsyncBedrockEventLog,
    BedrockEventLog,
)

__all__ = [
    "BATCH_SIZE",
    "FIRST_KINDS",
    "FORMAT",
    "K_ACK",
    "K_CHECKPOINT",
    "K_CONT",
    "K_EVENT",
    "K_GROUP",
    "K_RETRACT",
    "K_TRIM",
    "K_WRITES",
    "MAX_META_VALUE",
    "META_KEY",
    "ApiCall",
    "AsyncBedrockEventLog",
    "AsyncRunner",
    "BedrockApiError",
    "BedrockConflict",
    "BedrockEventLog",
    "BedrockLogCore",
    "BedrockNotFound",
    "BedrockUnavailable",
    "BedrockValidationError",
    "EntryPlan",
    "SessionNotActive",
    "StepPlan",
    "SyncRunner",
    "checkpoint_invocation",
    "checkpoint_step_id",
    "derived_id",
    "id_key",
    "invocation_for",
    "namespace_invocation",
    "read_header",
    "retract_step_id",
    "session_id_in",
    "step_kind",
    "time_of_us",
    "translate",
    "us_of_time",
]
