"""Checkpointer peers: streamstate against every LangGraph checkpointer we can run here.

``python -m bench peers [--quick] [--rounds N] [--only graphs,costs,memory,growth,delta]``

The full run writes bench/results/peers.{md,json} and peers-graphs.png /
peers-growth.png; ``--quick`` (~40 s) writes the same files to a fresh temp dir.

Starts its own servers: an embedded valkey-server (AOF everysec) shared by the Valkey
peers, and a throwaway PostgreSQL (skipped with a note if it cannot start). Peers:
streamstate ``ValkeySaver`` / ``AsyncValkeySaver``, langgraph-checkpoint-aws
``ValkeySaver`` / ``AsyncValkeySaver``, langgraph-checkpoint-hotkv ``HotKVSaver`` /
``AsyncHotKVSaver`` and langgraph-checkpoint-plainredis ``RedisSaver`` /
``AsyncRedisSaver`` (same server, no modules needed), ``InMemorySaver``, ``SqliteSaver``
(temp file), ``PostgresSaver``, and langgraph-checkpoint-redis ``RedisSaver`` (needs
RediSearch/RedisJSON; reported if it cannot run).

Scenarios: whole graphs (``bench.peers_graphs``), get_tuple/list latency as a thread grows
and with many other threads on the server, bytes held per checkpoint and per thread,
round trips / server commands per step, and a chat on LangGraph's ``DeltaChannel``
(``bench.peers_delta``). Every round runs every peer, in forward then
reverse order (ABBA), order flipping per round; figures are medians over rounds
(min-max) and ratios are paired per round.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.base.id import uuid6

from bench.common import (
    RESULTS_DIR,
    RoundTrips,
    ServerSample,
    X,
    abba_order,
    admin_client,
    embedded_server,
    fmt_num,
    fmt_ratio,
    fmt_stat,
    loadavg,
    machine_info,
    machine_md,
    md_table,
    paired_ratios,
    server_delta,
    summary,
    used_memory,
    write_results,
)
from bench.peers_delta import bench_delta
from bench.peers_delta import report_section as delta_report
from bench.peers_graphs import (
    LABEL,
    SCENARIOS,
    TEXT,
    delta_channel_missing,
    react_graph,
    react_inputs,
)
from bench.peers_setup import Peer, async_peers, postgres_server, sync_peers

PACKAGES = [
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-aws",
    "langgraph-checkpoint-hotkv",
    "hotkv-client",
    "langgraph-checkpoint-plainredis",
    "redis",
    "langgraph-checkpoint-sqlite",
    "langgraph-checkpoint-postgres",
    "langgraph-checkpoint-redis",
    "psycopg",
    "valkey",
    "libvalkey",
]
BASE = "memory"  # InMemorySaver: serde, no round trip; the floor of whole graphs
VALKEY_PEERS = ("aws", "hotkv", "plainredis", "redis")  # "best Valkey peer" is among these
SECTIONS = ("graphs", "costs", "memory", "growth", "delta")
PEER_ORDER = [
    "streamstate",
    "aws",
    "hotkv",
    "plainredis",
    "memory",
    "sqlite",
    "postgres",
    "redis",
]  # overhead is measured against InMemorySaver


@dataclass(frozen=True)
class Settings:
    rounds: int
    reps: dict[str, int]  # fresh threads per peer per round, per graph scenario
    levels: tuple[int, ...]  # checkpoints in the growing thread
    reads: int  # get_tuple / list calls per level per peer per round
    others: int  # target count of other threads on the server
    load_seconds: float  # budget for loading the other threads
    mem_threads: int
    delta_turns: tuple[int, ...]  # turns of the DeltaChannel chat threads
    delta_rounds: int


FULL = Settings(
    rounds=5,
    reps={"react-10": 4, "react-100": 1, "fanout-4": 4, "wide-300": 4, "react-10-async": 4},
    levels=(10, 100, 1000),
    reads=60,
    others=100_000,
    load_seconds=120.0,
    mem_threads=6,
    delta_turns=(50, 200),
    delta_rounds=3,
)
QUICK = Settings(
    rounds=3,
    reps={"react-10": 1, "react-100": 0, "fanout-4": 1, "wide-300": 1, "react-10-async": 1},
    levels=(10, 100, 300),
    reads=15,
    others=5_000,
    load_seconds=10.0,
    mem_threads=2,
    delta_turns=(10, 30),
    delta_rounds=1,
)


def _cfg(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}


def _new_thread() -> str:
    return f"peers-{uuid.uuid4().hex[:12]}"


# -- 1. whole graphs -----------------------------------------------------------------------


class _Counting:
    """Counts ``put`` calls of a saver (untimed calibration of checkpoints per run)."""

    def __init__(self) -> None:
        self.puts = 0


def checkpoints_per_thread(scenario: str) -> int:
    from langgraph.checkpoint.memory import InMemorySaver

    counter = _Counting()

    class Saver(InMemorySaver):
        def put(self, *a: Any, **k: Any) -> Any:
            counter.puts += 1
            return super().put(*a, **k)

    build, inputs = SCENARIOS[scenario]
    app = build().compile(checkpointer=Saver())
    cfg = _cfg(_new_thread())
    for x in inputs():
        app.invoke(x, cfg)
    return counter.puts


def run_graph(app: Any, inputs: list[dict[str, Any]]) -> float:
    cfg = _cfg(_new_thread())
    t0 = time.perf_counter()
    for x in inputs:
        app.invoke(x, cfg)
    return time.perf_counter() - t0


def bench_graphs(peers: list[Peer], s: Settings, log: Callable[[str], None]) -> dict[str, Any]:
    """Seconds per checkpoint (step) of each graph scenario with each peer, per round."""
    out: dict[str, Any] = {}
    names = [p.name for p in peers]
    for scenario, (build, inputs_fn) in SCENARIOS.items():
        reps = s.reps[scenario]
        if not reps:
            continue
        steps = checkpoints_per_thread(scenario)
        graph = build()
        apps = {p.name: graph.compile(checkpointer=p.saver) for p in peers}
        inputs = inputs_fn()
        for p in peers:  # warm-up: connections, scripts, tables
            run_graph(apps[p.name], inputs[:1])
        per_round: dict[str, list[float]] = {n: [] for n in names}
        for rnd in range(s.rounds):
            acc = dict.fromkeys(names, 0.0)
            count = dict.fromkeys(names, 0)
            for i, name in enumerate(abba_order(names, rnd)):
                n = (reps + 1) // 2 if i < len(names) else reps // 2
                for _ in range(n):
                    gc.collect()
                    acc[name] += run_graph(apps[name], inputs)
                    count[name] += 1
            for n in names:
                per_round[n].append(acc[n] / count[n] / steps * 1e6)
        out[scenario] = {"steps_per_thread": steps, "us_per_step": per_round}
        med = {n: summary(v)["median"] for n, v in per_round.items()}
        log(
            f"  {scenario}: {steps} checkpoints/thread; µs/step "
            + ", ".join(f"{n} {fmt_num(v)}" for n, v in med.items())
        )
    return out


async def bench_graphs_async(
    url: str, pg: Any, workdir: str, s: Settings, log: Callable[[str], None]
) -> dict[str, Any]:
    """react-10 with ``ainvoke`` on the asyncio savers."""
    reps = s.reps["react-10-async"]
    steps = checkpoints_per_thread("react-10")
    inputs = react_inputs(10)
    graph = react_graph()
    async with async_peers(url, pg, workdir) as peers:
        errors = {p.name: p.error for p in peers if p.error}
        peers = [p for p in peers if not p.error]
        names = [p.name for p in peers]
        apps = {p.name: graph.compile(checkpointer=p.saver) for p in peers}

        async def run(app: Any, xs: list[dict[str, Any]]) -> float:
            cfg = _cfg(_new_thread())
            t0 = time.perf_counter()
            for x in xs:
                await app.ainvoke(x, cfg)
            return time.perf_counter() - t0

        for n in names:
            await run(apps[n], inputs[:1])
        per_round: dict[str, list[float]] = {n: [] for n in names}
        for rnd in range(s.rounds):
            acc = dict.fromkeys(names, 0.0)
            count = dict.fromkeys(names, 0)
            for i, name in enumerate(abba_order(names, rnd)):
                k = (reps + 1) // 2 if i < len(names) else reps // 2
                for _ in range(k):
                    gc.collect()
                    acc[name] += await run(apps[name], inputs)
                    count[name] += 1
            for n in names:
                per_round[n].append(acc[n] / count[n] / steps * 1e6)
    med = {n: summary(v)["median"] for n, v in per_round.items()}
    log("  react-10-async: µs/step " + ", ".join(f"{n} {fmt_num(v)}" for n, v in med.items()))
    return {"steps_per_thread": steps, "us_per_step": per_round, "errors": errors}


def graph_costs(peers: list[Peer], admin: Any, s: Settings) -> dict[str, Any]:
    """Round trips and server commands per checkpoint for each Valkey peer (untimed)."""
    out: dict[str, Any] = {}
    for scenario, (build, inputs_fn) in SCENARIOS.items():
        if not s.reps[scenario]:
            continue
        steps = checkpoints_per_thread(scenario)
        graph = build()
        for p in peers:
            if not p.valkey_backed:
                continue
            app = graph.compile(checkpointer=p.saver)
            before = ServerSample.take(admin)
            with RoundTrips() as rt:  # INFO calls stay outside the count
                run_graph(app, inputs_fn())
            after = ServerSample.take(admin)
            d = server_delta([(before, after)], steps)
            out.setdefault(scenario, {})[p.name] = {
                "round_trips_per_step": rt.sends / steps,
                "bytes_sent_per_step": rt.bytes_sent / steps,
                "commands_per_step": d["commands_per_op"],
                "calls_per_step": d["calls_per_op"],
                "server_cpu_us_per_step": d["server_cpu_us_per_op"],
            }
    return out


# -- 2. growth -------------------------------------------------------------------------------


class Writer:
    """Writes small synthetic checkpoints to one thread of one saver."""

    def __init__(self, saver: Any, thread: str, messages: int = 6) -> None:
        self.saver, self.thread, self.n = saver, thread, 0
        self.config: dict[str, Any] = _cfg(thread)
        self.versions: dict[str, Any] = {}
        self.values: dict[str, Any] = {
            "messages": [f"{i}: {TEXT}" for i in range(messages)],
            "turn": 0,
        }

    def put(self) -> None:
        changed = ["turn"] if self.n else ["messages", "turn"]
        for ch in changed:
            self.versions[ch] = self.saver.get_next_version(self.versions.get(ch), None)
        self.values["turn"] = self.n
        cp = empty_checkpoint()
        cp["id"] = str(uuid6(clock_seq=self.n))
        cp["channel_values"] = dict(self.values)
        cp["channel_versions"] = dict(self.versions)
        meta = {"source": "loop", "step": self.n, "parents": {}}
        new = {ch: self.versions[ch] for ch in changed}
        self.config = self.saver.put(self.config, cp, meta, new)  # type: ignore[arg-type]
        self.n += 1

    def grow_to(self, n: int) -> None:
        while self.n < n:
            self.put()


def _read_latency(saver: Any, thread: str, reads: int) -> tuple[float, float]:
    """Median-free mean µs of get_tuple (latest) and list(limit=10) on ``thread``."""
    cfg = _cfg(thread)
    t0 = time.perf_counter()
    for _ in range(reads):
        assert saver.get_tuple(cfg) is not None
    t1 = time.perf_counter()
    for _ in range(reads):
        assert len(list(saver.list(cfg, limit=10))) == 10
    t2 = time.perf_counter()
    return (t1 - t0) / reads * 1e6, (t2 - t1) / reads * 1e6


def bench_growth(
    peers: list[Peer], s: Settings, tag: str, log: Callable[[str], None]
) -> dict[str, Any]:
    """get_tuple / list latency at each level of one growing thread, per round."""
    names = [p.name for p in peers]
    by = {p.name: p for p in peers}
    res: dict[str, Any] = {
        n: {str(lv): {"get_tuple": [], "list": []} for lv in s.levels} for n in names
    }
    for rnd in range(s.rounds):
        writers = {n: Writer(by[n].saver, _new_thread()) for n in names}
        for lv in s.levels:
            for n in names:
                writers[n].grow_to(lv)
            samples: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
            for n in abba_order(names, rnd):
                samples[n].append(
                    _read_latency(by[n].saver, writers[n].thread, max(1, s.reads // 2))
                )
            for n in names:
                g = sum(x[0] for x in samples[n]) / len(samples[n])
                li = sum(x[1] for x in samples[n]) / len(samples[n])
                res[n][str(lv)]["get_tuple"].append(g)
                res[n][str(lv)]["list"].append(li)
    for n in names:
        log(
            f"  growth{tag} {n}: get_tuple µs "
            + ", ".join(
                f"{lv}: {fmt_num(summary(res[n][str(lv)]['get_tuple'])['median'])}"
                for lv in s.levels
            )
        )
    return res


def read_costs(peers: list[Peer], admin: Any, level: int) -> dict[str, Any]:
    """Round trips and commands of get_tuple / list(limit=10) at ``level`` checkpoints."""
    out: dict[str, Any] = {}
    for p in peers:
        if not p.valkey_backed:
            continue
        w = Writer(p.saver, _new_thread())
        w.grow_to(level)
        cfg = _cfg(w.thread)
        saver = p.saver
        calls: list[tuple[str, Callable[[], Any]]] = [
            ("put", w.put),
            ("get_tuple", lambda saver=saver, cfg=cfg: saver.get_tuple(cfg)),
            ("list", lambda saver=saver, cfg=cfg: list(saver.list(cfg, limit=10))),
        ]
        for op, call in calls:
            before = ServerSample.take(admin)
            with RoundTrips() as rt:
                for _ in range(10):
                    call()
            after = ServerSample.take(admin)
            d = server_delta([(before, after)], 10)
            out.setdefault(op, {})[p.name] = {
                "round_trips": rt.sends / 10,
                "commands": d["commands_per_op"],
                "calls": d["calls_per_op"],
            }
    return out


def load_others(
    peers: list[Peer], admin: Any, s: Settings, log: Callable[[str], None]
) -> dict[str, Any]:
    """Put one tiny checkpoint on each of many fresh threads, alternating the peers."""
    counts = {p.name: 0 for p in peers}
    mem0 = used_memory(admin)
    mem_by: dict[str, int] = dict.fromkeys(counts, 0)
    batch = 1000
    deadline = time.monotonic() + s.load_seconds
    t0 = time.monotonic()

    def one(saver: Any) -> None:
        Writer(saver, _new_thread(), messages=0).put()

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        while min(counts.values()) < s.others and time.monotonic() < deadline:
            for p in peers:
                before = used_memory(admin)
                list(pool.map(lambda _i, sv=p.saver: one(sv), range(batch)))
                mem_by[p.name] += used_memory(admin) - before
                counts[p.name] += batch
    seconds = time.monotonic() - t0
    log(f"  loaded {counts} other threads in {seconds:.0f} s")
    return {
        "threads": counts,
        "seconds": seconds,
        "target": s.others,
        "bytes_per_tiny_thread": {n: mem_by[n] / counts[n] for n in counts if counts[n]},
        "used_memory_delta": used_memory(admin) - mem0,
    }


# -- 3. bytes held -----------------------------------------------------------------------------


def bench_memory(peers: list[Peer], admin: Any, s: Settings, reps: int) -> dict[str, Any]:
    """Bytes held per checkpoint and per thread after react-10 threads (median of reps)."""
    steps = checkpoints_per_thread("react-10")
    graph = react_graph()
    out: dict[str, Any] = {}
    for p in peers:
        if not (p.valkey_backed or p.size):
            continue
        app = graph.compile(checkpointer=p.saver)
        per_cp: list[float] = []
        for _ in range(reps):
            gc.collect()
            before = used_memory(admin) if p.valkey_backed else p.size()  # type: ignore[misc]
            for _ in range(s.mem_threads):
                run_graph(app, react_inputs(10))
            after = used_memory(admin) if p.valkey_backed else p.size()  # type: ignore[misc]
            per_cp.append((after - before) / (s.mem_threads * steps))
        out[p.name] = {
            "measure": "INFO used_memory delta" if p.valkey_backed else "database size delta",
            "bytes_per_checkpoint": per_cp,
            "bytes_per_thread": [b * steps for b in per_cp],
            "checkpoints_per_thread": steps,
        }
    return out


# -- report --------------------------------------------------------------------------------------


def _vs_best_valkey_peer(ss: list[float], us_per_step: dict[str, list[float]]) -> str:
    """streamstate / the fastest (median) other Valkey peer of the row, paired per round."""
    valkey = {n: v for n, v in us_per_step.items() if n in VALKEY_PEERS}
    if not valkey:
        return "\u2013"
    best = min(valkey, key=lambda n: summary(valkey[n])["median"])
    return f"{fmt_ratio(paired_ratios(ss, valkey[best]))} ({best})"


def report(data: dict[str, Any]) -> str:
    info = data["machine"]
    lines = [
        "# Checkpointer peers: streamstate vs every LangGraph checkpointer runnable here",
        "",
        machine_md(info),
        f"- PostgreSQL: {data['postgres'] or 'not run'}",
        f"- mode: {'quick' if data['quick'] else 'full'}"
        + (
            f" (sections: {', '.join(data['sections'])})"
            if len(data["sections"]) < len(SECTIONS)
            else ""
        )
        + f"; {data['rounds']} rounds; run time"
        f" {data['seconds']:.0f} s; load average (1/5/15 min) {data['load_before']} before,"
        f" {data['load_after']} after (2 cores: above ~2, other processes competed for CPU)",
        "",
        "Peers: **streamstate** ValkeySaver / AsyncValkeySaver; **aws** langgraph-checkpoint-aws"
        " ValkeySaver / AsyncValkeySaver; **hotkv** langgraph-checkpoint-hotkv HotKVSaver /"
        " AsyncHotKVSaver (on hotkv-client); **plainredis** langgraph-checkpoint-plainredis"
        " RedisSaver / AsyncRedisSaver (on redis-py); all four on the same embedded"
        " valkey-server (AOF everysec); **memory** InMemorySaver; **sqlite** SqliteSaver /"
        " AsyncSqliteSaver on a temp file;"
        " **postgres** PostgresSaver / AsyncPostgresSaver on a local cluster (fsync on);"
        " **redis** langgraph-checkpoint-redis RedisSaver.",
        "",
        "Every round runs every peer in forward then reverse order (ABBA), the starting"
        " direction flipping every round. Figures are the median over rounds (min\u2013max);"
        " ratios are paired per round.",
        "",
    ]
    if data["not_run"]:
        lines += ["## Could not run", ""]
        lines += [f"- **{k}**: {v}" for k, v in data["not_run"].items()]
        lines.append("")
    graphs = data["graphs"]
    if graphs:
        names = list(next(iter(graphs.values()))["us_per_step"])
        lines += [
            "## 1. Whole graphs: time per checkpoint (step)",
            "",
            "µs per step = wall time of the graph run on a fresh thread / checkpoints it"
            " writes (every superstep in every namespace). Overhead = the same minus"
            " InMemorySaver's, paired per round.",
            "",
        ]
        hdr = ["scenario", "steps/thread", *[f"{n} µs/step" for n in names]]
        rows = []
        for sc, g in graphs.items():
            rows.append(
                [
                    LABEL[sc],
                    g["steps_per_thread"],
                    *[fmt_stat(summary(g["us_per_step"][n])) for n in names],
                ]
            )
        lines += [md_table(hdr, rows), ""]
        lines += ["### Overhead over InMemorySaver (ratio; added µs per step)", ""]
        others = [n for n in names if n != BASE]
        rows = []
        for sc, g in graphs.items():
            base = g["us_per_step"].get(BASE)
            if not base:
                continue
            row: list[Any] = [LABEL[sc]]
            for n in others:
                if n not in g["us_per_step"]:
                    row.append("\u2013")
                    continue
                v = g["us_per_step"][n]
                r = paired_ratios(v, base)
                add = summary([a - b for a, b in zip(v, base, strict=True)])
                row.append(f"{fmt_num(r['median'])}{X}; +{fmt_num(add['median'])} µs")
            rows.append(row)
        lines += [md_table(["scenario", *others], rows), ""]
        lines += [
            "### streamstate against each peer"
            " (streamstate time / peer time; < 1 = streamstate faster)",
            "",
            "*best Valkey peer*: the fastest (median) of the other Valkey-backed savers in that"
            f" row; *\u00f7 floor*: streamstate / {BASE} (InMemorySaver: LangGraph's serde and"
            " no round trip), i.e. how far streamstate is from the floor.",
            "",
        ]
        rows = []
        peers_ = [n for n in others if n != "streamstate"]
        for sc, g in graphs.items():
            ss = g["us_per_step"].get("streamstate")
            if not ss:
                continue
            row = [LABEL[sc]]
            for n in peers_:
                v = g["us_per_step"].get(n)
                row.append(fmt_ratio(paired_ratios(ss, v)) if v else "\u2013")
            row.append(_vs_best_valkey_peer(ss, g["us_per_step"]))
            base = g["us_per_step"].get(BASE)
            row.append(fmt_ratio(paired_ratios(ss, base)) if base else "\u2013")
            rows.append(row)
        header = ["scenario", *peers_, "best Valkey peer", "\u00f7 floor (memory)"]
        lines += [md_table(header, rows), ""]
    if data.get("graph_costs"):
        lines += [
            "### Round trips and server commands per step (Valkey peers, one untimed thread)",
            "",
            "Round trips counted on the client (one request flight = one command or one"
            " pipeline); commands from INFO commandstats, including those run inside Lua"
            " scripts and MULTI/EXEC.",
            "",
        ]
        rows = []
        for sc, per in data["graph_costs"].items():
            for n, c in per.items():
                top = ", ".join(
                    f"{k} {fmt_num(v)}" for k, v in list(c["calls_per_step"].items())[:5]
                )
                rows.append(
                    [
                        LABEL[sc],
                        n,
                        fmt_num(c["round_trips_per_step"]),
                        fmt_num(c["commands_per_step"]),
                        top,
                        fmt_num(c["bytes_sent_per_step"]),
                        fmt_num(c["server_cpu_us_per_step"]),
                    ]
                )
        lines += [
            md_table(
                [
                    "scenario",
                    "peer",
                    "round trips/step",
                    "commands/step",
                    "top commands",
                    "request B/step",
                    "server CPU µs/step",
                ],
                rows,
            ),
            "",
        ]
    growth = data["growth"]
    if growth:
        levels = data["levels"]
        lines += [
            "## 2. Growth: read latency as one thread grows",
            "",
            "One thread grows by small synthetic checkpoints (6 messages of ~250 chars set"
            " once, a counter each step); at each size every peer runs get_tuple (latest)"
            " and list(limit=10), interleaved ABBA. µs per call; flat = the cost does not"
            " depend on the thread's length. 'flatness' = latency at the largest size /"
            " latency at 10, paired per round.",
            "",
        ]
        for op in ("get_tuple", "list"):
            rows = []
            for tag, g in growth.items():
                for n, per in g.items():
                    vals = [per[str(lv)][op] for lv in levels]
                    flat = paired_ratios(vals[-1], vals[0])
                    rows.append(
                        [
                            n + tag,
                            *[fmt_stat(summary(v)) for v in vals],
                            f"{fmt_num(flat['median'])}{X}",
                        ]
                    )
            label = "get_tuple (latest)" if op == "get_tuple" else "list(limit=10)"
            lines += [
                f"### {label}",
                "",
                md_table(["peer", *[f"{lv} checkpoints" for lv in levels], "flatness"], rows),
                "",
            ]
        if data.get("others"):
            o = data["others"]
            lines += [
                f"Rows marked *+others* were measured with {fmt_num(min(o['threads'].values()))}"
                " other threads per Valkey peer on the server"
                f" ({sum(o['threads'].values())} in all,"
                f" target {o['target']}; loaded in {o['seconds']:.0f} s with 8 client threads,"
                " tiny one-checkpoint threads).",
                "",
            ]
            if min(o["threads"].values()) < o["target"]:
                lines += [
                    f"The {o['target']} target did not fit in the load budget;"
                    " the largest count that did is used.",
                    "",
                ]
        if data.get("read_costs"):
            rows = []
            for op, per in data["read_costs"].items():
                for n, c in per.items():
                    top = ", ".join(f"{k} {fmt_num(v)}" for k, v in list(c["calls"].items())[:5])
                    rows.append([op, n, fmt_num(c["round_trips"]), fmt_num(c["commands"]), top])
            lines += [
                "### Round trips and commands per operation"
                f" at {levels[-1]} checkpoints (Valkey peers)",
                "",
                md_table(["operation", "peer", "round trips", "commands", "top commands"], rows),
                "",
            ]
    mem = data["memory"]
    if mem:
        lines += [
            "## 3. Bytes held",
            "",
            "ReAct 10-turn threads (with their pending writes); Valkey peers: INFO used_memory"
            " delta; sqlite: used pages after a WAL checkpoint; postgres: pg_database_size"
            " delta (page granularity: coarse). Median of repetitions (min\u2013max).",
            "",
        ]
        rows = []
        ss = mem.get("streamstate")
        for n, m in mem.items():
            ratio = (
                paired_ratios(ss["bytes_per_checkpoint"], m["bytes_per_checkpoint"])
                if ss and n != "streamstate"
                else None
            )
            rows.append(
                [
                    n,
                    m["measure"],
                    fmt_stat(summary(m["bytes_per_checkpoint"]), " B"),
                    fmt_stat(summary(m["bytes_per_thread"]), " B"),
                    f"{fmt_num(ratio['median'])}{X}" if ratio else "",
                ]
            )
        lines += [
            md_table(
                [
                    "peer",
                    "measure",
                    "bytes/checkpoint",
                    "bytes/thread (react-10)",
                    "streamstate / peer",
                ],
                rows,
            ),
            "",
        ]
        valkey_mem = {n: m for n, m in mem.items() if n in VALKEY_PEERS}
        if ss and valkey_mem:
            best = min(
                valkey_mem, key=lambda n: summary(valkey_mem[n]["bytes_per_checkpoint"])["median"]
            )
            r = paired_ratios(ss["bytes_per_checkpoint"], valkey_mem[best]["bytes_per_checkpoint"])
            lines += [
                f"streamstate / best (smallest) Valkey peer, {best}: {fmt_ratio(r)}"
                " per checkpoint.",
                "",
            ]
        if data.get("others"):
            per = data["others"]["bytes_per_tiny_thread"]
            lines += [
                "Tiny one-checkpoint threads (from the load of other threads), bytes per thread: "
                + ", ".join(f"{n} {fmt_num(v)} B" for n, v in per.items()),
                "",
            ]
    if data.get("delta"):
        lines += delta_report(data["delta"])
    if data["graphs"] or data["growth"]:
        lines += ["## Plots", ""]
    if data["graphs"]:
        lines.append(
            "- `peers-graphs.png`: µs per step by scenario and peer (log scale, min\u2013max bars)"
        )
    if data["growth"]:
        lines.append("- `peers-growth.png`: get_tuple / list latency against thread length")
    lines.append("")
    return "\n".join(lines)


def plots(data: dict[str, Any], outdir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    graphs = data["graphs"]
    if graphs:
        scen = list(graphs)
        names = sorted(
            {n for g in graphs.values() for n in g["us_per_step"]},
            key=PEER_ORDER.index,
        )
        fig, ax = plt.subplots(figsize=(11, 5.5))
        width = 0.8 / len(names)
        for i, n in enumerate(names):
            meds, lo, hi = [], [], []
            for sc in scen:
                v = graphs[sc]["us_per_step"].get(n)
                st = summary(v) if v else {"median": 0, "min": 0, "max": 0}
                meds.append(st["median"])
                lo.append(st["median"] - st["min"])
                hi.append(st["max"] - st["median"])
            xs = [k + (i - (len(names) - 1) / 2) * width for k in range(len(scen))]
            color = f"C{PEER_ORDER.index(n)}"
            ax.bar(xs, meds, width, yerr=[lo, hi], capsize=2, label=n, color=color)
        ax.set_xticks(
            range(len(scen)),
            [LABEL[s].replace(": ", ":\n").replace(" (", "\n(") for s in scen],
            fontsize=8,
        )
        ax.set_yscale("log")
        ax.set_ylabel("µs per checkpoint (step), log scale")
        ax.set_title(
            "Whole graphs: time per step by checkpointer (median, min\u2013max over rounds)"
        )
        ax.legend()
        ax.grid(axis="y", which="both", alpha=0.3)
        fig.tight_layout()
        path = outdir / "peers-graphs.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(str(path))
    if data["growth"]:
        levels = data["levels"]
        fig, axes = plt.subplots(1, 2, figsize=(12, 5))
        for ax, op in zip(axes, ("get_tuple", "list"), strict=True):
            for tag, g in data["growth"].items():
                for n, per in g.items():
                    med = [summary(per[str(lv)][op])["median"] for lv in levels]
                    color = f"C{PEER_ORDER.index(n)}"  # one colour per peer, as in the bars
                    style = "--" if tag else "-"
                    ax.plot(levels, med, marker="o", color=color, linestyle=style, label=n + tag)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("checkpoints in the thread")
            ax.set_ylabel("µs per call (median over rounds)")
            ax.set_title("get_tuple (latest)" if op == "get_tuple" else "list(limit=10)")
            ax.grid(which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle("Read latency as one thread grows (dashed: with other threads on the server)")
        fig.tight_layout()
        path = outdir / "peers-growth.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(str(path))
    return files


# -- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench peers", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short smoke run (~90 s)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)}); a partial "
        "run writes its results to a temp dir, never over the kept full results",
    )
    args = ap.parse_args(argv)
    sections = {x.strip() for x in args.only.split(",") if x.strip()}
    if sections - set(SECTIONS):
        ap.error(f"unknown sections: {', '.join(sorted(sections - set(SECTIONS)))}")
    partial = sections != set(SECTIONS)
    s = QUICK if args.quick else FULL
    if args.rounds:
        s = Settings(**{**s.__dict__, "rounds": max(3, args.rounds)})
    t_start = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t_start:6.1f}s] {msg}", flush=True)

    data: dict[str, Any] = {
        "quick": args.quick,
        "rounds": s.rounds,
        "levels": list(s.levels),
        "load_before": loadavg(),
        "not_run": {},
        "sections": sorted(sections),
        "graphs": {},
        "growth": {},
        "memory": {},
    }
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(embedded_server(**{"auto-aof-rewrite-percentage": "0"}))
        log(f"valkey-server at {server.url}")
        pg = stack.enter_context(postgres_server())
        data["postgres"] = pg.version or ""
        log(f"postgres: {pg.conninfo or pg.note}")
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="ss-bench-peers-"))
        admin = admin_client(server.url)
        data["machine"] = machine_info(admin, PACKAGES)
        all_peers = sync_peers(server.url, pg, workdir)
        for p in all_peers:
            stack.callback(p.close)
            if p.error:
                data["not_run"][p.name] = p.error
                log(f"  {p.name}: cannot run: {p.error}")
        peers = [p for p in all_peers if not p.error]
        valkey_peers = [p for p in peers if p.valkey_backed]

        if "graphs" in sections:
            log("1. whole graphs (sync)")
            data["graphs"] = bench_graphs(peers, s, log)
            log("1b. whole graphs (asyncio)")
            a = asyncio.run(bench_graphs_async(server.url, pg, workdir, s, log))
            for n, e in a.pop("errors").items():
                data["not_run"][f"{n} (async)"] = e
            data["graphs"]["react-10-async"] = a
        if "costs" in sections:
            log("4. round trips / commands per step")
            data["graph_costs"] = graph_costs(peers, admin, s)
        if "memory" in sections:
            log("3. bytes held")
            data["memory"] = bench_memory(peers, admin, s, reps=3)
        if "delta" in sections:
            log("5. DeltaChannel chat")
            missing = delta_channel_missing()
            data["delta"] = (
                {"skipped": missing}
                if missing
                else bench_delta(peers, s.delta_turns, s.delta_rounds, log)
            )
        if "growth" in sections:  # last: it loads many other threads on the server
            log("2. growth")
            data["growth"] = {"": bench_growth(peers, s, "", log)}
            data["read_costs"] = read_costs(peers, admin, s.levels[-1])
            if valkey_peers:
                log(f"2b. loading up to {s.others} other threads per Valkey peer")
                data["others"] = load_others(valkey_peers, admin, s, log)
                data["growth"][" +others"] = bench_growth(valkey_peers, s, " +others", log)
        data["server_used_memory_end"] = used_memory(admin)
    data["load_after"] = loadavg()
    data["seconds"] = time.monotonic() - t_start
    if args.quick or partial:  # a smoke or partial run never overwrites the kept results
        out = Path(tempfile.mkdtemp(prefix="ss-bench-peers-quick-"))
        md, js = out / "peers-quick.md", out / "peers-quick.json"
        md.write_text(report(data))
        js.write_text(json.dumps(data, indent=1, default=str) + "\n")
        files = plots(data, out)
    else:
        md, js = write_results("peers", report(data), data)
        files = plots(data, RESULTS_DIR)
    log(f"wrote {md}, {js}" + (", " + ", ".join(files) if files else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
