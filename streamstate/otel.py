"""A thread's log as OpenTelemetry spans: one per run, super-step and task.

The log already says what ran and when: each checkpoint (its step, source and time),
each task's writes (node, channels, sizes, time), interrupts, resumes and errors. This
module turns a thread's entries into spans, after the fact, with no instrumentation in
the graph:

* a **run** span per run: the run ``run_id`` names in the checkpoint metadata, or, when
  the metadata carries none (LangGraph's own ``invoke`` records none), a run inferred
  from the log: an input checkpoint starts one, so do a ``Command(resume=...)`` and an
  ``update_state``. Each run is its own trace.
* a **step** span per super-step a run worked on: the tasks run from one checkpoint, up
  to the checkpoint they made. A step interrupted in one run and resumed in the next
  appears in both.
* a **task** span per task of a step: its node, the channels it wrote and their sizes,
  an event per write entry, interrupts and resumes as events, an error as the span's
  status. A subgraph's steps are children of the task that ran the subgraph.

Times come from the log: ``created_at`` of checkpoints and writes (the saver's clock),
else the entry id (the server's). A step starts when the checkpoint it runs from was
made, a task ends with its last write. Trace and span ids are derived from the thread,
the run and the step or task, so exporting a thread twice gives the same ids.

:func:`span_json` renders spans as JSON lines without any dependency;
:func:`export_spans` and :func:`export_otlp` need the ``otel`` extra
(``opentelemetry-sdk``, ``opentelemetry-exporter-otlp-proto-http``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from langgraph.checkpoint.serde.base import SerializerProtocol

from streamstate.audit import Target, connect, jsonable
from streamstate.errors import ConfigError, StreamstateError
from streamstate.eventlog.events import CheckpointPut, LogEntry, WritesPut
from streamstate.eventlog.keys import SessionName, session_tag
from streamstate.fold import ThreadFold, node_of
from streamstate.inspect import checkpoint_time, entry_time, iso

__all__ = [
    "ExportFailed",
    "Span",
    "SpanEvent",
    "export_otlp",
    "export_spans",
    "readable_spans",
    "span_json",
    "spans_of",
    "thread_spans",
]

VALUE_CHARS = 1000
"""Interrupt, resume and error values are kept as JSON of at most this many characters
(write values never leave the log: only their channels and sizes)."""
SCOPE = "streamstate.otel"
_UPDATE_PATH = "~__interrupt__, "
"""The task path LangGraph gives the writes of ``update_state``."""


class ExportFailed(StreamstateError):
    """The OTLP endpoint did not accept the spans; the message names it."""


@dataclasses.dataclass(frozen=True)
class SpanEvent:
    name: str
    time: float
    """Unix seconds."""
    attributes: dict[str, Any]


@dataclasses.dataclass
class Span:
    """One span, in plain data (see :func:`readable_spans` for the SDK's form)."""

    kind: str
    """``run``, ``step`` or ``task``."""
    name: str
    trace_id: str
    """32 hex digits."""
    span_id: str
    """16 hex digits."""
    parent_id: str | None
    start: float
    """Unix seconds."""
    end: float
    attributes: dict[str, Any]
    events: list[SpanEvent] = dataclasses.field(default_factory=list)
    error: str | None = None
    """The status message of a failed span (``None``: not failed)."""


# -- ids ---------------------------------------------------------------------------------------


def _hex(data: str, size: int) -> str:
    digest = hashlib.blake2b(data.encode(), digest_size=size).hexdigest()
    return digest if int(digest, 16) else "1".rjust(2 * size, "0")  # all-zero ids are invalid


def _trace_id(thread_tag: str, run_id: str | None, first_entry: str) -> str:
    if run_id is not None:
        try:
            return uuid.UUID(run_id).hex  # the run's own id, as LangSmith uses it
        except ValueError:
            return _hex(f"run|{run_id}", 16)
    return _hex(f"{thread_tag}|{first_entry}", 16)


# -- runs --------------------------------------------------------------------------------------


def _node(task_path: str, task_id: str) -> str:
    if task_path.startswith(_UPDATE_PATH):
        return "(update)"
    return node_of(task_path, task_id)


@dataclasses.dataclass
class _Run:
    trigger: str
    """What started it: ``start`` (the log's beginning), ``input``, ``resume``,
    ``update``, ``fork`` or ``run`` (a new run_id)."""
    entries: list[LogEntry] = dataclasses.field(default_factory=list)
    run_id: str | None = None
    root_checkpoints: int = 0


def _resumes(event: WritesPut) -> bool:
    return any(w.channel == "__resume__" for w in event.writes)


def _runs(entries: Sequence[LogEntry], meta: Mapping[str, dict[str, Any]]) -> list[_Run]:
    """The thread's entries cut into runs (see the module docstring for the rules).

    Runs of one thread follow each other (``invoke`` returns once its saves are done),
    but within a run LangGraph saves in the background, so the log order is loose: a
    task's writes, even a subgraph's checkpoint, can reach the log before the checkpoint
    that starts the run, and a resumed task's writes before the resume value. So a
    ``__resume__`` write of any task starts a resume run, unless the run already has
    one from another task (each task writes one per resume); and once runs are cut, a
    write logged in an earlier run than the checkpoint it is against moves to that
    checkpoint's run.
    """
    runs: list[_Run] = []
    cur: _Run | None = None
    resumed: set[tuple[str, str]] = set()
    """(ns, task id) of the ``__resume__`` writes of the current run."""
    for entry in entries:
        ev = entry.event
        trigger: str | None = None
        run_id: str | None = None
        if isinstance(ev, CheckpointPut):
            m = meta[entry.id]
            found = ev.run_id or m.get("run_id")
            run_id = found if isinstance(found, str) and found else None
            if ev.ns == "":
                source = m.get("source")
                if source in ("update", "fork"):
                    # its writes came first and opened the run already
                    opened = (
                        cur is not None and cur.trigger == "update" and not cur.root_checkpoints
                    )
                    trigger = None if opened else str(source)
                elif source == "input":
                    trigger = "input"
                elif cur is not None and run_id and cur.run_id and run_id != cur.run_id:
                    trigger = "run"
        elif isinstance(ev, WritesPut):
            if _resumes(ev):
                task = (ev.ns, ev.task_id)
                if not resumed or task in resumed:
                    trigger = "resume"
                    resumed = set()
                resumed.add(task)
            elif (
                ev.ns == ""
                and ev.task_path.startswith(_UPDATE_PATH)
                and not (cur is not None and cur.trigger == "update" and not cur.root_checkpoints)
            ):
                trigger = "update"
        if trigger is not None and trigger != "resume":
            resumed = set()
        if cur is None or trigger is not None:
            cur = _Run(trigger or "start")
            runs.append(cur)
        cur.entries.append(entry)
        if run_id is not None and cur.run_id is None:
            cur.run_id = run_id
        if isinstance(ev, CheckpointPut) and ev.ns == "":
            cur.root_checkpoints += 1
    _regroup_early_writes(runs, entries)
    # Entries of a run saved in the background can reach the log before the checkpoint
    # that opens it (a subgraph's checkpoint, a task's writes): a leading run with no
    # root checkpoint of its own belongs to the run that follows it.
    runs = [r for r in runs if r.entries]
    while len(runs) > 1 and runs[0].trigger == "start" and runs[0].root_checkpoints == 0:
        first = runs.pop(0)
        runs[0].entries[:0] = first.entries
        runs[0].run_id = runs[0].run_id or first.run_id
    # A run_id the metadata names is the authority: a resume under the same run_id (a
    # config reused for Command(resume=...)) continues that run.
    merged: list[_Run] = []
    for run in runs:
        last = merged[-1] if merged else None
        if last is not None and run.run_id is not None and run.run_id == last.run_id:
            last.entries += run.entries
            last.root_checkpoints += run.root_checkpoints
        else:
            merged.append(run)
    return merged


def _regroup_early_writes(runs: list[_Run], entries: Sequence[LogEntry]) -> None:
    """Move each write logged in an earlier run than its checkpoint to that checkpoint's
    run, keep log order within runs, and drop runs left empty."""
    position = {e.id: k for k, e in enumerate(entries)}
    run_of: dict[tuple[str, str], int] = {}
    for r, run in enumerate(runs):
        for e in run.entries:
            if isinstance(e.event, CheckpointPut):
                run_of.setdefault((e.event.ns, e.event.checkpoint_id), r)
    moved = False
    for r, run in enumerate(runs):
        kept = []
        for e in run.entries:
            ev = e.event
            later = run_of.get((ev.ns, ev.checkpoint_id), r) if isinstance(ev, WritesPut) else r
            if later > r:
                runs[later].entries.append(e)
                moved = True
            else:
                kept.append(e)
        run.entries = kept
    if moved:
        for run in runs:
            run.entries.sort(key=lambda e: position[e.id])
        runs[:] = [run for run in runs if run.entries]


# -- spans -------------------------------------------------------------------------------------


def _value(value: Any) -> str:
    text = json.dumps(jsonable(value), ensure_ascii=False, default=str)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def _error_parts(value: Any) -> tuple[str, str]:
    if isinstance(value, BaseException):
        return type(value).__name__, str(value)
    text = str(value)
    name, paren, rest = text.partition("(")
    if paren and name.isidentifier() and rest.endswith(")"):  # "ValueError('kaput')"
        return name, rest[:-1].strip("'\"")
    return "Error", text


def _parent_task(ns: str) -> tuple[str, str, str] | None:
    """A subgraph namespace's parent: ``(parent ns, task id, node)``."""
    if not ns:
        return None
    parent, _, last = ns.rpartition("|")
    node, _, task_id = last.partition(":")
    return (parent, task_id, node) if task_id else None


class _Builder:
    """Spans of one run."""

    def __init__(
        self,
        folded: ThreadFold,
        serde: SerializerProtocol,
        meta: Mapping[str, dict[str, Any]],
        run: _Run,
        index: int,
    ) -> None:
        self.folded = folded
        self.serde = serde
        self.meta = meta
        self.run = run
        self.ids = {e.id for e in run.entries}
        thread = folded.thread
        self.common: dict[str, Any] = {"langgraph.thread_id": thread.thread_id}
        if thread.actor_id is not None:
            self.common["langgraph.actor_id"] = thread.actor_id
        self.trace = _trace_id(session_tag(thread.session), run.run_id, run.entries[0].id)
        self.index = index
        self.steps: dict[tuple[str, str], Span] = {}
        self.tasks: dict[tuple[str, str, str], Span] = {}
        self.inputs: list[tuple[str, SpanEvent]] = []
        """Input checkpoints of subgraphs: events of the task that ran the subgraph."""

    def span_id(self, key: str) -> str:
        return _hex(f"{self.trace}|{self.run.entries[0].id}|{key}", 8)

    def time_of(self, entry: LogEntry) -> float:
        ev = entry.event
        if isinstance(ev, CheckpointPut):
            return checkpoint_time(entry.id, ev)
        if isinstance(ev, WritesPut) and ev.created_at > 0:
            return ev.created_at
        return entry_time(entry.id)

    def step_of(self, ns: str, parent: str, at: float) -> Span:
        key = (ns, parent)
        span = self.steps.get(key)
        if span is None:
            found = self.folded.checkpoints.get(key)
            start = at
            step = None
            if found is not None:
                step_meta = self.meta.get(found[0], {})
                meta_step = step_meta.get("step")
                step = meta_step + 1 if isinstance(meta_step, int) else None
                if found[0] in self.ids:
                    start = min(at, checkpoint_time(*found))
            attrs = {
                **self.common,
                "langgraph.checkpoint_ns": ns,
                "langgraph.parent_checkpoint_id": parent,
            }
            if step is not None:
                attrs["langgraph.step"] = step
            span = Span(
                "step",
                "step" if step is None else f"step {step}",
                self.trace,
                self.span_id(f"step|{ns}|{parent}"),
                None,  # set once every task is known (a subgraph's parent task)
                start,
                at,
                attrs,
            )
            self.steps[key] = span
        span.start, span.end = min(span.start, at), max(span.end, at)
        return span

    def task_of(self, ns: str, parent: str, task_id: str, node: str, at: float) -> Span:
        key = (ns, parent, task_id)
        span = self.tasks.get(key)
        if span is None:
            step = self.step_of(ns, parent, at)
            attrs = {
                **self.common,
                "langgraph.node": node,
                "langgraph.task_id": task_id,
                "langgraph.checkpoint_ns": ns,
                "langgraph.checkpoint_id": parent,
                "langgraph.writes.count": 0,
                "langgraph.writes.bytes": 0,
                "langgraph.writes.channels": [],
            }
            if "langgraph.step" in step.attributes:
                attrs["langgraph.step"] = step.attributes["langgraph.step"]
            span = Span(
                "task",
                node,
                self.trace,
                self.span_id(f"task|{ns}|{parent}|{task_id}"),
                step.span_id,
                step.start,
                at,
                attrs,
            )
            self.tasks[key] = span
        span.end = max(span.end, at)
        return span

    def build(self) -> list[Span]:
        run = self.run
        times = [self.time_of(e) for e in run.entries]
        root = Span(
            "run",
            {"resume": "resume", "update": "update", "fork": "fork"}.get(run.trigger, "run"),
            self.trace,
            self.span_id("run"),
            None,
            min(times),
            max(times),
            {
                **self.common,
                "streamstate.run.index": self.index,
                "streamstate.run.trigger": run.trigger,
                "streamstate.run.inferred": run.run_id is None,
                "streamstate.entries": len(run.entries),
                "streamstate.first_entry_id": run.entries[0].id,
                "streamstate.last_entry_id": run.entries[-1].id,
                "langgraph.checkpoints": run.root_checkpoints,
            },
        )
        if run.run_id is not None:
            root.attributes["langgraph.run_id"] = run.run_id
        subgraph_parents: dict[str, str] = {}
        for entry, at in zip(run.entries, times):
            ev = entry.event
            if isinstance(ev, CheckpointPut):
                meta = self.meta[entry.id]
                attrs = {
                    "langgraph.checkpoint_id": ev.checkpoint_id,
                    "langgraph.checkpoint_ns": ev.ns,
                    "langgraph.source": str(meta.get("source")),
                    "streamstate.entry_id": entry.id,
                }
                if isinstance(meta.get("step"), int):
                    attrs["langgraph.step"] = meta["step"]
                parents = meta.get("parents")
                if ev.ns and isinstance(parents, dict):
                    link = _parent_task(ev.ns)
                    if link is not None and isinstance(parents.get(link[0]), str):
                        subgraph_parents[ev.ns] = parents[link[0]]
                if ev.parent_id is not None:
                    step = self.step_of(ev.ns, ev.parent_id, at)
                    step.events.append(SpanEvent("checkpoint", at, attrs))
                    step.attributes["langgraph.checkpoint_id"] = ev.checkpoint_id
                elif ev.ns == "":
                    root.events.append(SpanEvent("checkpoint", at, attrs))
                else:
                    self.inputs.append((ev.ns, SpanEvent("checkpoint", at, attrs)))
            elif isinstance(ev, WritesPut):
                node = _node(ev.task_path, ev.task_id)
                task = self.task_of(ev.ns, ev.checkpoint_id, ev.task_id, node, at)
                task.attributes["langgraph.task_path"] = ev.task_path
                self.add_writes(task, entry, ev, at)
        # A subgraph's step may need a task (and so a step) made up for it: repeat until
        # every step, the made-up ones too, has its parent.
        while orphans := [(k, s) for k, s in self.steps.items() if s.parent_id is None]:
            for (ns, _parent), step in orphans:
                step.parent_id = self.parent_for(ns, step, root, subgraph_parents)
        for span in [*self.steps.values(), *self.tasks.values()]:
            root.start, root.end = min(root.start, span.start), max(root.end, span.end)
        interrupted = [t for t in self.tasks.values() if t.attributes.get("langgraph.interrupted")]
        failed = [t for t in self.tasks.values() if t.error is not None]
        root.attributes["langgraph.interrupted"] = bool(interrupted)
        if failed:
            root.error = f"{len(failed)} task(s) failed: " + ", ".join(t.name for t in failed)
        self._nest()
        return [root, *self.steps.values(), *self.tasks.values()]

    def parent_for(self, ns: str, step: Span, root: Span, links: Mapping[str, str]) -> str:
        """A step's parent: the run, or the task that ran its subgraph (made up from the
        subgraph's metadata when that task wrote nothing in this run)."""
        found = _parent_task(ns)
        if found is None:
            return root.span_id
        parent_ns, task_id, node = found
        for (tns, _p, tid), task in self.tasks.items():
            if tns == parent_ns and tid == task_id:
                return task.span_id
        parent_cp = links.get(ns)
        if parent_cp is None:
            return root.span_id
        task = self.task_of(parent_ns, parent_cp, task_id, node, step.start)
        task.start = min(task.start, step.start)
        return task.span_id

    def _nest(self) -> None:
        """Parents cover their children: a task running a subgraph lasts as long as it."""
        by_id = {s.span_id: s for s in [*self.steps.values(), *self.tasks.values()]}
        for ns, event in self.inputs:
            link = _parent_task(ns)
            owner = None
            if link is not None:
                owner = next(
                    (t for (tns, _p, tid), t in self.tasks.items() if (tns, tid) == link[:2]),
                    None,
                )
            if owner is not None:
                owner.events.append(event)
        changed = True
        while changed:
            changed = False
            for span in by_id.values():
                parent = by_id.get(span.parent_id or "")
                if parent is None:
                    continue
                start, end = min(parent.start, span.start), max(parent.end, span.end)
                if (start, end) != (parent.start, parent.end):
                    parent.start, parent.end = start, end
                    changed = True

    def add_writes(self, task: Span, entry: LogEntry, ev: WritesPut, at: float) -> None:
        attrs = task.attributes
        size = sum(len(w.value[1]) for w in ev.writes)
        channels = sorted({w.channel for w in ev.writes})
        attrs["langgraph.writes.count"] += len(ev.writes)
        attrs["langgraph.writes.bytes"] += size
        known = attrs["langgraph.writes.channels"]
        attrs["langgraph.writes.channels"] = sorted({*known, *channels})
        task.events.append(
            SpanEvent(
                "writes",
                at,
                {
                    "langgraph.writes.channels": channels,
                    "langgraph.writes.bytes": size,
                    "langgraph.writes.count": len(ev.writes),
                    "streamstate.entry_id": entry.id,
                },
            )
        )
        for w in ev.writes:
            if w.channel == "__interrupt__":
                attrs["langgraph.interrupted"] = True
                task.events.append(
                    SpanEvent("interrupt", at, {"langgraph.interrupt.value": self.show(w.value)})
                )
            elif w.channel == "__resume__":
                task.events.append(
                    SpanEvent("resume", at, {"langgraph.resume.value": self.show(w.value)})
                )
            elif w.channel == "__error__":
                value = self.serde.loads_typed(w.value)
                kind, message = _error_parts(value)
                task.error = f"{kind}: {message}"
                task.events.append(
                    SpanEvent(
                        "exception", at, {"exception.type": kind, "exception.message": message}
                    )
                )

    def show(self, typed: Any) -> str:
        return _value(self.serde.loads_typed(typed))


def spans_of(folded: ThreadFold, serde: SerializerProtocol) -> list[Span]:
    """The spans of a thread already folded (no I/O), run by run, in log order."""
    meta = {
        entry_id: serde.loads_typed(cp.metadata) or {}
        for entry_id, cp in folded.checkpoints.values()
    }
    for entry in folded.entries:  # a checkpoint put twice keeps each entry's metadata
        if isinstance(entry.event, CheckpointPut) and entry.id not in meta:
            meta[entry.id] = serde.loads_typed(entry.event.metadata) or {}
    out: list[Span] = []
    for index, run in enumerate(_runs(folded.entries, meta)):
        out += _Builder(folded, serde, meta, run, index).build()
    return out


def thread_spans(target: Target, thread: SessionName, *, actor_id: str | None = None) -> list[Span]:
    """A thread's runs, super-steps and tasks as spans, from its log.

    Raises:
        NotFound: The thread has no log.
    """
    with connect(target) as audit:
        return spans_of(audit.fold(thread, actor_id), audit.serde)


# -- output ------------------------------------------------------------------------------------


def _nanos(ts: float) -> int:
    return round(ts * 1_000_000) * 1000


def span_json(span: Span) -> dict[str, Any]:
    """A span as one JSON-able dict (one line of ``export --format jsonl``)."""
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_id,
        "kind": span.kind,
        "name": span.name,
        "start_time": iso(span.start),
        "end_time": iso(span.end),
        "start_time_unix_nano": _nanos(span.start),
        "end_time_unix_nano": _nanos(span.end),
        "attributes": span.attributes,
        "events": [
            {"name": e.name, "time_unix_nano": _nanos(e.time), "attributes": e.attributes}
            for e in span.events
        ],
        "status": {"code": "ERROR", "message": span.error} if span.error else {"code": "UNSET"},
    }


