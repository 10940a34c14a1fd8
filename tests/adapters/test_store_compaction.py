"""ValkeyStore: reclaiming what puts, deletes and expiries supersede; TTL refresh on read.

What must hold, against a real valkey-server:

* bytes are reclaimed: 300 overwrites of an item and its delete leave under 2 kB for
  the store; expired items leave nothing; the log holds, per live item, its latest put
  and at most one birth entry;
* the log stays the source of truth: rebuilding the views from it gives exactly the
  live views, before and after compaction, however puts, deletes, expiries and repacks
  interleave (a hypothesis test drives them);
* nothing acknowledged is lost: puts made while a repack copies the log, from other
  threads or between its steps, are all in the log it swaps in, and entry ids never
  change (vector indexes, snapshots and tails stay valid);
* a get or put is still one round trip, whatever share of the sweep or the repack it
  does;
* ``refresh_on_read`` and ``refresh_ttl`` follow LangGraph's contract: a read extends
  the TTL of the items it returns, in the same round trip, without changing
  ``updated_at``; the log keeps the put's expiry and the refresh survives a rebuild.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
import uuid
from typing import Any

import msgspec
import pytest
import valkey
import valkey.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.store.base import PutOp

from streamstate.adapters.store import AsyncValkeyStore, ValkeyStore
from streamstate.errors import ConfigError
from streamstate.eventlog._drive import complete
from streamstate.eventlog.events import ItemDeleted, ItemPut
from streamstate.eventlog.keys import Keyspace
from streamstate.eventlog.valkey._core import plan_read, read_entries
from streamstate.projections import items as views
from tests._short_ttl import SHORT_TTLS, Window

DIMS = 8
SHADOW = Keyspace("ss-verify")


def embed(texts: list[str]) -> list[list[float]]:
    out = []
    for text in texts:
        rng = random.Random(hashlib.sha256(text.encode()).digest())
        out.append([rng.uniform(-1, 1) for _ in range(DIMS)])
    return out


# -- helpers ---------------------------------------------------------------------------


def store_keys(client: valkey.Valkey, store: ValkeyStore | AsyncValkeyStore) -> list[bytes]:
    """Every key of the store's session, whatever wrote it (a SCAN of its hash tag)."""
    base = store._core.settings.keys.base
    pattern = base.replace("{", "\\{").replace("}", "\\}") + ":*"
    return sorted(client.scan_iter(match=pattern, count=1000))


def store_bytes(client: valkey.Valkey, store: ValkeyStore | AsyncValkeyStore) -> int:
    return sum(client.memory_usage(k, samples=0) or 0 for k in store_keys(client, store))


def assert_rebuild_gives_live(store: ValkeyStore) -> None:
    """Rebuild the views from the log into a shadow keyspace: they equal the live ones."""
    log = store._log
    live_keys = log.keyspace.session(store.session)
    shadow_keys = SHADOW.session(store.session)
    replayed = log.rebuild(store.session, target=SHADOW)
    assert replayed == log.length(store.session)
    names = views.VIEW_NAMES
    live = log.snapshot([live_keys.view(n) for n in names])
    rebuilt = log.snapshot([shadow_keys.view(n) for n in names])
    log.client.delete(*[shadow_keys.view(n) for n in names])
    for name, a, b in zip(names, live.values(), rebuilt.values()):
        assert a == b, f"view {name}: live {a} != rebuilt {b}"


def log_entries(store: ValkeyStore) -> list[tuple[str, Any]]:
    return [(e.id, e.event) for e in store._log.read(store.session)]


def assert_log_is_compact(store: ValkeyStore) -> None:
    """The log holds what the views name (each live item's latest put and birth entry)
    and tombstones, nothing else."""
    client = store._log.client
    keys = store._core.settings.keys
    named: set[str] = set()
    for raw in client.hvals(keys.view("data")) + client.hvals(keys.view("created")):
        entry_id, _ = views.split_ref(raw)
        assert entry_id is not None
        named.add(entry_id)
    tombstones = {t.decode() for t in client.smembers(keys.view("tombstones"))}
    present = {entry_id for entry_id, _ in log_entries(store)}
    assert present == named | tombstones
    for entry_id, event in log_entries(store):
        assert isinstance(event, ItemDeleted) == (entry_id in tombstones)


