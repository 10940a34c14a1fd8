"""Helpers shared by the benchmarks: server, statistics, server counters, reporting.

Nothing here knows about checkpointers or stores.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import valkey
import valkey.asyncio.connection
import valkey.connection

from streamstate.server import EmbeddedServer, valkey_binary

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# -- the server ------------------------------------------------------------------------


@contextlib.contextmanager
def embedded_server(appendfsync: str = "everysec", **config: Any) -> Iterator[EmbeddedServer]:
    """A private valkey-server (AOF on, ``appendfsync``) on a temp dir, stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="ss-bench-") as tmp:
        server = EmbeddedServer(tmp, appendfsync=appendfsync, config=config or None).start()
        try:
            yield server
        finally:
            server.stop()


def admin_client(url: str) -> valkey.Valkey:
    """A one-connection client for counters and FLUSHALL (never timed)."""
    return valkey.Valkey.from_url(url, decode_responses=True, max_connections=1)


def flushall(admin: valkey.Valkey) -> None:
    admin.execute_command("FLUSHALL", "SYNC")


def commandstats(admin: valkey.Valkey) -> dict[str, tuple[int, int]]:
    """``{command: (calls, usec)}`` from INFO commandstats (``cmdstat_`` stripped)."""
    out = {}
    for key, value in admin.info("commandstats").items():
        out[key.removeprefix("cmdstat_")] = (int(value["calls"]), int(value["usec"]))
    return out


# Commands the bench itself sends between measurements.
_ADMIN_COMMANDS = {"info", "config|resetstat", "flushall", "memory|usage", "scan", "ping"}


@dataclass
class ServerSample:
    """Counters read before and after a measured phase."""

    stats: dict[str, tuple[int, int]]
    cpu_main: float
    cpu_all: float

    @classmethod
    def take(cls, admin: valkey.Valkey) -> ServerSample:
        cpu = admin.info("cpu")
        main = float(cpu.get("used_cpu_user_main_thread", 0.0)) + float(
            cpu.get("used_cpu_sys_main_thread", 0.0)
        )
        total = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
        return cls(commandstats(admin), main, total)


def server_delta(samples: Sequence[tuple[ServerSample, ServerSample]], ops: int) -> dict[str, Any]:
    """Per-operation server cost over one or more ``(before, after)`` windows.

    Returns commands per op (every command the server ran, including those run inside a
    script or a MULTI/EXEC), the breakdown by command, the server's own usec per call,
    and server CPU µs per op (main thread, and the whole process with its AOF thread).
    """
    calls: dict[str, int] = {}
    usec: dict[str, int] = {}
    cpu_main = cpu_all = 0.0
    for before, after in samples:
        cpu_main += after.cpu_main - before.cpu_main
        cpu_all += after.cpu_all - before.cpu_all
        for cmd, (c, u) in after.stats.items():
            if cmd in _ADMIN_COMMANDS:
                continue
            c0, u0 = before.stats.get(cmd, (0, 0))
            if c - c0:
                calls[cmd] = calls.get(cmd, 0) + c - c0
                usec[cmd] = usec.get(cmd, 0) + u - u0
    return {
        "commands_per_op": sum(calls.values()) / ops,
        "calls_per_op": {k: v / ops for k, v in sorted(calls.items(), key=lambda kv: -kv[1])},
        "usec_per_call": {k: usec[k] / calls[k] for k in calls},
        "server_cpu_us_per_op": cpu_main * 1e6 / ops,
        "server_cpu_all_us_per_op": cpu_all * 1e6 / ops,
    }


@dataclass
class Phase:
    """Operations, elapsed time and server windows of one measured phase (maybe in chunks)."""

    ops: int = 0
    seconds: float = 0.0
    client_cpu: float = 0.0
    windows: list[tuple[ServerSample, ServerSample]] = field(default_factory=list)

    def add(
        self,
        ops: int,
        seconds: float,
        before: ServerSample,
        after: ServerSample,
        client_cpu: float = float("nan"),
    ) -> None:
        self.ops += ops
        self.seconds += seconds
        self.client_cpu += client_cpu
        self.windows.append((before, after))

    def result(self) -> dict[str, Any]:
        return {
            "ops": self.ops,
            "seconds": self.seconds,
            "rate": self.ops / self.seconds,
            "client_cpu_us_per_op": self.client_cpu * 1e6 / self.ops,
            "server": server_delta(self.windows, self.ops),
        }


class Timer:
    """Wall time and this process's CPU time (all its threads) of a measured block."""

    def __enter__(self) -> Timer:
        self.cpu0 = time.process_time()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.cpu0


def used_memory(admin: valkey.Valkey) -> int:
    return int(admin.info("memory")["used_memory"])


# -- round trips, counted on the client ------------------------------------------------


def _connection_classes() -> list[tuple[type, bool]]:
    """``(connection class, is_async)`` of every client library the benches drive."""
    classes: list[tuple[type, bool]] = [
        (valkey.connection.AbstractConnection, False),
        (valkey.asyncio.connection.AbstractConnection, True),
    ]
    with contextlib.suppress(ImportError):  # langgraph-checkpoint-plainredis's client
        import redis.asyncio.connection
        import redis.connection

        classes += [
            (redis.connection.AbstractConnection, False),
            (redis.asyncio.connection.AbstractConnection, True),
        ]
    with contextlib.suppress(ImportError):  # langgraph-checkpoint-hotkv's client
        import hotkv._connection
        import hotkv.asyncio._connection

        classes += [
            (hotkv._connection.Connection, False),
            (hotkv.asyncio._connection.AsyncConnection, True),
        ]
    return classes


