"""The store's item views: apply, member encoding, and rebuild == live."""

from __future__ import annotations

import time

import msgspec
import valkey

from streamstate.adapters.store import ValkeyStore
from streamstate.eventlog.events import FieldVector, ItemDeleted, ItemPut, Write, WritesPut
from streamstate.eventlog.keys import Keyspace
from streamstate.projections import items as views

KEYS = Keyspace().session(("store", "t"))


def _put(ns: tuple[str, ...] = ("a", "b"), key: str = "k", ttl: float | None = None) -> ItemPut:
    value = msgspec.msgpack.encode({"v": 1})
    return ItemPut(ns, key, value, 10.0, 12.5, ttl, [FieldVector("v", [1.0, 0.0])])


def test_put_writes_record_created_index_and_expiry() -> None:
    ops = views.ItemsProjection().apply(KEYS, _put(ttl=2))
    m = views.member(("a", "b"), "k")
    assert [(op.code, op.key.rsplit(":", 1)[1]) for op in ops] == [
        ("HSETNX", "created"),
        ("HSET", "data"),
        ("ZADD", "items"),
        ("ZADD", "exp"),
    ]
    assert ops[0].args == (m, "10.0")
    assert ops[2].args == (0, m)
    assert ops[3].args == (round((12.5 + 120) * 1000), m)
    record = ops[1].args[1]
    assert isinstance(record, bytes)
    assert views.RECORD.unpack_from(record) == (1, 12.5, 2.0, 1)
    assert msgspec.msgpack.decode(record[views.RECORD.size :]) == {"v": 1}


def test_put_without_ttl_clears_expiry_and_delete_clears_everything() -> None:
    projection = views.ItemsProjection()
    m = views.member(("a", "b"), "k")
    assert projection.apply(KEYS, _put())[-1] == views.ops.zrem(KEYS.view("exp"), m)
    ops = projection.apply(KEYS, ItemDeleted(("a", "b"), "k", 1.0))
    assert {(op.code, op.key) for op in ops} == {
        ("ZREM", KEYS.view("items")),
        ("HDEL", KEYS.view("data")),
        ("HDEL", KEYS.view("created")),
        ("ZREM", KEYS.view("exp")),
    }


def test_other_events_are_ignored() -> None:
    event = WritesPut("", "cp", "task", "", [Write(0, "c", ("json", b"1"))])
    assert views.ItemsProjection().apply(KEYS, event) == []


def test_members_are_injective_and_ordered_like_langgraph() -> None:
    pairs = [
        (("a",), "k"),
        (("a",), ""),
        (("a",), "k\x00x"),
        (("a", "b"), "k"),
        (("a/b",), "k"),
        (("a:b", "*"), "{k}"),
        (("ab",), "k"),
        (("ü", "z"), "é"),
        (("a", "b", "c"), "\x00"),
    ]
    members = [views.member(ns, key) for ns, key in pairs]
    assert len(set(members)) == len(pairs)
    assert [views.split_member(m) for m in members] == pairs
    assert sorted(members) == [views.member(ns, key) for ns, key in sorted(pairs)]


def test_rebuild_gives_the_live_views(client: valkey.Valkey, sid: str) -> None:
    store = ValkeyStore(client, index={"collection_name": sid})
    for i in range(40):
        ns = ("r", str(i % 4))
        store.put(ns, f"k{i % 13}", {"i": i, "tags": ["x"] * (i % 3)}, ttl=60 if i % 5 else None)
        if i % 7 == 0:
            store.delete(ns, f"k{(i + 3) % 13}")
        time.sleep(0.001)
    log = store._log
    live_keys = log.keyspace.session(store.session)
    shadow = Keyspace("ss-verify")
    assert log.rebuild(store.session, target=shadow) == log.length(store.session)
    names = views.VIEW_NAMES
    live = log.snapshot([live_keys.view(n) for n in names])
    rebuilt = log.snapshot([shadow.session(store.session).view(n) for n in names])
    assert list(live.values()) == list(rebuilt.values())
    assert live[live_keys.view("items")][1]  # not trivially empty
    # a damaged view is repaired in place
    client.hdel(live_keys.view("data"), views.member(("r", "1"), "k1"))
    log.rebuild(store.session)
    assert log.snapshot([live_keys.view(n) for n in names]) == live
