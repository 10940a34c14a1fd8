"""Hostile input: ids, names, metadata and values an attacker (or a bug) might send.

What must hold: everything round-trips exactly as LangGraph's own ``InMemorySaver``
returns it, or is refused with a clear error (``ConfigError`` or another ``ValueError``)
before anything is written; nothing reaches a neighbouring thread's or namespace's data;
foreign stream entries are skipped by ``tail`` and are errors for strict reads and
replays; stored payloads never instantiate classes outside LangGraph's msgpack
allow-list when ``LANGGRAPH_STRICT_MSGPACK`` is on.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ormsgpack
import pytest
import valkey
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import (
    EXT_CONSTRUCTOR_POS_ARGS,
    EXT_CONSTRUCTOR_SINGLE_ARG,
    JsonPlusSerializer,
)

from streamstate.adapters.valkey_saver import ValkeySaver
from streamstate.errors import (
    CodecError,
    ConfigError,
    PayloadTooLarge,
    StreamstateError,
)
from streamstate.eventlog.keys import escape
from streamstate.server import EmbeddedServer
from tests.reliability import _support as sup

HOSTILE = [
    "*", "?", "[", "]", "{", "}", ":", ",", "%", "%3A", "%25", "%%", "\n", "\r\n", "\x00",
    " ", "a{b}", "x:*", "ss:{t,a}:log", "{t,a}", "é", "😀", "\u202e", "|", "/", "..",
    "__error__", "__interrupt__", "null", "~", "-",
]  # fmt: skip
SPECIAL_CHANNELS = ["__error__", "__interrupt__", "__resume__", "__scheduled__"]

ident = st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1, max_size=24))
maybe_empty = st.one_of(st.just(""), ident)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.binary(max_size=40),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
versions = st.one_of(
    st.integers(0, 2**53),
    st.text(max_size=12),
    st.floats(allow_nan=False, allow_infinity=False),
)


@pytest.fixture(scope="module")
def client(module_server: EmbeddedServer) -> Iterator[valkey.Valkey]:
    c = valkey.Valkey.from_url(module_server.url)
    yield c
    c.close()


def neighbour(name: str) -> str:
    """An id as close to ``name`` as escaping allows: its own escaped spelling, else
    the name with a separator appended."""
    escaped = escape(name)
    return escaped if escaped != name else name + ","


def sortable(writes: list[tuple[str, str, Any]]) -> list[tuple[str, str, str]]:
    return sorted((t, c, repr(v)) for t, c, v in writes)


def same_tuple(a: Any, b: Any) -> None:
    """A streamstate tuple equals InMemorySaver's (write order aside)."""
    assert (a is None) == (b is None)
    if a is None:
        return
    assert a.config == b.config
    assert a.checkpoint == b.checkpoint
    assert a.metadata == b.metadata
    assert a.parent_config == b.parent_config
    assert sortable(a.pending_writes) == sortable(b.pending_writes)


def checkpoints(cid: str, channel: str, version: Any, value: Any) -> list[dict[str, Any]]:
    """Ours and two neighbours' (built once: both savers must get identical input)."""
    out = []
    for v in (value, "neighbour", "neighbour"):
        cp = empty_checkpoint()
        cp["id"] = cid
        cp["channel_values"] = {channel: v}
        cp["channel_versions"] = {channel: version}
        out.append(cp)
    return out


def write_all(
    saver: Any,
    cps: list[dict[str, Any]],
    thread: str,
    ns: str,
    channel: str,
    version: Any,
    meta: dict[str, Any],
    task: str,
    write: Any,
) -> dict[str, Any]:
    """Our checkpoint plus neighbours: another namespace of the thread, another thread."""
    out = saver.put(sup.cfg(thread, ns), copy.deepcopy(cps[0]), meta, {channel: version})
    saver.put_writes(out, [(channel, write), ("__error__", "e"), ("plain", 1)], task)
    for cp, (t, n) in zip(cps[1:], ((thread, neighbour(ns)), (neighbour(thread), ns))):
        done = saver.put(sup.cfg(t, n), copy.deepcopy(cp), {"neighbour": True}, {channel: version})
        saver.put_writes(done, [(channel, "neighbour-write")], task)
    return out


