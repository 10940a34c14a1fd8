"""The bedrock log's core: ids, the stored form and every flow, without I/O."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import random
import re
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from streamstate.errors import (
    BackendError,
    BedrockConflict,
    BedrockNotFound,
    CodecError,
    ConfigError,
    SessionNotActive,
)
from streamstate.eventlog._aws import NOW, Call, Parallel, Sleep
from streamstate.eventlog._drive import Emit, Flow
from streamstate.eventlog.bedrock._exec import BATCH_SIZE, _SessionGone
from streamstate.eventlog.codec import Codec
from streamstate.eventlog.contract import AppendResult
from streamstate.eventlog.events import CheckpointPut, Event, LogEntry, WritesPut
from streamstate.eventlog.keys import SessionName, session_parts, session_tag
from streamstate.eventlog.ops import Op

# --------------------------------------------------------------------------- ids

_ROOT = uuid.UUID("5e1f6c0a-2b7d-5c1e-9a4f-3d8b6e2c7a90")
_SEP = "\x1f"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)

META_KEY = "streamstate.session"
"""``sessionMetadata`` key naming the log session an alias session holds."""
MAX_META_VALUE = 5000
CREATE_WAIT_S = 30.0
"""How long an append waits for this process's other creator of the same alias
session before it creates one itself (the oldest claimant still wins)."""
CREATE_POLL_S = 0.005

K_EVENT = "0"
"""First (or only) step of an event other than a checkpoint or writes."""
K_CONT = "1"
"""Continuation step of a large event."""
K_CHECKPOINT = "2"
K_WRITES = "3"
K_ACK = "a"
K_GROUP = "b"
K_RETRACT = "d"
K_TRIM = "e"
FIRST_KINDS = frozenset({K_EVENT, K_CHECKPOINT, K_WRITES})

_UUID_RE = re.compile(r"[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}")
_SESSION_RE = re.compile(
    r"(?:arn:aws(?:-[^:]+)?:bedrock:[a-z0-9-]+:[0-9]{12}:session/)?"
    r"([a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})"
)


def session_id_in(name: str) -> str | None:
    """The session UUID a name spells (a UUID or a session ARN), else ``None``."""
    match = _SESSION_RE.fullmatch(name)
    return match.group(1) if match else None


def _uuid_text(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


def derived_id(*parts: str, kind: str | None = None) -> str:
    """A UUID from ``parts`` (uuid5); with ``kind``, its first hex digit is the kind."""
    digest = uuid.uuid5(_ROOT, _SEP.join(parts)).hex
    return _uuid_text(digest if kind is None else kind + digest[1:])


def step_kind(step_id: str) -> str:
    return step_id[0]


def invocation_for(sid: str, *role: str) -> str:
    return derived_id("inv", sid, *role)


def checkpoint_step_id(sid: str, ns: str, checkpoint_id: str) -> str:
    """The first step of a checkpoint: one per (namespace, id), whoever writes it."""
    return derived_id("cp", sid, ns, checkpoint_id, kind=K_CHECKPOINT)


def namespace_invocation(sid: str, ns: str) -> str:
    return invocation_for(sid, "ns", ns)


def checkpoint_invocation(sid: str, cp_step: str) -> str:
    """The invocation of a checkpoint's writes (computable from its step id alone)."""
    return invocation_for(sid, "cp", cp_step)


def retract_step_id(sid: str, cp_step: str) -> str:
    return derived_id("retract", sid, cp_step, kind=K_RETRACT)


def time_of_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def us_of_time(stamp: datetime) -> int:
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return (stamp - _EPOCH) // _US


def id_key(entry_id: str) -> tuple[int, ...]:
    """Sort key of an entry id (``"<us>-<writer>"``)."""
    return tuple(int(p) for p in entry_id.split("-"))


