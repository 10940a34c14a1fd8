"""Pure translation between LangGraph's checkpointer calls and the Bedrock event log.

Builders turn a LangGraph call into events; flows (generators run by the sync or async
runner of :mod:`streamstate.eventlog.bedrock`) read steps back into
``CheckpointTuple``s. No client, no ``await``, no clock here.

What a checkpoint step holds
    A ``CheckpointPut`` carries the value of every channel the checkpoint has a value
    for (the new versions, plus unchanged channels present in ``channel_values``), so a
    checkpoint is read with one GetInvocationStep. A channel versioned but absent from
    ``channel_values`` (a ``DeltaChannel`` between snapshots) is resolved by walking
    parents until the checkpoint that stored that version, as LangGraph's in-memory
    saver finds its blob.

Writes
    One ``WritesPut`` step per ``put_writes`` call, keyed by its content: parallel tasks
    never overwrite each other, a retried call is a duplicate. Reading folds them as the
    other savers do: the first write of an ordinary ``(task, idx)`` wins, special
    channels (error, interrupt, resume, scheduled) keep the last, and the result is
    sorted by ``writes_sort_key``.

Deleting
    Bedrock cannot delete a step. ``delete_thread`` (and ``prune(strategy="delete")``)
    end and delete the thread's session(s). ``prune(keep_latest)`` and
    ``delete_for_runs`` write a retraction step into each dropped checkpoint's
    invocation; reads skip retracted checkpoints and their writes (the data stays
    stored until the session is deleted).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    PendingWrite,
    get_checkpoint_id,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from streamstate.adapters._checkpoints import (
    checkpoint_event,
    list_query,
    next_version,
    ns_of,
    unchanged_values,
    writes_event,
)
from streamstate.adapters._delta import delta_channels
from streamstate.errors import BedrockApiError, BedrockNotFound, ConfigError
from streamstate.eventlog._aws import NOW, Call, Parallel
from streamstate.eventlog._drive import Emit, Flow
from streamstate.eventlog.bedrock import (
    BATCH_SIZE,
    K_CHECKPOINT,
    K_EVENT,
    K_RETRACT,
    K_WRITES,
    BedrockLogCore,
    checkpoint_invocation,
    checkpoint_step_id,
    id_key,
    namespace_invocation,
    retract_step_id,
    step_kind,
)
from streamstate.eventlog.events import (
    CheckpointPut,
    Event,
    LogEntry,
    Typed,
    WritesPut,
)
from streamstate.eventlog.keys import parse_session_tag

__all__ = [
    "BedrockSaverCore",
    "SessionInfo",
    "next_version",
    "plan_create_session",
    "read_session",
    "session_ident",
]

_SEP = "\x1f"
_LATEST_PAGE = 25
"""ListInvocationSteps page when looking for the latest checkpoint (it is on top)."""
_msgpack = msgspec.msgpack.Encoder()

# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class SessionInfo:
    """A Bedrock session as the session client returns it."""

    session_id: str
    session_arn: str
    session_status: str
    created_at: datetime | None = None
    last_updated_at: datetime | None = None
    session_metadata: dict[str, str] | None = None
    encryption_key_arn: str | None = None


def read_session(reply: Mapping[str, Any]) -> SessionInfo:
    return SessionInfo(
        session_id=reply["sessionId"],
        session_arn=reply["sessionArn"],
        session_status=reply.get("sessionStatus", ""),
        created_at=reply.get("createdAt"),
        last_updated_at=reply.get("lastUpdatedAt"),
        session_metadata=reply.get("sessionMetadata"),
        encryption_key_arn=reply.get("encryptionKeyArn"),
    )


def session_ident(value: Any) -> str:
    """A session id from a string, or an object with ``session_identifier``/``session_id``
    (the request models of langgraph-checkpoint-aws)."""
    for attr in ("session_identifier", "session_id"):
        if not isinstance(value, str) and hasattr(value, attr):
            value = getattr(value, attr)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"a session id must be a non-empty string, got {value!r}")
    return value


def plan_create_session(
    request: Any = None,
    *,
    session_metadata: Mapping[str, str] | None = None,
    encryption_key_arn: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Call:
    """CreateSession parameters from keywords or a request object with the same fields."""
    if request is not None:
        session_metadata = session_metadata or getattr(request, "session_metadata", None)
        encryption_key_arn = encryption_key_arn or getattr(request, "encryption_key_arn", None)
        tags = tags or getattr(request, "tags", None)
    params: dict[str, Any] = {}
    if session_metadata:
        params["sessionMetadata"] = dict(session_metadata)
    if encryption_key_arn:
        params["encryptionKeyArn"] = encryption_key_arn
    if tags:
        params["tags"] = dict(tags)
    return Call("create_session", params)


# --------------------------------------------------------------------------- configs


def thread_of(config: RunnableConfig) -> str:
    configurable = config.get("configurable") or {}
    thread_id = configurable.get("thread_id")
    if not isinstance(thread_id, str) or not thread_id:
        raise ConfigError(
            'config["configurable"]["thread_id"] must be a non-empty string (a Bedrock '
            f"session id, or any name: the saver maps it to a session), got {thread_id!r}"
        )
    return thread_id


def _thread_id_arg(thread_id: Any, name: str = "thread_id") -> str:
    if not isinstance(thread_id, str) or not thread_id:
        raise ConfigError(f"{name} must be a non-empty string, got {thread_id!r}")
    return thread_id


def out_config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


# --------------------------------------------------------------------------- records


@dataclass
class Record:
    """A checkpoint as read: its entry and its (unretracted) writes."""

    entry: LogEntry
    writes: list[LogEntry]

    @property
    def event(self) -> CheckpointPut:
        return self.entry.event  # type: ignore[return-value]


def _checkpoint_steps(reply: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        s
        for s in reply.get("invocationStepSummaries") or []
        if step_kind(s["invocationStepId"]) == K_CHECKPOINT
    ]


def blob_table(event: CheckpointPut) -> dict[tuple[str, Any], Typed]:
    return {(b.channel, b.version): b.value for b in event.blobs}


class Seeds:
    """Per channel, the nearest checkpoint of a parent chain that has a value for it.

    "Has a value" as ``get_tuple`` resolves ``channel_values``: the checkpoint's version
    of the channel names a non-empty stored value, in its own step or (a channel it did
    not change) in the ancestor that stored that version. Feed the chain newest first;
    a channel whose version a checkpoint does not carry stays *unresolved* until the
    ancestor storing it is fed, and then seeds at the depth where it was first seen.
    """

    def __init__(self, channels: Iterable[str]) -> None:
        self.open: set[str] = set(channels)
        self.unresolved: dict[str, tuple[int, Any]] = {}
        self.found: dict[str, tuple[int, Typed]] = {}
        """channel -> (depth of the checkpoint it seeds at, the stored value)"""

    def feed(self, depth: int, event: CheckpointPut) -> None:
        table = blob_table(event)
        versions = dict(event.versions)
        for ch in list(self.open):
            if ch in self.unresolved:
                at, version = self.unresolved[ch]
                typed = table.get((ch, version))
                if typed is None:
                    continue
                del self.unresolved[ch]
                if typed[0] != "empty":
                    self._seed(ch, at, typed)
                continue
            if ch not in versions:
                continue
            typed = table.get((ch, versions[ch]))
            if typed is None:
                self.unresolved[ch] = (depth, versions[ch])
            elif typed[0] != "empty":
                self._seed(ch, depth, typed)

    def settle(self, found: Mapping[tuple[str, Any], Typed]) -> None:
        """Resolve unresolved versions from values looked up beyond the fed chain."""
        for ch, (at, version) in list(self.unresolved.items()):
            typed = found.get((ch, version))
            if typed is not None:
                del self.unresolved[ch]
                if typed[0] != "empty":
                    self._seed(ch, at, typed)

    def _seed(self, ch: str, depth: int, typed: Typed) -> None:
        self.found[ch] = (depth, typed)
        self.open.discard(ch)


def writes_key(event: WritesPut) -> str:
    """Idempotency key of a ``put_writes``: its content (a retry is a duplicate)."""
    body = _msgpack.encode([event.task_path, [(w.idx, w.channel, w.value) for w in event.writes]])
    digest = hashlib.sha256(body).hexdigest()
    return _SEP.join(("wr", event.ns, event.checkpoint_id, event.task_id, digest))


def fold_writes(
    entries: Sequence[LogEntry], serde: SerializerProtocol
) -> list[tuple[str, int, str, PendingWrite]]:
    """Pending writes of one checkpoint as ``(task_path, idx, task_id, write)``, in
    ``writes_sort_key`` order; ordinary ``(task, idx)`` keep the first, special the last."""
    rows: dict[tuple[str, int], tuple[str, str, Typed]] = {}
    for entry in sorted(entries, key=lambda e: id_key(e.id)):
        event = entry.event
        if not isinstance(event, WritesPut):
            continue
        for w in event.writes:
            key = (event.task_id, w.idx)
            if key in rows and w.idx >= 0:
                continue
            rows[key] = (event.task_path, w.channel, w.value)
    ordered = sorted(rows.items(), key=lambda kv: writes_sort_key(kv[1][0], kv[0][0], kv[0][1]))
    return [
        (path, idx, task_id, (task_id, channel, serde.loads_typed(typed)))
        for (task_id, idx), (path, channel, typed) in ordered
    ]


class Listing:
    """A session's step summaries, classified by kind without fetching anything."""

    def __init__(self, sid: str, summaries: Sequence[dict[str, Any]]) -> None:
        self.sid = sid
        self.summaries = summaries
        kinds = [(s, step_kind(s["invocationStepId"])) for s in summaries]
        self.retracted = {s["invocationStepId"] for s, k in kinds if k == K_RETRACT}
        self.writes: dict[str, list[str]] = {}
        for s, k in kinds:
            if k == K_WRITES:
                self.writes.setdefault(s["invocationId"], []).append(s["invocationStepId"])

    def is_live(self, cp_step: str) -> bool:
        return retract_step_id(self.sid, cp_step) not in self.retracted

    def checkpoints(self) -> list[dict[str, Any]]:
        """Live checkpoint steps, in listing order (newest first)."""
        return [
            s
            for s in self.summaries
            if step_kind(s["invocationStepId"]) == K_CHECKPOINT
            and self.is_live(s["invocationStepId"])
        ]

    def writes_of(self, cp_step: str) -> list[tuple[str, str]]:
        """(invocation, step) of a checkpoint's writes."""
        inv = checkpoint_invocation(self.sid, cp_step)
        return [(inv, w) for w in sorted(self.writes.get(inv, []))]