def round_trip_and_isolation(
    client: valkey.Valkey,
    thread: str,
    ns: str,
    cid: str,
    channel: str,
    version: Any,
    value: Any,
    meta: dict[str, Any],
    task: str,
    write: Any,
) -> None:
    saver = ValkeySaver(client)
    threads = [thread, neighbour(thread)]
    for t in threads:
        saver.delete_thread(t)  # examples repeat ids: start each from nothing
    reference = InMemorySaver()
    cps = checkpoints(cid, channel, version, value)
    args = (cps, thread, ns, channel, version, meta, task, write)
    try:
        out = write_all(saver, *args)
    except (ConfigError, ValueError) as exc:
        event(f"refused: {type(exc).__name__}")
        assert client.xlen(saver.log.keyspace.session(("t", thread)).log) == 0
        return
    event("round-tripped")
    expected = write_all(reference, *args)
    assert out == expected
    for config in (
        out,
        sup.cfg(thread, ns),
        sup.cfg(thread, neighbour(ns)),
        sup.cfg(neighbour(thread), ns),
        sup.cfg(neighbour(thread), ns, cid),
    ):
        same_tuple(saver.get_tuple(config), reference.get_tuple(config))
    ours = saver.get_tuple(out)
    assert ours.checkpoint["channel_values"] == {channel: value}
    assert ("neighbour-write" not in repr(ours.pending_writes)) or write == "neighbour-write"
    for config, flt in (
        (sup.cfg(thread), None),
        (sup.cfg(thread, ns), None),
        (sup.cfg(neighbour(thread)), None),
        (sup.cfg(thread), meta),
        (sup.cfg(thread), {"neighbour": True}),
    ):
        got = sorted(
            t.config["configurable"]["checkpoint_ns"] for t in saver.list(config, filter=flt)
        )
        want = sorted(
            t.config["configurable"]["checkpoint_ns"] for t in reference.list(config, filter=flt)
        )
        assert got == want, (config, flt)
    for t in threads:
        saver.delete_thread(t)
        assert saver.get_tuple(sup.cfg(t, ns)) is None


hostile_case = given(
    thread=ident,
    ns=maybe_empty,
    cid=ident,
    channel=st.one_of(maybe_empty, st.sampled_from(SPECIAL_CHANNELS)),
    version=versions,
    value=values,
    meta=st.dictionaries(ident, json_values, max_size=3),
    task=maybe_empty,
    write=values,
)
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings(FUZZ, max_examples=150)
@hostile_case
def test_hostile_ids_names_and_values_round_trip_and_stay_isolated(client, **case) -> None:
    round_trip_and_isolation(client, **case)


@pytest.mark.slow
@settings(FUZZ, max_examples=3000)
@hostile_case
def test_hostile_inputs_long_fuzz(client, **case) -> None:
    round_trip_and_isolation(client, **case)


@pytest.mark.parametrize(
    "configurable",
    [
        {"thread_id": ""},
        {"thread_id": 7},
        {"thread_id": None},
        {"thread_id": "ok", "checkpoint_ns": 3},
        {"thread_id": "ok", "checkpoint_ns": b"bytes"},
        {"thread_id": "\ud800"},
        {"thread_id": "ok", "checkpoint_ns": "\udfff"},
    ],
)
def test_bad_ids_are_refused_before_anything_is_written(client, configurable) -> None:
    saver = ValkeySaver(client)
    before = client.dbsize()
    with pytest.raises(ValueError):  # ConfigError, or UnicodeEncodeError for surrogates
        saver.put({"configurable": configurable}, empty_checkpoint(), {}, {})
    assert client.dbsize() == before


@pytest.mark.parametrize("task", [7, None, "\ud800"])
def test_bad_task_ids_are_refused_before_anything_is_written(client, task) -> None:
    saver = ValkeySaver(client)
    out = saver.put(sup.cfg(f"task-{uuid.uuid4().hex[:6]}"), empty_checkpoint(), {}, {})
    before = client.xlen(saver.log.keyspace.session(("t", out["configurable"]["thread_id"])).log)
    with pytest.raises((ConfigError, ValueError)):
        saver.put_writes(out, [("a", 1)], task)
    assert (
        client.xlen(saver.log.keyspace.session(("t", out["configurable"]["thread_id"])).log)
        == before
    )


def test_comma_in_actor_and_thread_ids_cannot_merge_sessions(client) -> None:
    """AgentCore sessions are (actor, thread); the separator is escaped in both."""
    from streamstate.adapters.valkey_saver import AgentCoreValkeySaver

    saver = AgentCoreValkeySaver(client)
    tag = uuid.uuid4().hex[:6]
    a = {"configurable": {"actor_id": f"{tag},x", "thread_id": "y", "checkpoint_ns": ""}}
    b = {"configurable": {"actor_id": tag, "thread_id": "x,y", "checkpoint_ns": ""}}
    cp_a, cp_b = empty_checkpoint(), empty_checkpoint()
    cp_a["channel_values"], cp_b["channel_values"] = {"v": "a"}, {"v": "b"}
    saver.put(a, cp_a, {}, {"v": "1"})
    cp_b["channel_versions"] = cp_a["channel_versions"] = {"v": "1"}
    saver.put(b, cp_b, {}, {"v": "1"})
    assert saver.get_tuple(a).checkpoint["id"] == cp_a["id"]
    assert saver.get_tuple(b).checkpoint["id"] == cp_b["id"]
    assert [t.checkpoint["id"] for t in saver.list(a)] == [cp_a["id"]]


