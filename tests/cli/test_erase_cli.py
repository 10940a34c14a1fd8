"""``streamstate erase``: the receipt as text and JSON, ``--dry-run``, refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import valkey

from streamstate import AgentCoreValkeySaver, ValkeySaver, ValkeyStore
from streamstate.eventlog.keys import Keyspace
from streamstate.server import EmbeddedServer
from tests.audit.test_erase import latest, write_thread
from tests.cli.conftest import cli_env, run_cli


@pytest.fixture
def own(private_server: EmbeddedServer) -> Iterator[valkey.Valkey]:
    c = valkey.Valkey.from_url(private_server.url)
    yield c
    c.close()


def test_erase_dry_run_then_json_receipt(
    private_server: EmbeddedServer, own: valkey.Valkey
) -> None:
    url = private_server.url
    saver = ValkeySaver(own, prefix="acme")
    agents = AgentCoreValkeySaver(own, prefix="acme")
    store = ValkeyStore(own, keyspace=Keyspace("acme"))
    write_thread(saver, "t1", "m-t1", run="r-1")
    write_thread(saver, "t10", "m-t10", run="r-1")
    write_thread(agents, "t1", "m-a-t1", actor="u/1")
    store.put(("memories", "u/1"), "k", {"text": "x"})
    store.put(("memories", "t1"), "k", {"text": "y"})
    store.put(("memories", "t10"), "k", {"text": "z"})
    before = sorted(own.scan_iter(count=1000))

    spaces = ["--store-namespace", "memories/t1", "--store-namespace", '["memories", "u/1"]']
    dry = run_cli("--prefix", "acme", "erase", "--thread", "t1", "--dry-run", "--url", url, *spaces)
    assert dry.code == 0, dry.err
    assert "DRY RUN" in dry.out and "would erase thread 't1'" in dry.out
    assert "2 sessions, 6 checkpoints" in dry.out
    assert sorted(own.scan_iter(count=1000)) == before

    done = run_cli("--prefix", "acme", "erase", "--thread", "t1", "--json", "--url", url, *spaces)
    assert done.code == 0, done.err
    receipt = json.loads(done.out)
    assert receipt["ok"] and not receipt["dry_run"] and receipt["prefix"] == "acme"
    assert receipt["erased"] == {"thread_id": "t1", "actor_id": None}
    totals = receipt["totals"]
    assert totals["threads"] == 2 and totals["checkpoints"] == 6 and totals["store_items"] == 2
    assert totals["keys"]["log"] == 2 and totals["registry_entries"]["runs"] == 1
    assert {(t["actor_id"], t["thread_id"]) for t in receipt["threads"]} == {
        (None, "t1"), ("u/1", "t1")
    }  # fmt: skip
    assert latest(saver, "t1") is None and latest(saver, "t10") == "m-t10-2"
    assert store.get(("memories", "t10"), "k") is not None
    assert store.get(("memories", "u/1"), "k") is None

    again = run_cli("--prefix", "acme", "erase", "--thread", "t1", "--url", url)
    assert again.code == 0 and "0 sessions" in again.out


def test_erase_refuses_without_a_target_and_with_a_bad_namespace(
    private_server: EmbeddedServer,
) -> None:
    url = private_server.url
    bare = run_cli("erase", "--url", url)
    assert bare.code == 2 and "--thread" in bare.err
    bad = run_cli("erase", "--actor", "a", "--store-namespace", "memories//x", "--url", url)
    assert bad.code == 2 and "non-empty" in bad.err


def test_the_receipt_fits_80_columns_and_names_everything_whole(
    private_server: EmbeddedServer, own: valkey.Valkey
) -> None:
    long_id = "thread-" + "x" * 90  # longer than a line: wrapped, never shortened
    saver = ValkeySaver(own)
    write_thread(saver, long_id, "m-long", run="run-" + "y" * 40)
    done = run_cli(
        "erase", "--thread", long_id, "--url", private_server.url, env=cli_env(COLUMNS="80")
    )
    assert done.code == 0, done.err
    lines = done.out.splitlines()
    assert all(len(line) <= 80 for line in lines), [len(line) for line in lines]
    assert "1 session," in done.out
    assert long_id in "".join(line.strip() for line in lines)
