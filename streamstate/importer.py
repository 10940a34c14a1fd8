"""Import LangGraph checkpoints from other checkpointers into streamstate.

Two kinds of source:

* ``ValkeyLayoutSource``: the data langgraph-checkpoint-aws's ``ValkeySaver``
  (``checkpoint:{thread}:ns:id``, ``writes:{thread}:ns:id``, ``thread:{thread}:ns``) and
  ``AgentCoreValkeySaver`` (``agentcore:checkpoint:<session>:<actor>:ns:id``,
  ``agentcore:writes:...``) leave on a Valkey server, read directly with valkey-py (the
  package itself is not needed). Threads are found with ``SCAN``: an import is a
  one-off batch job, not a hot path.
* ``SaverSource``: any LangGraph ``BaseCheckpointSaver`` (``PostgresSaver``,
  ``SqliteSaver``, ``InMemorySaver``...), through its public API: ``list(None)`` for the
  threads, then ``list`` per thread and ``get_tuple`` per checkpoint for its writes.

Every checkpoint is written with the target saver's public ``put`` (same id, parent,
metadata, channel versions and values; ``new_versions`` holds the channel versions no
earlier checkpoint of the namespace carried, so each blob is stored once) and its
pending writes with ``put_writes`` (one call per task; ``task_path`` where the source
keeps it). streamstate's ``put`` is idempotent per checkpoint id and ``put_writes`` per
call content, so running an import again appends nothing, and an import that died
half-way is resumed by running it again.

Checkpoints of a namespace are imported oldest first (by id: LangGraph ids are uuid6,
ordered by creation), so a parent is always imported before its children.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import WRITES_IDX_MAP, BaseCheckpointSaver, CheckpointTuple
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from streamstate.errors import ConfigError, StreamstateError

__all__ = [
    "ImportMismatch",
    "ImportReport",
    "Record",
    "SaverSource",
    "Source",
    "ThreadRef",
    "ValkeyLayoutSource",
    "import_checkpoints",
    "open_source",
]


class ImportMismatch(StreamstateError):
    """``verify`` found an imported checkpoint that differs from the source's."""


@dataclass(frozen=True, order=True)
class ThreadRef:
    """A source thread: its id, and its AgentCore actor when the source has actors."""

    thread_id: str
    actor_id: str | None = None


@dataclass
class Record:
    """One source checkpoint with everything the import writes."""

    thread: ThreadRef
    ns: str
    checkpoint: dict[str, Any]
    metadata: dict[str, Any]
    parent_id: str | None
    writes: list[tuple[str, str, Any, str]] = field(default_factory=list)
    """``(task_id, channel, value, task_path)`` in the source's order."""

    @property
    def checkpoint_id(self) -> str:
        return str(self.checkpoint["id"])

    def config(self, checkpoint_id: str | None) -> RunnableConfig:
        configurable: dict[str, Any] = {
            "thread_id": self.thread.thread_id,
            "checkpoint_ns": self.ns,
            "checkpoint_id": checkpoint_id,
        }
        if self.thread.actor_id is not None:
            configurable["actor_id"] = self.thread.actor_id
        return {"configurable": configurable}

    def as_tuple(self) -> CheckpointTuple:
        return CheckpointTuple(
            config=self.config(self.checkpoint_id),
            checkpoint=self.checkpoint,  # type: ignore[arg-type]
            metadata=self.metadata,  # type: ignore[arg-type]
            parent_config=self.config(self.parent_id) if self.parent_id else None,
            pending_writes=[(t, c, v) for t, c, v, _ in self.writes],
        )


class Source:
    """What an import reads: the threads, then each thread's checkpoints."""

    def threads(self) -> list[ThreadRef]:
        raise NotImplementedError

    def records(self, thread: ThreadRef) -> list[Record]:
        """Every checkpoint of ``thread`` (all namespaces), with its pending writes."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source opened."""


# -- langgraph-checkpoint-aws data on Valkey ---------------------------------------------------


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def _b64(value: Any) -> bytes:
    return base64.b64decode(value) if isinstance(value, str) else bytes(value)


