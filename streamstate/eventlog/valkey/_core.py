"""The pure core of the Valkey event log: plan a call, then read its reply.

Nothing here touches a client, awaits, or reads a clock; the sync and async shells
(``log.py``) only execute what these functions plan.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from streamstate.errors import CodecError, PayloadTooLarge
from streamstate.eventlog.codec import Codec
from streamstate.eventlog.contract import AppendResult
from streamstate.eventlog.events import Event, LogEntry, Typed, attach, detach
from streamstate.eventlog.keys import Keyspace, SessionKeys, SessionName
from streamstate.eventlog.ops import ARITY, Op, Projection, pexpire, sadd
from streamstate.eventlog.valkey.scripts import APPEND, DELETE, DELETE_OWN, REPLACE, LuaScript

logger = logging.getLogger("streamstate.eventlog")

EVENT_FIELD = b"e"


@dataclass(frozen=True)
class Command:
    """One Valkey command. ``idempotent`` calls may be retried after a connection error."""

    args: tuple[Any, ...]
    idempotent: bool = True


@dataclass(frozen=True)
class ScriptCall:
    """One Lua script invocation (EVALSHA, loading the script on NOSCRIPT)."""

    script: LuaScript
    keys: list[str]
    args: list[Any] = field(default_factory=list)
    idempotent: bool = True
    before: tuple[Command | ScriptCall, ...] = ()
    """Idempotent calls on other hash slots to run first (Valkey Cluster only): a
    script may only touch its session's slot, so registry updates leave the script."""
    valid_for: float | None = None
    """As a ``before`` call: seconds its effect lasts once it ran (``None``: for good)."""


Call = Command | ScriptCall


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, (bytes, bytearray)) else value


def ttl_ms(ttl: float) -> int:
    """Seconds (sub-second honoured) to whole milliseconds, at least 1."""
    return max(1, round(ttl * 1000))


def session_key_set(keys: SessionKeys, projections: Iterable[Projection]) -> list[str]:
    """Every key a session may hold: its log, idempotency hash and all views."""
    out = [keys.log, keys.idem]
    for p in projections:
        out.extend(p.view_keys(keys))
    return out


def placeholder(n: int) -> str:
    """Stands for the id of the ``n``-th event (1-based) of an append, inside op values;
    the append script swaps in the real id once it has added the entry."""
    return f"\x00@{n}"


def ops_for(
    keys: SessionKeys,
    events: Sequence[Event],
    projections: Iterable[Projection],
    ids: Sequence[str] | None = None,
    values: Sequence[Sequence[bytes]] | None = None,
) -> list[Op]:
    """Every projection's ops for the events; ``ids`` are their entry ids when known
    (rebuild), else placeholders resolved by the append script. ``values`` are each
    event's values as stored (stream fields ``0``, ``1``, ...), for views that keep
    small ones inline."""
    projections = tuple(projections)
    ops: list[Op] = []
    for n, event in enumerate(events, 1):
        at = ids[n - 1] if ids is not None else placeholder(n)
        stored = values[n - 1] if values is not None else ()
        for p in projections:
            apply_at = getattr(p, "apply_at", None)
            ops.extend(apply_at(keys, event, at, stored) if apply_at else p.apply(keys, event))
    return ops


def encode_entry(codec: Codec, event: Event) -> list[bytes]:
    """An event as stream field values: the event without its values, then each value
    (compressed on its own), so a view can point at one value of an entry."""
    bare, values = detach(event)
    return [codec.encode(bare), *(codec.encode(v) for v in values)]