def _otel(module: str = "opentelemetry.sdk.trace") -> Any:
    """A module of the ``otel`` extra; its absence is a ConfigError naming the extra (any
    other import error propagates)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("opentelemetry"):
            raise
        raise ConfigError(
            f"exporting spans needs the otel extra (no module named {exc.name!r}):"
            " pip install 'streamstate[otel]'"
        ) from exc


def readable_spans(spans: Iterable[Span], *, service_name: str = "streamstate") -> list[Any]:
    """The spans as the OpenTelemetry SDK's ``ReadableSpan``s, ready for any exporter."""
    sdk_trace = _otel()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    from streamstate import __version__

    resource = Resource.create({"service.name": service_name})
    scope = InstrumentationScope(SCOPE, __version__)
    flags = TraceFlags(TraceFlags.SAMPLED)

    def context(trace_id: str, span_id: str) -> Any:
        return SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=False, trace_flags=flags)

    out = []
    for s in spans:
        status = Status(StatusCode.ERROR, s.error) if s.error else Status(StatusCode.UNSET)
        out.append(
            sdk_trace.ReadableSpan(
                name=s.name,
                context=context(s.trace_id, s.span_id),
                parent=None if s.parent_id is None else context(s.trace_id, s.parent_id),
                resource=resource,
                attributes=s.attributes,
                events=[sdk_trace.Event(e.name, e.attributes, _nanos(e.time)) for e in s.events],
                kind=SpanKind.INTERNAL,
                status=status,
                start_time=_nanos(s.start),
                end_time=_nanos(s.end),
                instrumentation_scope=scope,
            )
        )
    return out


