"""Large fan-outs: one ``put_writes`` of 10,000 writes and one ``put`` of 5,000 new
channels, streamstate against every Valkey peer on one server.

``python -m bench fanout [--quick] [--rounds N] [--writes N] [--channels N]``

Each round every saver writes each shape once to a fresh thread, in ABBA order; the
ratio is the peer's time over streamstate's, paired per round (above 1: streamstate is
faster). A saver that fails a shape (a script or command limit) is reported with its
error instead of a time.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Any

from bench.checkpoint_savers import Checkpointer, peers, streamstate
from bench.common import embedded_server


def _writes_shape(n: int) -> tuple[list[tuple[str, Any]], Any]:
    from langgraph.checkpoint.base import empty_checkpoint

    writes = [(f"ch{i % 7}", {"i": i, "text": "x" * 40}) for i in range(n)]
    return writes, empty_checkpoint()


def _channels_shape(n: int, saver: Any) -> tuple[Any, dict[str, Any]]:
    from langgraph.checkpoint.base import empty_checkpoint

    cp = empty_checkpoint()
    version = saver.get_next_version(None, None)
    cp["channel_values"] = {f"c{i}": i for i in range(n)}
    cp["channel_versions"] = {f"c{i}": version for i in range(n)}
    return cp, dict(cp["channel_versions"])


def _time_writes(saver: Any, n: int) -> float:
    writes, cp = _writes_shape(n)
    thread = f"fan-{uuid.uuid4().hex[:8]}"
    config = saver.put({"configurable": {"thread_id": thread, "checkpoint_ns": ""}}, cp, {}, {})
    started = time.perf_counter()
    saver.put_writes(config, writes, "task-fan-out", "")
    elapsed = time.perf_counter() - started
    got = saver.get_tuple(config)
    assert got is not None and len(got.pending_writes) == n, "writes lost"
    return elapsed


def _time_channels(saver: Any, n: int) -> float:
    cp, versions = _channels_shape(n, saver)
    config = {"configurable": {"thread_id": f"wide-{uuid.uuid4().hex[:8]}", "checkpoint_ns": ""}}
    started = time.perf_counter()
    saved = saver.put(config, cp, {}, versions)
    elapsed = time.perf_counter() - started
    got = saver.get_tuple(saved)
    assert got is not None and len(got.checkpoint["channel_values"]) == n, "channels lost"
    return elapsed


def _measure(cp: Checkpointer, url: str, shape: str, n: int) -> float | str:
    opened = cp.open_sync(url, None)
    try:
        fn = _time_writes if shape == "writes" else _time_channels
        return fn(opened.saver, n)
    except Exception as exc:  # a peer's limit: reported, not fatal
        return f"{type(exc).__name__}: {str(exc)[:80]}"
    finally:
        opened.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench fanout", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 rounds, 2,000 writes/channels")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--writes", type=int, default=10_000)
    parser.add_argument("--channels", type=int, default=5_000)
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 5)
    sizes = {"writes": 2_000 if args.quick else args.writes,
             "channels": 2_000 if args.quick else args.channels}  # fmt: skip
    others, missing = peers()
    savers = [streamstate(), *others]
    results: dict[tuple[str, str], list[float | str]] = {}
    with embedded_server() as server:
        for r in range(rounds):
            order = savers if r % 2 == 0 else list(reversed(savers))
            for shape, n in sizes.items():
                for cp in order:
                    results.setdefault((cp.name, shape), []).append(
                        _measure(cp, server.url, shape, n)
                    )
    print(f"# Large fan-outs ({rounds} rounds, one server; ratio = peer time / streamstate time)")
    for name, why in missing.items():
        print(f"* {name}: {why}")
    print()
    print("| shape | saver | seconds (median) | peer ÷ streamstate (median, min-max) |")
    print("|---|---|---|---|")
    for shape, n in sizes.items():
        label = f"put_writes of {n:,} writes" if shape == "writes" else f"put of {n:,} channels"
        ours = results[("streamstate", shape)]
        for cp in savers:
            got = results[(cp.name, shape)]
            errors = [g for g in got if isinstance(g, str)]
            if errors:
                print(f"| {label} | {cp.name} | fails: {errors[0]} | - |")
                continue
            times = [float(g) for g in got]
            if cp.name == "streamstate" or any(isinstance(o, str) for o in ours):
                ratio = "-"
            else:
                pairs = [float(t) / float(o) for t, o in zip(times, ours)]
                ratio = (f"{statistics.median(pairs):.2f}x "
                         f"({min(pairs):.2f}-{max(pairs):.2f})")  # fmt: skip
            print(f"| {label} | {cp.name} | {statistics.median(times):.3f} | {ratio} |")
    return 0
