"""``streamstate export``: a thread's runs, super-steps and tasks as OpenTelemetry spans.

Checked with the SDK's in-memory exporter and against a real OTLP/HTTP endpoint that the
test starts on loopback (it decodes the protobuf ``ExportTraceServiceRequest``).
"""

from __future__ import annotations

import gzip
import http.server
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import valkey
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command
from typing_extensions import TypedDict

from streamstate import ValkeySaver, otel
from streamstate.adapters._checkpoints import Thread
from streamstate.audit import ThreadFold, ValkeyAudit
from streamstate.demo.agent import build_agent, user_message
from streamstate.eventlog.events import CheckpointPut, WritesPut
from tests.cli.conftest import Result, cli_env, run_cli

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode


def exported(spans: list[otel.Span]) -> list[Any]:
    exporter = InMemorySpanExporter()
    assert otel.export_spans(spans, exporter) == len(spans)
    return list(exporter.get_finished_spans())


def by_trace(spans: list[Any]) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for s in spans:
        out.setdefault(s.context.trace_id, []).append(s)
    return out


def run_span(spans: list[Any]) -> Any:
    (root,) = [s for s in spans if s.parent is None]
    return root


def test_a_run_and_its_resume(valkey_url: str, agent_thread: str) -> None:
    spans = exported(otel.thread_spans(valkey_url, agent_thread))
    traces = sorted(by_trace(spans).values(), key=lambda t: run_span(t).start_time)
    assert len(traces) == 2
    first, second = traces
    assert [run_span(t).name for t in traces] == ["run", "resume"]
    assert run_span(first).attributes["streamstate.run.trigger"] == "input"
    assert run_span(first).attributes["langgraph.interrupted"] is True
    assert run_span(second).attributes["langgraph.interrupted"] is False
    assert run_span(first).attributes["streamstate.run.inferred"] is True

    def tasks(trace: list[Any]) -> set[str]:
        return {s.name for s in trace if s.attributes.get("langgraph.node")}

    assert tasks(first) == {"__start__", "research", "agent", "tools", "draft", "review"}
    assert tasks(second) == {"(input)", "review", "publish"}
    for trace in traces:
        ids = {s.context.span_id: s for s in trace}
        for s in trace:
            assert s.resource.attributes["service.name"] == "streamstate"
            assert s.attributes["langgraph.thread_id"] == agent_thread
            assert s.start_time <= s.end_time
            if s.parent is None:
                continue
            parent = ids[s.parent.span_id]  # every parent is in the span's own trace
            assert parent.start_time <= s.start_time and s.end_time <= parent.end_time
    # the subgraph's steps are children of the task that ran it
    ids = {s.context.span_id: s for s in first}
    (research,) = [s for s in first if s.name == "research"]
    for agent in (s for s in first if s.name == "agent"):
        step = ids[agent.parent.span_id]
        assert step.attributes["langgraph.checkpoint_ns"].startswith("research:")
        assert step.parent.span_id == research.context.span_id
    (waiting,) = [s for s in first if s.name == "review"]
    (interrupt,) = [e for e in waiting.events if e.name == "interrupt"]
    assert "Publish this answer?" in interrupt.attributes["langgraph.interrupt.value"]
    assert waiting.attributes["langgraph.interrupted"] is True
    (resumed,) = [s for s in second if s.name == "review"]
    assert [e.name for e in resumed.events].count("resume") == 1
    assert "verdict" in resumed.attributes["langgraph.writes.channels"]


def test_sizes_and_times_are_the_logs(
    valkey_url: str, client: valkey.Valkey, agent_thread: str
) -> None:
    spans = otel.thread_spans(valkey_url, agent_thread)
    audit = ValkeyAudit(client)
    logged: dict[tuple[str, str, str], int] = {}
    times = []
    for entry in audit.entries(("t", agent_thread)):
        ev = entry.event
        times.append(ev.created_at)
        if isinstance(ev, WritesPut):
            key = (ev.ns, ev.checkpoint_id, ev.task_id)
            logged[key] = logged.get(key, 0) + sum(len(w.value[1]) for w in ev.writes)
    spanned: dict[tuple[str, str, str], int] = {}
    for s in spans:
        if s.kind == "task" and s.attributes["langgraph.writes.count"]:
            a = s.attributes
            key = (
                a["langgraph.checkpoint_ns"],
                a["langgraph.checkpoint_id"],
                a["langgraph.task_id"],
            )
            spanned[key] = spanned.get(key, 0) + a["langgraph.writes.bytes"]
    assert spanned == logged  # a task resumed in a second run shares its bytes between them
    assert min(s.start for s in spans) == min(times)
    assert max(s.end for s in spans) == max(times)
    # exporting twice gives the same ids: a collector sees the same spans again
    again = otel.thread_spans(valkey_url, agent_thread)
    assert [(s.trace_id, s.span_id, s.parent_id) for s in again] == [
        (s.trace_id, s.span_id, s.parent_id) for s in spans
    ]


