"""Checkpointer benchmark: streamstate's savers against the other Valkey checkpointers.

``python -m bench checkpoint [--quick] [--rounds N] [--peers aws,hotkv,plainredis]``

Peers (``bench.checkpoint_savers``): langgraph-checkpoint-aws ``ValkeySaver``,
langgraph-checkpoint-hotkv ``HotKVSaver`` and langgraph-checkpoint-plainredis
``RedisSaver`` (and their asyncio classes), each on its own client library. One private
valkey-server (AOF, appendfsync everysec) serves every saver in the same run. The
workload (``bench.checkpoint_workload``) is a real LangGraph thread, recorded once, whose
``messages`` channel grows from 10 to 50 messages; each replayed thread gets its own
``thread_id`` and ``run_id``.

In every round every saver runs each phase, interleaved chunk by chunk in ABBA order
(the order flips every round), so drift and machine noise hit all alike:

* single client, sync and asyncio: ``put``, ``put_writes``, ``get_tuple`` (latest),
  ``get_tuple`` (by id), ``list(limit=10)``; server counters (commands, CPU) are read
  around each phase;
* 16 concurrent clients (threads on one sync saver; asyncio tasks on one async saver),
  each on its own thread doing, per step, one put, two put_writes and one get_tuple;
* the limit: a bare ``SET`` of as many bytes as one streamstate put sends, and a bare
  ``GET`` of it, from the same Python client;
* the serde floor: LangGraph's serde alone on the values each operation moves, which
  bounds the ratio any saver with that serde can reach.

After the rounds: round trips per operation (counted on the client) and bytes held by
the server per checkpoint (``used_memory`` delta over fresh threads, each saver alone
after ``FLUSHALL``). The report (``bench.checkpoint_report``) gives medians over rounds
with min-max, and streamstate / peer ratios paired per round, against each peer and the
best peer of each row.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import valkey
import valkey.asyncio

from bench.checkpoint_report import OPS, report, summarise
from bench.checkpoint_savers import (
    PEER_FACTORIES,
    POOL_SIZE,
    AsyncShell,
    Checkpointer,
    SyncShell,
    peers,
    streamstate,
)
from bench.checkpoint_workload import Step, ThreadOps, record_trace
from bench.common import (
    Phase,
    RoundTrips,
    ServerSample,
    Timer,
    admin_client,
    embedded_server,
    flushall,
    machine_info,
    unique_ids,
    used_memory,
    write_results,
)

PACKAGES = [
    "langgraph",
    "langgraph-checkpoint",
    "langchain-core",
    "langgraph-checkpoint-aws",
    "langgraph-checkpoint-hotkv",
    "hotkv-client",
    "langgraph-checkpoint-plainredis",
    "redis",
    "valkey",
    "libvalkey",
    "msgspec",
    "zstandard",
    "orjson",
    "ormsgpack",
]
CLIENTS = 16


@dataclass(frozen=True)
class Settings:
    rounds: int
    threads: int  # fresh LangGraph threads written per saver per round (single client)
    gets: int  # get_tuple calls per kind per saver per round
    lists: int  # list calls per saver per round
    conc_steps: int  # trace steps per concurrent client
    mem_threads: int
    mem_reps: int
    limit_ops: int  # bare SET / GET calls per round
    chunks: int  # each single-client phase runs in this many ABBA-interleaved chunks
    ttl: float | None = None  # every saver's ttl (the seed documents' usage: 3600 s)


FULL = Settings(
    rounds=7,
    threads=4,
    gets=200,
    lists=48,
    conc_steps=42,
    mem_threads=8,
    mem_reps=3,
    limit_ops=400,
    chunks=8,
)
QUICK = Settings(
    rounds=3,
    threads=1,
    gets=40,
    lists=12,
    conc_steps=8,
    mem_threads=2,
    mem_reps=1,
    limit_ops=100,
    chunks=2,
)


# -- phases -------------------------------------------------------------------------------
#
# Every saver runs every phase in the same round, interleaved chunk by chunk in an ABBA
# order (A B C, then C B A, ...), so a burst of machine noise lands on all alike.


def _plan(
    threads: Sequence[ThreadOps], settings: Settings, rng: random.Random, shell: Any
) -> dict[str, list[Callable[[], Any]]]:
    """Zero-argument calls per operation, built before any timing starts."""
    plan: dict[str, list[Callable[[], Any]]] = {op: [] for op in OPS}
    for th in threads:
        for args in th.puts:
            plan["put"].append(lambda a=args: shell.put(*a))
        for step in th.writes:
            for args in step:
                plan["put_writes"].append(lambda a=args: shell.put_writes(*a))
    for i in range(settings.gets):
        cfg = threads[i % len(threads)].latest_config()
        plan["get_latest"].append(lambda c=cfg: shell.get_tuple(c))
    for _ in range(settings.gets):
        th = rng.choice(threads)
        cfg = th.id_config(rng.choice(th.ids))
        plan["get_by_id"].append(lambda c=cfg: shell.get_tuple(c))
    for i in range(settings.lists):
        cfg = threads[i % len(threads)].latest_config()
        plan["list"].append(lambda c=cfg: shell.list(c, 10))
    return plan


def _chunks(calls: Sequence[Any], n: int) -> list[Sequence[Any]]:
    n = max(1, min(n, len(calls)))
    size = -(-len(calls) // n)
    return [calls[i : i + size] for i in range(0, len(calls), size)]


def _abba(order: Sequence[Checkpointer], i: int) -> Sequence[Checkpointer]:
    return order if i % 2 == 0 else order[::-1]


def _check(shell_result: Any, what: str, cond: bool) -> None:
    if not cond:
        raise AssertionError(f"bench sanity check failed: {what}: {shell_result!r:.300}")


def _validate(results: dict[str, Any], th: ThreadOps, trace: Sequence[Step]) -> None:
    latest, by_id, listed = results["latest"], results["by_id"], results["list"]
    _check(
        latest,
        "get_tuple(latest) is the last checkpoint",
        latest is not None and latest.config["configurable"]["checkpoint_id"] == th.ids[-1],
    )
    _check(
        latest,
        "latest has all messages",
        len(latest.checkpoint["channel_values"]["messages"]) == trace[-1].n_messages,
    )
    mid = len(th.ids) // 2
    _check(
        by_id,
        "get_tuple(by id) returns that checkpoint",
        by_id is not None and by_id.checkpoint["id"] == th.ids[mid],
    )
    _check(
        by_id,
        "get_tuple(by id) has its pending writes",
        len(by_id.pending_writes) == sum(len(w) for _t, w, _p in trace[mid].writes),
    )
    _check(
        by_id,
        "get_tuple(by id) has its messages",
        len(by_id.checkpoint["channel_values"]["messages"]) == trace[mid].n_messages,
    )
    _check(
        listed,
        "list(limit=10) gives the 10 newest",
        [t.checkpoint["id"] for t in listed] == th.ids[::-1][:10],
    )


def single_sync(
    order: Sequence[Checkpointer],
    url: str,
    admin: valkey.Valkey,
    trace: Sequence[Step],
    settings: Settings,
    ids: Any,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """One sync client per saver: each operation in ABBA-interleaved chunks."""
    opened = {p.name: p.open_sync(url, settings.ttl) for p in order}
    try:
        shells = {p.name: SyncShell(opened[p.name].saver) for p in order}
        threads = {
            p.name: [ThreadOps.build(trace, next(ids)) for _ in range(settings.threads)]
            for p in order
        }
        plans = {
            p.name: _plan(threads[p.name], settings, random.Random(seed), shells[p.name])
            for p in order
        }
        for p in order:  # connect (and load scripts) before timing
            shells[p.name].get_tuple(threads[p.name][0].latest_config())
        phases = {p.name: {op: Phase() for op in OPS} for p in order}
        for op in OPS:
            chunked = {p.name: _chunks(plans[p.name][op], settings.chunks) for p in order}
            for i in range(len(chunked[order[0].name])):
                for peer in _abba(order, i):
                    calls = chunked[peer.name][i]
                    gc.collect()
                    before = ServerSample.take(admin)
                    with Timer() as tm:
                        for call in calls:
                            call()
                    phases[peer.name][op].add(
                        len(calls), tm.seconds, before, ServerSample.take(admin), tm.cpu
                    )
        for p in order:
            shell, th = shells[p.name], threads[p.name][0]
            _validate(
                {
                    "latest": shell.get_tuple(th.latest_config()),
                    "by_id": shell.get_tuple(th.id_config(th.ids[len(th.ids) // 2])),
                    "list": shell.list(th.latest_config(), 10),
                },
                th,
                trace,
            )
        return {name: {op: ph.result() for op, ph in ops.items()} for name, ops in phases.items()}
    finally:
        for o in opened.values():
            o.close()


def single_async(
    order: Sequence[Checkpointer],
    url: str,
    admin: valkey.Valkey,
    trace: Sequence[Step],
    settings: Settings,
    ids: Any,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """The same as :func:`single_sync` with the async savers, on one event loop."""

    async def run() -> dict[str, dict[str, Any]]:
        opened = {p.name: p.open_async(url, settings.ttl) for p in order}
        try:
            shells = {p.name: AsyncShell(opened[p.name].saver) for p in order}
            threads = {
                p.name: [ThreadOps.build(trace, next(ids)) for _ in range(settings.threads)]
                for p in order
            }
            plans = {
                p.name: _plan(threads[p.name], settings, random.Random(seed), shells[p.name])
                for p in order
            }
            for p in order:
                await shells[p.name].get_tuple(threads[p.name][0].latest_config())
            phases = {p.name: {op: Phase() for op in OPS} for p in order}
            for op in OPS:
                chunked = {p.name: _chunks(plans[p.name][op], settings.chunks) for p in order}
                for i in range(len(chunked[order[0].name])):
                    for peer in _abba(order, i):
                        calls = chunked[peer.name][i]
                        gc.collect()
                        before = ServerSample.take(admin)
                        with Timer() as tm:
                            for call in calls:
                                await call()
                        phases[peer.name][op].add(
                            len(calls), tm.seconds, before, ServerSample.take(admin), tm.cpu
                        )
            for p in order:
                shell, th = shells[p.name], threads[p.name][0]
                _validate(
                    {
                        "latest": await shell.get_tuple(th.latest_config()),
                        "by_id": await shell.get_tuple(th.id_config(th.ids[len(th.ids) // 2])),
                        "list": await shell.list(th.latest_config(), 10),
                    },
                    th,
                    trace,
                )
            return {
                name: {op: ph.result() for op, ph in ops.items()} for name, ops in phases.items()
            }
        finally:
            for o in opened.values():
                await o.close()

    return asyncio.run(run())


def _mixed_steps(th: ThreadOps, shell: Any) -> list[list[Callable[[], Any]]]:
    """Per step: one put, the step's put_writes (two), one get_tuple of the latest."""
    latest = th.latest_config()
    steps = []
    for put_args, writes in zip(th.puts, th.writes):
        calls = [lambda a=put_args: shell.put(*a)]
        calls += [lambda a=w: shell.put_writes(*a) for w in writes]
        calls.append(lambda c=latest: shell.get_tuple(c))
        steps.append(calls)
    return steps


