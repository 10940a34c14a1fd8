"""Audit and time travel over the logs: history, show, replay, fork, tail, rebuild, verify, stats.

Every function is synchronous and takes a *target* first: a URL (``None``: the
``STREAMSTATE_URL`` or the embedded server), a ``valkey.Valkey`` client, a
:class:`~streamstate.ValkeySaver` (its prefix, codec and serde are used) or a
:class:`ValkeyAudit`. A *thread* is a thread id (``actor_id=`` selects the AgentCore
session ``("a", actor_id, thread_id)``) or a raw session tuple such as ``("t", "t-1")``.

``replay`` never reads a projection: it folds the thread's log entries into a fresh
in-memory state (:class:`~streamstate.fold.ThreadFold`, which does no I/O), so
comparing it with ``get_tuple`` checks the views against the log. ``fork`` copies the
log of a thread up to a checkpoint into a new thread in one atomic append, without the
checkpoint's pending writes: resuming the fork runs the next step again (an interrupt
asks again), as LangGraph's own fork does.

Errors: an unknown session or checkpoint raises :class:`~streamstate.errors.NotFound`,
an unreachable server :class:`~streamstate.errors.BackendUnavailable`, a fork onto an
existing thread :class:`~streamstate.errors.ConflictError`.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import enum
import math
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import valkey
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from streamstate.adapters._saver_core import SaverCore, Thread
from streamstate.connection import SyncClient, client_from_url
from streamstate.errors import (
    CodecError,
    ConfigError,
    ConflictError,
    NotFound,
    StreamstateError,
    ThreadDamaged,
)
from streamstate.eventlog._drive import complete
from streamstate.eventlog.codec import Codec
from streamstate.eventlog.events import (
    BlobsPut,
    CheckpointPut,
    ItemDeleted,
    ItemPut,
    LogEntry,
    WritesPut,
)
from streamstate.eventlog.keys import Keyspace, SessionName, parse_session_tag
from streamstate.eventlog.ops import Projection
from streamstate.eventlog.valkey import RetryPolicy, ValkeyEventLog
from streamstate.eventlog.valkey._core import (
    Command,
    ScriptCall,
    plan_last_id,
    read_last_id,
    value_count,
)
from streamstate.eventlog.valkey.scripts import LuaScript
from streamstate.fold import (
    HistoryEntry,
    ThreadFold,
    node_of,
    session_label,
    session_of,
    thread_of,
)
from streamstate.projections import checkpoints as thread_views
from streamstate.projections.checkpoints import (
    cp_field,
)

__all__ = [
    "ChainReport",
    "Difference",
    "HistoryEntry",
    "MigrationReport",
    "RebuildResult",
    "SessionStats",
    "Stats",
    "ThreadFold",
    "ValkeyAudit",
    "VerifyReport",
    "connect",
    "describe_entry",
    "describe_tuple",
    "fork",
    "history",
    "jsonable",
    "migrate",
    "rebuild",
    "replay",
    "session_label",
    "session_of",
    "show",
    "stats",
    "tail",
    "verify",
    "verify_chain",
]

READ_PAGE = 500
VERIFY_ATTEMPTS = 3
# An operator's tool fails fast on a dead server instead of the savers' 10 s budget.
CLI_RETRY = RetryPolicy(attempts=3, budget=3.0, max_wait=0.5)


# -- results -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RebuildResult:
    """What rebuilding one session did."""

    session: tuple[str, ...]
    entries: int
    """Log entries replayed into the views (0 when skipped)."""
    skipped: str | None = None
    """Why the session was left alone (no known views, a trimmed log), else ``None``."""
    trimmed: bool = False
    """The log was trimmed: rebuilding would have dropped state the views still hold."""
    unreadable: bool = False
    """An entry of the log cannot be decoded (named in ``skipped``): views left as they were."""


@dataclasses.dataclass(frozen=True)
class Difference:
    """One way a live view differs from the view rebuilt from the log."""

    session: tuple[str, ...]
    view: str
    field: str | None
    """The hash field or sorted-set member, ``None`` when the whole key differs."""
    problem: str

    def __str__(self) -> str:
        where = f"{session_label(self.session)} {self.view}"
        if self.field is not None:
            where += f" [{self.field}]"
        return f"{where}: {self.problem}"


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify`."""

    checked: list[tuple[str, ...]]
    differences: list[Difference]
    skipped: list[tuple[str, ...]]

    @property
    def ok(self) -> bool:
        return not self.differences


@dataclasses.dataclass(frozen=True)
class SessionStats:
    """Size of one session: log length and server memory of each of its keys."""

    session: tuple[str, ...]
    events: int
    bytes: int
    keys: dict[str, int]
    """View name (``log``, ``idem``, ``cps``...) -> bytes (``MEMORY USAGE``)."""


@dataclasses.dataclass(frozen=True)
class Stats:
    """The outcome of :func:`stats`."""

    sessions: list[SessionStats]
    memory: dict[str, Any]
    """The server's ``INFO memory`` section."""

    @property
    def events(self) -> int:
        return sum(s.events for s in self.sessions)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.sessions)


