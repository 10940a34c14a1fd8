"""Data written by the previous release (key layout 1) reads the same, then migrates.

The previous release's code is taken from this repository's history and run in a
subprocess against a real server; this release then reads every thread it wrote, keeps
writing to them, and ``streamstate.migrate`` moves the rest and drops layout 1's keys.
"""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest
import valkey
from langgraph.checkpoint.base import empty_checkpoint

from streamstate import AgentCoreValkeySaver, ValkeySaver, migrate
from streamstate.projections.checkpoints import LEGACY_VIEWS

LAYOUT_1_RELEASE = "5cbe117709976050c045ed9cb5bed405bd618afe"
ROOT = Path(__file__).resolve().parents[2]

WRITER = r"""
import pickle, sys
import valkey
from langgraph.checkpoint.base import empty_checkpoint
from streamstate import AgentCoreValkeySaver, ValkeySaver

url, prefix, out = sys.argv[1], sys.argv[2], sys.argv[3]
client = valkey.Valkey.from_url(url)
plain = ValkeySaver(client, prefix=prefix)
ttl = ValkeySaver(client, prefix=prefix, ttl=3600)
actors = AgentCoreValkeySaver(client, prefix=prefix)

def chain(saver, configurable, n, run):
    parent = {"configurable": {**configurable, "checkpoint_ns": ""}}
    version = None
    for i in range(n):
        cp = empty_checkpoint()
        version = saver.get_next_version(version, None)
        big = "x" * 3000 if i == 0 else None
        cp["channel_values"] = {"counter": i, **({"big": big} if big else {})}
        cp["channel_versions"] = {"counter": version, "big": saver.get_next_version(None, None)}
        new = {"counter": version, **({"big": cp["channel_versions"]["big"]} if big else {})}
        parent = saver.put(parent, cp, {"step": i, "run_id": run}, new)
        saver.put_writes(parent, [("out", i), ("__interrupt__", {"q": i})], f"task-{i}")
    sub = {"configurable": {**configurable, "checkpoint_ns": "child:1"}}
    saver.put(sub, empty_checkpoint(), {"step": 0}, {})

chain(plain, {"thread_id": "plain"}, 4, "run-1")
chain(ttl, {"thread_id": "ttl"}, 3, "run-2")
chain(actors, {"thread_id": "shared", "actor_id": "alice"}, 2, "run-1")
chain(actors, {"thread_id": "shared", "actor_id": "bob"}, 2, "run-3")
seen = {}
for saver, name, cfg in ((plain, "plain", {"thread_id": "plain"}),
                         (ttl, "ttl", {"thread_id": "ttl"}),
                         (actors, "alice", {"thread_id": "shared", "actor_id": "alice"}),
                         (actors, "bob", {"thread_id": "shared", "actor_id": "bob"})):
    seen[name] = [tuple(t) for t in saver.list({"configurable": cfg})]
seen["all"] = sorted(str(t.config) for t in plain.list(None))
with open(out, "wb") as f:
    pickle.dump(seen, f)
"""


def _previous_release(tmp: Path) -> Path:
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", LAYOUT_1_RELEASE, "streamstate"],
            check=True,
            capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"the previous release is not in this checkout's history: {exc}")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp, filter="data")
    return tmp


def _tuples(saver: Any, configurable: dict[str, str]) -> list[tuple[Any, ...]]:
    return [tuple(t) for t in saver.list({"configurable": configurable})]