def _halves(work: list[list[list[Callable[[], Any]]]]) -> list[list[list[list[Callable[[], Any]]]]]:
    """Each client's steps split in two: the first half, then the rest (same threads)."""
    h = max(1, len(work[0]) // 2)
    return [[w[:h] for w in work], [w[h:] for w in work]]


def _client_thread(
    steps: list[list[Callable[[], Any]]], barrier: threading.Barrier, errors: list[BaseException]
) -> None:
    barrier.wait()
    try:
        for step in steps:
            for call in step:
                call()
    except BaseException as exc:  # re-raised by the caller after the join
        errors.append(exc)


def concurrent_threads(
    order: Sequence[Checkpointer],
    url: str,
    admin: valkey.Valkey,
    trace: Sequence[Step],
    settings: Settings,
    ids: Any,
) -> dict[str, dict[str, Any]]:
    """16 threads per saver on one shared sync saver; halves run A B B A."""
    opened = {p.name: p.open_sync(url, settings.ttl) for p in order}
    try:
        shells = {p.name: SyncShell(opened[p.name].saver) for p in order}
        halves = {
            p.name: _halves(
                [
                    _mixed_steps(
                        ThreadOps.build(trace, next(ids), settings.conc_steps), shells[p.name]
                    )
                    for _ in range(CLIENTS)
                ]
            )
            for p in order
        }
        for o in opened.values():  # a warmed-up service has its connections open
            o.warm(CLIENTS)
        phases = {p.name: Phase() for p in order}
        for i in range(2):
            for peer in _abba(order, i):
                work = halves[peer.name][i]
                barrier = threading.Barrier(CLIENTS + 1)
                errors: list[BaseException] = []
                workers = [
                    threading.Thread(target=_client_thread, args=(w, barrier, errors)) for w in work
                ]
                for w in workers:
                    w.start()
                gc.collect()
                before = ServerSample.take(admin)
                barrier.wait()
                with Timer() as tm:
                    for w in workers:
                        w.join()
                if errors:
                    raise errors[0]
                n_ops = sum(len(s) for w in work for s in w)
                phases[peer.name].add(n_ops, tm.seconds, before, ServerSample.take(admin), tm.cpu)
        return {name: ph.result() for name, ph in phases.items()}
    finally:
        for o in opened.values():
            o.close()


def concurrent_async(
    order: Sequence[Checkpointer],
    url: str,
    admin: valkey.Valkey,
    trace: Sequence[Step],
    settings: Settings,
    ids: Any,
) -> dict[str, dict[str, Any]]:
    """16 asyncio tasks per saver on one shared async saver; halves run A B B A."""

    async def run() -> dict[str, dict[str, Any]]:
        opened = {p.name: p.open_async(url, settings.ttl) for p in order}
        try:
            shells = {p.name: AsyncShell(opened[p.name].saver) for p in order}
            halves = {
                p.name: _halves(
                    [
                        _mixed_steps(
                            ThreadOps.build(trace, next(ids), settings.conc_steps), shells[p.name]
                        )
                        for _ in range(CLIENTS)
                    ]
                )
                for p in order
            }
            for o in opened.values():
                await o.warm(CLIENTS)
            phases = {p.name: Phase() for p in order}

            async def client(steps: list[list[Callable[[], Any]]], start: asyncio.Event) -> None:
                await start.wait()
                for step in steps:
                    for call in step:
                        await call()

            for i in range(2):
                for peer in _abba(order, i):
                    work = halves[peer.name][i]
                    start = asyncio.Event()
                    tasks = [asyncio.create_task(client(w, start)) for w in work]
                    await asyncio.sleep(0)
                    gc.collect()
                    before = ServerSample.take(admin)
                    with Timer() as tm:
                        start.set()
                        await asyncio.gather(*tasks)
                    n_ops = sum(len(s) for w in work for s in w)
                    phases[peer.name].add(
                        n_ops, tm.seconds, before, ServerSample.take(admin), tm.cpu
                    )
            return {name: ph.result() for name, ph in phases.items()}
        finally:
            for o in opened.values():
                await o.close()

    return asyncio.run(run())


def payload_bytes(trace: Sequence[Step], url: str) -> dict[str, int]:
    """Mean bytes of one streamstate put / put_writes request (EVALSHA keys + args).

    Planned without sending, from streamstate's saver core; if that internal API is not
    there (the library changes), the request bytes of a real replay, counted on the client.
    """
    opened = streamstate().open_sync("valkey://localhost", None)  # never connects: only plans
    try:
        return _planned_payload_bytes(trace, opened.saver)
    except (AttributeError, TypeError):
        return _sent_payload_bytes(trace, url)
    finally:
        opened.close()


def _planned_payload_bytes(trace: Sequence[Step], saver: Any) -> dict[str, int]:
    core = saver._core
    th = ThreadOps.build(trace, "payload-size")

    def size(call: Any) -> int:
        parts = [call.script.sha, len(call.keys), *call.keys, *call.args]
        return sum(len(p) if isinstance(p, bytes) else len(str(p).encode()) for p in parts)

    puts, writes = [], []
    for c, cp, md, nv in th.puts:
        thread, event, _ = core.build_put(c, cp, md, nv, saver.serde)
        puts.append(size(core.plan_put(thread, event)))
    for step in th.writes[1:]:
        for c, w, t, p in step:
            thread, wevent = core.build_put_writes(c, w, t, p, saver.serde)
            writes.append(size(core.plan_put_writes(thread, wevent)))
    return {"put": round(statistics.mean(puts)), "put_writes": round(statistics.mean(writes))}


def _sent_payload_bytes(trace: Sequence[Step], url: str) -> dict[str, int]:
    opened = streamstate().open_sync(url, None)
    shell = SyncShell(opened.saver)
    th = ThreadOps.build(trace, f"payload-size-{uuid.uuid4().hex[:8]}")
    sent: dict[str, list[int]] = {"put": [], "put_writes": []}
    try:
        shell.get_tuple(th.latest_config())  # connect first
        with RoundTrips() as rt:
            for put_args, writes in zip(th.puts, th.writes):
                before = rt.bytes_sent
                shell.put(*put_args)
                sent["put"].append(rt.bytes_sent - before)
                for w in writes:
                    before = rt.bytes_sent
                    shell.put_writes(*w)
                    sent["put_writes"].append(rt.bytes_sent - before)
    finally:
        opened.close()
    return {op: round(statistics.mean(v)) for op, v in sent.items()}


def bare_limit(url: str, sizes: dict[str, int], n: int, admin: valkey.Valkey) -> dict[str, Any]:
    """Bare SET / GET of a put's bytes (and SET of a put_writes' bytes): one round trip."""
    value = os.urandom(sizes["put"])
    small = os.urandom(sizes["put_writes"])
    out: dict[str, Any] = {}

    def measure(name: str, call: Callable[[], Any]) -> None:
        gc.collect()
        before = ServerSample.take(admin)
        with Timer() as tm:
            for _ in range(n):
                call()
        ph = Phase()
        ph.add(n, tm.seconds, before, ServerSample.take(admin), tm.cpu)
        out[name] = ph.result()

    client = valkey.Valkey.from_url(url, max_connections=1)
    try:
        client.set("bench:limit", value)
        measure("set_sync", lambda: client.set("bench:limit", value))
        measure("get_sync", lambda: client.get("bench:limit"))
        measure("set_small_sync", lambda: client.set("bench:small", small))
    finally:
        client.close()

    async def run() -> None:
        aclient = valkey.asyncio.Valkey.from_url(url, max_connections=1)
        try:
            await aclient.set("bench:limit", value)
            for name, call in (
                ("set_async", lambda: aclient.set("bench:limit", value)),
                ("get_async", lambda: aclient.get("bench:limit")),
                ("set_small_async", lambda: aclient.set("bench:small", small)),
            ):
                gc.collect()
                before = ServerSample.take(admin)
                with Timer() as tm:
                    for _ in range(n):
                        await call()
                ph = Phase()
                ph.add(n, tm.seconds, before, ServerSample.take(admin), tm.cpu)
                out[name] = ph.result()
        finally:
            await aclient.aclose()

    asyncio.run(run())
    return out


# -- untimed passes ---------------------------------------------------------------------------


class SerdeFloor:
    """Client µs per operation spent in LangGraph's serde alone (JsonPlusSerializer).

    Any saver with this serde pays at least this plus one round trip, which bounds the
    ratio a saver can reach against a peer that already needs few round trips. Measured
    in every round, beside the savers, so it sees the same machine.
    """

    def __init__(self, trace: Sequence[Step]) -> None:
        from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

        serde = self.serde = JsonPlusSerializer()

        def typed(step: Step, writes: bool) -> list[tuple[str, bytes]]:
            out = [serde.dumps_typed(v) for v in step.checkpoint["channel_values"].values()]
            if writes:
                out += [serde.dumps_typed(v) for _t, w, _p in step.writes for _c, v in w]
            return out

        steps = trace[1:]
        self.put = [
            [
                s.checkpoint["channel_values"][ch]
                for ch in s.new_versions
                if ch in s.checkpoint["channel_values"]
            ]
            for s in steps
        ]
        self.writes = [[v for _c, v in w] for s in steps for _t, w, _p in s.writes]
        self.latest = [typed(trace[-1], False)] * 10
        self.by_id = [typed(s, True) for s in steps]
        self.list = [[t for s in trace[-10:] for t in typed(s, True)]] * 2

    def measure(self) -> dict[str, float]:
        dumps, loads = self.serde.dumps_typed, self.serde.loads_typed

        def timed(groups: Sequence[Sequence[Any]], fn: Callable[[Any], Any]) -> float:
            gc.collect()
            t0 = time.perf_counter()
            for group in groups:
                for item in group:
                    fn(item)
            return (time.perf_counter() - t0) * 1e6 / len(groups)

        return {
            "put": timed(self.put, dumps),
            "put_writes": timed(self.writes, dumps),
            "get_latest": timed(self.latest, loads),
            "get_by_id": timed(self.by_id, loads),
            "list": timed(self.list, loads),
        }


def _counted_calls(shell: Any, th: ThreadOps) -> list[tuple[str, Callable[[], Any]]]:
    """The thread written in order, then reads of it: ``(operation, call)`` pairs."""
    calls: list[tuple[str, Callable[[], Any]]] = []
    for put_args, writes in zip(th.puts, th.writes):
        calls.append(("put", lambda a=put_args: shell.put(*a)))
        calls += [("put_writes", lambda a=w: shell.put_writes(*a)) for w in writes]
    for cid in th.ids[::4]:
        calls.append(("get_latest", lambda: shell.get_tuple(th.latest_config())))
        calls.append(("get_by_id", lambda c=cid: shell.get_tuple(th.id_config(c))))
        calls.append(("list", lambda: shell.list(th.latest_config(), 10)))
    return calls


def round_trips(
    peer: Checkpointer, url: str, trace: Sequence[Step], ids: Any, ttl: float | None = None
) -> dict[str, Any]:
    """Requests sent (and request bytes) per operation, sync and async, counted on the client."""
    out: dict[str, Any] = {}

    def record(res: dict[str, list[int]], op: str, before: tuple[int, int], rt: RoundTrips) -> None:
        sends, sent = rt.mark()
        res.setdefault(op, []).append(sends - before[0])
        res.setdefault(op + ":bytes", []).append(sent - before[1])

    def mean(res: dict[str, list[int]]) -> dict[str, float]:
        return {k: statistics.mean(v) for k, v in res.items()}

    opened = peer.open_sync(url, ttl)
    try:
        shell = SyncShell(opened.saver)
        th = ThreadOps.build(trace, next(ids))
        shell.get_tuple(th.latest_config())  # connect first: setup commands are not counted
        res: dict[str, list[int]] = {}
        with RoundTrips() as rt:
            for op, call in _counted_calls(shell, th):
                before = rt.mark()
                call()
                record(res, op, before, rt)
        out["sync"] = mean(res)
    finally:
        opened.close()

    async def run() -> dict[str, float]:
        aopened = peer.open_async(url, ttl)
        try:
            ashell = AsyncShell(aopened.saver)
            ath = ThreadOps.build(trace, next(ids))
            await ashell.get_tuple(ath.latest_config())
            ares: dict[str, list[int]] = {}
            with RoundTrips() as rt:
                for op, call in _counted_calls(ashell, ath):
                    before = rt.mark()
                    await call()
                    record(ares, op, before, rt)
            return mean(ares)
        finally:
            await aopened.close()

    out["async"] = asyncio.run(run())
    return out


def memory_per_checkpoint(
    peer: Checkpointer,
    url: str,
    admin: valkey.Valkey,
    trace: Sequence[Step],
    settings: Settings,
    ids: Any,
) -> dict[str, Any]:
    """used_memory delta per checkpoint (with its writes) on fresh threads, saver alone."""
    flushall(admin)
    time.sleep(0.2)
    opened = peer.open_sync(url, settings.ttl)
    shell = SyncShell(opened.saver)
    shell.get_tuple({"configurable": {"thread_id": "warm", "checkpoint_ns": ""}})
    p0 = admin.info("persistence")
    before = used_memory(admin)
    n = 0
    for _ in range(settings.mem_threads):
        th = ThreadOps.build(trace, next(ids))
        for put_args, writes in zip(th.puts, th.writes):
            shell.put(*put_args)
            for w in writes:
                shell.put_writes(*w)
            n += 1
    time.sleep(0.2)
    after = used_memory(admin)
    p1 = admin.info("persistence")
    aof = float("nan")  # unknown if the AOF was rewritten meanwhile
    if p1.get("aof_rewrites") == p0.get("aof_rewrites") and not p1.get("aof_rewrite_in_progress"):
        aof = int(p1.get("aof_current_size", 0)) - int(p0.get("aof_current_size", 0))
    kinds: dict[str, int] = {}
    for key in admin.scan_iter(count=1000):
        size = admin.memory_usage(key, samples=0) or 0
        kind = peer.key_kind(key)
        kinds[kind] = kinds.get(kind, 0) + size
    opened.close()
    flushall(admin)
    return {
        "checkpoints": n,
        "used_memory_per_checkpoint": (after - before) / n,
        "key_bytes_per_checkpoint": sum(kinds.values()) / n,
        "by_key_kind": {k: v / n for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
        "aof_bytes_per_checkpoint": aof / n,
    }


# -- the run -----------------------------------------------------------------------------------


def run(
    settings: Settings,
    log: Callable[[str], None],
    compress: bool = True,
    peer_names: list[str] | None = None,
) -> dict[str, Any]:
    t_start = time.perf_counter()
    log("recording the LangGraph thread ...")
    trace = record_trace()
    others, not_run = peers(peer_names)
    savers = [streamstate(compress), *others]
    ids = unique_ids(f"bench-{uuid.uuid4().hex[:6]}")
    rng = random.Random(11)
    data: dict[str, Any] = {
        "settings": settings.__dict__,
        "savers": [p.name for p in savers],
        "labels": {p.name: p.label for p in savers},
        "has_ttl": {p.name: p.has_ttl for p in savers},
        "not_run": not_run,
        "workload": {
            "checkpoints_per_thread": len(trace),
            "messages": [min(s.n_messages for s in trace if s.n_messages), trace[-1].n_messages],
            "put_writes_per_checkpoint": statistics.mean(len(s.writes) for s in trace[:-1]),
            "writes_per_put_writes": statistics.mean(
                len(w) for s in trace[1:-1] for _t, w, _p in s.writes
            ),
            "clients": CLIENTS,
            "pool_size": POOL_SIZE,
            "streamstate_compression": compress,
        },
    }
    load_before = os.getloadavg()
    # No automatic AOF rewrite: its fork would land on whichever saver runs at that moment.
    with embedded_server(appendfsync="everysec", **{"auto-aof-rewrite-percentage": 0}) as server:
        url = server.url
        admin = admin_client(url)
        data["machine"] = machine_info(admin, PACKAGES)
        payload = payload_bytes(trace, url)
        data["workload"]["streamstate_put_payload_bytes"] = payload["put"]
        data["workload"]["streamstate_put_writes_payload_bytes"] = payload["put_writes"]
        floor = SerdeFloor(trace)
        rounds: list[dict[str, Any]] = []
        for r in range(settings.rounds):
            order = savers if r % 2 == 0 else savers[::-1]
            rec: dict[str, Any] = {"order": [p.name for p in order], "loadavg": os.getloadavg()[0]}
            seed = rng.randrange(1 << 30)
            for mode, single in (("sync", single_sync), ("async", single_async)):
                flushall(admin)
                for name, res in single(order, url, admin, trace, settings, ids, seed).items():
                    rec[f"{name}:{mode}"] = res
            for mode, conc in (("threads", concurrent_threads), ("tasks", concurrent_async)):
                flushall(admin)
                for name, res in conc(order, url, admin, trace, settings, ids).items():
                    rec[f"{name}:{mode}"] = res
            flushall(admin)
            rec["limit"] = bare_limit(url, payload, settings.limit_ops, admin)
            rec["serde_us"] = floor.measure()
            rounds.append(rec)
            log(
                f"round {r + 1}/{settings.rounds} done ({time.perf_counter() - t_start:.0f} s, "
                f"load {rec['loadavg']:.1f}): "
                + ", ".join(
                    f"{p.name} put {rec[p.name + ':sync']['put']['rate']:.0f}/s" for p in savers
                )
            )
        data["rounds"] = rounds
        flushall(admin)
        data["round_trips"] = {
            p.name: round_trips(p, url, trace, ids, settings.ttl) for p in savers
        }
        mem: dict[str, list[dict[str, Any]]] = {p.name: [] for p in savers}
        for rep in range(settings.mem_reps):
            for peer in savers if rep % 2 == 0 else savers[::-1]:
                mem[peer.name].append(memory_per_checkpoint(peer, url, admin, trace, settings, ids))
        data["memory"] = mem
        data["server_persistence"] = {
            k: v
            for k, v in admin.info("persistence").items()
            if k in ("aof_rewrites", "aof_current_size", "aof_last_bgrewrite_status")
        }
        admin.close()
    data["machine"]["loadavg_before"] = load_before
    data["machine"]["loadavg_after"] = os.getloadavg()
    data["elapsed_seconds"] = time.perf_counter() - t_start
    data["summary"] = summarise(data)
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="short smoke run (~2 min with every peer; --rounds 1 for less)",
    )
    ap.add_argument("--rounds", type=int, help="override the number of rounds")
    ap.add_argument("--no-save", action="store_true", help="print only; write no result files")
    ap.add_argument(
        "--no-compression",
        action="store_true",
        help="diagnostic: streamstate without zstd (what compression costs and saves); "
        "results go to checkpoint-nozstd.*",
    )
    ap.add_argument(
        "--ttl",
        type=float,
        metavar="SECONDS",
        help="every saver with this ttl (the seed documents use 3600; hotkv has none and"
        " runs without); results go to checkpoint-ttl.*",
    )
    ap.add_argument(
        "--peers",
        default=",".join(PEER_FACTORIES),
        help=f"comma-separated peers to run against (default: all of {', '.join(PEER_FACTORIES)})",
    )
    args = ap.parse_args(argv)
    peer_names = [n.strip() for n in args.peers.split(",") if n.strip()]
    unknown = sorted(set(peer_names) - set(PEER_FACTORIES))
    if unknown:
        ap.error(f"unknown peers: {', '.join(unknown)} (choose from {', '.join(PEER_FACTORIES)})")
    settings = QUICK if args.quick else FULL
    if args.rounds:
        settings = Settings(**{**settings.__dict__, "rounds": args.rounds})
    if args.ttl:
        settings = Settings(**{**settings.__dict__, "ttl": args.ttl})

    def log(msg: str) -> None:
        print(f"[bench checkpoint] {msg}", file=sys.stderr, flush=True)

    data = run(settings, log, compress=not args.no_compression, peer_names=peer_names)
    md = report(data, args.quick)
    print(md)
    if not args.no_save:
        name = "checkpoint-quick" if args.quick else "checkpoint"
        name += "-nozstd" if args.no_compression else ""
        name += "-ttl" if args.ttl else ""
        md_path, json_path = write_results(name, md, data)
        log(f"wrote {md_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