def plan_append(
    keyspace: Keyspace,
    projections: Sequence[Projection],
    codec: Codec,
    session: SessionName,
    events: Sequence[Event],
    *,
    idempotency_key: str | None = None,
    guard: tuple[str, str] | None = None,
    skip_if_noop: bool = False,
    extra_ops: Sequence[Op] = (),
    ttl: float | None = None,
    register: bool = True,
    cluster: bool = False,
) -> ScriptCall:
    """Plan the atomic append of ``events`` with every projection op they imply.

    Args:
        guard: ``(key, field)``: the append is a duplicate if that hash field exists
            (a natural idempotency key such as a checkpoint id).
        skip_if_noop: the append is a duplicate if no hash-content op would change
            anything (e.g. a retried insert-if-absent).
        ttl: seconds; every key of the session gets this TTL, refreshed atomically.
        cluster: move ops on keys outside the session's slot (registries) out of the
            script, into commands that run before it.
    """
    sk = keyspace.session(session)
    encoded = [encode_entry(codec, e) for e in events]
    ops = ops_for(sk, events, projections, values=[e[1:] for e in encoded])
    ops.extend(extra_ops)
    if register:
        ops.append(sadd(keyspace.sessions, sk.tag))
    if ttl is not None:
        ms = ttl_ms(ttl)
        ops.extend(pexpire(k, ms) for k in session_key_set(sk, projections))
    before: tuple[Command, ...] = ()
    if cluster:
        ops, before = split_foreign(sk, ops)
    call = _script_for(
        sk, encoded, ops, guard=guard, idempotency_key=idempotency_key, skip_if_noop=skip_if_noop
    )
    return replace(call, before=before) if before else call


def split_foreign(sk: SessionKeys, ops: Sequence[Op]) -> tuple[list[Op], tuple[Command, ...]]:
    """Separate ops on the session's own keys from idempotent ops on other slots."""
    own: list[Op] = []
    foreign: list[Command] = []
    prefix = sk.base + ":"
    for op in ops:
        if op.key.startswith(prefix):
            own.append(op)
        elif op.code == "SADD":
            foreign.append(Command(("SADD", op.key, *op.args)))
        else:
            raise ValueError(
                f"op {op.code} on {op.key!r} is outside session {sk.tag!r}: only SADD can be "
                "split out of a cluster script"
            )
    return own, tuple(foreign)


def plan_apply_ops(keyspace: Keyspace, session: SessionName, ops: Sequence[Op]) -> ScriptCall:
    """Apply ops without appending (rebuilding a view from the log)."""
    return _script_for(keyspace.session(session), [], ops, idempotent=True)


def plan_replace(
    keyspace: Keyspace,
    projections: Sequence[Projection],
    codec: Codec,
    session: SessionName,
    events: Sequence[Event],
    *,
    expected_last_id: str,
    extra_ops: Sequence[Op] = (),
    ttl: float | None = None,
    register: bool = True,
    cluster: bool = False,
) -> ScriptCall:
    """Plan replacing the session's whole log and views with ``events`` (compaction).

    Nothing changes unless the log still ends at ``expected_last_id``.
    """
    sk = keyspace.session(session)
    old = session_key_set(sk, projections)
    encoded = [encode_entry(codec, e) for e in events]
    ops = ops_for(sk, events, projections, values=[e[1:] for e in encoded])
    ops.extend(extra_ops)
    if register:
        ops.append(sadd(keyspace.sessions, sk.tag))
    if ttl is not None:
        ops.extend(pexpire(k, ttl_ms(ttl)) for k in old)
    ops, before = split_foreign(sk, ops) if cluster else (ops, ())
    call = _script_for(sk, encoded, ops, preset=old, idempotent=False)
    return ScriptCall(REPLACE, call.keys, [expected_last_id, len(old), *call.args], False, before)


def read_replace(reply: Sequence[Any]) -> AppendResult | None:
    """None when the log moved on since it was read (the caller should retry)."""
    if int(reply[0]) == -1:
        return None
    return read_append(reply)


def _script_for(
    sk: SessionKeys,
    encoded: Sequence[Sequence[bytes]],
    ops: Sequence[Op],
    *,
    guard: tuple[str, str] | None = None,
    idempotency_key: str | None = None,
    skip_if_noop: bool = False,
    idempotent: bool | None = None,
    preset: Sequence[str] = (),
) -> ScriptCall:
    keys = [sk.log, sk.idem]
    for key in preset:
        if key not in keys:
            keys.append(key)
    index = {k: i + 1 for i, k in enumerate(keys)}

    def key_index(key: str) -> int:
        i = index.get(key)
        if i is None:
            keys.append(key)
            i = index[key] = len(keys)
        return i

    guard_index, guard_field = (key_index(guard[0]), guard[1]) if guard else (0, "")
    args: list[Any] = [
        guard_index,
        guard_field,
        idempotency_key or "",
        "1" if skip_if_noop else "0",
        len(encoded),
    ]
    for fields in encoded:
        args.append(len(fields) - 1)
        args.extend(fields)
    for op in ops:
        if len(op.args) != ARITY[op.code]:
            raise ValueError(f"op {op.code} takes {ARITY[op.code]} args, got {op.args!r}")
        args.append(op.code)
        args.append(key_index(op.key))
        args.extend(op.args)
    if idempotent is None:
        idempotent = bool(guard or idempotency_key or skip_if_noop) or not encoded
    return ScriptCall(APPEND, keys, args, idempotent=idempotent)