class ValkeyLayoutSource(Source):
    """langgraph-checkpoint-aws's Valkey savers' keys, read with valkey-py.

    Args:
        client: A ``valkey.Valkey`` client on the source server and database.
        serde: The serializer the source saver used (LangGraph's default).
        layouts: ``"valkey"`` (``ValkeySaver``), ``"agentcore"``
            (``AgentCoreValkeySaver``), or both (the default).
    """

    def __init__(
        self,
        client: Any,
        *,
        serde: SerializerProtocol | None = None,
        layouts: Sequence[str] = ("valkey", "agentcore"),
    ) -> None:
        unknown = set(layouts) - {"valkey", "agentcore"}
        if unknown:
            raise ConfigError(f"unknown source layouts {sorted(unknown)}: use valkey, agentcore")
        self.client = client
        self.serde = serde or JsonPlusSerializer()
        self.layouts = tuple(layouts)
        self._agentcore: dict[ThreadRef, list[dict[str, Any]]] | None = None

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> ValkeyLayoutSource:
        import valkey

        return cls(valkey.Valkey.from_url(url), **kwargs)

    def close(self) -> None:
        self.client.close()

    # ValkeySaver: thread:{tid}:ns lists ids newest first --------------------------------------

    def _valkey_threads(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for raw in self.client.scan_iter(match="thread:{*}:*", count=1000):
            key = _text(raw)
            close = key.rfind("}:")
            if close < 0:
                continue
            found.setdefault(key[len("thread:{") : close], []).append(key[close + 2 :])
        return found

    def _valkey_records(self, thread: ThreadRef, namespaces: list[str]) -> list[Record]:
        out: list[Record] = []
        tid = thread.thread_id
        for ns in namespaces:
            listed = self.client.lrange(f"thread:{{{tid}}}:{ns}", 0, -1)
            ids = list(dict.fromkeys(_text(i) for i in listed))
            pipe = self.client.pipeline(transaction=False)
            for cid in ids:
                pipe.get(f"checkpoint:{{{tid}}}:{ns}:{cid}")
                pipe.get(f"writes:{{{tid}}}:{ns}:{cid}")
            replies = pipe.execute()
            for i in range(len(ids)):
                data, writes = replies[2 * i], replies[2 * i + 1]
                if not data:
                    continue  # expired by the source's TTL
                info = json.loads(data)
                checkpoint = self.serde.loads_typed((info["type"], _b64(info["checkpoint"])))
                meta_raw = _b64(info["metadata"]) if info.get("metadata") else b""
                rows = sorted(json.loads(writes) if writes else [], key=lambda w: w.get("idx", 0))
                out.append(
                    Record(
                        thread,
                        ns,
                        checkpoint,
                        json.loads(meta_raw) if meta_raw else {},
                        info.get("parent_checkpoint_id") or None,
                        [
                            (
                                w["task_id"],
                                w["channel"],
                                self.serde.loads_typed((w["type"], _b64(w["value"]))),
                                w.get("task_path", ""),
                            )
                            for w in rows
                        ],
                    )
                )
        return out

    # AgentCoreValkeySaver: one JSON document per checkpoint --------------------------------

    def _agentcore_index(self) -> dict[ThreadRef, list[dict[str, Any]]]:
        if self._agentcore is None:
            index: dict[ThreadRef, list[dict[str, Any]]] = {}
            for raw in self.client.scan_iter(match="agentcore:checkpoint:*", count=1000):
                data = self.client.get(raw)
                if not data:
                    continue
                doc = json.loads(data)
                ref = ThreadRef(str(doc["thread_id"]), str(doc["actor_id"]))
                index.setdefault(ref, []).append(doc)
            self._agentcore = index
        return self._agentcore

    def _value(self, doc: Mapping[str, Any]) -> Any:
        return self.serde.loads_typed((doc["type"], base64.b64decode(doc["data"])))

    def _agentcore_records(self, thread: ThreadRef) -> list[Record]:
        out: list[Record] = []
        for doc in self._agentcore_index().get(thread, []):
            ns = doc.get("checkpoint_ns", "")
            key = f"agentcore:writes:{doc['session_id']}:{doc['actor_id']}:{ns}"
            writes = [
                json.loads(w) for w in self.client.lrange(f"{key}:{doc['checkpoint_id']}", 0, -1)
            ]
            out.append(
                Record(
                    thread,
                    ns,
                    self._value(doc["checkpoint_data"]),
                    self._value(doc["metadata"]) if doc.get("metadata") else {},
                    doc.get("parent_checkpoint_id") or None,
                    [
                        (
                            w["task_id"],
                            w["channel"],
                            self._value(w["value"]),
                            w.get("task_path", ""),
                        )
                        for w in writes
                    ],
                )
            )
        return out

    # Source ----------------------------------------------------------------------------------

    def threads(self) -> list[ThreadRef]:
        refs: set[ThreadRef] = set()
        if "valkey" in self.layouts:
            refs.update(ThreadRef(t) for t in self._valkey_threads())
        if "agentcore" in self.layouts:
            refs.update(self._agentcore_index())
        return sorted(refs, key=lambda r: (r.thread_id, r.actor_id or ""))

    def records(self, thread: ThreadRef) -> list[Record]:
        if thread.actor_id is not None:
            return self._agentcore_records(thread)
        namespaces = self._valkey_threads().get(thread.thread_id, [])
        return self._valkey_records(thread, namespaces)


# -- any LangGraph checkpointer, through its public API --------------------------------------


class SaverSource(Source):
    """A LangGraph ``BaseCheckpointSaver`` read through ``list`` and ``get_tuple``."""

    def __init__(self, saver: BaseCheckpointSaver, stack: contextlib.ExitStack | None = None):
        self.saver = saver
        self._stack = stack

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()

    def threads(self) -> list[ThreadRef]:
        refs: set[ThreadRef] = set()
        for tup in self.saver.list(None):
            c = tup.config["configurable"]
            refs.add(ThreadRef(str(c["thread_id"]), c.get("actor_id")))
        return sorted(refs, key=lambda r: (r.thread_id, r.actor_id or ""))

    def records(self, thread: ThreadRef) -> list[Record]:
        configurable: dict[str, Any] = {"thread_id": thread.thread_id}
        if thread.actor_id is not None:
            configurable["actor_id"] = thread.actor_id
        out: list[Record] = []
        # drained first: a saver may hold a lock while its list generator is open
        listed_all = list(self.saver.list({"configurable": configurable}))
        for listed in listed_all:
            # get_tuple, not list, is the API contract for a checkpoint's pending writes
            tup = self.saver.get_tuple(listed.config) or listed
            c = tup.config["configurable"]
            parent = (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id")
            out.append(
                Record(
                    thread,
                    c.get("checkpoint_ns", ""),
                    dict(tup.checkpoint),
                    dict(tup.metadata or {}),
                    parent or None,
                    [(t, ch, v, "") for t, ch, v in tup.pending_writes or []],
                )
            )
        return out


def load_factory(spec: str) -> Any:
    """``module:attr`` (``attr`` may be dotted) called with no arguments."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"a saver factory is module:callable, got {spec!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} for {spec!r}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj() if callable(obj) else obj


def open_source(spec: str, *, layouts: Sequence[str] = ("valkey", "agentcore")) -> Source:
    """A source from a Valkey URL (langgraph-checkpoint-aws data) or ``module:factory``.

    The factory may return a saver or a context manager that yields one
    (``SqliteSaver.from_conn_string``); the source closes it.
    """
    if "://" in spec:
        return ValkeyLayoutSource.from_url(spec, layouts=layouts)
    made = load_factory(spec)
    stack = contextlib.ExitStack()
    if not isinstance(made, BaseCheckpointSaver) and hasattr(made, "__enter__"):
        made = stack.enter_context(made)
    if not isinstance(made, BaseCheckpointSaver):
        stack.close()
        raise ConfigError(f"{spec!r} made {type(made).__name__}, not a BaseCheckpointSaver")
    return SaverSource(made, stack)


# -- the import -----------------------------------------------------------------------------------


@dataclass
class ImportReport:
    """What an import went through (a re-run reports the same counts and appends nothing)."""

    threads: int = 0
    namespaces: int = 0
    checkpoints: int = 0
    writes: int = 0
    verified: int = 0
    dry_run: bool = False
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _ordered(records: Iterable[Record]) -> list[Record]:
    """Oldest first per namespace, parents before children even if ids disagree."""
    by_key = {(r.ns, r.checkpoint_id): r for r in records}
    ordered: list[Record] = []
    done: set[tuple[str, str]] = set()

    def visit(rec: Record, path: set[tuple[str, str]]) -> None:
        key = (rec.ns, rec.checkpoint_id)
        if key in done or key in path:
            return
        parent = by_key.get((rec.ns, rec.parent_id)) if rec.parent_id else None
        if parent is not None:
            visit(parent, path | {key})
        done.add(key)
        ordered.append(rec)

    for rec in sorted(by_key.values(), key=lambda r: (r.ns, r.checkpoint_id)):
        visit(rec, set())
    return ordered


def _write_calls(
    writes: Sequence[tuple[str, str, Any, str]],
) -> list[tuple[str, str, list[tuple[str, Any]]]]:
    """One ``put_writes`` per task for its regular writes (their positions are their
    idx), one per special write (its idx comes from its channel)."""
    calls: dict[tuple[str, str], list[tuple[str, Any]]] = {}
    special: list[tuple[str, str, list[tuple[str, Any]]]] = []
    for task_id, channel, value, task_path in writes:
        if channel in WRITES_IDX_MAP:
            special.append((task_id, task_path, [(channel, value)]))
        else:
            calls.setdefault((task_id, task_path), []).append((channel, value))
    return [(t, p, w) for (t, p), w in calls.items()] + special


def _target_for(record: Record, target: BaseCheckpointSaver, actor_target: Any) -> Any:
    if record.thread.actor_id is None:
        return target
    if actor_target is None:
        raise ConfigError(
            f"thread {record.thread.thread_id!r} has actor {record.thread.actor_id!r}: pass an "
            "AgentCoreValkeySaver as actor_target"
        )
    return actor_target


def _fingerprint(serde: SerializerProtocol, value: Any) -> bytes:
    return hashlib.sha256(repr(serde.dumps_typed(value)).encode()).digest()


def _comparable(tup: CheckpointTuple, serde: SerializerProtocol) -> dict[str, Any]:
    cp = dict(tup.checkpoint)
    values: dict[str, Any] = cp.pop("channel_values", {}) or {}  # type: ignore[assignment]
    return {
        "checkpoint": {k: v for k, v in cp.items() if k != "pending_sends"},
        "values": {k: _fingerprint(serde, v) for k, v in values.items()},
        "metadata": _fingerprint(serde, dict(tup.metadata or {})),
        "parent": (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id"),
        "writes": sorted((t, c, _fingerprint(serde, v)) for t, c, v in tup.pending_writes or []),
    }


def import_checkpoints(
    source: Source,
    target: BaseCheckpointSaver,
    *,
    actor_target: BaseCheckpointSaver | None = None,
    dry_run: bool = False,
    verify: bool = False,
    threads: Sequence[str] | None = None,
    on_thread: Callable[[int], None] | None = None,
    on_checkpoint: Callable[[Record], None] | None = None,
) -> ImportReport:
    """Copy every thread of ``source`` into ``target`` (idempotent, resumable).

    Args:
        source: Where to read (:func:`open_source`).
        target: A streamstate ``ValkeySaver`` for threads without an actor.
        actor_target: An ``AgentCoreValkeySaver`` for threads with one.
        dry_run: Count only; write nothing.
        verify: After writing a thread, compare every imported ``get_tuple`` with the
            source's checkpoint (values, versions, metadata, parent, writes).
        threads: Only these thread ids.
        on_thread: Called once with the number of threads, before the first.
        on_checkpoint: Called after each checkpoint is written (progress).

    Returns:
        The counts, and with ``verify`` the checkpoints that differ.

    Raises:
        ConfigError: A thread with an actor and no ``actor_target``.
    """
    report = ImportReport(dry_run=dry_run)
    refs = source.threads()
    if threads is not None:
        wanted = set(threads)
        refs = [r for r in refs if r.thread_id in wanted]
    if on_thread is not None:
        on_thread(len(refs))
    for ref in refs:
        records = _ordered(source.records(ref))
        report.threads += 1
        report.namespaces += len({r.ns for r in records})
        stored: dict[str, set[tuple[str, Any]]] = {}
        for rec in records:
            report.checkpoints += 1
            report.writes += len(rec.writes)
            if dry_run:
                if on_checkpoint is not None:
                    on_checkpoint(rec)
                continue
            saver = _target_for(rec, target, actor_target)
            seen = stored.setdefault(rec.ns, set())
            versions = dict(rec.checkpoint.get("channel_versions") or {})
            new_versions = {ch: v for ch, v in versions.items() if (ch, v) not in seen}
            seen.update(versions.items())
            saver.put(rec.config(rec.parent_id), rec.checkpoint, rec.metadata, new_versions)  # type: ignore[arg-type]
            for task_id, task_path, writes in _write_calls(rec.writes):
                saver.put_writes(rec.config(rec.checkpoint_id), writes, task_id, task_path)
            if on_checkpoint is not None:
                on_checkpoint(rec)
        if verify and not dry_run:
            for rec in records:
                saver = _target_for(rec, target, actor_target)
                got = saver.get_tuple(rec.config(rec.checkpoint_id))
                report.verified += 1
                if got is None:
                    report.mismatches.append(f"{_label(rec)}: missing")
                elif _comparable(got, saver.serde) != _comparable(rec.as_tuple(), saver.serde):
                    report.mismatches.append(f"{_label(rec)}: differs")
    return report


def _label(rec: Record) -> str:
    actor = f"{rec.thread.actor_id}/" if rec.thread.actor_id else ""
    return f"{actor}{rec.thread.thread_id} ns={rec.ns!r} checkpoint {rec.checkpoint_id}"
