"""``streamstate threads``: the registered threads with activity, checkpoints and size.

Each test writes under a key prefix of its own, so a listing sees its threads only.
"""

from __future__ import annotations

import io
import json
import math
import random
import re
import string
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import valkey
from langgraph.checkpoint.base import empty_checkpoint
from rich.console import Console

from streamstate import AgentCoreValkeySaver, ValkeySaver
from streamstate import inspect as si
from streamstate._inspect_cli import threads_table
from streamstate.audit import ValkeyAudit
from streamstate.eventlog.keys import Keyspace
from streamstate.projections.checkpoints import thread_keys, threads_registry
from streamstate.server import EmbeddedServer
from tests.cli.conftest import run_cli


@pytest.fixture
def prefix() -> str:
    return f"th{uuid.uuid4().hex[:8]}"


@pytest.fixture
def pclient(valkey_url: str) -> Iterator[valkey.Valkey]:
    c = valkey.Valkey.from_url(valkey_url)
    yield c
    c.close()


def put_checkpoints(
    saver: ValkeySaver,
    thread_id: str,
    n: int,
    *,
    size: int = 10,
    metadata: dict[str, Any] | None = None,
    actor_id: str | None = None,
) -> None:
    """``n`` checkpoints on a thread, each with a ``size``-character channel value."""
    rng = random.Random(f"{thread_id}-{n}-{size}")
    conf: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if actor_id is not None:
        conf["actor_id"] = actor_id
    config: Any = {"configurable": conf}
    for i in range(n):
        cp = empty_checkpoint()
        # random letters: the log compresses values, a repeated one would take no room
        cp["channel_values"] = {"data": "".join(rng.choices(string.ascii_letters, k=size))}
        cp["channel_versions"] = {"data": i + 1}
        meta = {"source": "loop", "step": i, **(metadata or {})}
        config = saver.put(config, cp, meta, {"data": i + 1})


def next_millisecond(client: valkey.Valkey) -> None:
    """Return once the server's clock has moved past the current millisecond."""
    seconds, micros = client.time()
    start = seconds * 1000 + micros // 1000
    while True:
        seconds, micros = client.time()
        if seconds * 1000 + micros // 1000 > start:
            return


def listing(url: str, prefix: str, *args: str) -> dict[str, Any]:
    result = run_cli("--prefix", prefix, "threads", "--json", *args, "--url", url)
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_figures_are_the_servers(valkey_url: str, pclient: valkey.Valkey, prefix: str) -> None:
    saver = ValkeySaver(pclient, prefix=prefix)
    put_checkpoints(saver, "small", 1)
    put_checkpoints(saver, "many", 6)
    put_checkpoints(saver, "big", 2, size=50_000)
    got = {t["thread_id"]: t for t in listing(valkey_url, prefix, "--sort", "id")["threads"]}
    assert list(got) == ["big", "many", "small"]
    for tid, n in (("small", 1), ("many", 6), ("big", 2)):
        keys = thread_keys(Keyspace(prefix).session(("t", tid)))
        last = pclient.xrevrange(keys[0], count=1)[0][0].decode()
        row = got[tid]
        assert (
            row["checkpoints"] == n == len(list(saver.list({"configurable": {"thread_id": tid}})))
        )
        assert row["events"] == pclient.xlen(keys[0])
        assert row["last_entry_id"] == last
        assert row["last_activity"] == si.iso(int(last.split("-")[0]) / 1000)
        assert row["bytes"] == sum(pclient.memory_usage(k) or 0 for k in keys)
        assert row["expires_at"] is None