def check_payload(call: ScriptCall, limit: int | None) -> None:
    """Refuse a call whose arguments exceed ``limit`` bytes, before it is sent."""
    if limit is None:
        return
    size = sum(map(len, [a for a in call.args if type(a) is bytes]))
    if size > limit:
        raise PayloadTooLarge(
            f"append of {size} bytes exceeds max_payload_bytes={limit}; raise the limit or "
            "store less per checkpoint"
        )


def read_append(reply: Sequence[Any]) -> AppendResult:
    if int(reply[0]) == 1:
        return AppendResult(True, [text(r) for r in reply[1:]])
    # the earlier append's ids, comma-separated (0.1.0 kept only the last)
    prev = text(reply[1]) if len(reply) > 1 and reply[1] else ""
    return AppendResult(False, prev.split(",") if prev else [])


def plan_read(
    keyspace: Keyspace,
    session: SessionName,
    start: str | None = None,
    end: str | None = None,
    *,
    count: int | None = None,
    reverse: bool = False,
) -> Command:
    log = keyspace.session(session).log
    lo, hi = start or "-", end or "+"
    args: tuple[Any, ...] = ("XREVRANGE", log, hi, lo) if reverse else ("XRANGE", log, lo, hi)
    if count is not None:
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        args += ("COUNT", count)
    return Command(args)


def _fields(raw: Any) -> dict[bytes, bytes] | None:
    if raw is None:
        return None
    if isinstance(raw, dict):
        return {k if isinstance(k, bytes) else str(k).encode(): v for k, v in raw.items()}
    it = iter(raw)
    return {k if isinstance(k, bytes) else str(k).encode(): v for k, v in zip(it, it)}


def value_count(fields: dict[bytes, bytes]) -> int:
    """How many values (fields ``0``, ``1``, ...) an entry holds. Other fields than ``e``
    and the values are ignored, so a later layout can add one (an integrity hash) and
    entries written before or after read the same."""
    n = 0
    while str(n).encode() in fields:
        n += 1
    return n


def chain_head(reply: Iterable[Any], head: str = "") -> str:
    """The chain hash (field ``h``) of the newest entry of a read reply that has one."""
    for _entry_id, raw_fields in reply or ():
        fields = _fields(raw_fields) or {}
        if b"h" in fields:
            head = text(fields[b"h"])
    return head


def stored_values(reply: Iterable[Any]) -> dict[str, list[bytes]]:
    """Entry id -> the entry's values as stored (fields ``0``, ``1``, ...), of a read reply."""
    out = {}
    for entry_id, raw_fields in reply or ():
        fields = _fields(raw_fields) or {}
        out[text(entry_id)] = [fields[str(i).encode()] for i in range(value_count(fields))]
    return out


def read_entries(
    reply: Iterable[Any],
    codec: Codec,
    session: SessionName,
    *,
    strict: bool = True,
) -> list[LogEntry]:
    """Decode XRANGE-style ``[(id, fields), ...]`` into entries.

    A foreign or corrupt entry raises :class:`CodecError` when ``strict``; otherwise it
    is skipped with a warning (what an audit tail wants).
    """
    return read_entries_skipping(reply, codec, session, strict=strict)[0]