# -- known gaps -------------------------------------------------------------------------


def test_checkpoint_order_agrees_with_latest_for_any_ids(client) -> None:
    thread = f"order-{uuid.uuid4().hex[:6]}"
    saver, reference = ValkeySaver(client), InMemorySaver()
    for s in (saver, reference):
        for cid in ["xa", "x{", "é", "z"]:
            cp = empty_checkpoint()
            cp["id"] = cid
            s.put(sup.cfg(thread), cp, {}, {})
    listed = [t.checkpoint["id"] for t in saver.list(sup.cfg(thread))]
    assert listed[0] == saver.get_tuple(sup.cfg(thread)).checkpoint["id"]
    assert listed == [t.checkpoint["id"] for t in reference.list(sup.cfg(thread))]


def test_empty_checkpoint_id_round_trips_or_is_refused(client) -> None:
    saver = ValkeySaver(client)
    thread = f"empty-{uuid.uuid4().hex[:6]}"
    cp = empty_checkpoint()
    cp["id"] = ""
    try:
        out = saver.put(sup.cfg(thread), cp, {}, {})
    except ConfigError:
        return
    saver.put(out, empty_checkpoint(), {}, {})
    assert saver.get_tuple(out).checkpoint["id"] == ""


def test_metadata_with_non_string_keys_is_refused_or_round_trips(client) -> None:
    saver = ValkeySaver(client)
    thread = f"meta-{uuid.uuid4().hex[:6]}"
    try:
        saver.put(sup.cfg(thread), empty_checkpoint(), {1: "x"}, {})  # type: ignore[dict-item]
    except ConfigError:
        return
    assert saver.get_tuple(sup.cfg(thread)).metadata[1] == "x"  # type: ignore[index]


def test_oversize_payload_is_refused_before_it_is_sent(proxy) -> None:
    saver = ValkeySaver(  # type: ignore[call-arg]
        valkey.Valkey.from_url(proxy.url()), max_payload_bytes=64 * 1024
    )
    thread = f"big-{uuid.uuid4().hex[:6]}"
    saver.put(sup.cfg(thread), empty_checkpoint(), {}, {})
    sent = proxy.stats.bytes_up
    cp = empty_checkpoint()
    cp["channel_values"] = {"big": os.urandom(256 * 1024)}  # incompressible
    cp["channel_versions"] = {"big": "1"}
    with pytest.raises(PayloadTooLarge, match="max_payload_bytes"):
        saver.put(sup.cfg(thread), cp, {}, {"big": "1"})
    with pytest.raises(PayloadTooLarge):
        saver.put_writes(sup.cfg(thread, cid=cp["id"]), [("big", os.urandom(256 * 1024))], "t")
    assert proxy.stats.bytes_up - sent < 64 * 1024


def test_payload_over_the_server_limit_fails_once_and_clearly(tmp_path: Path) -> None:
    """With max_payload_bytes at or below the server's proto-max-bulk-len (the default
    64 MiB is far below Valkey's default 512 MB), an oversize put is refused before it is
    sent, instead of the server dropping the connection and the client retrying."""
    with EmbeddedServer(tmp_path / "v", config={"proto-max-bulk-len": "1mb"}) as server:
        client = valkey.Valkey.from_url(server.url, socket_timeout=5)
        saver = ValkeySaver(client, max_payload_bytes=1024 * 1024)
        thread = f"limit-{uuid.uuid4().hex[:6]}"
        cp = empty_checkpoint()
        cp["channel_values"] = {"big": os.urandom(16 * 1024 * 1024)}  # incompressible
        cp["channel_versions"] = {"big": "1"}
        connections = int(client.info("stats")["total_connections_received"])
        with pytest.raises(StreamstateError) as info:
            saver.put(sup.cfg(thread), cp, {}, {"big": "1"})
        tried = int(client.info("stats")["total_connections_received"]) - connections
        assert isinstance(info.value, PayloadTooLarge), info.value
        assert tried == 0, f"the payload was sent on {tried} connections"


# -- foreign entries ----------------------------------------------------------------------


