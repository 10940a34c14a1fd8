"""A load writer run as a subprocess by the crash and concurrency tests.

It writes checkpoint chains (``put``), pending writes (``put_writes``) and, when the
store is importable, store items, and appends one JSON line per *acknowledged*
operation to an ack file (flushed and fsync'd, so a line on disk means the call
returned). It stops at ``--ops`` operations per writer, or at the first error: a
``BackendUnavailable`` is recorded and ends the process with exit code 3, anything else
with exit code 4.

Run: ``python -m tests.reliability._writer --url URL --acks FILE [options]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import valkey
import valkey.asyncio
from langgraph.checkpoint.base import empty_checkpoint

from streamstate.adapters.valkey_saver import AsyncValkeySaver, ValkeySaver
from streamstate.errors import BackendUnavailable
from streamstate.eventlog.valkey import RetryPolicy

EXIT_UNAVAILABLE = 3
EXIT_OTHER_ERROR = 4


class AckFile:
    """Appends JSON lines; one line is written and (optionally) fsync'd per ack."""

    def __init__(self, path: str, *, fsync: bool) -> None:
        self.fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.fsync = fsync
        self.lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self.lock:
            self.fh.write(line)
            self.fh.flush()
            if self.fsync:
                os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


def channel_values(writer: str, seq: int) -> dict[str, Any]:
    """Values of step ``seq``: a counter every step, a >512-byte blob (zstd) every 5th."""
    return {"counter": seq, "who": writer, "blob": f"{writer}:{seq // 5}:" + "z" * 700}


_MISSING = object()


class Chain:
    """One writer's checkpoint chain on one thread (parent pointers, channel versions)."""

    def __init__(self, thread: str, ns: str = "") -> None:
        self.thread = thread
        self.ns = ns
        self.parent: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
        self.parent_id: str | None = None
        self.versions: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def step(
        self, saver: ValkeySaver | AsyncValkeySaver, writer: str, seq: int
    ) -> tuple[dict[str, Any], Any, dict[str, Any], dict[str, str]]:
        values = channel_values(writer, seq)
        # As LangGraph does: a channel gets a new version only when its value changed,
        # so unchanged channels are stored once and read back through older versions.
        new_versions = {
            ch: saver.get_next_version(self.versions.get(ch), None)
            for ch, value in values.items()
            if self.values.get(ch, _MISSING) != value
        }
        self.versions.update(new_versions)
        self.values = values
        cp = empty_checkpoint()
        cp["channel_values"] = values
        cp["channel_versions"] = dict(self.versions)
        meta = {"source": "loop", "step": seq, "writer": writer}
        return self.parent, cp, meta, new_versions


def put_record(chain: Chain, writer: str, seq: int, cid: str, values: dict[str, Any]) -> dict:
    return {
        "op": "put",
        "w": writer,
        "seq": seq,
        "thread": chain.thread,
        "ns": chain.ns,
        "cid": cid,
        "parent": chain.parent_id,
        "values": values,
        "t": time.time(),
    }


def writes_record(chain: Chain, writer: str, seq: int, cid: str, task: str, writes: list) -> dict:
    return {
        "op": "writes",
        "w": writer,
        "seq": seq,
        "thread": chain.thread,
        "ns": chain.ns,
        "cid": cid,
        "task": task,
        "writes": writes,
        "t": time.time(),
    }


def make_store(client: valkey.Valkey, collection: str | None) -> Any:
    """A ValkeyStore on ``client``, or None when there is none (yet) or none asked for."""
    if not collection:
        return None
    try:
        from streamstate.adapters.store import ValkeyStore
    except ImportError:
        return None
    return ValkeyStore(client, index={"collection_name": collection})  # type: ignore[typeddict-item]


def sync_writer(
    saver: ValkeySaver,
    store: Any,
    acks: AckFile,
    writer: str,
    threads: list[str],
    ops: int,
    stop: threading.Event,
) -> None:
    """Round-robin over ``threads``: put, put_writes, store put; one ack line each."""
    chains = {t: Chain(t) for t in threads}
    for seq in range(ops):
        if stop.is_set():
            return
        chain = chains[threads[seq % len(threads)]]
        parent, cp, meta, new_versions = chain.step(saver, writer, seq)
        out = saver.put(parent, cp, meta, new_versions)
        cid = out["configurable"]["checkpoint_id"]
        acks.write(put_record(chain, writer, seq, cid, cp["channel_values"]))
        chain.parent, chain.parent_id = out, cid
        task = f"{writer}:{seq}"
        writes = [["out", f"{writer}-{seq}"], ["count", seq]]
        saver.put_writes(out, [tuple(w) for w in writes], task)
        acks.write(writes_record(chain, writer, seq, cid, task, writes))
        if store is not None:
            ns = ["rel", writer]
            key = f"k{seq}"
            value = {"seq": seq, "w": writer, "pad": "p" * (seq % 50)}
            store.put(tuple(ns), key, value)
            acks.write(
                {
                    "op": "store",
                    "w": writer,
                    "seq": seq,
                    "ns": ns,
                    "key": key,
                    "value": value,
                    "t": time.time(),
                }
            )