def assert_entries_added_is_length(store: ValkeyStore) -> None:
    """Nothing a rebuild needs was removed: the audit tool may rebuild the session."""
    log = store._core.settings.keys.log
    if store._log.client.exists(log):
        info = store._log.client.xinfo_stream(log)
        assert info["entries-added"] == info["length"]


@pytest.fixture
def store(client: valkey.Valkey, sid: str) -> ValkeyStore:
    return ValkeyStore(client, index={"collection_name": sid})


# -- bytes are reclaimed -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["plain", "ttl", "vectors"])
def test_overwrites_then_delete_leave_under_2_kb(
    client: valkey.Valkey, sid: str, kind: str
) -> None:
    index: dict[str, Any] = {"collection_name": sid}
    ttl = None
    if kind == "ttl":
        ttl = {"default_ttl": 60.0, "refresh_on_read": True}
    if kind == "vectors":
        index.update(dims=DIMS, embed=embed, fields=["text"], index_type="flat")
    store = ValkeyStore(client, index=index, ttl=ttl)  # type: ignore[arg-type]
    ns, key = ("users", "u1"), "profile"
    for i in range(300):
        store.put(ns, key, {"name": "ann", "n": i, "text": f"visit {i} " + "x" * 40})
        if i % 50 == 0:
            assert store.get(ns, key).value["n"] == i  # type: ignore[union-attr]
            store.search(("users",), query="visit" if kind == "vectors" else None)
    held = store_bytes(client, store)
    assert held < 16_000, held  # one or two stream nodes, not 300 entries
    store.delete(ns, key)
    assert store.get(ns, key) is None
    left = store_bytes(client, store)
    assert left < 2048, {k: client.memory_usage(k, samples=0) for k in store_keys(client, store)}
    assert store._log.length(store.session) == 0
    assert_rebuild_gives_live(store)


def test_the_log_keeps_the_latest_put_and_a_birth_entry(store: ValkeyStore) -> None:
    store.put(("a",), "k", {"v": 1})
    first = store.get(("a",), "k")
    time.sleep(0.002)
    for v in range(2, 6):
        store.put(("a",), "k", {"v": v})
    entries = log_entries(store)
    assert len(entries) == 2
    (_, birth), (_, latest) = entries
    assert isinstance(birth, ItemPut) and isinstance(latest, ItemPut)
    assert birth.value == views.EMPTY_VALUE and birth.vectors == []
    assert first is not None
    assert birth.created_at == pytest.approx(first.created_at.timestamp(), abs=1e-6)
    assert latest.value == b"\x81\xa1v\x05"
    item = store.get(("a",), "k")
    assert item is not None and item.created_at == first.created_at
    assert item.updated_at > first.updated_at
    assert_log_is_compact(store)
    assert_entries_added_is_length(store)
    assert_rebuild_gives_live(store)


def test_deletes_leave_only_tombstones_and_repacks_drop_them(store: ValkeyStore) -> None:
    for i in range(10):
        store.put(("d",), f"k{i}", {"i": i})
    for i in range(0, 10, 2):
        store.delete(("d",), f"k{i}")
    store.delete(("d",), "never-there")  # deletes nothing, writes nothing
    kinds = [type(e).__name__ for _, e in log_entries(store)]
    assert kinds.count("ItemPut") == 5 and kinds.count("ItemDeleted") == 5
    assert_log_is_compact(store)
    report = store.compact()
    assert report.entries == 5
    assert [type(e) for _, e in log_entries(store)] == [ItemPut] * 5
    assert_log_is_compact(store)
    assert_rebuild_gives_live(store)
    assert [i.key for i in store.search(("d",))] == [f"k{i}" for i in range(1, 10, 2)]


def test_a_store_left_empty_holds_no_entry(store: ValkeyStore) -> None:
    for i in range(5):
        store.put(("e",), f"k{i}", {"i": i})
    for i in range(5):
        store.delete(("e",), f"k{i}")
    assert store._log.length(store.session) == 0  # tombstones alone are not kept


