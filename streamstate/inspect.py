"""Auditing threads from their logs: list threads, diff checkpoints, find a checkpoint by time.

Every function is synchronous and takes a *target* first, as :mod:`streamstate.audit`'s
do: a URL (``None``: ``STREAMSTATE_URL`` or the embedded server), a ``valkey.Valkey``
client, a sync Valkey saver or a :class:`~streamstate.audit.ValkeyAudit` (reused as is,
so a caller holding one pays no new connection).

* :func:`threads` lists the threads of a deployment (or of one actor, or one run) with
  their last activity, checkpoint count and size, sorted and paged. The registries name
  the threads; one script call per page of threads measures them, so a page of a
  100,000-thread deployment costs a few round trips, not one per thread.
* :func:`diff` compares two checkpoints of a thread as its log records them: channels
  added, removed or changed (message lists by message id), the tasks whose writes lead
  from one to the other, interrupts, resumes and metadata.
* :func:`history` (with ``since``/``until``), :func:`checkpoint_at` and :func:`show` (with
  ``at``) answer "when": the times the log records for each checkpoint.

These read the Valkey log. AgentCore Memory and Bedrock sessions keep the same events,
but their APIs list no sessions by activity and report no sizes (see
``docs/auditing.md``).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import heapq
import json
import math
import operator
import re
import time
from collections.abc import Sequence
from typing import Any, Literal

from langgraph.checkpoint.base import CheckpointTuple

from streamstate.adapters._checkpoints import ACTOR_THREAD, THREAD, Thread
from streamstate.audit import Target, connect, jsonable
from streamstate.errors import ConfigError, NotFound
from streamstate.eventlog._drive import Flow, complete
from streamstate.eventlog.events import CheckpointPut, Typed
from streamstate.eventlog.keys import (
    Keyspace,
    SessionKeys,
    SessionName,
    escape,
    parse_session_tag,
)
from streamstate.eventlog.valkey._core import ScriptCall, text
from streamstate.eventlog.valkey.scripts import LuaScript
from streamstate.fold import HistoryEntry, ThreadFold, node_of
from streamstate.projections import checkpoints as thread_views

__all__ = [
    "SORTS",
    "ChannelChange",
    "CheckpointDiff",
    "MessageChange",
    "TaskWrites",
    "ThreadInfo",
    "ThreadPage",
    "checkpoint_at",
    "checkpoint_time",
    "diff",
    "entry_time",
    "history",
    "parse_time",
    "show",
    "threads",
]

NULL_TASK = "00000000-0000-0000-0000-000000000000"
"""The task id LangGraph gives writes that come from outside a node (a resume value)."""

# -- time ------------------------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_RELATIVE_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parse_time(
    value: str | float | datetime.datetime, *, now: float | None = None, name: str = "time"
) -> float:
    """Unix seconds of a moment given by a person.

    Args:
        value: An ISO 8601 time (``2026-05-01T12:00:00+02:00``; without an offset it is
            local time; a date alone is its midnight), a duration ago (``90s``, ``30m``,
            ``2h``, ``1d12h``, ``1w``), ``now``, Unix seconds, or a ``datetime``.
        now: Unix seconds that durations count back from (default: the clock).
        name: What the value is, for the error message (``--since``).

    Raises:
        ConfigError: The value is none of those.
    """
    if isinstance(value, datetime.datetime):
        return value.timestamp()  # a naive datetime is local time, as Python has it
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raw = str(value).strip()
    lowered = raw.lower()
    if lowered == "now":
        return time.time() if now is None else now
    if _RELATIVE.fullmatch(lowered):
        ago = sum(float(n) * _UNITS[u] for n, u in _RELATIVE_PART.findall(lowered))
        return (time.time() if now is None else now) - ago
    if _NUMBER.fullmatch(raw):
        return float(raw)
    iso = raw[:-1] + "+00:00" if raw[-1:] in ("Z", "z") else raw
    try:
        moment = datetime.datetime.fromisoformat(iso)
    except ValueError:
        raise ConfigError(
            f"{name} {raw!r} is not a time: give an ISO 8601 time (2026-05-01T12:00:00Z),"
            " a duration ago (30m, 2h, 1d), 'now' or Unix seconds"
        ) from None
    return moment.timestamp()


def entry_time(entry_id: str) -> float:
    """Unix seconds of a stream entry id (its millisecond part: the server's clock)."""
    return int(entry_id.partition("-")[0]) / 1000


def checkpoint_time(entry_id: str, cp: CheckpointPut) -> float:
    """When a checkpoint was made: ``created_at`` as its saver recorded it, else (events
    written before that field existed) the time of its log entry.

    ``created_at`` survives a fork or a compaction, which copy events into new entries;
    the entry id then says when the copy was made.
    """
    return cp.created_at if cp.created_at > 0 else entry_time(entry_id)


def _row_time(row: HistoryEntry) -> float:
    return row.created_at if row.created_at > 0 else entry_time(row.entry_id)


def iso(ts: float | None) -> str | None:
    """Unix seconds as an ISO 8601 UTC time with milliseconds (``None`` stays ``None``)."""
    if ts is None:
        return None
    moment = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def history(
    target: Target,
    thread: SessionName,
    *,
    actor_id: str | None = None,
    ns: str | None = None,
    since: str | float | datetime.datetime | None = None,
    until: str | float | datetime.datetime | None = None,
    limit: int | None = None,
) -> list[HistoryEntry]:
    """A thread's checkpoints newest first, from its log, made between two moments.

    ``since`` and ``until`` (inclusive; see :func:`parse_time` for what they accept) are
    compared with each checkpoint's :func:`checkpoint_time`. Without them this is
    :func:`streamstate.audit.history`. ``limit`` keeps the newest N of those in range.
    """
    start = None if since is None else parse_time(since, name="since")
    end = None if until is None else parse_time(until, name="until")
    with connect(target) as audit:
        rows = audit.history(thread, actor_id=actor_id, ns=ns)
    rows = [
        r
        for r in rows
        if (start is None or _row_time(r) >= start) and (end is None or _row_time(r) <= end)
    ]
    return rows if limit is None else rows[: max(0, limit)]


def _current_at(folded: ThreadFold, moment: float, ns: str) -> str | None:
    """The checkpoint ``get_tuple`` gave at ``moment``: the greatest id among those made
    by then (LangGraph's rule for a namespace's newest checkpoint)."""
    best: str | None = None
    for (cns, cid), (entry_id, cp) in folded.checkpoints.items():
        if cns == ns and checkpoint_time(entry_id, cp) <= moment and (best is None or cid > best):
            best = cid
    return best


def checkpoint_at(
    target: Target,
    thread: SessionName,
    at: str | float | datetime.datetime,
    *,
    actor_id: str | None = None,
    ns: str = "",
) -> HistoryEntry:
    """The checkpoint that was current at a moment (the newest made by then), from the log.

    Raises:
        NotFound: The thread has no checkpoint in ``ns`` made by then.
        ConfigError: ``at`` is not a time.
    """
    moment = parse_time(at, name="at")
    with connect(target) as audit:
        folded = audit.fold(thread, actor_id)
        cid = _current_at(folded, moment, ns)
        if cid is None:
            raise NotFound(_none_at(folded, moment, ns))
        return next(r for r in folded.history(audit.serde) if r.checkpoint_id == cid and r.ns == ns)


def _none_at(folded: ThreadFold, moment: float, ns: str) -> str:
    times = [checkpoint_time(e, cp) for (n, _c), (e, cp) in folded.checkpoints.items() if n == ns]
    where = "/".join(folded.thread.session) + (f" (ns {ns!r})" if ns else "")
    first = f"; its first is from {iso(min(times))}" if times else ""
    return f"no checkpoint of {where} was made by {iso(moment)}{first}"


def show(
    target: Target,
    thread: SessionName,
    checkpoint_id: str | None = None,
    *,
    at: str | float | datetime.datetime | None = None,
    actor_id: str | None = None,
    ns: str = "",
) -> CheckpointTuple:
    """The live state at a checkpoint, or at the checkpoint current at moment ``at``.

    Without ``at`` this is :func:`streamstate.audit.show`.

    Raises:
        ConfigError: Both ``checkpoint_id`` and ``at`` were given.
        NotFound: No such thread or checkpoint (none made by ``at``).
    """
    if at is not None and checkpoint_id is not None:
        raise ConfigError("give a checkpoint id or a time (at), not both")
    with connect(target) as audit:
        if at is not None:
            checkpoint_id = checkpoint_at(audit, thread, at, actor_id=actor_id, ns=ns).checkpoint_id
        return audit.show(thread, checkpoint_id, actor_id=actor_id, ns=ns)


# -- listing threads --------------------------------------------------------------------

SORTS = ("activity", "size", "checkpoints", "id")
Sort = Literal["activity", "size", "checkpoints", "id"]
STATS_PAGE = 1000
"""Threads measured by one script call (3 keys each): big enough that 100,000 threads
are 100 round trips, small enough that one call holds the server for milliseconds."""
SCAN_COUNT = 5000

# KEYS: per thread its log, v and z (thread_keys order). ARGV[1]: 'page' to measure each
# thread whole, or one figure to sort by: 'a' (the last entry's millisecond), 'c'
# (checkpoints: members 'c:...' of z, every namespace), 's' (bytes: MEMORY USAGE of the
# three keys). Reply, per thread: for 'page' XLEN (-1: the log key holds no stream), last
# id ('' when empty), checkpoints, bytes; else that one figure. Checkpoints are -1 for a
# thread without index (key layout 1); the last millisecond is 0 for an empty log.
# Read-only.
THREAD_STATS = LuaScript(
    "thread_stats",
    r"""
local what = ARGV[1]
local function last_id(log)
  local ok, e = pcall(redis.call, 'XREVRANGE', log, '+', '-', 'COUNT', 1)
  if ok and e[1] then return e[1][1] end
  return ''
end
local function checkpoints(z)
  local got = redis.pcall('ZLEXCOUNT', z, '[c:', '(c;')
  if type(got) == 'number' and (got > 0 or redis.call('EXISTS', z) == 1) then return got end
  return -1
end
local function bytes(log, v, z)
  return (redis.call('MEMORY', 'USAGE', log) or 0) + (redis.call('MEMORY', 'USAGE', v) or 0)
    + (redis.call('MEMORY', 'USAGE', z) or 0)
end
local out = {}
for i = 1, #KEYS, 3 do
  local log, v, z = KEYS[i], KEYS[i + 1], KEYS[i + 2]
  if what == 'a' then
    out[#out + 1] = tonumber(string.match(last_id(log), '^(%d+)')) or 0
  elseif what == 'c' then
    out[#out + 1] = checkpoints(z)
  elseif what == 's' then
    out[#out + 1] = bytes(log, v, z)
  else
    local n = redis.pcall('XLEN', log)
    if type(n) ~= 'number' then n = -1 end
    out[#out + 1] = n
    out[#out + 1] = last_id(log)
    out[#out + 1] = checkpoints(z)
    out[#out + 1] = bytes(log, v, z)
  end
end
return out
""",
)


@dataclasses.dataclass(frozen=True)
class ThreadInfo:
    """One thread of a :func:`threads` listing. A figure not measured is ``None``."""

    thread_id: str
    actor_id: str | None
    events: int | None
    """Entries in the thread's log (XLEN); ``None`` if the log key holds no stream."""
    last_entry_id: str | None
    """Id of the log's last entry (``None``: an empty log)."""
    checkpoints: int | None
    """Checkpoints of every namespace (``None``: no index, a thread of key layout 1)."""
    bytes: int | None
    """Server memory of the thread's log, views and index (``MEMORY USAGE``)."""
    expires_at: float | None
    """When the thread's TTL runs out (Unix seconds); ``None``: no TTL."""

    @property
    def session(self) -> tuple[str, ...]:
        return Thread(self.thread_id, self.actor_id).session

    @property
    def last_activity(self) -> float | None:
        """Unix seconds of the last log entry (the server's clock), ``None`` if empty."""
        return None if self.last_entry_id is None else entry_time(self.last_entry_id)

    def as_json(self) -> dict[str, Any]:
        return {
            "thread_id": self.thread_id,
            "actor_id": self.actor_id,
            "last_activity": iso(self.last_activity),
            "last_entry_id": self.last_entry_id,
            "events": self.events,
            "checkpoints": self.checkpoints,
            "bytes": self.bytes,
            "expires_at": iso(self.expires_at),
        }


@dataclasses.dataclass(frozen=True)
class ThreadPage:
    """One page of :func:`threads`."""

    threads: list[ThreadInfo]
    total: int
    """Threads that match the filters, on every page."""
    sort: str
    next: str | None
    """The ``after`` cursor of the next page; ``None`` on the last page."""
    offset: int = 0
    """How many matching threads come before this page (in this listing's order)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "threads": [t.as_json() for t in self.threads],
            "total": self.total,
            "offset": self.offset,
            "sort": self.sort,
            "next": self.next,
        }


# KEYS[1]: a registry: the threads zset (members scored by expiry, ms) or layout 1's
# session set. ARGV: [1] cursor, [2] COUNT, [3] MATCH pattern or ''. Reply: {next cursor,
# member, score ('inf' for a set), ...} of the members whose thread has not expired: the
# filter runs on the server's clock, and scores stay strings nobody parses unless shown.
# Read-only.
REGISTRY_SCAN = LuaScript(
    "registry_scan",
    r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local args = {KEYS[1], ARGV[1]}
if ARGV[3] ~= '' then
  args[#args + 1] = 'MATCH'
  args[#args + 1] = ARGV[3]
end
args[#args + 1] = 'COUNT'
args[#args + 1] = ARGV[2]
local kind = redis.call('TYPE', KEYS[1])['ok']
local out = {'0'}
if kind == 'zset' then
  local r = redis.call('ZSCAN', unpack(args))
  out[1] = r[1]
  for i = 1, #r[2], 2 do
    local s = r[2][i + 1]
    if s == 'inf' or tonumber(s) >= now then
      out[#out + 1] = r[2][i]
      out[#out + 1] = s
    end
  end
elseif kind == 'set' then
  local r = redis.call('SSCAN', unpack(args))
  out[1] = r[1]
  for _, m in ipairs(r[2]) do
    out[#out + 1] = m
    out[#out + 1] = 'inf'
  end
elseif kind ~= 'none' then
  return redis.error_reply('WRONGTYPE streamstate: ' .. KEYS[1] .. ' holds a ' .. kind)
end
return out
""",
)


