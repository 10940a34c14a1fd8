"""What the Valkey backend adds to the contract: atomic projections, one round trip,
retries, hostile ids on a real server, foreign entries, TTL and rebuild."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence

import pytest
import valkey
import valkey.asyncio

from streamstate.errors import BackendUnavailable, CodecError, ScriptError
from streamstate.eventlog import ops
from streamstate.eventlog.events import Event, WritesPut
from streamstate.eventlog.keys import Keyspace, SessionKeys
from streamstate.eventlog.valkey import AsyncValkeyEventLog, RetryPolicy, ValkeyEventLog
from streamstate.testing.eventlog import make_event
from tests._short_ttl import SHORT_TTLS, Window

HOSTILE = ["*", "?", "[", "{", "}", ":", "\n", "a{b}", "x:*", "ü" * 1024]


class TaskIndex:
    """A test projection: task id -> first write's bytes, and a count per channel."""

    name = "tasks"

    def apply(self, keys: SessionKeys, event: Event) -> Sequence[ops.Op]:
        match event:
            case WritesPut(task_id=task, writes=writes):
                return [
                    ops.hsetnx(keys.view("tasks"), task, writes[0].value[1]),
                    ops.zadd(keys.view("order"), 0, task),
                ]
            case _:
                return []

    def view_keys(self, keys: SessionKeys) -> Sequence[str]:
        return [keys.view("tasks"), keys.view("order")]


class Exploding(TaskIndex):
    """Writes to a key that holds a string: the server refuses the op."""

    def apply(self, keys: SessionKeys, event: Event) -> Sequence[ops.Op]:
        return [*super().apply(keys, event), ops.hset(keys.view("trap"), "f", "v")]


@pytest.fixture
def log(client: valkey.Valkey) -> ValkeyEventLog:
    return ValkeyEventLog(client, projections=[TaskIndex()])


def test_append_updates_views_atomically_in_one_round_trip(
    private_server, count_commands, sid
) -> None:
    client = valkey.Valkey.from_url(private_server.url)
    log = ValkeyEventLog(client, projections=[TaskIndex()])
    log.append(sid, [make_event(0)])  # load the script once
    with count_commands(client) as counted:
        log.append(sid, [make_event(1), make_event(2)], idempotency_key="k")
    assert counted.round_trips == 1, counted.delta
    assert counted.delta["evalsha"] == 1
    keys = log.keyspace.session(sid)
    assert client.hgetall(keys.view("tasks")) == {
        b"task-0": b"\x00" * 8,
        b"task-1": b"\x01" * 8,
        b"task-2": b"\x02" * 8,
    }
    assert client.xlen(keys.log) == 3


def test_failing_hook_leaves_log_and_views_unchanged(client: valkey.Valkey, sid: str) -> None:
    good = ValkeyEventLog(client, projections=[TaskIndex()])
    good.append(sid, [make_event(1)])
    keys = good.keyspace.session(sid)
    client.set(keys.view("trap"), "a string, not a hash")
    before = (
        client.xlen(keys.log),
        client.hgetall(keys.view("tasks")),
        client.zrange(keys.view("order"), 0, -1),
    )

    bad = ValkeyEventLog(client, projections=[Exploding()])
    with pytest.raises(ScriptError, match="WRONGTYPE"):
        bad.append(sid, [make_event(2)])
    after = (
        client.xlen(keys.log),
        client.hgetall(keys.view("tasks")),
        client.zrange(keys.view("order"), 0, -1),
    )
    assert after == before


@pytest.mark.parametrize("clobbered", ["tasks", "sessions"])
def test_a_key_read_before_writing_is_type_checked_by_that_read(
    client: valkey.Valkey, sid: str, clobbered: str
) -> None:
    # the insert-if-absent hash and the registry set are read (HMGET, SMISMEMBER), not
    # TYPE-checked: a wrong type there must still stop the append before any write
    log = ValkeyEventLog(client, projections=[TaskIndex()], keyspace=Keyspace(f"ss-{sid}"))
    keys = log.keyspace.session(sid)
    key = keys.view("tasks") if clobbered == "tasks" else log.keyspace.sessions
    client.set(key, "a string")
    with pytest.raises(ScriptError, match=f"WRONGTYPE streamstate: {key} holds a string"):
        log.append(sid, [make_event(1)])
    assert client.xlen(keys.log) == 0
    assert client.get(key) == b"a string"
    assert client.exists(keys.view("order")) == 0


