"""The store's item views: apply, member encoding, and rebuild == live (also after
compaction)."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest
import valkey

from streamstate.adapters.store import ValkeyStore
from streamstate.eventlog.codec import Codec
from streamstate.eventlog.events import Event, FieldVector, ItemDeleted, ItemPut, Write, WritesPut
from streamstate.eventlog.keys import Keyspace
from streamstate.projections import items as views
from tests.projections._rebuild_case import RebuildCase

KEYS = Keyspace().session(("store", "t"))
SHADOW = Keyspace("ss-verify")


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
    # values start with the entry id (here the append's placeholder for its event 1)
    assert ops[0].args == (m, "\x00@1|10.0")
    assert ops[2].args == (0, m)
    assert ops[3].args == (round((12.5 + 120) * 1000), m)
    stored = ops[1].args[1]
    assert isinstance(stored, bytes) and stored.startswith(b"\x00@1|")
    record = stored[len(b"\x00@1|") :]
    assert views.RECORD.unpack_from(record) == (1, 12.5, 2.0, 1)
    assert msgspec.msgpack.decode(record[views.RECORD.size :]) == {"v": 1}
    at = views.ItemsProjection().apply_at(KEYS, _put(), "17-3")
    assert at[0].args == (m, "17-3|10.0")
    assert views.split_ref(at[1].args[1]) == ("17-3", views.record(_put()))


def test_values_written_before_entry_ids_are_read_as_they_are() -> None:
    legacy = views.record(_put())
    assert views.split_ref(legacy) == (None, legacy)
    assert views.split_ref(b"12.5") == (None, b"12.5")
    assert views.created_at(b"12.5") == 12.5
    assert views.created_at(b"3-0|12.5") == 12.5
    assert views.created_at(b"") is None


def test_a_birth_entry_is_an_item_put_of_nothing_at_the_creation_time() -> None:
    codec = Codec()
    event = _put(ns=("a", "ü" * 300), key="k" * 400)  # long enough to be compressed alone
    entry = views.birth_entry(views.birth_prefix(event), 1732200000.123456)
    born = codec.decode(entry, Event)
    assert born == ItemPut(
        event.namespace, event.key, b"\x80", 1732200000.123456, 1732200000.123456, None, []
    )
    assert msgspec.msgpack.decode(born.value) == {}


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


def test_rebuild_gives_the_live_views_after_compaction(client: valkey.Valkey, sid: str) -> None:
    store = ValkeyStore(client, index={"collection_name": sid}, ttl={"default_ttl": 60})
    log = store._log
    live_keys = log.keyspace.session(store.session)
    shadow = Keyspace("ss-verify")
    names = views.VIEW_NAMES

    def assert_rebuild_is_live() -> dict:
        assert log.rebuild(store.session, target=shadow) == log.length(store.session)
        live = log.snapshot([live_keys.view(n) for n in names])
        rebuilt = log.snapshot([shadow.session(store.session).view(n) for n in names])
        assert list(live.values()) == list(rebuilt.values())
        return live

    for i in range(400):  # enough overwrites for repacks to start on their own
        ns = ("r", str(i % 4))
        ttl = None if i % 5 == 0 else (0.001 if i % 11 == 0 else 60)
        store.put(ns, f"k{i % 13}", {"i": i, "tags": ["x"] * (i % 3)}, ttl=ttl)
        if i % 7 == 0:
            store.delete(ns, f"k{(i + 3) % 13}")
        if i % 50 == 25:
            store.get(ns, f"k{i % 13}")  # refreshes live beside the views
            assert_rebuild_is_live()
    assert log.length(store.session) < 150  # 400 puts, ~40 items: superseded puts went
    time.sleep(0.1)  # the items written with ttl=0.001 have expired
    store.compact(full=True)
    live = assert_rebuild_is_live()
    assert all(views.split_ref(raw)[0] for raw in live[live_keys.view("data")][1].values())
    # a damaged view is still repaired in place from the compacted log
    client.hdel(live_keys.view("data"), views.member(("r", "1"), "k1"))
    client.delete(live_keys.view("created"))
    log.rebuild(store.session)
    assert log.snapshot([live_keys.view(n) for n in names]) == live


# -- the shared case: rebuild == live ---------------------------------------------------------


class ItemViews:
    """A store collection's item views, written through ``ValkeyStore``."""

    def __init__(self, client: valkey.Valkey, collection: str) -> None:
        self.client = client
        self.store = ValkeyStore(client, index={"collection_name": collection})
        self.log = self.store._log
        self.keys = self.log.keyspace.session(self.store.session)

    def write(self, round: int) -> None:
        for i in range(30):
            ns = ("r", str(i % 3))
            ttl = None if i % 4 == 0 else 60
            self.store.put(ns, f"k{(i + round) % 11}", {"i": i, "round": round}, ttl=ttl)
            if i % 6 == 5:
                self.store.delete(ns, f"k{(i + 2) % 11}")

    def snapshot(self, keyspace: Keyspace) -> list[Any]:
        keys = keyspace.session(self.store.session)
        return list(self.log.snapshot([keys.view(n) for n in views.VIEW_NAMES]).values())

    def live(self) -> list[Any]:
        return self.snapshot(self.log.keyspace)

    def rebuilt(self) -> list[Any]:
        replayed = self.log.rebuild(self.store.session, target=SHADOW)
        assert replayed == self.log.length(self.store.session)
        return self.snapshot(SHADOW)

    def reclaim(self) -> None:
        self.store.compact(full=True)

    def damage(self) -> None:
        field = next(iter(self.client.hkeys(self.keys.view("data"))))
        self.client.hdel(self.keys.view("data"), field)

    def repair(self) -> None:
        self.log.rebuild(self.store.session)


class TestItemViews(RebuildCase):
    @pytest.fixture
    def view(self, client: valkey.Valkey, sid: str) -> ItemViews:
        return ItemViews(client, sid)


del RebuildCase