def _scan(key: str, match: str | None) -> Flow[dict[bytes, bytes]]:
    """Members of a registry whose thread has not expired, with their scores (raw)."""
    found: dict[bytes, bytes] = {}
    cursor: Any = 0
    while True:
        reply = yield ScriptCall(REGISTRY_SCAN, [key], [cursor, SCAN_COUNT, match or ""])
        cursor = reply[0]
        it = iter(reply[1:])
        found.update(zip(it, it))
        if int(cursor) == 0:
            return found


_Candidate = tuple[str, str, str, bytes]
"""``(thread id, actor id or '', session tag, registry score)``: made for every
registered thread, so a plain tuple (a page's rows get a :class:`ThreadInfo`)."""


def _candidates(
    keyspace: Keyspace, *, actor: str | None, run: str | None, prefix: str | None
) -> Flow[list[_Candidate]]:
    """The registered, unexpired threads that pass the filters."""
    # Without an actor, a thread id prefix cannot be one pattern (in 'a,' tags it comes
    # after the actor): those threads are filtered here.
    match = None if actor is None else f"a,{escape(actor)},{escape(prefix or '')}*"
    if run is not None:
        members = yield from _scan(thread_views.run_registry(keyspace, run), match)
    else:
        members = yield from _scan(thread_views.threads_registry(keyspace), match)
        # threads of key layout 1 stay in the session set until migrated
        legacy = yield from _scan(keyspace.sessions, match)
        members = {**legacy, **members}
    out: list[_Candidate] = []
    for raw, score in members.items():
        tag = raw.decode()
        kind, _, rest = tag.partition(",")
        # most ids need no unescaping: parse only those that do (100,000 tags a listing)
        parts = parse_session_tag(tag)[1:] if "%" in rest else rest.split(",")
        if kind == THREAD and len(parts) == 1:
            thread_id, actor_id = parts[0], ""
        elif kind == ACTOR_THREAD and len(parts) == 2:
            actor_id, thread_id = parts
        else:
            continue  # a store session of layout 1's set
        if actor is not None and actor_id != actor:
            continue
        if prefix and not thread_id.startswith(prefix):
            continue
        out.append((thread_id, actor_id, tag, score))
    return out


