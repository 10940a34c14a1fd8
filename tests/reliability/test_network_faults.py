"""Network faults between a saver and Valkey, injected by ``FaultProxy``.

What must hold: retries of idempotent calls succeed within their ``RetryPolicy``; a
call applied by the server whose reply was lost is not written twice when retried
(the checkpoint id guards ``put``, skip-if-noop guards ``put_writes``); nothing
acknowledged is lost; non-idempotent calls are not retried; an exhausted budget raises
``BackendUnavailable`` in bounded time.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import valkey
import valkey.asyncio

from streamstate.adapters.valkey_saver import AsyncValkeySaver, ValkeySaver
from streamstate.errors import BackendUnavailable
from streamstate.eventlog.valkey import RetryPolicy, ValkeyEventLog
from streamstate.testing.faultproxy import FaultProxy, RandomFaults
from tests.conftest import CommandCounter
from tests.reliability import _support as sup
from tests.reliability._writer import Chain, put_record, writes_record

SOCKET_TIMEOUT = 0.25
PATIENT = RetryPolicy(attempts=10, budget=8.0, max_wait=0.1, initial_wait=0.01)


def sync_client(proxy: FaultProxy, timeout: float | None = SOCKET_TIMEOUT) -> valkey.Valkey:
    return valkey.Valkey.from_url(
        proxy.url(), socket_timeout=timeout, socket_connect_timeout=timeout
    )


def thread_name(tag: str) -> str:
    return f"net-{tag}-{uuid.uuid4().hex[:8]}"


def xlen(direct: valkey.Valkey, thread: str) -> int:
    return int(direct.xlen(ValkeySaver(direct).log.keyspace.session(("t", thread)).log))


def first_checkpoint(saver: ValkeySaver, thread: str) -> tuple[Chain, dict[str, Any]]:
    """A thread with one checkpoint (and the scripts loaded on the server)."""
    chain = Chain(thread)
    parent, cp, meta, versions = chain.step(saver, "w", 0)
    out = saver.put(parent, cp, meta, versions)
    chain.parent, chain.parent_id = out, out["configurable"]["checkpoint_id"]
    saver.put_writes(out, [("warm", 0)], "warmup")
    return chain, out


# -- one fault, aimed at one call --------------------------------------------------------


@pytest.mark.parametrize("keep,rst", [(0.0, False), (0.5, False), (0.5, True)])
def test_put_whose_reply_is_cut_after_apply_is_written_once(
    proxy: FaultProxy, direct: valkey.Valkey, keep: float, rst: bool
) -> None:
    saver = ValkeySaver(sync_client(proxy), retry=PATIENT)
    thread = thread_name("cut-put")
    chain, _ = first_checkpoint(saver, thread)
    before = xlen(direct, thread)
    parent, cp, meta, versions = chain.step(saver, "w", 1)
    proxy.cut_next_reply(b"EVALSHA", keep=keep, rst=rst)
    out = saver.put(parent, cp, meta, versions)
    assert proxy.stats.cuts == 1 and proxy.armed == 0
    assert xlen(direct, thread) == before + 1
    tup = ValkeySaver(direct).get_tuple(out)
    assert tup is not None and tup.checkpoint["channel_values"] == cp["channel_values"]


@pytest.mark.parametrize("keep", [0.0, 0.5])
def test_put_writes_whose_reply_is_cut_after_apply_is_written_once(
    proxy: FaultProxy, direct: valkey.Valkey, keep: float
) -> None:
    saver = ValkeySaver(sync_client(proxy), retry=PATIENT)
    thread = thread_name("cut-writes")
    _, config = first_checkpoint(saver, thread)
    before = xlen(direct, thread)
    proxy.cut_next_reply(b"EVALSHA", keep=keep)
    saver.put_writes(config, [("a", 1), ("b", {"x": [1, 2]}), ("__error__", "boom")], "task")
    assert proxy.stats.cuts == 1
    assert xlen(direct, thread) == before + 1
    pending = ValkeySaver(direct).get_tuple(config).pending_writes
    assert ("task", "a", 1) in pending and ("task", "__error__", "boom") in pending


def test_store_put_whose_reply_is_cut_after_apply_is_written_once(
    proxy: FaultProxy, direct: valkey.Valkey
) -> None:
    cls = sup.store_class()
    if cls is None:
        pytest.skip("ValkeyStore is not importable yet")
    collection = f"net-{uuid.uuid4().hex[:8]}"
    store = cls(sync_client(proxy), index={"collection_name": collection})
    store.put(("ns",), "warm", {"v": 0})  # loads the scripts
    log_key = ValkeySaver(direct).log.keyspace.session(("store", collection)).log
    before = int(direct.xlen(log_key))
    proxy.cut_next_reply(b"EVALSHA", keep=0.5)
    store.put(("ns",), "k", {"v": 1})
    assert proxy.stats.cuts == 1
    assert int(direct.xlen(log_key)) == before + 1
    assert cls(direct, index={"collection_name": collection}).get(("ns",), "k").value == {"v": 1}


def test_dropped_request_is_retried_and_written_once(
    proxy: FaultProxy, direct: valkey.Valkey
) -> None:
    saver = ValkeySaver(sync_client(proxy), retry=PATIENT)
    thread = thread_name("drop")
    chain, _ = first_checkpoint(saver, thread)
    before = xlen(direct, thread)
    proxy.drop_next_request(b"EVALSHA")
    parent, cp, meta, versions = chain.step(saver, "w", 1)
    saver.put(parent, cp, meta, versions)
    assert proxy.stats.dropped_requests == 1
    assert xlen(direct, thread) == before + 1


def test_stall_longer_than_the_socket_timeout_is_ridden_out(
    proxy: FaultProxy, direct: valkey.Valkey
) -> None:
    """The request sent before the stall is delivered after it (as TCP would), so the
    server sees the first attempt *and* the retry: the guard keeps one event."""
    saver = ValkeySaver(sync_client(proxy), retry=PATIENT)
    thread = thread_name("stall")
    chain, _ = first_checkpoint(saver, thread)
    before = xlen(direct, thread)
    parent, cp, meta, versions = chain.step(saver, "w", 1)
    proxy.stall(1.0)
    started = time.monotonic()
    saver.put(parent, cp, meta, versions)
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < PATIENT.budget + SOCKET_TIMEOUT + PATIENT.max_wait
    time.sleep(0.2)  # let a late first attempt land, if it is going to
    assert xlen(direct, thread) == before + 1


def test_reset_while_tail_blocks_loses_and_repeats_nothing(
    proxy: FaultProxy, direct: valkey.Valkey
) -> None:
    """``tail`` re-issues its XREAD after a reset from the last id it delivered."""
    log = ValkeyEventLog(valkey.Valkey.from_url(proxy.url(), socket_timeout=2), retry=PATIENT)
    writer = ValkeySaver(direct)
    thread = thread_name("tail")
    _, config = first_checkpoint(writer, thread)
    session = ("t", thread)
    seen: list[str] = []

    def follow() -> None:
        for entry in log.tail(session, "0", block_ms=300, idle_timeout=1.5):
            seen.append(entry.id)

    follower = threading.Thread(target=follow)
    follower.start()
    for i in range(20):
        writer.put_writes(config, [("n", i)], f"task-{i}")
        if i % 5 == 2:
            time.sleep(0.1)
            proxy.reset_all()
    follower.join(timeout=10)
    assert not follower.is_alive()
    assert proxy.stats.resets >= 1
    ids = [e.id for e in writer.log.read(session)]
    assert seen == ids


# -- an exhausted budget ---------------------------------------------------------------------


def test_exhausted_budget_raises_backend_unavailable_in_bounded_time(
    proxy: FaultProxy,
) -> None:
    policy = RetryPolicy(attempts=4, budget=1.5, max_wait=0.1)
    saver = ValkeySaver(sync_client(proxy), retry=policy)
    thread = thread_name("exhaust")
    first_checkpoint(saver, thread)
    bound = policy.budget + SOCKET_TIMEOUT + policy.max_wait + 1.0

    proxy.set_faults(RandomFaults(seed=0, reset_request=1.0))
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"reset by peer|closed|Broken pipe"):
        saver.get_tuple(sup.cfg(thread))
    assert time.monotonic() - started < bound
    assert proxy.stats.resets >= 1

    proxy.set_faults(None)
    proxy.stall(30)  # a partition that outlasts the budget: timeouts, not a hang
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="Timeout"):
        saver.get_tuple(sup.cfg(thread))
    assert time.monotonic() - started < bound


def test_exhausted_budget_message_says_what_was_tried(proxy: FaultProxy) -> None:
    policy = RetryPolicy(attempts=3, budget=1.5, max_wait=0.05)
    saver = ValkeySaver(sync_client(proxy), retry=policy)
    proxy.set_faults(RandomFaults(seed=0, reset_request=1.0))
    with pytest.raises(BackendUnavailable) as info:
        saver.get_tuple(sup.cfg(thread_name("msg")))
    assert "3 attempts" in str(info.value), str(info.value)


def test_from_conn_string_saver_does_not_hang_on_a_mute_unix_socket(tmp_path) -> None:
    """A listener that accepts and never answers: a hung server, or a stalled link."""
    path = tmp_path / "mute.sock"
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(str(path))
    mute.listen(8)
    policy = RetryPolicy(attempts=2, budget=1.0, max_wait=0.1)
    outcome: list[BaseException | None] = []

    def call() -> None:
        with ValkeySaver.from_conn_string(f"unix://{path}", retry=policy) as saver:
            try:
                saver.get_tuple(sup.cfg("stalled"))
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    # valkey-py's TCP default (5 s per attempt) plus the budget would be well inside this.
    worker.join(timeout=policy.budget + 6)
    hung = worker.is_alive()
    mute.close()  # the blocked call now sees a closed connection and returns
    worker.join(timeout=5)
    assert not hung, "get_tuple was still blocked long after the retry budget"
    assert isinstance(outcome[0], BackendUnavailable)


def test_tail_on_an_idle_log_respects_the_socket_timeout(module_server) -> None:
    client = valkey.Valkey.from_url(module_server.url, socket_timeout=0.5)
    log = ValkeyEventLog(client, retry=RetryPolicy(attempts=3, budget=3))
    session = ("t", thread_name("idle"))
    ValkeySaver(client).put_writes(sup.cfg(session[1], cid="c1"), [("a", 1)], "t")
    entries = list(log.tail(session, "0", block_ms=1000, idle_timeout=2.0))
    assert len(entries) == 1


# -- non-idempotent calls ---------------------------------------------------------------


def test_non_idempotent_append_is_not_retried(proxy: FaultProxy, direct: valkey.Valkey) -> None:
    """``copy_thread`` appends without an idempotency key: a lost request is reported,
    never silently re-sent (which could duplicate the copy)."""
    saver = ValkeySaver(sync_client(proxy), retry=PATIENT)
    source = thread_name("copy-src")
    first_checkpoint(saver, source)
    target = source + "-copy"
    proxy.drop_next_request(b"EVALSHA")
    with CommandCounter(direct) as counted, pytest.raises(BackendUnavailable):
        saver.copy_thread(source, target)
    assert counted.scripts == 0  # dropped once and never re-sent
    assert xlen(direct, target) == 0

    proxy.cut_next_reply(b"EVALSHA")
    with pytest.raises(BackendUnavailable):
        saver.copy_thread(source, target)
    assert xlen(direct, target) == xlen(direct, source)  # applied exactly once


# -- random faults under load -------------------------------------------------------------


def until_acknowledged(gave_up: list[int], call: Callable[..., Any], *args: Any) -> Any:
    """Call until it returns, as an application would after BackendUnavailable."""
    for _ in range(100):
        try:
            return call(*args)
        except BackendUnavailable:
            gave_up[0] += 1
    raise AssertionError("100 budgets exhausted in a row")


def sync_load(saver: ValkeySaver, writers: int, steps: int, tag: str) -> tuple[list, int]:
    acks: list[dict[str, Any]] = []
    gave_up = [0]
    lock = threading.Lock()

    def run(w: int) -> None:
        name = f"{tag}w{w}"
        chain = Chain(f"net-load-{tag}-{w}")
        for seq in range(steps):
            parent, cp, meta, versions = chain.step(saver, name, seq)
            out = until_acknowledged(gave_up, saver.put, parent, cp, meta, versions)
            cid = out["configurable"]["checkpoint_id"]
            with lock:
                acks.append(put_record(chain, name, seq, cid, cp["channel_values"]))
            chain.parent, chain.parent_id = out, cid
            writes = [["out", f"{name}-{seq}"], ["count", seq]]
            task = f"{name}:{seq}"
            until_acknowledged(gave_up, saver.put_writes, out, [tuple(x) for x in writes], task)
            with lock:
                acks.append(writes_record(chain, name, seq, cid, task, writes))

    threads = [threading.Thread(target=run, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return acks, gave_up[0]


async def async_load(saver: AsyncValkeySaver, writers: int, steps: int, tag: str):
    acks: list[dict[str, Any]] = []
    gave_up = 0

    async def until(call: Callable[..., Any], *args: Any) -> Any:
        nonlocal gave_up
        for _ in range(100):
            try:
                return await call(*args)
            except BackendUnavailable:
                gave_up += 1
        raise AssertionError("100 budgets exhausted in a row")

    async def run(w: int) -> None:
        name = f"{tag}w{w}"
        chain = Chain(f"net-load-{tag}-{w}")
        for seq in range(steps):
            parent, cp, meta, versions = chain.step(saver, name, seq)
            out = await until(saver.aput, parent, cp, meta, versions)
            cid = out["configurable"]["checkpoint_id"]
            acks.append(put_record(chain, name, seq, cid, cp["channel_values"]))
            chain.parent, chain.parent_id = out, cid
            writes = [["out", f"{name}-{seq}"], ["count", seq]]
            task = f"{name}:{seq}"
            await until(saver.aput_writes, out, [tuple(x) for x in writes], task)
            acks.append(writes_record(chain, name, seq, cid, task, writes))

    await asyncio.gather(*(run(w) for w in range(writers)))
    return acks, gave_up


def random_fault_load(
    proxy: FaultProxy,
    direct: valkey.Valkey,
    *,
    mode: str,
    seed: int,
    writers: int,
    steps: int,
    faults: RandomFaults,
) -> dict[str, Any]:
    tag = f"{mode[0]}{uuid.uuid4().hex[:6]}"
    proxy.set_faults(faults)
    started = time.monotonic()
    if mode == "sync":
        acks, gave_up = sync_load(
            ValkeySaver(sync_client(proxy), retry=PATIENT), writers, steps, tag
        )
    else:

        async def main() -> tuple[list, int]:
            client = valkey.asyncio.Valkey.from_url(
                proxy.url(), socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT
            )
            try:
                return await async_load(
                    AsyncValkeySaver(client, retry=PATIENT), writers, steps, tag
                )
            finally:
                await client.aclose()

        acks, gave_up = asyncio.run(main())
    elapsed = time.monotonic() - started
    proxy.set_faults(None)
    time.sleep(0.3)  # a request delayed by a stall may still land: let it, then count
    verdict = sup.verify_acknowledged(direct, acks)
    assert not verdict.problems, (seed, verdict.problems[:10])
    # Every operation was acknowledged once in the end, however often it was retried:
    # the log holds exactly one event per distinct operation.
    assert verdict.extra_events == 0, (seed, verdict)
    assert verdict.acknowledged == writers * steps * 2
    sessions = sorted({("t", a["thread"]) for a in acks})
    replayed = sup.assert_views_equal_logs(direct, sessions)
    stats = proxy.stats
    assert stats.faults > 0, stats
    return {
        "mode": mode,
        "seed": seed,
        "acknowledged": verdict.acknowledged,
        "events": verdict.events,
        "replayed": replayed,
        "budgets_exhausted": gave_up,
        "seconds": round(elapsed, 1),
        **stats.as_dict(),
    }


LIGHT = {"reset_request": 0.02, "reset_reply": 0.02, "cut_reply": 0.03, "stall": 0.01}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_random_faults_lose_and_duplicate_nothing(
    proxy: FaultProxy, direct: valkey.Valkey, seed: int, mode: str
) -> None:
    figures = random_fault_load(
        proxy,
        direct,
        mode=mode,
        seed=seed,
        writers=3,
        steps=60,
        faults=RandomFaults(seed=seed, stall_seconds=0.4, **LIGHT),
    )
    print("fault figures:", figures)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_random_faults_long_load(
    proxy: FaultProxy, direct: valkey.Valkey, seed: int, mode: str
) -> None:
    heavy = {k: v * 2 for k, v in LIGHT.items()}
    figures = random_fault_load(
        proxy,
        direct,
        mode=mode,
        seed=seed,
        writers=8,
        steps=400,
        faults=RandomFaults(seed=seed, stall_seconds=0.4, **heavy),
    )
    print("fault figures:", figures)