def test_repacks_start_once_deleted_entries_outnumber_live_ones(
    client: valkey.Valkey, store: ValkeyStore
) -> None:
    store.batch([PutOp(("r",), f"k{i}", {"i": i}) for i in range(300)])
    meta = store._core.settings.keys.view("compaction")
    for n in range(views.REPACK_MIN - 1):
        store.put(("r",), "hot", {"n": n})
    assert client.hget(meta, "dead") is not None  # counted, below the threshold
    for n in range(320):
        store.put(("r",), "hot", {"n": n})
    # one repack ran: it started when deletes outnumbered the ~302 live entries, and
    # the writes after it copied everything and swapped the logs
    assert client.hget(meta, "cursor") is None
    assert int(client.hget(meta, "dead") or 0) < 320
    assert store._log.length(store.session) == 302
    assert_log_is_compact(store)
    assert_entries_added_is_length(store)
    assert_rebuild_gives_live(store)


def test_expired_items_free_their_entries(client: valkey.Valkey, sid: str) -> None:
    for ttl in SHORT_TTLS:  # no write may sweep before all are written
        store = ValkeyStore(
            client, index={"collection_name": f"{sid}-{ttl}"}, ttl={"default_ttl": ttl / 60}
        )
        window = Window(ttl)
        for i in range(40):
            store.put(("x", str(i % 3)), f"k{i}", {"i": i})
            store.put(("x", str(i % 3)), f"k{i}", {"i": -i})  # a birth entry too
        store.put(("keep",), "k", {"v": 1}, ttl=None)
        if window.in_time():
            break
    assert store._log.length(store.session) == 81
    time.sleep(ttl + 0.15)
    assert store.search(("x",)) == []
    # every write sweeps a few expired items; sweep() takes the rest
    store.put(("keep",), "k2", {"v": 2}, ttl=None)
    assert store._log.length(store.session) < 82
    assert store.sweep_ttl() > 0
    assert store.sweep_ttl() == 0
    assert [e.key for _, e in log_entries(store)] == ["k", "k2"]
    keys = store._core.settings.keys
    assert client.zcard(keys.view("exp")) == 0 and client.hlen(keys.view("data")) == 2
    assert_log_is_compact(store)
    assert_entries_added_is_length(store)
    assert_rebuild_gives_live(store)


def test_an_expired_item_put_again_is_a_new_item(client: valkey.Valkey, sid: str) -> None:
    for ttl in SHORT_TTLS:
        store = ValkeyStore(client, index={"collection_name": f"{sid}-{ttl}"})
        window = Window(ttl)
        store.put(("n",), "k", {"v": 1}, ttl=ttl / 60)
        first = store.get(("n",), "k")
        if window.in_time():
            break
    time.sleep(ttl + 0.1)
    store.put(("n",), "k", {"v": 2})
    again = store.get(("n",), "k")
    assert first is not None and again is not None
    assert again.created_at > first.created_at  # not an update of the expired item
    assert store._log.length(store.session) == 1
    assert_rebuild_gives_live(store)


# -- rebuild == live, whatever interleaves ----------------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"),
            st.sampled_from([("a",), ("a", "b"), ("c",)]),
            st.sampled_from(["k1", "k2", "k3", "ü"]),
            st.integers(0, 5),
            st.sampled_from([None, None, 60.0, 0.0005]),
        ),
        st.tuples(
            st.just("delete"),
            st.sampled_from([("a",), ("a", "b"), ("c",)]),
            st.sampled_from(["k1", "k2", "k3", "ü"]),
        ),
        st.tuples(st.just("compact")),
        st.tuples(st.just("repack-step"), st.integers(1, 3)),
        st.tuples(st.just("sweep")),
        st.tuples(st.just("read"), st.sampled_from([("a",), ("c",), ()])),
    ),
    max_size=40,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS)