def test_sorts(valkey_url: str, pclient: valkey.Valkey, prefix: str) -> None:
    saver = ValkeySaver(pclient, prefix=prefix)
    put_checkpoints(saver, "a", 3)
    put_checkpoints(saver, "b", 1, size=40_000)
    put_checkpoints(saver, "c", 5)
    next_millisecond(pclient)  # activity is compared by the millisecond
    put_checkpoints(saver, "a", 1)  # the last activity
    order = {
        sort: [t["thread_id"] for t in listing(valkey_url, prefix, "--sort", sort)["threads"]]
        for sort in si.SORTS
    }
    assert order["activity"] == ["a", "c", "b"]
    assert order["checkpoints"] == ["c", "a", "b"]
    assert order["id"] == ["a", "b", "c"]
    assert order["size"][0] == "b"
    sizes = [t["bytes"] for t in listing(valkey_url, prefix, "--sort", "size")["threads"]]
    assert sizes == sorted(sizes, reverse=True)
    assert listing(valkey_url, prefix)["sort"] == "activity"  # the default


@pytest.mark.parametrize("sort", si.SORTS)
def test_pages_cover_the_listing_once(
    valkey_url: str, pclient: valkey.Valkey, prefix: str, sort: str
) -> None:
    saver = ValkeySaver(pclient, prefix=prefix)
    for k in range(7):
        put_checkpoints(saver, f"t{k}", 1 + k % 3, size=10 + 1000 * (k % 4))
    whole = listing(valkey_url, prefix, "--sort", sort, "--limit", "100")
    assert whole["total"] == 7 and whole["next"] is None
    seen: list[str] = []
    after: list[str] = []
    offsets = []
    while True:
        page = listing(valkey_url, prefix, "--sort", sort, "--limit", "3", *after)
        assert page["total"] == 7
        offsets.append(page["offset"])
        seen += [t["thread_id"] for t in page["threads"]]
        if page["next"] is None:
            break
        after = ["--after", page["next"]]
    assert seen == [t["thread_id"] for t in whole["threads"]]
    assert offsets == [0, 3, 6]


def test_filters(valkey_url: str, pclient: valkey.Valkey, prefix: str) -> None:
    saver = ValkeySaver(pclient, prefix=prefix)
    actors = AgentCoreValkeySaver(pclient, prefix=prefix)
    put_checkpoints(saver, "team-1", 1, metadata={"run_id": "run-x"})
    put_checkpoints(saver, "team-2", 1)
    put_checkpoints(saver, "solo", 2, metadata={"run_id": "run-x"})
    put_checkpoints(actors, "team-3", 1, actor_id="alice")
    put_checkpoints(actors, "other", 1, actor_id="alice")
    put_checkpoints(actors, "team-4", 1, actor_id="bob")

    def ids(*args: str) -> list[tuple[str | None, str]]:
        rows = listing(valkey_url, prefix, "--sort", "id", *args)["threads"]
        return [(t["actor_id"], t["thread_id"]) for t in rows]

    assert ids("--prefix", "team-") == [
        (None, "team-1"),
        (None, "team-2"),
        ("alice", "team-3"),
        ("bob", "team-4"),
    ]
    assert ids("--actor", "alice") == [("alice", "other"), ("alice", "team-3")]
    assert ids("--actor", "alice", "--prefix", "team") == [("alice", "team-3")]
    assert ids("--run", "run-x") == [(None, "solo"), (None, "team-1")]
    assert ids("--run", "no-such-run") == []


def test_expired_registrations_are_not_listed(
    valkey_url: str, pclient: valkey.Valkey, prefix: str
) -> None:
    saver = ValkeySaver(pclient, prefix=prefix)
    put_checkpoints(saver, "live", 1)
    # a thread whose TTL ran out stays in the registry until the next prune
    pclient.zadd(threads_registry(Keyspace(prefix)), {"t,gone": 1})
    page = si.threads(ValkeyAudit(pclient, prefix=prefix))
    assert [t.thread_id for t in page.threads] == ["live"]


