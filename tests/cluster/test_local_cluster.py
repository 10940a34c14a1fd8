"""The test harness's cluster: a node whose port was taken first moves to another."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import valkey

from streamstate.testing import cluster as harness
from streamstate.testing.cluster import LocalCluster


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port (with its cluster-bus twin free) that another socket listens on."""
    port = harness.cluster_ports(1)[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        yield port


def test_a_node_whose_port_is_taken_before_it_binds_moves_on(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = harness.cluster_ports
    calls = iter([lambda n: [taken_port, *real(n - 1)]])
    monkeypatch.setattr(harness, "cluster_ports", lambda n: next(calls, real)(n))
    c = LocalCluster(tmp_path, primaries=3, replicas=0)
    try:
        c.start(timeout=30)
        assert taken_port not in c.ports and len(c.ports) == 3
        client = valkey.ValkeyCluster.from_url(c.url.replace("?cluster=true", ""))
        client.set("k", "v")
        assert client.get("k") == b"v"
    finally:
        c.stop()