# -- JSON-able views ---------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """A JSON-serialisable rendering of a decoded value (messages become dicts)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v) for v in items]
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # pydantic models, LangChain messages among them
        return jsonable(dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "__dict__"):
        return {"$type": type(value).__name__, **jsonable(vars(value))}
    return repr(value)


def describe_tuple(tup: CheckpointTuple) -> dict[str, Any]:
    """A checkpoint tuple as one JSON-able dict (what ``show``/``replay --json`` print)."""
    conf = tup.config["configurable"]
    body = {k: v for k, v in tup.checkpoint.items() if k != "channel_values"}
    parent = (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    out: dict[str, Any] = {"thread_id": conf["thread_id"]}
    if "actor_id" in conf:
        out["actor_id"] = conf["actor_id"]
    out |= {
        "checkpoint_ns": conf.get("checkpoint_ns", ""),
        "checkpoint_id": conf["checkpoint_id"],
        "parent_checkpoint_id": parent,
        "metadata": jsonable(tup.metadata),
        "channel_values": jsonable(tup.checkpoint.get("channel_values", {})),
        "pending_writes": [
            {"task_id": t, "channel": c, "value": jsonable(v)}
            for t, c, v in tup.pending_writes or []
        ],
        "checkpoint": jsonable(body),
    }
    return out


def describe_entry(
    entry: LogEntry,
    serde: SerializerProtocol,
    session: Sequence[str] = (),
    *,
    render: Callable[[Any], Any] = jsonable,
) -> dict[str, Any]:
    """A log entry as one dict (what ``tail --json`` prints per line).

    Args:
        render: Applied to each decoded write value; the default makes it JSON-able,
            ``lambda v: v`` keeps the objects.
    """
    head: dict[str, Any] = {"id": entry.id}
    if session:
        head["session"] = list(session)
    match entry.event:
        case CheckpointPut() as cp:
            meta = serde.loads_typed(cp.metadata) or {}
            return head | {
                "type": "checkpoint",
                "ns": cp.ns,
                "checkpoint_id": cp.checkpoint_id,
                "parent_id": cp.parent_id,
                "step": meta.get("step"),
                "source": meta.get("source"),
                "run_id": cp.run_id,
                "channels": [b.channel for b in cp.blobs],
                "created_at": cp.created_at,
            }
        case WritesPut() as wr:
            return head | {
                "type": "writes",
                "ns": wr.ns,
                "checkpoint_id": wr.checkpoint_id,
                "task_id": wr.task_id,
                "node": node_of(wr.task_path, wr.task_id),
                "writes": [
                    {
                        "idx": w.idx,
                        "channel": w.channel,
                        "value": render(serde.loads_typed(w.value)),
                    }
                    for w in wr.writes
                ],
                "created_at": wr.created_at,
            }
        case BlobsPut() as bl:
            return head | {
                "type": "values",
                "ns": bl.ns,
                "checkpoint_id": bl.checkpoint_id,
                "channels": [b.channel for b in bl.blobs],
            }
        case ItemPut() as ip:
            return head | {
                "type": "item_put",
                "namespace": list(ip.namespace),
                "key": ip.key,
                "bytes": len(ip.value),
                "updated_at": ip.updated_at,
            }
        case ItemDeleted() as idel:
            return head | {
                "type": "item_deleted",
                "namespace": list(idel.namespace),
                "key": idel.key,
                "deleted_at": idel.deleted_at,
            }
    raise AssertionError(f"unknown event {entry.event!r}")  # pragma: no cover


# -- server-side helpers --------------------------------------------------------------------

# KEYS: a session's keys, its log first. Reply: {XLEN, entries ever added (-1: no log),
# MEMORY USAGE of each key (0: missing)}; one round trip per session.
SESSION_INFO = LuaScript(
    "session_info",
    r"""
local out = {0, -1}
if redis.call('EXISTS', KEYS[1]) == 1 then
  out[1] = redis.call('XLEN', KEYS[1])
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'entries-added' then out[2] = info[i + 1] end
  end
end
for i, k in ipairs(KEYS) do out[2 + i] = redis.call('MEMORY', 'USAGE', k) or 0 end
return out
""",
)


def projections_for(session: Sequence[str], codec: Codec) -> list[Projection]:
    """The op-based views a store session keeps; ``[]`` for threads (their views are
    written by the thread scripts) and for kinds this tool does not know."""
    kind = session[0] if session else ""
    if kind == "store" and len(session) == 2:
        from streamstate.projections.items import ItemsProjection

        return [ItemsProjection()]
    return []


# -- the audit handle ----------------------------------------------------------------------


class ValkeyAudit:
    """The audit operations over one Valkey deployment (one client, one key prefix).

    Args:
        client: A ``valkey.Valkey`` client created with ``decode_responses=False``.
        prefix: Key prefix of the deployment (the savers' ``prefix``).
        codec: Codec of stored entries (needed when the savers use a cipher).
        serde: Serializer of channel values (the savers' ``serde``).
        retry: Retry budget for connection errors.
    """

    def __init__(
        self,
        client: SyncClient,
        *,
        prefix: str = "ss",
        codec: Codec | None = None,
        serde: SerializerProtocol | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.client = client
        self.codec = codec or Codec()
        self.serde: SerializerProtocol = serde or JsonPlusSerializer()
        self.retry = retry
        self.log = ValkeyEventLog(client, keyspace=Keyspace(prefix), codec=self.codec, retry=retry)
        self._cores = {
            actors: SaverCore(self.log, self.codec, ttl=None, actors=actors)
            for actors in (False, True)
        }

    @property
    def keyspace(self) -> Keyspace:
        return self.log.keyspace

    @classmethod
    def from_saver(cls, saver: Any) -> ValkeyAudit:
        """An audit handle sharing a sync saver's client, prefix, codec and serde."""
        log = getattr(saver, "log", None)
        if not isinstance(log, ValkeyEventLog):
            raise ConfigError(
                f"{type(saver).__name__} is not a sync Valkey saver; pass a ValkeySaver, "
                "a valkey.Valkey client or a URL"
            )
        return cls(
            log.client,
            prefix=log.keyspace.prefix,
            codec=log.codec,
            serde=saver.serde,
            retry=log.executor.retry,
        )

    # reading threads ---------------------------------------------------------------------

    def _require(self, session: tuple[str, ...]) -> int:
        n = self.log.length(session)
        if n == 0:
            raise NotFound(f"session {session_label(session)} not found (no log entries)")
        return n

    def entries(self, session: SessionName, after: str | None = None) -> Iterator[LogEntry]:
        """Every entry of a session after ``after`` (``None``: from the start), in pages."""
        start = "-" if after is None else "(" + after
        while True:
            page = self.log.read(session, start, None, count=READ_PAGE)
            yield from page
            if len(page) < READ_PAGE:
                return
            start = "(" + page[-1].id

    def fold(self, thread: SessionName, actor_id: str | None = None) -> ThreadFold:
        """The thread's log folded in memory (NotFound for an empty or missing log)."""
        found = thread_of(thread, actor_id)
        self._require(found.session)
        folded = ThreadFold(found)
        for entry in self.entries(found.session):
            folded.apply(entry)
        return folded

    def history(
        self,
        thread: SessionName,
        *,
        actor_id: str | None = None,
        ns: str | None = None,
        limit: int | None = None,
    ) -> list[HistoryEntry]:
        """The thread's checkpoints newest first, from its log (``ns``: one namespace)."""
        rows = self.fold(thread, actor_id).history(self.serde)
        if ns is not None:
            rows = [r for r in rows if r.ns == ns]
        return rows if limit is None else rows[: max(0, limit)]

    def show(
        self,
        thread: SessionName,
        checkpoint_id: str | None = None,
        *,
        actor_id: str | None = None,
        ns: str = "",
    ) -> CheckpointTuple:
        """The live state (the views, as ``get_tuple`` reads them) at a checkpoint."""
        found = thread_of(thread, actor_id)
        core = self._cores[found.actor_id is not None]
        # An empty checkpoint id asks the view for the namespace's newest checkpoint.
        config = found.config(ns, checkpoint_id or "")
        _thread, _ns, call = core.plan_get_tuple(config)
        raw = complete(core.run_repairing(found, call), self.log.run)
        tup = core.read_tuple(found, raw, self.serde)
        if tup is None:
            self._require(found.session)
            raise NotFound(_missing(found, checkpoint_id, ns))
        return tup

    def replay(
        self,
        thread: SessionName,
        checkpoint_id: str | None = None,
        *,
        actor_id: str | None = None,
        ns: str = "",
    ) -> CheckpointTuple:
        """The state at a checkpoint rebuilt from the log alone (no view is read)."""
        folded = self.fold(thread, actor_id)
        cid = folded.resolve(checkpoint_id, ns)
        if cid is None:
            raise NotFound(_missing(folded.thread, checkpoint_id, ns))
        return folded.tuple(ns, cid, self.serde)

    def fork(
        self,
        thread: SessionName,
        checkpoint_id: str | None,
        new_thread: str,
        *,
        actor_id: str | None = None,
        ns: str = "",
    ) -> RunnableConfig:
        """Start ``new_thread`` at a checkpoint of ``thread``; returns the fork's config.

        The fork receives the source log up to that checkpoint, in one atomic append:
        ``get_tuple`` on it returns what :meth:`replay` returns for the source (with the
        new thread id) less the pending writes, and its history keeps the parent links.
        A retried fork is a no-op.

        The pending writes recorded at the checkpoint stay behind, as they do when
        LangGraph forks a checkpoint (``update_state``): they belong to the source's run
        from it, and carried over they would finish the fork's next step with the
        source's results. An interrupt's ``__resume__`` answer most of all: resuming the
        fork would silently reuse the source's human answer. Without them, resuming the
        fork (``invoke(None, config)``, with or without the checkpoint id) runs the next
        step again, and an ``interrupt()`` there interrupts again.

        Raises:
            NotFound: The source thread or the checkpoint does not exist.
            ConflictError: ``new_thread`` already has a log.
        """
        folded = self.fold(thread, actor_id)
        cid = folded.resolve(checkpoint_id, ns)
        if cid is None:
            raise NotFound(_missing(folded.thread, checkpoint_id, ns))
        target = Thread(new_thread, folded.thread.actor_id)
        if target.session == folded.thread.session:
            raise ConflictError("a fork needs a new thread id, not the source's")
        if self.log.length(target.session):
            raise ConflictError(f"thread {session_label(target.session)} already exists")
        core = self._cores[target.actor_id is not None]
        events = [e for e in folded.fork_events(ns, cid) if thread_views.has_views(e)]
        # One append: the fork exists whole or not at all; the guard makes a retry a no-op.
        self.log.run(core.plan_write(target, "append", events, guard=cp_field(ns, cid)))
        return target.config(ns, cid)

    # tailing ------------------------------------------------------------------------------

    def tail(
        self,
        thread: SessionName,
        *,
        actor_id: str | None = None,
        follow: bool = False,
        from_id: str | None = "0-0",
        group: str | None = None,
        consumer: str | None = None,
        block_ms: int = 1000,
        idle_timeout: float | None = None,
    ) -> Iterator[LogEntry]:
        """The session's entries after ``from_id`` (``None``: only new ones), oldest first.

        Without ``follow`` the iterator ends at the current end of the log (and an
        empty session raises NotFound); with it, it waits for new entries (ending after
        ``idle_timeout`` seconds without one, ``None``: never). With ``group``, it reads
        as consumer ``consumer`` (default: the host name) of that consumer group, created
        at ``from_id`` if missing: the consumer's unacknowledged entries come first, and
        an entry is acknowledged once the caller asks for the next one, so a consumer
        killed mid-stream gets every unacknowledged entry again (at least once).
        """
        session = session_of(thread, actor_id)
        if not follow:
            self._require(session)
        if group is not None:
            return self._group_tail(
                session,
                group,
                consumer or socket.gethostname(),
                follow=follow,
                start_id=from_id or "$",
                block_ms=block_ms,
                idle_timeout=idle_timeout,
            )
        if follow:
            return self.log.tail(
                session,
                None if from_id == "$" else from_id,
                block_ms=block_ms,
                idle_timeout=idle_timeout,
                strict=True,
            )
        after = None if from_id in ("0", "0-0") else from_id
        if from_id == "$":
            return iter(())
        return self.entries(session, after)

    def _group_tail(
        self,
        session: tuple[str, ...],
        group: str,
        consumer: str,
        *,
        follow: bool,
        start_id: str,
        block_ms: int,
        idle_timeout: float | None,
    ) -> Iterator[LogEntry]:
        self.log.ensure_group(session, group, start_id)
        max_idle = None if idle_timeout is None else max(1, round(idle_timeout * 1000 / block_ms))
        idle = 0
        done: list[str] = []
        try:
            while max_idle is None or idle < max_idle:
                if done:
                    self.log.ack(session, group, done)
                    done = []
                batch = self.log.group_read(
                    session, group, consumer, block_ms=block_ms if follow else None, strict=True
                )
                if not batch:
                    if not follow:
                        return
                    idle += 1
                    continue
                idle = 0
                for entry in batch:
                    yield entry
                    # The caller asked for more: it is done with this entry.
                    done.append(entry.id)
        finally:
            # Only what the caller finished with; the entry in its hands stays pending.
            # A failed ack here only means redelivery (at least once), and raising
            # while the generator closes would hide why it closed.
            if done:
                with contextlib.suppress(StreamstateError):
                    self.log.ack(session, group, done)

    # projections ----------------------------------------------------------------------------

    def sessions(self) -> list[tuple[str, ...]]:
        """Every registered session: threads (their registry, pruned of expired ones)
        and stores."""
        registry = thread_views.threads_registry(self.keyspace)
        self.log.run(ScriptCall(thread_views.PRUNE_REGISTRY, [registry], []))
        found = set(self.log.sessions())
        members = self.log.run(Command(("ZRANGE", registry, 0, -1)))
        found |= {parse_session_tag(m.decode() if isinstance(m, bytes) else m) for m in members}
        return sorted(found)

    def _thread(self, session: tuple[str, ...]) -> tuple[Thread, SaverCore] | None:
        thread = Thread.from_session(session)
        if thread is None:
            return None
        return thread, self._cores[thread.actor_id is not None]

    def _log_for(self, session: tuple[str, ...]) -> ValkeyEventLog | None:
        """The log with op-based views of a store session (None for other kinds)."""
        projections = projections_for(session, self.codec)
        if not projections:
            return None
        return ValkeyEventLog(
            self.client,
            keyspace=self.keyspace,
            codec=self.codec,
            projections=projections,
            retry=self.retry,
        )

    def _targets(self, sessions: Iterable[SessionName] | None) -> list[tuple[str, ...]]:
        if sessions is None:
            return self.sessions()
        out = [session_of(s) for s in sessions]
        for s in out:
            self._require(s)
        return out

    def _info(self, session: tuple[str, ...]) -> tuple[int, int, list[int]]:
        keys = self._key_names(session)
        reply = self.log.run(ScriptCall(SESSION_INFO, [k for _, k in keys], []))
        return int(reply[0]), int(reply[1]), [int(x) for x in reply[2:]]

    def _lengths(self, session: tuple[str, ...]) -> tuple[int, int]:
        """The log's length and how many entries were ever added to it."""
        log = self.keyspace.session(session).log
        info = self.log.run(Command(("XINFO", "STREAM", log)))
        if isinstance(info, list):
            it = iter(info)
            info = dict(zip(it, it))
        fields = {k.decode() if isinstance(k, bytes) else k: v for k, v in info.items()}
        return int(fields["length"]), int(fields["entries-added"])

    def _view_keys(self, session: tuple[str, ...], keyspace: Keyspace) -> list[str]:
        sk = keyspace.session(session)
        if Thread.from_session(session) is not None:
            return thread_views.thread_keys(sk)[1:]
        return [k for p in projections_for(session, self.codec) for k in p.view_keys(sk)]

    def _key_names(self, session: tuple[str, ...]) -> list[tuple[str, str]]:
        sk = self.keyspace.session(session)
        names = [("log", sk.log)]
        if Thread.from_session(session) is None:
            names.append(("idem", sk.idem))
        names += [(k.rsplit(":", 1)[-1], k) for k in self._view_keys(session, self.keyspace)]
        return names

    def _rebuild_one(self, session: tuple[str, ...], target: Keyspace | None = None) -> int:
        found = self._thread(session)
        if found is not None:
            thread, core = found
            return complete(core.rebuild_flow(thread, target), self.log.run)
        log = self._log_for(session)
        if log is None:
            raise _NoViews(session)
        return log.rebuild(session, target=target)

    def rebuild(
        self,
        sessions: Iterable[SessionName] | None = None,
        *,
        progress: Callable[[RebuildResult], None] | None = None,
    ) -> list[RebuildResult]:
        """Rebuild the live views of each session (default: all registered) from its log.

        ``sessions`` holds thread ids or session tuples. Nothing is removed before its
        replacement is complete: a thread's views are replaced in one atomic step once
        every entry was read and decoded. A session whose log cannot be replayed (an
        undecodable entry, named in the result) or was trimmed (rebuilding would drop
        what only its views still hold) is left exactly as it was and reported; so is a
        session of a kind without known views.
        """
        results = []
        for session in self._targets(sessions):
            length, added = self._lengths(session)
            if added > length:
                reason = f"the log was trimmed ({length} of {added} entries left)"
                result = RebuildResult(session, 0, reason, trimmed=True)
            else:
                try:
                    result = RebuildResult(session, self._rebuild_one(session))
                except _NoViews:
                    result = RebuildResult(session, 0, "no known views for this kind of session")
                except (CodecError, ThreadDamaged) as exc:
                    reason = f"the log cannot be replayed: {exc}"
                    result = RebuildResult(session, 0, reason, unreadable=True)
            results.append(result)
            if progress is not None:
                progress(result)
        return results

    def verify(
        self,
        sessions: Iterable[SessionName] | None = None,
        *,
        progress: Callable[[tuple[str, ...], list[Difference]], None] | None = None,
    ) -> VerifyReport:
        """Rebuild each session's views into a shadow keyspace and compare with the live ones.

        ``sessions`` holds thread ids or session tuples (default: all registered). The
        shadow keyspace is ``<prefix>:verify``: the same hash tags (so the same shard),
        under the prefix (so a user whose ACL allows only the prefix can run it). Its
        keys are deleted afterwards. A session appended to while it is compared is
        compared again, up to three times.
        """
        shadow = Keyspace(f"{self.keyspace.prefix}:verify")
        checked, skipped, differences = [], [], []
        for session in self._targets(sessions):
            if Thread.from_session(session) is None and self._log_for(session) is None:
                skipped.append(session)
                continue
            found = self._verify_one(session, shadow)
            checked.append(session)
            differences += found
            if progress is not None:
                progress(session, found)
        return VerifyReport(checked, differences, skipped)

    def _verify_one(self, session: tuple[str, ...], shadow: Keyspace) -> list[Difference]:
        live_keys = self._view_keys(session, self.keyspace)
        shadow_keys = self._view_keys(session, shadow)
        found: list[Difference] = []
        try:
            for _ in range(VERIFY_ATTEMPTS):
                before = read_last_id(self.log.run(plan_last_id(self.keyspace, session)))
                self._rebuild_one(session, shadow)
                live = self.log.snapshot(live_keys)
                after = read_last_id(self.log.run(plan_last_id(self.keyspace, session)))
                rebuilt = self.log.snapshot(shadow_keys)
                found = [
                    d
                    for lk, sk in zip(live_keys, shadow_keys)
                    for d in diff_view(session, lk.rsplit(":", 1)[-1], live[lk], rebuilt[sk])
                ]
                if before == after:
                    break
        finally:
            self.log.run(Command(("DEL", *shadow_keys)))
        return found

    def verify_chain(self, thread: SessionName, *, actor_id: str | None = None) -> ChainReport:
        """Check a thread's tamper-evident chain: every entry's content against its digest
        (field ``d``) and its chain hash (``h``) against the previous entry's, and the
        newest against the head its views keep. Reports the first entry altered,
        deleted, inserted or reordered. Entries written before the chain existed (by
        release 0.1) are counted, not checked. The chain proves the log was not changed
        by anything that did not also rewrite every later hash and the head; keep a copy
        of the head elsewhere (``ChainReport.head``) to prove more.
        """
        found = thread_of(thread, actor_id)
        session = found.session
        self._require(session)
        keys = self.keyspace.session(session)
        entries: list[tuple[str, dict[bytes, bytes]]] = []
        after = "-"
        while True:
            reply = self.log.run(Command(("XRANGE", keys.log, after, "+", "COUNT", READ_PAGE)))
            for raw_id, raw_fields in reply:
                entry_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
                entries.append((entry_id, _entry_fields(raw_fields)))
            if len(reply) < READ_PAGE:
                break
            after = "(" + entries[-1][0]
        # every chain hash in the log, to tell a reordered entry from a deleted one
        everywhere = {f[b"h"].decode() for _id, f in entries if b"h" in f}
        hashes: dict[str, str] = {}  # h -> the id of the entry holding it
        previous: list[str] = []  # chain hashes so far, oldest first
        unchained = checked = 0
        for entry_id, fields in entries:
            problem = _chain_problem(fields, previous, everywhere)
            if problem == "unchained" and not previous:
                unchained += 1
                continue
            if problem is not None:
                return ChainReport(session, checked, unchained, entry_id, problem, None)
            h = fields[b"h"].decode()
            previous.append(h)
            hashes[h] = entry_id
            checked += 1
        head_raw = self.log.run(Command(("HGET", keys.view("v"), "h")))
        head = head_raw.decode() if isinstance(head_raw, bytes) else head_raw
        newest = previous[-1] if previous else None
        if head != newest:
            where = f"after entry {hashes[newest]}" if newest else "of the log"
            return ChainReport(session, checked, unchained, None, "truncated", head,
                               f"the chain head is not the newest entry's: entries {where} "
                               "were deleted")  # fmt: skip
        return ChainReport(session, checked, unchained, None, None, head)

    def stats(self, sessions: Iterable[SessionName] | None = None) -> Stats:
        """Events and bytes per session, and the server's memory report."""
        rows = []
        for session in self._targets(sessions):
            names = self._key_names(session)
            length, _added, sizes = self._info(session)
            keys = {name: size for (name, _k), size in zip(names, sizes) if size}
            rows.append(SessionStats(session, length, sum(keys.values()), keys))
        memory = self.log.run(Command(("INFO", "memory")))
        return Stats(rows, {str(k): v for k, v in dict(memory).items()})

    def migrate(
        self, *, progress: Callable[[tuple[str, ...], str | None], None] | None = None
    ) -> MigrationReport:
        """Move every thread still in key layout 1 to layout 2, and drop layout 1's keys.

        Layout 1 kept six view keys per thread, a set of every session and set
        registries of runs and actors. Savers already read layout-1 threads (each is
        converted when first touched); this converts all of them at once. A thread is
        rebuilt from its log (the same atomic step as ``rebuild``), which also writes
        layout 2's registries, then taken out of the session set. A thread whose log
        cannot be replayed is left as it was and reported. Re-running it is harmless.
        """
        migrated: list[tuple[str, ...]] = []
        failed: list[tuple[tuple[str, ...], str]] = []
        for session in sorted(self.log.sessions()):
            found = self._thread(session)
            if found is None:
                continue  # a store: its layout did not change
            thread, core = found
            keys = self.keyspace.session(session)
            error: str | None = None
            if self.log.length(session):
                try:
                    complete(core.rebuild_flow(thread), self.log.run)
                except (CodecError, ThreadDamaged) as exc:
                    error = str(exc)
            else:  # expired or deleted: only its registrations are left
                self.log.run(Command(("DEL", *thread_views.legacy_keys(keys))))
            if error is None:
                self.log.run(Command(("SREM", self.keyspace.sessions, keys.tag)))
                migrated.append(session)
            else:
                failed.append((session, error))
            if progress is not None:
                progress(session, error)
        dropped = 0
        if not failed:
            for pattern in ("run", "actors"):
                match = f"{self.keyspace.prefix}:{pattern}:*"
                for key in self.client.scan_iter(match=match, count=1000, _type="set"):
                    dropped += int(self.log.run(Command(("DEL", key))))
        return MigrationReport(migrated, failed, dropped)


@dataclasses.dataclass(frozen=True)
class MigrationReport:
    """The outcome of :func:`migrate`."""

    migrated: list[tuple[str, ...]]
    """Threads moved to the current key layout (or unregistered, when long expired)."""
    failed: list[tuple[tuple[str, ...], str]]
    """Threads left in layout 1, each with the reason (its log cannot be replayed)."""
    registries_dropped: int
    """Layout 1's run and actor registries deleted (only when every thread moved)."""

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclasses.dataclass(frozen=True)
class ChainReport:
    """The outcome of :meth:`ValkeyAudit.verify_chain`."""

    session: tuple[str, ...]
    checked: int
    """Chained entries checked (up to the first problem)."""
    unchained: int
    """Entries before the chain began (written by release 0.1): counted, not checked."""
    entry_id: str | None
    """The first entry found wrong (``None``: none, or the problem is at the end)."""
    problem: str | None
    """``altered``, ``deleted``, ``inserted``, ``reordered``, ``truncated``, or ``None``."""
    head: str | None
    """The newest chain hash, as the thread's views keep it (record it to anchor it)."""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None

    def __str__(self) -> str:
        where = session_label(self.session)
        if self.ok:
            return f"{where}: {self.checked} entries chained, intact (head {self.head})"
        told = {
            "altered": "its content does not match its digest: it was altered",
            "deleted": "it does not follow the entry before it: an entry before it was deleted",
            "inserted": "it (or the entry before it) does not belong to the chain here: an "
            "entry was inserted",
            "reordered": "it follows another entry than the one before it: entries were reordered",
        }
        what = self.detail or told.get(self.problem or "", self.problem or "")
        at = f"entry {self.entry_id}: " if self.entry_id else ""
        return f"{where}: {at}{what}"


def _entry_fields(raw: Any) -> dict[bytes, bytes]:
    if isinstance(raw, dict):
        return {k if isinstance(k, bytes) else str(k).encode(): v for k, v in raw.items()}
    it = iter(raw)
    return {k if isinstance(k, bytes) else str(k).encode(): v for k, v in zip(it, it)}


def _chain_problem(
    fields: dict[bytes, bytes], previous: list[str], everywhere: set[str]
) -> str | None:
    """What is wrong with an entry given the chain before it (``None``: it follows)."""
    if b"h" not in fields or b"d" not in fields:
        return "unchained" if not previous else "inserted"
    values = [fields.get(b"e", b"")]
    values += [fields[str(i).encode()] for i in range(value_count(fields))]
    digest = fields[b"d"].decode()
    if thread_views.content_digest(values) != digest:
        return "altered"
    h = fields[b"h"].decode()
    if h == thread_views.chain_hash(previous[-1] if previous else "", digest):
        return None
    if h in previous:
        return "inserted"  # a copy of an entry already seen
    if len(previous) >= 2 and h == thread_views.chain_hash(previous[-2], digest):
        return "inserted"  # it follows the entry before the one before it
    if any(h == thread_views.chain_hash(p, digest) for p in everywhere | {""}):
        return "reordered"  # it follows an entry that is elsewhere in the log
    return "deleted"


class _NoViews(Exception):
    """The session is of a kind whose views this tool does not know."""


def _missing(thread: Thread, checkpoint_id: str | None, ns: str) -> str:
    where = session_label(thread.session) + (f" (ns {ns!r})" if ns else "")
    if checkpoint_id:
        return f"checkpoint {checkpoint_id} not found in {where}"
    return f"no checkpoint in {where}"


def _show(raw: Any) -> str:
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw).decode("utf-8", "backslashreplace")
    return str(raw)


def diff_view(
    session: tuple[str, ...],
    view: str,
    live: tuple[str, Any],
    rebuilt: tuple[str, Any],
) -> list[Difference]:
    """Every difference between a live view and the same view rebuilt from the log."""
    (live_kind, live_value), (log_kind, log_value) = live, rebuilt
    if live_kind != log_kind:
        return [
            Difference(
                session, view, None, f"the live view is a {live_kind}, the log gives a {log_kind}"
            )
        ]
    if live_kind in ("hash", "zset"):
        a, b = dict(live_value), dict(log_value)
        out = []
        for field in sorted(a.keys() | b.keys()):
            name = _show(field)
            if field not in a:
                out.append(Difference(session, view, name, "missing from the live view"))
            elif field not in b:
                out.append(Difference(session, view, name, "in the live view but not in the log"))
            elif a[field] != b[field]:
                out.append(Difference(session, view, name, "differs from the log"))
        return out
    if live_value != log_value:
        return [Difference(session, view, None, "differs from the log")]
    return []


# -- targets and module functions ------------------------------------------------------------

Target = Any
"""A URL or ``None``, a ``valkey.Valkey``, a sync Valkey saver, or a :class:`ValkeyAudit`."""


@contextlib.contextmanager
def connect(target: Target = None, *, prefix: str = "ss") -> Iterator[ValkeyAudit]:
    """An audit handle for a target; a client this opens is closed on exit.

    Args:
        target: A URL (``None``: ``STREAMSTATE_URL`` or the embedded server), a
            ``valkey.Valkey`` (or ``ValkeyCluster``), a sync Valkey saver, or a
            :class:`ValkeyAudit`.
        prefix: Key prefix, for URL and client targets.
    """
    if isinstance(target, ValkeyAudit):
        yield target
    elif target is None or isinstance(target, str):
        client = client_from_url(target, socket_connect_timeout=5)
        try:
            yield ValkeyAudit(client, prefix=prefix, retry=CLI_RETRY)
        finally:
            client.close()
    elif isinstance(target, (valkey.Valkey, valkey.ValkeyCluster)):
        yield ValkeyAudit(target, prefix=prefix)
    else:
        yield ValkeyAudit.from_saver(target)


def history(
    target: Target,
    thread: SessionName,
    *,
    actor_id: str | None = None,
    ns: str | None = None,
    limit: int | None = None,
) -> list[HistoryEntry]:
    """A thread's checkpoints, newest first, read from its log. See :meth:`ValkeyAudit.history`."""
    with connect(target) as audit:
        return audit.history(thread, actor_id=actor_id, ns=ns, limit=limit)


def show(
    target: Target,
    thread: SessionName,
    checkpoint_id: str | None = None,
    *,
    actor_id: str | None = None,
    ns: str = "",
) -> CheckpointTuple:
    """The live state at a checkpoint (``None``: the newest). See :meth:`ValkeyAudit.show`."""
    with connect(target) as audit:
        return audit.show(thread, checkpoint_id, actor_id=actor_id, ns=ns)


def replay(
    target: Target,
    thread: SessionName,
    checkpoint_id: str | None = None,
    *,
    actor_id: str | None = None,
    ns: str = "",
) -> CheckpointTuple:
    """The state at a checkpoint rebuilt from the log alone. See :meth:`ValkeyAudit.replay`."""
    with connect(target) as audit:
        return audit.replay(thread, checkpoint_id, actor_id=actor_id, ns=ns)


def fork(
    target: Target,
    thread: SessionName,
    checkpoint_id: str | None,
    new_thread: str,
    *,
    actor_id: str | None = None,
    ns: str = "",
) -> RunnableConfig:
    """Start a new thread at a checkpoint; returns its config. See :meth:`ValkeyAudit.fork`."""
    with connect(target) as audit:
        return audit.fork(thread, checkpoint_id, new_thread, actor_id=actor_id, ns=ns)


def tail(
    target: Target,
    thread: SessionName,
    *,
    actor_id: str | None = None,
    follow: bool = False,
    from_id: str | None = "0-0",
    group: str | None = None,
    consumer: str | None = None,
    block_ms: int = 1000,
    idle_timeout: float | None = None,
) -> Iterator[LogEntry]:
    """A session's entries as they happen. See :meth:`ValkeyAudit.tail`.

    The connection stays open while the iterator is in use; close the iterator (or
    exhaust it) to release it.
    """
    with connect(target) as audit:
        yield from audit.tail(
            thread,
            actor_id=actor_id,
            follow=follow,
            from_id=from_id,
            group=group,
            consumer=consumer,
            block_ms=block_ms,
            idle_timeout=idle_timeout,
        )


def rebuild(
    target: Target,
    sessions: Iterable[SessionName] | None = None,
    *,
    progress: Callable[[RebuildResult], None] | None = None,
) -> list[RebuildResult]:
    """Rebuild live views from the logs. See :meth:`ValkeyAudit.rebuild`."""
    with connect(target) as audit:
        return audit.rebuild(sessions, progress=progress)


def verify(
    target: Target,
    sessions: Iterable[SessionName] | None = None,
    *,
    progress: Callable[[tuple[str, ...], list[Difference]], None] | None = None,
) -> VerifyReport:
    """Compare live views with views rebuilt from the logs. See :meth:`ValkeyAudit.verify`."""
    with connect(target) as audit:
        return audit.verify(sessions, progress=progress)


def migrate(target: Target) -> MigrationReport:
    """Move every layout-1 thread to the current key layout. See :meth:`ValkeyAudit.migrate`."""
    with connect(target) as audit:
        return audit.migrate()


def verify_chain(
    target: Target, thread: SessionName, *, actor_id: str | None = None
) -> ChainReport:
    """Check a thread's tamper-evident chain. See :meth:`ValkeyAudit.verify_chain`."""
    with connect(target) as audit:
        return audit.verify_chain(thread, actor_id=actor_id)


def stats(target: Target, sessions: Iterable[SessionName] | None = None) -> Stats:
    """Events and bytes per session and server memory. See :meth:`ValkeyAudit.stats`."""
    with connect(target) as audit:
        return audit.stats(sessions)