def test_rebuild_equals_live_whatever_interleaves(client: valkey.Valkey, ops: list) -> None:
    store = ValkeyStore(
        client,
        index={"collection_name": f"hyp-{uuid.uuid4().hex}"},  # hypothesis seeds random
        ttl={"refresh_on_read": True},
    )
    model: dict[tuple[tuple[str, ...], str], int] = {}
    for op in ops:
        if op[0] == "put":
            _, ns, key, v, ttl = op
            store.put(ns, key, {"v": v}, ttl=ttl)
            model[(ns, key)] = v
        elif op[0] == "delete":
            store.delete(op[1], op[2])
            model.pop((op[1], op[2]), None)
        elif op[0] == "compact":
            store.compact(full=True)
        elif op[0] == "repack-step":  # a repack in progress, a few entries at a time
            complete(store._core._maintain(0, op[1], True), store._log.run)
        elif op[0] == "sweep":
            store.sweep_ttl()
        else:
            store.search(op[1])
    time.sleep(0.05)  # items with the short TTL (30 ms) have expired, refreshed or not

    def live() -> dict[tuple[tuple[str, ...], str], int]:
        found = store.search((), limit=100, refresh_ttl=False)
        return {(tuple(i.namespace), i.key): i.value["v"] for i in found}

    got = live()
    assert set(got) <= set(model)
    assert all(model[k] == v for k, v in got.items())
    assert_rebuild_gives_live(store)
    store.compact()
    assert_log_is_compact(store)
    assert_entries_added_is_length(store)
    assert_rebuild_gives_live(store)
    assert live() == got


# -- nothing acknowledged is lost ------------------------------------------------------------


def test_writes_between_repack_steps_are_kept(client: valkey.Valkey, store: ValkeyStore) -> None:
    store.batch([PutOp(("s",), f"k{i:03}", {"i": i}) for i in range(60)])
    for i in range(0, 60, 3):
        store.put(("s",), f"k{i:03}", {"i": -i})  # births and deletes to mirror
    before = log_entries(store)
    last_before = before[-1][0]
    step = store._core._maintain
    keys = store._core.settings.keys
    _, _, busy, _, _ = complete(step(0, 10, True), store._log.run)
    assert busy and client.exists(keys.view("repack"))
    # while the copy is under way: overwrite copied and uncopied items, delete both
    # kinds, add new ones
    store.put(("s",), "k001", {"i": 1001})
    store.put(("s",), "k059", {"i": 1059})
    store.delete(("s",), "k002")
    store.delete(("s",), "k058")
    store.put(("s",), "new", {"i": 7})
    while busy:
        _, _, busy, _, _ = complete(step(0, 7, False), store._log.run)
        store.put(("s",), f"late{random.random()}", {"i": 8})
    assert not client.exists(keys.view("repack"))
    want = {f"k{i:03}": (-i if i % 3 == 0 else i) for i in range(60)}
    want.update(k001=1001, k059=1059, new=7)
    del want["k002"], want["k058"]
    got = {i.key: i.value["i"] for i in store.search(("s",), limit=1000) if "late" not in i.key}
    assert got == want
    after = log_entries(store)
    survivors = {entry_id for entry_id, _ in before} & {entry_id for entry_id, _ in after}
    assert survivors  # ids are kept
    assert all(entry_id > last_before for entry_id, _ in after if entry_id not in survivors)
    store.put(("s",), "next", {"i": 9})
    assert log_entries(store)[-1][0] > after[-1][0]  # ids keep increasing after a swap
    assert_log_is_compact(store)
    assert_entries_added_is_length(store)
    assert_rebuild_gives_live(store)


