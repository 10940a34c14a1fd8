"""Concurrency: processes x threads x asyncio tasks writing to the same and to
different threads.

What must hold: no acknowledged write is lost or stored twice; each writer's operations
appear in a thread's log in the order it made them (stream ids increase); every
checkpoint chain is intact; one saver's calls overlap on several pooled connections
(no instance-wide lock serialises them).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import valkey
import valkey.asyncio

from streamstate.adapters.valkey_saver import AsyncValkeySaver, ValkeySaver
from streamstate.eventlog.valkey import RetryPolicy
from streamstate.server import EmbeddedServer
from tests.reliability import _support as sup
from tests.reliability._writer import Chain


def check_order_and_chains(client: valkey.Valkey, acks: list[dict[str, Any]]) -> dict[str, int]:
    """Per thread: each writer's events in its own order, none twice, latest = max id."""
    who: dict[tuple[str, str], tuple[str, int]] = {}
    per_thread: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in sup.ops_of(acks):
        if a["op"] == "put":
            who[("put", a["cid"])] = (a["w"], a["seq"])
        elif a["op"] == "writes":
            who[("writes", a["task"])] = (a["w"], a["seq"])
        else:
            continue
        per_thread[a["thread"]].append(a)
    saver = ValkeySaver(client)
    shared = 0
    for thread, thread_acks in per_thread.items():
        entries = sup.log_order(client, thread)
        keys = [sup.event_key(ev) for _, ev in entries]
        assert all(n == 1 for n in Counter(keys).values()), f"{thread}: an event twice"
        assert len(keys) == len(thread_acks), thread
        ids = [sup.stream_id(i) for i, _ in entries]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        last: dict[str, tuple[int, int]] = {}
        for key in keys:
            writer, seq = who[key]
            rank = (seq, 0 if key[0] == "put" else 1)  # put before its own writes
            assert rank > last.get(writer, (-1, 1)), f"{thread}: {writer} out of order"
            last[writer] = rank
        if len(last) > 1:
            shared += 1
        cids = [a["cid"] for a in thread_acks if a["op"] == "put"]
        latest = saver.get_tuple(sup.cfg(thread))
        assert latest is not None and latest.config["configurable"]["checkpoint_id"] == max(cids)
        listed = [t.config["configurable"]["checkpoint_id"] for t in saver.list(sup.cfg(thread))]
        assert listed == sorted(cids, reverse=True)
    return {"threads": len(per_thread), "shared_threads": shared}


