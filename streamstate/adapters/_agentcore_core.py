"""Pure translation between LangGraph's checkpointer calls and AgentCore Memory.

Every operation is a flow (a generator that yields planned calls and receives their
replies, see ``streamstate.eventlog._drive``); the saver class only runs them,
synchronously or in worker threads. The store's half is
:mod:`streamstate.adapters._agentcore_store_core`.

Checkpoint layout
-----------------
A thread is the AgentCore session ``thread_id`` of the actor ``actor_id``. ``put`` is
one head event (``ss.k=cp``) whose envelope holds one ``CheckpointPut`` and ``refs``;
``put_writes`` is one head event (``ss.k=wr``) holding one ``WritesPut``. Both are
tagged ``ss.ns`` (checkpoint namespace) and ``ss.cp`` (checkpoint id, for writes the
checkpoint they belong to); checkpoints also ``ss.run`` (run id) and ``ss.par``
(parent id). Values go through :func:`~streamstate.eventlog.agentcore.meta_value`.

Channel values: a checkpoint event carries blobs for the channel versions it wrote,
plus, for unchanged channels, either the value again when it is small (up to
``carry_max`` bytes: AgentCore bills per event, not per byte, and it saves a read) or a
*reference*: the eventId of the event that holds that ``(channel, version)``. Reading
a checkpoint therefore needs its own event plus at most one GetEvent per distinct
referenced event (large unchanged values only), whatever the thread's length.
Where a blob lives is cached per ``(thread, ns)`` for the checkpoint last put or read,
so ``put`` needs no read in a running graph; on a miss it reads the parent checkpoint
once (and, if even that does not know a version, scans the namespace, which a graph
run never needs).

Writes are never assumed to follow their checkpoint: LangGraph saves a step's writes
concurrently with its checkpoint, so either may be stored first. ``get_tuple`` fetches
them by filter; ``list`` scans checkpoints and writes together and hands a checkpoint
out once the scan has passed the time it was created (its uuid6 id; writes name their
checkpoint, so they are all later), which is usually the same page.

Calls per operation (pages of 100 events; ``r`` = distinct referenced events, usually 0):

* ``put``: 1 CreateEvent (+1 per extra 100 payload items / 10 MB); +1 ListEvents on a
  cache miss for a channel whose value the checkpoint does not carry.
* ``put_writes``: 1 CreateEvent.
* ``get_tuple`` latest: 2 ListEvents (the newest ``ss.k=cp`` event, ``maxResults=1``;
  then its writes by ``ss.cp``) + ``r`` GetEvent. By id: 1 ListEvents + ``r``.
* ``list``: ListEvents pages over the thread's events (+ ``r`` per new referenced
  event); ``list(None)`` adds ListActors and ListSessions pages.
* ``delete_thread``: ListEvents pages + 1 DeleteEvent per event (per actor; without
  ``actor_id``, ListActors first).
* ``copy_thread``, ``prune``, ``delete_for_runs``: read the session, then one
  CreateEvent per copied or rewritten event and one DeleteEvent per removed one;
  ``delete_for_runs`` first asks every session (ListActors, ListSessions) with one
  ``ss.run`` ListEvents per run.
"""

from __future__ import annotations

import contextvars
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ERROR,
    INTERRUPT,
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
    checkpoint_event,
    list_query,
    ns_of,
    writes_event,
)
from streamstate.adapters._delta import filter_delta_channels, with_delta_ancestors
from streamstate.errors import CodecError, ConfigError
from streamstate.eventlog._aws import Call, Parallel
from streamstate.eventlog._drive import Emit, Flow
from streamstate.eventlog.agentcore import (
    COUNT,
    KIND,
    KIND_PART,
    PART_OF,
    Envelope,
    LogCore,
    Stored,
    check_actor,
    check_session,
    eq,
    exists,
    meta_value,
    parse_event,
)
from streamstate.eventlog.events import Blob, CheckpointPut, Typed, WritesPut

NS = "ss.ns"
CP = "ss.cp"
RUN = "ss.run"
PARENT = "ss.par"
TASK = "ss.task"
BATCH = "ss.b"
"""On an event holding more than one checkpoint or writes event (batched saving)."""
LO = "ss.lo"
HI = "ss.hi"
"""On batch events: the smallest and largest checkpoint id its events name."""

BATCHING_MODES = ("off", "step", "deferred")

KIND_CP = "cp"
KIND_WR = "wr"

CARRY_MAX = 16 * 1024
"""Unchanged channel values up to this size (serialized) are carried in every event."""


# -- addressing --------------------------------------------------------------------------


@dataclass(frozen=True)
class Thread:
    """A LangGraph thread: the AgentCore session ``thread_id`` of actor ``actor_id``."""

    actor_id: str
    thread_id: str

    def config(self, ns: str, checkpoint_id: str) -> RunnableConfig:
        return {
            "configurable": {
                "thread_id": self.thread_id,
                "actor_id": self.actor_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint_id,
            }
        }


_LAST_THREAD: contextvars.ContextVar[Thread | None] = contextvars.ContextVar(
    "streamstate_agentcore_last_thread", default=None
)
_PREGEL_CHECKPOINTER = "__pregel_checkpointer"


def thread_of(config: RunnableConfig | None) -> Thread:
    """The thread a config names; both ``thread_id`` and ``actor_id`` are required.

    One exception: ``get_state(subgraphs=True)`` reads each subgraph with a config
    LangGraph builds from ``thread_id`` and ``checkpoint_ns`` alone (it carries the
    internal ``__pregel_checkpointer`` key), right after reading the parent in the same
    context; such a config gets the actor of that parent read.
    """
    configurable = (config or {}).get("configurable") or {}
    if configurable.get("thread_id") is None:
        raise ConfigError(
            'config["configurable"]["thread_id"] is required (the AgentCore session id)'
        )
    thread_id = check_session(configurable["thread_id"], 'config["configurable"]["thread_id"]')
    if configurable.get("actor_id") is None:
        last = _LAST_THREAD.get()
        if (
            _PREGEL_CHECKPOINTER in configurable
            and configurable.get("checkpoint_ns")
            and last is not None
            and last.thread_id == thread_id
        ):
            return last
        raise ConfigError(
            'config["configurable"]["actor_id"] is required by AgentCoreMemorySaver '
            "(the AgentCore actor that owns the session)"
        )
    actor_id = check_actor(configurable["actor_id"], 'config["configurable"]["actor_id"]')
    thread = Thread(actor_id, thread_id)
    _LAST_THREAD.set(thread)
    return thread


# -- where blobs live ----------------------------------------------------------------------


