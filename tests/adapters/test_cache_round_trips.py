"""Round-trip budget of ValkeyCache: one per get batch, one per set batch (INFO commandstats).

These read global counters, so each test gets a server of its own.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import valkey

from streamstate.adapters.cache import ValkeyCache
from streamstate.projections.cache import SCRIPTS

_SCRIPT_CALLS = ("evalsha", "eval")
# What the cache's scripts run inside the server: commandstats reports those too.
_INNER = {m.lower() for s in SCRIPTS for m in re.findall(r"redis\.call\('(\w+)'", s.source)}


def round_trips(counter: Any) -> int:
    """Requests a client sent: script calls plus commands no cache script runs itself."""
    return sum(
        n
        for name, n in counter.delta.items()
        if name in _SCRIPT_CALLS or (name not in _INNER and not name.startswith("client|"))
    )


KEYS = [((f"ns{i % 3}", "child"), f"key-{i}") for i in range(10)]


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_one_round_trip_per_batch(
    private_server: Any, count_commands: Any, flavour: str
) -> None:
    stats = valkey.Valkey.from_url(private_server.url)
    async with ValkeyCache.from_conn_string(private_server.url, ttl=60) as cache:

        async def run(method: str, *args: Any) -> Any:
            if flavour == "sync":
                return getattr(cache, method)(*args)
            return await getattr(cache, "a" + method)(*args)

        # Load both scripts and open the connection first: neither is per-batch cost.
        await run("set", {"warm": (0, 1)})
        await run("clear", [("warm",)])
        await run("get", ["warm"])

        pairs = {key: ({"i": i}, 0.5 + i) for i, key in enumerate(KEYS)}
        with count_commands(stats) as set_count:
            await run("set", pairs)
        assert round_trips(set_count) == 1, set_count.delta
        assert set_count.delta.get("evalsha") == 1
        assert set_count.delta.get("set") == 10  # each entry with its own PX, inside the script

        with count_commands(stats) as get_count:
            got = await run("get", KEYS)
        assert got == {key: {"i": i} for i, key in enumerate(KEYS)}
        assert round_trips(get_count) == 1, get_count.delta
        assert get_count.delta == {"mget": 1}

        with count_commands(stats) as clear_count:
            await run("clear", [("ns0", "child"), ("ns1", "child")])
        assert round_trips(clear_count) == 1, clear_count.delta

        with count_commands(stats) as clear_all:
            await run("clear")
        assert round_trips(clear_all) == 1, clear_all.delta
        assert "keys" not in clear_all.delta and "scan" not in clear_all.delta

        with count_commands(stats) as empty:
            assert await run("get", []) == {}
            await run("set", {})
            await run("clear", [])
        assert round_trips(empty) == 0, empty.delta
    stats.close()
