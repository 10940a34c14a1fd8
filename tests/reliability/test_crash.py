"""Crashes: ``kill -9`` of valkey-server in the middle of a checkpoint load.

A writer subprocess puts checkpoints, pending writes and store items, recording every
acknowledged operation in an fsync'd file. The server is SIGKILLed mid-load; the writer
must fail with ``BackendUnavailable`` within its retry budget (never hang), and after a
restart on the same data directory every acknowledged operation is there, the logs
hold nothing twice, and each session's views equal a rebuild from its log.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import valkey

from streamstate.server import EmbeddedServer
from tests.reliability import _support as sup
from tests.reliability._writer import EXIT_UNAVAILABLE

# The writer's own budget: RetryPolicy(attempts=4, budget=2 s, max_wait=0.3 s) with 1 s
# socket timeouts; the store's default policy is shorter in practice against a refused
# port. Everything above that is process start-up slack on a loaded machine.
EXIT_BOUND = 8.0


def crash_cycles(
    tmp_path: Path,
    *,
    appendfsync: str,
    cycles: int,
    writers: int,
    threads: int,
    kill_after: int,
    rewrite_aof: bool = False,
) -> dict[str, Any]:
    """Run ``cycles`` of load, kill -9 and restart; verify; return the figures."""
    data = tmp_path / "data"
    server = EmbeddedServer(data, appendfsync=appendfsync).start()
    port = server.port
    store = f"crash-{uuid.uuid4().hex[:8]}" if sup.store_class() else ""
    files: list[Path] = []
    exit_times: list[float] = []
    try:
        for cycle in range(cycles):
            procs = []
            for w in range(writers):
                path = tmp_path / f"acks-{cycle}-{w}.jsonl"
                files.append(path)
                procs.append(
                    (
                        path,
                        sup.spawn_writer(
                            server.url,
                            path,
                            "--name",
                            f"c{cycle}w{w}",
                            "--prefix",
                            f"crash{cycle}",
                            "--threads",
                            str(threads),
                            "--own",
                            "3",
                            "--fsync",
                            "--store",
                            store,
                        ),
                    )
                )
            try:
                # Kill only once every writer is well into its load.
                for path, proc in procs:
                    got = sup.wait_for_acks(path, kill_after // writers, proc, timeout=60)
                    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
                    assert got >= kill_after // writers
                assert server.pid is not None
                killed_at = time.monotonic()
                sup.kill9(server.pid)
                for path, proc in procs:
                    rc = proc.wait(timeout=EXIT_BOUND + 5)
                    exit_times.append(time.monotonic() - killed_at)
                    err = proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
                    assert rc == EXIT_UNAVAILABLE, (rc, err)
                    errors = [a for a in sup.read_acks(path) if a["op"] == "error"]
                    assert errors and all(e["unavailable"] for e in errors), errors
                    assert all(e["type"] == "BackendUnavailable" for e in errors), errors
            finally:
                for _, proc in procs:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
            assert max(exit_times) < EXIT_BOUND, exit_times
            server = EmbeddedServer(data, appendfsync=appendfsync, port=port).start()
            if rewrite_aof and cycle % 2 == 0:
                # A rewritten (compacted) AOF must survive the next kill as well.
                c = valkey.Valkey.from_url(server.url)
                c.bgrewriteaof()
                while int(c.info("persistence")["aof_rewrite_in_progress"]):
                    time.sleep(0.05)
                c.close()

        client = valkey.Valkey.from_url(server.url)
        acks = sup.read_acks(*files)
        verdict = sup.verify_acknowledged(client, acks, store_collection=store)
        assert not verdict.problems, verdict.problems[:20]
        # A writer thread has at most one call in flight when the server dies; it may
        # have been applied (and made durable) without its reply reaching the writer.
        assert 0 <= verdict.extra_events <= cycles * writers * threads, verdict
        sessions = {("t", a["thread"]) for a in sup.ops_of(acks) if a["op"] != "store"}
        if store:
            sessions.add(("store", store))
        replayed = sup.assert_views_equal_logs(client, sorted(sessions), store=bool(store))
        client.close()
        return {
            "appendfsync": appendfsync,
            "kills": cycles,
            "acknowledged": verdict.acknowledged,
            "puts": verdict.puts,
            "writes": verdict.writes,
            "store_puts": verdict.store_puts,
            "sessions": verdict.sessions,
            "events": verdict.events,
            "applied_unacknowledged": verdict.extra_events,
            "replayed": replayed,
            "max_exit_after_kill_s": round(max(exit_times), 2),
            "lost": 0,
        }
    finally:
        server.stop()


def test_kill9_mid_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """appendfsync=always: one kill -9 under load; every ack survives the restart."""
    figures = crash_cycles(
        tmp_path, appendfsync="always", cycles=1, writers=1, threads=2, kill_after=300
    )
    print("crash figures:", figures)
    assert figures["puts"] > 0 and figures["writes"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("appendfsync", ["always", "everysec"])
def test_repeated_kill9_under_parallel_load(tmp_path: Path, appendfsync: str) -> None:
    """Five kill/restart cycles, two writer processes of three threads each, with AOF
    rewrites between cycles. ``everysec`` is here too: killing the process alone (not
    the machine) loses nothing the kernel already had."""
    figures = crash_cycles(
        tmp_path,
        appendfsync=appendfsync,
        cycles=5,
        writers=2,
        threads=3,
        kill_after=1500,
        rewrite_aof=True,
    )
    print("crash figures:", figures)