def test_a_ttl_thread_reports_when_it_expires(valkey_url: str, pclient: valkey.Valkey) -> None:
    prefix = f"ttl{uuid.uuid4().hex[:8]}"
    saver = ValkeySaver(pclient, prefix=prefix, ttl=3600)
    put_checkpoints(saver, "short-lived", 1)
    (row,) = si.threads(ValkeyAudit(pclient, prefix=prefix)).threads
    assert row.expires_at is not None and math.isfinite(row.expires_at)
    assert row.expires_at > row.last_activity


def test_errors_are_one_line(valkey_url: str, pclient: valkey.Valkey, prefix: str) -> None:
    put_checkpoints(ValkeySaver(pclient, prefix=prefix), "t1", 1)
    put_checkpoints(ValkeySaver(pclient, prefix=prefix), "t2", 1)
    page = listing(valkey_url, prefix, "--sort", "id", "--limit", "1")
    assert page["next"] is not None
    cases: list[tuple[tuple[str, ...], str]] = [
        (("--sort", "colour"), "sort must be one of"),
        (("--after", "not-a-cursor"), "is not a cursor"),
        (("--sort", "size", "--after", page["next"]), "sorted by id"),
    ]
    for args, message in cases:
        result = run_cli("--prefix", prefix, "threads", *args, "--url", valkey_url)
        assert result.code == 2, result
        assert message in result.err and "Traceback" not in result.err


def test_table_fits_80_columns(valkey_url: str, pclient: valkey.Valkey, prefix: str) -> None:
    saver = ValkeySaver(pclient, prefix=prefix)
    long_id = "a-thread-id-that-is-far-too-long-for-any-table-column-" + "x" * 40
    put_checkpoints(saver, long_id, 2)
    put_checkpoints(saver, "short", 1, size=5000)
    page = si.threads(ValkeyAudit(pclient, prefix=prefix), sort="id", limit=1)
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(threads_table(page, 80))
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "threads 1-1 of 2, by id" in lines[0]
    row = next(line for line in lines if "a-thread-id" in line)
    assert "…" in row and " 2 " in row  # the id is cut, the figures are whole

    text = run_cli("--prefix", prefix, "threads", "--url", valkey_url)
    assert text.code == 0, text.err
    assert "threads 1-2 of 2, by activity" in text.out
    assert "short" in text.out and long_id in text.out  # piped: wide enough for whole ids


def round_trips(counter: Any) -> int:
    """Requests the client sent: script calls and commands no script ran (the counter's
    own list of script commands does not know THREAD_STATS)."""
    source = si.THREAD_STATS.source + si.REGISTRY_SCAN.source
    inner = {m.lower() for m in re.findall(r"'([A-Z]{2,})'", source)}
    inner.add("memory|usage")  # commandstats names a subcommand with its command
    return sum(
        n for k, n in counter.delta.items() if k not in inner and not k.startswith("client|")
    )


def test_one_script_call_per_page_of_threads(
    private_server: EmbeddedServer, count_commands: Callable[..., Any], monkeypatch: Any
) -> None:
    client = valkey.Valkey.from_url(private_server.url)
    saver = ValkeySaver(client)
    for k in range(10):
        next_millisecond(client)
        put_checkpoints(saver, f"t{k:02}", 1)
    monkeypatch.setattr(si, "STATS_PAGE", 4)
    audit = ValkeyAudit(client)
    si.threads(audit, sort="id", limit=1)  # loads the script: counted calls find it cached
    with count_commands(client) as by_id:
        page = si.threads(audit, sort="id", limit=3)
    assert [t.thread_id for t in page.threads] == ["t00", "t01", "t02"]
    # one page of each registry (threads, layout 1's sessions), then one call measures
    # the page
    assert by_id.scripts == 3
    assert round_trips(by_id) == 3, by_id.delta
    with count_commands(client) as by_activity:
        page = si.threads(audit, sort="activity", limit=3)
    assert [t.thread_id for t in page.threads] == ["t09", "t08", "t07"]
    assert by_activity.scripts == 2 + math.ceil(10 / 4) + 1
    assert round_trips(by_activity) == by_activity.scripts, by_activity.delta
    client.close()