async def async_writer(
    saver: AsyncValkeySaver, acks: AckFile, writer: str, threads: list[str], ops: int
) -> None:
    chains = {t: Chain(t) for t in threads}
    for seq in range(ops):
        chain = chains[threads[seq % len(threads)]]
        parent, cp, meta, new_versions = chain.step(saver, writer, seq)
        out = await saver.aput(parent, cp, meta, new_versions)
        cid = out["configurable"]["checkpoint_id"]
        acks.write(put_record(chain, writer, seq, cid, cp["channel_values"]))
        chain.parent, chain.parent_id = out, cid
        task = f"{writer}:{seq}"
        writes = [["out", f"{writer}-{seq}"], ["count", seq]]
        await saver.aput_writes(out, [tuple(w) for w in writes], task)
        acks.write(writes_record(chain, writer, seq, cid, task, writes))


def _guard(acks: AckFile, fn: Callable[[], None], failures: list[BaseException]) -> None:
    started = time.monotonic()
    try:
        fn()
    except BaseException as exc:
        failures.append(exc)
        acks.write(
            {
                "op": "error",
                "type": type(exc).__name__,
                "unavailable": isinstance(exc, BackendUnavailable),
                "msg": str(exc),
                "elapsed": time.monotonic() - started,
                "tb": traceback.format_exc(limit=8),
                "t": time.time(),
            }
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--acks", required=True)
    p.add_argument("--name", default="w")
    p.add_argument("--prefix", default="rel")
    p.add_argument("--threads", type=int, default=1, help="writer threads")
    p.add_argument("--tasks", type=int, default=0, help="asyncio writer tasks")
    p.add_argument("--own", type=int, default=2, help="LangGraph threads per writer")
    p.add_argument("--shared", type=int, default=0, help="LangGraph threads every writer uses")
    p.add_argument("--ops", type=int, default=10**9, help="steps per writer")
    p.add_argument("--store", default="", help="store collection name ('' for none)")
    p.add_argument("--fsync", action="store_true")
    p.add_argument("--socket-timeout", type=float, default=1.0)
    p.add_argument("--attempts", type=int, default=4)
    p.add_argument("--budget", type=float, default=2.0)
    args = p.parse_args(argv)

    retry = RetryPolicy(attempts=args.attempts, budget=args.budget, max_wait=0.3)
    timeouts = {
        "socket_timeout": args.socket_timeout,
        "socket_connect_timeout": args.socket_timeout,
    }
    acks = AckFile(args.acks, fsync=args.fsync)
    client = valkey.Valkey.from_url(args.url, client_name=f"{args.prefix}-{args.name}", **timeouts)
    saver = ValkeySaver(client, retry=retry)
    store = make_store(client, args.store)
    acks.write({"op": "start", "w": args.name, "store": store is not None, "pid": os.getpid()})

    def threads_of(writer: str) -> list[str]:
        own = [f"{args.prefix}-{writer}-own{i}" for i in range(args.own)]
        return own + [f"{args.prefix}-shared{i}" for i in range(args.shared)]

    failures: list[BaseException] = []
    stop = threading.Event()
    workers = []
    for i in range(args.threads):
        writer = f"{args.name}-t{i}"
        fn = lambda writer=writer: sync_writer(  # noqa: E731
            saver, store, acks, writer, threads_of(writer), args.ops, stop
        )
        workers.append(threading.Thread(target=_guard, args=(acks, fn, failures)))
    for w in workers:
        w.start()
    if args.tasks:

        async def run_tasks() -> None:
            aclient = valkey.asyncio.Valkey.from_url(
                args.url, client_name=f"{args.prefix}-{args.name}-async", **timeouts
            )
            asaver = AsyncValkeySaver(aclient, retry=retry)
            names = [f"{args.name}-a{i}" for i in range(args.tasks)]
            results = await asyncio.gather(
                *(async_writer(asaver, acks, n, threads_of(n), args.ops) for n in names),
                return_exceptions=True,
            )
            await aclient.aclose()
            for r in results:
                if isinstance(r, BaseException):
                    raise r

        _guard(acks, lambda: asyncio.run(run_tasks()), failures)
    for w in workers:
        w.join()
    acks.write({"op": "end", "w": args.name, "failures": len(failures)})
    acks.close()
    if not failures:
        return 0
    return EXIT_UNAVAILABLE if isinstance(failures[0], BackendUnavailable) else EXIT_OTHER_ERROR


if __name__ == "__main__":
    sys.exit(main())