class RoundTrips:
    """Counts round trips (``send_packed_command`` calls) and bytes sent, on every client.

    One ``send_packed_command`` is one request flight: a single command or a whole
    pipeline. Patched on every client library the savers use (valkey-py, redis-py,
    hotkv-client). Only used in untimed passes (the patch costs a little per call).
    """

    def __init__(self) -> None:
        self.sends = 0
        self.bytes_sent = 0
        self._saved = [
            (cls, is_async, cls.send_packed_command) for cls, is_async in _connection_classes()
        ]

    def _count(self, command: Any) -> None:
        self.sends += 1
        if isinstance(command, (bytes, bytearray, memoryview)):
            self.bytes_sent += len(command)
        elif isinstance(command, str):
            self.bytes_sent += len(command.encode())
        else:
            self.bytes_sent += sum(len(c) for c in command)

    def __enter__(self) -> RoundTrips:
        for cls, is_async, original in self._saved:
            cls.send_packed_command = self._counting(original, is_async)  # type: ignore[method-assign]
        return self

    def _counting(self, original: Any, is_async: bool) -> Any:
        counter = self

        def send(conn: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
            counter._count(command)
            return original(conn, command, *args, **kwargs)

        async def asend(conn: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
            counter._count(command)
            return await original(conn, command, *args, **kwargs)

        return asend if is_async else send

    def __exit__(self, *exc: object) -> None:
        for cls, _is_async, original in self._saved:
            cls.send_packed_command = original  # type: ignore[method-assign]

    def mark(self) -> tuple[int, int]:
        return self.sends, self.bytes_sent


# -- statistics -------------------------------------------------------------------------


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and quartiles of per-round values (NaN values are left out)."""
    vals = sorted(v for v in values if v == v)
    if not vals:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    if len(vals) >= 4:
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    else:
        q1, q3 = vals[0], vals[-1]
    return {
        "median": statistics.median(vals),
        "min": vals[0],
        "max": vals[-1],
        "q1": q1,
        "q3": q3,
        "n": len(vals),
    }


def fmt_num(x: float) -> str:
    """Compact number: 12.3k, 987, 45.6, 1.23."""
    if x != x:  # NaN
        return "n/a"
    ax = abs(x)
    if ax >= 100_000:
        return f"{x / 1000:.0f}k"
    if ax >= 10_000:
        return f"{x / 1000:.1f}k"
    if ax >= 1000:
        return f"{x:.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_stat(s: Mapping[str, float], unit: str = "") -> str:
    """``median (min-max)`` (an en dash between min and max)."""
    return f"{fmt_num(s['median'])}{unit} ({fmt_num(s['min'])}\u2013{fmt_num(s['max'])})"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- the machine -------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info(
    admin: valkey.Valkey | None = None, packages: Sequence[str] = ()
) -> dict[str, Any]:
    server = ""
    with contextlib.suppress(Exception):
        server = subprocess.run(
            [valkey_binary(), "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "valkey_server": server,
        "packages": {p: _version(p) for p in packages},
    }
    if admin is not None:
        srv = admin.info("server")
        info["valkey_version"] = srv.get("valkey_version") or srv.get("redis_version")
        info["valkey_allocator"] = admin.info("memory").get("mem_allocator")
        info["appendfsync"] = admin.config_get("appendfsync").get("appendfsync")
    with contextlib.suppress(Exception):
        repo = Path(__file__).resolve().parent.parent

        def git(*args: str) -> str:
            out = subprocess.run(
                ["git", *args], capture_output=True, text=True, timeout=10, cwd=repo
            )
            return out.stdout.strip()

        info["git"] = git("rev-parse", "--short", "HEAD")
        if git("status", "--porcelain", "--", "streamstate"):
            info["git"] += " + uncommitted changes in streamstate/"
    return info


def machine_md(info: Mapping[str, Any]) -> str:
    pk = ", ".join(f"{k} {v}" for k, v in info.get("packages", {}).items())
    return "\n".join(
        [
            f"- date: {info['date']}"
            + (f" (streamstate git {info['git']})" if info.get("git") else ""),
            f"- CPU: {info['cpu']}, {info['cores']} cores; {info['os']}",
            f"- Python {info['python']}",
            f"- server: {info.get('valkey_server', '')} (allocator {info.get('valkey_allocator')},"
            f" appendfsync {info.get('appendfsync')}, embedded, loopback TCP)",
            f"- packages: {pk}",
        ]
    )


# -- results -------------------------------------------------------------------------------


def write_results(name: str, markdown: str, data: Mapping[str, Any]) -> tuple[Path, Path]:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    md_path, json_path = RESULTS_DIR / f"{name}.md", RESULTS_DIR / f"{name}.json"
    md_path.write_text(markdown)
    json_path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return md_path, json_path


def unique_ids(prefix: str) -> Iterator[str]:
    """``prefix-0``, ``prefix-1``, ... (thread ids never reused within a process)."""
    for i in itertools.count():
        yield f"{prefix}-{i}"


# -- shared by the peers and store benches -------------------------------------------------

X = "\u00d7"  # the multiplication sign of ratios


def abba_order(names: Sequence[str], rnd: int) -> list[str]:
    """ABBA within a round; the starting direction flips every round."""
    fwd = list(names) if rnd % 2 == 0 else list(reversed(names))
    return fwd + list(reversed(fwd))


def paired_ratios(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Summary of a / b paired per round (rounds where b is 0 are left out)."""
    return summary([x / y for x, y in zip(a, b, strict=True) if y])


def loadavg() -> str:
    """The 1/5/15-minute load averages, for results headers."""
    with contextlib.suppress(OSError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "n/a"


def fmt_ratio(r: Mapping[str, float]) -> str:
    """A ratio summary as its median, then (min to max), with the multiplication sign."""
    return f"{fmt_num(r['median'])}{X} ({fmt_num(r['min'])}\u2013{fmt_num(r['max'])})"
