"""The agentcore log's core: ids, the stored form and every flow, without I/O."""

from __future__ import annotations

import base64
import hashlib
import random
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import msgspec

from streamstate.errors import (
    AgentCoreError,
    CodecError,
    ConfigError,
)
from streamstate.eventlog._aws import CLOCK, Call, Parallel, Sleep
from streamstate.eventlog._drive import Emit, Flow
from streamstate.eventlog.codec import Codec
from streamstate.eventlog.contract import AppendResult
from streamstate.eventlog.events import Event, LogEntry
from streamstate.eventlog.keys import SessionName, session_parts
from streamstate.eventlog.ops import Op

SERVICE = "bedrock-agentcore"

# metadata keys ------------------------------------------------------------------------
SEQ = "ss.seq"
COUNT = "ss.n"
FIRST = "ss.i0"
KIND = "ss.k"
PART_OF = "ss.of"
IDEM = "ss.idem"

KIND_LOG = "log"
KIND_PART = "px"

MEMORY_ID_RE = re.compile(
    r"(arn:(aws|aws-cn|aws-us-gov):bedrock-agentcore:[a-z0-9-]+:[0-9]{12}:memory/)?"
    r"[a-zA-Z][a-zA-Z0-9-_]{0,99}-[a-zA-Z0-9]{10}"
)
ACTOR_ID_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-_/]*(?::[a-zA-Z0-9-_/]+)*[a-zA-Z0-9-_/]*")
SESSION_ID_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-_]*")
_META_TEXT_RE = re.compile(r"[a-zA-Z0-9\s._:/=+@-]*")
_EVENT_ID_RE = re.compile(r"([0-9]+)#([a-fA-F0-9]+)")

_MISMATCH = "IdempotentParameterMismatchException"


@dataclass(frozen=True)
class Limits:
    """Size limits of one CreateEvent (documented quotas; lower them to test splitting)."""

    max_items: int = 100
    """Payload items per event."""
    max_item_chars: int = 99_000
    """Characters of base64 per payload item (the documented message size is 100 KB)."""
    max_event_bytes: int = 10_000_000
    """Request body per event (the documented event size is 10 MB)."""

    @property
    def chunks_per_event(self) -> int:
        # one item is the header; keep 64 KB of the body for metadata and JSON framing
        by_size = (self.max_event_bytes - 65_536) // (self.max_item_chars + 16)
        return max(1, min(self.max_items - 1, by_size))


# -- metadata, filters, ids ----------------------------------------------------------------


def meta_value(value: str) -> str:
    """An injective encoding of any string into the MetadataValue pattern.

    ``"="`` + the value when it fits (pattern, 200 chars), else ``"h"`` + 40 hex of its
    SHA-256 (the real value is always kept inside the payload too, and compared).
    """
    if len(value) <= 200 and _META_TEXT_RE.fullmatch(value):
        return "=" + value
    return "h" + hashlib.sha256(value.encode()).hexdigest()[:40]


def eq(key: str, value: str) -> dict[str, Any]:
    """An ``EQUALS_TO`` event-metadata filter expression."""
    return {
        "left": {"metadataKey": key},
        "operator": "EQUALS_TO",
        "right": {"metadataValue": {"stringValue": value}},
    }


def exists(key: str) -> dict[str, Any]:
    """An ``EXISTS`` event-metadata filter expression."""
    return {"left": {"metadataKey": key}, "operator": "EXISTS"}


def entry_id(seq: int, index: int) -> str:
    return f"{seq}-{index}"


def id_key(value: str) -> tuple[int, ...]:
    """Sort key of an entry id; raises ConfigError for a malformed one."""
    try:
        return tuple(int(p) for p in value.split("-"))
    except (AttributeError, ValueError):
        raise ConfigError(f"not an AgentCore log entry id: {value!r}") from None


