"""Checks shared by the reliability tests: read ack files, prove nothing acknowledged
was lost or duplicated, and prove each session's views equal a rebuild from its log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import valkey

from streamstate.adapters._checkpoints import Thread
from streamstate.adapters.valkey_saver import ValkeySaver
from streamstate.eventlog._drive import complete
from streamstate.eventlog.events import CheckpointPut, WritesPut
from streamstate.eventlog.keys import Keyspace
from streamstate.eventlog.valkey import ValkeyEventLog
from streamstate.projections.checkpoints import thread_keys

REPO = Path(__file__).resolve().parents[2]
VERIFY = Keyspace("ss-verify")


def store_class() -> Any:
    """``ValkeyStore`` if it is importable (it is being finished elsewhere), else None."""
    try:
        from streamstate.adapters.store import ValkeyStore
    except ImportError:
        return None
    return ValkeyStore


def items_projection() -> Any:
    from streamstate.projections.items import ItemsProjection

    return ItemsProjection()


def cfg(thread: str, ns: str = "", cid: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
    if cid is not None:
        c["checkpoint_id"] = cid
    return {"configurable": c}


def read_acks(*paths: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record of the ack files, in file order (a torn last line is ignored)."""
    out: list[dict[str, Any]] = []
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def ops_of(acks: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in acks if a["op"] in ("put", "writes", "store")]