def test_layout_1_data_reads_the_same_then_migrates(valkey_url: str, tmp_path: Path) -> None:
    old = _previous_release(tmp_path / "old")
    prefix = f"up{uuid.uuid4().hex[:6]}"
    out = tmp_path / "seen.pickle"
    subprocess.run(
        [sys.executable, "-c", WRITER, valkey_url, prefix, str(out)],
        check=True,
        env={"PYTHONPATH": str(old), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    seen = pickle.loads(out.read_bytes())
    client = valkey.Valkey.from_url(valkey_url)
    legacy = [k for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    assert any(k.endswith(b":cps") for k in legacy)  # really layout 1

    plain = ValkeySaver(client, prefix=prefix)
    actors = AgentCoreValkeySaver(client, prefix=prefix)
    # Every read answers what the previous release answered.
    assert sorted(str(t.config) for t in plain.list(None)) == seen["all"]
    assert _tuples(plain, {"thread_id": "plain"}) == seen["plain"]
    alice = {"thread_id": "shared", "actor_id": "alice"}
    assert _tuples(actors, alice) == seen["alice"]
    # ... and writing to an old thread continues it (the thread moved on first touch).
    latest = plain.get_tuple({"configurable": {"thread_id": "plain"}})
    cp = empty_checkpoint()
    v = plain.get_next_version(latest.checkpoint["channel_versions"]["counter"], None)
    cp["channel_versions"] = {**latest.checkpoint["channel_versions"], "counter": v}
    cp["channel_values"] = {**latest.checkpoint["channel_values"], "counter": 99}
    nxt = plain.put(latest.config, cp, {"step": 99}, {"counter": v})
    assert plain.get_tuple(nxt).checkpoint["channel_values"] == cp["channel_values"]
    assert client.exists(f"{prefix}:{{t,plain}}:cps") == 0

    report = migrate(ValkeySaver(client, prefix=prefix))
    assert report.ok and report.registries_dropped >= 3
    assert sorted("/".join(s) for s in report.migrated) == ["a/alice/shared", "a/bob/shared",
                                                           "t/plain", "t/ttl"]  # fmt: skip
    left = {k.decode() for k in client.scan_iter(match=f"{prefix}:*", count=1000)}
    assert not {k for k in left if k.rsplit(":", 1)[-1] in LEGACY_VIEWS}, left
    assert not {k for k in left if k.startswith((f"{prefix}:run:", f"{prefix}:actors:"))}
    assert client.scard(f"{prefix}:sessions") == 0
    assert 0 < client.pttl(f"{prefix}:{{t,ttl}}:v") <= 3600_000  # the TTL was kept
    ttl = ValkeySaver(client, prefix=prefix, ttl=3600)
    assert _tuples(ttl, {"thread_id": "ttl"}) == seen["ttl"]
    assert _tuples(actors, {"thread_id": "shared", "actor_id": "bob"}) == seen["bob"]
    plain.delete_for_runs(["run-1"])  # layout 2's run registries were written
    assert plain.get_tuple({"configurable": {"thread_id": "plain"}}).metadata["step"] == 99
    assert actors.get_tuple({"configurable": alice}) is None
    assert migrate(ValkeySaver(client, prefix=prefix)).migrated == []  # nothing left


def test_a_bool_stored_by_the_previous_release_is_still_found(valkey_url: str) -> None:
    """The previous release stored a metadata ``True`` as ``true``; this one stores ``1``
    (``1 == True``). A filter finds checkpoints of either."""
    client = valkey.Valkey.from_url(valkey_url)
    saver = ValkeySaver(client)
    thread = f"bool-{uuid.uuid4().hex[:6]}"
    old = saver.put({"configurable": {"thread_id": thread, "checkpoint_ns": ""}},
                    empty_checkpoint(), {"ok": True, "n": 0}, {})  # fmt: skip
    saver.put(old, empty_checkpoint(), {"ok": True, "n": 1}, {})
    keys = saver.log.keyspace.session(("t", thread))
    field = f"c::{old['configurable']['checkpoint_id']}"
    record = client.hget(keys.view("v"), field)
    entry_id, _, header = record.partition(b"|")
    fields = msgspec.msgpack.decode(header)
    assert fields[0]["ok"] == "1"
    fields[0]["ok"] = "true"  # as the previous release stored it
    client.hset(keys.view("v"), field, entry_id + b"|" + msgspec.msgpack.encode(fields))
    for query in (True, 1, 1.0):
        got = [t.metadata["n"] for t in saver.list({"configurable": {"thread_id": thread}},
                                                   filter={"ok": query})]  # fmt: skip
        assert got == [1, 0], query
    assert list(saver.list({"configurable": {"thread_id": thread}}, filter={"ok": False})) == []


def test_entries_with_a_field_of_a_later_layout_read_the_same(valkey_url: str) -> None:
    """Room for the next layout: an entry may carry fields beyond ``e`` and its values
    (an integrity hash); every reader and a rebuild ignore them."""
    client = valkey.Valkey.from_url(valkey_url)
    saver = ValkeySaver(client)
    thread = f"later-{uuid.uuid4().hex[:6]}"
    cp = empty_checkpoint()
    cp["channel_values"] = {"a": "x" * 500, "b": 2}
    cp["channel_versions"] = {"a": "1", "b": "1"}
    config = saver.put({"configurable": {"thread_id": thread, "checkpoint_ns": ""}}, cp,
                       {"step": 1}, {"a": "1", "b": "1"})  # fmt: skip
    saver.put_writes(config, [("a", "y" * 500), ("b", 3)], "task")
    before = saver.get_tuple(config)
    events = saver.log.read(("t", thread))
    keys = saver.log.keyspace.session(("t", thread))
    entries = client.xrange(keys.log)
    client.delete(keys.log)
    for entry_id, fields in entries:  # the same entries, each with one more field
        client.xadd(keys.log, {**fields, b"h": b"\x00" * 20}, id=entry_id)
    assert saver.log.read(("t", thread)) == events
    client.delete(keys.view("v"))  # rebuilt from the entries with the extra field
    assert saver.get_tuple(config) == before
