"""Sentinel URLs for every class, against real Sentinels (``valkey-server --sentinel``),
and a failover under load: the writers carry on, and with ``wait_replicas=1`` nothing
acknowledged is lost."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamstate import (
    AgentCoreValkeySaver,
    AsyncValkeySaver,
    AsyncValkeyStore,
    ValkeyCache,
    ValkeySaver,
    ValkeyStore,
)
from streamstate.connection import (
    async_client_from_url,
    client_from_url,
    parse_sentinel_url,
    redact_url,
)
from streamstate.errors import BackendError, ConfigError
from streamstate.eventlog.valkey import RetryPolicy
from streamstate.testing.replication import SentinelSet
from tests.replication._load import Load
from tests.replication._ops import aput, cfg, put, thread_id

PASSWORD, SENTINEL_PASSWORD = "data-secret", "sentinel-secret"


def test_sentinel_url_form() -> None:
    t = parse_sentinel_url(
        "valkey+sentinel://app:p%40ss@h1:26380,h2,[::1]:26381/mymaster/3"
        "?sentinel_password=sp&sentinel_username=su&socket_timeout=2"
    )
    assert t.sentinels == [("h1", 26380), ("h2", 26379), ("::1", 26381)]
    assert t.service == "mymaster"
    kw = t.connection_kwargs
    assert (kw["username"], kw["password"], kw["db"], kw["socket_timeout"]) == (
        "app",
        "p@ss",
        3,
        2.0,
    )
    assert "ssl" not in kw
    assert t.sentinel_kwargs == {"socket_timeout": 2.0, "password": "sp", "username": "su"}
    tls = parse_sentinel_url("valkeys+sentinel://h1/svc?ssl_cert_reqs=none")
    assert tls.connection_kwargs["ssl"] is True and tls.sentinel_kwargs["ssl"] is True
    assert tls.connection_kwargs.get("db") is None
    plain = parse_sentinel_url("valkeys+sentinel://h1/svc?sentinel_ssl=false")
    assert plain.connection_kwargs["ssl"] is True and "ssl" not in plain.sentinel_kwargs
    for bad, what in [
        ("valkey+sentinel://h1:26379", "service name"),
        ("valkey+sentinel://h1:26379/a/0/x", "service name"),
        ("valkey+sentinel://h1:port/svc", "port"),
        ("valkey+sentinel:///svc", "no Sentinel host"),
    ]:
        with pytest.raises(ConfigError, match=what):
            parse_sentinel_url(bad)
    with pytest.raises(ConfigError, match="cluster"):
        client_from_url("valkey+sentinel://h1/svc?cluster=true")
    assert redact_url("valkey+sentinel://app:secret@h1,h2/svc") == (
        "valkey+sentinel://app:***@h1,h2/svc"
    )


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """Sentinels, a primary and two replicas, all with passwords; no failover here."""
    s = SentinelSet(
        tmp_path_factory.mktemp("sentinel"),
        password=PASSWORD,
        sentinel_password=SENTINEL_PASSWORD,
    ).start()
    yield s
    s.stop()


def test_every_class_takes_a_sentinel_url(sentinels: SentinelSet) -> None:
    url = f"{sentinels.url}&wait_replicas=1&wait_timeout_ms=2000"
    with ValkeySaver.from_conn_string(url) as saver:
        assert saver.log.executor.wait is not None
        out = put(saver, thread_id())
        assert saver.get_tuple(out) is not None
    with AgentCoreValkeySaver.from_conn_string(url) as saver:
        config = {"configurable": {"thread_id": thread_id(), "actor_id": "a", "checkpoint_ns": ""}}
        out = put(saver, "", config)
        assert saver.get_tuple(out) is not None
    with ValkeyStore.from_conn_string(url) as store:
        store.put(("s",), "k", {"v": 1})
        assert store.get(("s",), "k").value == {"v": 1}
    with ValkeyCache.from_conn_string(url) as cache:
        cache.set({"k": ("v", None)})
        assert cache.get(["k"]) == {"k": "v"}

        async def in_loop() -> None:
            assert await cache.aget(["k"]) == {"k": "v"}
            await cache.aclose()  # this loop's connections, before the loop ends

        asyncio.run(in_loop())

    async def async_classes() -> None:
        async with AsyncValkeySaver.from_conn_string(url) as asaver:
            out = await aput(asaver, thread_id())
            assert await asaver.aget_tuple(out) is not None
        async with AsyncValkeyStore.from_conn_string(url) as astore:
            await astore.aput(("s",), "k2", {"v": 2})
            assert (await astore.aget(("s",), "k2")).value == {"v": 2}

    asyncio.run(async_classes())
    # the client talks to the primary the Sentinels name
    client = client_from_url(sentinels.url)
    assert client.info("server")["tcp_port"] == sentinels.primary_port()
    client.close()


def test_wrong_passwords_are_refused(sentinels: SentinelSet) -> None:
    wrong_data = sentinels.url.replace(PASSWORD, "nope")
    with pytest.raises(BackendError, match="authentication"):
        ValkeySaver(client_from_url(wrong_data), retry=RetryPolicy(attempts=1)).get_tuple(cfg("x"))
    no_sentinel_pass = sentinels.url.split("?")[0]
    with pytest.raises(BackendError):
        ValkeySaver(client_from_url(no_sentinel_pass), retry=RetryPolicy(attempts=1)).get_tuple(
            cfg("x")
        )


def test_more_threads_than_connections_wait_for_one(sentinels: SentinelSet) -> None:
    saver = ValkeySaver(client_from_url(sentinels.url, pool_size=2))
    thread = thread_id()
    failures: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(20):
                put(saver, f"{thread}-{i}", None, j)
        except BaseException as exc:  # reported below
            failures.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert not failures, failures[:2]


def _failover_under_load(tmp: Path) -> tuple[int, int]:
    """A primary and its one replica: every acknowledged write is on that replica, which
    the Sentinels promote; the killed primary comes back as its replica, and the writers
    (waiting for one replica) carry on."""
    patient = RetryPolicy(attempts=60, budget=30, initial_wait=0.05, max_wait=0.5)
    with SentinelSet(tmp, replicas=1, down_after_ms=500, failover_timeout_ms=3000) as s:
        url = f"{s.url}?wait_replicas=1&wait_timeout_ms=500"

        def make_saver() -> ValkeySaver:
            return ValkeySaver(client_from_url(url, socket_timeout=2), retry=patient)

        async def make_async() -> tuple[Any, Any]:
            client = async_client_from_url(url, socket_timeout=2)
            saver = AsyncValkeySaver(client, retry=patient)
            return saver, client.aclose

        assert make_saver().log.executor.wait is not None  # from the URL
        with Load(make_saver, make_async, threads=3, tasks=1) as load:
            load.wait_for(20)
            old = s.primary_port()
            killed = s.kill_primary()
            s.wait_failover(old)
            s.restart(killed)
            s.wait_replicated(1)
            load.wait_for(20)  # every writer's next acknowledgements, on the new primary
        survivor = ValkeySaver(client_from_url(s.url))
        checkpoints, writes = load.verify(survivor)
        assert checkpoints >= 40 and writes > 0
        print(f"acknowledged: {checkpoints} checkpoints, {writes} writes; {load.summary()}")
        return checkpoints, writes


def test_writers_carry_on_through_a_sentinel_failover_losing_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    _failover_under_load(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("run", range(5))
def test_sentinel_failover_under_load_repeated(tmp_path: Path, run: int) -> None:
    _failover_under_load(tmp_path)
