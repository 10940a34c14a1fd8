"""Where a saver operation's server time goes: the anatomy of streamstate's server steps.

``python -m bench anatomy [--quick] [--rounds N]``

Each operation of the recorded LangGraph thread (put, put_writes, get_tuple latest and by
id, list(limit=10)) runs on a fresh embedded server with ``INFO cpu`` (the main thread's
CPU time) and ``INFO commandstats`` read around it. Every script call the saver sends is
captured and then sent again, with the same keys and arguments, to a script that does
nothing. The server CPU of an operation then splits into:

* *the call*: the no-op script's CPU with the same arguments (reading the request, the
  EVALSHA lookup, the arguments copied into Lua, a one-integer reply);
* *commands inside*: the server's own commands run by the script, by command
  (commandstats' clock: for commands of a few µs, near their CPU time);
* *the script's own work*: the rest. That is the Lua (parsing arguments, string work),
  handing values between Lua and the commands (each value a command reads or writes is
  copied once more), feeding the script's writes to the AOF, and building and writing
  the reply.

The same captured calls are then replayed, on fresh data, through the two ways Valkey
runs server-side Lua: ``EVALSHA`` of each script (what streamstate sends) and ``FCALL`` of
the same Lua loaded as a function library (``FUNCTION LOAD``), alternating which goes
first. ``MULTI``/``EXEC`` is no third choice for these steps: every one reads before it
writes, and a put's views need the entry id that ``XADD`` returns.

The server CPU per operation of langgraph-checkpoint-aws and -hotkv on the same
operations is shown for scale. Figures are medians over rounds (min-max); CPU time is
disturbed less than wall time by other work on the machine, but not left untouched.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import valkey

from bench.checkpoint_savers import SyncShell, aws, hotkv, streamstate
from bench.checkpoint_workload import ThreadOps, record_trace
from bench.common import (
    ServerSample,
    admin_client,
    embedded_server,
    flushall,
    fmt_ratio,
    fmt_stat,
    loadavg,
    machine_info,
    machine_md,
    md_table,
    paired_ratios,
    server_delta,
    summary,
    write_results,
)
from streamstate.eventlog.valkey.scripts import LuaScript

OPS = ("put", "put_writes", "get_tuple (latest)", "get_tuple (by id)", "list(limit=10)")
NOOP = "return 1"
SCRIPT_COMMANDS = {"evalsha", "eval", "fcall"}  # the script itself, not a command inside
MECHANISMS = ("EVALSHA", "FCALL")

Captured = list[tuple[LuaScript, list[Any], list[Any]]]
"""Script calls as (script, keys, args)."""


@contextlib.contextmanager
def captured_script_calls() -> Iterator[Captured]:
    """Every script call streamstate's sync executor sends."""
    from streamstate.eventlog.valkey import _exec

    calls: Captured = []
    original = _exec.ValkeyExecutor._once

    def capture(self: Any, call: Any) -> Any:
        if isinstance(call, _exec.ScriptCall):
            calls.append((call.script, list(call.keys), list(call.args)))
        return original(self, call)

    _exec.ValkeyExecutor._once = capture  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        _exec.ValkeyExecutor._once = original  # type: ignore[method-assign]