def test_a_steady_append_writes_only_what_changes(private_server, count_commands, sid) -> None:
    client = valkey.Valkey.from_url(private_server.url)
    log = ValkeyEventLog(client, projections=[TaskIndex()])
    log.append(sid, [make_event(0)])
    with count_commands(client) as counted:
        log.append(sid, [make_event(1)])
    # the session is registered already, so the registry is read, not written again
    assert counted.delta.get("sadd", 0) == 0, counted.delta
    assert counted.delta["smismember"] == 1
    assert counted.delta.get("type", 0) == 1  # only "order": "tasks" is proven by HMGET
    assert client.sismember(log.keyspace.sessions, log.keyspace.session(sid).tag)


def test_unknown_op_is_refused_before_anything_is_written(client: valkey.Valkey, sid: str) -> None:
    log = ValkeyEventLog(client)
    keys = log.keyspace.session(sid)
    from streamstate.eventlog.valkey import _core

    call = _core.plan_append(log.keyspace, (), log.codec, sid, [make_event(1)])
    call.args.extend(["NOPE", 1])
    with pytest.raises(ScriptError, match="unknown op"):
        log.run(call)
    assert client.exists(keys.log) == 0


def test_skip_if_noop_makes_retried_inserts_idempotent(log: ValkeyEventLog, sid: str) -> None:
    assert log.append(sid, [make_event(1)], skip_if_noop=True).appended
    assert not log.append(sid, [make_event(1)], skip_if_noop=True).appended
    assert log.length(sid) == 1


def test_guard_on_a_natural_key(log: ValkeyEventLog, client: valkey.Valkey, sid: str) -> None:
    keys = log.keyspace.session(sid)
    guard = (keys.view("tasks"), "task-1")
    assert log.append(sid, [make_event(1)], guard=guard).appended
    assert not log.append(sid, [make_event(1)], guard=guard).appended
    assert log.length(sid) == 1


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_ids_stay_in_their_session(
    log: ValkeyEventLog, client: valkey.Valkey, hostile: str, sid: str
) -> None:
    mine = (sid, hostile)
    log.append(mine, [make_event(7)])
    neighbour = (sid, hostile + "x")
    assert log.read(neighbour) == []
    assert [e.event for e in log.read(mine)] == [make_event(7)]
    keys = log.keyspace.session(mine)
    assert client.exists(keys.log, keys.view("tasks")) == 2
    # a glob built from the escaped tag matches exactly this session's keys
    found = {k.decode() for k in client.scan_iter(match=f"ss:{{{keys.tag}}}:*", count=1000)}
    assert found == {keys.log, keys.view("tasks"), keys.view("order")}
    assert tuple(mine) in set(log.sessions())
    assert log.delete(mine)
    assert tuple(mine) not in set(log.sessions())


def test_foreign_entry_is_an_error_when_strict_and_skipped_by_tail(
    log: ValkeyEventLog, client: valkey.Valkey, sid: str
) -> None:
    log.append(sid, [make_event(1)])
    keys = log.keyspace.session(sid)
    foreign = client.xadd(keys.log, {"json": '{"hello": 1}'}).decode()
    log.append(sid, [make_event(2)])
    with pytest.raises(CodecError) as info:
        log.read(sid)
    assert foreign in str(info.value) and sid in str(info.value)
    tailed = list(log.tail(sid, "0-0", block_ms=20, idle_timeout=0.1))
    assert [e.event for e in tailed] == [make_event(1), make_event(2)]


def test_ttl_covers_every_key_with_sub_second_precision(
    log: ValkeyEventLog, client: valkey.Valkey, sid: str
) -> None:
    keys = log.keyspace.session(sid)
    window = Window(2.5)
    log.append(sid, [make_event(1)], ttl=2.5)
    ttls = [client.pttl(key) for key in (keys.log, keys.view("tasks"), keys.view("order"))]
    waited_ms = window.elapsed() * 1000
    assert all(2500 - waited_ms - 1 <= ms <= 2500 for ms in ttls), ttls
    for ttl in SHORT_TTLS:
        window = Window(ttl)
        log.append(sid, [make_event(2)], ttl=ttl)
        left = client.pttl(keys.log)
        if window.in_time():
            break
    assert 0 < left <= ttl * 1000