def _id_us(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


# --------------------------------------------------------------------------- payloads

FORMAT = 1


@dataclass(frozen=True)
class StepPlan:
    """One PutInvocationStep."""

    step_id: str
    blocks: list[str]


@dataclass(frozen=True)
class EntryPlan:
    """Every step of one entry; ``steps[0]`` is the first step, written last."""

    invocation: str
    entry_id: str
    us: int
    steps: list[StepPlan]


def _header(kind: str, entry_id: str = "", n: int = 1, j: int = 0) -> str:
    head: dict[str, Any] = {"ss": FORMAT, "k": kind}
    if entry_id:
        head.update(id=entry_id, n=n, j=j)
    return json.dumps(head, separators=(",", ":"))


def read_header(payload: Any) -> tuple[dict[str, Any], list[str]] | None:
    """Split a step payload into (header, data blocks); ``None`` if it is not ours."""
    try:
        blocks = [b["text"] for b in payload["contentBlocks"]]
        head = json.loads(blocks[0])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    if not isinstance(head, dict) or head.get("ss") != FORMAT:
        return None
    return head, blocks[1:]


def _summary_us(summary: dict[str, Any]) -> int:
    return us_of_time(summary["invocationStepTime"])


def _payload(blocks: Sequence[str]) -> dict[str, Any]:
    return {"contentBlocks": [{"text": b} for b in blocks]}


# --------------------------------------------------------------------------- state


@dataclass
class _Session:
    sid: str
    tag: str | None
    created: datetime
    status: str
    learnt: int = 0
    """When this process cached it (an epoch of :class:`BedrockLogCore`)."""


@dataclass
class _Group:
    start: str
    acked: set[str] = field(default_factory=set)
    delivered: dict[str, str] = field(default_factory=dict)
    """Entry id -> consumer, for delivered entries not yet acknowledged (memory only)."""
    entries: dict[str, LogEntry] = field(default_factory=dict)
    known: dict[str, LogEntry | None] = field(default_factory=dict)


class _Clock:
    """Microsecond entry clock: never backwards, always past ids seen in this process."""

    def __init__(self) -> None:
        self.last = 0
        self.writer = random.randrange(1 << 16)
        self._lock = threading.Lock()

    def reserve(self, now_us: int, n: int) -> int:
        with self._lock:
            first = max(now_us, self.last + 1)
            self.last = first + n - 1
            return first

    def observe(self, us: int) -> None:
        with self._lock:
            self.last = max(self.last, us)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --------------------------------------------------------------------------- the core


class BedrockLogCore:
    """Everything the Bedrock log does that is not I/O: layout, payloads and flows.

    Flows are generators yielding the steps of :mod:`streamstate.eventlog._aws`;
    :class:`SyncRunner` and :class:`AsyncRunner` answer them. The in-memory
    caches (sessions, invocations known to exist, consumer groups) are thread-safe and
    only ever save calls: every fact in them can be read again from the service.

    Args:
        codec: Codec of stored entries (compression, optional cipher).
        max_block_chars: Largest text block written (base64 characters).
        max_blocks_per_step: Data blocks per step; larger events span several steps.
        auto_create: Create an alias session for a name that is not a session. When
            False, appending to such a name raises :class:`ConfigError`.
    """

    def __init__(
        self,
        codec: Codec | None = None,
        *,
        max_block_chars: int = 32_768,
        max_blocks_per_step: int = 16,
        auto_create: bool = True,
    ) -> None:
        if max_block_chars < 16 or max_blocks_per_step < 1:
            raise ConfigError("max_block_chars must be >= 16 and max_blocks_per_step >= 1")
        self.codec = codec or Codec()
        self.max_block_chars = max_block_chars
        self.max_blocks_per_step = max_blocks_per_step
        self.auto_create = auto_create
        self.clock = _Clock()
        self._lock = threading.RLock()
        self._resolved: dict[str, str] = {}
        self._sessions: dict[str, _Session] = {}
        self._epoch = 0
        self._creating: set[str] = set()
        self._invocations: set[tuple[str, str]] = set()
        self._groups: dict[tuple[str, str], _Group] = {}

    # ---------------------------------------------------------------- sessions

    def forget(self, sid: str) -> None:
        """Drop every cached fact about a session (it was deleted)."""
        with self._lock:
            self._sessions.pop(sid, None)
            for tag in [t for t, s in self._resolved.items() if s == sid]:
                del self._resolved[tag]
            self._invocations = {k for k in self._invocations if k[0] != sid}
            for key in [k for k in self._groups if k[0] == sid]:
                del self._groups[key]

    def scan_flow(self) -> Flow[list[_Session]]:
        """Every session of the account and region, oldest first, with its alias tag.

        Costs ListSessions pages (1000 sessions each) plus one GetSession per session
        this process has not seen before.
        """
        with self._lock:
            began = self._epoch
        summaries: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"maxResults": 1000}
            if token:
                params["nextToken"] = token
            reply = yield Call("list_sessions", params)
            summaries.extend(reply.get("sessionSummaries") or [])
            token = reply.get("nextToken")
            if not token:
                break
        # The answer is built from this scan's own view: other flows scan, create and
        # forget concurrently, so the shared cache may change under this one.
        seen: dict[str, _Session] = {}
        with self._lock:
            for s in summaries:
                if (known := self._sessions.get(s["sessionId"])) is not None:
                    seen[known.sid] = known
        unknown = [s["sessionId"] for s in summaries if s["sessionId"] not in seen]
        for chunk in _chunks(unknown, BATCH_SIZE):
            replies = yield Parallel(
                tuple(Call("get_session", {"sessionIdentifier": sid}) for sid in chunk), settle=True
            )
            for sid, rep in zip(chunk, replies):
                if isinstance(rep, BedrockNotFound):
                    continue  # deleted between the listing and now
                if isinstance(rep, Exception):
                    raise rep
                tag = (rep.get("sessionMetadata") or {}).get(META_KEY)
                fetched = _Session(sid, tag, rep["createdAt"], rep.get("sessionStatus", "ACTIVE"))
                with self._lock:
                    seen[sid] = self._remember(fetched)
        live: list[_Session] = []
        for s in summaries:
            if (known := seen.get(s["sessionId"])) is not None:
                known.status = s.get("sessionStatus", known.status)
                live.append(known)
        with self._lock:
            # Drop sessions this listing did not show, unless learnt since it began
            # (a session created meanwhile is missing from an older listing).
            for sid, cached in list(self._sessions.items()):
                if sid not in seen and cached.learnt <= began:
                    del self._sessions[sid]
        live.sort(key=lambda s: (s.created, s.sid))
        return live

    def _remember(self, session: _Session) -> _Session:
        """Cache a session (the caller holds the lock); the cached one if known."""
        known = self._sessions.get(session.sid)
        if known is not None:
            return known
        self._epoch += 1
        session.learnt = self._epoch
        self._sessions[session.sid] = session
        return session

    def _claimants(self, sessions: Iterable[_Session], tag: str) -> list[_Session]:
        return sorted((s for s in sessions if s.tag == tag), key=lambda s: (s.created, s.sid))

    def _direct_flow(self, name: SessionName) -> Flow[str | None]:
        parts = session_parts(name)
        sid = session_id_in(parts[0]) if len(parts) == 1 else None
        if sid is None:
            return None
        try:
            yield Call("get_session", {"sessionIdentifier": sid})
        except BedrockNotFound:
            return None
        return sid

    def resolve_flow(self, name: SessionName, *, create: bool) -> Flow[str | None]:
        """The Bedrock session id of a log session; ``create`` makes an alias if none."""
        tag = session_tag(name)
        while True:
            with self._lock:
                cached = self._resolved.get(tag)
            if cached is not None:
                return cached
            sid = yield from self._direct_flow(name)
            if sid is None:
                claim = self._claimants((yield from self.scan_flow()), tag)
                if claim:
                    sid = claim[0].sid
                elif create:
                    sid = yield from self._create_once_flow(name, tag)
                    if sid is None:
                        continue  # another flow of this process made it: look again
            if sid is not None:
                with self._lock:
                    self._resolved[tag] = sid
            return sid

    def _create_once_flow(self, name: SessionName, tag: str) -> Flow[str | None]:
        """Create the alias session, unless another flow of this process has or is
        creating it (then ``None``: resolve again). Racing creators in one process
        would each make a session, and writers could pick one that is then deleted."""
        with self._lock:
            if tag in self._resolved:
                return None
            busy = tag in self._creating
            self._creating.add(tag)
        if busy:
            waited = 0.0
            while waited < CREATE_WAIT_S:
                yield Sleep(CREATE_POLL_S)
                waited += CREATE_POLL_S
                with self._lock:
                    if tag not in self._creating:
                        return None
            # the other creator is stuck: make one too, the oldest claimant still wins
        try:
            sid = yield from self._create_alias_flow(name, tag)
            with self._lock:
                self._resolved[tag] = sid
            return sid
        finally:
            if not busy:
                with self._lock:
                    self._creating.discard(tag)

    def _create_alias_flow(self, name: SessionName, tag: str) -> Flow[str]:
        if not self.auto_create:
            raise ConfigError(
                f"{name!r} is not a Bedrock session id and auto_create is off: create a "
                "session (session_client.create_session()) and use its session_id"
            )
        if len(tag) > MAX_META_VALUE:
            raise ConfigError(
                f"session name too long for Bedrock sessionMetadata ({len(tag)} > "
                f"{MAX_META_VALUE} characters once escaped): {name!r}"
            )
        reply = yield Call("create_session", {"sessionMetadata": {META_KEY: tag}})
        sid = reply["sessionId"]
        with self._lock:
            self._remember(
                _Session(sid, tag, reply["createdAt"], reply.get("sessionStatus", "ACTIVE"))
            )
        # Another process may have created an alias for the same name meanwhile: the
        # oldest claimant wins everywhere, and a losing creator deletes its own.
        winner = self._claimants((yield from self.scan_flow()), tag)
        if winner and winner[0].sid != sid:
            yield from self.delete_sessions_flow([sid])
            return winner[0].sid
        return sid

    def claimants_flow(self, name: SessionName) -> Flow[list[str]]:
        """Every session holding a name: the session it names, and all alias sessions."""
        tag = session_tag(name)
        found: list[str] = []
        direct = yield from self._direct_flow(name)
        if direct is not None:
            found.append(direct)
        for s in self._claimants((yield from self.scan_flow()), tag):
            if s.sid not in found:
                found.append(s.sid)
        return found

    def delete_sessions_flow(self, sids: Sequence[str]) -> Flow[None]:
        """End (if ACTIVE) then delete sessions; missing ones are skipped."""
        for sid in sids:
            try:
                yield Call("end_session", {"sessionIdentifier": sid})
            except BedrockConflict:
                pass  # already ENDED or EXPIRED: DeleteSession accepts it as is
            except BedrockNotFound:
                self.forget(sid)
                continue
            with contextlib.suppress(BedrockNotFound):
                yield Call("delete_session", {"sessionIdentifier": sid})
            self.forget(sid)

    def session_status_flow(self, sid: str) -> Flow[str | None]:
        try:
            reply = yield Call("get_session", {"sessionIdentifier": sid})
        except BedrockNotFound:
            return None
        return str(reply.get("sessionStatus", "ACTIVE"))

    # ---------------------------------------------------------------- writing

    def entry_plan(
        self, sid: str, event: Event, key: str | None, us: int, invocation: str
    ) -> EntryPlan:
        """Lay out one event as steps (pure)."""
        if isinstance(event, CheckpointPut):
            kind = K_CHECKPOINT
            first = checkpoint_step_id(sid, event.ns, event.checkpoint_id)
        else:
            kind = K_WRITES if isinstance(event, WritesPut) else K_EVENT
            material = key if key is not None else "rnd" + _SEP + uuid.uuid4().hex
            first = derived_id("ev", sid, material, kind=kind)
        entry_id = f"{us}-{self.clock.writer}"
        text = base64.b64encode(self.codec.encode(event)).decode("ascii")
        blocks = [
            text[i : i + self.max_block_chars] for i in range(0, len(text), self.max_block_chars)
        ] or ["="]
        groups = list(_chunks(blocks, self.max_blocks_per_step))
        n = len(groups)
        steps = []
        for j, data in enumerate(groups):
            sid_j = first if j == 0 else derived_id("cont", first, entry_id, str(j), kind=K_CONT)
            steps.append(StepPlan(sid_j, [_header(kind, entry_id, n, j), *data]))
        return EntryPlan(invocation, entry_id, us, steps)

    def layout(self, sid: str, event: Event) -> tuple[str, tuple[str, ...]]:
        """(invocation of the event, invocations to open with it)."""
        if isinstance(event, CheckpointPut):
            cp_step = checkpoint_step_id(sid, event.ns, event.checkpoint_id)
            # Opened with the checkpoint, so put_writes and retractions find it.
            return namespace_invocation(sid, event.ns), (checkpoint_invocation(sid, cp_step),)
        if isinstance(event, WritesPut):
            cp_step = checkpoint_step_id(sid, event.ns, event.checkpoint_id)
            return checkpoint_invocation(sid, cp_step), ()
        return invocation_for(sid, "log"), ()

    def ensure_invocation_flow(
        self, sid: str, invocation: str, *, force: bool = False
    ) -> Flow[None]:
        with self._lock:
            if not force and (sid, invocation) in self._invocations:
                return
        try:
            yield Call("create_invocation", {"sessionIdentifier": sid, "invocationId": invocation})
        except BedrockConflict:
            pass  # it exists (or the session is not ACTIVE: the step write will say)
        except BedrockNotFound as exc:
            raise _SessionGone(sid) from exc
        with self._lock:
            self._invocations.add((sid, invocation))

    @staticmethod
    def put_call(sid: str, invocation: str, step: StepPlan, us: int) -> Call:
        return Call(
            "put_invocation_step",
            {
                "sessionIdentifier": sid,
                "invocationIdentifier": invocation,
                "invocationStepId": step.step_id,
                "invocationStepTime": time_of_us(us),
                "payload": _payload(step.blocks),
            },
        )

    @staticmethod
    def control_step(step_id: str, body: dict[str, Any]) -> StepPlan:
        """A control record (kind from the id): a header and a JSON body."""
        return StepPlan(step_id, [_header(step_kind(step_id)), json.dumps(body)])

    def put_step_flow(
        self, sid: str, invocation: str, step: StepPlan, us: int
    ) -> Flow[dict[str, Any] | None]:
        """Write one step; ``None`` if written, else the existing step (a duplicate)."""
        call = self.put_call(sid, invocation, step, us)
        for attempt in range(2):
            try:
                yield call
                return None
            except BedrockConflict:
                existing = yield from self.get_step_flow(sid, invocation, step.step_id)
                if existing is not None:
                    return existing
                status = yield from self.session_status_flow(sid)
                if status is None:
                    raise _SessionGone(sid) from None
                if status != "ACTIVE":
                    raise SessionNotActive(sid, status) from None
                raise
            except BedrockNotFound:
                if attempt:
                    status = yield from self.session_status_flow(sid)
                    if status is None:
                        raise _SessionGone(sid) from None
                    if status != "ACTIVE":
                        raise SessionNotActive(sid, status) from None
                    raise
                # The invocation is missing (an older writer crashed before opening
                # it), or the session is gone: opening it tells which.
                yield from self.ensure_invocation_flow(sid, invocation, force=True)
        raise AssertionError("unreachable")

    def put_entries_flow(
        self, sid: str, items: Sequence[tuple[Event, str | None]]
    ) -> Flow[AppendResult]:
        """Append events to a resolved session, each with its own idempotency key."""
        now = yield NOW
        first_us = self.clock.reserve(now, len(items))
        ids: list[str] = []
        appended = False
        for i, (event, key) in enumerate(items):
            invocation, opens = self.layout(sid, event)
            plan = self.entry_plan(sid, event, key, first_us + i, invocation)
            yield from self.ensure_invocation_flow(sid, invocation)
            for other in opens:
                yield from self.ensure_invocation_flow(sid, other)
            for cont in plan.steps[1:]:
                yield from self.put_step_flow(sid, invocation, cont, plan.us)
            existing = yield from self.put_step_flow(sid, invocation, plan.steps[0], plan.us)
            if existing is None:
                appended = True
                ids.append(plan.entry_id)
            else:
                head = read_header(existing.get("payload"))
                ids.append(str(head[0].get("id", "")) if head else "")
        return AppendResult(appended, ids)

    def write_flow(
        self, name: SessionName, items: Sequence[tuple[Event, str | None]]
    ) -> Flow[AppendResult]:
        """Resolve (creating an alias if needed) and append; re-resolves once if the
        cached session was deleted meanwhile."""
        for attempt in range(2):
            sid = yield from self.resolve_flow(name, create=True)
            assert sid is not None
            try:
                return (yield from self.put_entries_flow(sid, items))
            except _SessionGone:
                self.forget(sid)
                if attempt:
                    raise BackendError(
                        f"Bedrock session {sid} for {name!r} disappeared while writing"
                    ) from None
        raise AssertionError("unreachable")

    def log_append_flow(
        self,
        name: SessionName,
        events: Sequence[Event],
        idempotency_key: str | None = None,
        extra_ops: Sequence[Op] = (),
        ttl: float | None = None,
    ) -> Flow[AppendResult]:
        if extra_ops:
            raise ConfigError("the Bedrock log has no server-side projections: extra_ops=()")
        if ttl is not None:
            raise ConfigError("Bedrock sessions have no TTL: pass ttl=None")
        if not events:
            return AppendResult(True, [])  # nothing to append is not a duplicate (the contract)
        keys = [
            None if idempotency_key is None else f"{idempotency_key}{_SEP}{i}"
            for i in range(len(events))
        ]
        return (yield from self.write_flow(name, list(zip(events, keys))))

    def put_control_flow(
        self, sid: str, invocation: str, step_id: str, body: dict[str, Any]
    ) -> Flow[bool]:
        """Write a control record; False if that record existed already."""
        yield from self.ensure_invocation_flow(sid, invocation)
        now = yield NOW
        us = self.clock.reserve(now, 1)
        existing = yield from self.put_step_flow(
            sid, invocation, self.control_step(step_id, body), us
        )
        return existing is None

    # ---------------------------------------------------------------- reading

    def get_step_flow(self, sid: str, invocation: str, step_id: str) -> Flow[dict[str, Any] | None]:
        """One step with its payload, ``None`` if it does not exist."""
        try:
            reply = yield self.get_call(sid, invocation, step_id)
        except BedrockNotFound:
            return None
        return reply["invocationStep"]

    @staticmethod
    def get_call(sid: str, invocation: str, step_id: str) -> Call:
        return Call(
            "get_invocation_step",
            {
                "sessionIdentifier": sid,
                "invocationIdentifier": invocation,
                "invocationStepId": step_id,
            },
        )

    @staticmethod
    def list_call(
        sid: str, invocation: str | None, token: str | None = None, page: int = 1000
    ) -> Call:
        params: dict[str, Any] = {"sessionIdentifier": sid, "maxResults": page}
        if invocation is not None:
            params["invocationIdentifier"] = invocation
        if token:
            params["nextToken"] = token
        return Call("list_invocation_steps", params)

    def steps_flow(
        self, sid: str, invocation: str | None = None, *, newer_than_us: int | None = None
    ) -> Flow[list[dict[str, Any]]]:
        """Step summaries, newest first (all pages, or until older than a bound)."""
        out: list[dict[str, Any]] = []
        token = None
        while True:
            try:
                reply = yield self.list_call(sid, invocation, token)
            except BedrockNotFound:
                return out  # the session was deleted
            page = reply.get("invocationStepSummaries") or []
            out.extend(page)
            token = reply.get("nextToken")
            if not token:
                return out
            if newer_than_us is not None and page and _summary_us(page[-1]) < newer_than_us:
                return out

    def decode_flow(self, sid: str, step: dict[str, Any]) -> Flow[LogEntry | None]:
        """The entry whose first step this is (fetching continuations); ``None`` if the
        step is not a streamstate entry (a foreign application's step)."""
        parsed = read_header(step.get("payload"))
        if parsed is None or parsed[0].get("k") not in FIRST_KINDS or parsed[0].get("j") != 0:
            return None
        head, data = parsed
        entry_id = str(head["id"])
        n = int(head.get("n", 1))
        invocation = step["invocationId"]
        if n > 1:
            first = step["invocationStepId"]
            conts = [derived_id("cont", first, entry_id, str(j), kind=K_CONT) for j in range(1, n)]
            for chunk in _chunks(conts, BATCH_SIZE):
                replies = yield Parallel(
                    tuple(self.get_call(sid, invocation, c) for c in chunk), settle=True
                )
                for cid, rep in zip(chunk, replies):
                    if isinstance(rep, Exception):
                        if isinstance(rep, BedrockNotFound):
                            raise BackendError(
                                f"entry {entry_id} of session {sid} lost continuation step {cid}"
                            ) from rep
                        raise rep
                    more = read_header(rep["invocationStep"].get("payload"))
                    if more is None:
                        raise BackendError(f"continuation step {cid} is not a streamstate step")
                    data.extend(more[1])
        try:
            raw = base64.b64decode("".join(data), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CodecError(
                f"invalid base64 payload: {exc}", session=sid, entry_id=entry_id, stage="base64"
            ) from exc
        event: Event = self.codec.decode(raw, Event, session=sid, entry_id=entry_id)
        self.clock.observe(_id_us(entry_id))
        return LogEntry(entry_id, event)

    def fetch_flow(self, sid: str, refs: Sequence[tuple[str, str]]) -> Flow[list[LogEntry | None]]:
        """Entries by (invocation, first step id); ``None`` for missing or foreign steps."""
        out: list[LogEntry | None] = []
        for chunk in _chunks(refs, BATCH_SIZE):
            replies = yield Parallel(
                tuple(self.get_call(sid, inv, step) for inv, step in chunk), settle=True
            )
            for rep in replies:
                if isinstance(rep, BedrockNotFound):
                    out.append(None)
                    continue
                if isinstance(rep, Exception):
                    raise rep
                out.append((yield from self.decode_flow(sid, rep["invocationStep"])))
        return out

    def _trim_floor_flow(self, sid: str, summaries: Sequence[dict[str, Any]]) -> Flow[str | None]:
        marks = [
            (s["invocationId"], s["invocationStepId"])
            for s in summaries
            if step_kind(s["invocationStepId"]) == K_TRIM
        ]
        floor: str | None = None
        for _header, body in (yield from self._control_flow(sid, marks)):
            value = str(body["min"])
            if floor is None or id_key(value) > id_key(floor):
                floor = value
        return floor

    def _control_flow(
        self, sid: str, refs: Sequence[tuple[str, str]]
    ) -> Flow[list[tuple[dict[str, Any], Any]]]:
        """The header and JSON body of each control step ``(invocation, step id)`` (trim
        marks, group records), fetched concurrently; steps not ours are skipped."""
        out: list[tuple[dict[str, Any], Any]] = []
        for chunk in _chunks(refs, BATCH_SIZE):
            calls = tuple(self.get_call(sid, inv, step) for inv, step in chunk)
            for rep in (yield Parallel(calls, settle=True)):
                if isinstance(rep, Exception):
                    raise rep
                parsed = read_header(rep["invocationStep"].get("payload"))
                if parsed is not None:
                    out.append((parsed[0], json.loads(parsed[1][0])))
        return out

    def read_sid_flow(
        self,
        sid: str,
        start: str | None = None,
        end: str | None = None,
        *,
        count: int | None = None,
        reverse: bool = False,
        after: str | None = None,
        summaries: Sequence[dict[str, Any]] | None = None,
        known: dict[str, LogEntry | None] | None = None,
    ) -> Flow[list[LogEntry]]:
        """Entries of a resolved session with ``start <= id <= end`` and ``id > after``.

        Steps are fetched in listed-time order and only as far as needed: once
        ``count`` entries are found, steps listed at the same time as the last one are
        still fetched (ties), then everything is sorted by entry id. ``known`` caches
        decoded entries by step id across calls (tail, consumer groups).
        """
        if count is not None and count <= 0:
            return []
        if summaries is None:
            summaries = yield from self.steps_flow(sid)
        floor = yield from self._trim_floor_flow(sid, summaries)
        lows = [k for k in (start, floor) if k is not None]
        low = max(lows, key=id_key) if lows else None
        # Listed times follow entry ids, give or take a service that rounds them.
        slack = 60_000_000
        low_us = max([_id_us(x) for x in (low, after) if x is not None], default=None)
        high_us = _id_us(end) if end is not None else None
        cands = [
            s
            for s in summaries
            if step_kind(s["invocationStepId"]) in FIRST_KINDS
            and (low_us is None or _summary_us(s) >= low_us - slack)
            and (high_us is None or _summary_us(s) <= high_us + slack)
        ]
        cands.sort(key=_summary_us, reverse=reverse)

        def accept(entry: LogEntry) -> bool:
            k = id_key(entry.id)
            return (
                (low is None or k >= id_key(low))
                and (end is None or k <= id_key(end))
                and (after is None or k > id_key(after))
            )

        found: list[LogEntry] = []
        boundary: int | None = None
        i = 0
        while i < len(cands):
            if boundary is not None:
                # past the count: only steps tied with the last accepted one can matter
                batch = []
                for s in cands[i : i + BATCH_SIZE]:
                    if _summary_us(s) != boundary:
                        break
                    batch.append(s)
                if not batch:
                    break
            else:
                want = BATCH_SIZE if count is None else max(1, min(BATCH_SIZE, count - len(found)))
                batch = cands[i : i + want]
            i += len(batch)
            todo = [s for s in batch if known is None or s["invocationStepId"] not in known]
            fetched = yield from self.fetch_flow(
                sid, [(s["invocationId"], s["invocationStepId"]) for s in todo]
            )
            got = dict(zip((s["invocationStepId"] for s in todo), fetched))
            if known is not None:
                known.update(got)
            for s in batch:
                step_id = s["invocationStepId"]
                entry = got[step_id] if step_id in got else (known or {}).get(step_id)
                if entry is not None and accept(entry):
                    found.append(entry)
                    if count is not None and len(found) >= count and boundary is None:
                        boundary = _summary_us(s)
        found.sort(key=lambda e: id_key(e.id), reverse=reverse)
        return found if count is None else found[:count]

    def read_flow(
        self,
        name: SessionName,
        start: str | None = None,
        end: str | None = None,
        *,
        count: int | None = None,
        reverse: bool = False,
    ) -> Flow[list[LogEntry]]:
        sid = yield from self.resolve_flow(name, create=False)
        if sid is None:
            return []
        return (yield from self.read_sid_flow(sid, start, end, count=count, reverse=reverse))

    def length_flow(self, name: SessionName) -> Flow[int]:
        sid = yield from self.resolve_flow(name, create=False)
        if sid is None:
            return 0
        summaries = yield from self.steps_flow(sid)
        if not any(step_kind(s["invocationStepId"]) == K_TRIM for s in summaries):
            # without trim marks, first steps are entries: no need to fetch them
            firsts = [s for s in summaries if step_kind(s["invocationStepId"]) in FIRST_KINDS]
            entries = yield from self.fetch_flow(
                sid, [(s["invocationId"], s["invocationStepId"]) for s in firsts]
            )
            return sum(1 for e in entries if e is not None)
        return len((yield from self.read_sid_flow(sid, summaries=summaries)))

    def tail_flow(
        self,
        name: SessionName,
        from_id: str | None = None,
        *,
        block_ms: int = 1000,
        idle_timeout: float | None = None,
    ) -> Flow[None]:
        """Poll for entries after ``from_id`` (``None``: after the newest at the start)."""
        pause = max(block_ms, 1) / 1000
        idle = 0.0
        sid = None
        while sid is None:
            sid = yield from self.resolve_flow(name, create=False)
            if sid is None:
                if idle_timeout is not None and idle >= idle_timeout:
                    return
                yield Sleep(pause)
                idle += pause
        cursor = from_id
        if cursor is None:
            newest = yield from self.read_sid_flow(sid, count=1, reverse=True)
            cursor = newest[0].id if newest else "0-0"
        known: dict[str, LogEntry | None] = {}
        slack = 60_000_000
        while True:
            summaries = yield from self.steps_flow(sid, newer_than_us=_id_us(cursor) - slack)
            entries = yield from self.read_sid_flow(
                sid, after=cursor, summaries=summaries, known=known
            )
            if entries:
                yield Emit(list(entries))
                cursor = entries[-1].id
                idle = 0.0
                floor = _id_us(cursor) - slack
                for step_id in [
                    k for k, e in known.items() if e is not None and _id_us(e.id) < floor
                ]:
                    del known[step_id]
                continue
            if idle_timeout is not None and idle >= idle_timeout:
                return
            yield Sleep(pause)
            idle += pause

    # ---------------------------------------------------------------- consumer groups

    def _group_state_flow(self, sid: str, group: str) -> Flow[_Group | None]:
        with self._lock:
            state = self._groups.get((sid, group))
        if state is not None:
            return state
        invocation = invocation_for(sid, "group", group)
        summaries = yield from self.steps_flow(sid, invocation)
        start: str | None = None
        acked: set[str] = set()
        refs = [(invocation, s["invocationStepId"]) for s in summaries]
        for header, body in (yield from self._control_flow(sid, refs)):
            if header["k"] == K_GROUP:
                start = str(body["start"])
            elif header["k"] == K_ACK:
                acked.update(body["ids"])
        if start is None:
            return None
        with self._lock:
            state = self._groups.setdefault((sid, group), _Group(start, acked))
        return state

    def ensure_group_flow(self, name: SessionName, group: str, start_id: str = "0") -> Flow[bool]:
        sid = yield from self.resolve_flow(name, create=True)
        assert sid is not None
        invocation = invocation_for(sid, "group", group)
        try:
            yield Call("create_invocation", {"sessionIdentifier": sid, "invocationId": invocation})
            created = True
        except BedrockConflict:
            created = False
        with self._lock:
            self._invocations.add((sid, invocation))
        if start_id == "$":
            newest = yield from self.read_sid_flow(sid, count=1, reverse=True)
            start = newest[0].id if newest else "0-0"
        else:
            start = "0-0" if start_id in ("0", "-") else start_id
        # Idempotent: an existing group keeps the start it was created with.
        step = derived_id("group", sid, group, kind=K_GROUP)
        yield from self.put_control_flow(sid, invocation, step, {"start": start})
        if created:
            with self._lock:
                self._groups[(sid, group)] = _Group(start)
        return created

    def group_read_flow(
        self,
        name: SessionName,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block_ms: int | None = None,
    ) -> Flow[list[LogEntry]]:
        sid = yield from self.resolve_flow(name, create=False)
        state = None if sid is None else (yield from self._group_state_flow(sid, group))
        if sid is None or state is None:
            raise ConfigError(f"no consumer group {group!r} on {name!r}: call ensure_group first")
        with self._lock:
            mine = sorted(
                (i for i, c in state.delivered.items() if c == consumer and i not in state.acked),
                key=id_key,
            )
            if mine:
                return [state.entries[i] for i in mine[:count]]
        waited = 0.0
        while True:
            entries = yield from self.read_sid_flow(sid, after=state.start, known=state.known)
            with self._lock:
                new = [
                    e for e in entries if e.id not in state.acked and e.id not in state.delivered
                ][:count]
                for e in new:
                    state.delivered[e.id] = consumer
                    state.entries[e.id] = e
            if new or block_ms is None or waited * 1000 >= block_ms:
                return new
            yield Sleep(0.1)
            waited += 0.1

    def ack_flow(self, name: SessionName, group: str, ids: Sequence[str]) -> Flow[int]:
        sid = yield from self.resolve_flow(name, create=False)
        state = None if sid is None else (yield from self._group_state_flow(sid, group))
        if sid is None or state is None:
            raise ConfigError(f"no consumer group {group!r} on {name!r}: call ensure_group first")
        with self._lock:
            new = sorted({i for i in ids if i not in state.acked}, key=id_key)
        if not new:
            return 0
        digest = hashlib.sha256(_SEP.join(new).encode()).hexdigest()
        step = derived_id("ack", sid, group, digest, kind=K_ACK)
        yield from self.put_control_flow(
            sid, invocation_for(sid, "group", group), step, {"ids": new}
        )
        with self._lock:
            pending = sum(1 for i in new if i in state.delivered)
            state.acked.update(new)
            for i in new:
                state.delivered.pop(i, None)
                state.entries.pop(i, None)
        return pending

    # ---------------------------------------------------------------- trim and delete

    def trim_flow(
        self, name: SessionName, *, maxlen: int | None = None, minid: str | None = None
    ) -> Flow[int]:
        if maxlen is None and minid is None:
            raise ConfigError("trim needs maxlen or minid")
        sid = yield from self.resolve_flow(name, create=False)
        if sid is None:
            return 0
        entries = yield from self.read_sid_flow(sid)
        keep_from: str | None = minid
        if maxlen is not None and len(entries) > maxlen:
            cut = entries[len(entries) - maxlen].id if maxlen > 0 else None
            if cut is None:
                first, writer = entries[-1].id.split("-")
                cut = f"{first}-{int(writer) + 1}"
            if keep_from is None or id_key(cut) > id_key(keep_from):
                keep_from = cut
        if keep_from is None:
            return 0
        dropped = sum(1 for e in entries if id_key(e.id) < id_key(keep_from))
        if dropped:
            step = derived_id("trim", sid, keep_from, kind=K_TRIM)
            yield from self.put_control_flow(
                sid, invocation_for(sid, "control"), step, {"min": keep_from}
            )
        return dropped

    def delete_flow(self, name: SessionName) -> Flow[bool]:
        sids = yield from self.claimants_flow(name)
        yield from self.delete_sessions_flow(sids)
        with self._lock:
            self._resolved.pop(session_tag(name), None)
        return bool(sids)
