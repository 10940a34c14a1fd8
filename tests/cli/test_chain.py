"""The tamper-evident chain: each entry's digest and chain hash, and verify_chain finding
the first entry altered, deleted, inserted or reordered directly on the server."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import valkey
from langgraph.checkpoint.base import empty_checkpoint

from streamstate import ValkeySaver, verify_chain
from tests.cli.conftest import run_cli


def _thread(client: valkey.Valkey, n: int = 6) -> tuple[ValkeySaver, str, list[Any]]:
    saver = ValkeySaver(client)
    thread = f"chain-{uuid.uuid4().hex[:8]}"
    parent: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    for i in range(n // 2):
        cp = empty_checkpoint()
        cp["channel_values"] = {"text": f"step {i} " + "x" * 300}
        cp["channel_versions"] = {"text": saver.get_next_version(None, None)}
        parent = saver.put(parent, cp, {"step": i}, dict(cp["channel_versions"]))
        saver.put_writes(parent, [("out", i)], f"task-{i}")
    keys = saver.log.keyspace.session(("t", thread))
    return saver, thread, client.xrange(keys.log)


def _rewrite(client: valkey.Valkey, log: str, entries: list[Any]) -> None:
    client.delete(log)
    for entry_id, fields in entries:
        client.xadd(log, fields, id=entry_id)


def test_an_untouched_log_verifies_clean(client: valkey.Valkey) -> None:
    saver, thread, entries = _thread(client)
    assert all(b"h" in f and b"d" in f for _id, f in entries)
    report = verify_chain(saver, thread)
    assert report.ok and report.checked == len(entries) and report.unchained == 0
    assert report.head == entries[-1][1][b"h"].decode()


@pytest.mark.parametrize("tamper", ["altered", "deleted", "inserted", "reordered", "truncated"])
def test_each_tampering_is_reported_with_its_entry(client: valkey.Valkey, tamper: str) -> None:
    saver, thread, entries = _thread(client)
    log = saver.log.keyspace.session(("t", thread)).log
    target = entries[2][0].decode()
    if tamper == "altered":  # a value changed in place
        fields = dict(entries[2][1])
        fields[b"0"] = fields[b"0"][:-1] + b"?"
        _rewrite(client, log, [*entries[:2], (entries[2][0], fields), *entries[3:]])
        expected = target
    elif tamper == "deleted":
        client.xdel(log, entries[2][0])
        expected = entries[3][0].decode()
    elif tamper == "inserted":  # a copy of a genuine entry, slipped in after entry 2
        moved = [*entries[:3], (None, entries[1][1]), *entries[3:]]
        renumbered = [(f"1-{n + 1}".encode(), f) for n, (_id, f) in enumerate(moved)]
        _rewrite(client, log, renumbered)
        expected = "1-4"  # the copy
    elif tamper == "reordered":  # entries 2 and 3 swap places (and ids)
        swapped = [(entries[2][0], entries[3][1]), (entries[3][0], entries[2][1])]
        _rewrite(client, log, [*entries[:2], *swapped, *entries[4:]])
        expected = target
    else:  # the newest entry deleted: only the head the views keep shows it
        client.xdel(log, entries[-1][0])
        expected = None
    report = verify_chain(saver, thread)
    assert not report.ok
    assert report.problem == tamper, str(report)
    assert report.entry_id == expected, str(report)
    assert thread in str(report)


def test_the_chain_survives_repair_and_restarts_after_compaction(client: valkey.Valkey) -> None:
    saver, thread, _entries = _thread(client)
    keys = saver.log.keyspace.session(("t", thread))
    client.delete(keys.view("v"))  # repaired from the log on the next read
    assert saver.get_tuple({"configurable": {"thread_id": thread}}) is not None
    assert verify_chain(saver, thread).ok
    saver.prune([thread])  # the log is rewritten: a new chain from its first entry
    report = verify_chain(saver, thread)
    assert report.ok and report.checked == client.xlen(keys.log)


def test_verify_command(valkey_url: str, client: valkey.Valkey) -> None:
    saver, thread, entries = _thread(client)
    ok = run_cli("verify", thread, "--url", valkey_url, "--json")
    assert ok.code == 0, ok.out + ok.err
    assert json.loads(ok.out)[0]["ok"] is True
    client.xdel(saver.log.keyspace.session(("t", thread)).log, entries[1][0])
    bad = run_cli("verify", thread, "--url", valkey_url)
    assert bad.code == 1, bad.out + bad.err
    assert entries[2][0].decode() in bad.out and "deleted" in bad.out
