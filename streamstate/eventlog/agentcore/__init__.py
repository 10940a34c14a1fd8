"""The event log on AgentCore Memory: streamstate events stored as AgentCore events.

A session is an AgentCore ``(actorId, sessionId)`` pair: a session name ``"s-1"`` uses
the log's default actor, ``("alice", "s-1")`` names both.

Layout of one append
--------------------
The events of one append travel in one :class:`Envelope` (the events, plus ``refs``:
links a saver records to older AgentCore events). The envelope goes through the
codec (msgpack, zstd, optional cipher) and then through **base64**, because a ``blob``
payload item is a JSON document, not bytes. base64 costs a third on top of the
compressed size; base85 would cost a quarter but is pure Python in CPython, about 50x
slower (1 s per 5 MB each way), so it would dominate large checkpoints.

* ``payload[0]`` is a small JSON header, ``{"ss": 1}``, plus ``"parts"`` (event ids)
  when the append was split.
* ``payload[1:]`` are the base64 text in chunks of at most ``Limits.max_item_chars``
  (under the documented 100 KB message size).

An append fits one CreateEvent while it needs at most 100 payload items and 10 MB;
beyond that the leading chunks go to *part* events, created first, and the *head*
event, created last, lists them, so a reader that sees a head can always assemble it.

Metadata (at most 15 keys; values escaped by :func:`meta_value`):

* ``ss.seq``: our sequence (heads only), milliseconds * 1000 + 3 random digits,
  strictly increasing per session within a process; entry ids are ``"<seq>-<index>"``,
  so the log has a total order of its own.
* ``ss.n``: number of streamstate events in the head (absent: 1); ``ss.i0``: index of
  the first of them (absent: 0; set when ``trim`` rewrote the event).
* ``ss.k``: kind, ``log`` (appended through this API), ``cp``/``wr`` (saver checkpoints
  and writes), ``px`` (a part), ``msg`` (a store message).
* ``ss.of``: on parts, the ``ss.seq`` of their head. ``ss.idem``: the caller's
  idempotency key. ``ss.key``: on store messages, the store key.

Ordering: reads sort by ``ss.seq`` on the client. Incremental reads (``tail``,
consumer groups) page newest-first and stop at the first event they have already
seen, so they rely on ListEvents listing newest first, as the service does in
practice (the AWS SDK's ``get_last_k_turns`` relies on it too); so does the saver's
"latest checkpoint" read. Each process gives a session strictly increasing event
timestamps (the ms of ``ss.seq``), so the service's order follows ours.

Idempotency: every CreateEvent carries a ``clientToken``, so botocore's retries (and
ours) never duplicate an event. An append with ``idempotency_key`` uses a token derived
from the key; a second append with that key is answered by the service with
``IdempotentParameterMismatchException`` (its timestamp differs), and the earlier head
is then found by its ``ss.idem`` metadata. The service keeps tokens for a limited time,
so this protects retries, not replays days later.

Consumer groups keep their state (cursor, pending entries per consumer) in the
log object's memory: AgentCore has no compare-and-set, so durable cross-process groups
would need another store. A restarted consumer in the same process gets its pending
entries again, as the contract requires; a new process starts its groups afresh.

Errors: botocore's ``standard`` retries (and ours, see :class:`Runner`) cover
throttling, 5xx and RetryableConflictException; whatever remains is raised as
:class:`AgentCoreError` (keeping the service's code, status and message), connection
failures as ``BackendUnavailable``. ListEvents answers a session without events with an
empty list, so a ResourceNotFoundException on a read means the memory (or an event a
checkpoint references) is missing and is raised as :class:`AgentCoreNotFound`, never
read as "no checkpoint". Only deletes treat it as done (the event was already gone).

Calls per operation: ``append`` 1 CreateEvent (+1 per extra 100 items); ``read``,
``length``, ``delete`` and ``trim`` list the whole session (ListEvents pages, then one
DeleteEvent per event to delete); a ``tail`` poll and a group read list only the events
newer than the last one seen (usually one ListEvents).
"""

from __future__ import annotations

from streamstate.errors import AgentCoreError, AgentCoreNotFound
from streamstate.eventlog.agentcore._core import (
    ACTOR_ID_RE,
    COUNT,
    FIRST,
    IDEM,
    KIND,
    KIND_LOG,
    KIND_PART,
    MEMORY_ID_RE,
    PART_OF,
    SEQ,
    SERVICE,
    SESSION_ID_RE,
    Envelope,
    Limits,
    LogCore,
    SeqClock,
    Stored,
    check_actor,
    check_memory,
    check_session,
    entry_id,
    eq,
    event_order,
    exists,
    id_key,
    meta_value,
    parse_event,
)
from streamstate.eventlog.agentcore._exec import (
    Runner,
    make_client,
    translate,
)
from streamstate.eventlog.agentcore.log import (
    AgentCoreEventLog,
    AsyncAgentCoreEventLog,
)

__all__ = [
    "ACTOR_ID_RE",
    "COUNT",
    "FIRST",
    "IDEM",
    "KIND",
    "KIND_LOG",
    "KIND_PART",
    "MEMORY_ID_RE",
    "PART_OF",
    "SEQ",
    "SERVICE",
    "SESSION_ID_RE",
    "AgentCoreError",
    "AgentCoreEventLog",
    "AgentCoreNotFound",
    "AsyncAgentCoreEventLog",
    "Envelope",
    "Limits",
    "LogCore",
    "Runner",
    "SeqClock",
    "Stored",
    "check_actor",
    "check_memory",
    "check_session",
    "entry_id",
    "eq",
    "event_order",
    "exists",
    "id_key",
    "make_client",
    "meta_value",
    "parse_event",
    "translate",
]