def _workload(shell: SyncShell, threads: list[ThreadOps]) -> dict[str, Callable[[], int]]:
    """Each operation as a function that runs it over every thread and returns its count."""

    def put() -> int:
        for th in threads:
            for args in th.puts:
                shell.put(*args)
        return sum(len(th.puts) for th in threads)

    def put_writes() -> int:
        n = 0
        for th in threads:
            for writes in th.writes:
                for conf, w, task, path in writes:
                    shell.put_writes(conf, w, task, path)
                    n += 1
        return n

    def latest() -> int:
        for th in threads:
            for _ in th.ids:
                shell.get_tuple(th.latest_config())
        return sum(len(th.ids) for th in threads)

    def by_id() -> int:
        for th in threads:
            for cid in th.ids:
                shell.get_tuple(th.id_config(cid))
        return sum(len(th.ids) for th in threads)

    def listing() -> int:
        n = 0
        for th in threads:
            for _ in range(len(th.ids) // 4):
                shell.list(th.latest_config(), 10)
                n += 1
        return n

    return dict(zip(OPS, (put, put_writes, latest, by_id, listing)))


def _measure(admin: Any, run: Callable[[], int]) -> tuple[int, dict[str, Any]]:
    before = ServerSample.take(admin)
    ops = run()
    after = ServerSample.take(admin)
    return ops, server_delta([(before, after)], ops)


def _replay_noop(admin: Any, calls: Captured, ops: int) -> float:
    """Server CPU µs per operation of the captured calls sent to a script that does nothing."""
    sha = admin.script_load(NOOP)
    before = ServerSample.take(admin)
    for _script, keys, args in calls:
        admin.evalsha(sha, len(keys), *keys, *args)
    after = ServerSample.take(admin)
    return float(server_delta([(before, after)], ops)["server_cpu_us_per_op"])


LIBRARY = "streamstate_anatomy"


def function_library(scripts: list[LuaScript]) -> str:
    """The scripts' Lua as one function library: each body runs unchanged, with KEYS and
    ARGV as its function's arguments, registered under the script's name."""
    parts = [f"#!lua name={LIBRARY}"]
    for script in scripts:
        parts += [f"local function body_{script.name}(KEYS, ARGV)", script.source, "end",
                  f"server.register_function('{script.name}', body_{script.name})"]  # fmt: skip
    return "\n".join(parts) + "\n"


def _replay_mechanisms(
    url: str, admin: Any, captured: dict[str, tuple[Captured, int]], rnd: int
) -> dict[str, dict[str, float]]:
    """Server CPU µs per operation of the captured calls sent by EVALSHA and by FCALL,
    each on fresh data in the workload's order; which goes first alternates by round."""
    scripts = {s.name: s for calls, _n in captured.values() for s, _k, _a in calls}
    raw = valkey.Valkey.from_url(url, max_connections=1)  # replies stay bytes
    out: dict[str, dict[str, float]] = {}
    try:
        raw.function_load(function_library(list(scripts.values())), replace=True)
        for script in scripts.values():
            raw.script_load(script.source)
        order = MECHANISMS if rnd % 2 == 0 else MECHANISMS[::-1]
        for mechanism in order:
            flushall(admin)  # data only: scripts and functions stay loaded
            out[mechanism] = {}
            for op, (calls, ops) in captured.items():
                before = ServerSample.take(admin)
                for script, keys, args in calls:
                    if mechanism == "EVALSHA":
                        raw.evalsha(script.sha, len(keys), *keys, *args)
                    else:
                        raw.fcall(script.name, len(keys), *keys, *args)
                after = ServerSample.take(admin)
                out[mechanism][op] = server_delta([(before, after)], ops)["server_cpu_us_per_op"]
        raw.function_delete(LIBRARY)
    finally:
        raw.close()
    return out


def _streamstate_round(url: str, admin: Any, trace: list[Any], n_threads: int, rnd: int) -> dict:
    out: dict[str, Any] = {}
    captured: dict[str, tuple[Captured, int]] = {}
    flushall(admin)
    opened = streamstate().open_sync(url)
    try:
        shell = SyncShell(opened.saver)
        threads = [ThreadOps.build(trace, f"anatomy-{rnd}-{i}") for i in range(n_threads)]
        for op, run in _workload(shell, threads).items():
            with captured_script_calls() as calls:
                ops, delta = _measure(admin, run)
            usec = {k: delta["usec_per_call"][k] * delta["calls_per_op"][k]
                    for k in delta["calls_per_op"]}  # fmt: skip
            inside = {k: v for k, v in usec.items() if k not in SCRIPT_COMMANDS}
            call = _replay_noop(admin, calls, ops)
            cpu = delta["server_cpu_us_per_op"]
            out[op] = {
                "ops": ops,
                "scripts_per_op": len(calls) / ops,
                "server_cpu_us": cpu,
                "call_us": call,
                "inside_us": sum(inside.values()),
                "inside_by_command": inside,
                "logic_us": cpu - call - sum(inside.values()),
                "commands_per_op": delta["commands_per_op"],
            }
            captured[op] = (calls, ops)
    finally:
        opened.close()
    out["mechanisms"] = _replay_mechanisms(url, admin, captured, rnd)
    return out


def _peer_round(
    peer: Any, url: str, admin: Any, trace: list[Any], n_threads: int, rnd: int
) -> dict:
    flushall(admin)
    opened = peer.open_sync(url)
    try:
        shell = SyncShell(opened.saver)
        threads = [
            ThreadOps.build(trace, f"anatomy-{peer.name}-{rnd}-{i}") for i in range(n_threads)
        ]
        out = {}
        for op, run in _workload(shell, threads).items():
            _ops, delta = _measure(admin, run)
            out[op] = {"server_cpu_us": delta["server_cpu_us_per_op"],
                       "commands_per_op": delta["commands_per_op"]}  # fmt: skip
        return out
    finally:
        opened.close()


# -- unit costs inside a script ----------------------------------------------------------

ENTRY_BYTES = 3000
"""Each of the probe entry's two values: about a checkpoint entry of the recorded thread."""
UNIT_LOOPS = 10
UNIT_SCRIPTS = {
    "EXISTS": "redis.call('EXISTS', KEYS[1])",
    "HGET of a 50-byte value": "redis.call('HGET', KEYS[1], 'f1')",
    f"XRANGE of one entry ({2 * ENTRY_BYTES:,} bytes)": (
        "redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1])"
    ),
    "cmsgpack.unpack of a checkpoint header": "cmsgpack.unpack(header)",
    "escaping a UUID (string.gsub)": (
        "string.gsub('1f1f25b5-c0c1-6387-bffe-a63cd43371c8', '[^%w%-_%.~]', "
        "function(c) return string.format('%%%02X', string.byte(c)) end)"
    ),
}


def unit_costs(admin: Any, calls: int) -> dict[str, float]:
    """Server CPU µs of one step inside a script: a script doing it UNIT_LOOPS times,
    less the same script doing nothing, over UNIT_LOOPS."""
    admin.hset("anatomy:h", mapping={f"f{i}": "x" * 50 for i in range(200)})
    entry = admin.xadd("anatomy:s", {"e": "e" * ENTRY_BYTES, "0": "v" * ENTRY_BYTES})
    header = "local header = cmsgpack.pack({{source='\"loop\"', step='3'}, " + (
        "{'messages:p3.0.1', 'agent:p3.0.2', 'branch:to:agent:p2.0.3'}, 'p', 'r', 'w'})\n"
    )

    def cpu(body: str) -> float:
        sha = admin.script_load(f"{header}for i = 1, {UNIT_LOOPS} do {body} end\nreturn 1")
        before = ServerSample.take(admin)
        for _ in range(calls):
            admin.evalsha(sha, 2, "anatomy:h", "anatomy:s", entry)
        return float(
            server_delta([(before, ServerSample.take(admin))], calls)["server_cpu_us_per_op"]
        )

    empty = cpu("")
    out = {name: (cpu(body) - empty) / UNIT_LOOPS for name, body in UNIT_SCRIPTS.items()}
    out["a script call doing nothing (the round trip included)"] = empty
    admin.delete("anatomy:h", "anatomy:s")
    return out


PARTS = (
    ("call_us", "the call"),
    ("inside_us", "commands inside"),
    ("logic_us", "the script's own work"),
)


def render(data: dict[str, Any]) -> str:
    st = data["settings"]
    ss = data["streamstate"]
    lines = [
        "# Anatomy of streamstate's server steps",
        "",
        machine_md(data["machine"]),
        f"- load average (1/5/15 min) {data['load_before']} before, {data['load_after']} after",
        "",
        f"`python -m bench anatomy{' --quick' if st['quick'] else ''}`: {st['rounds']} rounds of "
        f"{st['threads']} recorded threads ({st['checkpoints']} checkpoints each) per saver, "
        "one sync client, fresh server data per round. See the module docstring for what "
        "each part measures. Server µs per operation, median (min-max) over rounds.",
        "",
    ]
    header = ["operation", "server CPU", *(label for _k, label in PARTS), "largest commands inside",
              *(f"{p} server CPU" for p in data["peers"])]  # fmt: skip
    rows = []
    for op in OPS:
        parts = {k: summary([r[op][k] for r in ss]) for k, _l in PARTS}
        cpu = summary([r[op]["server_cpu_us"] for r in ss])
        by_cmd: dict[str, list[float]] = {}
        for r in ss:
            for cmd, us in r[op]["inside_by_command"].items():
                by_cmd.setdefault(cmd, []).append(us)
        top = sorted(((summary(v)["median"], c) for c, v in by_cmd.items()), reverse=True)[:3]
        peers = [fmt_stat(summary([r[op]["server_cpu_us"] for r in data["peers"][p]]))
                 for p in data["peers"]]  # fmt: skip
        rows.append([op, fmt_stat(cpu), *(fmt_stat(parts[k]) for k, _l in PARTS),
                     ", ".join(f"{c} {us:.1f}" for us, c in top), *peers])  # fmt: skip
    lines.append(md_table(header, rows))
    lines += [
        "",
        "Share of streamstate's server CPU per operation (medians):",
        "",
    ]
    share_rows = []
    for op in OPS:
        cpu = summary([r[op]["server_cpu_us"] for r in ss])["median"]
        share_rows.append([op, *(f"{100 * summary([r[op][k] for r in ss])['median'] / cpu:.0f} %"
                                 for k, _l in PARTS)])  # fmt: skip
    lines.append(md_table(["operation", *(label for _k, label in PARTS)], share_rows))
    lines += [
        "",
        f"Unit costs inside a script (server CPU µs per step: a script doing it {UNIT_LOOPS} "
        "times, less the same script doing nothing; median (min-max) over rounds). Whatever a "
        "script reads is copied into Lua, and what it returns is copied again into the reply:",
        "",
    ]
    units = data["units"]
    lines.append(md_table(["step", "µs"], [[name, fmt_stat(summary([u[name] for u in units]))]
                                          for name in units[0]]))  # fmt: skip
    lines += [
        "",
        "How a step is sent: the captured calls replayed on fresh data by `EVALSHA` (as "
        "streamstate sends them) and by `FCALL` of the same Lua loaded as a function "
        "library; server CPU µs per operation, median (min-max), and FCALL / EVALSHA "
        "paired per round:",
        "",
    ]
    mech_rows = []
    for op in OPS:
        per = {m: [r["mechanisms"][m][op] for r in ss] for m in MECHANISMS}
        mech_rows.append([op, *(fmt_stat(summary(per[m])) for m in MECHANISMS),
                          fmt_ratio(paired_ratios(per["FCALL"], per["EVALSHA"]))])  # fmt: skip
    lines.append(md_table(["operation", *MECHANISMS, "FCALL / EVALSHA"], mech_rows))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench anatomy", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 threads")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 5)
    n_threads = 3 if args.quick else 10
    trace = record_trace()
    peers = [p for p in (aws(), hotkv()) if p.installed()]
    data: dict[str, Any] = {
        "settings": {
            "quick": args.quick,
            "rounds": rounds,
            "threads": n_threads,
            "checkpoints": len(trace),
        },
        "load_before": loadavg(),
        "streamstate": [],
        "peers": {p.name: [] for p in peers},
        "units": [],
    }
    with embedded_server() as server:
        admin = admin_client(server.url)
        data["machine"] = machine_info(admin, ["langgraph-checkpoint", "valkey"])
        for rnd in range(rounds):
            print(f"round {rnd + 1}/{rounds}", flush=True)
            data["streamstate"].append(_streamstate_round(server.url, admin, trace, n_threads, rnd))
            data["units"].append(unit_costs(admin, 300 if args.quick else 2000))
            for peer in peers:
                data["peers"][peer.name].append(
                    _peer_round(peer, server.url, admin, trace, n_threads, rnd)
                )
    data["load_after"] = loadavg()
    markdown = render(data)
    name = "anatomy-quick" if args.quick else "anatomy"
    md, js = write_results(name, markdown, data)
    print(markdown)
    print(f"wrote {md} and {js}")
    return 0
