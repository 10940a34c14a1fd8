"""Server footprint: what each checkpointer costs the server per thread and per checkpoint.

``python -m bench footprint [--quick] [--node-bytes N] [--reps N] [--peers ...] [--no-save]``

For each saver (streamstate, langgraph-checkpoint-aws, -hotkv, -plainredis), alone on
the server after ``FLUSHALL``:

* **tiny threads**: 1,000 threads, each one ``put`` of a one-message state and one
  ``put_writes`` of one write (the shape of most threads of a busy service: opened,
  answered once, never read again);
* **real-thread checkpoints**: 300 checkpoints of the recorded 10->50-message thread of
  ``bench checkpoint`` (replayed on as many threads as that takes), with their writes.

Per thread (or per checkpoint): server memory (``used_memory`` delta, and the sum of
``MEMORY USAGE`` over every key the saver created), keys, keys left without a TTL when a
TTL was asked for, and server CPU per operation (INFO cpu ``used_cpu_sys`` +
``used_cpu_user`` delta / operations, the whole process with its AOF thread).

Everything runs twice: on a default-config server and on one started with
``stream-node-max-bytes`` N (``--node-bytes``, default 512: streamstate keeps its event
log in streams, whose nodes this caps), and each time without TTL and with
``ttl=3600`` s (each peer's TTL option; hotkv has none, so it is measured without and
marked). Full results go to bench/results/footprint.{md,json}; ``--quick`` writes to a
temp dir.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import valkey

from bench.checkpoint_report import SUBJECT, compare
from bench.checkpoint_savers import PEER_FACTORIES, Checkpointer, SyncShell, peers, streamstate
from bench.checkpoint_workload import Step, ThreadOps, record_trace
from bench.common import (
    ServerSample,
    X,
    admin_client,
    embedded_server,
    flushall,
    fmt_num,
    fmt_ratio,
    fmt_stat,
    loadavg,
    machine_info,
    machine_md,
    md_table,
    unique_ids,
    used_memory,
    write_results,
)

TTL_SECONDS = 3600
DEFAULT_NODE_BYTES = 512
PACKAGES = [
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-aws",
    "langgraph-checkpoint-hotkv",
    "hotkv-client",
    "langgraph-checkpoint-plainredis",
    "redis",
    "valkey",
]
TEXT = (
    "Could you check the delivery status of order 4411 and tell me whether the refund for "
    "the damaged item was issued to the card on file or to store credit, and by when the "
    "customer should expect it on the statement? Thanks, the support desk on shift tonight."
)  # ~250 characters, the message size of the recorded thread


@dataclass(frozen=True)
class Settings:
    tiny_threads: int
    real_checkpoints: int
    reps: int  # repetitions of every measurement (saver order flips each time)


FULL = Settings(tiny_threads=1000, real_checkpoints=300, reps=3)
QUICK = Settings(tiny_threads=100, real_checkpoints=60, reps=1)


def streamstate_node_bytes() -> int | None:
    """The stream node size streamstate.server starts its embedded server with, if the
    module states one (a public integer constant with NODE in its name); else None."""
    import streamstate.server as server

    found = [
        v
        for k, v in vars(server).items()
        if k.isupper() and "NODE" in k and isinstance(v, int) and not isinstance(v, bool)
    ]
    return found[0] if len(found) == 1 else None


VALKEY_DEFAULT_NODE_BYTES = 4096
"""Valkey's default ``stream-node-max-bytes`` (what ElastiCache runs unless changed)."""


# -- the writes ---------------------------------------------------------------------------


Call = Callable[[], Any]


def tiny_thread_calls(shell: SyncShell, thread_id: str) -> list[Call]:
    """One put of a one-message state, then one put_writes of one write (an answer)."""
    from langchain_core.messages import AIMessage, HumanMessage
    from langgraph.checkpoint.base import empty_checkpoint

    version = shell.saver.get_next_version(None, None)
    cp = empty_checkpoint()
    cp["channel_values"] = {"messages": [HumanMessage(TEXT, id=str(uuid.uuid4()))]}
    cp["channel_versions"] = {"messages": version}
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    metadata = {"source": "input", "step": -1, "parents": {}, "run_id": str(uuid.uuid4())}
    write_config = {
        "configurable": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": cp["id"]}
    }
    writes = [("messages", [AIMessage(TEXT, id=str(uuid.uuid4()))])]
    task_id = str(uuid.uuid4())
    return [
        lambda: shell.put(config, cp, metadata, {"messages": version}),
        lambda: shell.put_writes(write_config, writes, task_id, ""),
    ]