def test_rebuild_gives_the_live_views(log: ValkeyEventLog, client: valkey.Valkey, sid: str) -> None:
    for i in range(30):
        log.append(sid, [make_event(i % 10)])
    live_keys = log.keyspace.session(sid)
    shadow = Keyspace("ss-verify")
    assert log.rebuild(sid, target=shadow) == 30
    shadow_keys = shadow.session(sid)
    names = ["tasks", "order"]
    live = log.snapshot([live_keys.view(n) for n in names])
    rebuilt = log.snapshot([shadow_keys.view(n) for n in names])
    assert list(live.values()) == list(rebuilt.values())
    # and a damaged view is repaired in place
    client.hdel(live_keys.view("tasks"), "task-3")
    log.rebuild(sid)
    assert log.snapshot([live_keys.view(n) for n in names]) == live


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_exhausted_retry_budget_raises_backend_unavailable() -> None:
    client = valkey.Valkey(port=_closed_port(), socket_connect_timeout=0.2)
    log = ValkeyEventLog(
        client, retry=RetryPolicy(attempts=3, budget=2, initial_wait=0.01, max_wait=0.05)
    )
    with pytest.raises(BackendUnavailable) as info:
        log.read("s")
    assert isinstance(info.value, ConnectionError)
    assert "Connection" in str(info.value) or "refused" in str(info.value)


def test_retries_ride_out_a_server_that_comes_up_late(tmp_path) -> None:
    """Connection refused for a while, then the server starts: the idempotent call succeeds."""
    import threading

    from valkey.credentials import CredentialProvider

    from streamstate.server import EmbeddedServer

    server = EmbeddedServer(tmp_path, port=_closed_port())

    class ServerPassword(CredentialProvider):
        """The server's password is generated when it starts: read it on each connect."""

        def get_credentials(self) -> tuple[str]:
            return (server.password or "",)

    client = valkey.Valkey(
        port=server.requested_port,
        socket_connect_timeout=0.2,
        credential_provider=ServerPassword(),
    )
    log = ValkeyEventLog(
        client, retry=RetryPolicy(attempts=50, budget=20, initial_wait=0.05, max_wait=0.3)
    )
    starter = threading.Timer(0.5, server.start)
    starter.start()
    try:
        assert log.append("late", [make_event(1)], idempotency_key="once").appended
        assert log.length("late") == 1
    finally:
        starter.join()
        server.stop()


async def test_async_log_projects_and_rebuilds(valkey_url: str, sid: str) -> None:
    client = valkey.asyncio.Valkey.from_url(valkey_url)
    log = AsyncValkeyEventLog(client, projections=[TaskIndex()])
    await asyncio.gather(*(log.append(sid, [make_event(i)]) for i in range(10)))
    keys = log.keyspace.session(sid)
    assert await client.hlen(keys.view("tasks")) == 10
    assert await log.rebuild(sid, target=Keyspace("ss-verify")) == 10
    await client.aclose()


def test_dead_pending_entries_never_pin_a_consumer(
    log: ValkeyEventLog, client: valkey.Valkey, sid: str
) -> None:
    log.append(sid, [make_event(1), make_event(2)])
    keys = log.keyspace.session(sid)
    log.ensure_group(sid, "g")
    first = log.group_read(sid, "g", "c", count=10)
    assert len(first) == 2
    client.xdel(keys.log, first[0].id)  # deleted while pending
    client.xadd(keys.log, {"foreign": "x"})  # undecodable, delivered then dropped
    log.append(sid, [make_event(3)])
    again = log.group_read(sid, "g", "c", count=10)
    assert [e.event for e in again] == [make_event(2)]
    log.ack(sid, "g", [e.id for e in again])
    new = log.group_read(sid, "g", "c", count=10)
    assert [e.event for e in new] == [make_event(3)]
    assert client.xpending(keys.log, "g")["pending"] == 1  # only the live, unacked one