def test_the_log_order_of_background_saves(client: valkey.Valkey, agent_thread: str) -> None:
    """LangGraph saves in the background, so the log order within a run is loose: a
    task's writes (a subgraph's too) can reach the log before the checkpoint that starts
    the run, and a resumed task's writes before the resume value. Runs stay whole."""
    audit = ValkeyAudit(client)
    entries = list(audit.entries(("t", agent_thread)))

    def source(e: Any) -> Any:
        return audit.serde.loads_typed(e.event.metadata).get("source")

    checkpoints = [e for e in entries if isinstance(e.event, CheckpointPut)]
    (start,) = [e for e in checkpoints if e.event.ns == "" and source(e) == "input"]
    writes = [e for e in entries if isinstance(e.event, WritesPut)]
    early = [
        e
        for e in writes
        if e.event.checkpoint_id == start.event.checkpoint_id
        or (e.event.ns.startswith("research:") and e.event.task_path.endswith("__start__"))
    ]
    resumes = [e for e in writes if any(w.channel == "__resume__" for w in e.event.writes)]
    (by_task,) = [e for e in resumes if e.event.task_path.endswith("review")]
    (value,) = [e for e in resumes if e is not by_task]
    rest = [e for e in entries if e not in early and e is not by_task]
    rest.insert(rest.index(value), by_task)  # the task's resume write first
    folded = ThreadFold(Thread(agent_thread))
    for entry in [*early, *rest]:
        folded.apply(entry)
    spans = otel.spans_of(folded, audit.serde)
    runs = [s for s in spans if s.kind == "run"]
    assert [r.name for r in runs] == ["run", "resume"]
    assert len({s.span_id for s in spans}) == len(spans)
    ids = {s.span_id: s for s in spans}
    tasks: dict[str, set[str]] = {}
    for s in spans:
        if s.kind == "task":
            tasks.setdefault(s.trace_id, set()).add(s.name)
            assert ids[s.parent_id or ""].kind == "step"
    assert tasks[runs[0].trace_id] == {"__start__", "research", "agent", "tools", "draft", "review"}
    assert tasks[runs[1].trace_id] == {"(input)", "review", "publish"}


class Numbers(TypedDict):
    x: int


def _failing_graph(saver: ValkeySaver) -> Any:
    def boom(state: Numbers) -> dict[str, Any]:
        raise ValueError("kaput")

    g = StateGraph(Numbers)
    g.add_node("ok", lambda s: {"x": s["x"] + 1})
    g.add_node("boom", boom)
    g.add_edge(START, "ok")
    g.add_edge(START, "boom")
    g.add_edge("ok", END)
    g.add_edge("boom", END)
    return g.compile(checkpointer=saver)


def test_an_error_is_the_tasks_status(valkey_url: str, saver: ValkeySaver) -> None:
    thread_id = f"err-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ValueError, match="kaput"):
        _failing_graph(saver).invoke({"x": 1}, {"configurable": {"thread_id": thread_id}})
    spans = exported(otel.thread_spans(valkey_url, thread_id))
    (boom,) = [s for s in spans if s.name == "boom"]
    assert boom.status.status_code is StatusCode.ERROR
    assert boom.status.description == "ValueError: kaput"
    (event,) = [e for e in boom.events if e.name == "exception"]
    assert dict(event.attributes) == {"exception.type": "ValueError", "exception.message": "kaput"}
    (ok,) = [s for s in spans if s.name == "ok"]
    assert ok.status.status_code is StatusCode.UNSET
    assert run_span(spans).status.status_code is StatusCode.ERROR


def test_run_id_names_the_trace(valkey_url: str, saver: ValkeySaver) -> None:
    thread_id = f"runid-{uuid.uuid4().hex[:8]}"
    run_id = str(uuid.uuid4())
    config: Any = {"configurable": {"thread_id": thread_id}, "metadata": {"run_id": run_id}}
    build_agent(saver).invoke({"messages": [user_message(2)]}, config)
    spans = otel.thread_spans(valkey_url, thread_id)
    (root,) = [s for s in spans if s.kind == "run"]
    assert root.trace_id == uuid.UUID(run_id).hex
    assert root.attributes["langgraph.run_id"] == run_id
    assert root.attributes["streamstate.run.inferred"] is False
    assert {s.trace_id for s in spans} == {root.trace_id}


def test_a_resume_under_the_same_run_id_continues_that_run(
    valkey_url: str, saver: ValkeySaver
) -> None:
    thread_id = f"same-{uuid.uuid4().hex[:8]}"
    run_id = str(uuid.uuid4())
    config: Any = {"configurable": {"thread_id": thread_id}, "metadata": {"run_id": run_id}}
    graph = build_agent(saver)
    graph.invoke({"messages": [user_message(3)]}, config)
    graph.invoke(Command(resume={"approved": True}), config)
    spans = otel.thread_spans(valkey_url, thread_id)
    (root,) = [s for s in spans if s.kind == "run"]
    assert root.attributes["langgraph.run_id"] == run_id
    assert len({s.span_id for s in spans}) == len(spans)
    reviews = [s for s in spans if s.name == "review"]
    assert [e.name for s in reviews for e in s.events if e.name != "writes"] == [
        "interrupt",
        "resume",
    ]