def tie_groups(
    items: Sequence[dict[str, Any]], *, final: bool
) -> tuple[list[list[dict[str, Any]]], list[dict[str, Any]]]:
    """Split listed steps (newest first) into runs listed at the same time.

    A service may keep coarser times than we send and list ties in any order, so a
    run is fetched whole and ordered by entry id. Unless ``final``, the last run is
    held back (returned second): the next page may continue it.
    """
    groups: list[list[dict[str, Any]]] = []
    for s in items:
        if groups and groups[-1][0]["invocationStepTime"] == s["invocationStepTime"]:
            groups[-1].append(s)
        else:
            groups.append([s])
    if not final and groups:
        return groups[:-1], groups[-1]
    return groups, []


class _Filter:
    def __init__(self, exact: str, before: str | None, canon: Mapping[str, str]) -> None:
        self.exact = exact
        self.before = before
        self.canon = canon

    def __call__(self, event: Event) -> bool:
        if not isinstance(event, CheckpointPut):
            return False
        if self.exact and event.checkpoint_id != self.exact:
            return False
        if self.before is not None and event.checkpoint_id >= self.before:
            return False
        return all(event.filter.get(k, "null") == v for k, v in self.canon.items())


# --------------------------------------------------------------------------- the core


class BedrockSaverCore:
    """Everything a Bedrock saver does that is not I/O; shared by both saver classes."""

    def __init__(self, log: BedrockLogCore) -> None:
        self.log = log

    # put --------------------------------------------------------------------------

    def build_put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
        serde: SerializerProtocol,
    ) -> tuple[str, CheckpointPut, RunnableConfig]:
        thread_id = thread_of(config)
        event = checkpoint_event(config, checkpoint, metadata, new_versions, serde)
        # Unchanged channels ride along, so one step read gives the whole checkpoint.
        extra = unchanged_values(checkpoint, new_versions, serde)
        event = msgspec.structs.replace(event, blobs=[*event.blobs, *extra])
        return thread_id, event, out_config(thread_id, event.ns, event.checkpoint_id)

    def put_flow(self, thread_id: str, event: CheckpointPut) -> Flow[None]:
        """One PutInvocationStep, plus CreateInvocation for the namespace (first time
        this process writes to it) and for the checkpoint's writes."""
        yield from self.log.write_flow(thread_id, [(event, None)])

    def build_put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
        serde: SerializerProtocol,
    ) -> tuple[str, WritesPut]:
        thread_id = thread_of(config)
        event = writes_event(config, writes, task_id, task_path, serde)
        return thread_id, event

    def put_writes_flow(self, thread_id: str, event: WritesPut) -> Flow[None]:
        """One PutInvocationStep (a duplicate costs a GetInvocationStep more)."""
        yield from self.log.write_flow(thread_id, [(event, writes_key(event))])

    # loading checkpoints --------------------------------------------------------------

    def load_flow(
        self,
        sid: str,
        refs: Sequence[tuple[str, str]],
        keep: Callable[[Event], bool] | None = None,
    ) -> Flow[list[Record | None]]:
        """Checkpoints by (namespace invocation, step id) with their writes.

        One round trip gets each checkpoint step and lists its invocation (writes and
        retraction) concurrently; a second gets the writes. ``None`` for a checkpoint
        that is missing, retracted or rejected by ``keep(event)``.
        """
        calls: list[Call] = []
        for inv, step in refs:
            calls.append(self.log.get_call(sid, inv, step))
            calls.append(self.log.list_call(sid, checkpoint_invocation(sid, step)))
        replies: list[Any] = []
        for i in range(0, len(calls), BATCH_SIZE):
            replies.extend((yield Parallel(tuple(calls[i : i + BATCH_SIZE]), settle=True)))
        records: list[Record | None] = []
        wanted: list[tuple[int, list[str]]] = []
        for n, (_inv, step) in enumerate(refs):
            cp_reply, list_reply = replies[2 * n], replies[2 * n + 1]
            if isinstance(cp_reply, BedrockNotFound):
                records.append(None)
                continue
            for reply in (cp_reply, list_reply):
                if isinstance(reply, Exception) and not isinstance(reply, BedrockNotFound):
                    raise reply
            entry = yield from self.log.decode_flow(sid, cp_reply["invocationStep"])
            if entry is None or (keep is not None and not keep(entry.event)):
                records.append(None)
                continue
            summaries: list[dict[str, Any]] = []
            if not isinstance(list_reply, Exception):
                summaries = list(list_reply.get("invocationStepSummaries") or [])
                if list_reply.get("nextToken"):
                    summaries = yield from self.log.steps_flow(
                        sid, checkpoint_invocation(sid, step)
                    )
            ids = {s["invocationStepId"] for s in summaries}
            if retract_step_id(sid, step) in ids:
                records.append(None)
                continue
            records.append(Record(entry, []))
            wanted.append((len(records) - 1, [s for s in ids if step_kind(s) == K_WRITES]))
        refs_w = [
            (checkpoint_invocation(sid, refs[pos][1]), w) for pos, ws in wanted for w in sorted(ws)
        ]
        fetched = yield from self.log.fetch_flow(sid, refs_w)
        it = iter(fetched)
        for pos, ws in wanted:
            rec = records[pos]
            assert rec is not None
            rec.writes = [e for e in (next(it) for _ in ws) if e is not None]
        return records

    def latest_flow(self, sid: str, ns: str) -> Flow[Record | None]:
        """The newest unretracted checkpoint of a namespace: the first page of its
        invocation's newest-first listing, then the first candidate that is live."""
        inv = namespace_invocation(sid, ns)
        token = None
        pending: list[dict[str, Any]] = []
        while True:
            try:
                reply = yield self.log.list_call(sid, inv, token, page=_LATEST_PAGE)
            except BedrockNotFound:
                return None
            token = reply.get("nextToken")
            pending += _checkpoint_steps(reply)
            groups, pending = tie_groups(pending, final=not token)
            for group in groups:
                refs = [(inv, s["invocationStepId"]) for s in group]
                live = [r for r in (yield from self.load_flow(sid, refs)) if r is not None]
                if live:
                    return max(live, key=lambda r: id_key(r.entry.id))
            if not token:
                return None

    def resolve_values_flow(
        self, sid: str, event: CheckpointPut, serde: SerializerProtocol
    ) -> Flow[dict[str, Any]]:
        """``channel_values`` of a checkpoint; versions it does not carry are looked up
        in its ancestors (one GetInvocationStep each, rarely needed)."""
        table = blob_table(event)
        missing = {(ch, ver) for ch, ver in event.versions if (ch, ver) not in table}
        found = yield from self.lookup_flow(sid, event.ns, event.parent_id, missing)
        values: dict[str, Any] = {}
        for ch, ver in event.versions:
            typed = table.get((ch, ver)) or found.get((ch, ver))
            if typed is not None and typed[0] != "empty":
                values[ch] = serde.loads_typed(typed)
        return values

    def lookup_flow(
        self, sid: str, ns: str, parent: str | None, missing: set[tuple[str, Any]]
    ) -> Flow[dict[tuple[str, Any], Typed]]:
        """Stored values of ``(channel, version)`` pairs, walking up from ``parent``.

        Each version is found in the ancestor that stored it, retracted or not (a
        retraction hides a checkpoint from reads, not the values its descendants
        share); one GetInvocationStep per ancestor, stopping when all are found.
        """
        missing = set(missing)
        found: dict[tuple[str, Any], Typed] = {}
        inv = namespace_invocation(sid, ns)
        seen: set[str] = set()
        while missing and parent and parent not in seen:
            seen.add(parent)
            step = yield from self.log.get_step_flow(sid, inv, checkpoint_step_id(sid, ns, parent))
            entry = None if step is None else (yield from self.log.decode_flow(sid, step))
            if entry is None or not isinstance(entry.event, CheckpointPut):
                break
            older = blob_table(entry.event)
            for key in [k for k in missing if k in older]:
                found[key] = older[key]
                missing.discard(key)
            parent = entry.event.parent_id
        return found

    def tuple_flow(
        self, thread_id: str, sid: str, record: Record, serde: SerializerProtocol
    ) -> Flow[CheckpointTuple]:
        event = record.event
        checkpoint = serde.loads_typed(event.checkpoint)
        checkpoint["channel_values"] = yield from self.resolve_values_flow(sid, event, serde)
        return CheckpointTuple(
            config=out_config(thread_id, event.ns, event.checkpoint_id),
            checkpoint=checkpoint,
            metadata=serde.loads_typed(event.metadata),
            parent_config=(
                out_config(thread_id, event.ns, event.parent_id) if event.parent_id else None
            ),
            pending_writes=[w for *_, w in fold_writes(record.writes, serde)],
        )

    def record_flow(
        self, thread_id: str, ns: str, checkpoint_id: str | None
    ) -> Flow[tuple[str, Record] | None]:
        sid = yield from self.log.resolve_flow(thread_id, create=False)
        if sid is None:
            return None
        if checkpoint_id:
            ref = (namespace_invocation(sid, ns), checkpoint_step_id(sid, ns, checkpoint_id))
            record = (yield from self.load_flow(sid, [ref]))[0]
        else:
            record = yield from self.latest_flow(sid, ns)
        return None if record is None else (sid, record)

    def get_tuple_flow(
        self, config: RunnableConfig, serde: SerializerProtocol
    ) -> Flow[CheckpointTuple | None]:
        """With a checkpoint id: one round trip (get step, list its writes) plus one
        for the writes. Latest: one ListInvocationSteps more."""
        thread_id = thread_of(config)
        found = yield from self.record_flow(thread_id, ns_of(config), get_checkpoint_id(config))
        if found is None:
            return None
        sid, record = found
        return (yield from self.tuple_flow(thread_id, sid, record, serde))

    # list -------------------------------------------------------------------------------

    def list_flow(
        self,
        config: RunnableConfig | None,
        filter: Mapping[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
        serde: SerializerProtocol,
    ) -> Flow[None]:
        """Checkpoints newest first: one thread, or every session (``config=None``)."""
        query = list_query(filter, before, limit, serde)
        if query.empty:
            return
        canon, before_id = query.canonical, query.before_id
        remaining = [limit]
        if config is not None:
            thread_id = thread_of(config)
            configurable = config.get("configurable") or {}
            ns = configurable.get("checkpoint_ns")
            if ns is not None and not isinstance(ns, str):
                raise ConfigError(
                    f'config["configurable"]["checkpoint_ns"] must be a string, got {ns!r}'
                )
            exact = configurable.get("checkpoint_id") or ""
            if exact and ns is None:
                ns = ""
            sid = yield from self.log.resolve_flow(thread_id, create=False)
            if sid is not None:
                keep = _Filter(exact, before_id, canon)
                yield from self._list_thread(thread_id, sid, ns, exact, keep, remaining, serde)
            return
        keep = _Filter("", before_id, canon)
        for thread_id, sid in (yield from self.threads_flow()):
            yield from self._list_thread(thread_id, sid, None, "", keep, remaining, serde)
            if remaining[0] is not None and remaining[0] <= 0:
                return

    def threads_flow(self) -> Flow[list[tuple[str, str]]]:
        """(thread id, session id) of every session, oldest first; a name held by
        several alias sessions counts once (its oldest)."""
        out: list[tuple[str, str]] = []
        names: set[str] = set()
        for s in (yield from self.log.scan_flow()):
            if s.tag is None:
                name = s.sid
            else:
                parts = parse_session_tag(s.tag)
                if len(parts) != 1:
                    continue  # a log session of another component, not a thread
                name = parts[0]
            if name not in names:
                names.add(name)
                out.append((name, s.sid))
        return out

    def _emit_flow(
        self,
        thread_id: str,
        sid: str,
        records: Sequence[Record | None],
        remaining: list[int | None],
        serde: SerializerProtocol,
    ) -> Flow[bool]:
        """Emit records newest first; False once the limit is reached."""
        live = sorted(
            (r for r in records if r is not None), key=lambda r: id_key(r.entry.id), reverse=True
        )
        if remaining[0] is not None:
            live = live[: remaining[0]]
        tuples = []
        for record in live:
            tuples.append((yield from self.tuple_flow(thread_id, sid, record, serde)))
        if tuples:
            yield Emit(tuples)
        if remaining[0] is not None:
            remaining[0] -= len(tuples)
            return remaining[0] > 0
        return True

    def _chunk(self, remaining: list[int | None]) -> int:
        return (
            BATCH_SIZE // 2 if remaining[0] is None else max(1, min(BATCH_SIZE // 2, remaining[0]))
        )

    def _list_thread(
        self,
        thread_id: str,
        sid: str,
        ns: str | None,
        exact: str,
        keep: _Filter,
        remaining: list[int | None],
        serde: SerializerProtocol,
    ) -> Flow[None]:
        if ns is not None:
            inv = namespace_invocation(sid, ns)
            if exact:
                records = yield from self.load_flow(
                    sid, [(inv, checkpoint_step_id(sid, ns, exact))], keep
                )
                yield from self._emit_flow(thread_id, sid, records, remaining, serde)
                return
            token = None
            pending: list[dict[str, Any]] = []
            while True:
                try:
                    reply = yield self.log.list_call(sid, inv, token)
                except BedrockNotFound:
                    return
                token = reply.get("nextToken")
                pending += _checkpoint_steps(reply)
                groups, pending = tie_groups(pending, final=not token)
                more = yield from self._emit_groups_flow(
                    thread_id, sid, groups, keep, remaining, serde, None
                )
                if not more or not token:
                    return
        # Every namespace: one listing of the whole session tells checkpoints, writes
        # and retractions apart by step kind, so only wanted steps are fetched.
        listing = Listing(sid, (yield from self.log.steps_flow(sid)))
        groups, _ = tie_groups(listing.checkpoints(), final=True)
        yield from self._emit_groups_flow(thread_id, sid, groups, keep, remaining, serde, listing)

    def _emit_groups_flow(
        self,
        thread_id: str,
        sid: str,
        groups: Sequence[Sequence[dict[str, Any]]],
        keep: _Filter,
        remaining: list[int | None],
        serde: SerializerProtocol,
        listing: Listing | None,
    ) -> Flow[bool]:
        """Load and emit checkpoints, a few tie groups at a time; False at the limit.

        Without a ``listing`` each checkpoint's invocation is listed for its writes;
        with one (the whole session's), writes are known and only fetched.
        """
        i = 0
        while i < len(groups):
            chunk: list[dict[str, Any]] = []
            while i < len(groups) and len(chunk) < self._chunk(remaining):
                chunk += groups[i]
                i += 1
            if listing is None:
                refs = [(s["invocationId"], s["invocationStepId"]) for s in chunk]
                records = yield from self.load_flow(sid, refs, keep)
            else:
                records = yield from self._load_listed_flow(sid, chunk, keep, listing)
            if not (yield from self._emit_flow(thread_id, sid, records, remaining, serde)):
                return False
        return True

    def _load_listed_flow(
        self, sid: str, chunk: Sequence[dict[str, Any]], keep: _Filter, listing: Listing
    ) -> Flow[list[Record | None]]:
        entries = yield from self.log.fetch_flow(
            sid, [(s["invocationId"], s["invocationStepId"]) for s in chunk]
        )
        picked = [(s, e) for s, e in zip(chunk, entries) if e is not None and keep(e.event)]
        w_refs = [listing.writes_of(s["invocationStepId"]) for s, _ in picked]
        fetched = iter((yield from self.log.fetch_flow(sid, [r for rs in w_refs for r in rs])))
        records: list[Record | None] = []
        for (_s, e), refs in zip(picked, w_refs):
            records.append(Record(e, [x for x in (next(fetched) for _ in refs) if x is not None]))
        return records

    # delete, copy, prune, delete_for_runs -----------------------------------------------

    def delete_thread_flow(self, thread_id: str) -> Flow[None]:
        """End and delete every session holding the thread (EndSession + DeleteSession)."""
        thread_id = _thread_id_arg(thread_id)
        sids = yield from self.log.claimants_flow(thread_id)
        yield from self.log.delete_sessions_flow(sids)

    def copy_flow(self, source_thread_id: str, target_thread_id: str) -> Flow[int]:
        """Replay the source's live entries, oldest first, into the target thread.

        The target is the session its id names, else an alias session created for it.
        Every copied entry keeps its idempotency key, so a repeated copy adds nothing.
        """
        source = _thread_id_arg(source_thread_id, "source_thread_id")
        target = _thread_id_arg(target_thread_id, "target_thread_id")
        src = yield from self.log.resolve_flow(source, create=False)
        if src is None:
            return 0
        listing = Listing(src, (yield from self.log.steps_flow(src)))
        refs: list[tuple[str, str]] = []
        for cp in listing.checkpoints():
            refs.append((cp["invocationId"], cp["invocationStepId"]))
            refs += listing.writes_of(cp["invocationStepId"])
        refs += [
            (s["invocationId"], s["invocationStepId"])
            for s in listing.summaries
            if step_kind(s["invocationStepId"]) == K_EVENT
        ]
        entries = [e for e in (yield from self.log.fetch_flow(src, refs)) if e is not None]
        entries.sort(key=lambda e: id_key(e.id))
        if not entries:
            return 0
        items: list[tuple[Event, str | None]] = []
        for entry in entries:
            event = entry.event
            if isinstance(event, CheckpointPut):
                items.append((event, None))
            elif isinstance(event, WritesPut):
                items.append((event, writes_key(event)))
            else:
                items.append((event, _SEP.join(("copy", src, entry.id))))
        yield from self.log.write_flow(target, items)
        return len(items)

    def retract_flow(self, sid: str, cp_steps: Sequence[str]) -> Flow[None]:
        """Write the retraction step of each checkpoint: concurrently, and one by one
        through the careful path (missing invocation, duplicate) for any that failed."""
        now = yield NOW
        for start in range(0, len(cp_steps), BATCH_SIZE):
            chunk = cp_steps[start : start + BATCH_SIZE]
            us = self.log.clock.reserve(now, len(chunk))
            plans = [
                (
                    checkpoint_invocation(sid, s),
                    self.log.control_step(retract_step_id(sid, s), {"cp": s}),
                    us + i,
                )
                for i, s in enumerate(chunk)
            ]
            replies = yield Parallel(
                tuple(self.log.put_call(sid, *plan) for plan in plans), settle=True
            )
            for plan, reply in zip(plans, replies):
                if isinstance(reply, BedrockApiError):
                    yield from self.log.put_step_flow(sid, *plan)

    def prune_flow(
        self, thread_ids: Sequence[str], strategy: str, serde: SerializerProtocol
    ) -> Flow[None]:
        """``keep_latest``: retract all but each namespace's newest checkpoint and the
        ancestors its delta channels are rebuilt from (see :meth:`kept_flow`);
        ``delete``: delete the threads' sessions."""
        if strategy not in ("keep_latest", "delete"):
            raise ConfigError(f"prune strategy must be 'keep_latest' or 'delete', got {strategy!r}")
        for thread_id in thread_ids:
            if strategy == "delete":
                yield from self.delete_thread_flow(thread_id)
                continue
            sid = yield from self.log.resolve_flow(_thread_id_arg(thread_id), create=False)
            if sid is None:
                continue
            listing = Listing(sid, (yield from self.log.steps_flow(sid)))
            by_ns: dict[str, list[dict[str, Any]]] = {}
            for cp in listing.checkpoints():
                by_ns.setdefault(cp["invocationId"], []).append(cp)
            doomed: list[str] = []
            for inv, cps in by_ns.items():
                newest = yield from self._newest_flow(sid, inv, cps)
                keep = yield from self.kept_flow(sid, inv, newest, cps, serde)
                doomed += [s["invocationStepId"] for s in cps if s["invocationStepId"] not in keep]
            yield from self.retract_flow(sid, doomed)

    def kept_flow(
        self,
        sid: str,
        inv: str,
        newest: str,
        cps: Sequence[dict[str, Any]],
        serde: SerializerProtocol,
    ) -> Flow[set[str]]:
        """The checkpoint steps of one namespace that ``prune(keep_latest)`` keeps.

        The newest, and for each ``DeltaChannel`` it has a version of (the channels of
        its ``counters_since_delta_snapshot`` metadata) its ancestors back to the one
        holding that channel's value: the writes between them are the channel's
        history, and the value its seed. A thread without delta channels keeps only
        the newest. The chain is read newest first, a batch of steps at a time.
        """
        order = [s["invocationStepId"] for s in cps]  # newest first
        position = {step: i for i, step in enumerate(order)}
        events: dict[str, CheckpointPut | None] = {}

        def fetch(step: str, size: int) -> Flow[CheckpointPut | None]:
            if step not in events:
                i = position[step]
                chunk = [x for x in order[i : i + size] if x not in events]
                entries = yield from self.log.fetch_flow(sid, [(inv, x) for x in chunk])
                for x, e in zip(chunk, entries):
                    ok = e is not None and isinstance(e.event, CheckpointPut)
                    events[x] = e.event if ok else None  # type: ignore[union-attr,assignment]
            return events[step]

        keep = {newest}
        head = yield from fetch(newest, 1)
        if head is None:
            return keep
        channels = delta_channels(serde.loads_typed(head.metadata), dict(head.versions))
        seeds = Seeds(channels)
        event: CheckpointPut | None = head
        depth = 0
        while event is not None and seeds.open:
            seeds.feed(depth, event)
            if not seeds.open or not event.parent_id:
                break
            step = checkpoint_step_id(sid, event.ns, event.parent_id)
            if step not in position:  # retracted or missing: the chain ends here
                break
            keep.add(step)
            event = yield from fetch(step, BATCH_SIZE)
            depth += 1
        return keep

    def _newest_flow(self, sid: str, inv: str, cps: Sequence[dict[str, Any]]) -> Flow[str]:
        """The newest checkpoint step of a namespace (fetching only steps that tie on
        the listed time)."""
        top = max(s["invocationStepTime"] for s in cps)
        tied = [s["invocationStepId"] for s in cps if s["invocationStepTime"] == top]
        if len(tied) == 1:
            return tied[0]
        entries = yield from self.log.fetch_flow(sid, [(inv, s) for s in tied])
        ranked = sorted(
            ((id_key(e.id), s) for s, e in zip(tied, entries) if e is not None), reverse=True
        )
        return ranked[0][1] if ranked else tied[0]

    def delete_for_runs_flow(self, run_ids: Sequence[str]) -> Flow[None]:
        """Retract every checkpoint whose run is listed, in every session.

        Bedrock has no index by run, so this reads every checkpoint step of every
        session (ListSessions, ListInvocationSteps per session, GetInvocationStep per
        checkpoint) and writes one retraction per match.
        """
        runs = {r for r in run_ids if isinstance(r, str) and r}
        if not runs:
            return
        for _thread_id, sid in (yield from self.threads_flow()):
            cps = Listing(sid, (yield from self.log.steps_flow(sid))).checkpoints()
            entries = yield from self.log.fetch_flow(
                sid, [(s["invocationId"], s["invocationStepId"]) for s in cps]
            )
            doomed = [
                s["invocationStepId"]
                for s, e in zip(cps, entries)
                if e is not None and isinstance(e.event, CheckpointPut) and e.event.run_id in runs
            ]
            if doomed:
                yield from self.retract_flow(sid, doomed)

    # delta channels ---------------------------------------------------------------------

    def delta_flow(
        self, config: RunnableConfig, channels: Sequence[str], serde: SerializerProtocol
    ) -> Flow[dict[str, DeltaChannelHistory]]:
        """``get_delta_channel_history``: the base class's walk, reading less.

        The contract is LangGraph's default (``get_tuple`` of each ancestor, newest
        first: collect its writes for each channel, stop a channel at the first
        ancestor whose ``channel_values`` has it), but an ancestor's values are never
        decoded except a seed, and a version it shares with an older checkpoint is
        resolved by walking on (see :class:`Seeds`). Per ancestor: one round trip for
        its step and the listing of its writes, one for the writes.
        """
        if not channels:
            return {}
        thread_id = thread_of(config)
        ns = ns_of(config)
        found = yield from self.record_flow(thread_id, ns, get_checkpoint_id(config))
        if found is None:
            return {ch: {"writes": []} for ch in channels}
        sid, target = found
        chain, seeds = yield from self.ancestors_flow(sid, ns, target.event.parent_id, channels)
        folded = [[w for *_, w in fold_writes(record.writes, serde)] for record in chain]
        result: dict[str, DeltaChannelHistory] = {}
        for ch in channels:
            depth, typed = seeds.found.get(ch, (len(chain) - 1, None))
            entry: DeltaChannelHistory = {
                "writes": [w for ws in reversed(folded[: depth + 1]) for w in ws if w[1] == ch]
            }
            if typed is not None:
                entry["seed"] = serde.loads_typed(typed)
            result[ch] = entry
        return result

    def ancestors_flow(
        self, sid: str, ns: str, cursor: str | None, channels: Sequence[str]
    ) -> Flow[tuple[list[Record], Seeds]]:
        """The live ancestors from ``cursor`` up, newest first with their writes, until
        every channel has a seed (or the chain ends: at the root, or at a retracted or
        missing checkpoint, as ``get_tuple`` of it would find nothing)."""
        seeds = Seeds(channels)
        inv = namespace_invocation(sid, ns)
        chain: list[Record] = []
        seen: set[str] = set()
        while cursor and seeds.open and cursor not in seen:
            seen.add(cursor)
            ref = (inv, checkpoint_step_id(sid, ns, cursor))
            record = (yield from self.load_flow(sid, [ref]))[0]
            if record is None:
                break
            seeds.feed(len(chain), record.event)
            chain.append(record)
            cursor = record.event.parent_id
        if seeds.unresolved:
            # the chain ended before the checkpoint storing these versions (it may be
            # retracted: its values still resolve, as get_tuple resolves them)
            wanted = {(ch, version) for ch, (_at, version) in seeds.unresolved.items()}
            seeds.settle((yield from self.lookup_flow(sid, ns, cursor, wanted)))
        return chain, seeds
