"""A thread's log folded in memory: the checkpoints, pending writes and history that its
entries alone say, with no Valkey I/O.

:class:`ThreadFold` is what ``replay`` runs on the entries ``streamstate.audit`` reads,
and what ``fork`` copies from; the rules are stated here apart from the views' Lua, so a
replay compared with ``get_tuple`` checks the views. :func:`own_writes` says which
pending writes made a checkpoint (``history``'s writes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from langgraph.checkpoint.base import CheckpointTuple, writes_sort_key
from langgraph.checkpoint.serde.base import SerializerProtocol

from streamstate.adapters._checkpoints import Thread
from streamstate.errors import ConfigError
from streamstate.eventlog.events import (
    BlobsPut,
    CheckpointPut,
    Event,
    ItemDeleted,
    ItemPut,
    LogEntry,
    Typed,
    WritesPut,
)
from streamstate.eventlog.keys import SessionName, session_parts
from streamstate.projections.checkpoints import SPECIAL_CHANNELS, version_token

__all__ = [
    "UPDATE_TASK",
    "HistoryEntry",
    "ThreadFold",
    "node_of",
    "own_writes",
    "session_label",
    "session_of",
    "thread_of",
]


@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    """One checkpoint of a thread, as its log records it."""

    entry_id: str
    """Id of the log entry that saved the checkpoint."""
    ns: str
    checkpoint_id: str
    parent_id: str | None
    step: int | None
    source: str | None
    writes: dict[str, list[str]]
    """Node -> channels it wrote, for the writes that made this checkpoint: the tasks run
    from its parent (a ``loop`` checkpoint), the update alone (``update``, as
    ``"(update)"``), none (``input``, ``fork``). See :func:`own_writes`."""
    created_at: float


UPDATE_TASK = "~__interrupt__"
"""How a task path of ``update_state``'s writes begins (LangGraph runs an update as a task
at path ``(INTERRUPT, i)``)."""


def own_writes(source: str | None, parent_writes: dict[str, list[str]]) -> dict[str, list[str]]:
    """The writes that made a checkpoint of this ``source``, of its parent's pending
    writes (``node -> channels``).

    A ``loop`` checkpoint is made by the tasks run from its parent: the parent's pending
    writes. An ``update`` checkpoint is made by the update alone (LangGraph stores its
    writes on the parent, next to the parent's own pending writes, which did not make it).
    A ``fork`` (a copy) and an ``input`` checkpoint are made by no task's writes.
    """
    if source == "update":
        found: dict[str, list[str]] = {}
        for node, channels in parent_writes.items():
            if node.startswith(UPDATE_TASK):
                found.setdefault("(update)", []).extend(channels)
        return found
    if source in ("fork", "input"):
        return {}
    return dict(parent_writes)


# -- sessions --------------------------------------------------------------------------


def session_of(thread: SessionName, actor_id: str | None = None) -> tuple[str, ...]:
    """The log session a thread id (or raw session tuple) names."""
    if isinstance(thread, str):
        return Thread(thread, actor_id).session
    if actor_id is not None:
        raise ConfigError("actor_id goes with a thread id, not with a session tuple")
    return session_parts(thread)


def thread_of(thread: SessionName, actor_id: str | None = None) -> Thread:
    """The LangGraph thread behind a session; other sessions (stores) raise ConfigError."""
    found = Thread.from_session(session_of(thread, actor_id))
    if found is None:
        raise ConfigError(f"session {session_label(session_of(thread))} is not a thread")
    return found


def session_label(session: Sequence[str]) -> str:
    """A session for people: ``t/thread-1``, ``a/actor/thread-1``, ``store/default``."""
    return "/".join(session)


# -- the in-memory fold ------------------------------------------------------------------


class ThreadFold:
    """A thread's checkpoints rebuilt in memory from its log entries alone.

    The rules are stated here a second time, apart from the views' Lua, so that
    comparing a replay with ``get_tuple`` checks the views instead of repeating them:
    the last put of a checkpoint wins, so does the last value stored for a channel
    version (as in LangGraph's InMemorySaver; versions are unique, so a value is stored
    once), a task's ordinary write is kept first-come while its special writes (error,
    interrupt, resume, scheduled) are replaced, the newest checkpoint of a namespace is
    its greatest id.
    """

    def __init__(self, thread: Thread) -> None:
        self.thread = thread
        self.entries: list[LogEntry] = []
        self.checkpoints: dict[tuple[str, str], tuple[str, CheckpointPut]] = {}
        self.blobs: dict[tuple[str, str, str], Typed] = {}
        self.writes: dict[tuple[str, str], dict[tuple[str, int], tuple[str, str, Typed]]] = {}
        self.latest: dict[str, str] = {}

    def apply(self, entry: LogEntry) -> None:
        """Fold one more entry (entries must come in log order)."""
        self.entries.append(entry)
        match entry.event:
            case CheckpointPut() as cp:
                self.checkpoints[(cp.ns, cp.checkpoint_id)] = (entry.id, cp)
                for b in cp.blobs:
                    self.blobs[(cp.ns, b.channel, version_token(b.version))] = b.value
                if cp.checkpoint_id > self.latest.get(cp.ns, ""):
                    self.latest[cp.ns] = cp.checkpoint_id
            case BlobsPut() as bl:
                for b in bl.blobs:
                    self.blobs[(bl.ns, b.channel, version_token(b.version))] = b.value
            case WritesPut() as wr:
                task = self.writes.setdefault((wr.ns, wr.checkpoint_id), {})
                for w in wr.writes:
                    row = (wr.task_path, w.channel, w.value)
                    if w.channel in SPECIAL_CHANNELS:
                        task[(wr.task_id, w.idx)] = row
                    else:
                        task.setdefault((wr.task_id, w.idx), row)
            case ItemPut() | ItemDeleted():
                pass

    def resolve(self, checkpoint_id: str | None, ns: str = "") -> str | None:
        """The checkpoint id meant (``None``: the namespace's newest), if the log has it."""
        cid = checkpoint_id or self.latest.get(ns)
        return cid if cid is not None and (ns, cid) in self.checkpoints else None

    def tuple(self, ns: str, checkpoint_id: str, serde: SerializerProtocol) -> CheckpointTuple:
        """The checkpoint as ``get_tuple`` returns it, decoded with ``serde``."""
        _entry_id, cp = self.checkpoints[(ns, checkpoint_id)]
        checkpoint = serde.loads_typed(cp.checkpoint)
        values: dict[str, Any] = {}
        for channel, version in cp.versions:
            typed = self.blobs.get((ns, channel, version_token(version)))
            if typed is not None and typed[0] != "empty":
                values[channel] = serde.loads_typed(typed)
        checkpoint["channel_values"] = values
        rows = [
            (writes_sort_key(path, task_id, idx), task_id, channel, typed)
            for (task_id, idx), (path, channel, typed) in self.writes.get(
                (ns, checkpoint_id), {}
            ).items()
        ]
        rows.sort(key=lambda r: r[0])
        return CheckpointTuple(
            config=self.thread.config(ns, checkpoint_id),
            checkpoint=checkpoint,
            metadata=serde.loads_typed(cp.metadata),
            parent_config=self.thread.config(ns, cp.parent_id) if cp.parent_id else None,
            pending_writes=[(t, c, serde.loads_typed(v)) for _, t, c, v in rows],
        )

    def history(self, serde: SerializerProtocol) -> list[HistoryEntry]:
        # (the rule for which of the parent's writes made a checkpoint: own_writes)
        """Every checkpoint, newest first (log order reversed)."""
        out = []
        for entry_id, cp in self.checkpoints.values():
            meta = serde.loads_typed(cp.metadata) or {}
            produced: dict[str, list[str]] = {}
            if cp.parent_id is not None:
                for (task_id, _idx), (path, channel, _v) in sorted(
                    self.writes.get((cp.ns, cp.parent_id), {}).items()
                ):
                    produced.setdefault(node_of(path, task_id), []).append(channel)
            step = meta.get("step")
            out.append(
                HistoryEntry(
                    entry_id=entry_id,
                    ns=cp.ns,
                    checkpoint_id=cp.checkpoint_id,
                    parent_id=cp.parent_id,
                    step=step if isinstance(step, int) else None,
                    source=meta.get("source"),
                    writes=own_writes(meta.get("source"), produced),
                    created_at=cp.created_at,
                )
            )
        out.sort(key=lambda h: _id_key(h.entry_id), reverse=True)
        return out

    def fork_events(self, ns: str, checkpoint_id: str) -> list[Event]:
        """The log up to the checkpoint, without the checkpoint's own pending writes."""
        entry_id, _cp = self.checkpoints[(ns, checkpoint_id)]
        cut = _id_key(entry_id)
        mine = (ns, checkpoint_id)
        return [
            e.event
            for e in self.entries
            if _id_key(e.id) <= cut
            and not (isinstance(e.event, WritesPut) and (e.event.ns, e.event.checkpoint_id) == mine)
        ]


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def node_of(task_path: str, task_id: str) -> str:
    """The node a task ran (LangGraph paths read ``~__pregel_pull, <node>``)."""
    kind, _, rest = task_path.partition(", ")
    if kind == "~__pregel_pull" and rest:
        return rest
    if task_id == "00000000-0000-0000-0000-000000000000":
        return "(input)"
    return task_path or task_id[:8]