def export_spans(
    spans: Sequence[Span], exporter: Any, *, service_name: str = "streamstate", batch: int = 512
) -> int:
    """Hand spans to an OpenTelemetry ``SpanExporter`` (the caller keeps and shuts it
    down); returns how many were exported.

    Raises:
        ExportFailed: The exporter reported a failure.
        ConfigError: The ``otel`` extra is missing.
    """
    _otel()
    from opentelemetry.sdk.trace.export import SpanExportResult

    readable = readable_spans(spans, service_name=service_name)
    for start in range(0, len(readable), batch):
        result = exporter.export(readable[start : start + batch])
        if result is not SpanExportResult.SUCCESS:
            raise ExportFailed(
                f"{type(exporter).__name__} did not accept spans {start}..."
                f"{min(start + batch, len(readable)) - 1} of {len(readable)}: {result.name}"
            )
    return len(readable)


def traces_url(endpoint: str | None) -> str:
    """An OTLP/HTTP endpoint as the traces URL: a bare ``http://host:4318`` gets
    ``/v1/traces``, a URL with a path is used as it is. ``None`` takes
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (as it is), else ``OTEL_EXPORTER_OTLP_ENDPOINT``
    (plus ``/v1/traces``), as OpenTelemetry's exporters do."""
    if endpoint is None:
        traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if traces:
            return traces
        if not base:
            raise ConfigError(
                "no OTLP endpoint: pass --endpoint (endpoint=) or set OTEL_EXPORTER_OTLP_ENDPOINT"
            )
        return base.rstrip("/") + "/v1/traces"
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"OTLP endpoint must be an http(s) URL, got {endpoint!r}")
    if parts.path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


def export_otlp(
    spans: Sequence[Span],
    endpoint: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    service_name: str = "streamstate",
) -> int:
    """Send spans to an OTLP/HTTP (protobuf) endpoint; returns how many were sent.

    ``endpoint``: see :func:`traces_url`.

    Raises:
        ExportFailed: The endpoint refused them or could not be reached in ``timeout``.
        ConfigError: The ``otel`` extra is missing, or ``endpoint`` is no http(s) URL.
    """
    exporters = _otel("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    url = traces_url(endpoint)
    exporter = exporters.OTLPSpanExporter(
        endpoint=url, headers=dict(headers or {}), timeout=timeout
    )
    try:
        return export_spans(spans, exporter, service_name=service_name)
    except ExportFailed as exc:
        raise ExportFailed(f"OTLP export to {url} failed: {exc}") from exc
    finally:
        exporter.shutdown()