def test_foreign_entries_are_skipped_by_tail_and_errors_for_strict_reads(
    client, caplog: pytest.LogCaptureFixture
) -> None:
    saver = ValkeySaver(client)
    thread = f"foreign-{uuid.uuid4().hex[:6]}"
    out = saver.put(sup.cfg(thread), empty_checkpoint(), {}, {})
    session = ("t", thread)
    log_key = saver.log.keyspace.session(session).log
    foreign = [
        client.xadd(log_key, {"who": "another program", "data": "{}"}),
        client.xadd(log_key, {"e": b"\xa1\x00not msgpack"}),
        client.xadd(log_key, {"e": b"\x00garbage"}),
    ]
    saver.put_writes(out, [("a", 1)], "task")

    with caplog.at_level(logging.WARNING, logger="streamstate.eventlog"):
        tailed = list(saver.log.tail(session, "0", block_ms=50, idle_timeout=0.2))
    assert [type(e.event).__name__ for e in tailed] == ["CheckpointPut", "WritesPut"]
    skipped = [r for r in caplog.records if "skipping undecodable entry" in r.getMessage()]
    assert len(skipped) == 3
    assert all(f.decode() in " ".join(r.getMessage() for r in skipped) for f in foreign)

    with pytest.raises(CodecError, match=foreign[0].decode()):
        saver.log.read(session)
    with pytest.raises(CodecError):
        saver.log.rebuild(session, target=sup.VERIFY)
    with pytest.raises(CodecError):
        saver.copy_thread(thread, thread + "-copy")
    # The views never read the log: the thread still answers.
    assert saver.get_tuple(sup.cfg(thread)).pending_writes == [("task", "a", 1)]


# -- strict msgpack -----------------------------------------------------------------------


class Crafted:
    """A value whose serde output is forged bytes (what a writer with access could store)."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class CraftingSerde(JsonPlusSerializer):
    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        if isinstance(obj, Crafted):
            return "msgpack", obj.payload
        return super().dumps_typed(obj)


def ext(code: int, module: str, name: str, arg: Any) -> bytes:
    """LangGraph's typed-msgpack encoding of ``module.name(arg)``."""
    return ormsgpack.packb(ormsgpack.Ext(code, ormsgpack.packb((module, name, arg))))


def read_in_subprocess(url: str, thread: str, cid: str, *, strict: bool) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("LANGGRAPH_STRICT_MSGPACK", None)
    if strict:
        env["LANGGRAPH_STRICT_MSGPACK"] = "true"
    done = subprocess.run(
        [sys.executable, "-m", "tests.reliability._strict_reader", url, thread, cid],
        cwd=sup.REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_strict_msgpack_never_instantiates_classes_off_the_allow_list(
    module_server: EmbeddedServer, tmp_path: Path
) -> None:
    client = valkey.Valkey.from_url(module_server.url)
    saver = ValkeySaver(client, serde=CraftingSerde())
    thread = f"strict-{uuid.uuid4().hex[:6]}"
    markers = {n: tmp_path / n for n in ("control", "canary", "popen", "system", "write")}
    canary = "tests.reliability._canary"

    def checkpoint(values: dict[str, Any]) -> str:
        cp = empty_checkpoint()
        cp["channel_values"] = values
        cp["channel_versions"] = {k: "1" for k in values}
        return saver.put(sup.cfg(thread), cp, {}, dict(cp["channel_versions"]))["configurable"][
            "checkpoint_id"
        ]

    # Control: without strict mode the same kind of payload *is* instantiated, so the
    # strict run below is not passing vacuously.
    control = checkpoint(
        {"c": Crafted(ext(EXT_CONSTRUCTOR_SINGLE_ARG, canary, "Canary", str(markers["control"])))}
    )
    got = read_in_subprocess(module_server.url, thread, control, strict=False)
    assert markers["control"].exists() and got["values"]["c"][0] == "Canary"

    evil = checkpoint(
        {
            "canary": Crafted(
                ext(EXT_CONSTRUCTOR_SINGLE_ARG, canary, "Canary", str(markers["canary"]))
            ),
            "popen": Crafted(
                ext(
                    EXT_CONSTRUCTOR_POS_ARGS,
                    "subprocess",
                    "Popen",
                    [["touch", str(markers["popen"])]],
                )
            ),
            "system": Crafted(
                ext(EXT_CONSTRUCTOR_SINGLE_ARG, "os", "system", f"touch {markers['system']}")
            ),
        }
    )
    saver.put_writes(
        sup.cfg(thread, cid=evil),
        [
            (
                "w",
                Crafted(
                    ext(
                        EXT_CONSTRUCTOR_POS_ARGS,
                        "subprocess",
                        "Popen",
                        [["touch", str(markers["write"])]],
                    )
                ),
            )
        ],
        "task",
    )
    got = read_in_subprocess(module_server.url, thread, evil, strict=True)
    assert not any(markers[n].exists() for n in ("canary", "popen", "system", "write")), got
    assert not got["canary_imported"]
    assert {k: v[0] for k, v in got["values"].items()} == {
        "canary": "str",
        "popen": "list",
        "system": "str",
    }
    assert [w[1] for w in got["writes"]] == ["list"]
    client.close()
