"""Pure translation between LangGraph's checkpointer calls and the thread log.

Builders turn a LangGraph call into an event and a planned script call; readers turn a
script reply into ``CheckpointTuple``s. Multi-step operations (list pages, delta
history, copy, prune, delete-for-runs) are flows: generators that yield planned calls
and receive replies, run by the sync or async driver. No client, no ``await`` here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

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
    Thread,
    canonical,
    checkpoint_event,
    ns_of,
    require_str,
    text,
    thread_of,
    writes_event,
)
from streamstate.errors import CodecError, ConfigError
from streamstate.eventlog._drive import Emit, Flow
from streamstate.eventlog.events import Blob, CheckpointPut, Event, Typed, Write, WritesPut
from streamstate.eventlog.keys import SessionKeys, escape, parse_session_tag, unescape
from streamstate.eventlog.ops import Op, sadd
from streamstate.eventlog.valkey import _core as logcore
from streamstate.eventlog.valkey.log import _LogConfig
from streamstate.projections.checkpoints import (
    DELTA_HISTORY,
    GET_TUPLE,
    LIST_PAGE,
    VIEWS,
    CheckpointView,
    blob_channel,
    cp_field,
    decode_record,
    decode_write,
)

LIST_PAGE_SIZE = 50
LIST_SCAN_BUDGET = 2000
DELTA_MAX_STEPS = 10_000


# -- the saver core ---------------------------------------------------------------


class SaverCore:
    """Everything a saver does that is not I/O. Shared by every Valkey saver class."""

    def __init__(self, log: _LogConfig, view: CheckpointView, *, ttl: float | None, actors: bool):
        if ttl is not None and ttl <= 0:
            raise ConfigError(f"ttl must be a positive number of seconds, got {ttl!r}")
        self.log = log
        self.view = view
        self.ttl = ttl
        self.actors = actors

    @property
    def keyspace(self):
        return self.log.keyspace

    def keys(self, thread: Thread) -> SessionKeys:
        return self.keyspace.session(thread.session)

    def thread(self, config: RunnableConfig) -> Thread:
        return thread_of(config, actors=self.actors)

    def registry_ops(self, thread: Thread, run_id: str | None) -> list[Op]:
        """Registries outside the thread: runs -> threads, and threads -> actors."""
        tag = self.keys(thread).tag
        ops = []
        if run_id:
            ops.append(sadd(self.keyspace.global_key("run", run_id), tag))
        if thread.actor_id is not None:
            ops.append(sadd(self.keyspace.global_key("actors", thread.thread_id), thread.actor_id))
        return ops

    # put ------------------------------------------------------------------------

    def build_put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
        serde: SerializerProtocol,
    ) -> tuple[Thread, CheckpointPut, RunnableConfig]:
        thread = self.thread(config)
        event = checkpoint_event(config, checkpoint, metadata, new_versions, serde)
        return thread, event, thread.config(event.ns, event.checkpoint_id)

    def plan_put(self, thread: Thread, event: CheckpointPut) -> logcore.ScriptCall:
        keys = self.keys(thread)
        return self.log.plan_append(
            thread.session,
            [event],
            guard=(keys.view("cps"), cp_field(event.ns, event.checkpoint_id)),
            extra_ops=self.registry_ops(thread, event.run_id),
            ttl=self.ttl,
        )

    # put_writes -------------------------------------------------------------------

    def build_put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
        serde: SerializerProtocol,
    ) -> tuple[Thread, WritesPut]:
        return self.thread(config), writes_event(config, writes, task_id, task_path, serde)

    def plan_put_writes(self, thread: Thread, event: WritesPut) -> logcore.ScriptCall:
        # A retry after a timeout changes nothing in the views, so it appends nothing.
        return self.log.plan_append(
            thread.session,
            [event],
            skip_if_noop=True,
            extra_ops=self.registry_ops(thread, None),
            ttl=self.ttl,
        )

    # get_tuple ----------------------------------------------------------------------

    def view_keys(self, thread: Thread) -> list[str]:
        """The checkpoint views, then the log the views point into (KEYS[7] of the scripts)."""
        keys = self.keys(thread)
        return [*(keys.view(v) for v in VIEWS), keys.log]

    def plan_get_tuple(self, config: RunnableConfig) -> tuple[Thread, str, logcore.ScriptCall]:
        thread = self.thread(config)
        ns = ns_of(config)
        cid = get_checkpoint_id(config) or ""
        call = logcore.ScriptCall(GET_TUPLE, self.view_keys(thread), [escape(ns), cid])
        return thread, ns, call

    def read_tuple(
        self, thread: Thread, raw: Any, serde: SerializerProtocol
    ) -> CheckpointTuple | None:
        if not raw:
            return None
        field, rec, head, blob_values, write_fields, write_records, write_values = raw
        ens, ecid = text(field).split(":", 1)
        ns, cid = unescape(ens), unescape(ecid)
        _filter, blob_fields, parent, _run = decode_record(rec)
        event = self.head(head, thread, cid)
        checkpoint = serde.loads_typed(event.checkpoint)
        values: dict[str, Any] = {}
        for bf, blob in zip(blob_fields, blob_values):
            if blob:  # missing (None) or empty (b"") channels are left out
                values[blob_channel(bf)] = serde.loads_typed(self.view.codec.decode(blob, Typed))
        checkpoint["channel_values"] = values
        return CheckpointTuple(
            config=thread.config(ns, cid),
            checkpoint=checkpoint,
            metadata=serde.loads_typed(event.metadata),
            parent_config=thread.config(ns, parent) if parent else None,
            pending_writes=self.read_writes(write_fields, write_records, write_values, serde),
        )

    def head(self, raw: Any, thread: Thread, cid: str) -> CheckpointPut:
        """The checkpoint's own log entry (its values live in the entry's other fields)."""
        if not raw:
            raise CodecError(
                f"checkpoint {cid!r} of thread {thread.thread_id!r} points at a log entry "
                "that is gone (was the log trimmed?)"
            )
        event = self.view.codec.decode(raw, Event)
        if not isinstance(event, CheckpointPut):
            raise CodecError(f"checkpoint {cid!r} points at a {type(event).__name__} entry")
        return event

    def raw_writes(
        self, fields: Sequence[Any], records: Sequence[Any], values: Sequence[Any]
    ) -> list[tuple[str, int, str, str, Typed]]:
        """``(task_id, idx, task_path, channel, value)`` in LangGraph's write order."""
        rows = []
        for f, rec, v in zip(fields, records, values):
            if not rec or not v:
                continue
            parts = text(f).split(":")
            task_id, idx = unescape(parts[2]), int(parts[3])
            task_path, channel = decode_write(rec)
            rows.append((task_id, idx, task_path, channel, self.view.codec.decode(v, Typed)))
        rows.sort(key=lambda r: writes_sort_key(r[2], r[0], r[1]))
        return rows

    def read_writes(
        self,
        fields: Sequence[Any],
        records: Sequence[Any],
        values: Sequence[Any],
        serde: SerializerProtocol,
    ) -> list[PendingWrite]:
        return [
            (task_id, channel, serde.loads_typed(value))
            for task_id, _idx, _path, channel, value in self.raw_writes(fields, records, values)
        ]

    # list -----------------------------------------------------------------------------

    def list_flow(
        self,
        config: RunnableConfig | None,
        filter: Mapping[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
        serde: SerializerProtocol,
    ) -> Flow[None]:
        """Checkpoints newest first, one script call per page (of one thread)."""
        if limit is not None and limit <= 0:
            return
        filter_args: list[str] = []
        for k, v in (filter or {}).items():
            filter_args += [k, canonical(v, serde)]
        before_id = get_checkpoint_id(before) if before else None
        if config is not None:
            threads: Iterable[Thread] = [self.thread(config)]
            configurable = config.get("configurable") or {}
            ns = configurable.get("checkpoint_ns")
            exact = configurable.get("checkpoint_id") or ""
        else:
            threads = yield from self.all_threads()
            ns, exact = None, ""
        if exact and ns is None:
            ns = ""
        remaining = limit
        for thread in threads:
            cursor = ""
            while True:
                page = LIST_PAGE_SIZE if remaining is None else min(remaining, LIST_PAGE_SIZE)
                args = [
                    escape(ns) if ns is not None else "",
                    "1" if ns is not None else "0",
                    before_id or "",
                    exact,
                    page,
                    LIST_SCAN_BUDGET,
                    cursor,
                    *filter_args,
                ]
                reply = yield logcore.ScriptCall(LIST_PAGE, self.view_keys(thread), args)
                cursor, raws = text(reply[0]), reply[1]
                tuples = [self.read_tuple(thread, raw, serde) for raw in raws]
                if tuples:
                    yield Emit(tuples)
                if remaining is not None:
                    remaining -= len(tuples)
                    if remaining <= 0:
                        return
                if not cursor:
                    break

    def all_threads(self) -> Flow[list[Thread]]:
        threads = []
        cursor = 0
        while True:
            reply = yield logcore.plan_sessions_page(self.keyspace, cursor)
            cursor, tags = logcore.read_sessions_page(reply)
            for tag in tags:
                thread = Thread.from_session(parse_session_tag(tag))
                if thread is not None and (thread.actor_id is not None) == self.actors:
                    threads.append(thread)
            if cursor == 0:
                return threads

    # delete -----------------------------------------------------------------------------

    def delete_flow(self, thread_id: str, actor_id: str | None = None) -> Flow[None]:
        """One delete script per thread (per actor's session for AgentCore threads)."""
        require_str(thread_id, "thread_id")
        if not self.actors:
            threads = [Thread(thread_id)]
        elif actor_id is not None:
            threads = [Thread(thread_id, require_str(actor_id, "actor_id"))]
        else:
            reply = yield logcore.Command(
                ("SMEMBERS", self.keyspace.global_key("actors", thread_id))
            )
            threads = [Thread(thread_id, text(a)) for a in sorted(reply)]
        for thread in threads:
            yield self.log.plan_delete(thread.session)

    # delta history ------------------------------------------------------------------

    def delta_flow(
        self, config: RunnableConfig, channels: Sequence[str], serde: SerializerProtocol
    ) -> Flow[dict[str, DeltaChannelHistory]]:
        if not channels:
            return {}
        thread = self.thread(config)
        ns = ns_of(config)
        cid = get_checkpoint_id(config)
        if not cid:
            tup_raw = yield logcore.ScriptCall(GET_TUPLE, self.view_keys(thread), [escape(ns), ""])
            if not tup_raw:
                return {ch: {"writes": []} for ch in channels}
            cid = unescape(text(tup_raw[0]).split(":", 1)[1])
        args = [escape(ns), cid, DELTA_MAX_STEPS, *(escape(c) for c in channels)]
        _found, steps, seeds = yield logcore.ScriptCall(DELTA_HISTORY, self.view_keys(thread), args)
        seed_values: dict[str, Any] = {}
        seed_step: dict[str, int] = {}
        it = iter(seeds)
        for ech, blob, step in zip(it, it, it):
            ch = unescape(text(ech))
            seed_values[ch] = serde.loads_typed(self.view.codec.decode(blob, Typed))
            seed_step[ch] = int(step)
        collected: dict[str, list[PendingWrite]] = {c: [] for c in channels}
        # steps are ancestors newest first; a channel collects writes up to and including
        # the ancestor holding its seed, and the result runs oldest first
        for step_no in range(len(steps), 0, -1):
            _cid, wf, wr, wv = steps[step_no - 1]
            for w in self.read_writes(wf, wr, wv, serde):
                if w[1] in collected and step_no <= seed_step.get(w[1], len(steps)):
                    collected[w[1]].append(w)
        result: dict[str, DeltaChannelHistory] = {}
        for ch in channels:
            entry: DeltaChannelHistory = {"writes": collected[ch]}
            if ch in seed_values:
                entry["seed"] = seed_values[ch]
            result[ch] = entry
        return result

    # copy, prune, delete_for_runs -------------------------------------------------------

    def copy_flow(self, source: Thread, target: Thread, page: int = 200) -> Flow[int]:
        """Replay the source thread's log into the target thread, page by page."""
        after = "-"
        copied = 0
        while True:
            reply = yield logcore.plan_read(self.keyspace, source.session, after, None, count=page)
            entries = logcore.read_entries(reply, self.log.codec, source.session, strict=True)
            if not entries:
                return copied
            events = [e.event for e in entries]
            extra = [
                op
                for ev in events
                if isinstance(ev, CheckpointPut)
                for op in self.registry_ops(target, ev.run_id)
            ]
            yield self.log.plan_append(
                target.session,
                events,
                extra_ops=extra or self.registry_ops(target, None),
                ttl=self.ttl,
            )
            copied += len(entries)
            after = "(" + entries[-1].id

    def copy_threads_flow(self, source_thread_id: str, target_thread_id: str) -> Flow[None]:
        """Copy every session of the source thread (each actor's, for AgentCore threads)."""
        require_str(target_thread_id, "target_thread_id")
        for source in (yield from self.threads_named(source_thread_id)):
            target = Thread(target_thread_id, source.actor_id)
            yield from self.copy_flow(source, target)

    def read_all_raw(self, thread: Thread) -> Flow[list[Any]]:
        """Every checkpoint of a thread as raw view rows, oldest first."""
        rows: list[Any] = []
        cursor = ""
        while True:
            args = ["", "0", "", "", 500, 100_000, cursor]
            reply = yield logcore.ScriptCall(LIST_PAGE, self.view_keys(thread), args)
            cursor = text(reply[0])
            rows.extend(reply[1])
            if not cursor:
                break
        rows.sort(key=lambda r: tuple(reversed(text(r[0]).split(":", 1))))
        return rows

    def compact_flow(self, thread: Thread, keep: Any, attempts: int = 5) -> Flow[None]:
        """Rewrite a thread's log to hold only the checkpoints ``keep(ns, cid, run)`` accepts.

        Each kept checkpoint is re-emitted self-contained (the blobs it needs that no
        earlier kept checkpoint carries) with its writes; the swap is atomic and only
        happens if no append landed since the read, else it is retried.
        """
        from streamstate.errors import ConflictError

        for _ in range(attempts):
            last = logcore.read_last_id((yield logcore.plan_last_id(self.keyspace, thread.session)))
            if last == "0-0":
                return
            rows = yield from self.read_all_raw(thread)
            events = self.compacted_events(rows, keep)
            if not events:
                yield self.log.plan_delete(thread.session)
                return
            runs = {ev.run_id for ev in events if isinstance(ev, CheckpointPut) and ev.run_id}
            extra = [op for run in sorted(runs) for op in self.registry_ops(thread, run)]
            call = self.log.plan_replace(
                thread.session, events, expected_last_id=last, extra_ops=extra, ttl=self.ttl
            )
            if logcore.read_replace((yield call)) is not None:
                return
        raise ConflictError(f"thread {thread.thread_id!r} kept changing while it was compacted")

    def compacted_events(self, rows: Sequence[Any], keep: Any) -> list[Any]:
        events: list[Any] = []
        emitted: set[str] = set()
        codec = self.view.codec
        for field, rec, head, blob_values, wf, wr, wv in rows:
            ens, ecid = text(field).split(":", 1)
            ns, cid = unescape(ens), unescape(ecid)
            filter_, blob_fields, parent, run = decode_record(rec)
            if not keep(ns, cid, run):
                continue
            stored = self.head(head, Thread("?"), cid)
            cp_typed, meta_typed = stored.checkpoint, stored.metadata
            versions = [_parse_blob_field(bf) for bf in blob_fields]
            blobs = []
            for bf, (ch, ver), value in zip(blob_fields, versions, blob_values):
                if bf in emitted or value is None:
                    continue
                emitted.add(bf)
                typed = codec.decode(value, Typed) if value else ("empty", b"")
                blobs.append(Blob(ch, ver, typed))
            events.append(
                CheckpointPut(
                    ns=ns,
                    checkpoint_id=cid,
                    parent_id=parent or None,
                    checkpoint=cp_typed,
                    metadata=meta_typed,
                    blobs=blobs,
                    filter=filter_,
                    run_id=run or None,
                    created_at=time.time(),
                    versions=versions,
                )
            )
            by_task: dict[str, tuple[str, list[Write]]] = {}
            for task_id, idx, task_path, channel, value in self.raw_writes(wf, wr, wv):
                by_task.setdefault(task_id, (task_path, []))[1].append(Write(idx, channel, value))
            for task_id, (task_path, writes) in by_task.items():
                events.append(WritesPut(ns, cid, task_id, task_path, writes, time.time()))
        return events

    def threads_named(self, thread_id: str) -> Flow[list[Thread]]:
        require_str(thread_id, "thread_id")
        if not self.actors:
            return [Thread(thread_id)]
        reply = yield logcore.Command(("SMEMBERS", self.keyspace.global_key("actors", thread_id)))
        return [Thread(thread_id, text(a)) for a in sorted(reply)]

    def prune_flow(self, thread_ids: Sequence[str], strategy: str) -> Flow[None]:
        if strategy not in ("keep_latest", "delete"):
            raise ConfigError(f"prune strategy must be 'keep_latest' or 'delete', got {strategy!r}")
        for thread_id in thread_ids:
            for thread in (yield from self.threads_named(thread_id)):
                if strategy == "delete":
                    yield self.log.plan_delete(thread.session)
                    continue
                latest_raw = yield logcore.Command(("HGETALL", self.keys(thread).view("latest")))
                latest = {unescape(text(k)): text(v) for k, v in latest_raw.items()}
                yield from self.compact_flow(
                    thread, lambda ns, cid, _run, latest=latest: latest.get(ns) == cid
                )

    def delete_for_runs_flow(self, run_ids: Sequence[str]) -> Flow[None]:
        runs = [r for r in run_ids if isinstance(r, str) and r]
        if not runs:
            return
        registry = [self.keyspace.global_key("run", r) for r in runs]
        tags: set[Any] = set()
        for key in registry:  # one key per command: run registries live on different slots
            tags |= set((yield logcore.Command(("SMEMBERS", key))))
        doomed = set(runs)
        for tag in sorted(text(t) for t in tags):
            thread = Thread.from_session(parse_session_tag(tag))
            if thread is None:
                continue
            yield from self.compact_flow(thread, lambda _ns, _cid, run: run not in doomed)
        for key in registry:
            yield logcore.Command(("DEL", key))


def _parse_blob_field(field: str) -> tuple[str, str | int | float]:
    _ns, ech, token = field.split(":")
    kind, rest = token[0], token[1:]
    version: str | int | float
    if kind == "s":
        version = unescape(rest)
    elif kind == "i":
        version = int(rest)
    else:
        version = float(unescape(rest))
    return unescape(ech), version
