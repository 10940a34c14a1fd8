"""``streamstate check``: what a real server's settings mean for streamstate's data."""

from __future__ import annotations

import json
from pathlib import Path

import valkey

from streamstate.server import EmbeddedServer
from streamstate.server_check import Finding, check_server, worst
from streamstate.testing.replication import ReplicaSet
from tests.cli.conftest import run_cli


def _by_topic(findings: list[Finding]) -> dict[str, Finding]:
    return {f.topic: f for f in findings}


def test_the_embedded_server_puts_nothing_at_risk(private_server: EmbeddedServer) -> None:
    found = _by_topic(check_server(valkey.Valkey.from_url(private_server.url)))
    assert list(found) == [
        "server", "persistence", "replication", "eviction", "stream nodes", "scripting"
    ]  # fmt: skip
    assert found["persistence"].status == "ok" and "everysec" in found["persistence"].message
    assert found["replication"].status == "note"  # one server: no replica
    assert found["eviction"].status == "ok" and "noeviction" in found["eviction"].message
    assert found["stream nodes"].status == "ok" and "512" in found["stream nodes"].message
    assert found["scripting"].status == "ok"
    result = run_cli("check", "--url", private_server.url)
    assert result.code == 0, result.out + result.err
    assert result.out.splitlines()[-1] == "nothing puts acknowledged data at risk"
    doc = json.loads(run_cli("check", "--url", private_server.url, "--json").out)
    assert doc["verdict"] == "note"
    assert [f["topic"] for f in doc["findings"]] == list(found)


def test_settings_that_lose_data_are_risks(private_server: EmbeddedServer) -> None:
    client = valkey.Valkey.from_url(private_server.url)
    client.config_set("appendonly", "no")
    client.config_set("save", "")
    client.config_set("maxmemory", 100 << 20)
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.config_set("stream-node-max-bytes", 4096)
    found = _by_topic(check_server(client))
    assert found["persistence"].status == "risk"
    assert "no AOF and no RDB snapshots" in found["persistence"].message
    assert found["eviction"].status == "risk" and "allkeys-lru" in found["eviction"].message
    assert found["stream nodes"].status == "note" and "4,096" in found["stream nodes"].message
    client.config_set("save", "3600 1")
    assert "RDB snapshots only" in _by_topic(check_server(client))["persistence"].message
    result = run_cli("check", "--url", private_server.url)
    assert result.code == 1, result.out + result.err
    assert "✗ eviction: maxmemory-policy allkeys-lru" in result.out
    assert result.out.splitlines()[-1] == "2 risks to acknowledged data or to operations"


def test_eviction_policies_as_the_reliability_docs_rank_them(
    private_server: EmbeddedServer,
) -> None:
    client = valkey.Valkey.from_url(private_server.url)
    client.config_set("maxmemory-policy", "allkeys-lru")
    # no memory limit: nothing is ever evicted, whatever the policy
    assert _by_topic(check_server(client))["eviction"].status == "ok"
    client.config_set("maxmemory", 100 << 20)
    expected = {"noeviction": "ok", "volatile-lru": "note", "volatile-ttl": "note",
                "allkeys-lru": "risk", "allkeys-random": "risk"}  # fmt: skip
    for policy, status in expected.items():
        client.config_set("maxmemory-policy", policy)
        assert _by_topic(check_server(client))["eviction"].status == status, policy


def test_a_user_without_config_or_scripts(private_server: EmbeddedServer) -> None:
    admin = valkey.Valkey.from_url(private_server.url)
    admin.acl_setuser(
        "limited", enabled=True, passwords=["+limited-pw"], keys=["*"], channels=["*"],
        commands=["+@all", "-config", "-eval", "-evalsha", "-script"],
    )  # fmt: skip
    limited = valkey.Valkey(
        host="127.0.0.1", port=private_server.port, username="limited", password="limited-pw"
    )
    found = _by_topic(check_server(limited))
    # what INFO still says is used; what only CONFIG says is unknown, never guessed
    assert (
        found["persistence"].status == "ok"
        and "appendfsync unknown" in found["persistence"].message
    )
    assert found["eviction"].status == "ok" and "noeviction" in found["eviction"].message
    assert found["stream nodes"].status == "note" and "unknown" in found["stream nodes"].message
    assert found["scripting"].status == "risk" and "cannot run Lua" in found["scripting"].message
    assert worst(found.values()) == "risk"


def test_replicas_and_the_replica_itself(tmp_path: Path) -> None:
    with ReplicaSet(tmp_path / "rs", replicas=1) as rs:
        primary = _by_topic(check_server(rs.primary.client()))
        assert primary["replication"].status == "ok"
        assert "1 connected replica" in primary["replication"].message
        assert "wait_replicas=1" in primary["replication"].message
        replica = _by_topic(check_server(rs.replicas[0].client()))
        assert replica["replication"].status == "risk"
        assert "role slave" in replica["server"].message


def test_an_unreachable_server_is_one_line_and_exit_2() -> None:
    result = run_cli("check", "--url", "valkey://127.0.0.1:1")
    assert result.code == 2
    assert result.err.startswith("streamstate: error: cannot reach valkey://127.0.0.1:1")
    assert "Traceback" not in result.err