def event_order(event_id: str) -> tuple[int, int]:
    """The service's order of an eventId (``<millis>#<hex>``)."""
    match = _EVENT_ID_RE.fullmatch(event_id)
    if match is None:
        raise CodecError(f"unexpected eventId {event_id!r}")
    return int(match.group(1)), int(match.group(2), 16)


def _checked(value: Any, pattern: re.Pattern[str], most: int, name: str, what: str) -> str:
    if not isinstance(value, str) or not (0 < len(value) <= most and pattern.fullmatch(value)):
        raise ConfigError(f"{name} must be an AgentCore {what}, got {value!r}")
    return value


def check_actor(actor_id: Any, name: str = "actor_id") -> str:
    what = "actor id (1..255 chars of letters, digits, '-', '_', '/', ':')"
    return _checked(actor_id, ACTOR_ID_RE, 255, name, what)


def check_session(session_id: Any, name: str = "session id") -> str:
    what = "session id (1..100 chars of letters, digits, '-', '_', starting with a letter or digit)"
    return _checked(session_id, SESSION_ID_RE, 100, name, what)


def check_memory(memory_id: Any) -> str:
    if not isinstance(memory_id, str) or not MEMORY_ID_RE.fullmatch(memory_id):
        raise ConfigError(
            f"memory_id must be an AgentCore memory id or ARN (a name, '-', 10 letters or "
            f"digits), got {memory_id!r}"
        )
    return memory_id


# -- the stored form ----------------------------------------------------------------------


class Envelope(msgspec.Struct, array_like=True, frozen=True):
    """What one head event carries: the events of one append, and links."""

    events: list[Event]
    refs: dict[str, str] = {}
    """Opaque links to older events (the saver maps channel -> eventId)."""


@dataclass(frozen=True)
class Stored:
    """One streamstate event as ListEvents/GetEvent returned it (payload still encoded)."""

    event_id: str
    actor_id: str
    session_id: str
    meta: dict[str, str]
    header: dict[str, Any]
    chunks: list[str]

    @property
    def kind(self) -> str | None:
        return self.meta.get(KIND)

    @property
    def seq(self) -> int:
        return int(self.meta[SEQ])

    @property
    def is_head(self) -> bool:
        return SEQ in self.meta

    @property
    def order(self) -> tuple[int, int]:
        return event_order(self.event_id)

    @property
    def entry_ids(self) -> list[str]:
        first = int(self.meta.get(FIRST, "0"))
        n = int(self.meta.get(COUNT, "1"))
        return [entry_id(self.seq, first + i) for i in range(n)]


def parse_event(raw: Mapping[str, Any]) -> Stored | None:
    """A listed event as :class:`Stored`, or ``None`` if streamstate did not write it."""
    meta = {k: v.get("stringValue", "") for k, v in (raw.get("metadata") or {}).items()}
    if KIND not in meta:
        return None
    payload = raw.get("payload") or []
    header: dict[str, Any] = {}
    chunks: list[str] = []
    if payload:
        first = payload[0].get("blob")
        if isinstance(first, dict) and first.get("ss") == 1:
            header = first
            chunks = [item.get("blob", "") for item in payload[1:]]
    return Stored(
        raw["eventId"],
        raw["actorId"],
        raw["sessionId"],
        meta,
        header,
        chunks,
    )


def _items(chunks: Sequence[str]) -> list[dict[str, Any]]:
    return [{"blob": c} for c in chunks]


