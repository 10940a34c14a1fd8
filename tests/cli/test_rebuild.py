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
    assert "rebuilt 1 session from " in rebuilt.out
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
    assert "3 sessions by size" in table.out and "server memory: " in table.out
    assert " used (peak " in table.out and "views" in table.out and "index" in table.out


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


def test_rebuild_leaves_views_of_an_unreadable_log_untouched(
    valkey_url: str, client: valkey.Valkey, loaded: tuple[str, list[str]]
) -> None:
    """A foreign entry in a thread's log: rebuild reports it by id and changes nothing."""
    prefix, threads = loaded
    keys = ValkeySaver(client, prefix=prefix).log.keyspace.session(("t", threads[2]))
    views = [keys.view("v"), keys.view("z")]
    client.hdel(keys.view("v"), next(f for f in client.hkeys(keys.view("v")) if f[:2] == b"c:"))
    before = {k: client.dump(k) for k in views}
    foreign = client.xadd(keys.log, {"e": b"not an event"}).decode()
    result = _cli(valkey_url, prefix, "rebuild", "--session", threads[2], "--json")
    assert result.code == 1, result.out + result.err
    [skipped] = json.loads(result.out)["skipped"]
    assert skipped["unreadable"] is True and foreign in skipped["reason"]
    assert {k: client.dump(k) for k in views} == before


def test_rebuild_keeps_a_thread_ttl(valkey_url: str, client: valkey.Valkey) -> None:
    prefix = f"ttl{uuid.uuid4().hex[:6]}"
    saver = ValkeySaver(client, prefix=prefix, ttl=600)
    run_agent(build_agent(saver), "ttl-thread", 0)
    keys = saver.log.keyspace.session(("t", "ttl-thread"))
    result = _cli(valkey_url, prefix, "rebuild", "--session", "ttl-thread")
    assert result.code == 0, result.out + result.err
    for key in (keys.log, keys.view("v"), keys.view("z")):
        assert 0 < client.pttl(key) <= 600_000, key
    saver.delete_thread("ttl-thread")


def test_migrate_on_a_current_layout_is_a_no_op(
    valkey_url: str, loaded: tuple[str, list[str]]
) -> None:
    prefix, _threads = loaded
    result = _cli(valkey_url, prefix, "migrate", "--json")
    assert result.code == 0, result.out + result.err
    assert json.loads(result.out) == {
        "ok": True,
        "migrated": [],
        "failed": [],
        "registries_dropped": 0,
    }
