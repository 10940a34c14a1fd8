"""``bench checkpoint``: per-round results -> summary -> markdown.

Every figure is the median over rounds (min-max). Ratios are streamstate / peer, paired
per round, for each peer and for the best peer of the row (the one with the best
median: fastest, or for memory smallest). Every timed row also says how far streamstate
is from the floor: LangGraph's serde alone on the values the operation moves, plus one
bare round trip from the same Python client.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import X, fmt_num, fmt_ratio, fmt_stat, machine_md, md_table, summary

SUBJECT = "streamstate"
OPS = ("put", "put_writes", "get_latest", "get_by_id", "list")
OP_LABEL = {
    "put": "put",
    "put_writes": "put_writes",
    "get_latest": "get_tuple (latest)",
    "get_by_id": "get_tuple (by id)",
    "list": "list(limit=10)",
    "mixed": "16 clients, mixed",
}
MODE_LABEL = {
    "sync": "sync, 1 client",
    "async": "asyncio, 1 client",
    "threads": "16 threads",
    "tasks": "16 asyncio tasks",
}
# Targets from the performance issue, against the best peer of each row (higher is better,
# except bytes). With --ttl, peers without a TTL option are not candidates for best peer.
TARGETS = {
    "put": 1.0,
    "put_writes": 1.0,
    "get_latest": 1.3,
    "get_by_id": 1.1,
    "list": 1.1,
    "mixed": 1.3,
}
PUT_VS_SET_TARGET = 0.6
BYTES_TARGET = 0.5
MEMORY_MEASURES = (
    ("used_memory_per_checkpoint", "INFO used_memory delta"),
    ("key_bytes_per_checkpoint", "sum of MEMORY USAGE over keys"),
    ("aof_bytes_per_checkpoint", "AOF bytes appended"),
)


def _ratio(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    return summary([x / y for x, y in zip(a, b, strict=True) if y])


def compare(
    names: Sequence[str],
    per_round: Callable[[str], Sequence[float]],
    smaller_wins: bool = False,
    candidates: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Each saver's values, streamstate / each peer (paired), and the best peer's name
    (among ``candidates``, default every peer)."""
    values = {n: list(per_round(n)) for n in names}
    peers = [n for n in names if n != SUBJECT]
    out: dict[str, Any] = {
        "values": {n: summary(v) for n, v in values.items()},
        "ratios": {p: _ratio(values[SUBJECT], values[p]) for p in peers},
        "best_peer": None,
    }
    eligible = [p for p in peers if candidates is None or p in candidates]
    if eligible:
        medians = {p: out["values"][p]["median"] for p in eligible}
        out["best_peer"] = (min if smaller_wins else max)(eligible, key=lambda p: medians[p])
    return out


# -- summary ---------------------------------------------------------------------------------

_RTT_KEY = {"put": "set", "put_writes": "set_small"}  # writes: a SET; reads: a GET


def _floor_us(r: dict[str, Any], op: str, mode: str) -> float:
    """LangGraph's serde for the op + one bare round trip; with 16 clients the round trips
    overlap, so the floor per op is the serde work alone (put, 2 put_writes, get)."""
    su = r["serde_us"]
    if op == "mixed":
        return (su["put"] + 2 * su["put_writes"] + su["get_by_id"]) / 4
    return su[op] + 1e6 / r["limit"][f"{_RTT_KEY.get(op, 'get')}_{mode}"]["rate"]


