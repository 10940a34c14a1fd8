"""What replica-confirmed writes cost: ``put`` and ``put_writes`` with ``wait_replicas=1``
(and ``wait_aof``) against the default, on a local primary with one replica.

``python -m bench replication [--quick] [--rounds N] [--ops N]``

Each round every variant writes ``ops`` checkpoints (a chain on a fresh thread), then
``ops`` task writes against its last checkpoint, one call after the other, in ABBA order
across variants. Per-call latency is the median of a round; the ratio is the variant's
latency over the default's, paired per round (2.0: each call takes twice as long). Both
servers are loopback processes on this machine, so the WAIT's extra cost is the replica's
own processing and one loopback hop, the least it can be: across machines add the
network round trip to the replica.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from typing import Any

from bench.common import (
    RoundTrips,
    X,
    fmt_num,
    fmt_ratio,
    fmt_stat,
    machine_info,
    machine_md,
    md_table,
    paired_ratios,
    summary,
    write_results,
)

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "wait_replicas=1": {"wait_replicas": 1},
    "wait_aof (primary's AOF)": {"wait_aof": True},
}
OPS = ("put", "put_writes")
DASH, DIV = "\u2013", "\u00f7"


def _cfg(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}


def _checkpoint(saver: Any, i: int) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    from langgraph.checkpoint.base import empty_checkpoint

    cp = empty_checkpoint()
    version = saver.get_next_version(None, None)
    cp["channel_values"] = {"messages": [f"message {i}"], "step": i}
    cp["channel_versions"] = {"messages": version, "step": version}
    return cp, {"source": "loop", "step": i}, dict(cp["channel_versions"])


def _run(saver: Any, ops: int) -> dict[str, list[float]]:
    """Per-call seconds of ``ops`` puts, then ``ops`` put_writes."""
    times: dict[str, list[float]] = {"put": [], "put_writes": []}
    config = _cfg(f"rep-{uuid.uuid4().hex[:8]}")
    for i in range(ops):
        cp, meta, versions = _checkpoint(saver, i)
        t0 = time.perf_counter()
        config = saver.put(config, cp, meta, versions)
        times["put"].append(time.perf_counter() - t0)
    for i in range(ops):
        t0 = time.perf_counter()
        saver.put_writes(config, [("messages", f"reply {i}"), ("step", i)], f"task-{i}")
        times["put_writes"].append(time.perf_counter() - t0)
    return times


def _round_trips(saver: Any) -> dict[str, float]:
    """Requests sent per call (a pipeline counts once), after a warm-up."""
    _run(saver, 3)
    out = {}
    with RoundTrips() as rt:
        before = rt.mark()[0]
        _run(saver, 10)
        out["per put and put_writes"] = (rt.mark()[0] - before) / 20
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench replication", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 100 calls")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--ops", type=int, default=None, help="calls per op per round")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 10)
    ops = args.ops or (100 if args.quick else 500)

    from streamstate import ValkeySaver
    from streamstate.connection import client_from_url
    from streamstate.testing.replication import ReplicaSet

    medians: dict[tuple[str, str], list[float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="ss-bench-rep-") as tmp,
        ReplicaSet(tmp, replicas=1, appendfsync="everysec") as rs,
    ):
        savers = {
            name: ValkeySaver(client_from_url(rs.url), **opts) for name, opts in VARIANTS.items()
        }
        trips = {name: _round_trips(saver) for name, saver in savers.items()}
        for r in range(rounds):
            names = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
            for name in names + list(reversed(names)):
                for op, values in _run(savers[name], ops).items():
                    medians.setdefault((name, op), []).append(statistics.median(values))
        info = machine_info(rs.primary.client())

    rows, data = [], {"rounds": rounds, "ops": ops, "machine": info, "variants": {}}
    for name in VARIANTS:
        for op in OPS:
            lat = summary([m * 1e6 for m in medians[(name, op)]])
            ratio = paired_ratios(medians[(name, op)], medians[("default", op)])
            rows.append(
                [
                    name,
                    op,
                    fmt_stat(lat, " \u00b5s"),
                    "1" if name == "default" else fmt_ratio(ratio),
                    fmt_num(trips[name]["per put and put_writes"]),
                ]
            )
            data["variants"][f"{name} {op}"] = {"latency_us": lat, "ratio": ratio}
    table = md_table(
        ["variant", "call", f"latency per call, median (min{DASH}max) of rounds",
         f"{DIV} default", "requests per call"],
        rows,
    )  # fmt: skip
    markdown = "\n".join(
        [
            f"# Replica-confirmed writes: cost on a local primary + 1 replica"
            f" ({rounds} rounds {X} {ops} calls per op, ABBA order)",
            "",
            machine_md(info),
            "",
            table,
            "",
        ]
    )
    print(markdown)
    md, js = write_results("replication-quick" if args.quick else "replication", markdown, data)
    print(f"results: {md} and {js}")
    return 0
