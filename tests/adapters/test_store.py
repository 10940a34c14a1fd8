"""ValkeyStore / AsyncValkeyStore: what the differential test does not cover.

Hostile namespaces, validation, timestamps, TTLs, round trips, LangGraph graphs using
the store, constructors, sync/async bridges, several processes, vector snapshots.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
from typing import Any

import pytest
import valkey
import valkey.asyncio
from langgraph.config import get_store
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import GetOp, InvalidNamespaceError, PutOp, SearchOp
from typing_extensions import TypedDict

from streamstate.adapters.store import AsyncValkeyStore, ValkeyIndexConfig, ValkeyStore
from streamstate.errors import ConfigError
from streamstate.eventlog.events import ItemDeleted, ItemPut
from streamstate.projections import items as item_views
from streamstate.projections import vectors as vector_views
from tests._short_ttl import SHORT_TTLS, Window

DIMS = 12


def embed(texts: list[str]) -> list[list[float]]:
    """A deterministic fake embedding: a pseudo-random vector per text."""
    out = []
    for text in texts:
        rng = random.Random(hashlib.sha256(text.encode()).digest())
        out.append([rng.uniform(-1, 1) for _ in range(DIMS)])
    return out


def index(sid: str, **extra: Any) -> ValkeyIndexConfig:
    return {"dims": DIMS, "embed": embed, "fields": ["text"], "collection_name": sid, **extra}


@pytest.fixture
def store(client: valkey.Valkey, sid: str) -> ValkeyStore:
    return ValkeyStore(client, index=index(sid, index_type="flat"))


# -- namespaces and validation -------------------------------------------------------

HOSTILE = [("a/b",), ("a", "b"), ("a:b",), ("a", "*"), ("*",), ("{x}",), ("a b", "c"), ("ü",)]


def test_hostile_namespaces_never_collide(store: ValkeyStore) -> None:
    for i, ns in enumerate(HOSTILE):
        store.put(ns, "k", {"i": i})
    for i, ns in enumerate(HOSTILE):
        assert store.get(ns, "k").value == {"i": i}  # type: ignore[union-attr]
        assert [it.value for it in store.search(ns)] == [
            {"i": j} for j, other in enumerate(HOSTILE) if other[: len(ns)] == ns
        ]
    assert store.list_namespaces() == sorted(HOSTILE)
    assert store.list_namespaces(prefix=("a",)) == [("a", "*"), ("a", "b")]
    # '*' in a condition is a wildcard, as in InMemoryStore
    assert store.list_namespaces(suffix=("*",)) == sorted(HOSTILE)
    assert store.list_namespaces(prefix=("a",), max_depth=1) == [("a",)]


@pytest.mark.parametrize(
    "namespace",
    [("",), ("a", ""), ("a.b",), ("a\x00b",), ("langgraph", "x"), ()],
)
def test_bad_namespaces_are_refused_like_langgraph(store: ValkeyStore, namespace: tuple) -> None:
    with pytest.raises(InvalidNamespaceError):
        store.put(namespace, "k", {"v": 1})
    with pytest.raises(InvalidNamespaceError):
        store.batch([PutOp(namespace, "k", {"v": 1})])


def test_bad_labels_are_refused_on_reads_too(store: ValkeyStore) -> None:
    with pytest.raises(InvalidNamespaceError):
        store.batch([GetOp(("a.b",), "k")])
    with pytest.raises(InvalidNamespaceError):
        store.batch([SearchOp(("a", ""))])
    with pytest.raises(InvalidNamespaceError):
        store.list_namespaces(prefix=("a.b",))


def test_bad_config_names_the_key(client: valkey.Valkey) -> None:
    with pytest.raises(ConfigError, match="'embed'"):
        ValkeyStore(client, index={"dims": 3})  # type: ignore[typeddict-item]
    with pytest.raises(ConfigError, match="'index_type'"):
        ValkeyStore(client, index={"dims": 3, "embed": embed, "index_type": "ivf"})  # type: ignore[typeddict-item]
    with pytest.raises(ConfigError, match="'distance_type'"):
        ValkeyStore(client, index={"dims": 3, "embed": embed, "distance_type": "manhattan"})  # type: ignore[typeddict-item]
    with pytest.raises(ConfigError, match="'default_ttl'"):
        ValkeyStore(client, ttl={"default_ttl": -1})


def test_bad_filters_raise(store: ValkeyStore) -> None:
    store.put(("f",), "k", {"n": 1})
    with pytest.raises(ValueError, match="Unsupported operator"):
        store.search(("f",), filter={"n": {"$in": [1]}})
    with pytest.raises(ValueError):
        store.search(("f",), filter={"n": {"$gt": "many"}})


# -- items ---------------------------------------------------------------------------


def test_update_keeps_created_at(store: ValkeyStore) -> None:
    store.put(("t",), "k", {"v": 1})
    first = store.get(("t",), "k")
    time.sleep(0.01)
    store.put(("t",), "k", {"v": 2})
    second = store.get(("t",), "k")
    assert first and second
    assert second.value == {"v": 2}
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    store.delete(("t",), "k")
    store.put(("t",), "k", {"v": 3})
    third = store.get(("t",), "k")
    assert third and third.created_at > first.created_at


def test_every_put_and_delete_is_an_event(store: ValkeyStore) -> None:
    store.put(("e",), "k", {"text": "hello"})
    (put,) = [e.event for e in store._log.read(store.session)]
    assert isinstance(put, ItemPut)
    assert [fv.path for fv in put.vectors] == ["text"]
    assert put.vectors[0].vector == pytest.approx(embed(["hello"])[0])
    store.put(("e",), "other", {"text": "stays"})
    store.delete(("e",), "k")
    # the delete takes the put it supersedes with it; its tombstone stays for tails
    events = [e.event for e in store._log.read(store.session)]
    assert [type(e) for e in events] == [ItemPut, ItemDeleted]
    assert events[0].key == "other" and events[1].key == "k"


def test_timezone_of_items(client: valkey.Valkey, sid: str) -> None:
    store = ValkeyStore(client, index={"collection_name": sid, "timezone": "Asia/Tokyo"})
    store.put(("z",), "k", {})
    item = store.get(("z",), "k")
    assert item and item.created_at.utcoffset().total_seconds() == 9 * 3600  # type: ignore[union-attr]


def test_put_index_dollar_embeds_the_whole_value(store: ValkeyStore) -> None:
    store.put(("d",), "k", {"b": 1, "a": "x"}, index=["$"])
    store.put(("d",), "n", {"text": "not indexed"}, index=False)
    event = store._log.read(store.session)[0].event
    assert isinstance(event, ItemPut)
    assert [fv.path for fv in event.vectors] == ["$"]
    hits = store.search(("d",), query='{"a": "x", "b": 1}')
    assert [(h.key, h.score) for h in hits] == [("k", pytest.approx(1.0)), ("n", None)]


def test_a_retried_put_is_not_a_second_event(store: ValkeyStore) -> None:
    flow = store._core.batch([PutOp(("r",), "k", {"v": 1})], time.time())
    call = next(flow)
    store._log.run(call)
    assert store._log.run(call)[0] == 0  # the retry is a duplicate
    assert store._log.length(store.session) == 1


# -- TTL -----------------------------------------------------------------------------


def test_expired_items_are_not_returned(client: valkey.Valkey, sid: str) -> None:
    for ttl in SHORT_TTLS:
        store = ValkeyStore(client, index=index(f"{sid}-{ttl}"), ttl={"default_ttl": ttl / 60})
        window = Window(ttl)
        store.put(("ttl", "a"), "short", {"text": "x"})
        store.put(("ttl", "b"), "forever", {"text": "y"}, ttl=None)
        before = store.get(("ttl", "a"), "short")
        if window.in_time():
            break
    assert before is not None
    time.sleep(ttl + 0.15)
    assert store.get(("ttl", "a"), "short") is None
    assert [i.key for i in store.search(("ttl",))] == ["forever"]
    assert [i.key for i in store.search(("ttl",), query="x")] == ["forever"]
    assert store.list_namespaces() == [("ttl", "b")]
    assert store.list_namespaces(max_depth=1) == [("ttl",)]


def _keys_left_by_refreshes(client: valkey.Valkey, name: str, ttl: float) -> list[str] | None:
    """Items living ``ttl`` seconds unless read; one is read, one found by search, one read
    without a refresh and one left alone, every half TTL, three times; then the keys left
    once the others have expired. None when a read came too late to keep an item alive."""
    store = ValkeyStore(
        client,
        index={"collection_name": name},
        ttl={"default_ttl": ttl / 60, "refresh_on_read": True},
    )
    window = Window(ttl)  # from before the puts: the items expire no sooner than this
    for key in ("1-read", "2-searched", "3-no-refresh", "4-untouched"):
        store.put(("r",), key, {})
    for step in range(3):
        time.sleep(ttl / 2)
        started = time.monotonic()
        read = store.get(("r",), "1-read")
        found = store.search(("r",), filter={"x": None}, limit=2)
        unrefreshed = store.get(("r",), "3-no-refresh", refresh_ttl=False) if step == 0 else None
        if not window.in_time():
            return None
        assert read is not None
        assert len(found) == 2  # 1 and 2
        assert step > 0 or unrefreshed is not None
        window.restart(started)
    time.sleep(2 * ttl / 3)  # 3 and 4 are over their TTL, 1 and 2 are not
    keys = [i.key for i in store.search(("r",), refresh_ttl=False)]
    return keys if window.elapsed() < 0.95 * ttl else None  # 1 and 2 still had time


def test_refresh_on_read(client: valkey.Valkey, sid: str) -> None:
    for ttl in SHORT_TTLS:
        keys = _keys_left_by_refreshes(client, f"{sid}-{ttl}", ttl)
        if keys is not None:
            break
    else:
        pytest.fail(f"every attempt was too slow, the last with a TTL of {ttl} s")
    assert keys == ["1-read", "2-searched"]


def test_per_put_ttl_without_default(store: ValkeyStore, client: valkey.Valkey) -> None:
    store.put(("p",), "k", {"text": "a"}, ttl=1)
    exp = client.zscore(store._core.settings.keys.view("exp"), item_views.member(("p",), "k"))
    assert exp is not None and 59_000 < exp - time.time() * 1000 <= 60_000
    store.put(("p",), "k", {"text": "a"})  # no TTL any more
    assert client.zcard(store._core.settings.keys.view("exp")) == 0


# -- round trips ---------------------------------------------------------------------


def test_round_trips(private_server: Any, count_commands: Any, sid: str) -> None:
    client = valkey.Valkey.from_url(private_server.url)
    store = ValkeyStore(client, index=index(sid), ttl={"default_ttl": 10})
    store.put(("w",), "warm", {"text": "up"})  # load the scripts
    store.search(("w",), query="up")
    budgets = {
        "put": (lambda: store.put(("w",), "k", {"text": "hello"}), 1),
        "get": (lambda: store.get(("w",), "k"), 1),
        "delete": (lambda: store.delete(("w",), "gone"), 1),
        "search": (lambda: store.search(("w",), filter={"text": "hello"}), 1),
        "list_namespaces": (lambda: store.list_namespaces(prefix=("w",)), 1),
        "batch of puts": (
            lambda: store.batch([PutOp(("w",), f"b{i}", {"text": str(i)}) for i in range(20)]),
            1,
        ),
        "batch of reads": (
            lambda: store.batch(
                [GetOp(("w",), f"b{i}") for i in range(20)] + [SearchOp(("w",), limit=3)]
            ),
            1,
        ),
        # the index is behind by the puts above: one call hands back the entries
        "vector search after writes": (lambda: store.search(("w",), query="hello"), 2),
        "vector search": (lambda: store.search(("w",), query="hello", filter={"x": None}), 1),
    }
    for name, (call, budget) in budgets.items():
        with count_commands(client) as counted:
            call()
        assert counted.round_trips == budget, (name, counted.delta)
    client.close()


# -- graphs ----------------------------------------------------------------------------


class State(TypedDict):
    user: str
    seen: int


def _graph(async_node: bool) -> StateGraph:
    def remember(state: State) -> dict:
        store = get_store()
        ns = ("memories", state["user"])
        store.put(ns, str(len(store.search(ns))), {"text": f"visit of {state['user']}"})
        return {"seen": len(store.search(ns, query="visit"))}

    async def aremember(state: State) -> dict:
        store = get_store()
        ns = ("memories", state["user"])
        await store.aput(ns, str(len(await store.asearch(ns))), {"text": "visit"})
        return {"seen": len(await store.asearch(ns, query="visit"))}

    graph = StateGraph(State)
    graph.add_node("remember", aremember if async_node else remember)
    graph.add_edge(START, "remember")
    graph.add_edge("remember", END)
    return graph


def test_graph_uses_the_store(client: valkey.Valkey, sid: str) -> None:
    app = _graph(async_node=False).compile(store=ValkeyStore(client, index=index(sid)))
    for n in (1, 2, 3):
        assert app.invoke({"user": "ann", "seen": 0})["seen"] == n
    assert app.invoke({"user": "bob", "seen": 0})["seen"] == 1


async def test_async_graph_uses_the_async_store(valkey_url: str, sid: str) -> None:
    async with AsyncValkeyStore.from_conn_string(valkey_url, index=index(sid)) as store:
        app = _graph(async_node=True).compile(store=store)
        for n in (1, 2):
            assert (await app.ainvoke({"user": "ann", "seen": 0}))["seen"] == n
        # a sync node in an async graph runs in a worker thread: the sync bridge
        sync_app = _graph(async_node=False).compile(store=store)
        assert (await sync_app.ainvoke({"user": "ann", "seen": 0}))["seen"] == 3


# -- constructors and bridges --------------------------------------------------------


def test_from_conn_string_and_from_pool(valkey_url: str, sid: str) -> None:
    with ValkeyStore.from_conn_string(valkey_url, index=index(sid), pool_size=2) as store:
        store.setup()
        store.setup()
        store.put(("c",), "k", {"text": "v"})
    pool = valkey.ConnectionPool.from_url(valkey_url)
    with ValkeyStore.from_pool(pool, index=index(sid)) as store:
        assert store.get(("c",), "k").value == {"text": "v"}  # type: ignore[union-attr]
        assert store.search(("c",), query="v")[0].score == pytest.approx(1.0)
    pool.disconnect()


async def test_async_from_pool(valkey_url: str, sid: str) -> None:
    pool = valkey.asyncio.ConnectionPool.from_url(valkey_url)
    async with AsyncValkeyStore.from_pool(pool, index={"collection_name": sid}) as store:
        await store.setup()
        await store.aput(("c",), "k", {"v": 1})
        assert (await store.aget(("c",), "k")).value == {"v": 1}  # type: ignore[union-attr]
    await pool.disconnect()


async def test_sync_store_async_methods(store: ValkeyStore) -> None:
    await store.aput(("s",), "k", {"text": "hi"})
    assert (await store.aget(("s",), "k")).value == {"text": "hi"}  # type: ignore[union-attr]
    assert [i.key for i in await store.asearch(("s",), query="hi")] == ["k"]
    assert await store.alist_namespaces() == [("s",)]
    await store.adelete(("s",), "k")
    assert await store.aget(("s",), "k") is None


async def test_async_store_sync_methods_from_another_thread(valkey_url: str, sid: str) -> None:
    client = valkey.asyncio.Valkey.from_url(valkey_url)
    store = AsyncValkeyStore(client, index=index(sid))

    def work() -> list:
        store.put(("t",), "k", {"text": "x"})
        got = [store.get(("t",), "k"), store.search(("t",), query="x"), store.list_namespaces()]
        store.delete(("t",), "k")
        return got

    item, hits, namespaces = await asyncio.to_thread(work)
    assert item.value == {"text": "x"} and [h.key for h in hits] == ["k"]
    assert namespaces == [("t",)]
    assert await store.aget(("t",), "k") is None
    with pytest.raises(asyncio.InvalidStateError):
        store.get(("t",), "k")  # from the loop's own thread it would deadlock
    await client.aclose()


def test_async_store_sync_methods_without_a_loop(client: valkey.Valkey) -> None:
    store = AsyncValkeyStore(valkey.asyncio.Valkey())
    with pytest.raises(RuntimeError, match="event loop"):
        store.get(("a",), "k")


def test_concurrent_threads_share_one_index(client: valkey.Valkey, sid: str) -> None:
    store = ValkeyStore(client, index=index(sid))
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                store.put(("c", str(n)), str(i), {"text": f"{n}-{i}"})
                store.search(("c",), query=f"{n}-{i}", limit=3)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    hits = store.search(("c",), query="2-7", limit=1)
    assert hits[0].key == "7" and hits[0].namespace == ("c", "2")
    assert len(store._core.vectors) == 80  # type: ignore[arg-type]


# -- several processes, vector search, snapshots ---------------------------------------


def test_every_process_sees_every_write(valkey_url: str, sid: str) -> None:
    one = ValkeyStore(valkey.Valkey.from_url(valkey_url), index=index(sid))
    two = ValkeyStore(valkey.Valkey.from_url(valkey_url), index=index(sid))
    one.put(("p",), "a", {"text": "apple"})
    assert [h.key for h in two.search(("p",), query="apple")] == ["a"]
    two.put(("p",), "b", {"text": "banana"})
    two.delete(("p",), "a")
    assert [h.key for h in one.search(("p",), query="apple")] == ["b"]
    one.put(("p",), "b", {"text": "cherry"}, index=False)
    assert [(h.key, h.score) for h in two.search(("p",), query="banana")] == [("b", None)]


@pytest.mark.parametrize("metric", ["cosine", "l2", "inner_product"])
def test_scores_are_similarities_for_each_metric(
    client: valkey.Valkey, sid: str, metric: str
) -> None:
    import numpy as np

    texts = [f"t{i}" for i in range(30)]
    for kind in ("flat", "hnsw"):
        store = ValkeyStore(
            client,
            index=index(
                f"{sid}-{kind}", index_type=kind, distance_type=metric, hnsw_ef_runtime=200
            ),
        )
        store.batch([PutOp(("m",), t, {"text": t}) for t in texts])
        q = np.array(embed(["t7"])[0])
        vs = np.array(embed(texts))
        want = vector_views.similarity(metric, q, vs)  # type: ignore[arg-type]
        hits = store.search(("m",), query="t7", limit=5)
        order = np.argsort(-want)[:5]
        assert [h.key for h in hits] == [texts[i] for i in order]
        assert [h.score for h in hits] == pytest.approx(want[order].tolist(), abs=1e-5)
    if metric == "cosine":
        assert hits[0].score == pytest.approx(1.0)


def test_filtered_hnsw_search_fills_the_page(
    client: valkey.Valkey, sid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A selective filter still returns `limit` items: the candidate list widens."""
    monkeypatch.setattr(vector_views, "EXACT_BELOW", 0)  # force the approximate path
    hnsw = ValkeyStore(client, index=index(f"{sid}-h", hnsw_ef_runtime=400))
    flat = ValkeyStore(client, index=index(f"{sid}-f", index_type="flat"))
    puts = [
        PutOp(("h", str(i % 3)), str(i), {"text": f"doc {i}", "rare": i % 25 == 0})
        for i in range(400)
    ]
    hnsw.batch(puts)
    flat.batch(puts)
    for prefix in [(), ("h",), ("h", "1")]:
        got = hnsw.search(prefix, query="doc 7", filter={"rare": True}, limit=5, offset=1)
        want = flat.search(prefix, query="doc 7", filter={"rare": True}, limit=5, offset=1)
        assert len(got) == len(want) and all(h.value["rare"] for h in got)
        assert [h.key for h in got] == [h.key for h in want]