def _server_costs(rounds: Sequence[dict[str, Any]], key: str, op: str | None) -> dict[str, Any]:
    res = [r[key][op] if op else r[key] for r in rounds]
    srv = [x["server"] for x in res]
    return {
        "commands_per_op": statistics.median(x["commands_per_op"] for x in srv),
        "server_cpu_us_per_op": statistics.median(x["server_cpu_us_per_op"] for x in srv),
        "client_cpu_us_per_op": statistics.median(x["client_cpu_us_per_op"] for x in res),
        "calls_per_op": srv[len(srv) // 2]["calls_per_op"],
    }


def _rows() -> list[tuple[str, str]]:
    """(op, mode) of every timed row, in report order."""
    rows = [(op, mode) for op in OPS for mode in ("sync", "async")]
    return [*rows, ("mixed", "threads"), ("mixed", "tasks")]


def summarise(data: dict[str, Any]) -> dict[str, Any]:
    rounds = data["rounds"]
    names = data["savers"]
    ttl, has_ttl = data["settings"].get("ttl"), data.get("has_ttl", {})
    candidates = [n for n in names if not ttl or has_ttl.get(n, True)]
    s: dict[str, Any] = {"ops": {}, "limit": {}, "server": {}, "floor": {}, "memory": {}}
    for op, mode in _rows():
        key = f"{op}:{mode}"

        def rate(name: str, op: str = op, mode: str = mode) -> list[float]:
            return [
                (r[f"{name}:{mode}"] if op == "mixed" else r[f"{name}:{mode}"][op])["rate"]
                for r in rounds
            ]

        s["ops"][key] = compare(names, rate, candidates=candidates)
        for name in names:
            s["server"][f"{name}:{key}"] = _server_costs(
                rounds, f"{name}:{mode}", None if op == "mixed" else op
            )
        floors = [_floor_us(r, op, mode) for r in rounds]
        if op == "mixed":
            serde, rtt = floors, [0.0] * len(rounds)
        else:
            serde = [r["serde_us"][op] for r in rounds]
            rtt = [f - su for f, su in zip(floors, serde, strict=True)]
        us = {n: [1e6 / x for x in rate(n)] for n in names}
        s["floor"][key] = {
            "serde_us": summary(serde),
            "rtt_us": summary(rtt),
            "floor_us": summary(floors),
            "us": {n: summary(v) for n, v in us.items()},
            "vs_floor": {n: _ratio(v, floors) for n, v in us.items()},
        }
    for mode in ("sync", "async"):
        for bare in ("set", "set_small", "get"):
            s["limit"][f"{bare}:{mode}"] = summary(
                [r["limit"][f"{bare}_{mode}"]["rate"] for r in rounds]
            )
        for kind, op, bare in (("put_vs_set", "put", "set"), ("get_vs_get", "get_latest", "get")):
            s["limit"][f"{kind}:{mode}"] = {
                n: summary(
                    [
                        r[f"{n}:{mode}"][op]["rate"] / r["limit"][f"{bare}_{mode}"]["rate"]
                        for r in rounds
                    ]
                )
                for n in names
            }
    mem = data["memory"]
    for key, _label in MEMORY_MEASURES:
        s["memory"][key] = compare(
            names,
            lambda n, key=key: [m[key] for m in mem[n]],
            smaller_wins=True,
            candidates=candidates,
        )
    return s


# -- the report -------------------------------------------------------------------------------


def _verdict(ratio: float, target: float, higher: bool = True) -> str:
    ok = ratio >= target if higher else ratio <= target
    return "**pass**" if ok else "**FAIL**"


def _best(e: dict[str, Any]) -> str:
    best = e["best_peer"]
    return f"{fmt_ratio(e['ratios'][best])} ({best})" if best else "\u2013"


def _header(data: dict[str, Any], quick: bool) -> list[str]:
    wl = data["workload"]
    names = data["savers"]
    labels = data["labels"]
    lines = [
        "# Checkpointer benchmark: streamstate vs "
        + ", ".join(labels[n] for n in names if n != SUBJECT)
        + (" (quick smoke run \u2014 not for conclusions)" if quick else ""),
        "",
        machine_md(data["machine"]),
        "",
    ]
    if not wl.get("streamstate_compression", True):
        lines += [
            "**Diagnostic run: streamstate without compression** (`--no-compression`). "
            "streamstate as shipped compresses values with zstd; this run shows what "
            "that costs put and saves in memory. It is not the shipped configuration.",
            "",
        ]
    ttl = data["settings"].get("ttl")
    if ttl:
        no_ttl = [labels[n] for n in names if not data.get("has_ttl", {}).get(n, True)]
        lines += [
            f"**Every saver with `ttl` = {ttl:g} s** (`--ttl`), as the seed documents use it."
            + (
                f" {', '.join(no_ttl)} has no TTL option and runs without one: compare the TTL"
                " rows with the others."
                if no_ttl
                else ""
            ),
            "",
        ]
    if data.get("not_run"):
        lines += [f"- not run: **{n}**: {why}" for n, why in data["not_run"].items()] + [""]
    lines += [
        f"Workload: a recorded LangGraph thread ({wl['checkpoints_per_thread']} checkpoints, "
        f"messages channel {wl['messages'][0]}\u2192{wl['messages'][1]} messages of ~250 chars, "
        f"{wl['put_writes_per_checkpoint']:.1f} put_writes per checkpoint of "
        f"{wl['writes_per_put_writes']:.1f} writes, metadata source/step/parents/run_id). "
        f"{data['settings']['rounds']} rounds; within a round every saver runs every phase, "
        "interleaved chunk by chunk in ABBA order (and the order flips every round). Every "
        "figure is the median over rounds (min\u2013max); ratio = streamstate / peer, paired per "
        "round; *best peer* = the peer with the best median in that row (fastest; for memory, "
        "smallest). Same server (AOF everysec, automatic AOF rewrite off so no fork lands on "
        f"one saver), same pool size (max {wl['pool_size']} connections) on each saver's own "
        "client library (valkey-py for streamstate and aws, hotkv-client for hotkv, redis-py "
        f"for plainredis). Run time {data['elapsed_seconds']:.0f} s; load average "
        f"{data['machine']['loadavg_before'][0]:.2f} before, "
        f"{data['machine']['loadavg_after'][0]:.2f} after, "
        f"{min(r['loadavg'] for r in data['rounds']):.1f}\u2013"
        f"{max(r['loadavg'] for r in data['rounds']):.1f} during rounds (1 min; "
        f"{data['machine']['cores']} cores: above that, other processes competed for CPU).",
        "",
    ]
    return lines


def _throughput(data: dict[str, Any]) -> list[str]:
    s, names, labels = data["summary"], data["savers"], data["labels"]
    rows = [
        [
            OP_LABEL[op],
            MODE_LABEL[mode],
            *[fmt_stat(s["ops"][f"{op}:{mode}"]["values"][n]) for n in names],
        ]
        for op, mode in _rows()
    ]
    return [
        "## Throughput (ops/s, higher is better)",
        "",
        md_table(["operation", "mode", *[labels[n] for n in names]], rows),
        "",
    ]


def _ratios(data: dict[str, Any]) -> list[str]:
    s, names, wl = data["summary"], data["savers"], data["workload"]
    peers = [n for n in names if n != SUBJECT]
    has_target_peer = bool(peers)
    rows = []
    for op, mode in _rows():
        e = s["ops"][f"{op}:{mode}"]
        row = [OP_LABEL[op], MODE_LABEL[mode], *[fmt_ratio(e["ratios"][p]) for p in peers]]
        row += [_best(e), fmt_ratio(s["floor"][f"{op}:{mode}"]["vs_floor"][SUBJECT])]
        if has_target_peer:
            row += [
                f"\u2265 {TARGETS[op]}{X}",
                _verdict(e["ratios"][e["best_peer"]]["median"], TARGETS[op]),
            ]
        rows.append(row)
    for mode in ("sync", "async"):
        pv = s["limit"][f"put_vs_set:{mode}"]
        row = [
            f"put \u00f7 bare SET of {wl['streamstate_put_payload_bytes']} B "
            "(streamstate's own ratio)",
            MODE_LABEL[mode],
            *["" for _ in peers],
            "",
            fmt_ratio(s["floor"][f"put:{mode}"]["vs_floor"][SUBJECT]),
        ]
        if has_target_peer:
            row += [
                f"\u2265 {PUT_VS_SET_TARGET}{X} (is {fmt_ratio(pv[SUBJECT])})",
                _verdict(pv[SUBJECT]["median"], PUT_VS_SET_TARGET),
            ]
        rows.append(row)
    m = s["memory"]["used_memory_per_checkpoint"]
    row = [
        "server bytes per checkpoint (used_memory; lower is better)",
        "incl. its writes",
        *[fmt_ratio(m["ratios"][p]) for p in peers],
        _best(m),
        "\u2013",
    ]
    if has_target_peer:
        row += [
            f"\u2264 {BYTES_TARGET}{X}",
            _verdict(m["ratios"][m["best_peer"]]["median"], BYTES_TARGET, higher=False),
        ]
    rows.append(row)
    header = [
        "operation",
        "mode",
        *[f"\u00f7 {p}" for p in peers],
        "\u00f7 best peer",
        "streamstate time \u00f7 floor",
    ]
    if has_target_peer:
        header += ["target (\u00f7 best peer)", "result"]
    return [
        "## streamstate against each peer (ops/s ratio, > 1 = streamstate faster)",
        "",
        "*streamstate time \u00f7 floor*: streamstate's µs per operation over the floor's "
        "(serde + one bare round trip, see below), paired per round; 1\u00d7 would be the floor.",
        "",
        md_table(header, rows),
        "",
    ]


def _limit(data: dict[str, Any]) -> list[str]:
    s, names, wl = data["summary"], data["savers"], data["workload"]
    rows = []
    for mode in ("sync", "async"):
        lab = "sync" if mode == "sync" else "asyncio"
        pv, gv = s["limit"][f"put_vs_set:{mode}"], s["limit"][f"get_vs_get:{mode}"]
        rows.append(
            [
                f"SET {wl['streamstate_put_payload_bytes']} B",
                lab,
                fmt_stat(s["limit"][f"set:{mode}"]),
                *[fmt_stat(pv[n], X) for n in names],
            ]
        )
        rows.append(
            [
                f"GET {wl['streamstate_put_payload_bytes']} B",
                lab,
                fmt_stat(s["limit"][f"get:{mode}"]),
                *[fmt_stat(gv[n], X) for n in names],
            ]
        )
        rows.append(
            [
                f"SET {wl['streamstate_put_writes_payload_bytes']} B",
                lab,
                fmt_stat(s["limit"][f"set_small:{mode}"]),
                *["" for _ in names],
            ]
        )
    return [
        "## The limit: one bare round trip from the same Python client (valkey-py)",
        "",
        "Each saver column: its put ÷ SET on the SET rows, its get_tuple (latest) ÷ GET on "
        "the GET rows.",
        "",
        md_table(["bare command", "client", "ops/s", *names], rows),
        "",
    ]


def _costs(data: dict[str, Any]) -> list[str]:
    s, names, rt = data["summary"], data["savers"], data["round_trips"]
    rows = []
    for op in (*OPS, "mixed"):
        for name in names:
            key = f"{name}:mixed:threads" if op == "mixed" else f"{name}:{op}:sync"
            srv = s["server"][key]
            if op == "mixed":
                trips = sent = "\u2013"
            else:
                trips = fmt_num(rt[name]["sync"][op])
                sent = fmt_num(rt[name]["sync"][op + ":bytes"])
            top = ", ".join(f"{k} {v:.2g}" for k, v in list(srv["calls_per_op"].items())[:5])
            rows.append(
                [
                    OP_LABEL[op],
                    name,
                    trips,
                    sent,
                    f"{srv['commands_per_op']:.1f} ({top})",
                    fmt_num(srv["client_cpu_us_per_op"]),
                    fmt_num(srv["server_cpu_us_per_op"]),
                ]
            )
    return [
        "## Cost per operation",
        "",
        "Round trips and request bytes are counted on the client (every client library); "
        "commands (every command the server ran, including inside Lua scripts and "
        "MULTI/EXEC) and server main-thread CPU come from INFO commandstats / INFO cpu "
        "deltas around each timed phase; client CPU is the bench process's CPU time over "
        "the same phase (sync, 1 client; mixed: per op of the 16-thread run). CPU times are "
        "less disturbed by a busy machine than wall-clock rates.",
        "",
        md_table(
            [
                "operation",
                "saver",
                "round trips",
                "request B",
                "commands",
                "client CPU µs",
                "server CPU µs",
            ],
            rows,
        ),
        "",
    ]


def _floor(data: dict[str, Any]) -> list[str]:
    s, names = data["summary"], data["savers"]
    peers = [n for n in names if n != SUBJECT]
    rows = []
    for op, mode in [(op, "sync") for op in OPS] + [("mixed", "threads")]:
        f = s["floor"][f"{op}:{mode}"]
        e = s["ops"][f"{op}:{mode}"]
        rows.append(
            [
                OP_LABEL[op] + (" (threads; serde only)" if op == "mixed" else ""),
                fmt_num(f["serde_us"]["median"]),
                fmt_num(f["rtt_us"]["median"]),
                fmt_num(f["floor_us"]["median"]),
                *[
                    f"{fmt_num(f['us'][n]['median'])} ({fmt_num(f['vs_floor'][n]['median'])}{X})"
                    for n in names
                ],
                _best(e) if peers else "\u2013",
            ]
        )
    return [
        "## How far from the floor (sync, 1 client)",
        "",
        "Floor = client time in LangGraph's serde alone for the operation "
        "(JsonPlusSerializer dumps/loads of the values it must move) + one bare round "
        "trip (SET of as many bytes as streamstate sends for writes, GET of a put's "
        "bytes for reads), measured in every round beside the savers. No saver using "
        "this serde can beat it. Each saver: µs per operation (its time \u00f7 floor, "
        "paired per round); a peer's time \u00f7 floor is the best ratio streamstate could "
        "reach against it.",
        "",
        md_table(
            [
                "operation",
                "serde µs",
                "round trip µs",
                "floor µs",
                *[f"{n} µs" for n in names],
                "streamstate \u00f7 best peer now",
            ],
            rows,
        ),
        "",
    ]


def _memory(data: dict[str, Any]) -> list[str]:
    s, names, labels, mem = data["summary"], data["savers"], data["labels"], data["memory"]
    peers = [n for n in names if n != SUBJECT]
    rows = []
    for key, label in MEMORY_MEASURES:
        e = s["memory"][key]
        rows.append(
            [
                label,
                *[fmt_stat(e["values"][n], " B") for n in names],
                *[fmt_ratio(e["ratios"][p]) for p in peers],
                _best(e),
            ]
        )
    lines = [
        "## Server memory per checkpoint (each saver alone, fresh threads; lower is better)",
        "",
        md_table(
            [
                "measure",
                *[labels[n] for n in names],
                *[f"\u00f7 {p}" for p in peers],
                "\u00f7 best peer",
            ],
            rows,
        ),
    ]
    for name in names:
        kinds = mem[name][-1]["by_key_kind"]
        lines += [
            "",
            f"{name} bytes per checkpoint by key: "
            + ", ".join(f"{k} {fmt_num(v)}" for k, v in kinds.items()),
        ]
    return [*lines, ""]


def report(data: dict[str, Any], quick: bool) -> str:
    lines = _header(data, quick)
    for section in (_throughput, _ratios, _limit, _costs, _floor, _memory):
        lines += section(data)
    return "\n".join(lines)
