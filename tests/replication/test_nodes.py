"""The test harness's own servers: a taken port is never waited on for 30 s."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamstate.errors import BackendUnavailable
from streamstate.testing import replication
from streamstate.testing.replication import ValkeyNode


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process listens on (here: a bare socket of this one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_chosen_port_taken_before_the_server_binds_it_moves_on(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = iter([taken_port, replication.free_port()])
    monkeypatch.setattr(replication, "free_port", lambda: next(ports))
    node = ValkeyNode(tmp_path / "n")
    assert node.port == taken_port
    try:
        node.start(timeout=10)
        assert node.port != taken_port and node.client().ping()
    finally:
        node.stop()


def test_a_given_port_that_is_taken_fails_at_once_and_says_why(
    tmp_path: Path, taken_port: int
) -> None:
    node = ValkeyNode(tmp_path / "n", port=taken_port)
    # the server's own exit is reported, not a timeout after waiting on someone else's port
    with pytest.raises(BackendUnavailable, match=f"port {taken_port} exited.*in use"):
        node.start(timeout=30)


def test_a_replica_set_that_fails_to_start_stops_what_it_started(
    tmp_path: Path, taken_port: int
) -> None:
    rs = replication.ReplicaSet(tmp_path, replicas=1)
    rs.replicas[0].port, rs.replicas[0]._port_chosen = taken_port, False
    with pytest.raises(BackendUnavailable, match="in use"):
        rs.start(timeout=30)
    assert rs.primary.proc is not None and not rs.primary.alive
