"""What the tamper-evident chain costs: streamstate with it (as shipped) against the
same saver without it, on the recorded LangGraph thread.

``python -m bench chain [--quick] [--rounds N]``

Each round both variants replay the same threads (put, then its put_writes), chunk by
chunk in ABBA order; reported are the paired ratios (chained ÷ unchained) of client
wall time per put and per put_writes, and of server CPU per operation.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Any

from bench.checkpoint_workload import ThreadOps, record_trace
from bench.common import admin_client, embedded_server


def _server_cpu(admin: Any) -> float:
    info = admin.info("cpu")
    return float(info["used_cpu_sys_main_thread"]) + float(info["used_cpu_user_main_thread"])


def _replay(saver: Any, threads: list[ThreadOps], admin: Any) -> tuple[float, float, float, int]:
    put_s = writes_s = 0.0
    ops = 0
    cpu = _server_cpu(admin)
    for th in threads:
        for args, writes in zip(th.puts, th.writes):
            t = time.perf_counter()
            saver.put(*args)
            put_s += time.perf_counter() - t
            t = time.perf_counter()
            for conf, w, task, path in writes:
                saver.put_writes(conf, w, task, path)
            writes_s += time.perf_counter() - t
            ops += 1 + len(writes)
    return put_s, writes_s, _server_cpu(admin) - cpu, ops


def main(argv: list[str] | None = None) -> int:
    import valkey

    from streamstate import ValkeySaver

    parser = argparse.ArgumentParser(prog="python -m bench chain", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 4 threads")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 9)
    per_chunk = 4 if args.quick else 10
    trace = record_trace()
    ratios: dict[str, list[float]] = {"put": [], "put_writes": [], "server CPU per op": []}
    with embedded_server() as server:
        admin = admin_client(server.url)
        client = valkey.Valkey.from_url(server.url)
        chained, plain = ValkeySaver(client), ValkeySaver(client)
        plain._core.chain = False
        for r in range(rounds):
            got = {}
            order = [("on", chained), ("off", plain)]
            for name, saver in order if r % 2 == 0 else reversed(order):
                threads = [ThreadOps.build(trace, f"chain-{uuid.uuid4().hex[:8]}")
                           for _ in range(per_chunk)]  # fmt: skip
                got[name] = _replay(saver, threads, admin)
            on, off = got["on"], got["off"]
            ratios["put"].append(on[0] / off[0])
            ratios["put_writes"].append(on[1] / off[1])
            ratios["server CPU per op"].append((on[2] / on[3]) / (off[2] / off[3]))
    print(f"# The chain's cost ({rounds} rounds x {per_chunk} threads of {len(trace)} checkpoints)")
    print()
    print("| measure | chained / unchained (median, min-max) |")
    print("|---|---|")
    for name, values in ratios.items():
        print(f"| {name} | {statistics.median(values):.3f}x "
              f"({min(values):.3f}-{max(values):.3f}) |")  # fmt: skip
    return 0