def spawn_writer(url: str, acks: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start ``tests.reliability._writer`` against ``url`` (stderr kept for failures)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.reliability._writer",
            "--url",
            url,
            "--acks",
            str(acks),
            *args,
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_for_acks(path: Path, n: int, proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait until ``path`` holds ``n`` op acks (or the writer died); returns the count."""
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = len(ops_of(read_acks(path))) if path.exists() else 0
        if count >= n or proc.poll() is not None:
            return count
        time.sleep(0.02)
    return count


def kill9(pid: int, timeout: float = 5.0) -> None:
    """SIGKILL a process we started (by pid) and wait until it is gone."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} survived SIGKILL for {timeout}s")


@dataclass
class Verdict:
    """What a verification found (all counts are of acknowledged operations)."""

    puts: int = 0
    writes: int = 0
    store_puts: int = 0
    sessions: int = 0
    events: int = 0
    extra_events: int = 0
    """Events in the logs beyond the acknowledged ops: calls applied whose reply was lost."""
    problems: list[str] = field(default_factory=list)

    @property
    def acknowledged(self) -> int:
        return self.puts + self.writes + self.store_puts


def verify_acknowledged(
    client: valkey.Valkey, acks: Sequence[dict[str, Any]], *, store_collection: str = ""
) -> Verdict:
    """Every acknowledged put / put_writes / store put is readable with its content.

    Also counts each session's log (XLEN) against its acknowledged operations.
    """
    saver = ValkeySaver(client)
    verdict = Verdict()
    by_cp: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    per_session: Counter[tuple[str, ...]] = Counter()
    for a in ops_of(acks):
        if a["op"] == "put":
            verdict.puts += 1
            by_cp[(a["thread"], a["ns"], a["cid"])].insert(0, a)
            per_session[("t", a["thread"])] += 1
        elif a["op"] == "writes":
            verdict.writes += 1
            by_cp[(a["thread"], a["ns"], a["cid"])].append(a)
            per_session[("t", a["thread"])] += 1
    for (thread, ns, cid), recs in by_cp.items():
        tup = saver.get_tuple(cfg(thread, ns, cid))
        if tup is None:
            verdict.problems.append(f"lost checkpoint {thread}/{ns}/{cid}")
            continue
        pending = {(t, ch): v for t, ch, v in tup.pending_writes or []}
        for rec in recs:
            if rec["op"] == "put":
                if tup.checkpoint["channel_values"] != rec["values"]:
                    verdict.problems.append(f"wrong values for {cid}")
                parent = (
                    tup.parent_config["configurable"]["checkpoint_id"]
                    if tup.parent_config
                    else None
                )
                if parent != rec["parent"]:
                    verdict.problems.append(f"broken chain at {cid}: {parent} != {rec['parent']}")
            else:
                for ch, value in rec["writes"]:
                    if pending.get((rec["task"], ch)) != value:
                        verdict.problems.append(f"lost write {rec['task']}/{ch} on {cid}")
    store_acks = [a for a in ops_of(acks) if a["op"] == "store"]
    if store_acks:
        cls = store_class()
        assert cls is not None, "store puts were acknowledged but ValkeyStore is gone"
        store = cls(client, index={"collection_name": store_collection})
        for a in store_acks:
            verdict.store_puts += 1
            item = store.get(tuple(a["ns"]), a["key"])
            if item is None or item.value != a["value"]:
                verdict.problems.append(f"lost store put {a['ns']}/{a['key']}")
        per_session[("store", store_collection)] += len(store_acks)
    keyspace = saver.log.keyspace
    for session, acked in per_session.items():
        n = int(client.xlen(keyspace.session(session).log))
        verdict.sessions += 1
        verdict.events += n
        if n < acked:
            verdict.problems.append(f"{session}: {n} events < {acked} acknowledged")
        verdict.extra_events += n - acked
    return verdict


def assert_views_equal_logs(
    client: valkey.Valkey, sessions: Iterable[tuple[str, ...]], *, store: bool = False
) -> int:
    """Rebuild each session's views from its log into ``ss-verify`` and compare.

    Returns the number of entries replayed. Store sessions (``("store", name)``) use the
    items projection, thread sessions the checkpoint views.
    """
    saver = ValkeySaver(client)
    logs = {"t": saver.log}
    if store:
        logs["store"] = ValkeyEventLog(client, projections=[items_projection()])
    replayed = 0
    for session in sessions:
        log = logs[session[0]]
        live_keys = log.keyspace.session(session)
        if session[0] == "t":
            thread = Thread.from_session(session)
            assert thread is not None
            n = complete(saver._core.rebuild_flow(thread, VERIFY), log.run)
            keys, shadow = thread_keys(live_keys)[1:], thread_keys(VERIFY.session(session))[1:]
        else:
            view = log.projections[0]
            n = log.rebuild(session, target=VERIFY)
            keys, shadow = view.view_keys(live_keys), view.view_keys(VERIFY.session(session))
        assert n == client.xlen(live_keys.log), session
        live = log.snapshot(keys)
        rebuilt = log.snapshot(shadow)
        assert list(live.values()) == list(rebuilt.values()), f"views of {session} != log"
        replayed += n
    return replayed


def log_order(client: valkey.Valkey, thread: str) -> list[tuple[str, Any]]:
    """The thread's log as ``(stream id, event)`` pairs (a strict read: foreign = error)."""
    saver = ValkeySaver(client)
    return [(e.id, e.event) for e in saver.log.read(("t", thread))]


def event_key(event: Any) -> tuple[str, str]:
    """What an event is about: ``("put", checkpoint id)`` or ``("writes", task id)``."""
    if isinstance(event, CheckpointPut):
        return ("put", event.checkpoint_id)
    if isinstance(event, WritesPut):
        return ("writes", event.task_id)
    return ("other", repr(event))


def stream_id(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


def app_workload(client: valkey.Valkey, *, cache_prefix: str = "ss:cache") -> int:
    """Every call an application makes through streamstate, once, on ``client``.

    Saver (put, put_writes, get_tuple, list with a filter, delta history, copy, prune,
    delete_for_runs, delete, TTL), log (tail, consumer groups, trim, rebuild), store (if
    importable: put with TTL, get with refresh, search, namespaces, delete) and cache.
    Returns the number of calls made.
    """
    from langgraph.checkpoint.base import empty_checkpoint

    from streamstate.adapters.cache import ValkeyCache

    calls = 0
    saver = ValkeySaver(client)
    thread = f"app-{os.urandom(4).hex()}"
    config = cfg(thread)
    cp = empty_checkpoint()
    cp["channel_values"] = {"a": "x" * 2000}
    cp["channel_versions"] = {"a": "1"}
    out = saver.put(config, cp, {"run_id": f"run-{thread}", "step": 1}, {"a": "1"})
    saver.put_writes(out, [("a", 1), ("__error__", "e")], "task")
    out2 = saver.put(out, empty_checkpoint(), {"step": 2}, {})
    assert saver.get_tuple(config) is not None
    assert len(list(saver.list(config, filter={"step": 1}))) == 1
    saver.get_delta_channel_history(config=out2, channels=["a"])
    saver.copy_thread(thread, thread + "-copy")
    saver.prune([thread + "-copy"])
    saver.delete_for_runs([f"run-{thread}"])
    saver.delete_thread(thread + "-copy")
    calls += 11
    ValkeySaver(client, ttl=60).put(cfg(thread + "-ttl"), empty_checkpoint(), {}, {})
    log = saver.log
    session = ("t", thread + "-ttl")
    list(log.tail(session, "0", block_ms=10, idle_timeout=0.05))
    log.ensure_group(session, "audit")
    got = log.group_read(session, "audit", "c1")
    log.ack(session, "audit", [e.id for e in got])
    log.trim(session, maxlen=10)
    log.length(session)
    list(log.sessions())
    log.rebuild(session)
    calls += 9
    # a thread whose views were lost is repaired from its log; refresh_on_read; every
    # thread on the server; the audit tool's rebuild and verify of one thread
    from streamstate.audit import ValkeyAudit

    client.delete(saver.log.keyspace.session(session).view("v"))
    fresh = ValkeySaver(client, ttl=60, refresh_on_read=True)
    assert fresh.get_tuple(cfg(thread + "-ttl")) is not None
    assert list(fresh.list(None, limit=1))
    audit = ValkeyAudit(client)
    assert audit.rebuild([session])[0].skipped is None
    assert audit.verify([session]).ok
    calls += 5
    cls = store_class()
    if cls is not None:
        store = cls(client, index={"collection_name": f"app-{thread}"})
        store.put(("a", "b"), "k", {"v": 1}, ttl=5)
        store.put(("a", "b"), "k2", {"v": 2})
        assert store.get(("a", "b"), "k", refresh_ttl=True) is not None
        store.search(("a",), filter={"v": 1})
        store.list_namespaces(prefix=("a",))
        store.delete(("a", "b"), "k2")
        calls += 6
    cache: ValkeyCache[Any] = ValkeyCache(client, prefix=cache_prefix)
    cache.set({(("n",), "k"): ("v", 30), (("n",), "k2"): ("v", None)})
    assert cache.get([(("n",), "k")])
    cache.clear([("n",)])
    calls += 3
    return calls