def run_writers(
    server: EmbeddedServer,
    tmp_path: Path,
    *,
    processes: int,
    threads: int,
    tasks: int,
    steps: int,
    shared: int,
) -> dict[str, Any]:
    prefix = f"cc{uuid.uuid4().hex[:6]}"
    store = f"{prefix}-store" if sup.store_class() else ""
    files = [tmp_path / f"acks-{p}.jsonl" for p in range(processes)]
    started = time.monotonic()
    procs = [
        sup.spawn_writer(
            server.url,
            files[p],
            "--name",
            f"p{p}",
            "--prefix",
            prefix,
            "--threads",
            str(threads),
            "--tasks",
            str(tasks),
            "--own",
            "1",
            "--shared",
            str(shared),
            "--ops",
            str(steps),
            "--store",
            store,
        )
        for p in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    elapsed = time.monotonic() - started
    client = valkey.Valkey.from_url(server.url)
    acks = sup.read_acks(*files)
    writers = processes * (threads + tasks)
    stamps = [a["t"] for a in sup.ops_of(acks)]
    busy = max(stamps) - min(stamps)
    verdict = sup.verify_acknowledged(client, acks, store_collection=store)
    assert not verdict.problems, verdict.problems[:20]
    assert verdict.extra_events == 0, verdict
    assert verdict.puts == verdict.writes == writers * steps
    figures = check_order_and_chains(client, acks)
    sessions = sorted({("t", a["thread"]) for a in sup.ops_of(acks) if a["op"] != "store"})
    if store:
        sessions.append(("store", store))
    replayed = sup.assert_views_equal_logs(client, sessions, store=bool(store))
    client.close()
    return {
        "processes": processes,
        "writers": writers,
        "acknowledged": verdict.acknowledged,
        "store_puts": verdict.store_puts,
        "events": verdict.events,
        "replayed": replayed,
        "seconds": round(elapsed, 1),
        "ops_per_s": round(verdict.acknowledged / busy),
        **figures,
    }


def test_processes_threads_and_tasks_lose_and_reorder_nothing(
    private_server: EmbeddedServer, tmp_path: Path
) -> None:
    figures = run_writers(
        private_server, tmp_path, processes=2, threads=2, tasks=2, steps=40, shared=2
    )
    print("concurrency figures:", figures)
    assert figures["shared_threads"] == 2


@pytest.mark.slow
def test_processes_threads_and_tasks_long_load(
    private_server: EmbeddedServer, tmp_path: Path
) -> None:
    figures = run_writers(
        private_server, tmp_path, processes=4, threads=4, tasks=4, steps=250, shared=3
    )
    print("concurrency figures:", figures)


# -- one saver, many connections -----------------------------------------------------------

NO_RETRY = RetryPolicy(attempts=1)


class ConnectionWatcher:
    """Polls CLIENT LIST for connections named ``name``; keeps the maximum seen."""

    def __init__(self, url: str, name: str) -> None:
        self.client = valkey.Valkey.from_url(url)
        self.name = name.encode()
        self.most = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            listed = self.client.execute_command("CLIENT", "LIST")
            n = sum(1 for line in listed.splitlines() if b" name=" + self.name + b" " in line)
            self.most = max(self.most, n)
            time.sleep(0.002)

    def __enter__(self) -> ConnectionWatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.client.close()


def _load(saver: Any, thread: str, steps: int) -> None:
    chain = Chain(thread)
    for seq in range(steps):
        parent, cp, meta, versions = chain.step(saver, thread, seq)
        out = saver.put(parent, cp, meta, versions)
        chain.parent = out
        saver.put_writes(out, [("x", seq)], f"t{seq}")


def test_threads_on_one_saver_overlap_on_several_connections(valkey_url: str) -> None:
    name = f"overlap-{uuid.uuid4().hex[:6]}"
    client = valkey.Valkey.from_url(valkey_url, client_name=name)
    saver = ValkeySaver(client)
    with ConnectionWatcher(valkey_url, name) as watcher, ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: _load(saver, f"{name}-{i}", 30), range(8)))
    client.close()
    print(f"sync: up to {watcher.most} connections of one ValkeySaver at once")
    assert watcher.most > 1


def test_tasks_on_one_async_saver_overlap_on_several_connections(valkey_url: str) -> None:
    name = f"aoverlap-{uuid.uuid4().hex[:6]}"

    async def main() -> None:
        client = valkey.asyncio.Valkey.from_url(valkey_url, client_name=name)
        saver = AsyncValkeySaver(client)

        async def load(thread: str) -> None:
            chain = Chain(thread)
            for seq in range(30):
                parent, cp, meta, versions = chain.step(saver, thread, seq)
                out = await saver.aput(parent, cp, meta, versions)
                chain.parent = out
                await saver.aput_writes(out, [("x", seq)], f"t{seq}")

        await asyncio.gather(*(load(f"{name}-{i}") for i in range(8)))
        await client.aclose()

    with ConnectionWatcher(valkey_url, name) as watcher:
        asyncio.run(main())
    print(f"async: up to {watcher.most} connections of one AsyncValkeySaver at once")
    assert watcher.most > 1


def test_more_threads_than_pool_connections_wait_for_a_connection(valkey_url: str) -> None:
    errors: list[BaseException] = []
    # No retries: a waiting pool needs none, and retries would only hide some failures.
    with ValkeySaver.from_conn_string(valkey_url, pool_size=2, retry=NO_RETRY) as saver:

        def work(i: int) -> None:
            try:
                _load(saver, f"pool-{uuid.uuid4().hex[:6]}-{i}", 20)
            except Exception as exc:
                errors.append(exc)

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(work, range(16)))
    assert errors == []


def test_more_tasks_than_pool_connections_wait_for_a_connection(valkey_url: str) -> None:
    errors: list[BaseException] = []

    async def main() -> None:
        async with AsyncValkeySaver.from_conn_string(
            valkey_url, pool_size=2, retry=NO_RETRY
        ) as saver:

            async def work(i: int) -> None:
                chain = Chain(f"apool-{uuid.uuid4().hex[:6]}-{i}")
                try:
                    for seq in range(20):
                        parent, cp, meta, versions = chain.step(saver, "w", seq)
                        chain.parent = await saver.aput(parent, cp, meta, versions)
                except Exception as exc:
                    errors.append(exc)

            await asyncio.gather(*(work(i) for i in range(16)))

    asyncio.run(main())
    assert errors == []