def real_thread_calls(
    shell: SyncShell, trace: Sequence[Step], checkpoints: int, ids: Iterator[str]
) -> list[Call]:
    """``checkpoints`` checkpoints of the recorded thread, each with its put_writes."""
    calls: list[Call] = []
    left = checkpoints
    while left > 0:
        th = ThreadOps.build(trace, next(ids), min(left, len(trace)))
        for put_args, writes in zip(th.puts, th.writes):
            calls.append(lambda a=put_args: shell.put(*a))
            calls += [lambda a=w: shell.put_writes(*a) for w in writes]
        left -= len(th.puts)
    return calls


# -- one measurement ------------------------------------------------------------------------


def _batched(items: Sequence[str], n: int = 500) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def key_census(admin: valkey.Valkey, skip: set[str]) -> dict[str, Any]:
    """Every key but ``skip``: MEMORY USAGE (exact, samples 0) and PTTL, pipelined."""
    keys = [k for k in admin.scan_iter(count=1000) if k not in skip]
    sizes: list[int] = []
    ttls: list[int] = []
    for batch in _batched(keys):
        pipe = admin.pipeline(transaction=False)
        for key in batch:
            pipe.memory_usage(key, samples=0)
            pipe.pttl(key)
        replies = pipe.execute()
        sizes += [int(x or 0) for x in replies[0::2]]
        ttls += [int(x) for x in replies[1::2]]
    return {"keys": keys, "sizes": sizes, "ttls": ttls}