def read_entries_skipping(
    reply: Iterable[Any],
    codec: Codec,
    session: SessionName,
    *,
    strict: bool = True,
) -> tuple[list[LogEntry], list[str]]:
    """:func:`read_entries`, also returning the ids of entries that could not be read
    (deleted while pending in a group, or undecodable when not ``strict``)."""
    out: list[LogEntry] = []
    skipped: list[str] = []
    label = session if isinstance(session, str) else "/".join(session)
    for entry_id, raw_fields in reply or ():
        eid = text(entry_id)
        fields = _fields(raw_fields)
        if fields is None:  # deleted while pending in a consumer group
            skipped.append(eid)
            continue
        payload = fields.get(EVENT_FIELD)
        try:
            if payload is None:
                raise CodecError(
                    "entry has no 'e' field: not written by streamstate",
                    session=label,
                    entry_id=eid,
                    stage="header",
                )
            event: Event = codec.decode(payload, Event, session=label, entry_id=eid)
            if len(fields) > 1:
                values: list[Any] = [
                    codec.decode(fields[str(i).encode()], Typed, session=label, entry_id=eid)
                    for i in range(value_count(fields))
                ]
                event = attach(event, values)
        except (CodecError, KeyError, ValueError) as exc:
            error = exc
            if not isinstance(exc, CodecError):
                error = CodecError(
                    f"entry fields do not match its event: {exc}", session=label, entry_id=eid
                )
            if strict:
                if error is exc:
                    raise
                raise error from exc
            logger.warning("skipping undecodable entry %s in session %r", eid, label)
            skipped.append(eid)
            continue
        out.append(LogEntry(eid, event))
    return out, skipped


def plan_last_id(keyspace: Keyspace, session: SessionName) -> Command:
    return Command(("XREVRANGE", keyspace.session(session).log, "+", "-", "COUNT", 1))


def read_last_id(reply: Sequence[Any]) -> str:
    return text(reply[0][0]) if reply else "0-0"


def plan_tail(
    keyspace: Keyspace, session: SessionName, after: str, *, block_ms: int, count: int = 100
) -> Command:
    log = keyspace.session(session).log
    return Command(("XREAD", "COUNT", count, "BLOCK", block_ms, "STREAMS", log, after))


def stream_items(reply: Any) -> list[Any]:
    """The entries of a single-stream XREAD/XREADGROUP reply (RESP2 or RESP3 shape)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return next(iter(reply.values()))[0] if reply else []
    return reply[0][1]


def plan_ensure_group(
    keyspace: Keyspace, session: SessionName, group: str, start_id: str
) -> Command:
    log = keyspace.session(session).log
    return Command(("XGROUP", "CREATE", log, group, start_id, "MKSTREAM"))


def plan_group_read(
    keyspace: Keyspace,
    session: SessionName,
    group: str,
    consumer: str,
    *,
    pending: bool,
    count: int,
    block_ms: int | None,
) -> Command:
    log = keyspace.session(session).log
    args: tuple[Any, ...] = ("XREADGROUP", "GROUP", group, consumer, "COUNT", count)
    if block_ms is not None and not pending:
        args += ("BLOCK", block_ms)
    return Command((*args, "STREAMS", log, "0" if pending else ">"), idempotent=pending)


def plan_ack(keyspace: Keyspace, session: SessionName, group: str, ids: Sequence[str]) -> Command:
    return Command(("XACK", keyspace.session(session).log, group, *ids))


def plan_delete(
    keyspace: Keyspace,
    projections: Sequence[Projection],
    session: SessionName,
    *,
    cluster: bool = False,
) -> ScriptCall:
    """Delete every key of the session and unregister it; the reply counts existing keys.

    On a cluster the registry (another slot) keeps the entry: readers skip sessions
    whose log is gone, so the registry stays a superset and nothing is ever unlisted.
    """
    sk = keyspace.session(session)
    keys = session_key_set(sk, projections)
    if cluster:
        return ScriptCall(DELETE_OWN, keys, [])
    return ScriptCall(DELETE, [*keys, keyspace.sessions], [sk.tag])


def plan_trim(
    keyspace: Keyspace, session: SessionName, *, maxlen: int | None, minid: str | None
) -> Command:
    if (maxlen is None) == (minid is None):
        raise ValueError("trim needs exactly one of maxlen or minid")
    log = keyspace.session(session).log
    if maxlen is not None:
        return Command(("XTRIM", log, "MAXLEN", "=", maxlen))
    return Command(("XTRIM", log, "MINID", "=", minid))


def plan_length(keyspace: Keyspace, session: SessionName) -> Command:
    return Command(("XLEN", keyspace.session(session).log))


def plan_sessions_page(keyspace: Keyspace, cursor: int, count: int = 500) -> Command:
    """A page of the session registry (SSCAN of one small set, never a keyspace SCAN)."""
    return Command(("SSCAN", keyspace.sessions, cursor, "COUNT", count))


def read_sessions_page(reply: Sequence[Any]) -> tuple[int, list[str]]:
    cursor, members = reply
    return int(cursor), sorted(text(m) for m in members)
