"""``rebuild [--verify]`` and ``stats``: the views against the logs, on a keyspace of its own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import valkey

from streamstate import ValkeySaver
from streamstate.demo.agent import build_agent
from tests.cli.conftest import run_agent, run_cli


@pytest.fixture
def loaded(valkey_url: str, client: valkey.Valkey) -> Iterator[tuple[str, list[str]]]:
    """A prefix of this test's own holding three agent threads (so --verify sees only them)."""
    prefix = f"cli{uuid.uuid4().hex[:8]}"
    saver = ValkeySaver(client, prefix=prefix)
    graph = build_agent(saver)
    threads = [f"load-{i}" for i in range(3)]
    for i, thread_id in enumerate(threads):
        run_agent(graph, thread_id, i)
    yield prefix, threads
    for thread_id in threads:
        saver.delete_thread(thread_id)


def _cli(valkey_url: str, prefix: str, *args: str):
    return run_cli("--prefix", prefix, *args, "--url", valkey_url)


def test_verify_clean_then_damaged_then_rebuilt(
    valkey_url: str, client: valkey.Valkey, loaded: tuple[str, list[str]]
) -> None:
    prefix, threads = loaded
    clean = _cli(valkey_url, prefix, "rebuild", "--verify", "--json")
    assert clean.code == 0, clean.out + clean.err
    report = json.loads(clean.out)
    assert report["ok"] is True and report["differences"] == []
    assert sorted(s[1] for s in report["checked"]) == threads

    keys = ValkeySaver(client, prefix=prefix).log.keyspace.session(("t", threads[1]))
    fields = client.hkeys(keys.view("v"))
    cps_field = next(f for f in fields if f.startswith(b"c:"))
    blob_field = next(f for f in fields if f.startswith(b"b:"))
    client.hdel(keys.view("v"), cps_field, blob_field)

    damaged = _cli(valkey_url, prefix, "rebuild", "--verify")
    assert damaged.code == 1, damaged.out + damaged.err
    lines = [line for line in damaged.out.splitlines() if line.startswith("✗")]
    assert any(
        f"t/{threads[1]} v [{cps_field.decode()}]: missing from the live view" in line
        for line in lines
    )
    assert any(f"t/{threads[1]} v [{blob_field.decode()}]" in line for line in lines)
    assert "2 differences in 1 of 3 sessions" in damaged.out
    # The shadow keyspace is gone again.
    assert not list(client.scan_iter(match=f"{prefix}:verify:*", count=1000))

    rebuilt = _cli(valkey_url, prefix, "rebuild", "--session", threads[1])
    assert rebuilt.code == 0, rebuilt.err
    assert "rebuilt 1 sessions" in rebuilt.out
    assert client.hexists(keys.view("v"), cps_field)
    again = _cli(valkey_url, prefix, "rebuild", "--verify", "--json")
    assert json.loads(again.out)["ok"] is True


def test_stats(valkey_url: str, client: valkey.Valkey, loaded: tuple[str, list[str]]) -> None:
    prefix, threads = loaded
    result = _cli(valkey_url, prefix, "stats", "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert sorted(s["session"][1] for s in doc["sessions"]) == threads
    keyspace = ValkeySaver(client, prefix=prefix).log.keyspace
    for s in doc["sessions"]:
        assert s["events"] == client.xlen(keyspace.session(s["session"]).log)
        assert s["bytes"] == sum(s["keys"].values()) > 0
        assert set(s["keys"]) == {"log", "v", "z"}
    assert doc["total"]["events"] == sum(s["events"] for s in doc["sessions"])
    assert int(doc["server_memory"]["used_memory"]) > 0
    table = _cli(valkey_url, prefix, "stats")
    assert "3 sessions" in table.out and "server memory: used_memory" in table.out


def test_rebuild_refuses_a_trimmed_log(
    valkey_url: str, client: valkey.Valkey, loaded: tuple[str, list[str]]
) -> None:
    prefix, threads = loaded
    keys = ValkeySaver(client, prefix=prefix).log.keyspace.session(("t", threads[0]))
    client.xtrim(keys.log, maxlen=3, approximate=False)
    before = client.hgetall(keys.view("v"))
    result = _cli(valkey_url, prefix, "rebuild", "--session", threads[0])
    assert result.code == 1, result.out + result.err
    assert f"skipped t/{threads[0]}: the log was trimmed (3 of" in result.out
    assert client.hgetall(keys.view("v")) == before