@dataclass(frozen=True)
class Loc:
    """Where a ``(channel, version)`` blob lives: an event, and the value if it is small."""

    event_id: str
    typed: Typed | None


ChannelKey = tuple[str, Any]


class LocCache:
    """``(thread, ns)`` -> the checkpoint last put or read there and its blob locations.

    Only used when a put's parent is that checkpoint, so a fork or another process's
    writes never mislead it; entries are immutable facts about existing events until
    the thread is deleted or rewritten, which clears them. Thread-safe: LangGraph saves
    from background threads.
    """

    def __init__(self, capacity: int = 256) -> None:
        self._data: OrderedDict[tuple[Thread, str], tuple[str, dict[ChannelKey, Loc]]] = (
            OrderedDict()
        )
        self._capacity = capacity
        self._lock = threading.Lock()

    def get(self, thread: Thread, ns: str, checkpoint_id: str | None) -> dict[ChannelKey, Loc]:
        with self._lock:
            hit = self._data.get((thread, ns))
        if hit is None or checkpoint_id is None or hit[0] != checkpoint_id:
            return {}
        return hit[1]

    def put(self, thread: Thread, ns: str, checkpoint_id: str, locs: dict[ChannelKey, Loc]) -> None:
        with self._lock:
            self._data[(thread, ns)] = (checkpoint_id, locs)
            self._data.move_to_end((thread, ns))
            while len(self._data) > self._capacity:
                self._data.popitem(last=False)

    def forget(self, actor_id: str | None, thread_id: str) -> None:
        with self._lock:
            for key in [
                k
                for k in self._data
                if k[0].thread_id == thread_id and actor_id in (None, k[0].actor_id)
            ]:
                del self._data[key]


# -- decoded events --------------------------------------------------------------------------


@dataclass(frozen=True)
class CpHead:
    """A decoded checkpoint event."""

    stored: Stored
    event: CheckpointPut
    refs: dict[str, str]


@dataclass(frozen=True)
class WrHead:
    """A decoded writes event."""

    stored: Stored
    event: WritesPut


def _blobs(event: CheckpointPut) -> dict[ChannelKey, Typed]:
    return {(b.channel, b.version): b.value for b in event.blobs}


@dataclass(frozen=True)
class Batch:
    """Events of one thread and namespace to send in one append, in saving order."""

    thread: Thread
    events: tuple[CheckpointPut | WritesPut, ...]
    refs: dict[str, str]


class SaveBuffer:
    """Checkpoints and writes not yet sent (batched saving), per ``(thread, ns)``.

    A batch holds checkpoints of one run (``ss.run`` stays exact), with the writes of
    those checkpoints and of checkpoints this buffer sent earlier (whose events are
    marked ``ss.b``, so a reader looks for their writes in later batches). Writes of
    any other checkpoint go in their own event, found by ``ss.cp`` as usual.
    Thread-safe: LangGraph saves from background threads.
    """

    def __init__(self, remember: int = 4096) -> None:
        self._queues: OrderedDict[tuple[Thread, str], list[tuple[Any, dict[str, str]]]] = (
            OrderedDict()
        )
        self._sent: OrderedDict[tuple[Thread, str, str], None] = OrderedDict()
        self._remember = remember
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._queues.values())

    def add_checkpoint(
        self, thread: Thread, event: CheckpointPut, refs: dict[str, str], *, step: bool
    ) -> list[Batch]:
        with self._lock:
            self._queues.setdefault((thread, event.ns), []).append((event, refs))
            return self._take(thread, event.ns, wait=True) if step else []

    def add_writes(self, thread: Thread, event: WritesPut, *, flush: bool) -> list[Batch]:
        with self._lock:
            self._queues.setdefault((thread, event.ns), []).append((event, {}))
            return self._take(thread, event.ns) if flush else []

    def drain(self) -> list[Batch]:
        with self._lock:
            out: list[Batch] = []
            for thread, ns in list(self._queues):
                out += self._take(thread, ns)
            return out

    def _take(self, thread: Thread, ns: str, *, wait: bool = False) -> list[Batch]:
        """Batches for everything queued; with ``wait``, writes of a checkpoint not put
        yet stay queued (LangGraph may save a step's writes before its checkpoint)."""
        items = self._queues.pop((thread, ns), [])
        cps = [e for e, _ in items if isinstance(e, CheckpointPut)]
        joinable = {e.checkpoint_id for e in cps} | {
            cid for (t, n, cid) in self._sent if t == thread and n == ns
        }
        segments: list[tuple[list[Any], dict[str, str], str | None]] = []
        alone: dict[str, list[WritesPut]] = {}
        for event, refs in items:
            if isinstance(event, WritesPut):
                if event.checkpoint_id not in joinable:
                    alone.setdefault(event.checkpoint_id, []).append(event)
                    continue
                if not segments:
                    segments.append(([], {}, None))
                segments[-1][0].append(event)
                continue
            if segments and (
                (segments[-1][2] not in (None, event.run_id))
                or any(segments[-1][1].get(ch, eid) != eid for ch, eid in refs.items())
            ):
                segments.append(([], {}, None))
            if not segments:
                segments.append(([], {}, None))
            events, merged, _ = segments[-1]
            events.append(event)
            merged.update(refs)
            segments[-1] = (events, merged, event.run_id)
        for event in cps:
            self._sent[(thread, ns, event.checkpoint_id)] = None
            self._sent.move_to_end((thread, ns, event.checkpoint_id))
        while len(self._sent) > self._remember:
            self._sent.popitem(last=False)
        if wait and alone:
            self._queues[(thread, ns)] = [(w, {}) for ws in alone.values() for w in ws]
            alone = {}
        out = [Batch(thread, tuple(w), {}) for w in alone.values()]
        for events, refs, _ in segments:
            if any(isinstance(e, CheckpointPut) for e in events):
                out.append(Batch(thread, tuple(events), refs))
                continue
            # writes only: one event per checkpoint, so ``ss.cp`` names all it holds
            by_cp: dict[str, list[WritesPut]] = {}
            for w in events:
                by_cp.setdefault(w.checkpoint_id, []).append(w)
            out += [Batch(thread, tuple(ws), {}) for ws in by_cp.values()]
        return out