def test_concurrent_writers_and_compaction_lose_nothing(valkey_url: str, sid: str) -> None:
    clients = [valkey.Valkey.from_url(valkey_url) for _ in range(4)]
    stores = [ValkeyStore(c, index={"collection_name": sid}) for c in clients]
    acked: dict[str, dict[str, int | None]] = {}
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(n: int) -> None:
        rng = random.Random(n)
        mine: dict[str, int | None] = {}
        try:
            for i in range(250):
                key = f"w{n}-k{rng.randrange(25)}"
                if rng.random() < 0.15:
                    stores[n].delete(("c",), key)
                    mine[key] = None
                else:
                    stores[n].put(("c",), key, {"i": i})
                    mine[key] = i
        except BaseException as exc:
            errors.append(exc)
        acked[str(n)] = mine

    def compactor() -> None:
        try:
            while not stop.is_set():
                stores[3].compact(full=True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    background = threading.Thread(target=compactor)
    background.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    background.join()
    assert not errors, errors
    check = stores[0]
    for mine in acked.values():
        for key, value in mine.items():
            item = check.get(("c",), key)
            assert (item.value["i"] if item else None) == value, key
    check.compact()
    assert_log_is_compact(check)
    assert_entries_added_is_length(check)
    assert_rebuild_gives_live(check)
    for c in clients:
        c.close()


# -- vector indexes across compaction -----------------------------------------------------------


def test_vector_indexes_survive_compaction_and_forget_what_they_missed(
    valkey_url: str, sid: str
) -> None:
    cfg: Any = {"dims": DIMS, "embed": embed, "fields": ["text"], "collection_name": sid}
    one = ValkeyStore(valkey.Valkey.from_url(valkey_url), index={**cfg, "index_type": "flat"})
    two = ValkeyStore(valkey.Valkey.from_url(valkey_url), index={**cfg, "index_type": "flat"})
    one.batch([PutOp(("v",), f"k{i}", {"text": f"doc {i}"}) for i in range(30)])
    assert len(two.search(("v",), query="doc 3", limit=30)) == 30
    index = two._core.vectors
    assert index is not None and len(index) == 30
    # one deletes and overwrites; a repack drops the tombstones before two catches up
    for i in range(10):
        one.delete(("v",), f"k{i}")
    one.put(("v",), "k10", {"text": "changed"})
    one.compact()
    assert [type(e) for _, e in log_entries(one)].count(ItemDeleted) == 0
    hits = two.search(("v",), query="doc 3", limit=30)
    assert sorted(h.key for h in hits) == sorted(f"k{i}" for i in range(10, 30))
    assert len(index) == 20  # the ten it never saw deleted were forgotten on the way
    assert two.search(("v",), query="changed", limit=1)[0].key == "k10"
    # a new process restoring one's snapshot replays only what came after it
    one.setup()
    assert one.save_vectors(force=True)
    one.put(("v",), "late", {"text": "late"})
    three = ValkeyStore(valkey.Valkey.from_url(valkey_url), index={**cfg, "index_type": "flat"})
    three.setup()
    assert three._core.vectors is not None and three._core.vectors.unsaved == 1
    assert three.search(("v",), query="late", limit=1)[0].key == "late"


# -- round trips -----------------------------------------------------------------------------


def round_trips(counted: Any) -> int:
    """Requests sent: ``INFO commandstats`` names a subcommand run inside a script
    (``XINFO STREAM``) ``xinfo|stream``, which the shared counter takes for a request."""
    inside = sum(v for k, v in counted.delta.items() if k.startswith("xinfo|"))
    return counted.round_trips - inside


def test_get_and_put_stay_one_round_trip(private_server: Any, count_commands: Any) -> None:
    client = valkey.Valkey.from_url(private_server.url)
    store = ValkeyStore(
        client, index={"collection_name": "rt"}, ttl={"default_ttl": 0.002, "refresh_on_read": True}
    )
    store.batch([PutOp(("r",), f"old{i}", {"i": i}, ttl=None) for i in range(300)])
    store.batch([PutOp(("r",), f"k{i}", {"i": i}, ttl=0.002) for i in range(100)])
    store.put(("r",), "keep", {"v": 0}, ttl=None)
    store.get(("r",), "keep")
    time.sleep(0.2)  # the 100 have expired
    meta = store._core.settings.keys.view("compaction")
    seen: dict[str, int] = {"xdel": 0, "rename": 0, "cursor": 0}
    for n in range(450):
        with count_commands(client) as counted:
            store.put(("r",), "keep", {"v": n}, ttl=None)  # sweeps, deletes, repacks
        assert round_trips(counted) == 1, counted.delta
        for name in ("xdel", "rename"):
            seen[name] += counted.delta.get(name, 0)
        seen["cursor"] += client.hget(meta, "cursor") is not None
        with count_commands(client) as counted:
            assert store.get(("r",), "keep", refresh_ttl=True) is not None
        assert counted.round_trips == 1, counted.delta
    # the 100 were swept, the overwrites deleted, one repack ran over several puts
    assert seen["rename"] == 1 and seen["cursor"] >= 2 and seen["xdel"] >= 100 + 400
    assert client.zcard(store._core.settings.keys.view("exp")) == 0
    assert store._log.length(store.session) == 302
    client.close()


# -- refresh on read ----------------------------------------------------------------------------


def exp_and_refreshed(client: valkey.Valkey, store: ValkeyStore, key: str) -> tuple[Any, Any]:
    keys = store._core.settings.keys
    m = views.member(("r",), key)
    return client.zscore(keys.view("exp"), m), client.zscore(keys.view("refreshed"), m)


@pytest.mark.parametrize("configured", [None, True, False])
def test_refresh_on_read_default_and_per_call(
    client: valkey.Valkey, sid: str, configured: bool | None
) -> None:
    ttl: Any = {"default_ttl": 1.0}
    if configured is not None:
        ttl["refresh_on_read"] = configured
    store = ValkeyStore(client, index={"collection_name": sid}, ttl=ttl)
    store.put(("r",), "k", {"v": 1})
    store.put(("r",), "untimed", {"v": 2}, ttl=None)
    put_exp, _ = exp_and_refreshed(client, store, "k")
    time.sleep(0.01)
    store.get(("r",), "k")  # LangGraph: refresh_on_read defaults to True
    _, refreshed = exp_and_refreshed(client, store, "k")
    assert (refreshed is not None) == (configured is not False)
    client.zrem(store._core.settings.keys.view("refreshed"), views.member(("r",), "k"))
    store.get(("r",), "k", refresh_ttl=True)
    _, forced = exp_and_refreshed(client, store, "k")
    assert forced is not None and forced > put_exp
    client.zrem(store._core.settings.keys.view("refreshed"), views.member(("r",), "k"))
    store.search(("r",), refresh_ttl=False)
    store.get(("r",), "k", refresh_ttl=False)
    assert exp_and_refreshed(client, store, "k") == (put_exp, None)
    store.search(("r",))
    assert (exp_and_refreshed(client, store, "k")[1] is not None) == (configured is not False)
    assert exp_and_refreshed(client, store, "untimed") == (None, None)  # no TTL: ignored


def test_a_refresh_extends_the_ttl_without_updating_the_item(
    client: valkey.Valkey, sid: str
) -> None:
    for ttl in SHORT_TTLS:
        store = ValkeyStore(
            client,
            index={"collection_name": f"{sid}-{ttl}"},
            ttl={"default_ttl": ttl / 60, "refresh_on_read": True},
        )
        window = Window(ttl)
        store.put(("r",), "k", {"v": 1})
        first = store.get(("r",), "k")
        kept = []
        for _ in range(4):  # 1.6 TTL: past the put's expiry, kept alive by reads
            time.sleep(0.4 * ttl)
            started = time.monotonic()
            kept.append(store.get(("r",), "k"))
            store.put(("r",), "other", {"v": 0}, ttl=None)  # writes sweep: not this one
            if not window.in_time():
                break
            window.restart(started)
        put_exp, refreshed = exp_and_refreshed(client, store, "k")
        now = time.time() * 1000
        if window.in_time():
            break
    assert first is not None and len(kept) == 4
    assert all(item is not None and item.updated_at == first.updated_at for item in kept)
    assert put_exp < now < refreshed
    assert_rebuild_gives_live(store)  # the log keeps the put's expiry ...
    assert exp_and_refreshed(client, store, "k") == (put_exp, refreshed)  # ... and this
    time.sleep(ttl + 0.05)
    assert store.get(("r",), "k") is None
    assert store.sweep_ttl() == 1
    assert {e.key for _, e in log_entries(store)} == {"other"}


def test_search_refreshes_the_items_it_returns(client: valkey.Valkey, sid: str) -> None:
    store = ValkeyStore(
        client,
        index={"dims": DIMS, "embed": embed, "fields": ["text"], "collection_name": sid},
        ttl={"default_ttl": 1.0, "refresh_on_read": True},
    )
    for key in ("a", "b", "c", "d"):
        store.put(("r",), key, {"text": key})
    store.search(("r",), limit=2, offset=1)  # returns b and c
    refreshed = [k for k in "abcd" if exp_and_refreshed(client, store, k)[1] is not None]
    assert refreshed == ["b", "c"]
    hits = store.search(("r",), query="d", limit=1)
    assert [h.key for h in hits] == ["d"]
    assert exp_and_refreshed(client, store, "d")[1] is not None
    assert exp_and_refreshed(client, store, "a")[1] is None


def test_a_put_resets_what_reads_extended(client: valkey.Valkey, sid: str) -> None:
    store = ValkeyStore(client, index={"collection_name": sid}, ttl={"default_ttl": 1.0})
    store.put(("r",), "k", {"v": 1})
    store.get(("r",), "k")
    assert exp_and_refreshed(client, store, "k")[1] is not None
    store.put(("r",), "k", {"v": 2}, ttl=None)
    assert exp_and_refreshed(client, store, "k") == (None, None)


def test_a_read_with_refresh_is_one_round_trip(private_server: Any, count_commands: Any) -> None:
    client = valkey.Valkey.from_url(private_server.url)
    store = ValkeyStore(client, index={"collection_name": "rr"}, ttl={"default_ttl": 5})
    store.put(("r",), "k", {"v": 1})
    store.get(("r",), "k")
    for call in (
        lambda: store.get(("r",), "k"),
        lambda: store.search(("r",)),
        lambda: store.get(("r",), "k", refresh_ttl=False),
    ):
        with count_commands(client) as counted:
            call()
        assert counted.round_trips == 1, counted.delta
    assert exp_and_refreshed(client, store, "k")[1] is not None
    client.close()


async def test_async_store_refreshes_as_configured(valkey_url: str, sid: str) -> None:
    client = valkey.asyncio.Valkey.from_url(valkey_url)
    store = AsyncValkeyStore(
        client,
        index={"collection_name": sid},
        ttl={"default_ttl": 1.0, "refresh_on_read": False},
    )
    await store.aput(("r",), "k", {"v": 1})
    sync = valkey.Valkey.from_url(valkey_url)
    await store.aget(("r",), "k")
    await store.asearch(("r",))
    assert exp_and_refreshed(sync, store, "k")[1] is None  # type: ignore[arg-type]
    await store.aget(("r",), "k", refresh_ttl=True)
    assert exp_and_refreshed(sync, store, "k")[1] is not None  # type: ignore[arg-type]
    await store.aput(("r",), "gone", {"v": 2}, ttl=0.001)
    await asyncio.sleep(0.1)
    assert await store.sweep_ttl() == 1
    report = await store.compact()
    assert report.entries == 1
    sync.close()
    await client.aclose()


@pytest.mark.parametrize(
    "ttl",
    [
        {"refresh_on_read": "yes"},
        {"omit_expired": 1},
        {"default_ttl": True},
        {"sweep_interval_minutes": 0},
    ],
)
def test_bad_ttl_config_names_the_key(client: valkey.Valkey, ttl: Any) -> None:
    with pytest.raises(ConfigError, match=repr(next(iter(ttl)))):
        ValkeyStore(client, ttl=ttl)


def test_the_log_read_back_is_the_live_state(store: ValkeyStore) -> None:
    """A reader of the log (a tail, an audit) finds each live item's latest value."""
    rng = random.Random(3)
    want: dict[str, int] = {}
    for i in range(200):
        key = f"k{rng.randrange(20)}"
        if rng.random() < 0.2:
            store.delete(("l",), key)
            want.pop(key, None)
        else:
            store.put(("l",), key, {"i": i})
            want[key] = i
    store.compact()
    reply = store._log.run(plan_read(store._log.keyspace, store.session))
    latest: dict[str, Any] = {}
    for entry in read_entries(reply, store._log.codec, store.session):
        assert isinstance(entry.event, ItemPut)  # births come before the latest put
        latest[entry.event.key] = msgspec.msgpack.decode(entry.event.value).get("i")
    assert latest == want
    assert {i.key: i.value["i"] for i in store.search(("l",), limit=100)} == want


def test_the_audit_tool_rebuilds_and_verifies_a_compacted_store(
    client: valkey.Valkey, store: ValkeyStore
) -> None:
    from streamstate.audit import ValkeyAudit

    for i in range(200):
        store.put(("a",), f"k{i % 7}", {"i": i})
        if i % 9 == 0:
            store.delete(("a",), f"k{(i + 1) % 7}")
    store.compact()
    audit = ValkeyAudit(client)
    assert audit.verify([store.session]).ok
    (result,) = audit.rebuild([store.session])
    assert result.skipped is None, result  # nothing a rebuild needs was trimmed
    assert audit.verify([store.session]).ok