def plan_thread_stats(keyspace: Keyspace, tags: Sequence[str], what: str) -> ScriptCall:
    """One call measuring threads (``what``: ``page``, ``a``, ``c`` or ``s``; see
    :data:`THREAD_STATS`)."""
    # registry members are session tags already: no parse and re-escape per thread
    keys = [k for tag in tags for k in thread_views.thread_keys(SessionKeys(keyspace.prefix, tag))]
    return ScriptCall(THREAD_STATS, keys, [what])


def read_thread_page(reply: Sequence[Any]) -> list[tuple[int, str, int, int]]:
    """Per thread ``(events, last id, checkpoints, bytes)`` of a ``page`` call."""
    return [
        (int(reply[k]), text(reply[k + 1]), int(reply[k + 2]), int(reply[k + 3]))
        for k in range(0, len(reply), 4)
    ]


def _measure(keyspace: Keyspace, tags: Sequence[str], what: str, cluster: bool) -> Flow[list[Any]]:
    """The script's figures for every thread: one call per :data:`STATS_PAGE` threads."""
    out: list[Any] = []
    # On a cluster each thread has its own slot, so a script may measure only one.
    page = 1 if cluster else STATS_PAGE
    for start in range(0, len(tags), page):
        out += yield plan_thread_stats(keyspace, tags[start : start + page], what)
    return out