def test_update_state_is_a_run_of_its_own(valkey_url: str, saver: ValkeySaver) -> None:
    thread_id = f"upd-{uuid.uuid4().hex[:8]}"
    graph = _failing_graph(saver)
    config: Any = {"configurable": {"thread_id": thread_id}}
    with pytest.raises(ValueError):
        graph.invoke({"x": 1}, config)
    graph.update_state(config, {"x": 10}, as_node="ok")
    spans = otel.thread_spans(valkey_url, thread_id)
    runs = [s for s in spans if s.kind == "run"]
    assert [r.attributes["streamstate.run.trigger"] for r in runs] == ["input", "update"]
    update = [s for s in spans if s.trace_id == runs[1].trace_id and s.kind == "task"]
    assert [(s.name, s.attributes["langgraph.writes.channels"]) for s in update] == [
        ("(update)", ["x"])
    ]


def test_jsonl(cli: Callable[..., Result], valkey_url: str, agent_thread: str) -> None:
    result = cli("export", agent_thread)
    assert result.code == 0, result.err
    lines = [json.loads(line) for line in result.out.splitlines()]
    expected = [otel.span_json(s) for s in otel.thread_spans(valkey_url, agent_thread)]
    assert lines == json.loads(json.dumps(expected))
    kinds = {line["kind"] for line in lines}
    assert kinds == {"run", "step", "task"}
    assert all(line["start_time_unix_nano"] <= line["end_time_unix_nano"] for line in lines)


# -- a real OTLP/HTTP endpoint -----------------------------------------------------------------


class _Collector(http.server.ThreadingHTTPServer):
    status = 200
    received: list[tuple[str, dict[str, str], ExportTraceServiceRequest]]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.received.append((self.path, headers, request))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[_Collector]:
    server = _Collector(("127.0.0.1", 0), _Handler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind)


def _attrs(key_values: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


def test_otlp_to_a_local_endpoint(
    cli: Callable[..., Result], valkey_url: str, agent_thread: str, collector: _Collector
) -> None:
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    result = cli(
        "export",
        agent_thread,
        "--format",
        "otlp",
        "--endpoint",
        endpoint,
        "--header",
        "x-api-key=secret",
        "--service-name",
        "demo-agent",
        "--json",
    )
    assert result.code == 0, result.err
    expected = otel.thread_spans(valkey_url, agent_thread)
    assert json.loads(result.out) == {
        "spans": len(expected),
        "runs": 2,
        "endpoint": f"{endpoint}/v1/traces",
    }
    got = {}
    for path, headers, request in collector.received:
        assert path == "/v1/traces"
        assert headers["x-api-key"] == "secret"
        assert headers["content-type"] == "application/x-protobuf"
        for resource_spans in request.resource_spans:
            assert _attrs(resource_spans.resource.attributes)["service.name"] == "demo-agent"
            for scope_spans in resource_spans.scope_spans:
                assert scope_spans.scope.name == otel.SCOPE
                for s in scope_spans.spans:
                    got[s.span_id.hex()] = s
    assert len(got) == len(expected)
    for span in expected:
        sent = got[span.span_id]
        assert sent.trace_id.hex() == span.trace_id
        assert (sent.parent_span_id.hex() or None) == span.parent_id
        assert sent.name == span.name
        assert sent.start_time_unix_nano == otel.span_json(span)["start_time_unix_nano"]
        assert sent.end_time_unix_nano == otel.span_json(span)["end_time_unix_nano"]
        assert _attrs(sent.attributes) == span.attributes
        assert [e.name for e in sent.events] == [e.name for e in span.events]
        assert (sent.status.code == sent.status.STATUS_CODE_ERROR) == (span.error is not None)
    review = [s for s in got.values() if s.name == "review"]
    assert any(e.name == "interrupt" for s in review for e in s.events)


def test_otlp_refused(cli: Callable[..., Result], agent_thread: str, collector: _Collector) -> None:
    collector.status = 400
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}/v1/traces"
    result = cli("export", agent_thread, "--format", "otlp", "--endpoint", endpoint)
    assert result.code == 2
    assert f"OTLP export to {endpoint} failed" in result.err
    assert collector.received  # it was sent, and refused


def test_otlp_needs_an_endpoint(valkey_url: str, agent_thread: str) -> None:
    env = {k: v for k, v in cli_env().items() if not k.startswith("OTEL_")}
    result = run_cli("export", agent_thread, "--format", "otlp", "--url", valkey_url, env=env)
    assert result.code == 2 and "no OTLP endpoint" in result.err
    for args, message in (
        (("--format", "zipkin"), "--format must be jsonl or otlp"),
        (("--format", "otlp", "--endpoint", "ftp://x"), "must be an http(s) URL"),
        (("--format", "otlp", "--endpoint", "http://x:1", "--header", "novalue"), "KEY=VALUE"),
    ):
        bad = run_cli("export", agent_thread, *args, "--url", valkey_url, env=env)
        assert bad.code == 2 and message in bad.err, bad