class SaverCore:
    """Everything AgentCoreMemorySaver does that is not I/O.

    Args:
        log: The AgentCore log core (addressing, appends, decoding).
        carry_max: Largest serialized unchanged value carried again in a checkpoint.
        cache_size: ``(thread, ns)`` pairs whose blob locations are cached.
    """

    def __init__(
        self,
        log: LogCore,
        *,
        carry_max: int = CARRY_MAX,
        cache_size: int = 256,
        batching: str = "off",
    ):
        if batching not in BATCHING_MODES:
            raise ConfigError(f"batching must be one of {BATCHING_MODES}, got {batching!r}")
        self.log = log
        self.carry_max = carry_max
        self.cache = LocCache(cache_size)
        self.batching = batching
        self.buffer = SaveBuffer()

    # reading helpers ---------------------------------------------------------------------

    def decode_flow(
        self, stored: Stored, known: Mapping[str, Stored] | None = None
    ) -> Flow[CpHead | WrHead | None]:
        envelope = yield from self.log.envelope_flow(stored, known)
        if len(envelope.events) != 1:
            return None
        event = envelope.events[0]
        if stored.kind == KIND_CP and isinstance(event, CheckpointPut):
            return CpHead(stored, event, dict(envelope.refs))
        if stored.kind == KIND_WR and isinstance(event, WritesPut):
            return WrHead(stored, event)
        return None

    def decode_all_flow(
        self, stored: Stored, known: Mapping[str, Stored] | None = None
    ) -> Flow[list[CpHead | WrHead]]:
        """Every checkpoint and writes event one AgentCore event holds (a batch holds
        several, in the order they were saved)."""
        if BATCH not in stored.meta:
            one = yield from self.decode_flow(stored, known)
            return [] if one is None else [one]
        envelope = yield from self.log.envelope_flow(stored, known)
        out: list[CpHead | WrHead] = []
        for event in envelope.events:
            if isinstance(event, CheckpointPut):
                out.append(CpHead(stored, event, dict(envelope.refs)))
            elif isinstance(event, WritesPut):
                out.append(WrHead(stored, event))
        return out

    def locs_of(self, head: CpHead) -> dict[ChannelKey, Loc]:
        """Where each channel version of a checkpoint lives (for the next put)."""
        locs: dict[ChannelKey, Loc] = {}
        own = _blobs(head.event)
        for ch, ver in head.event.versions:
            typed = own.get((ch, ver))
            if typed is not None:
                small = typed if len(typed[1]) <= self.carry_max else None
                locs[(ch, ver)] = Loc(head.stored.event_id, small)
            elif head.refs.get(ch):
                locs[(ch, ver)] = Loc(head.refs[ch], None)
        return locs

    def values_flow(
        self,
        thread: Thread,
        head: CpHead,
        cache: dict[str, CpHead],
        serde: SerializerProtocol,
        only: Iterable[str] | None = None,
    ) -> Flow[dict[str, Any]]:
        """A checkpoint's channel values: its own blobs, then referenced events (one
        GetEvent per distinct event not in ``cache``)."""
        wanted_channels = None if only is None else set(only)
        own = _blobs(head.event)
        typed_values: dict[str, Typed] = {}
        wanted: dict[str, list[ChannelKey]] = {}
        for ch, ver in head.event.versions:
            if wanted_channels is not None and ch not in wanted_channels:
                continue
            typed = own.get((ch, ver))
            if typed is not None:
                typed_values[ch] = typed
            elif head.refs.get(ch):
                wanted.setdefault(head.refs[ch], []).append((ch, ver))
        missing = [eid for eid in wanted if eid not in cache]
        if missing:
            calls = tuple(self.log.get_call(thread.actor_id, thread.thread_id, e) for e in missing)
            replies = yield Parallel(calls)
            for eid, reply in zip(missing, replies):
                stored = parse_event(reply["event"])
                decoded = [] if stored is None else (yield from self.decode_all_flow(stored))
                merged = _merged(decoded)
                if eid not in merged:
                    raise CodecError(
                        f"referenced event {eid} is not a streamstate checkpoint",
                        session=thread.thread_id,
                        entry_id=head.stored.event_id,
                        stage="refs",
                    )
                cache[eid] = merged[eid]
        for eid, pairs in wanted.items():
            blobs = _blobs(cache[eid].event)
            for ch, ver in pairs:
                if (ch, ver) not in blobs:
                    raise CodecError(
                        f"referenced event {eid} holds no blob for channel {ch!r} version {ver!r}",
                        session=thread.thread_id,
                        entry_id=head.stored.event_id,
                        stage="refs",
                    )
                typed_values[ch] = blobs[(ch, ver)]
        return {ch: serde.loads_typed(t) for ch, t in typed_values.items() if t[0] != "empty"}

    @staticmethod
    def pending_writes(
        writes: Iterable[WrHead], ns: str, checkpoint_id: str, serde: SerializerProtocol
    ) -> list[PendingWrite]:
        """The writes of one checkpoint in ``writes_sort_key`` order.

        Applied oldest first with LangGraph's rule: a regular write ``(task, idx)`` is
        kept the first time, a special one (negative idx) the last time.
        """
        table: dict[tuple[str, int], tuple[str, str, Typed]] = {}
        for head in sorted(writes, key=lambda h: h.stored.seq):
            ev = head.event
            if ev.ns != ns or ev.checkpoint_id != checkpoint_id:
                continue
            for w in ev.writes:
                key = (ev.task_id, w.idx)
                if w.idx >= 0 and key in table:
                    continue
                table[key] = (ev.task_path, w.channel, w.value)
        rows = sorted(table.items(), key=lambda kv: writes_sort_key(kv[1][0], kv[0][0], kv[0][1]))
        return [(task_id, ch, serde.loads_typed(typed)) for (task_id, _), (_, ch, typed) in rows]

    def tuple_flow(
        self,
        thread: Thread,
        head: CpHead,
        writes: Iterable[WrHead],
        cache: dict[str, CpHead],
        serde: SerializerProtocol,
    ) -> Flow[CheckpointTuple]:
        ev = head.event
        checkpoint = serde.loads_typed(ev.checkpoint)
        checkpoint["channel_values"] = yield from self.values_flow(thread, head, cache, serde)
        return CheckpointTuple(
            config=thread.config(ev.ns, ev.checkpoint_id),
            checkpoint=checkpoint,
            metadata=serde.loads_typed(ev.metadata),
            parent_config=thread.config(ev.ns, ev.parent_id) if ev.parent_id else None,
            pending_writes=self.pending_writes(writes, ev.ns, ev.checkpoint_id, serde),
        )

    def _page(self, thread: Thread, filters: Sequence[dict[str, Any]], token: str | None) -> Call:
        return self.log.list_call(thread.actor_id, thread.thread_id, filters, token=token)

    def find_flow(
        self, thread: Thread, ns: str, checkpoint_id: str | None
    ) -> Flow[tuple[CpHead, list[WrHead]] | None]:
        """A checkpoint (the latest of ``ns`` if no id) and its writes.

        LangGraph saves writes concurrently with the checkpoint they belong to, so
        they may be stored before it: they are fetched by their own filter, never
        assumed to follow the checkpoint. By id: one listing (``ss.ns`` + ``ss.cp``)
        returns both. Latest: the newest ``ss.k=cp`` event (``maxResults=1``), then its
        writes (``ss.cp`` + ``ss.k=wr``).

        Batched saving (``ss.b``) puts several checkpoints and writes in one event,
        tagged with its newest checkpoint. The latest checkpoint is then the newest one
        of the newest event, its writes are in that event or in later writes events as
        usual. By id, a checkpoint that is not found, or found in a batch, costs one
        more listing (the namespace's batch events, without payloads) and one GetEvent
        per batch whose id range covers it.
        """
        filters = [eq(NS, meta_value(ns))]
        latest: CpHead | None = None
        writes: list[WrHead] = []
        if checkpoint_id:
            filters.append(eq(CP, meta_value(checkpoint_id)))
        else:
            reply = yield self.log.list_call(
                thread.actor_id, thread.thread_id, [*filters, eq(KIND, KIND_CP)], max_results=1
            )
            newest = [s for s in map(parse_event, reply.get("events", [])) if s is not None]
            if not newest:
                return None
            decoded = yield from self.decode_all_flow(newest[0])
            cps = [h for h in decoded if isinstance(h, CpHead) and h.event.ns == ns]
            if not cps:
                raise CodecError(
                    "the latest checkpoint event does not decode as a checkpoint of its namespace",
                    session=thread.thread_id,
                    entry_id=newest[0].event_id,
                    stage="envelope",
                )
            latest = cps[-1]
            checkpoint_id = latest.event.checkpoint_id
            writes += [h for h in decoded if isinstance(h, WrHead)]
            filters += [eq(CP, meta_value(checkpoint_id)), eq(KIND, KIND_WR)]
        heads: list[CpHead] = []
        token = None
        while True:
            reply = yield self._page(thread, filters, token)
            for raw in reply.get("events", []):
                stored = parse_event(raw)
                if stored is None or stored.kind not in (KIND_CP, KIND_WR):
                    continue
                self._collect(
                    (yield from self.decode_all_flow(stored)), ns, checkpoint_id, heads, writes
                )
            token = reply.get("nextToken")
            if not token:
                break
        if latest is None and (not heads or any(BATCH in h.stored.meta for h in heads)):
            for stored in (yield from self._batches_flow(thread, ns, checkpoint_id)):
                if any(h.stored.event_id == stored.event_id for h in heads):
                    continue
                decoded = yield from self.decode_all_flow(stored)
                self._collect(decoded, ns, checkpoint_id, heads, writes)
        if latest is None:
            if not heads:
                return None
            latest = max(heads, key=lambda h: h.stored.seq)
        return latest, writes

    @staticmethod
    def _collect(
        decoded: Sequence[CpHead | WrHead],
        ns: str,
        checkpoint_id: str,
        heads: list[CpHead],
        writes: list[WrHead],
    ) -> None:
        for head in decoded:
            if isinstance(head, WrHead):
                writes.append(head)
            elif head.event.ns == ns and head.event.checkpoint_id == checkpoint_id:
                heads.append(head)

    def _batches_flow(self, thread: Thread, ns: str, checkpoint_id: str) -> Flow[list[Stored]]:
        """The namespace's batch events whose id range may hold ``checkpoint_id``
        (listed without payloads, then fetched)."""
        wanted = meta_value(checkpoint_id)
        hits: list[str] = []
        token = None
        while True:
            call = self.log.list_call(
                thread.actor_id,
                thread.thread_id,
                [eq(NS, meta_value(ns)), exists(BATCH)],
                payloads=False,
                token=token,
            )
            reply = yield call
            for raw in reply.get("events", []):
                stored = parse_event(raw)
                if stored is None or not stored.is_head:
                    continue
                lo, hi = stored.meta.get(LO, ""), stored.meta.get(HI, "")
                exact = lo.startswith("=") and hi.startswith("=") and wanted.startswith("=")
                if not exact or lo <= wanted <= hi:
                    hits.append(stored.event_id)
            token = reply.get("nextToken")
            if not token:
                break
        if not hits:
            return []
        calls = tuple(self.log.get_call(thread.actor_id, thread.thread_id, e) for e in hits)
        replies = yield Parallel(calls)
        return [s for s in (parse_event(r["event"]) for r in replies) if s is not None]

    # get_tuple ---------------------------------------------------------------------------

    def get_tuple_flow(
        self, config: RunnableConfig, serde: SerializerProtocol
    ) -> Flow[CheckpointTuple | None]:
        yield from self.flush_flow()  # read your own buffered writes
        thread = thread_of(config)
        ns = ns_of(config)
        found = yield from self.find_flow(thread, ns, get_checkpoint_id(config))
        if found is None:
            return None
        head, writes = found
        result = yield from self.tuple_flow(thread, head, writes, {}, serde)
        self.cache.put(thread, ns, head.event.checkpoint_id, self.locs_of(head))
        return result

    # put -----------------------------------------------------------------------------------

    def put_flow(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
        serde: SerializerProtocol,
    ) -> Flow[RunnableConfig]:
        thread, event, refs = yield from self.build_put_flow(
            config, checkpoint, metadata, new_versions, serde
        )
        ns = event.ns
        if self.batching != "off":
            # buffered: carry every value (no reference to an event not yet created)
            own = {(b.channel, b.version): Loc("", b.value) for b in event.blobs}
            self.cache.put(thread, ns, event.checkpoint_id, own)
            due = self.buffer.add_checkpoint(thread, event, refs, step=self.batching == "step")
            yield from self.append_batches_flow(due)
            return thread.config(ns, event.checkpoint_id)
        raw = yield from self.log.append_flow(
            thread.actor_id,
            thread.thread_id,
            Envelope([event], refs),
            self.cp_tags(event),
        )
        stored = parse_event(raw)
        assert stored is not None
        head = CpHead(stored, event, refs)
        self.cache.put(thread, ns, event.checkpoint_id, self.locs_of(head))
        return thread.config(ns, event.checkpoint_id)

    def build_put_flow(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
        serde: SerializerProtocol,
    ) -> Flow[tuple[Thread, CheckpointPut, dict[str, str]]]:
        """The checkpoint event of a put and its references (reads only on a cache miss)."""
        thread = thread_of(config)
        event = checkpoint_event(config, checkpoint, metadata, new_versions, serde)
        ns, parent = event.ns, event.parent_id
        buffered = self.batching != "off"
        values: Mapping[str, Any] = checkpoint.get("channel_values") or {}
        versions = dict(checkpoint["channel_versions"])
        blobs = list(event.blobs)
        written = {(b.channel, b.version) for b in blobs}
        refs: dict[str, str] = {}
        known = self.cache.get(thread, ns, parent)
        unknown: list[ChannelKey] = []
        for ch, ver in versions.items():
            if (ch, ver) in written:
                continue
            loc = known.get((ch, ver))
            if (loc is None or buffered) and ch in values:
                # the value is at hand: carrying it is cheaper than finding where it lives
                blobs.append(Blob(ch, ver, serde.dumps_typed(values[ch])))
            elif loc is None:
                unknown.append((ch, ver))
            else:
                self._place(ch, ver, loc, blobs, refs)
        if unknown:
            found = yield from self.locate_flow(thread, ns, parent, unknown)
            for ch, ver in unknown:
                if (ch, ver) in found:
                    self._place(ch, ver, found[(ch, ver)], blobs, refs)
        return thread, msgspec.structs.replace(event, blobs=blobs), refs

    @staticmethod
    def _place(ch: str, ver: Any, loc: Loc, blobs: list[Blob], refs: dict[str, str]) -> None:
        if loc.typed is not None:
            blobs.append(Blob(ch, ver, loc.typed))
        else:
            refs[ch] = loc.event_id

    @staticmethod
    def cp_tags(event: CheckpointPut) -> dict[str, str]:
        tags = {KIND: KIND_CP, NS: meta_value(event.ns), CP: meta_value(event.checkpoint_id)}
        if event.run_id:
            tags[RUN] = meta_value(event.run_id)
        if event.parent_id:
            tags[PARENT] = meta_value(event.parent_id)
        return tags

    @staticmethod
    def wr_tags(event: WritesPut) -> dict[str, str]:
        return {
            KIND: KIND_WR,
            NS: meta_value(event.ns),
            CP: meta_value(event.checkpoint_id),
            TASK: meta_value(event.task_id),
        }

    def locate_flow(
        self, thread: Thread, ns: str, parent: str | None, wanted: Sequence[ChannelKey]
    ) -> Flow[dict[ChannelKey, Loc]]:
        """Find blobs the cache does not know: the parent checkpoint first (one read),
        then the namespace newest first (only for checkpoints built by hand)."""
        found: dict[ChannelKey, Loc] = {}
        if parent:
            hit = yield from self.find_flow(thread, ns, parent)
            if hit is not None:
                locs = self.locs_of(hit[0])
                found.update({k: locs[k] for k in wanted if k in locs})
        left = [k for k in wanted if k not in found]
        token = None
        while left:
            reply = yield self._page(thread, [eq(NS, meta_value(ns)), eq(KIND, KIND_CP)], token)
            for raw in reply.get("events", []):
                stored = parse_event(raw)
                decoded_all = [] if stored is None else (yield from self.decode_all_flow(stored))
                for decoded in decoded_all:
                    if not isinstance(decoded, CpHead) or decoded.event.ns != ns:
                        continue
                    own = _blobs(decoded.event)
                    for key in [k for k in left if k in own]:
                        small = own[key] if len(own[key][1]) <= self.carry_max else None
                        found[key] = Loc(decoded.stored.event_id, small)
                        left.remove(key)
            token = reply.get("nextToken")
            if not token:
                break
        return found

    # put_writes ----------------------------------------------------------------------------

    def put_writes_flow(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
        serde: SerializerProtocol,
    ) -> Flow[None]:
        thread = thread_of(config)
        event = writes_event(config, writes, task_id, task_path, serde)
        if self.batching != "off":
            # an error or interrupt ends the run here: no checkpoint follows to carry it
            urgent = self.batching == "step" and any(ch in (ERROR, INTERRUPT) for ch, _ in writes)
            due = self.buffer.add_writes(thread, event, flush=urgent)
            yield from self.append_batches_flow(due)
            return
        yield from self.log.append_flow(
            thread.actor_id, thread.thread_id, Envelope([event]), self.wr_tags(event)
        )

    # batched saving --------------------------------------------------------------------------

    def flush_flow(self) -> Flow[int]:
        """Write everything buffered; returns the number of CreateEvent batches."""
        due = self.buffer.drain()
        yield from self.append_batches_flow(due)
        return len(due)

    def append_batches_flow(self, batches: Sequence[Batch]) -> Flow[None]:
        """One append (one CreateEvent unless it exceeds the payload limits) per batch."""
        for batch in batches:
            first = batch.events[0]
            if len(batch.events) == 1 and isinstance(first, WritesPut):
                tags = self.wr_tags(first)
            else:
                # a buffered checkpoint is always marked: its writes may follow in a batch
                tags = self.batch_tags(batch.events)
            yield from self.log.append_flow(
                batch.thread.actor_id,
                batch.thread.thread_id,
                Envelope(list(batch.events), batch.refs),
                tags,
            )

    def batch_tags(self, events: Sequence[CheckpointPut | WritesPut]) -> dict[str, str]:
        cps = [e for e in events if isinstance(e, CheckpointPut)]
        if cps:
            tags = self.cp_tags(cps[-1])
        else:
            last = events[-1]
            assert isinstance(last, WritesPut)
            tags = self.wr_tags(last)
        ids = [e.checkpoint_id for e in events]
        tags[BATCH] = "1"
        tags[COUNT] = str(len(events))
        tags[LO] = meta_value(min(ids))
        tags[HI] = meta_value(max(ids))
        return tags

    # list ----------------------------------------------------------------------------------

    def list_flow(
        self,
        config: RunnableConfig | None,
        filter: Mapping[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
        serde: SerializerProtocol,
    ) -> Flow[None]:
        """Checkpoints newest first; each is emitted as soon as its event is read."""
        query = list_query(filter, before, limit, serde)
        if query.empty:
            return
        yield from self.flush_flow()
        wanted, before_id = query.canonical, query.before_id
        if config is None:
            threads: list[Thread] = yield from self.all_threads_flow()
            ns, exact = None, None
        else:
            threads = [thread_of(config)]
            configurable = config.get("configurable") or {}
            ns = configurable.get("checkpoint_ns")
            exact = configurable.get("checkpoint_id") or None
            if exact and ns is None:
                ns = ""
        filters = [eq(NS, meta_value(ns))] if ns is not None else [exists(NS)]
        if exact:
            filters.append(eq(CP, meta_value(exact)))
        remaining = limit
        for thread in threads:
            scanner = _Scanner(self, thread, filters)
            seen: set[tuple[str, str]] = set()
            cache: dict[str, CpHead] = {}
            while not scanner.finished:
                for head in (yield from scanner.step()):
                    ev = head.event
                    if BATCH not in head.stored.meta:  # a batch's blobs are merged on demand
                        cache.setdefault(head.stored.event_id, head)
                    if (ns is not None and ev.ns != ns) or (exact and ev.checkpoint_id != exact):
                        continue
                    if (ev.ns, ev.checkpoint_id) in seen:
                        continue  # a duplicate of a checkpoint already listed
                    seen.add((ev.ns, ev.checkpoint_id))
                    if before_id is not None and ev.checkpoint_id >= before_id:
                        continue
                    if any(ev.filter.get(k, "null") != v for k, v in wanted.items()):
                        continue
                    tup = yield from self.tuple_flow(thread, head, scanner.writes, cache, serde)
                    yield Emit([tup])
                    if remaining is not None:
                        remaining -= 1
                        if remaining <= 0:
                            return

    def actors_flow(self) -> Flow[list[str]]:
        actors: list[str] = []
        token = None
        while True:
            params: dict[str, Any] = {"memoryId": self.log.memory_id, "maxResults": 100}
            if token:
                params["nextToken"] = token
            reply = yield Call("list_actors", params)
            actors.extend(a["actorId"] for a in reply.get("actorSummaries", []))
            token = reply.get("nextToken")
            if not token:
                return actors

    def all_threads_flow(self) -> Flow[list[Thread]]:
        """Every session of every actor that has events (ListActors, ListSessions)."""
        threads: list[Thread] = []
        for actor_id in (yield from self.actors_flow()):
            token = None
            while True:
                params: dict[str, Any] = {
                    "memoryId": self.log.memory_id,
                    "actorId": actor_id,
                    "maxResults": 100,
                    "filter": {"eventFilter": "HAS_EVENTS"},
                }
                if token:
                    params["nextToken"] = token
                reply = yield Call("list_sessions", params)
                threads.extend(Thread(actor_id, s["sessionId"]) for s in reply["sessionSummaries"])
                token = reply.get("nextToken")
                if not token:
                    break
        return threads

    def threads_named_flow(self, thread_id: str, actor_id: str | None) -> Flow[list[Thread]]:
        """The sessions ``thread_id`` of one actor, or of every actor (ListActors)."""
        check_session(thread_id, "thread_id")
        if actor_id is not None:
            return [Thread(check_actor(actor_id), thread_id)]
        actors = yield from self.actors_flow()
        return [Thread(a, thread_id) for a in actors]

    # whole-session reads and rewrites --------------------------------------------------------

    def session_flow(self, thread: Thread) -> Flow[tuple[list[CpHead | WrHead], dict[str, Stored]]]:
        """Every checkpoint and writes event of a thread, oldest first, and its parts."""
        stored: list[Stored] = []
        parts: dict[str, Stored] = {}
        token = None
        while True:
            reply = yield self._page(thread, [exists(KIND)], token)
            for raw in reply.get("events", []):
                item = parse_event(raw)
                if item is None:
                    continue
                if item.kind == KIND_PART:
                    parts[item.event_id] = item
                elif item.kind in (KIND_CP, KIND_WR) and item.is_head:
                    stored.append(item)
            token = reply.get("nextToken")
            if not token:
                break
        heads: list[CpHead | WrHead] = []
        for item in sorted(stored, key=lambda s: s.seq):
            heads += yield from self.decode_all_flow(item, parts)
        return heads, parts

    def delete_thread_flow(self, thread_id: str, actor_id: str | None = None) -> Flow[None]:
        """Delete every checkpoint, writes and part event of the thread (store messages
        and other events of the session stay)."""
        yield from self.flush_flow()
        for thread in (yield from self.threads_named_flow(thread_id, actor_id)):
            self.cache.forget(thread.actor_id, thread.thread_id)
            heads: list[Stored] = []
            parts: dict[str, list[str]] = {}
            token = None
            while True:
                call = self.log.list_call(
                    thread.actor_id, thread.thread_id, [exists(KIND)], payloads=False, token=token
                )
                reply = yield call
                for raw in reply.get("events", []):
                    item = parse_event(raw)
                    if item is None:
                        continue
                    if item.kind in (KIND_CP, KIND_WR) and item.is_head:
                        heads.append(item)
                    elif item.kind == KIND_PART:
                        parts.setdefault(item.meta.get(PART_OF, ""), []).append(item.event_id)
                token = reply.get("nextToken")
                if not token:
                    break
            yield from self.log.delete_heads_flow(thread.actor_id, thread.thread_id, heads, parts)

    def _rewrite_flow(
        self,
        target: Thread,
        heads: Sequence[CpHead | WrHead],
        sources: Mapping[str, CpHead],
        stays: set[str],
    ) -> Flow[None]:
        """Append ``heads`` (in order) to ``target``.

        A reference to an event rewritten here is re-pointed to its copy; to an event
        in ``stays`` it is kept; to any other event (about to be deleted, or in another
        session) the value is carried into the new event instead.
        """
        id_map: dict[str, str] = {}
        for head in heads:
            if isinstance(head, WrHead):
                tags = self.wr_tags(head.event)
                envelope = Envelope([head.event])
                yield from self.log.append_flow(target.actor_id, target.thread_id, envelope, tags)
                continue
            blobs = list(head.event.blobs)
            refs: dict[str, str] = {}
            versions = dict(head.event.versions)
            for ch, eid in head.refs.items():
                source = sources.get(eid)
                if eid in id_map:
                    refs[ch] = id_map[eid]
                elif eid in stays or source is None:
                    refs[ch] = eid
                else:
                    key = (ch, versions.get(ch))
                    value = _blobs(source.event).get(key)
                    if value is None:
                        raise CodecError(
                            f"referenced event {eid} holds no blob for channel {ch!r}",
                            session=target.thread_id,
                            entry_id=head.stored.event_id,
                            stage="refs",
                        )
                    blobs.append(Blob(ch, key[1], value))  # type: ignore[arg-type]  # found: versioned
            event = _with_blobs(head.event, blobs)
            tags = {**self.cp_tags(event), REWRITTEN: "1"}
            raw = yield from self.log.append_flow(
                target.actor_id, target.thread_id, Envelope([event], refs), tags
            )
            if BATCH not in head.stored.meta:  # a batch's copy is several events
                id_map[head.stored.event_id] = raw["eventId"]

    def copy_thread_flow(
        self, source_id: str, target_id: str, actor_id: str | None = None
    ) -> Flow[None]:
        check_session(target_id, "target_thread_id")
        yield from self.flush_flow()
        for source in (yield from self.threads_named_flow(source_id, actor_id)):
            heads, _parts = yield from self.session_flow(source)
            if not heads:
                continue
            target = Thread(source.actor_id, target_id)
            self.cache.forget(target.actor_id, target.thread_id)
            yield from self._rewrite_flow(target, heads, _merged(heads), set())

    def compact_flow(
        self, thread: Thread, choose: Callable[[list[CpHead]], set[tuple[str, str]]]
    ) -> Flow[None]:
        """Keep the checkpoints ``choose`` picks (``(ns, checkpoint_id)``; it gets them
        oldest first)
        and drop the others, with their writes.

        A kept checkpoint that references a dropped event is re-created with that value
        inlined; so are the kept checkpoints after it in its namespace, with their
        writes, so that newest-first order still finds the latest checkpoint first.
        New events are written before old ones are deleted.
        """
        heads, parts = yield from self.session_flow(thread)
        cps = [h for h in heads if isinstance(h, CpHead)]
        everything = _merged(cps)
        writes_of: dict[tuple[str, str], list[WrHead]] = {}
        for h in heads:
            if isinstance(h, WrHead):
                writes_of.setdefault((h.event.ns, h.event.checkpoint_id), []).append(h)
        keep = choose(cps)
        dropped = [h for h in cps if (h.event.ns, h.event.checkpoint_id) not in keep]
        if not dropped:
            return
        gone = {h.stored.event_id for h in dropped}
        dropped_ids = {id(h) for h in dropped}
        rewrite: list[CpHead | WrHead] = []
        by_ns: dict[str, list[CpHead]] = {}
        for h in cps:
            by_ns.setdefault(h.event.ns, []).append(h)
        # an event holding a dropped checkpoint goes, so whatever else it holds moves;
        # with batches anywhere, simply rewrite every kept checkpoint
        batched = any(BATCH in h.stored.meta for h in heads)
        for ns_heads in by_ns.values():
            kept = [h for h in ns_heads if id(h) not in dropped_ids]
            start = (
                0
                if batched and kept
                else next(
                    (i for i, h in enumerate(kept) if gone.intersection(h.refs.values())), None
                )
            )
            if start is None:
                continue
            for h in kept[start:]:
                rewrite.append(h)
                rewrite.extend(writes_of.get((h.event.ns, h.event.checkpoint_id), []))
        moved = {h.stored.event_id for h in rewrite}
        stays = {h.stored.event_id for h in cps} - gone - moved
        yield from self._rewrite_flow(thread, rewrite, everything, stays)
        heads_and_writes: list[Any] = [
            w for h in dropped for w in [h, *writes_of.get((h.event.ns, h.event.checkpoint_id), [])]
        ]
        old = [h.stored for h in rewrite] + [w.stored for w in heads_and_writes]
        old = list({o.event_id: o for o in old}.values())  # batch heads share an event
        by_seq: dict[str, list[str]] = {}
        for part in parts.values():
            by_seq.setdefault(part.meta.get(PART_OF, ""), []).append(part.event_id)
        self.cache.forget(thread.actor_id, thread.thread_id)
        yield from self.log.delete_heads_flow(thread.actor_id, thread.thread_id, old, by_seq)

    def prune_flow(
        self, thread_ids: Sequence[str], strategy: str, actor_id: str | None = None
    ) -> Flow[None]:
        if strategy not in ("keep_latest", "delete"):
            raise ConfigError(f"prune strategy must be 'keep_latest' or 'delete', got {strategy!r}")
        yield from self.flush_flow()
        for thread_id in thread_ids:
            if strategy == "delete":
                yield from self.delete_thread_flow(thread_id, actor_id)
                continue
            for thread in (yield from self.threads_named_flow(thread_id, actor_id)):
                yield from self.compact_flow(thread, _latest_with_delta_history)

    def delete_for_runs_flow(self, run_ids: Sequence[str]) -> Flow[None]:
        """Every session of every actor is asked, per run, for checkpoints of that run
        (ListEvents with a ``ss.run`` filter); the sessions that have some are compacted."""
        runs = sorted({r for r in run_ids if isinstance(r, str) and r})
        if not runs:
            return
        yield from self.flush_flow()
        doomed = set(runs)
        for thread in (yield from self.all_threads_flow()):
            hit = False
            for run in runs:
                call = self.log.list_call(
                    thread.actor_id,
                    thread.thread_id,
                    [eq(RUN, meta_value(run))],
                    payloads=False,
                    max_results=1,
                )
                reply = yield call
                if reply.get("events"):
                    hit = True
                    break
            if hit:
                yield from self.compact_flow(
                    thread,
                    lambda cps: {
                        (h.event.ns, h.event.checkpoint_id)
                        for h in cps
                        if h.event.run_id not in doomed
                    },
                )

    # delta channels ---------------------------------------------------------------------------

    def delta_flow(
        self, config: RunnableConfig, channels: Sequence[str], serde: SerializerProtocol
    ) -> Flow[dict[str, DeltaChannelHistory]]:
        """``get_delta_channel_history`` over one newest-first scan of the namespace.

        Same contract as the base class (walk the parent chain, collect each
        ancestor's writes, stop per channel at the first ancestor holding a value), but
        ancestors and their writes come from ListEvents pages instead of one get_tuple
        each.
        """
        if not channels:
            return {}
        yield from self.flush_flow()
        thread = thread_of(config)
        ns = ns_of(config)
        target = get_checkpoint_id(config)
        walk = _Ancestors(self, thread, ns)
        head = yield from (walk.find(target) if target else walk.latest())
        collected: dict[str, list[PendingWrite]] = {c: [] for c in channels}
        seeds: dict[str, Any] = {}
        remaining = set(channels)
        cache: dict[str, CpHead] = {}
        cursor = head.event.parent_id if head is not None else None
        while cursor and remaining:
            ancestor = yield from walk.find(cursor)
            if ancestor is None:
                break
            pending = self.pending_writes(walk.writes, ns, cursor, serde)
            for write in reversed(pending):
                if write[1] in remaining:
                    collected[write[1]].append(write)
            values = yield from self.values_flow(thread, ancestor, cache, serde, only=remaining)
            for ch in list(remaining):
                if ch in values:
                    seeds[ch] = values[ch]
                    remaining.discard(ch)
            cursor = ancestor.event.parent_id
        result: dict[str, DeltaChannelHistory] = {}
        for ch in channels:
            entry: DeltaChannelHistory = {"writes": list(reversed(collected[ch]))}
            if ch in seeds:
                entry["seed"] = seeds[ch]
            result[ch] = entry
        return result


def _merged(heads: Iterable[CpHead | WrHead]) -> dict[str, CpHead]:
    """Per event id, one checkpoint head carrying the blobs of every checkpoint the
    event holds (a batch holds several), to resolve references to that event."""
    out: dict[str, CpHead] = {}
    for h in heads:
        if not isinstance(h, CpHead):
            continue
        eid = h.stored.event_id
        if eid not in out:
            out[eid] = h
        else:
            blobs = [*out[eid].event.blobs, *h.event.blobs]
            out[eid] = CpHead(out[eid].stored, _with_blobs(out[eid].event, blobs), out[eid].refs)
    return out


def _latest_per_ns(cps: list[CpHead]) -> set[tuple[str, str]]:
    latest = {h.event.ns: h.event.checkpoint_id for h in cps}  # oldest first: the last wins
    return set(latest.items())


def _latest_with_delta_history(cps: list[CpHead]) -> set[tuple[str, str]]:
    """What ``prune(keep_latest)`` keeps: each namespace's latest checkpoint and the
    ancestors its delta channels are rebuilt from (see :mod:`streamstate.adapters._delta`).
    The delta channels are read from the events' ``filter``: the flow has no serde."""
    by_key = {(h.event.ns, h.event.checkpoint_id): h for h in cps}
    holders = _merged(cps)

    def deltas(key: tuple[str, str]) -> set[str]:
        event = by_key[key].event
        return filter_delta_channels(event.filter, (ch for ch, _ in event.versions))

    def stores(key: tuple[str, str]) -> set[str]:
        return _stored_channels(by_key[key], holders)

    def parent(key: tuple[str, str]) -> tuple[str, str] | None:
        up = (key[0], by_key[key].event.parent_id or "")
        return up if up in by_key else None

    return with_delta_ancestors(_latest_per_ns(cps), deltas=deltas, stores=stores, parent=parent)


def _stored_channels(head: CpHead, holders: Mapping[str, CpHead]) -> set[str]:
    """The channels a checkpoint has a value of, as :meth:`SaverCore.values_flow`
    resolves them: its own blob, else the one its reference names (an event outside
    ``holders`` is read at get_tuple time: it counts as a value)."""
    own = _blobs(head.event)
    out: set[str] = set()
    for ch, ver in head.event.versions:
        typed = own.get((ch, ver))
        if typed is None and head.refs.get(ch):
            holder = holders.get(head.refs[ch])
            if holder is None:
                out.add(ch)
                continue
            typed = _blobs(holder.event).get((ch, ver))
        if typed is not None and typed[0] != "empty":
            out.add(ch)
    return out


def _with_blobs(event: CheckpointPut, blobs: list[Blob]) -> CheckpointPut:
    return CheckpointPut(
        ns=event.ns,
        checkpoint_id=event.checkpoint_id,
        parent_id=event.parent_id,
        checkpoint=event.checkpoint,
        metadata=event.metadata,
        blobs=blobs,
        filter=event.filter,
        run_id=event.run_id,
        created_at=event.created_at,
        versions=event.versions,
    )


MARGIN_MS = 2_000
"""Allowance for clock and latency differences between a write and its listing order."""
REWRITTEN = "ss.rw"
"""Metadata of checkpoint events re-created by copy/prune: their writes follow them."""
_UUID_EPOCH = 0x01B21DD213814000  # 100 ns intervals from 1582-10-15 to 1970-01-01


def writes_after_ms(head: CpHead) -> int:
    """A time (ms) before which none of the checkpoint's writes was appended.

    Writes name their checkpoint, so they are appended after LangGraph created it:
    after the time in its uuid6 id. A re-created checkpoint event is appended before
    its writes. Other ids: the event's own time (writes race the put by its latency).
    """
    own = head.stored.seq // 1000
    if REWRITTEN in head.stored.meta:
        return own
    try:
        value = uuid.UUID(head.event.checkpoint_id)
    except ValueError:
        return own
    if value.version != 6:
        return own
    stamp = ((value.int >> 80) << 12) | ((value.int >> 64) & 0x0FFF)
    return (stamp - _UUID_EPOCH) // 10_000


class _Scanner:
    """Pages a thread's checkpoint and writes events newest first.

    A checkpoint is released once the scan has reached events older than
    ``writes_after_ms`` (minus a margin) or the end: all its writes are in hand then,
    whatever order they were stored in. Released checkpoints keep listing order.
    """

    def __init__(self, core: SaverCore, thread: Thread, filters: list[dict[str, Any]]) -> None:
        self.core = core
        self.thread = thread
        self.filters = filters
        self.writes: list[WrHead] = []
        self.held: deque[CpHead] = deque()
        self.first: CpHead | None = None
        self.oldest_ms: int | None = None
        self.token: str | None = None
        self.done = False

    @property
    def finished(self) -> bool:
        return self.done and not self.held

    def step(self) -> Flow[list[CpHead]]:
        """Read the next page; return the checkpoints it releases."""
        if not self.done:
            reply = yield self.core._page(self.thread, self.filters, self.token)
            for raw in reply.get("events", []):
                stored = parse_event(raw)
                if stored is None or stored.kind not in (KIND_CP, KIND_WR) or not stored.is_head:
                    continue
                ms = stored.seq // 1000
                self.oldest_ms = ms if self.oldest_ms is None else min(self.oldest_ms, ms)
                decoded = yield from self.core.decode_all_flow(stored)
                self.writes += [h for h in decoded if isinstance(h, WrHead)]
                for head in reversed(decoded):  # a batch holds its checkpoints oldest first
                    if isinstance(head, CpHead):
                        self.held.append(head)
                        self.first = self.first or head
            self.token = reply.get("nextToken")
            self.done = not self.token
        released: list[CpHead] = []
        while self.held and (
            self.done
            or (
                self.oldest_ms is not None
                and self.oldest_ms < writes_after_ms(self.held[0]) - MARGIN_MS
            )
        ):
            released.append(self.held.popleft())
        return released


class _Ancestors:
    """Checkpoints of one namespace by id, each with its writes complete (delta walks)."""

    def __init__(self, core: SaverCore, thread: Thread, ns: str) -> None:
        self.scanner = _Scanner(core, thread, [eq(NS, meta_value(ns))])
        self.ns = ns
        self.ready: dict[str, CpHead] = {}

    @property
    def writes(self) -> list[WrHead]:
        return self.scanner.writes

    def latest(self) -> Flow[CpHead | None]:
        while self.scanner.first is None and not self.scanner.done:
            self._keep((yield from self.scanner.step()))
        return self.scanner.first

    def find(self, checkpoint_id: str) -> Flow[CpHead | None]:
        while checkpoint_id not in self.ready and not self.scanner.finished:
            self._keep((yield from self.scanner.step()))
        return self.ready.get(checkpoint_id)

    def _keep(self, heads: list[CpHead]) -> None:
        for head in heads:
            if head.event.ns == self.ns:
                self.ready.setdefault(head.event.checkpoint_id, head)