_WHAT = {"activity": "a", "size": "s", "checkpoints": "c"}


def encode_cursor(sort: str, key: tuple) -> str:
    raw = json.dumps([sort, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        got = json.loads(raw)
        if not isinstance(got, list) or not got:
            raise ValueError(cursor)
    except ValueError:
        raise ConfigError(f"--after {cursor!r} is not a cursor that threads returned") from None
    if got[0] != sort:
        raise ConfigError(f"--after is a cursor of a listing sorted by {got[0]}, not by {sort}")
    key = tuple(got[1:])
    shape = (str, str) if sort == "id" else (int, str, str)
    if len(key) != len(shape) or not all(type(v) is t for v, t in zip(key, shape)):
        raise ConfigError(f"--after {cursor!r} is not a cursor that threads returned")
    return key


def threads_flow(
    keyspace: Keyspace,
    *,
    actor: str | None = None,
    run: str | None = None,
    prefix: str | None = None,
    sort: str = "activity",
    limit: int = 50,
    after: str | None = None,
    cluster: bool = False,
) -> Flow[ThreadPage]:
    """The steps of :func:`threads`: scan the registry, measure what the sort needs (all
    candidates, one call per :data:`STATS_PAGE`), cut the page, measure the page."""
    if sort not in SORTS:
        raise ConfigError(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
    if limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    start_key = None if after is None else decode_cursor(after, sort)
    cands = yield from _candidates(keyspace, actor=actor, run=run, prefix=prefix)
    # Sort keys: the figure descending (activity by the millisecond only: sequence
    # numbers count within one stream, not across), then thread id and actor ascending.
    keyed: list[tuple[tuple[Any, ...], Any]]
    if sort == "id":
        keyed = [((c[0], c[1]), c) for c in cands]
    else:
        figures = yield from _measure(keyspace, [c[2] for c in cands], _WHAT[sort], cluster)
        keyed = [((-int(f), c[0], c[1]), c) for c, f in zip(cands, figures)]
    # a page of the order, not the whole order sorted: O(n log limit)
    first = 0
    if start_key is not None:
        rest = [kc for kc in keyed if kc[0] > start_key]
        first = len(keyed) - len(rest)
        keyed_after = rest
    else:
        keyed_after = keyed
    page = heapq.nsmallest(limit, keyed_after, key=operator.itemgetter(0))
    measured = yield from _measure(keyspace, [c[2] for _k, c in page], "page", cluster)
    rows = []
    for (_k, (thread_id, actor_id, _tag, score)), figures_of in zip(
        page, read_thread_page(measured)
    ):
        events, last, cps, size = figures_of
        expires = float(score)
        rows.append(
            ThreadInfo(
                thread_id=thread_id,
                actor_id=actor_id or None,
                events=None if events < 0 else events,
                last_entry_id=last or None,
                checkpoints=None if cps < 0 else cps,
                bytes=None if size < 0 else size,
                expires_at=None if math.isinf(expires) else expires / 1000,
            )
        )
    more = len(page) < len(keyed_after)
    cursor = encode_cursor(sort, page[-1][0]) if more else None
    return ThreadPage(rows, len(keyed), sort, cursor, offset=first)


def threads(
    target: Target,
    *,
    actor: str | None = None,
    run: str | None = None,
    prefix: str | None = None,
    sort: Sort = "activity",
    limit: int = 50,
    after: str | None = None,
) -> ThreadPage:
    """One page of the threads of a deployment, with their activity, checkpoints and size.

    Threads come from the registries the savers write (every thread, a run's threads),
    pruned of those whose TTL ran out. Sorting by ``activity`` (newest first), ``size``
    or ``checkpoints`` (largest first) measures every matching thread, one script call
    per 1,000 threads; ``id`` sorts by thread id and measures only the page. Paging is
    by keyset: ``after`` is the ``next`` cursor of the previous page, so a thread that
    becomes active between pages can appear twice or be missed, never mixed up.

    Args:
        actor: Only the AgentCore threads of this actor.
        run: Only the threads this run (metadata ``run_id``) wrote checkpoints to.
        prefix: Only threads whose id starts with this.
        sort: ``activity``, ``size``, ``checkpoints`` or ``id``.
        limit: Threads per page.
        after: The cursor of the previous page (:attr:`ThreadPage.next`).

    Raises:
        ConfigError: An unknown sort, a bad limit, a cursor of another sort.
    """
    with connect(target) as audit:
        flow = threads_flow(
            audit.keyspace,
            actor=actor,
            run=run,
            prefix=prefix,
            sort=sort,
            limit=limit,
            after=after,
            cluster=audit.log.cluster,
        )
        return complete(flow, audit.log.run)


# -- diff ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MessageChange:
    """One message of a message list that differs between two checkpoints."""

    change: str
    """``appended`` (new, after every kept message), ``inserted`` (new, before one),
    ``removed`` or ``edited`` (same id, other content)."""
    id: str | None
    index: int
    """Position in the newer list (``removed``: in the older one)."""
    before: Any = None
    after: Any = None
    fields: tuple[str, ...] = ()
    """For ``edited``: the message fields that differ (``content``, ``tool_calls``...)."""


@dataclasses.dataclass(frozen=True)
class ChannelChange:
    """A channel whose value differs between two checkpoints."""

    channel: str
    change: str
    """``added``, ``removed`` or ``changed``."""
    before: Any = None
    after: Any = None
    messages: list[MessageChange] | None = None
    """For a list of LangChain messages: the change message by message."""


@dataclasses.dataclass(frozen=True)
class TaskWrites:
    """The writes one task recorded against a checkpoint."""

    checkpoint_id: str
    task_id: str
    node: str
    writes: list[tuple[str, Any]]
    """``(channel, decoded value)`` in the task's order."""

    @property
    def interrupts(self) -> list[Any]:
        return [v for c, v in self.writes if c == "__interrupt__"]

    @property
    def resumes(self) -> list[Any]:
        return [v for c, v in self.writes if c == "__resume__"]

    @property
    def errors(self) -> list[Any]:
        return [v for c, v in self.writes if c == "__error__"]


@dataclasses.dataclass(frozen=True)
class CheckpointDiff:
    """What changed between two checkpoints of a thread (see :func:`diff`)."""

    thread: Thread
    ns: str
    before: HistoryEntry | None
    """The older checkpoint (``None``: the newer one has no parent: all is added)."""
    after: HistoryEntry
    path: list[str] | None
    """Checkpoint ids from ``before`` to ``after`` along parent links; ``None`` when
    ``before`` is not an ancestor of ``after`` (another branch: no task leads there)."""
    channels: list[ChannelChange]
    metadata: list[ChannelChange]
    """Changed metadata keys (``channel`` holds the key)."""
    tasks: list[TaskWrites]
    """Writes recorded against each checkpoint of ``path`` but the last: what made it."""
    pending: list[TaskWrites]
    """Writes recorded against ``after``: tasks run from it (an interrupt waiting...)."""

    @property
    def interrupts(self) -> list[tuple[TaskWrites, Any, bool]]:
        """``(task, interrupt, resumed)``: resumed when a later step ran, or a resume value
        was written against its checkpoint."""
        out = []
        resumed_at = {t.checkpoint_id for t in self.pending if t.resumes}
        for t in [*self.tasks, *self.pending]:
            for value in t.interrupts:
                done = t.checkpoint_id != self.after.checkpoint_id or t.checkpoint_id in resumed_at
                out.append((t, value, done))
        return out

    @property
    def resumes(self) -> list[tuple[TaskWrites, Any]]:
        return [(t, v) for t in [*self.tasks, *self.pending] for v in t.resumes]

    def as_json(self) -> dict[str, Any]:
        def point(h: HistoryEntry | None) -> dict[str, Any] | None:
            if h is None:
                return None
            return {
                "checkpoint_id": h.checkpoint_id,
                "step": h.step,
                "source": h.source,
                "created_at": iso(_row_time(h)),
            }

        def change(c: ChannelChange, key: str) -> dict[str, Any]:
            out: dict[str, Any] = {key: c.channel, "change": c.change}
            if c.messages is not None:
                out["messages"] = [
                    {
                        "change": m.change,
                        "id": m.id,
                        "index": m.index,
                        **({"before": jsonable(m.before)} if m.change != "appended" else {}),
                        **({"after": jsonable(m.after)} if m.change != "removed" else {}),
                        **({"fields": list(m.fields)} if m.fields else {}),
                    }
                    for m in c.messages
                ]
            else:
                if c.change != "added":
                    out["before"] = jsonable(c.before)
                if c.change != "removed":
                    out["after"] = jsonable(c.after)
            return out

        def task(t: TaskWrites) -> dict[str, Any]:
            return {
                "checkpoint_id": t.checkpoint_id,
                "task_id": t.task_id,
                "node": t.node,
                "writes": [{"channel": c, "value": jsonable(v)} for c, v in t.writes],
            }

        head: dict[str, Any] = {"thread_id": self.thread.thread_id}
        if self.thread.actor_id is not None:
            head["actor_id"] = self.thread.actor_id
        return head | {
            "checkpoint_ns": self.ns,
            "from": point(self.before),
            "to": point(self.after),
            "path": self.path,
            "channels": [change(c, "channel") for c in self.channels],
            "metadata": [change(c, "key") for c in self.metadata],
            "tasks": [task(t) for t in self.tasks],
            "pending": [task(t) for t in self.pending],
            "interrupts": [
                {
                    "checkpoint_id": t.checkpoint_id,
                    "task_id": t.task_id,
                    "node": t.node,
                    "value": jsonable(v),
                    "resumed": done,
                }
                for t, v, done in self.interrupts
            ],
            "resumes": [
                {
                    "checkpoint_id": t.checkpoint_id,
                    "task_id": t.task_id,
                    "node": t.node,
                    "value": jsonable(v),
                }
                for t, v in self.resumes
            ],
        }


_MISSING = object()


def _is_messages(value: Any) -> bool:
    from langchain_core.messages import BaseMessage

    return isinstance(value, list) and all(isinstance(v, BaseMessage) for v in value)


def _message_key(message: Any, index: int) -> str:
    return message.id if message.id is not None else f"#{index}"


def diff_messages(before: Sequence[Any], after: Sequence[Any]) -> list[MessageChange]:
    """Message lists compared by message id (by position for messages without one)."""
    old = {_message_key(m, i): (i, m) for i, m in enumerate(before)}
    new_keys = [_message_key(m, i) for i, m in enumerate(after)]
    last_kept = max((i for i, k in enumerate(new_keys) if k in old), default=-1)
    out: list[MessageChange] = []
    for i, (key, m) in enumerate(zip(new_keys, after)):
        if key not in old:
            kind = "appended" if i > last_kept else "inserted"
            out.append(MessageChange(kind, m.id, i, after=m))
            continue
        _j, was = old[key]
        if was != m:
            a, b = was.model_dump(), m.model_dump()
            fields = tuple(sorted(f for f in a.keys() | b.keys() if a.get(f) != b.get(f)))
            out.append(MessageChange("edited", m.id, i, before=was, after=m, fields=fields))
    gone = set(old) - set(new_keys)
    for key in sorted(gone, key=lambda k: old[k][0]):
        j, was = old[key]
        out.append(MessageChange("removed", was.id, j, before=was))
    return out


def diff_values(before: dict[str, Any], after: dict[str, Any]) -> list[ChannelChange]:
    """Keys added, removed or changed between two dicts (channel values, metadata)."""
    out = []
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key, _MISSING), after.get(key, _MISSING)
        if a is _MISSING:
            msgs = diff_messages([], b) if _is_messages(b) and b else None
            out.append(ChannelChange(key, "added", after=b, messages=msgs))
        elif b is _MISSING:
            msgs = diff_messages(a, []) if _is_messages(a) and a else None
            out.append(ChannelChange(key, "removed", before=a, messages=msgs))
        elif a != b:
            msgs = diff_messages(a, b) if _is_messages(a) and _is_messages(b) else None
            out.append(ChannelChange(key, "changed", before=a, after=b, messages=msgs))
    return out


def _resolve(folded: ThreadFold, ref: str, ns: str) -> str:
    """A checkpoint named by its id, a unique head or tail of it (tables show tails,
    ``…`` allowed), or ``@TIME`` (the checkpoint current then)."""
    if ref.startswith("@"):
        cid = _current_at(folded, parse_time(ref[1:], name="checkpoint time"), ns)
        if cid is None:
            raise NotFound(_none_at(folded, parse_time(ref[1:]), ns))
        return cid
    if (ns, ref) in folded.checkpoints:
        return ref
    tail = ref.lstrip("…")
    found = [
        c for (n, c) in folded.checkpoints if n == ns and (c.endswith(tail) or c.startswith(ref))
    ]
    if len(tail) >= 4 and len(found) == 1:
        return found[0]
    where = "/".join(folded.thread.session) + (f" (ns {ns!r})" if ns else "")
    if len(found) > 1 and len(tail) >= 4:
        raise ConfigError(f"{ref!r} names {len(found)} checkpoints of {where}; give more of it")
    raise NotFound(f"checkpoint {ref} not found in {where}")


def _tasks(folded: ThreadFold, ns: str, cid: str, serde: Any) -> list[TaskWrites]:
    by_task: dict[str, tuple[str, list[tuple[int, str, Typed]]]] = {}
    for (task_id, idx), (path, channel, typed) in sorted(folded.writes.get((ns, cid), {}).items()):
        by_task.setdefault(task_id, (path, []))[1].append((idx, channel, typed))
    out = []
    for task_id, (path, rows) in by_task.items():
        rows.sort(key=lambda r: (r[0] < 0, r[0]))
        writes = [(channel, serde.loads_typed(typed)) for _i, channel, typed in rows]
        out.append(TaskWrites(cid, task_id, node_of(path, task_id), writes))
    return out


def diff_fold(
    folded: ThreadFold, serde: Any, a: str | None = None, b: str | None = None, ns: str = ""
) -> CheckpointDiff:
    """:func:`diff` on a thread already folded (no I/O)."""
    if b is None and a is None:
        b_id = folded.resolve(None, ns)
        if b_id is None:
            raise NotFound(f"no checkpoint in {'/'.join(folded.thread.session)} (ns {ns!r})")
        a_id = folded.checkpoints[(ns, b_id)][1].parent_id
    elif b is None:
        b_id = _resolve(folded, a or "", ns)
        a_id = folded.checkpoints[(ns, b_id)][1].parent_id
    else:
        a_id, b_id = _resolve(folded, a or "", ns), _resolve(folded, b, ns)
    rows = {r.checkpoint_id: r for r in folded.history(serde) if r.ns == ns}
    newer = folded.tuple(ns, b_id, serde)
    values_after = newer.checkpoint.get("channel_values", {})
    meta_after = dict(newer.metadata or {})
    if a_id is not None and (ns, a_id) in folded.checkpoints:
        older = folded.tuple(ns, a_id, serde)
        values_before = older.checkpoint.get("channel_values", {})
        meta_before = dict(older.metadata or {})
    else:
        a_id, values_before, meta_before = None, {}, {}
    path = _path(folded, ns, a_id, b_id)
    tasks = []
    for cid in (path or [])[:-1]:
        tasks += _tasks(folded, ns, cid, serde)
    return CheckpointDiff(
        thread=folded.thread,
        ns=ns,
        before=rows.get(a_id) if a_id is not None else None,
        after=rows[b_id],
        path=path,
        channels=diff_values(values_before, values_after),
        metadata=diff_values(meta_before, meta_after),
        tasks=tasks,
        pending=_tasks(folded, ns, b_id, serde),
    )


def _path(folded: ThreadFold, ns: str, a_id: str | None, b_id: str) -> list[str] | None:
    chain = [b_id]
    seen = {b_id}
    cur: str | None = b_id
    while cur is not None and cur != a_id:
        found = folded.checkpoints.get((ns, cur))
        cur = found[1].parent_id if found is not None else None
        if cur is None or cur in seen:
            return [b_id] if a_id is None else None
        chain.append(cur)
        seen.add(cur)
    return list(reversed(chain))


def diff(
    target: Target,
    thread: SessionName,
    a: str | None = None,
    b: str | None = None,
    *,
    actor_id: str | None = None,
    ns: str = "",
) -> CheckpointDiff:
    """What changed between two checkpoints of a thread, from its log alone.

    With no checkpoint, the newest is compared with its parent; with one (``a``), that
    checkpoint with its parent; with two, ``a`` with ``b``. A checkpoint is named by its
    id, a unique head or tail of it (four characters or more), or ``@TIME`` (the checkpoint
    current then; see :func:`parse_time`). Values are decoded with the target's serde.

    Raises:
        NotFound: No such thread or checkpoint.
        ConfigError: A head or tail that names several checkpoints.
    """
    with connect(target) as audit:
        folded = audit.fold(thread, actor_id)
        return diff_fold(folded, audit.serde, a, b, ns)
