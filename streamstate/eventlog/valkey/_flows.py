"""Multi-step operations of the Valkey event log, written once as generators.

Each flow yields calls planned by ``_core`` and receives their replies; the shells run
them with ``streamstate.eventlog._drive``. No I/O, no clock here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from streamstate.errors import BackendError
from streamstate.eventlog._drive import Emit, Flow
from streamstate.eventlog.codec import Codec
from streamstate.eventlog.events import LogEntry
from streamstate.eventlog.keys import Keyspace, SessionName, parse_session_tag
from streamstate.eventlog.ops import Op, Projection
from streamstate.eventlog.valkey import _core as core
from streamstate.eventlog.valkey.scripts import SNAPSHOT


def tail(
    keyspace: Keyspace,
    codec: Codec,
    session: SessionName,
    from_id: str | None,
    *,
    block_ms: int,
    idle_timeout: float | None,
    count: int = 100,
    strict: bool = False,
) -> Flow[None]:
    """Entries after ``from_id`` (``None``: after the current end), as they arrive."""
    after = from_id
    if after is None:
        after = core.read_last_id((yield core.plan_last_id(keyspace, session)))
    max_idle = None if idle_timeout is None else max(1, math.ceil(idle_timeout * 1000 / block_ms))
    idle = 0
    while max_idle is None or idle < max_idle:
        reply = yield core.plan_tail(keyspace, session, after, block_ms=block_ms, count=count)
        items = core.stream_items(reply)
        if not items:
            idle += 1
            continue
        idle = 0
        after = core.text(items[-1][0])
        entries = core.read_entries(items, codec, session, strict=strict)
        if entries:
            yield Emit(entries)


def ensure_group(keyspace: Keyspace, session: SessionName, group: str, start_id: str) -> Flow[bool]:
    try:
        yield core.plan_ensure_group(keyspace, session, group, start_id)
    except BackendError as exc:
        if "BUSYGROUP" in str(exc):
            return False
        raise
    return True


def group_read(
    keyspace: Keyspace,
    codec: Codec,
    session: SessionName,
    group: str,
    consumer: str,
    *,
    count: int,
    block_ms: int | None,
    strict: bool = False,
) -> Flow[list[LogEntry]]:
    """This consumer's pending entries first (redelivery after a restart), then new ones.

    Entries that can never be delivered (deleted, or undecodable when not ``strict``)
    are acknowledged on the spot, so they cannot pin the consumer to its pending list.
    """
    for pending in (True, False):
        reply = yield core.plan_group_read(
            keyspace, session, group, consumer, pending=pending, count=count, block_ms=block_ms
        )
        entries, dead = core.read_entries_skipping(
            core.stream_items(reply), codec, session, strict=strict
        )
        if dead:
            yield core.plan_ack(keyspace, session, group, dead)
        if entries:
            return entries
        if pending and dead:
            # the dead ones may have hidden live pending entries behind them
            return (yield from group_read(
                keyspace, codec, session, group, consumer,
                count=count, block_ms=block_ms, strict=strict,
            ))  # fmt: skip
    return []


def sessions(keyspace: Keyspace) -> Flow[None]:
    """Every registered session, as tuples of parts."""
    cursor = 0
    while True:
        cursor, tags = core.read_sessions_page((yield core.plan_sessions_page(keyspace, cursor)))
        if tags:
            yield Emit([parse_session_tag(t) for t in tags])
        if cursor == 0:
            return


def rebuild(
    keyspace: Keyspace,
    projections: Sequence[Projection],
    codec: Codec,
    session: SessionName,
    *,
    target: Keyspace | None = None,
    page: int = 500,
) -> Flow[int]:
    """Rebuild the session's views from its log, through each projection's ``apply``.

    With ``target``, the views are written under that keyspace (same hash tag, another
    prefix) and the live views are left alone, for verification. Returns the number of
    entries replayed.
    """
    source = keyspace.session(session)
    dest = (target or keyspace).session(session)
    views = [k for p in projections for k in p.view_keys(dest)]
    if views:
        yield core.ScriptCall(core.APPEND, [source.log, source.idem, *views], _del_args(views))
    after = "-"
    replayed = 0
    while True:
        reply = yield core.plan_read(keyspace, session, after, None, count=page)
        entries = core.read_entries(reply, codec, session, strict=True)
        if not entries:
            return replayed
        stored = core.stored_values(reply)
        ops: list[Op] = core.ops_for(
            dest,
            [e.event for e in entries],
            projections,
            [e.id for e in entries],
            [stored[e.id] for e in entries],
        )
        replayed += len(entries)
        if ops:
            yield core.plan_apply_ops(target or keyspace, session, ops)
        after = "(" + entries[-1].id


def _del_args(views: Sequence[str]) -> list[Any]:
    args: list[Any] = [0, "", "", "0", 0]
    for i in range(len(views)):
        args += ["DEL", i + 3]
    return args


def snapshot(keys: Sequence[str]) -> Flow[dict[str, tuple[str, Any]]]:
    """Read keys in a comparable form: ``{key: (type, contents)}``."""
    reply = yield core.ScriptCall(SNAPSHOT, list(keys), [])
    out: dict[str, tuple[str, Any]] = {}
    for key, (kind, raw) in zip(keys, reply):
        kind = core.text(kind)
        if kind == "hash":
            it = iter(raw)
            value: Any = dict(zip(it, it))
        elif kind == "zset":
            it = iter(raw)
            value = [(m, float(s)) for m, s in zip(it, it)]
        elif kind == "set":
            value = sorted(raw)
        else:
            value = list(raw)
        out[key] = (kind, value)
    return out
