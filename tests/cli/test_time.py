"""Time: ``history --since/--until`` and ``show --at``, from the times the log records."""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import valkey

from streamstate import ValkeySaver
from streamstate import inspect as si
from streamstate.audit import ValkeyAudit, describe_tuple
from streamstate.errors import ConfigError, NotFound
from streamstate.eventlog.events import CheckpointPut
from tests.cli.conftest import Result
from tests.cli.test_threads import put_checkpoints

UTC = datetime.timezone.utc


def test_parse_time() -> None:
    now = 1_800_000_000.0
    assert si.parse_time("2h", now=now) == now - 7200
    assert si.parse_time("1d12h", now=now) == now - 86400 - 43200
    assert si.parse_time("90s", now=now) == now - 90
    assert si.parse_time("1w", now=now) == now - 604800
    assert si.parse_time("now", now=now) == now
    assert si.parse_time("1700000000.5") == 1700000000.5
    assert (
        si.parse_time("2026-05-01T12:00:00Z")
        == datetime.datetime(2026, 5, 1, 12, tzinfo=UTC).timestamp()
    )
    assert si.parse_time("2026-05-01T14:00:00+02:00") == si.parse_time("2026-05-01T12:00:00Z")
    naive = datetime.datetime(2026, 5, 1, 12)  # local time, as Python reads a naive time
    assert si.parse_time("2026-05-01T12:00:00") == naive.timestamp()
    assert si.parse_time("2026-05-01") == datetime.datetime(2026, 5, 1).timestamp()
    for bad in ("yesterday", "2 hours", "-2h", ""):
        with pytest.raises(ConfigError, match="--since"):
            si.parse_time(bad, name="--since")


def test_checkpoint_time_falls_back_to_the_entry_id() -> None:
    cp = CheckpointPut("", "c1", None, ("json", b"{}"), ("json", b"{}"), [], {})
    assert cp.created_at == 0.0  # an event written before created_at existed
    assert si.checkpoint_time("1700000000123-4", cp) == 1700000000.123


@pytest.fixture
def timed_thread(saver: ValkeySaver) -> tuple[str, list[dict[str, Any]]]:
    """A thread of five checkpoints; its history rows, oldest first."""
    thread_id = f"time-{uuid.uuid4().hex[:8]}"
    put_checkpoints(saver, thread_id, 5)
    rows = si.history(ValkeyAudit.from_saver(saver), thread_id)[::-1]
    return thread_id, [
        {"id": r.checkpoint_id, "t": r.created_at, "entry": r.entry_id} for r in rows
    ]


def _between(rows: list[dict[str, Any]], k: int) -> float:
    """A moment after checkpoint k was made and before k+1 was."""
    return (rows[k]["t"] + rows[k + 1]["t"]) / 2


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, tz=UTC).isoformat()  # microseconds kept


def test_history_since_until(
    cli: Callable[..., Result], timed_thread: tuple[str, list[dict[str, Any]]]
) -> None:
    thread_id, rows = timed_thread
    assert [r["t"] for r in rows] == sorted(r["t"] for r in rows)

    def ids(*args: str) -> list[str]:
        result = cli("history", thread_id, "--json", *args)
        assert result.code == 0, result.err
        return [r["checkpoint_id"] for r in json.loads(result.out)]

    newest_first = [r["id"] for r in rows][::-1]
    assert ids() == newest_first
    assert ids("--since", _iso(_between(rows, 1))) == newest_first[:3]
    assert ids("--until", _iso(_between(rows, 1))) == newest_first[3:]
    both = ("--since", _iso(_between(rows, 0)), "--until", str(_between(rows, 2)))
    assert ids(*both) == [rows[2]["id"], rows[1]["id"]]
    assert ids(*both, "--limit", "1") == [rows[2]["id"]]
    assert ids("--since", "1h") == newest_first  # made moments ago
    assert ids("--until", "1h") == []
    bad = cli("history", thread_id, "--since", "last tuesday")
    assert bad.code == 2 and "--since" not in bad.out and "is not a time" in bad.err


def test_show_at(
    cli: Callable[..., Result],
    saver: ValkeySaver,
    timed_thread: tuple[str, list[dict[str, Any]]],
) -> None:
    thread_id, rows = timed_thread
    for k in range(4):
        result = cli("show", thread_id, "--at", _iso(_between(rows, k)), "--json")
        assert result.code == 0, result.err
        got = json.loads(result.out)
        assert got["checkpoint_id"] == rows[k]["id"]
        conf = {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": rows[k]["id"]}
        live = saver.get_tuple({"configurable": conf})
        assert got == json.loads(json.dumps(describe_tuple(live), default=str))
    exact = cli("show", thread_id, "--at", str(rows[2]["t"]), "--json")
    assert json.loads(exact.out)["checkpoint_id"] == rows[2]["id"]  # inclusive
    latest = cli("show", thread_id, "--at", "now", "--json")
    assert json.loads(latest.out)["checkpoint_id"] == rows[-1]["id"]
    before = cli("show", thread_id, "--at", _iso(rows[0]["t"] - 1))
    assert before.code == 2 and "was made by" in before.err and "its first is from" in before.err
    both = cli("show", thread_id, rows[0]["id"], "--at", "now")
    assert both.code == 2 and "not both" in both.err


def test_at_is_the_greatest_id_made_by_then(valkey_url: str, client: valkey.Valkey) -> None:
    """A checkpoint put late with an older id (a fork, a copy) does not become current."""
    saver = ValkeySaver(client)
    thread_id = f"late-{uuid.uuid4().hex[:8]}"
    put_checkpoints(saver, thread_id, 3)
    rows = si.history(valkey_url, thread_id)
    assert si.checkpoint_at(valkey_url, thread_id, "now").checkpoint_id == rows[0].checkpoint_id
    with pytest.raises(NotFound):
        si.checkpoint_at(valkey_url, thread_id, "2000-01-01")
    with pytest.raises(NotFound):
        si.checkpoint_at(valkey_url, thread_id, "now", ns="no-such-ns")