def test_snapshot_gives_a_new_process_the_index(client: valkey.Valkey, sid: str) -> None:
    for kind in ("hnsw", "flat"):
        cfg = index(f"{sid}-{kind}", index_type=kind)
        first = ValkeyStore(client, index=cfg)
        first.batch([PutOp(("s",), str(i), {"text": f"s{i}"}) for i in range(50)])
        first.search(("s",), query="s1")
        assert first.save_vectors()
        assert not first.save_vectors()  # nothing new
        first.put(("s",), "late", {"text": "late"})
        first.delete(("s",), "3")

        second = ValkeyStore(client, index=cfg)
        second.setup()
        index_two = second._core.vectors
        assert index_two is not None and len(index_two) == 50
        assert index_two.unsaved == 2  # restored, then only the tail replayed
        for q in ("s1", "late", "s3"):
            assert [h.key for h in second.search(("s",), query=q)] == [
                h.key for h in first.search(("s",), query=q)
            ]


def test_snapshot_of_another_spec_is_ignored(client: valkey.Valkey, sid: str) -> None:
    first = ValkeyStore(client, index=index(sid, index_type="flat"))
    first.put(("o",), "k", {"text": "x"})
    first.setup()
    first.close()
    other = ValkeyStore(client, index=index(sid, index_type="flat", distance_type="l2"))
    other.setup()
    assert other._core.vectors is not None and other._core.vectors.unsaved == 1  # replayed
    assert other.search(("o",), query="x")[0].score == pytest.approx(0.0, abs=1e-9)


async def test_no_url_means_the_embedded_server(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, sid: str
) -> None:
    from streamstate.server import ensure_server

    monkeypatch.delenv("STREAMSTATE_URL", raising=False)
    monkeypatch.setenv("STREAMSTATE_DIR", str(tmp_path))
    try:
        with ValkeyStore.from_conn_string(index={"collection_name": sid}) as store:
            store.put(("e",), "k", {"v": 1})
        async with AsyncValkeyStore.from_conn_string(index={"collection_name": sid}) as astore:
            assert (await astore.aget(("e",), "k")).value == {"v": 1}  # type: ignore[union-attr]
    finally:
        ensure_server(tmp_path).stop()