def measure(
    cp: Checkpointer,
    url: str,
    admin: valkey.Valkey,
    ttl: float | None,
    build: Callable[[SyncShell], tuple[list[Call], int]],
) -> dict[str, Any]:
    """Run one saver's writes alone on an empty server; what the server holds and spent.

    ``build(shell)`` returns the calls and the number of units (threads or checkpoints)
    they write; results are per unit, CPU per call.
    """
    flushall(admin)
    time.sleep(0.2)
    opened = cp.open_sync(url, ttl)
    try:
        shell = SyncShell(opened.saver)
        shell.get_tuple({"configurable": {"thread_id": "warm-up", "checkpoint_ns": ""}})
        calls, units = build(shell)
        present = set(admin.scan_iter(count=1000))  # anything the warm-up left
        mem0 = used_memory(admin)
        cpu0 = ServerSample.take(admin)
        for call in calls:
            call()
        cpu1 = ServerSample.take(admin)
        time.sleep(0.2)
        mem1 = used_memory(admin)
    finally:
        opened.close()
    census = key_census(admin, present)
    kinds: dict[str, int] = {}
    persistent: dict[str, int] = {}  # key kind -> keys with no TTL
    for key, size, ttl_ms in zip(census["keys"], census["sizes"], census["ttls"]):
        kind = cp.key_kind(key)
        kinds[kind] = kinds.get(kind, 0) + size
        if ttl_ms < 0:
            persistent[kind] = persistent.get(kind, 0) + 1
    flushall(admin)
    return {
        "units": units,
        "ops": len(calls),
        "used_memory": (mem1 - mem0) / units,
        "key_bytes": sum(census["sizes"]) / units,
        "keys": len(census["keys"]) / units,
        "keys_without_ttl": sum(1 for t in census["ttls"] if t < 0) / units,
        "server_cpu_us_per_op": (cpu1.cpu_all - cpu0.cpu_all) * 1e6 / len(calls),
        "by_key_kind": {k: v / units for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
        "persistent_keys_by_kind": persistent,
    }


# -- the run ------------------------------------------------------------------------------------

SHAPES = ("tiny", "real")
MEASURES = ("used_memory", "key_bytes", "keys", "keys_without_ttl", "server_cpu_us_per_op")


def run_server(
    savers: Sequence[Checkpointer],
    config: dict[str, Any],
    settings: Settings,
    trace: Sequence[Step],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Every saver x TTL x shape on one server started with ``config``; ``reps`` times."""
    ids = unique_ids(f"fp-{uuid.uuid4().hex[:8]}")
    builders: dict[str, Callable[[SyncShell], tuple[list[Call], int]]] = {
        "tiny": lambda shell: (
            [c for _ in range(settings.tiny_threads) for c in tiny_thread_calls(shell, next(ids))],
            settings.tiny_threads,
        ),
        "real": lambda shell: (
            real_thread_calls(shell, trace, settings.real_checkpoints, ids),
            settings.real_checkpoints,
        ),
    }
    results: dict[str, Any] = {}
    with embedded_server(**{"auto-aof-rewrite-percentage": 0, **config}) as server:
        admin = admin_client(server.url)
        node_bytes = int(admin.config_get("stream-node-max-bytes")["stream-node-max-bytes"])
        machine = machine_info(admin, PACKAGES)
        # Untimed pass: the first writes on a fresh server grow it once (and a saver may
        # load its scripts on its first put), which is no saver's footprint.
        for cp in savers:
            for shape in SHAPES:
                measure(cp, server.url, admin, TTL_SECONDS, builders[shape])
        for ttl in (None, TTL_SECONDS):
            for shape in SHAPES:
                for rep in range(settings.reps):
                    for cp in savers if rep % 2 == 0 else savers[::-1]:
                        res = measure(cp, server.url, admin, ttl, builders[shape])
                        key = f"{cp.name}:{ttl or 'none'}:{shape}"
                        results.setdefault(key, []).append(res)
                last = {cp.name: results[f"{cp.name}:{ttl or 'none'}:{shape}"][-1] for cp in savers}
                log(
                    f"  node {node_bytes} B, ttl {ttl}, {shape}: used_memory per unit "
                    + ", ".join(f"{n} {fmt_num(r['used_memory'])} B" for n, r in last.items())
                )
        admin.close()
    return {"stream_node_max_bytes": node_bytes, "machine": machine, "results": results}


def run(
    settings: Settings, node_bytes: int, peer_names: list[str], log: Callable[[str], None]
) -> dict[str, Any]:
    t0 = time.monotonic()
    others, not_run = peers(peer_names)
    savers = [streamstate(), *others]
    trace = record_trace()
    data: dict[str, Any] = {
        "settings": settings.__dict__,
        "savers": [cp.name for cp in savers],
        "labels": {cp.name: cp.label for cp in savers},
        "has_ttl": {cp.name: cp.has_ttl for cp in savers},
        "not_run": not_run,
        "ttl_seconds": TTL_SECONDS,
        "node_bytes_source": "streamstate.server"
        if streamstate_node_bytes() is not None
        else "--node-bytes",
        "trace_checkpoints": len(trace),
        "load_before": loadavg(),
        "servers": {},
    }
    for name, config in (
        # Valkey's own default, stated: the embedded server would otherwise set its own
        ("default", {"stream-node-max-bytes": VALKEY_DEFAULT_NODE_BYTES}),
        (f"node-{node_bytes}", {"stream-node-max-bytes": node_bytes}),
    ):
        log(f"server {name} ...")
        data["servers"][name] = run_server(savers, config, settings, trace, log)
    data["machine"] = data["servers"]["default"].pop("machine")
    for srv in data["servers"].values():
        srv.pop("machine", None)
    data["load_after"] = loadavg()
    data["seconds"] = time.monotonic() - t0
    data["summary"] = summarise(data)
    return data


def summarise(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = data["savers"]
    for server, srv in data["servers"].items():
        res = srv["results"]
        for ttl in ("none", str(data["ttl_seconds"])):
            for shape in SHAPES:
                for m in MEASURES:
                    out[f"{server}:{ttl}:{shape}:{m}"] = compare(
                        names,
                        lambda n, res=res, ttl=ttl, shape=shape, m=m: [
                            r[m] for r in res[f"{n}:{ttl}:{shape}"]
                        ],
                        smaller_wins=True,
                    )
    return out


# -- the report -------------------------------------------------------------------------------


def _ttl_label(data: dict[str, Any], name: str, ttl: str) -> str:
    if ttl == "none":
        return "none"
    if not data["has_ttl"][name]:
        return f"{ttl} s asked: **no TTL option**, keys never expire"
    return f"{ttl} s"


def _shape_table(data: dict[str, Any], server: str, shape: str) -> str:
    s, names = data["summary"], data["savers"]
    unit = "thread" if shape == "tiny" else "checkpoint"
    rows = []
    for name in names:
        for ttl in ("none", str(data["ttl_seconds"])):

            def med(m: str, ttl: str = ttl, name: str = name) -> float:
                return s[f"{server}:{ttl}:{shape}:{m}"]["values"][name]["median"]

            rows.append(
                [
                    name,
                    _ttl_label(data, name, ttl),
                    fmt_num(med("used_memory")),
                    fmt_num(med("key_bytes")),
                    fmt_num(med("keys")),
                    "\u2013" if ttl == "none" else fmt_num(med("keys_without_ttl")),
                    fmt_stat(s[f"{server}:{ttl}:{shape}:server_cpu_us_per_op"]["values"][name]),
                ]
            )
    return md_table(
        [
            "saver",
            "TTL",
            f"used_memory B/{unit}",
            f"MEMORY USAGE B/{unit}",
            f"keys/{unit}",
            f"keys without TTL/{unit}",
            "server CPU µs/op",
        ],
        rows,
    )


def _ratio_table(data: dict[str, Any]) -> str:
    s, names = data["summary"], data["savers"]
    peers_ = [n for n in names if n != SUBJECT]
    rows = []
    for server in data["servers"]:
        for ttl in ("none", str(data["ttl_seconds"])):
            for shape, m, label in (
                ("tiny", "used_memory", "tiny thread: used_memory"),
                ("tiny", "server_cpu_us_per_op", "tiny thread: server CPU/op"),
                ("real", "used_memory", "real checkpoint: used_memory"),
                ("real", "server_cpu_us_per_op", "real checkpoint: server CPU/op"),
            ):
                e = s[f"{server}:{ttl}:{shape}:{m}"]
                best = e["best_peer"]
                rows.append(
                    [
                        server,
                        "none" if ttl == "none" else f"{ttl} s",
                        label,
                        *[fmt_ratio(e["ratios"][p]) for p in peers_],
                        f"{fmt_ratio(e['ratios'][best])} ({best})" if best else "\u2013",
                    ]
                )
    return md_table(
        ["server", "TTL", "measure", *[f"\u00f7 {p}" for p in peers_], "\u00f7 best peer"], rows
    )


def report(data: dict[str, Any], quick: bool) -> str:
    st = data["settings"]
    lines = [
        "# Server footprint per thread and per checkpoint"
        + (" (quick smoke run \u2014 not for conclusions)" if quick else ""),
        "",
        machine_md(data["machine"]),
        f"- run time {data['seconds']:.0f} s; load average (1/5/15 min) {data['load_before']}"
        f" before, {data['load_after']} after",
        "",
    ]
    if data["not_run"]:
        lines += [f"- not run: **{n}**: {why}" for n, why in data["not_run"].items()] + [""]
    lines += [
        "Each saver alone on the server after FLUSHALL, one sync client, on its own client "
        "library. *Tiny threads*: "
        f"{st['tiny_threads']} threads, each one put of a one-message state (~250 chars) and "
        "one put_writes of one write. *Real-thread checkpoints*: "
        f"{st['real_checkpoints']} checkpoints of the recorded thread of `bench checkpoint` "
        f"(messages 10\u219250, {data['trace_checkpoints']} checkpoints per thread, replayed on "
        "as many threads as that takes), each with its put_writes. *used_memory*: INFO "
        "used_memory delta; *MEMORY USAGE*: its sum over every key the saver created "
        "(shared registry keys included); *keys without TTL*: keys PTTL reports as "
        "persistent although a TTL was asked for; *server CPU*: INFO cpu used_cpu_sys + "
        "used_cpu_user delta (the whole server process) / operations. Memory figures are "
        f"medians of {st['reps']} repetitions (they hardly vary); CPU is median "
        f"(min\u2013max). TTL: streamstate `ttl={data['ttl_seconds']}`, aws `ttl=`, plainredis "
        "`ttl=`; langgraph-checkpoint-hotkv has no TTL option.",
        "",
    ]
    node_note = (
        "the node size streamstate.server states"
        if data["node_bytes_source"] == "streamstate.server"
        else "a parameter (`--node-bytes`): streamstate.server states no node size at this "
        "commit, so streamstate runs unchanged on both servers and the server setting "
        "alone changes its streams"
    )
    for server, srv in data["servers"].items():
        title = (
            "default config"
            if server == "default"
            else f"started with stream-node-max-bytes {srv['stream_node_max_bytes']}"
        )
        lines += [
            f"## Server: {title} (stream-node-max-bytes in effect: {srv['stream_node_max_bytes']})",
            "",
        ]
        if server != "default":
            lines += [f"The node size is {node_note}.", ""]
        lines += [
            f"### Tiny threads ({st['tiny_threads']}: one put + one put_writes each), per thread",
            "",
            _shape_table(data, server, "tiny"),
            "",
            f"### Real-thread checkpoints ({st['real_checkpoints']}, with their writes), "
            "per checkpoint",
            "",
            _shape_table(data, server, "real"),
            "",
        ]
    lines += [
        f"## streamstate \u00f7 peer (lower is better; paired per repetition; {X} < 1 = "
        "streamstate smaller / cheaper)",
        "",
        _ratio_table(data),
        "",
    ]
    lines += ["### Keys left without a TTL although one was asked for (by key kind)", ""]
    ttl_key = str(data["ttl_seconds"])
    for server, srv in data["servers"].items():
        for name in data["savers"]:
            for shape in SHAPES:
                r = srv["results"][f"{name}:{ttl_key}:{shape}"][-1]
                kinds = r["persistent_keys_by_kind"]
                lines.append(
                    f"- {server}, {name}, {shape} ({r['units']} "
                    f"{'threads' if shape == 'tiny' else 'checkpoints'}): "
                    + (", ".join(f"{k} {v}" for k, v in kinds.items()) or "none")
                )
    lines += ["", "### Bytes by key kind (no TTL)", ""]
    for server, srv in data["servers"].items():
        for name in data["savers"]:
            for shape in SHAPES:
                kinds = srv["results"][f"{name}:none:{shape}"][-1]["by_key_kind"]
                unit = "thread" if shape == "tiny" else "checkpoint"
                lines.append(
                    f"- {server}, {name}, bytes per {unit}: "
                    + ", ".join(f"{k} {fmt_num(v)}" for k, v in kinds.items())
                )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench footprint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--quick", action="store_true", help="short smoke run (~1 min)")
    ap.add_argument(
        "--reps",
        "--rounds",
        dest="reps",
        type=int,
        help="override the repetitions of every measurement (--rounds: the same, for 'bench all')",
    )
    ap.add_argument(
        "--node-bytes",
        type=int,
        default=None,
        help="stream-node-max-bytes of the second server (default: the node size "
        f"streamstate.server states, if any, else {DEFAULT_NODE_BYTES})",
    )
    ap.add_argument(
        "--peers",
        default=",".join(PEER_FACTORIES),
        help=f"comma-separated peers (default: all of {', '.join(PEER_FACTORIES)})",
    )
    ap.add_argument("--no-save", action="store_true", help="print only; write no result files")
    args = ap.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.reps:
        settings = Settings(**{**settings.__dict__, "reps": args.reps})
    peer_names = [n.strip() for n in args.peers.split(",") if n.strip()]
    unknown = sorted(set(peer_names) - set(PEER_FACTORIES))
    if unknown:
        ap.error(f"unknown peers: {', '.join(unknown)}")
    node_bytes = args.node_bytes or streamstate_node_bytes() or DEFAULT_NODE_BYTES

    def log(msg: str) -> None:
        print(f"[bench footprint] {msg}", file=sys.stderr, flush=True)

    data = run(settings, node_bytes, peer_names, log)
    md = report(data, args.quick)
    print(md)
    if args.no_save:
        return 0
    if args.quick:  # a smoke run never overwrites the kept full results
        out = Path(tempfile.mkdtemp(prefix="ss-bench-footprint-quick-"))
        md_path, json_path = out / "footprint-quick.md", out / "footprint-quick.json"
        md_path.write_text(md)
        json_path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    else:
        md_path, json_path = write_results("footprint", md, data)
    log(f"wrote {md_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
