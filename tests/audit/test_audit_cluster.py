"""The audit commands on a Valkey Cluster, where every thread has a slot of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.types import Command

from streamstate import ValkeySaver, inspect, otel
from streamstate.audit import ValkeyAudit
from streamstate.connection import client_from_url
from streamstate.demo.agent import build_agent, user_message
from streamstate.testing.cluster import LocalCluster


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyAudit]:
    cluster = LocalCluster(Path(tmp_path_factory.mktemp("cluster")), primaries=3, replicas=0)
    cluster.start()
    client = client_from_url(cluster.url)
    try:
        graph = build_agent(ValkeySaver(client))
        for i in range(4):
            config: Any = {"configurable": {"thread_id": f"cl-{i}"}}
            graph.invoke({"messages": [user_message(i)]}, config)
            graph.invoke(Command(resume={"approved": True}), config)
        yield ValkeyAudit(client)
    finally:
        client.close()
        cluster.stop()


def test_threads_on_a_cluster(audit: ValkeyAudit) -> None:
    assert audit.log.cluster
    for sort in inspect.SORTS:
        seen: list[str] = []
        after = None
        while True:
            page = inspect.threads(audit, sort=sort, limit=3, after=after)
            assert page.total == 4
            for row in page.threads:
                assert row.checkpoints == 11 and row.events == 22 and row.bytes
            seen += [t.thread_id for t in page.threads]
            if page.next is None:
                break
            after = page.next
        assert sorted(seen) == [f"cl-{i}" for i in range(4)]
        if sort == "activity":
            assert seen == ["cl-3", "cl-2", "cl-1", "cl-0"]


def test_diff_time_and_spans_on_a_cluster(audit: ValkeyAudit) -> None:
    found = inspect.diff(audit, "cl-1")
    assert [c.channel for c in found.channels if c.change == "added"] == ["answer"]
    newest = inspect.checkpoint_at(audit, "cl-2", "now")
    assert newest.step == 4 and newest.source == "loop"
    spans = otel.thread_spans(audit, "cl-3")
    assert [s.name for s in spans if s.kind == "run"] == ["run", "resume"]
