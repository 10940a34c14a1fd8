"""Pure translation between LangGraph's checkpointer calls and the thread log.

Builders turn a LangGraph call into an event and a planned script call; readers turn a
script reply into ``CheckpointTuple``s. Multi-step operations (list pages, delta
history, copy, prune, delete-for-runs) are flows: generators that yield planned calls
and receive replies, run by the sync or async driver. No client, no ``await`` here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
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
    checkpoint_event,
    list_query,
    ns_of,
    require_str,
    text,
    thread_of,
    writes_event,
)
from streamstate.adapters._delta import delta_channels, with_delta_ancestors
from streamstate.errors import BackendError, CodecError, ConfigError, ConflictError, ThreadDamaged
from streamstate.eventlog._drive import Emit, Flow
from streamstate.eventlog.codec import Codec
from streamstate.eventlog.events import Blob, CheckpointPut, Event, Typed, Write, WritesPut
from streamstate.eventlog.keys import Keyspace, SessionKeys, escape, parse_session_tag, unescape
from streamstate.eventlog.valkey import _core as logcore
from streamstate.eventlog.valkey.log import _LogConfig
from streamstate.projections import checkpoints as views
from streamstate.projections.checkpoints import (
    DELTA_HISTORY,
    GET_TUPLE,
    LIST_PAGE,
    PRUNE_REGISTRY,
    SPECIAL_CHANNELS,
    Registry,
    cp_field,
    decode_record,
    decode_writes_record,
    parse_write_field,
    spec_channel,
    split_event,
    thread_keys,
)

LIST_PAGE_SIZE = 50
LIST_SCAN_BUDGET = 2000
DELTA_MAX_STEPS = 10_000


# -- the saver core ---------------------------------------------------------------


class SaverCore:
    """Everything a saver does that is not I/O. Shared by every Valkey saver class."""

    def __init__(
        self,
        log: _LogConfig,
        codec: Codec,
        *,
        ttl: float | None,
        actors: bool,
        refresh_on_read: bool = False,
    ):
        if ttl is not None and ttl <= 0:
            raise ConfigError(f"ttl must be a positive number of seconds, got {ttl!r}")
        self.log = log
        self.codec = codec
        self.ttl = ttl
        self.actors = actors
        self.refresh_on_read = refresh_on_read and ttl is not None
        self.chain = True
        """Each appended entry carries its digest and chain hash; off only to measure
        what the chain costs (``python -m bench chain``)."""
        self.serde: SerializerProtocol | None = None
        """The saver's serializer, to read checkpoint metadata when pruning."""

    @property
    def keyspace(self) -> Keyspace:
        return self.log.keyspace

    def keys(self, thread: Thread) -> SessionKeys:
        return self.keyspace.session(thread.session)

    def thread(self, config: RunnableConfig) -> Thread:
        return thread_of(config, actors=self.actors)

    def registries(self, thread: Thread, run_ids: Iterable[str | None] = ()) -> list[Registry]:
        """The registries that name the thread: every thread, a run's threads, and the
        actors of a thread id (AgentCore threads)."""
        tag = self.keys(thread).tag
        regs = [(views.threads_registry(self.keyspace), tag)]
        for run_id in sorted({r for r in run_ids if r}):
            regs.append((views.run_registry(self.keyspace, run_id), tag))
        if thread.actor_id is not None:
            regs.append((views.actor_registry(self.keyspace, thread.thread_id), thread.actor_id))
        return regs

    def plan_write(
        self, thread: Thread, mode: str, events: Sequence[Event], **kwargs: Any
    ) -> logcore.ScriptCall:
        runs = [e.run_id for e in events if isinstance(e, CheckpointPut)]
        kwargs.setdefault("registries", self.registries(thread, runs))
        kwargs.setdefault("ttl", self.ttl)
        kwargs.setdefault("chain", self.chain)
        call = views.plan_write(
            self.codec, self.keys(thread), mode, events, cluster=self.log.cluster, **kwargs
        )
        logcore.check_payload(call, self.log.max_payload_bytes)
        return call

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
        # a retried put finds its checkpoint's record and appends nothing
        guard = cp_field(event.ns, event.checkpoint_id)
        return self.plan_write(thread, "put", split_event(event), guard=guard)

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
        return self.plan_write(thread, "writes", split_event(event))

    # incomplete threads -------------------------------------------------------------------

    @staticmethod
    def incomplete(reply: Any) -> bool:
        """Whether a script found the thread's keys incomplete (``{-2, n}``): a view or
        the log was evicted or deleted apart, or the thread is still in layout 1."""
        return isinstance(reply, list) and len(reply) == 2 and reply[0] == -2

    def repair_flow(self, thread: Thread) -> Flow[int]:
        """Rebuild an incomplete thread's views from its log, or raise if the log is gone."""
        return self.rebuild_flow(thread)

    def checked(self, thread: Thread, reply: Any) -> Any:
        """The reply of a call retried after a repair: still incomplete is an error."""
        if self.incomplete(reply):
            raise ThreadDamaged(
                f"thread {thread.thread_id!r}: its keys are still incomplete after a repair "
                f"({reply[1]} of 3 exist)"
            )
        return reply

    def rebuild_flow(
        self, thread: Thread, target: Keyspace | None = None, attempts: int = 5
    ) -> Flow[int]:
        """Rebuild the thread's views from its log; returns the entries replayed.

        Every entry is read and decoded before anything is written; the views are then
        replaced in one step that only runs if the log did not move meanwhile. A log
        that cannot be replayed (an undecodable entry, or trimmed) raises and leaves the
        views as they were. With ``target`` the views are built under that keyspace
        (same hash tag) and the live ones are left alone.
        """
        keys = self.keys(thread)
        label = "/".join(thread.session)
        for _ in range(attempts):
            last = logcore.read_last_id((yield logcore.plan_last_id(self.keyspace, thread.session)))
            if last == "0-0":
                raise ThreadDamaged(
                    f"thread {thread.thread_id!r} has views but no log (evicted or deleted "
                    "apart): its checkpoints cannot be read. Delete the thread "
                    "(delete_thread) or restore its log."
                )
            try:
                info = yield logcore.Command(("XINFO", "STREAM", keys.log))
            except BackendError as exc:  # the log went (evicted) since it was read
                if "no such key" not in str(exc):
                    raise
                continue
            length, added = _stream_info(info)
            if added > length:
                raise ThreadDamaged(
                    f"thread {thread.thread_id!r}: its log was trimmed ({length} of {added} "
                    "entries left), so its views cannot be rebuilt from it"
                )
            events: list[Event] = []
            ids: list[str] = []
            stored: list[list[bytes]] = []
            head = ""
            after = "-"
            while True:
                reply = yield logcore.plan_read(
                    self.keyspace, thread.session, after, last, count=500
                )
                entries = logcore.read_entries(reply, self.codec, label, strict=True)
                values = logcore.stored_values(reply)
                head = logcore.chain_head(reply, head)
                for e in entries:
                    if views.has_views(e.event):
                        events.append(e.event)
                        ids.append(e.id)
                        stored.append(values[e.id])
                if len(entries) < 500:
                    break
                after = "(" + entries[-1].id
            kwargs: dict[str, Any] = {
                "ids": ids,
                "stored": stored,
                "chain_head": head,
                "expected": last,
                "ttl": None,
            }
            if target is not None:
                kwargs["registries"] = []
                call = views.plan_write(
                    self.codec, target.session(thread.session), "rebuild", events, **kwargs
                )
                call = _with_log(call, keys.log)
            else:
                kwargs["doomed"] = views.legacy_keys(keys)
                call = self.plan_write(thread, "rebuild", events, **kwargs)
            reply = yield call
            if int(reply[0]) == 1:
                return len(ids)
        raise ConflictError(f"thread {thread.thread_id!r} kept changing while it was rebuilt")

    # get_tuple ----------------------------------------------------------------------

    def view_keys(self, thread: Thread) -> list[str]:
        """The thread's log, views hash and index (KEYS of every thread script)."""
        return thread_keys(self.keys(thread))

    def plan_read(self, thread: Thread, script: Any, args: list[Any]) -> logcore.ScriptCall:
        """A read script call; with ``refresh_on_read`` it also extends the thread's TTL
        (and its registries'), in the same call."""
        if not self.refresh_on_read:
            return logcore.ScriptCall(script, self.view_keys(thread), [*args, ""])
        assert self.ttl is not None
        ms = logcore.ttl_ms(self.ttl)
        regs = self.registries(thread)
        if not self.log.cluster:
            keys = [*self.view_keys(thread), *(k for k, _m in regs)]
            return logcore.ScriptCall(script, keys, [*args, ms, *(m for _k, m in regs)])
        before = tuple(
            logcore.ScriptCall(views.REGISTER, [k], [m, ms], valid_for=self.ttl / 2)
            for k, m in regs
        )
        return logcore.ScriptCall(script, self.view_keys(thread), [*args, ms], before=before)

    def plan_get_tuple(self, config: RunnableConfig) -> tuple[Thread, str, logcore.ScriptCall]:
        thread = self.thread(config)
        ns = ns_of(config)
        cid = get_checkpoint_id(config) or ""
        return thread, ns, self.plan_read(thread, GET_TUPLE, [escape(ns), cid])

    def read_tuple(
        self, thread: Thread, raw: Any, serde: SerializerProtocol
    ) -> CheckpointTuple | None:
        if not raw:
            return None
        field, rec, head, blob_values, write_fields, write_records, write_values = raw
        ens, ecid = text(field).split(":", 1)
        ns, cid = unescape(ens), unescape(ecid)
        _filter, specs, parent, _run = decode_record(rec)
        event = self.head(head, thread, cid)
        checkpoint = serde.loads_typed(event.checkpoint)
        values: dict[str, Any] = {}
        codec = self.codec
        for spec, blob in zip(specs, blob_values):
            if blob == -1:
                raise _lost(thread, f"channel {spec_channel(spec)!r} of checkpoint {cid!r}")
            if blob:  # never stored (None) or empty (b"") channels are left out
                values[spec_channel(spec)] = serde.loads_typed(codec.decode(blob, Typed))
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
            raise ThreadDamaged(
                f"checkpoint {cid!r} of thread {thread.thread_id!r} points at a log entry "
                "that is gone (was the log trimmed or evicted?)"
            )
        event: Event = self.codec.decode(raw, Event)
        if not isinstance(event, CheckpointPut):
            raise CodecError(f"checkpoint {cid!r} points at a {type(event).__name__} entry")
        return event

    def raw_writes(
        self,
        fields: Sequence[Any],
        records: Sequence[Any],
        entries: Sequence[Any],
        channels: Container[str] | None = None,
    ) -> list[tuple[str, int, str, str, Typed]]:
        """``(task_id, idx, task_path, channel, value)`` in LangGraph's write order; with
        ``channels``, only the writes to those (the others' values are not decoded).

        A checkpoint has one write record per put_writes call; they are folded in log
        order as LangGraph's InMemorySaver keeps writes: a task's ordinary write at an
        index is kept first-come, a special one (error, interrupt, ...) is replaced.
        """
        decoded = []
        for f, rec, entry in zip(fields, records, entries):
            if not rec:
                continue
            if entry == -1:
                raise ThreadDamaged(
                    f"pending writes {text(f)!r} point at a log entry that is gone "
                    "(was the log trimmed or evicted?)"
                )
            entry_id, task_path, items = decode_writes_record(rec)
            decoded.append((_entry_order(entry_id), parse_write_field(text(f)), task_path,
                            items, _fields_of(entry)))  # fmt: skip
        decoded.sort(key=lambda d: d[0])
        kept: dict[tuple[str, int], tuple[str, int, str, str, bytes]] = {}
        for _order, task_id, task_path, items, stored in decoded:
            for idx, channel, value in items:
                key = (task_id, idx)
                if key in kept and channel not in SPECIAL_CHANNELS:
                    continue
                raw = stored[str(value).encode()] if isinstance(value, int) else value
                kept[key] = (task_id, idx, task_path, channel, raw)
        rows: list[tuple[str, int, str, str, Typed]] = [
            (task_id, idx, task_path, channel, self.codec.decode(raw, Typed))
            for task_id, idx, task_path, channel, raw in kept.values()
            if channels is None or channel in channels
        ]
        rows.sort(key=lambda r: writes_sort_key(r[2], r[0], r[1]))
        return rows

    def read_writes(
        self,
        fields: Sequence[Any],
        records: Sequence[Any],
        values: Sequence[Any],
        serde: SerializerProtocol,
        channels: Container[str] | None = None,
    ) -> list[PendingWrite]:
        return [
            (task_id, channel, serde.loads_typed(value))
            for task_id, _idx, _path, channel, value in self.raw_writes(
                fields, records, values, channels
            )
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
        query = list_query(filter, before, limit, serde)
        if query.empty:
            return
        filter_args: list[str] = []
        for k, forms in query.filter.items():
            # alternatives are joined by NUL (no form holds one): a match is any of them
            filter_args += [k, "\0".join(forms)]
        before_id = query.before_id
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
                    len(filter_args) // 2,
                    *filter_args,
                ]
                reply = yield from self.run_repairing(
                    thread, self.plan_read(thread, LIST_PAGE, args)
                )
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

    def run_repairing(self, thread: Thread, call: logcore.ScriptCall) -> Flow[Any]:
        """Run a thread script; if the thread's keys are incomplete, repair it from the
        log and run the script again."""
        reply = yield call
        if self.incomplete(reply):
            yield from self.repair_flow(thread)
            reply = self.checked(thread, (yield call))
        return reply

    def all_threads(self) -> Flow[list[Thread]]:
        """Every registered thread of this saver's kind (threads whose TTL ran out are
        dropped from the registry first, in one call)."""
        registry = views.threads_registry(self.keyspace)
        yield logcore.ScriptCall(PRUNE_REGISTRY, [registry], [])
        tags: set[str] = set()
        cursor = 0
        while True:
            cursor, members = yield from _scan_page(("ZSCAN", registry, cursor, "COUNT", 1000))
            tags.update(_member(m) for m in members)
            if cursor == 0:
                break
        # threads written by layout 1 are in the session set until they are migrated
        cursor = 0
        while True:
            reply = yield logcore.plan_sessions_page(self.keyspace, cursor)
            cursor, legacy = logcore.read_sessions_page(reply)
            tags.update(legacy)
            if cursor == 0:
                break
        threads = []
        for tag in sorted(tags):
            thread = Thread.from_session(parse_session_tag(tag))
            if thread is not None and (thread.actor_id is not None) == self.actors:
                threads.append(thread)
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
            threads = yield from self.threads_named(thread_id)
        for thread in threads:
            yield from self.delete_one(thread)

    def delete_one(self, thread: Thread) -> Flow[None]:
        registries = self.registries(thread)
        keys = self.keys(thread)
        yield views.plan_delete(keys, registries, cluster=self.log.cluster)
        if self.log.cluster:  # registries live on other slots
            for key, member in registries:
                yield logcore.Command(("ZREM", key, member))
        if thread.actor_id is not None:  # layout 1's registry of the thread's actors
            yield logcore.Command(
                ("SREM", self.keyspace.global_key("actors", thread.thread_id), thread.actor_id)
            )

    # delta history ------------------------------------------------------------------

    def delta_flow(
        self, config: RunnableConfig, channels: Sequence[str], serde: SerializerProtocol
    ) -> Flow[dict[str, DeltaChannelHistory]]:
        if not channels:
            return {}
        thread = self.thread(config)
        ns = ns_of(config)
        cid = get_checkpoint_id(config)
        keys = self.view_keys(thread)
        if not cid:
            tup_raw = yield from self.run_repairing(
                thread, logcore.ScriptCall(GET_TUPLE, keys, [escape(ns), "", ""])
            )
            if not tup_raw:
                return {ch: {"writes": []} for ch in channels}
            cid = unescape(text(tup_raw[0]).split(":", 1)[1])
        args = [escape(ns), cid, DELTA_MAX_STEPS, *(escape(c) for c in channels)]
        reply = yield from self.run_repairing(thread, logcore.ScriptCall(DELTA_HISTORY, keys, args))
        _found, steps, seeds = reply
        seed_values: dict[str, Any] = {}
        seed_step: dict[str, int] = {}
        it = iter(seeds)
        for ech, blob, step in zip(it, it, it):
            ch = unescape(text(ech))
            if blob == -1:
                raise _lost(thread, f"the value of channel {ch!r}")
            seed_values[ch] = serde.loads_typed(self.codec.decode(blob, Typed))
            seed_step[ch] = int(step)
        collected: dict[str, list[PendingWrite]] = {c: [] for c in channels}
        # steps are ancestors newest first; a channel collects writes up to and including
        # the ancestor holding its seed, and the result runs oldest first
        for step_no in range(len(steps), 0, -1):
            _cid, wf, wr, wv = steps[step_no - 1]
            if not wf:
                continue
            # only the channels whose history reaches back to this step are decoded
            wanted = {ch for ch in channels if step_no <= seed_step.get(ch, len(steps))}
            for w in self.read_writes(wf, wr, wv, serde, wanted):
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
        label = "/".join(source.session)
        while True:
            reply = yield logcore.plan_read(self.keyspace, source.session, after, None, count=page)
            entries = logcore.read_entries(reply, self.codec, label, strict=True)
            if not entries:
                return copied
            events = [e.event for e in entries if views.has_views(e.event)]
            if events:
                yield from self.run_repairing(target, self.plan_write(target, "append", events))
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
            args = ["", "0", "", "", 500, 100_000, cursor, 0, ""]
            reply = yield from self.run_repairing(
                thread, logcore.ScriptCall(LIST_PAGE, self.view_keys(thread), args)
            )
            cursor = text(reply[0])
            rows.extend(reply[1])
            if not cursor:
                break
        rows.sort(key=lambda r: tuple(reversed(text(r[0]).split(":", 1))))
        return rows

    def compact_flow(
        self, thread: Thread, keep: Keep, attempts: int = 5, *, delta_history: bool = False
    ) -> Flow[None]:
        """Rewrite a thread's log to hold only the checkpoints ``keep`` selects.

        ``keep`` gets ``(ns, checkpoint id, run id)`` of every checkpoint and returns the
        ``(ns, checkpoint id)`` pairs to keep. Each kept checkpoint is re-emitted
        self-contained (the values it needs that no earlier kept checkpoint carries)
        with its writes; the swap is atomic and only happens if no append landed since
        the read, else it is retried. With ``delta_history`` the ancestors a kept
        checkpoint's delta channels are rebuilt from are kept too.
        """
        for _ in range(attempts):
            last = logcore.read_last_id((yield logcore.plan_last_id(self.keyspace, thread.session)))
            if last == "0-0":
                return
            rows = yield from self.read_all_raw(thread)
            events = self.compacted_events(rows, keep, delta_history=delta_history)
            if not events:
                yield from self.delete_one(thread)
                return
            split = [part for ev in events for part in split_event(ev)]
            call = self.plan_write(thread, "replace", split, expected=last)
            if int((yield call)[0]) == 1:
                return
        raise ConflictError(f"thread {thread.thread_id!r} kept changing while it was compacted")

    def compacted_events(
        self, rows: Sequence[Any], keep: Keep, *, delta_history: bool = False
    ) -> list[Any]:
        parsed = []
        for row in rows:
            ens, ecid = text(row[0]).split(":", 1)
            parsed.append((unescape(ens), unescape(ecid), row))
        kept = keep([(ns, cid, decode_record(row[1])[3]) for ns, cid, row in parsed])
        if delta_history:
            kept = self.with_delta_ancestors(parsed, kept)
        events: list[Any] = []
        emitted: set[tuple[str, str]] = set()
        codec = self.codec
        for ns, cid, (_f, rec, head, blob_values, wf, wr, wv) in parsed:
            if (ns, cid) not in kept:
                continue
            filter_, specs, parent, run = decode_record(rec)
            stored = self.head(head, Thread("?"), cid)
            versions = [views.parse_spec(spec) for spec in specs]
            blobs = []
            for spec, (ch, ver), value in zip(specs, versions, blob_values):
                if (ns, spec) in emitted or value is None:
                    continue
                if value == -1:
                    raise ThreadDamaged(f"checkpoint {cid!r}: channel {ch!r} lost its value")
                emitted.add((ns, spec))
                typed = codec.decode(value, Typed) if value else ("empty", b"")
                blobs.append(Blob(ch, ver, typed))
            events.append(
                CheckpointPut(
                    ns=ns,
                    checkpoint_id=cid,
                    parent_id=parent or None,
                    checkpoint=stored.checkpoint,
                    metadata=stored.metadata,
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

    def with_delta_ancestors(
        self, parsed: Sequence[tuple[str, str, Any]], kept: set[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        """``kept`` and the ancestors its delta channels are rebuilt from (see
        :func:`~streamstate.adapters._delta.with_delta_ancestors`)."""
        serde = self.serde
        if serde is None:
            return kept
        rows = {(ns, cid): row for ns, cid, row in parsed}

        def deltas(key: tuple[str, str]) -> set[str]:
            row = rows[key]
            metadata = serde.loads_typed(self.head(row[2], Thread("?"), key[1]).metadata)
            return delta_channels(metadata, map(spec_channel, decode_record(row[1])[1]))

        def stores(key: tuple[str, str]) -> set[str]:
            _f, rec, _head, values, *_writes = rows[key]
            specs = decode_record(rec)[1]
            return {spec_channel(s) for s, v in zip(specs, values) if v not in (None, b"", -1)}

        def parent(key: tuple[str, str]) -> tuple[str, str] | None:
            up = (key[0], decode_record(rows[key][1])[2])
            return up if up in rows else None

        return with_delta_ancestors(kept, deltas=deltas, stores=stores, parent=parent)

    def threads_named(self, thread_id: str) -> Flow[list[Thread]]:
        """The sessions of a thread id: one, or one per actor for AgentCore threads."""
        require_str(thread_id, "thread_id")
        if not self.actors:
            return [Thread(thread_id)]
        actors = yield logcore.Command(
            ("ZRANGE", views.actor_registry(self.keyspace, thread_id), 0, -1)
        )
        legacy = yield logcore.Command(("SMEMBERS", self.keyspace.global_key("actors", thread_id)))
        return [Thread(thread_id, a) for a in sorted({text(a) for a in [*actors, *legacy]})]

    def prune_flow(self, thread_ids: Sequence[str], strategy: str) -> Flow[None]:
        if strategy not in ("keep_latest", "delete"):
            raise ConfigError(f"prune strategy must be 'keep_latest' or 'delete', got {strategy!r}")
        for thread_id in thread_ids:
            for thread in (yield from self.threads_named(thread_id)):
                if strategy == "delete":
                    yield from self.delete_one(thread)
                else:
                    yield from self.compact_flow(thread, _newest_per_ns, delta_history=True)

    def delete_for_runs_flow(self, run_ids: Sequence[str]) -> Flow[None]:
        runs = [r for r in run_ids if isinstance(r, str) and r]
        if not runs:
            return
        registries = [views.run_registry(self.keyspace, r) for r in runs]
        legacy = [self.keyspace.global_key("run", r) for r in runs]
        tags: set[Any] = set()
        for key in registries:  # one key per command: run registries live on different slots
            tags |= {text(t) for t in (yield logcore.Command(("ZRANGE", key, 0, -1)))}
        for key in legacy:
            tags |= {text(t) for t in (yield logcore.Command(("SMEMBERS", key)))}
        doomed = set(runs)

        def keep(rows: Sequence[tuple[str, str, str]]) -> set[tuple[str, str]]:
            return {(ns, cid) for ns, cid, run in rows if run not in doomed}

        for tag in sorted(tags):
            thread = Thread.from_session(parse_session_tag(tag))
            if thread is None:
                continue
            yield from self.compact_flow(thread, keep)
        for key in [*registries, *legacy]:
            yield logcore.Command(("DEL", key))


Keep = Callable[[Sequence[tuple[str, str, str]]], set[tuple[str, str]]]
"""Chooses the checkpoints a compaction keeps, from ``(ns, id, run)`` of each."""


def _newest_per_ns(rows: Sequence[tuple[str, str, str]]) -> set[tuple[str, str]]:
    newest: dict[str, str] = {}
    for ns, cid, _run in rows:
        if cid > newest.get(ns, ""):
            newest[ns] = cid
    return set(newest.items())


def _member(item: Any) -> str:
    """A ZSCAN member, whether the client paired it with its score or not."""
    return text(item[0] if isinstance(item, (tuple, list)) else item)


def _scan_page(args: tuple[Any, ...]) -> Flow[tuple[int, list[Any]]]:
    reply = yield logcore.Command(args)
    cursor, items = reply
    return int(cursor), list(items)


def _entry_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _fields_of(entry: Any) -> dict[bytes, bytes]:
    """A flat ``[field, value, ...]`` entry reply as a dict (empty when not sent)."""
    if not entry:
        return {}
    it = iter(entry)
    return dict(zip(it, it))


def _lost(thread: Thread, what: str) -> ThreadDamaged:
    return ThreadDamaged(
        f"thread {thread.thread_id!r}: {what} points at a log entry that is gone "
        "(was the log trimmed or evicted?)"
    )


def _stream_info(reply: Any) -> tuple[int, int]:
    """``(length, entries ever added)`` of an XINFO STREAM reply."""
    if isinstance(reply, list):
        it = iter(reply)
        reply = dict(zip(it, it))
    info = {text(k): v for k, v in (reply or {}).items()}
    return int(info.get("length", 0)), int(info.get("entries-added", 0))


def _with_log(call: logcore.ScriptCall, log: str) -> logcore.ScriptCall:
    """The call reading entries from ``log`` (a rebuild into another keyspace)."""
    return logcore.ScriptCall(call.script, [log, *call.keys[1:]], call.args, call.idempotent)
