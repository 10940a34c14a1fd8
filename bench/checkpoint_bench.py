"""Checkpointer benchmark: streamstate's savers against langgraph-checkpoint-aws's.

``python -m bench checkpoint [--quick] [--rounds N]``

One private valkey-server (AOF, appendfsync everysec) serves every saver in the same
run. The workload is a real LangGraph thread, recorded once: a ``StateGraph`` whose
``messages`` channel grows from 10 to 50 messages of ~250 characters (HumanMessage /
AIMessage alternating), plus small ``turn``, ``status`` and ``stats`` channels; two
tasks per superstep, so each checkpoint gets two ``put_writes`` of 2-3 writes. Each
replayed thread gets its own ``thread_id`` and ``run_id`` (metadata: source, step,
parents, run_id, as LangGraph writes it).

In every round both peers run each phase, interleaved chunk by chunk in ABBA order (the
order flips every round), so drift and machine noise hit both alike:

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
the server per checkpoint (``used_memory`` delta over fresh threads, each peer alone
after ``FLUSHALL``). Every figure is the median over rounds with its min-max; ratios
are streamstate / peer, paired per round.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
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
from typing import Annotated, Any, TypedDict

import valkey
import valkey.asyncio

from bench.common import (
    Phase,
    RoundTrips,
    ServerSample,
    Timer,
    admin_client,
    embedded_server,
    flushall,
    fmt_num,
    fmt_stat,
    machine_info,
    machine_md,
    md_table,
    summary,
    unique_ids,
    used_memory,
    write_results,
)

PACKAGES = [
    "langgraph",
    "langgraph-checkpoint",
    "langchain-core",
    "langgraph-checkpoint-aws",
    "valkey",
    "libvalkey",
    "msgspec",
    "zstandard",
    "orjson",
    "ormsgpack",
]

OPS = ("put", "put_writes", "get_latest", "get_by_id", "list")
OP_LABEL = {
    "put": "put",
    "put_writes": "put_writes",
    "get_latest": "get_tuple (latest)",
    "get_by_id": "get_tuple (by id)",
    "list": "list(limit=10)",
    "mixed": "16 clients, mixed",
}
# streamstate / peer targets from the issue (higher is better, except bytes).
TARGETS = {
    "put": 1.0,
    "put_writes": 2.0,
    "get_latest": 1.8,
    "get_by_id": 1.2,
    "list": 3.0,
    "mixed": 1.8,
}
PUT_VS_SET_TARGET = 0.6
BYTES_TARGET = 0.5
CLIENTS = 16
X = "\u00d7"  # the multiplication sign of ratios
POOL_SIZE = 32  # both peers get the same pool; > CLIENTS so no thread waits for a connection


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


# -- the workload: one real LangGraph thread, recorded ------------------------------------

_VOCABULARY = (
    "the of and to in is that for it as with was on be by this are from at or an have not "
    "which but agent tool result search weather order invoice customer account refund "
    "shipping policy model answer question context memory token stream delivery address "
    "payment status ticket update summary request"
)
_WORDS = tuple(_VOCABULARY.split())


@dataclass
class Step:
    """One checkpoint of the recorded thread and the writes made against it."""

    parent_id: str | None
    checkpoint: dict[str, Any]
    metadata: dict[str, Any]
    new_versions: dict[str, Any]
    writes: list[tuple[str, list[tuple[str, Any]], str]]  # (task_id, writes, task_path)
    n_messages: int

    @property
    def id(self) -> str:
        return self.checkpoint["id"]


def record_trace(history: int = 10, target: int = 50, seed: int = 7) -> list[Step]:
    """Run a small agent graph on a recording InMemorySaver; return its checkpoints."""
    from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.graph.message import add_messages

    rng = random.Random(seed)

    def text(n: int = 250) -> str:
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < n + 20:
            words.append(rng.choice(_WORDS))
        return " ".join(words)[:n]

    def message(i: int) -> Any:
        return HumanMessage(text()) if i % 2 == 0 else AIMessage(text())

    # functional form: evaluated now (this module uses postponed annotations)
    State = TypedDict(  # type: ignore[misc]  # noqa: UP013
        "State",
        {
            "messages": Annotated[list[AnyMessage], add_messages],
            "turn": int,
            "status": str,
            "stats": dict[str, int],
        },
    )

    def agent(s: State) -> dict[str, Any]:
        return {"messages": [message(len(s["messages"]))], "turn": s["turn"] + 1}

    def monitor(s: State) -> dict[str, Any]:
        n = len(s["messages"])
        return {"stats": {"messages": n, "tokens": 62 * n}}

    def route(node: str) -> Callable[[State], str]:
        return lambda s: node if len(s["messages"]) < target else END

    graph = StateGraph(State)
    graph.add_node("agent", agent)
    graph.add_node("monitor", monitor)
    graph.add_edge(START, "agent")
    graph.add_edge(START, "monitor")
    graph.add_conditional_edges("agent", route("agent"), ["agent", END])
    graph.add_conditional_edges("monitor", route("monitor"), ["monitor", END])

    calls: list[tuple[str, Any]] = []

    class Recorder(InMemorySaver):
        def put(self, config, checkpoint, metadata, new_versions):  # type: ignore[no-untyped-def]
            calls.append(
                (
                    "put",
                    copy.deepcopy(
                        (
                            config["configurable"].get("checkpoint_id"),
                            checkpoint,
                            dict(metadata),
                            new_versions,
                        )
                    ),
                )
            )
            return super().put(config, checkpoint, metadata, new_versions)

        def put_writes(self, config, writes, task_id, task_path=""):  # type: ignore[no-untyped-def]
            calls.append(
                (
                    "put_writes",
                    copy.deepcopy(
                        (config["configurable"]["checkpoint_id"], list(writes), task_id, task_path)
                    ),
                )
            )
            return super().put_writes(config, writes, task_id, task_path)

    app = graph.compile(checkpointer=Recorder())
    app.invoke(
        {
            "messages": [message(i) for i in range(history)],
            "turn": 0,
            "status": "open",
            "stats": {},
        },
        {"configurable": {"thread_id": "recording"}, "recursion_limit": 4 * target},
        durability="sync",  # checkpoints saved in order, before the next step's writes
    )
    steps: list[Step] = []
    by_id: dict[str, Step] = {}
    for kind, args in calls:
        if kind == "put":
            parent, cp, md, nv = args
            md.pop("thread_id", None)
            msgs = cp["channel_values"].get("messages") or []
            step = Step(parent, cp, md, nv, [], len(msgs))
            steps.append(step)
            by_id[step.id] = step
    for kind, args in calls:
        if kind == "put_writes":
            cid, writes, task_id, task_path = args
            by_id[cid].writes.append((task_id, writes, task_path))
    return steps


@dataclass
class ThreadOps:
    """The recorded thread replayed under a new thread_id and run_id (configs prebuilt)."""

    thread_id: str
    puts: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]]
    writes: list[list[tuple[dict[str, Any], list[tuple[str, Any]], str, str]]]
    ids: list[str]

    @classmethod
    def build(cls, trace: Sequence[Step], thread_id: str, steps: int | None = None) -> ThreadOps:
        run_id = str(uuid.uuid4())
        puts, writes, ids = [], [], []
        for step in trace[:steps]:
            conf: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
            if step.parent_id:
                conf["checkpoint_id"] = step.parent_id
            md = {**step.metadata, "run_id": run_id}
            puts.append(({"configurable": conf}, step.checkpoint, md, step.new_versions))
            wconf = {
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": "",
                    "checkpoint_id": step.id,
                }
            }
            writes.append([(wconf, w, t, p) for t, w, p in step.writes])
            ids.append(step.id)
        return cls(thread_id, puts, writes, ids)

    def latest_config(self) -> dict[str, Any]:
        return {"configurable": {"thread_id": self.thread_id, "checkpoint_ns": ""}}

    def id_config(self, cid: str) -> dict[str, Any]:
        return {
            "configurable": {"thread_id": self.thread_id, "checkpoint_ns": "", "checkpoint_id": cid}
        }


# -- the savers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    name: str
    label: str
    make_sync: Callable[[valkey.ConnectionPool], Any]
    make_async: Callable[[valkey.asyncio.ConnectionPool], Any]


def _streamstate(compress: bool = True) -> Peer:
    """streamstate as shipped; ``compress=False`` is the diagnostic run without zstd (it
    shows what compression costs put and what it saves in memory)."""
    from streamstate.adapters.valkey_saver import AsyncValkeySaver, ValkeySaver
    from streamstate.eventlog.codec import Codec

    def kw() -> dict[str, Any]:
        return {} if compress else {"codec": Codec.plain()}

    return Peer(
        "streamstate",
        "streamstate" if compress else "streamstate (no compression)",
        lambda pool: ValkeySaver(valkey.Valkey(connection_pool=pool), **kw()),
        lambda pool: AsyncValkeySaver(valkey.asyncio.Valkey(connection_pool=pool), **kw()),
    )


def _aws() -> Peer:
    from langgraph_checkpoint_aws.checkpoint.valkey import AsyncValkeySaver, ValkeySaver

    return Peer(
        "aws",
        "langgraph-checkpoint-aws",
        lambda pool: ValkeySaver(valkey.Valkey(connection_pool=pool)),
        lambda pool: AsyncValkeySaver(valkey.asyncio.Valkey(connection_pool=pool)),
    )


def sync_pool(url: str, size: int = POOL_SIZE) -> valkey.ConnectionPool:
    return valkey.ConnectionPool.from_url(url, max_connections=size, decode_responses=False)


def async_pool(url: str, size: int = POOL_SIZE) -> valkey.asyncio.ConnectionPool:
    return valkey.asyncio.ConnectionPool.from_url(url, max_connections=size, decode_responses=False)


class SyncShell:
    """Uniform calls on a sync saver."""

    is_async = False

    def __init__(self, saver: Any) -> None:
        self.saver = saver

    def put(self, c: Any, cp: Any, md: Any, nv: Any) -> Any:
        return self.saver.put(c, cp, md, nv)

    def put_writes(self, c: Any, w: Any, t: str, p: str) -> Any:
        return self.saver.put_writes(c, w, t, p)

    def get_tuple(self, c: Any) -> Any:
        return self.saver.get_tuple(c)

    def list(self, c: Any, limit: int) -> list[Any]:
        return list(self.saver.list(c, limit=limit))


class AsyncShell:
    """Uniform calls on an async saver (each returns an awaitable)."""

    is_async = True

    def __init__(self, saver: Any) -> None:
        self.saver = saver

    def put(self, c: Any, cp: Any, md: Any, nv: Any) -> Any:
        return self.saver.aput(c, cp, md, nv)

    def put_writes(self, c: Any, w: Any, t: str, p: str) -> Any:
        return self.saver.aput_writes(c, w, t, p)

    def get_tuple(self, c: Any) -> Any:
        return self.saver.aget_tuple(c)

    async def list(self, c: Any, limit: int) -> list[Any]:
        return [t async for t in self.saver.alist(c, limit=limit)]


# -- phases -------------------------------------------------------------------------------
#
# Both peers run every phase in the same round, interleaved chunk by chunk in an ABBA
# order (A B, then B A, ...), so a burst of machine noise lands on both alike.


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


def _abba(order: Sequence[Peer], i: int) -> Sequence[Peer]:
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
    order: Sequence[Peer],
    url: str,
    admin: valkey.Valkey,
    trace: Sequence[Step],
    settings: Settings,
    ids: Any,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """One sync client per peer: each operation in ABBA-interleaved chunks."""
    pools = {p.name: sync_pool(url) for p in order}
    try:
        shells = {p.name: SyncShell(p.make_sync(pools[p.name])) for p in order}
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
        for pool in pools.values():
            pool.disconnect()


def single_async(
    order: Sequence[Peer],
    url: str,
    admin: valkey.Valkey,
    trace: Sequence[Step],
    settings: Settings,
    ids: Any,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """The same as :func:`single_sync` with the async savers, on one event loop."""

    async def run() -> dict[str, dict[str, Any]]:
        pools = {p.name: async_pool(url) for p in order}
        try:
            shells = {p.name: AsyncShell(p.make_async(pools[p.name])) for p in order}
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
            for pool in pools.values():
                await pool.disconnect()

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
    order: Sequence[Peer],
    url: str,
    admin: valkey.Valkey,
    trace: Sequence[Step],
    settings: Settings,
    ids: Any,
) -> dict[str, dict[str, Any]]:
    """16 threads per peer on one shared sync saver; halves run A B B A."""
    pools = {p.name: sync_pool(url) for p in order}
    try:
        shells = {p.name: SyncShell(p.make_sync(pools[p.name])) for p in order}
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
        for pool in pools.values():  # a warmed-up service has its connections open
            conns = [pool.get_connection("PING") for _ in range(CLIENTS)]
            for c in conns:
                pool.release(c)
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
        for pool in pools.values():
            pool.disconnect()


def concurrent_async(
    order: Sequence[Peer],
    url: str,
    admin: valkey.Valkey,
    trace: Sequence[Step],
    settings: Settings,
    ids: Any,
) -> dict[str, dict[str, Any]]:
    """16 asyncio tasks per peer on one shared async saver; halves run A B B A."""

    async def run() -> dict[str, dict[str, Any]]:
        pools = {p.name: async_pool(url) for p in order}
        try:
            shells = {p.name: AsyncShell(p.make_async(pools[p.name])) for p in order}
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
            for pool in pools.values():
                conns = [await pool.get_connection("PING") for _ in range(CLIENTS)]
                for c in conns:
                    await pool.release(c)
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
            for pool in pools.values():
                await pool.disconnect()

    return asyncio.run(run())


def payload_bytes(trace: Sequence[Step], peer: Peer) -> dict[str, int]:
    """Mean bytes of one streamstate put / put_writes request (EVALSHA keys + args)."""
    saver = peer.make_sync(sync_pool("valkey://localhost"))  # never connects: only plans
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

    client = valkey.Valkey(connection_pool=sync_pool(url, 1))
    try:
        client.set("bench:limit", value)
        measure("set_sync", lambda: client.set("bench:limit", value))
        measure("get_sync", lambda: client.get("bench:limit"))
        measure("set_small_sync", lambda: client.set("bench:small", small))
    finally:
        client.close()

    async def run() -> None:
        aclient = valkey.asyncio.Valkey(connection_pool=async_pool(url, 1))
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


def round_trips(peer: Peer, url: str, trace: Sequence[Step], ids: Any) -> dict[str, Any]:
    """Requests sent (and request bytes) per operation, sync and async, counted on the client."""
    out: dict[str, Any] = {}

    def record(res: dict[str, list[int]], op: str, before: tuple[int, int], rt: RoundTrips) -> None:
        sends, sent = rt.mark()
        res.setdefault(op, []).append(sends - before[0])
        res.setdefault(op + ":bytes", []).append(sent - before[1])

    def mean(res: dict[str, list[int]]) -> dict[str, float]:
        return {k: statistics.mean(v) for k, v in res.items()}

    pool = sync_pool(url)
    try:
        shell = SyncShell(peer.make_sync(pool))
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
        pool.disconnect()

    async def run() -> dict[str, float]:
        apool = async_pool(url)
        try:
            ashell = AsyncShell(peer.make_async(apool))
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
            await apool.disconnect()

    out["async"] = asyncio.run(run())
    return out


def _key_kind(peer: str, key: str) -> str:
    if peer == "streamstate":
        if "}:" in key:
            return key.rsplit("}:", 1)[1]
        return key.split(":")[1] if ":" in key else key
    return key.split(":", 1)[0]


def memory_per_checkpoint(
    peer: Peer, url: str, admin: valkey.Valkey, trace: Sequence[Step], settings: Settings, ids: Any
) -> dict[str, Any]:
    """used_memory delta per checkpoint (with its writes) on fresh threads, peer alone."""
    flushall(admin)
    time.sleep(0.2)
    pool = sync_pool(url, 2)
    shell = SyncShell(peer.make_sync(pool))
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
        kind = _key_kind(peer.name, key)
        kinds[kind] = kinds.get(kind, 0) + size
    pool.disconnect()
    flushall(admin)
    return {
        "checkpoints": n,
        "used_memory_per_checkpoint": (after - before) / n,
        "key_bytes_per_checkpoint": sum(kinds.values()) / n,
        "by_key_kind": {k: v / n for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
        "aof_bytes_per_checkpoint": aof / n,
    }


# -- the run -----------------------------------------------------------------------------------


def run(settings: Settings, log: Callable[[str], None], compress: bool = True) -> dict[str, Any]:
    t_start = time.perf_counter()
    log("recording the LangGraph thread ...")
    trace = record_trace()
    peers = [_streamstate(compress), _aws()]
    ids = unique_ids(f"bench-{uuid.uuid4().hex[:6]}")
    rng = random.Random(11)
    data: dict[str, Any] = {
        "settings": settings.__dict__,
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
    # No automatic AOF rewrite: its fork would land on whichever peer runs at that moment.
    with embedded_server(appendfsync="everysec", **{"auto-aof-rewrite-percentage": 0}) as server:
        url = server.url
        admin = admin_client(url)
        data["machine"] = machine_info(admin, PACKAGES)
        payload = payload_bytes(trace, peers[0])
        data["workload"]["streamstate_put_payload_bytes"] = payload["put"]
        data["workload"]["streamstate_put_writes_payload_bytes"] = payload["put_writes"]
        floor = SerdeFloor(trace)
        rounds: list[dict[str, Any]] = []
        for r in range(settings.rounds):
            order = peers if r % 2 == 0 else peers[::-1]
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
                    f"{p.name} put {rec[p.name + ':sync']['put']['rate']:.0f}/s" for p in peers
                )
            )
        data["rounds"] = rounds
        flushall(admin)
        data["round_trips"] = {p.name: round_trips(p, url, trace, ids) for p in peers}
        mem: dict[str, list[dict[str, Any]]] = {p.name: [] for p in peers}
        for rep in range(settings.mem_reps):
            for peer in peers if rep % 2 == 0 else peers[::-1]:
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


def _paired(
    rounds: Sequence[dict[str, Any]], get: Callable[[dict[str, Any], str], float]
) -> dict[str, Any]:
    ss = [get(r, "streamstate") for r in rounds]
    aws = [get(r, "aws") for r in rounds]
    return {
        "streamstate": summary(ss),
        "aws": summary(aws),
        "ratio": summary([a / b for a, b in zip(ss, aws)]),
    }


def summarise(data: dict[str, Any]) -> dict[str, Any]:
    rounds = data["rounds"]
    s: dict[str, Any] = {"ops": {}, "limit": {}, "server": {}, "memory": {}}
    for mode in ("sync", "async"):
        for op in OPS:
            s["ops"][f"{op}:{mode}"] = _paired(
                rounds, lambda r, p, op=op, mode=mode: r[f"{p}:{mode}"][op]["rate"]
            )
            for peer in ("streamstate", "aws"):
                srv = [r[f"{peer}:{mode}"][op]["server"] for r in rounds]
                s["server"][f"{peer}:{op}:{mode}"] = {
                    "commands_per_op": statistics.median(x["commands_per_op"] for x in srv),
                    "server_cpu_us_per_op": statistics.median(
                        x["server_cpu_us_per_op"] for x in srv
                    ),
                    "client_cpu_us_per_op": statistics.median(
                        r[f"{peer}:{mode}"][op]["client_cpu_us_per_op"] for r in rounds
                    ),
                    "calls_per_op": srv[len(srv) // 2]["calls_per_op"],
                }
        lim = [r["limit"][f"set_{mode}"]["rate"] for r in rounds]
        glim = [r["limit"][f"get_{mode}"]["rate"] for r in rounds]
        s["limit"][f"set:{mode}"] = summary(lim)
        s["limit"][f"set_small:{mode}"] = summary(
            [r["limit"][f"set_small_{mode}"]["rate"] for r in rounds]
        )
        s["limit"][f"get:{mode}"] = summary(glim)
        s["limit"][f"put_vs_set:{mode}"] = {
            p: summary(
                [
                    r[f"{p}:{mode}"]["put"]["rate"] / r["limit"][f"set_{mode}"]["rate"]
                    for r in rounds
                ]
            )
            for p in ("streamstate", "aws")
        }
        s["limit"][f"get_vs_get:{mode}"] = {
            p: summary(
                [
                    r[f"{p}:{mode}"]["get_latest"]["rate"] / r["limit"][f"get_{mode}"]["rate"]
                    for r in rounds
                ]
            )
            for p in ("streamstate", "aws")
        }
    for mode in ("threads", "tasks"):
        s["ops"][f"mixed:{mode}"] = _paired(
            rounds, lambda r, p, mode=mode: r[f"{p}:{mode}"]["rate"]
        )
        for peer in ("streamstate", "aws"):
            srv = [r[f"{peer}:{mode}"]["server"] for r in rounds]
            s["server"][f"{peer}:mixed:{mode}"] = {
                "commands_per_op": statistics.median(x["commands_per_op"] for x in srv),
                "server_cpu_us_per_op": statistics.median(x["server_cpu_us_per_op"] for x in srv),
                "client_cpu_us_per_op": statistics.median(
                    r[f"{peer}:{mode}"]["client_cpu_us_per_op"] for r in rounds
                ),
                "calls_per_op": srv[len(srv) // 2]["calls_per_op"],
            }
    rtt_key = {"put": "set_sync", "put_writes": "set_small_sync"}
    for op in OPS:
        floors, best, now = [], [], []
        for r in rounds:
            rtt = 1e6 / r["limit"][rtt_key.get(op, "get_sync")]["rate"]
            f_us = r["serde_us"][op] + rtt
            floors.append(f_us)
            best.append((1e6 / r["aws:sync"][op]["rate"]) / f_us)
            now.append(r["streamstate:sync"][op]["rate"] / r["aws:sync"][op]["rate"])
        s.setdefault("floor", {})[op] = {
            "serde_us": summary([r["serde_us"][op] for r in rounds]),
            "rtt_us": summary(
                [1e6 / r["limit"][rtt_key.get(op, "get_sync")]["rate"] for r in rounds]
            ),
            "floor_us": summary(floors),
            "streamstate_us": summary([1e6 / r["streamstate:sync"][op]["rate"] for r in rounds]),
            "aws_us": summary([1e6 / r["aws:sync"][op]["rate"] for r in rounds]),
            "best_ratio": summary(best),
            "ratio": summary(now),
        }
    # 16 clients: round trips overlap, so the floor per op is the serde work alone
    floors, best, now = [], [], []
    for r in rounds:
        su = r["serde_us"]
        f_us = (su["put"] + 2 * su["put_writes"] + su["get_by_id"]) / 4
        floors.append(f_us)
        best.append((1e6 / r["aws:threads"]["rate"]) / f_us)
        now.append(r["streamstate:threads"]["rate"] / r["aws:threads"]["rate"])
    s["floor"]["mixed"] = {
        "serde_us": summary(floors),
        "rtt_us": summary([0.0] * len(rounds)),
        "floor_us": summary(floors),
        "streamstate_us": summary([1e6 / r["streamstate:threads"]["rate"] for r in rounds]),
        "aws_us": summary([1e6 / r["aws:threads"]["rate"] for r in rounds]),
        "best_ratio": summary(best),
        "ratio": summary(now),
    }
    mem = data["memory"]
    for key in (
        "used_memory_per_checkpoint",
        "key_bytes_per_checkpoint",
        "aof_bytes_per_checkpoint",
    ):
        ss = [m[key] for m in mem["streamstate"]]
        aws = [m[key] for m in mem["aws"]]
        s["memory"][key] = {
            "streamstate": summary(ss),
            "aws": summary(aws),
            "ratio": summary([a / b for a, b in zip(ss, aws)]),
        }
    return s


# -- the report --------------------------------------------------------------------------------


def _verdict(ratio: float, target: float, higher: bool = True) -> str:
    ok = ratio >= target if higher else ratio <= target
    return "**pass**" if ok else "**FAIL**"


def report(data: dict[str, Any], quick: bool) -> str:
    s = data["summary"]
    wl = data["workload"]
    lines = [
        "# Checkpointer benchmark: streamstate vs langgraph-checkpoint-aws"
        + (" (quick smoke run — not for conclusions)" if quick else ""),
        "",
        machine_md(data["machine"]),
        "",
        *(
            []
            if wl.get("streamstate_compression", True)
            else [
                "**Diagnostic run: streamstate without compression** (`--no-compression`). "
                "streamstate as shipped compresses values with zstd; this run shows what "
                "that costs put and saves in memory. It is not the shipped configuration.",
                "",
            ]
        ),
        f"Workload: a recorded LangGraph thread ({wl['checkpoints_per_thread']} checkpoints, "
        f"messages channel {wl['messages'][0]}→{wl['messages'][1]} messages of ~250 chars, "
        f"{wl['put_writes_per_checkpoint']:.1f} put_writes per checkpoint of "
        f"{wl['writes_per_put_writes']:.1f} writes, metadata source/step/parents/run_id). "
        f"{data['settings']['rounds']} rounds; within a round both peers run every phase, "
        "interleaved chunk by chunk in ABBA order (and the order flips every round). Every "
        "figure is the median over rounds (min\u2013max); ratio = streamstate / peer, paired per "
        f"round. Same server (AOF everysec, automatic AOF rewrite off so no fork lands on "
        f"one peer), same client pools (max {wl['pool_size']} connections). "
        f"Run time {data['elapsed_seconds']:.0f} s; load average "
        f"{data['machine']['loadavg_before'][0]:.2f} before, "
        f"{data['machine']['loadavg_after'][0]:.2f} after, "
        f"{min(r['loadavg'] for r in data['rounds']):.1f}\u2013"
        f"{max(r['loadavg'] for r in data['rounds']):.1f} during rounds (1 min; "
        f"{data['machine']['cores']} cores: above that, other processes competed for CPU).",
        "",
        "## Throughput (ops/s, higher is better)",
        "",
    ]
    rows = []
    for op in (*OPS, "mixed"):
        modes = ("threads", "tasks") if op == "mixed" else ("sync", "async")
        for mode in modes:
            e = s["ops"][f"{op}:{mode}"]
            label = {
                "sync": "sync, 1 client",
                "async": "asyncio, 1 client",
                "threads": f"{CLIENTS} threads",
                "tasks": f"{CLIENTS} asyncio tasks",
            }[mode]
            rows.append(
                [
                    OP_LABEL[op],
                    label,
                    fmt_stat(e["streamstate"]),
                    fmt_stat(e["aws"]),
                    fmt_stat(e["ratio"], X),
                    f"≥ {TARGETS[op]}{X}",
                    _verdict(e["ratio"]["median"], TARGETS[op]),
                ]
            )
    for mode in ("sync", "async"):
        pv = s["limit"][f"put_vs_set:{mode}"]
        rows.append(
            [
                f"put vs bare SET of {wl['streamstate_put_payload_bytes']} B",
                "sync, 1 client" if mode == "sync" else "asyncio, 1 client",
                fmt_stat(pv["streamstate"], X),
                fmt_stat(pv["aws"], X),
                "",
                f"≥ {PUT_VS_SET_TARGET}{X}",
                _verdict(pv["streamstate"]["median"], PUT_VS_SET_TARGET),
            ]
        )
    m = s["memory"]["used_memory_per_checkpoint"]
    rows.append(
        [
            "server bytes per checkpoint (used_memory)",
            "incl. its writes",
            fmt_stat(m["streamstate"], " B"),
            fmt_stat(m["aws"], " B"),
            fmt_stat(m["ratio"], X),
            f"≤ {BYTES_TARGET}{X}",
            _verdict(m["ratio"]["median"], BYTES_TARGET, higher=False),
        ]
    )
    lines.append(
        md_table(
            [
                "operation",
                "mode",
                "streamstate",
                "langgraph-checkpoint-aws",
                "ratio",
                "target",
                "result",
            ],
            rows,
        )
    )
    lines += ["", "## The limit: one bare round trip from the same Python client", ""]
    rows = []
    for mode in ("sync", "async"):
        lab = "sync" if mode == "sync" else "asyncio"
        st, gt = s["limit"][f"set:{mode}"], s["limit"][f"get:{mode}"]
        pv, gv = s["limit"][f"put_vs_set:{mode}"], s["limit"][f"get_vs_get:{mode}"]
        rows.append(
            [
                f"SET {wl['streamstate_put_payload_bytes']} B",
                lab,
                fmt_stat(st),
                fmt_stat(pv["streamstate"], X),
                fmt_stat(pv["aws"], X),
            ]
        )
        rows.append(
            [
                f"GET {wl['streamstate_put_payload_bytes']} B",
                lab,
                fmt_stat(gt),
                fmt_stat(gv["streamstate"], X),
                fmt_stat(gv["aws"], X),
            ]
        )
        rows.append(
            [
                f"SET {wl['streamstate_put_writes_payload_bytes']} B",
                lab,
                fmt_stat(s["limit"][f"set_small:{mode}"]),
                "",
                "",
            ]
        )
    lines.append(
        md_table(
            [
                "bare command",
                "client",
                "ops/s",
                "streamstate (put ÷ SET, get_tuple latest ÷ GET)",
                "aws (put ÷ SET, get_tuple latest ÷ GET)",
            ],
            rows,
        )
    )
    lines += [
        "",
        "## Cost per operation",
        "",
        "Round trips and request bytes are counted on the client; commands (every "
        "command the server ran, including inside Lua scripts and MULTI/EXEC) and "
        "server main-thread CPU come from INFO commandstats / INFO cpu deltas around "
        "each timed phase; client CPU is the bench process's CPU time over the same "
        "phase (sync, 1 client; mixed: per op of the 16-thread run). CPU times are "
        "less disturbed by a busy machine than wall-clock rates.",
        "",
    ]
    rows = []
    rt = data["round_trips"]
    for op in (*OPS, "mixed"):
        row = [OP_LABEL[op]]
        for peer in ("streamstate", "aws"):
            key = f"{peer}:{op}:sync" if op != "mixed" else f"{peer}:mixed:threads"
            srv = s["server"][key]
            if op == "mixed":
                trips = sent = "\u2013"
            else:
                trips = fmt_num(rt[peer]["sync"][op])
                sent = fmt_num(rt[peer]["sync"][op + ":bytes"])
            top = ", ".join(f"{k} {v:.2g}" for k, v in list(srv["calls_per_op"].items())[:5])
            row += [
                trips,
                sent,
                f"{srv['commands_per_op']:.1f} ({top})",
                fmt_num(srv["client_cpu_us_per_op"]),
                fmt_num(srv["server_cpu_us_per_op"]),
            ]
        rows.append(row)
    lines.append(
        md_table(
            [
                "operation",
                "ss round trips",
                "ss request B",
                "ss commands",
                "ss client CPU µs",
                "ss server CPU µs",
                "aws round trips",
                "aws request B",
                "aws commands",
                "aws client CPU µs",
                "aws server CPU µs",
            ],
            rows,
        )
    )
    lines += [
        "",
        "## How far the targets can go (sync, 1 client)",
        "",
        "Floor = client time in LangGraph's serde alone for the operation "
        "(JsonPlusSerializer dumps/loads of the values it must move) + one bare round "
        "trip (SET of as many bytes as streamstate sends for writes, GET of a put's "
        "bytes for reads), measured in every round beside the savers. No saver using "
        "this serde can beat it; best possible ratio = peer time / floor, per round. "
        "Times are medians (µs per operation).",
        "",
    ]
    rows = []
    for op in (*OPS, "mixed"):
        f = s["floor"][op]
        rows.append(
            [
                OP_LABEL[op] + (" (threads; serde only)" if op == "mixed" else ""),
                fmt_num(f["serde_us"]["median"]),
                fmt_num(f["rtt_us"]["median"]),
                fmt_num(f["floor_us"]["median"]),
                fmt_num(f["streamstate_us"]["median"]),
                fmt_num(f["aws_us"]["median"]),
                fmt_stat(f["best_ratio"], X),
                fmt_stat(f["ratio"], X),
                f"≥ {TARGETS[op]}{X}",
            ]
        )
    lines.append(
        md_table(
            [
                "operation",
                "serde µs",
                "round trip µs",
                "floor µs",
                "streamstate µs",
                "aws µs",
                "best possible ratio",
                "ratio now",
                "target",
            ],
            rows,
        )
    )
    lines += ["", "## Server memory per checkpoint (each peer alone, fresh threads)", ""]
    mem = data["memory"]
    rows = []
    for key, label in (
        ("used_memory_per_checkpoint", "INFO used_memory delta"),
        ("key_bytes_per_checkpoint", "sum of MEMORY USAGE over keys"),
        ("aof_bytes_per_checkpoint", "AOF bytes appended"),
    ):
        e = s["memory"][key]
        rows.append(
            [
                label,
                fmt_stat(e["streamstate"], " B"),
                fmt_stat(e["aws"], " B"),
                fmt_stat(e["ratio"], X),
            ]
        )
    lines.append(md_table(["measure", "streamstate", "langgraph-checkpoint-aws", "ratio"], rows))
    for peer in ("streamstate", "aws"):
        kinds = mem[peer][-1]["by_key_kind"]
        lines += [
            "",
            f"{peer} bytes per checkpoint by key: "
            + ", ".join(f"{k} {fmt_num(v)}" for k, v in kinds.items()),
        ]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--quick", action="store_true", help="short smoke run (< 60 s)")
    ap.add_argument("--rounds", type=int, help="override the number of rounds")
    ap.add_argument("--no-save", action="store_true", help="print only; write no result files")
    ap.add_argument(
        "--no-compression",
        action="store_true",
        help="diagnostic: streamstate without zstd (what compression costs and saves); "
        "results go to checkpoint-nozstd.*",
    )
    args = ap.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.rounds:
        settings = Settings(**{**settings.__dict__, "rounds": args.rounds})

    def log(msg: str) -> None:
        print(f"[bench checkpoint] {msg}", file=sys.stderr, flush=True)

    data = run(settings, log, compress=not args.no_compression)
    md = report(data, args.quick)
    print(md)
    if not args.no_save:
        name = "checkpoint-quick" if args.quick else "checkpoint"
        name += "-nozstd" if args.no_compression else ""
        md_path, json_path = write_results(name, md, data)
        log(f"wrote {md_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