class SeqClock:
    """Per-session sequence numbers: strictly increasing milliseconds within a process.

    The event timestamp carries the same millisecond, so the service's eventIds (which
    follow the timestamp) order one process's events as our sequence does.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._last: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._lock = threading.Lock()
        self._capacity = capacity

    def next(self, actor_id: str, session_id: str) -> tuple[int, datetime]:
        key = (actor_id, session_id)
        with self._lock:
            ms = max(time.time_ns() // 1_000_000, self._last.get(key, 0) + 1)
            self._last[key] = ms
            self._last.move_to_end(key)
            while len(self._last) > self._capacity:
                self._last.popitem(last=False)
        return ms * 1000 + random.randrange(1000), datetime.fromtimestamp(ms / 1000, timezone.utc)


def _newest(seen: tuple[int, int] | None, heads: Sequence[Stored]) -> tuple[int, int] | None:
    orders = [h.order for h in heads] + ([seen] if seen is not None else [])
    return max(orders) if orders else None


# -- the log core: every flow, shared by the sync and async shells ----------------------------


@dataclass
class _Group:
    seen: tuple[int, int] | None
    delivered: tuple[int, ...]
    backlog: list[LogEntry] = field(default_factory=list)
    pending: dict[str, dict[str, LogEntry]] = field(default_factory=dict)


class LogCore:
    """Plans every AgentCore call of the log and reads the replies (no I/O here).

    Args:
        memory_id: The AgentCore memory (id or ARN).
        codec: Codec for envelopes.
        limits: CreateEvent size limits.
        actor_id: Actor of sessions named by a plain string.
    """

    def __init__(
        self,
        memory_id: str,
        *,
        codec: Codec | None = None,
        limits: Limits | None = None,
        actor_id: str = "streamstate",
    ) -> None:
        self.memory_id = check_memory(memory_id)
        self.codec = codec or Codec()
        self.limits = limits or Limits()
        self.actor_id = check_actor(actor_id)
        self.clock = SeqClock()
        self._groups: dict[tuple[str, str, str], _Group] = {}
        self._lock = threading.Lock()

    # addressing ---------------------------------------------------------------------

    def where(self, session: SessionName) -> tuple[str, str]:
        """``(actorId, sessionId)`` of a session name."""
        parts = session_parts(session)
        if len(parts) == 1:
            return self.actor_id, check_session(parts[0])
        if len(parts) == 2:
            return check_actor(parts[0]), check_session(parts[1])
        raise ConfigError(f"an AgentCore session is (actor_id, session_id), got {parts!r}")

    def _base(self, actor_id: str, session_id: str) -> dict[str, Any]:
        return {"memoryId": self.memory_id, "actorId": actor_id, "sessionId": session_id}

    # calls ------------------------------------------------------------------------------

    def list_call(
        self,
        actor_id: str,
        session_id: str,
        filters: Sequence[dict[str, Any]] = (),
        *,
        payloads: bool = True,
        token: str | None = None,
        max_results: int = 100,
    ) -> Call:
        params = {
            **self._base(actor_id, session_id),
            "includePayloads": payloads,  # the model gives no default: always explicit
            "maxResults": max_results,
        }
        if filters:
            params["filter"] = {"eventMetadata": list(filters)}
        if token:
            params["nextToken"] = token
        return Call("list_events", params)

    def get_call(self, actor_id: str, session_id: str, event_id: str) -> Call:
        return Call("get_event", {**self._base(actor_id, session_id), "eventId": event_id})

    def delete_call(self, actor_id: str, session_id: str, event_id: str) -> Call:
        # a concurrent delete already removed it: deleting is idempotent
        params = {**self._base(actor_id, session_id), "eventId": event_id}
        return Call("delete_event", params, missing_ok=True)

    def create_call(
        self,
        actor_id: str,
        session_id: str,
        stamp: datetime,
        payload: list[dict[str, Any]],
        metadata: Mapping[str, str],
        token: str,
    ) -> Call:
        params = {
            **self._base(actor_id, session_id),
            "eventTimestamp": stamp,
            "payload": payload,
            "metadata": {k: {"stringValue": v} for k, v in metadata.items()},
            "clientToken": token,
        }
        return Call("create_event", params)

    def token_for(self, actor_id: str, session_id: str, key: str) -> str:
        name = "\x00".join((self.memory_id, actor_id, session_id, key))
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "streamstate:" + name))

    # append -----------------------------------------------------------------------------

    def encode(self, envelope: Envelope) -> list[str]:
        data = base64.b64encode(self.codec.encode(envelope)).decode("ascii")
        size = self.limits.max_item_chars
        return [data[i : i + size] for i in range(0, len(data), size)]

    def append_flow(
        self,
        actor_id: str,
        session_id: str,
        envelope: Envelope,
        metadata: Mapping[str, str],
        *,
        token: str | None = None,
        seq: int | None = None,
    ) -> Flow[dict[str, Any]]:
        """Write one envelope: parts first when it does not fit one event, the head last.

        Returns the head event as the service returned it.
        """
        if len(metadata) > 12:
            raise ConfigError(f"at most 12 metadata entries, got {len(metadata)}")
        chunks = self.encode(envelope)
        per = self.limits.chunks_per_event
        groups = [chunks[i : i + per] for i in range(0, len(chunks), per)]
        new_seq, stamp = self.clock.next(actor_id, session_id)
        seq = new_seq if seq is None else seq
        parts: list[str] = []
        for i, group in enumerate(groups[:-1]):
            part_header = {"ss": 1, "of": seq, "i": i}
            meta = {KIND: KIND_PART, PART_OF: str(seq)}
            reply = yield self.create_call(
                actor_id,
                session_id,
                stamp,
                [{"blob": part_header}, *_items(group)],
                meta,
                str(uuid.uuid4()),
            )
            parts.append(reply["event"]["eventId"])
        header: dict[str, Any] = {"ss": 1}
        if parts:
            header["parts"] = parts
        meta = {SEQ: str(seq), **metadata}
        payload = [{"blob": header}, *_items(groups[-1])]
        call = self.create_call(
            actor_id, session_id, stamp, payload, meta, token or str(uuid.uuid4())
        )
        try:
            reply = yield call
        except AgentCoreError:
            # the parts are unreachable without their head: remove them, keep the error
            for part in parts:
                yield self.delete_call(actor_id, session_id, part)
            raise
        return reply["event"]

    # decode -----------------------------------------------------------------------------

    def envelope_flow(
        self, stored: Stored, known: Mapping[str, Stored] | None = None
    ) -> Flow[Envelope]:
        """Assemble and decode a head's envelope, fetching its parts if it has any."""
        chunks: list[str] = []
        part_ids: list[str] = list(stored.header.get("parts", []))
        if part_ids:
            known = known or {}
            missing = [p for p in part_ids if p not in known]
            fetched: dict[str, Stored] = {}
            if missing:
                replies = yield Parallel(
                    tuple(self.get_call(stored.actor_id, stored.session_id, p) for p in missing)
                )
                for pid, reply in zip(missing, replies):
                    part = parse_event(reply["event"])
                    if part is None:
                        raise CodecError(
                            f"part {pid} is not a streamstate event",
                            session=stored.session_id,
                            entry_id=stored.event_id,
                            stage="parts",
                        )
                    fetched[pid] = part
            for pid in part_ids:
                chunks.extend((known.get(pid) or fetched[pid]).chunks)
        chunks.extend(stored.chunks)
        return self.decode(stored, chunks)

    def decode(self, stored: Stored, chunks: Sequence[str]) -> Envelope:
        try:
            raw = base64.b64decode("".join(chunks), validate=True)
        except (ValueError, TypeError) as exc:
            raise CodecError(
                f"payload is not base64: {exc}",
                session=stored.session_id,
                entry_id=stored.event_id,
                stage="base64",
            ) from exc
        return self.codec.decode(raw, Envelope, session=stored.session_id, entry_id=stored.event_id)

    def entries_of(self, stored: Stored, envelope: Envelope) -> list[LogEntry]:
        ids = stored.entry_ids
        if len(ids) != len(envelope.events):
            raise CodecError(
                f"metadata announces {len(ids)} events, the payload holds {len(envelope.events)}",
                session=stored.session_id,
                entry_id=stored.event_id,
                stage="envelope",
            )
        return [LogEntry(i, ev) for i, ev in zip(ids, envelope.events)]

    # scans ------------------------------------------------------------------------------

    def heads_flow(
        self,
        actor_id: str,
        session_id: str,
        *,
        payloads: bool,
        after: tuple[int, int] | None = None,
    ) -> Flow[list[Stored]]:
        """Every head newest first, or only those the service lists before ``after``."""
        heads: list[Stored] = []
        token = None
        while True:
            call = self.list_call(
                actor_id, session_id, [exists(SEQ)], payloads=payloads, token=token
            )
            reply = yield call
            for raw in reply.get("events", []):
                stored = parse_event(raw)
                if stored is None:
                    continue
                if after is not None and stored.order <= after:
                    return heads
                heads.append(stored)
            token = reply.get("nextToken")
            if not token:
                return heads

    def entries_flow(self, heads: Sequence[Stored]) -> Flow[list[LogEntry]]:
        """The entries of listed heads, oldest first, each id once."""
        out: dict[str, LogEntry] = {}
        for stored in heads:
            envelope = yield from self.envelope_flow(stored)
            for entry in self.entries_of(stored, envelope):
                out.setdefault(entry.id, entry)
        return sorted(out.values(), key=lambda e: id_key(e.id))

    # the contract -------------------------------------------------------------------------

    def log_append_flow(
        self,
        session: SessionName,
        events: Sequence[Event],
        idempotency_key: str | None,
        extra_ops: Sequence[Op],
        ttl: float | None,
    ) -> Flow[AppendResult]:
        if extra_ops:
            raise ConfigError("the AgentCore log has no server-side projections (extra_ops)")
        if ttl is not None:
            raise ConfigError(
                "AgentCore events expire by the memory's eventExpiryDuration; ttl is not supported"
            )
        actor_id, session_id = self.where(session)
        if not events:
            return AppendResult(True, [])
        meta = {KIND: KIND_LOG}
        if len(events) > 1:
            meta[COUNT] = str(len(events))
        token = None
        if idempotency_key is not None:
            meta[IDEM] = meta_value(idempotency_key)
            token = self.token_for(actor_id, session_id, idempotency_key)
        envelope = Envelope(list(events))
        try:
            head = yield from self.append_flow(actor_id, session_id, envelope, meta, token=token)
        except AgentCoreError as exc:
            if exc.reason != _MISMATCH or idempotency_key is None:
                raise
            earlier = yield from self._find_idem(actor_id, session_id, meta[IDEM])
            if earlier is None:
                raise
            return AppendResult(False, earlier.entry_ids)
        stored = parse_event(head)
        assert stored is not None
        return AppendResult(True, stored.entry_ids)

    def _find_idem(self, actor_id: str, session_id: str, value: str) -> Flow[Stored | None]:
        call = self.list_call(actor_id, session_id, [eq(IDEM, value)], payloads=False)
        reply = yield call
        heads = [s for s in map(parse_event, reply.get("events", [])) if s and s.is_head]
        return heads[0] if heads else None

    def read_flow(
        self,
        session: SessionName,
        start: str | None,
        end: str | None,
        count: int | None,
        reverse: bool,
    ) -> Flow[list[LogEntry]]:
        actor_id, session_id = self.where(session)
        lo = id_key(start) if start is not None else None
        hi = id_key(end) if end is not None else None
        heads = yield from self.heads_flow(actor_id, session_id, payloads=True)
        entries = yield from self.entries_flow(heads)
        picked = [
            e
            for e in entries
            if (lo is None or id_key(e.id) >= lo) and (hi is None or id_key(e.id) <= hi)
        ]
        if reverse:
            picked.reverse()
        return picked if count is None else picked[: max(0, count)]

    def _newest_flow(
        self, actor_id: str, session_id: str
    ) -> Flow[tuple[tuple[int, int] | None, tuple[int, ...]]]:
        """The service order and last entry id of the newest head (``None``, ``(0,)``)."""
        reply = yield self.list_call(
            actor_id, session_id, [exists(SEQ)], payloads=False, max_results=1
        )
        heads = [s for s in map(parse_event, reply.get("events", [])) if s is not None]
        if not heads:
            return None, (0,)
        return heads[0].order, id_key(heads[0].entry_ids[-1])

    def tail_flow(
        self,
        session: SessionName,
        from_id: str | None,
        block_ms: int,
        idle_timeout: float | None,
    ) -> Flow[None]:
        actor_id, session_id = self.where(session)
        if from_id is None:
            seen, cursor = yield from self._newest_flow(actor_id, session_id)
        else:
            seen, cursor = None, id_key(from_id)
        idle_since = yield CLOCK
        while True:
            heads = yield from self.heads_flow(actor_id, session_id, payloads=True, after=seen)
            seen = _newest(seen, heads)
            entries = yield from self.entries_flow(heads)
            fresh = [e for e in entries if id_key(e.id) > cursor]
            if fresh:
                yield Emit(fresh)
                cursor = id_key(fresh[-1].id)
                idle_since = yield CLOCK
            now = yield CLOCK
            idle = now - idle_since
            if idle_timeout is not None and idle >= idle_timeout:
                return
            wait = block_ms / 1000
            if idle_timeout is not None:
                wait = min(wait, idle_timeout - idle)
            yield Sleep(wait)

    def ensure_group_flow(self, session: SessionName, group: str, start_id: str) -> Flow[bool]:
        actor_id, session_id = self.where(session)
        key = (actor_id, session_id, group)
        with self._lock:
            if key in self._groups:
                return False
        if start_id == "$":
            seen, delivered = yield from self._newest_flow(actor_id, session_id)
        else:
            seen, delivered = None, id_key(start_id)
        with self._lock:
            if key in self._groups:
                return False
            self._groups[key] = _Group(seen, delivered)
        return True

    def _group(self, actor_id: str, session_id: str, group: str) -> _Group:
        state = self._groups.get((actor_id, session_id, group))
        if state is None:
            raise ConfigError(f"no consumer group {group!r} on this session: call ensure_group")
        return state

    def group_read_flow(
        self,
        session: SessionName,
        group: str,
        consumer: str,
        count: int,
        block_ms: int | None,
    ) -> Flow[list[LogEntry]]:
        actor_id, session_id = self.where(session)
        with self._lock:
            state = self._group(actor_id, session_id, group)
            mine = state.pending.setdefault(consumer, {})
            out = list(mine.values())[:count]
        started = None
        while len(out) < count:
            with self._lock:
                backlog_empty = not state.backlog
                seen = state.seen
            if backlog_empty:
                heads = yield from self.heads_flow(actor_id, session_id, payloads=True, after=seen)
                entries = yield from self.entries_flow(heads)
                with self._lock:
                    state.seen = _newest(state.seen, heads)
                    queued = {e.id for e in state.backlog}
                    state.backlog.extend(
                        e for e in entries if id_key(e.id) > state.delivered and e.id not in queued
                    )
                    state.backlog.sort(key=lambda e: id_key(e.id))
            with self._lock:
                take = state.backlog[: count - len(out)]
                del state.backlog[: len(take)]
                for entry in take:
                    mine[entry.id] = entry
                if take:
                    state.delivered = max(state.delivered, id_key(take[-1].id))
            out.extend(take)
            if take or not block_ms:
                break
            now = yield CLOCK
            started = now if started is None else started
            left = block_ms / 1000 - (now - started)
            if left <= 0:
                break
            yield Sleep(min(left, 0.1))
        return out

    def ack_flow(self, session: SessionName, group: str, ids: Sequence[str]) -> Flow[int]:
        """Drop ``ids`` from the group's pending entries; a flow without a call (groups
        live in memory), so the shells run it like every other method."""
        actor_id, session_id = self.where(session)
        done = 0
        with self._lock:
            state = self._group(actor_id, session_id, group)
            for pending in state.pending.values():
                for i in ids:
                    if pending.pop(i, None) is not None:
                        done += 1
        yield from ()
        return done

    def delete_flow(self, session: SessionName) -> Flow[bool]:
        """DeleteEvent of every event of the session, streamstate's or not."""
        actor_id, session_id = self.where(session)
        ids: list[str] = []
        token = None
        while True:
            reply = yield self.list_call(actor_id, session_id, payloads=False, token=token)
            ids.extend(raw["eventId"] for raw in reply.get("events", []))
            token = reply.get("nextToken")
            if not token:
                break
        for event_id in ids:
            yield self.delete_call(actor_id, session_id, event_id)
        with self._lock:
            for key in [k for k in self._groups if k[:2] == (actor_id, session_id)]:
                del self._groups[key]
        return bool(ids)

    def trim_flow(self, session: SessionName, maxlen: int | None, minid: str | None) -> Flow[int]:
        actor_id, session_id = self.where(session)
        heads = yield from self.heads_flow(actor_id, session_id, payloads=False)
        ids = sorted({i for h in heads for i in h.entry_ids}, key=id_key)
        doomed = set()
        if maxlen is not None:
            doomed.update(ids[: max(0, len(ids) - maxlen)])
        if minid is not None:
            floor = id_key(minid)
            doomed.update(i for i in ids if id_key(i) < floor)
        if not doomed:
            return 0
        parts = yield from self._parts_flow(actor_id, session_id)
        for stored in heads:
            own = stored.entry_ids
            if not doomed.intersection(own):
                continue
            if not doomed.issuperset(own):
                reply = yield self.get_call(actor_id, session_id, stored.event_id)
                full = parse_event(reply["event"])
                assert full is not None
                envelope = yield from self.envelope_flow(full)
                keep = [(i, ev) for i, ev in zip(own, envelope.events) if i not in doomed]
                meta = {k: v for k, v in full.meta.items() if k not in (SEQ, COUNT, FIRST)}
                meta[FIRST] = str(id_key(keep[0][0])[1])
                if len(keep) > 1:
                    meta[COUNT] = str(len(keep))
                yield from self.append_flow(
                    actor_id,
                    session_id,
                    Envelope([ev for _, ev in keep], envelope.refs),
                    meta,
                    seq=stored.seq,
                )
            yield from self.delete_heads_flow(actor_id, session_id, [stored], parts)
        return len(doomed)

    def _parts_flow(self, actor_id: str, session_id: str) -> Flow[dict[str, list[str]]]:
        """Event ids of every part, by the ``ss.seq`` of its head."""
        parts: dict[str, list[str]] = {}
        token = None
        while True:
            call = self.list_call(
                actor_id, session_id, [eq(KIND, KIND_PART)], payloads=False, token=token
            )
            reply = yield call
            for raw in reply.get("events", []):
                stored = parse_event(raw)
                if stored is not None and PART_OF in stored.meta:
                    parts.setdefault(stored.meta[PART_OF], []).append(stored.event_id)
            token = reply.get("nextToken")
            if not token:
                return parts

    def delete_heads_flow(
        self,
        actor_id: str,
        session_id: str,
        heads: Sequence[Stored],
        parts: Mapping[str, list[str]],
    ) -> Flow[None]:
        """Delete heads, then their parts (a reader never finds a head without parts)."""
        for stored in heads:
            yield self.delete_call(actor_id, session_id, stored.event_id)
        for stored in heads:
            for part in parts.get(stored.meta.get(SEQ, ""), []):
                yield self.delete_call(actor_id, session_id, part)

    def length_flow(self, session: SessionName) -> Flow[int]:
        actor_id, session_id = self.where(session)
        heads = yield from self.heads_flow(actor_id, session_id, payloads=False)
        return len({i for h in heads for i in h.entry_ids})
