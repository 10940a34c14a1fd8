"""Minimal CLI until the full one lands: ``streamstate demo`` appends and reads back."""

from __future__ import annotations

import time
import uuid

from streamstate.connection import client_from_url
from streamstate.eventlog.events import Write, WritesPut
from streamstate.eventlog.valkey import ValkeyEventLog
from streamstate.server import ensure_server


def app(argv: list[str]) -> int:
    if not argv or argv[0] != "demo":
        print("usage: streamstate demo")
        return 2
    server = ensure_server()
    print(f"embedded valkey-server at {server.url} (data in {server.data_dir})")
    log = ValkeyEventLog(client_from_url(server.url))
    session = ("demo", uuid.uuid4().hex[:8])
    events = [
        WritesPut(
            "", "cp-1", f"task-{i}", "", [Write(0, "messages", ("json", b'"hello"'))], time.time()
        )
        for i in range(3)
    ]
    result = log.append(session, events, idempotency_key="demo-1")
    again = log.append(session, events, idempotency_key="demo-1")
    print(
        f"appended {len(result.ids)} events; retried append was a duplicate: {not again.appended}"
    )
    for entry in log.read(session):
        print(f"  {entry.id}  {type(entry.event).__name__} task={entry.event.task_id}")
    return 0
