"""``streamstate threads`` on a large deployment: one page, every sort, 100,000 threads.

``python -m bench threads [--quick] [--threads N] [--rounds N]``

The deployment is built fast: three real threads are written through ``ValkeySaver``
(one checkpoint; five checkpoints; the demo agent's run, interrupt and resume, 22
entries), then copied under new thread ids with DUMP/RESTORE and registered, in a
2:2:1 mix. A copy costs the listing what the original does (the same XLEN, XREVRANGE,
ZLEXCOUNT and MEMORY USAGE work), so the figures are those of real threads.

For each query it reports the median wall time of a first page of 50 threads, the
requests sent (calls the audit handle ran: TIME, ZSCAN/SSCAN pages, script calls) and
the server's main-thread CPU per query. ``one call per thread`` is the same listing
with a page of one thread per script call: what measuring thread by thread costs.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.common import admin_client, embedded_server

PAGE = 50


def _server_cpu(admin: Any) -> float:
    info = admin.info("cpu")
    return float(info["used_cpu_sys_main_thread"]) + float(info["used_cpu_user_main_thread"])


def _templates(client: Any) -> list[list[bytes]]:
    """Three real threads' keys (log, v, z) as DUMP payloads."""
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.types import Command

    from streamstate import ValkeySaver
    from streamstate.demo.agent import build_agent, user_message
    from streamstate.eventlog.keys import Keyspace
    from streamstate.projections.checkpoints import thread_keys

    saver = ValkeySaver(client)
    names = []
    for n in (1, 5):
        thread_id = f"template-{n}-{uuid.uuid4().hex[:6]}"
        config: Any = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        for i in range(n):
            cp = empty_checkpoint()
            cp["channel_values"] = {"notes": f"note {i} " * 20}
            cp["channel_versions"] = {"notes": i + 1}
            config = saver.put(config, cp, {"source": "loop", "step": i}, {"notes": i + 1})
        names.append(thread_id)
    agent = f"template-agent-{uuid.uuid4().hex[:6]}"
    graph = build_agent(saver)
    config = {"configurable": {"thread_id": agent}}
    graph.invoke({"messages": [user_message(0)]}, config)
    graph.invoke(Command(resume={"approved": True}), config)
    names.append(agent)
    out = []
    for thread_id in names:
        keys = thread_keys(Keyspace("ss").session(("t", thread_id)))
        out.append([client.dump(k) for k in keys])
    return out


def populate(client: Any, n: int) -> None:
    """``n`` registered threads, copies of the templates (2:2:1)."""
    from streamstate.eventlog.keys import Keyspace, session_tag
    from streamstate.projections.checkpoints import thread_keys, threads_registry

    templates = _templates(client)
    mix = [templates[0], templates[0], templates[1], templates[1], templates[2]]
    keyspace = Keyspace("ss")
    registry = threads_registry(keyspace)
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        session = ("t", f"thread-{i:06d}")
        for key, blob in zip(thread_keys(keyspace.session(session)), mix[i % len(mix)]):
            pipe.restore(key, 0, blob, replace=True)
        pipe.zadd(registry, {session_tag(session): "inf"})
        if i % 500 == 499:
            pipe.execute()
    pipe.execute()


def _counting(audit: Any) -> Callable[[], int]:
    """Counts the requests the audit handle sends from now on."""
    run = audit.log.run
    sent = [0]

    def counted(call: Any) -> Any:
        sent[0] += 1
        return run(call)

    audit.log.run = counted
    return lambda: sent[0]


def main(argv: list[str] | None = None) -> int:
    import valkey

    from streamstate import inspect
    from streamstate.audit import ValkeyAudit

    parser = argparse.ArgumentParser(prog="python -m bench threads", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10,000 threads, 3 rounds")
    parser.add_argument("--threads", type=int, default=None, help="default 100,000")
    parser.add_argument("--rounds", type=int, default=None, help="default 5")
    args = parser.parse_args(argv)
    n = args.threads or (10_000 if args.quick else 100_000)
    rounds = args.rounds or (3 if args.quick else 5)
    queries: list[tuple[str, dict[str, Any], int | None]] = [
        ("--sort id", {"sort": "id"}, None),
        ("--sort activity", {"sort": "activity"}, None),
        ("--sort checkpoints", {"sort": "checkpoints"}, None),
        ("--sort size", {"sort": "size"}, None),
        ("--sort activity, page 2 (--after)", {"sort": "activity", "after": "next"}, None),
        ("--prefix thread-0001 (100 threads)", {"sort": "activity", "prefix": "thread-0001"},
         None),
        ("--sort activity, one call per thread", {"sort": "activity"}, 1),
    ]  # fmt: skip
    rows = []
    with embedded_server() as server:
        client = valkey.Valkey.from_url(server.url)
        admin = admin_client(server.url)
        started = time.perf_counter()
        populate(client, n)
        built = time.perf_counter() - started
        memory = int(admin.info("memory")["used_memory"])
        audit = ValkeyAudit(client)
        requests = _counting(audit)
        first = inspect.threads(audit, sort="activity", limit=PAGE)
        for label, kwargs, page_size in queries:
            kwargs = dict(kwargs, limit=PAGE)
            if kwargs.get("after") == "next":
                kwargs["after"] = first.next
            saved = inspect.STATS_PAGE
            if page_size is not None:
                inspect.STATS_PAGE = page_size
            times, cpu, sent = [], [], []
            try:
                for _ in range(1 if page_size == 1 else rounds):
                    before, cpu0 = requests(), _server_cpu(admin)
                    t = time.perf_counter()
                    page = inspect.threads(audit, **kwargs)
                    times.append(time.perf_counter() - t)
                    cpu.append(_server_cpu(admin) - cpu0)
                    sent.append(requests() - before)
            finally:
                inspect.STATS_PAGE = saved
            assert len(page.threads) == min(PAGE, page.total), "a short page"
            rows.append((label, page.total, statistics.median(times), sent[-1],
                         statistics.median(cpu)))  # fmt: skip
        client.close()
    print(
        f"# streamstate threads: {n:,} threads, a page of {PAGE}, median of {rounds} rounds"
        f" (one server; built in {built:.1f} s, {memory / 2**20:,.0f} MiB)"
    )
    print()
    print("| query | threads matched | wall ms | requests | server CPU ms |")
    print("|---|---|---|---|---|")
    for label, total, wall, sent_n, cpu_s in rows:
        print(f"| {label} | {total:,} | {wall * 1000:,.0f} | {sent_n:,} | {cpu_s * 1000:,.0f} |")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
