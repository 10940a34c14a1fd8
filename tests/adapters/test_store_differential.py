"""ValkeyStore and AsyncValkeyStore against LangGraph's InMemoryStore, op by op.

The same seeded random sequence of puts (several index settings), deletes, gets,
filtered searches, vector searches (flat index: exact) and namespace listings, single
ops and mixed batches, runs against both stores; every answer must agree. It runs once
more with compaction in between (full compactions, repacks left half done, sweeps) on
two processes' stores sharing one collection: compaction must change no answer, and
rebuilding the views from the compacted log must give the live ones.

The reference is ``InMemoryStore`` with four quirks normalised, each a place where it
departs from every persistent LangGraph store:

* it lists namespaces whose items were all deleted (and ones only read from);
* a re-put item keeps vectors of its earlier version (``index=False`` does not clear
  them);
* a batch in which one text occurs twice fails (one embedding per distinct text is
  zipped with every occurrence);
* unranked results come in dict insertion order; ours, like a database's, come in
  ``(namespace, key)`` order, which the reference is given too. Ranked results tie
  when two items share a text; the reference's scores are rounded to 12 places so
  that float noise cannot break such a tie (ours are ordered the same way).

Not generated: ``put(..., index=["$"])``, which InMemoryStore embeds as nothing (it
special-cases ``"$"`` only in the store's ``fields``); ours embeds the whole value, as
``"$"`` means everywhere else (``test_store.py`` covers it).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
import valkey
import valkey.asyncio
from langgraph.store import memory
from langgraph.store.base import GetOp, ListNamespacesOp, MatchCondition, PutOp, SearchOp
from langgraph.store.memory import InMemoryStore

from streamstate.adapters.store import AsyncValkeyStore, ValkeyStore
from streamstate.eventlog._drive import acomplete, complete
from streamstate.eventlog.keys import Keyspace
from streamstate.projections import items as views

DIMS = 16
FIELDS = ["text", "tags[*]"]
NAMESPACES = [
    ("a",),
    ("a", "b"),
    ("a", "b", "c"),
    ("a", "bc"),
    ("a/b",),
    ("x", "y:z"),
    ("x", "*"),
    ("x", "{t}", "ü"),
    ("d", "e", "f", "g"),
]
KEYS = ["k1", "k2", "k3", "k:4", "ü", ""]
WORDS = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
COLORS = ["red", "green", "blue"]


def embed(texts: list[str]) -> list[list[float]]:
    """A deterministic fake embedding: a pseudo-random vector per text."""
    out = []
    for text in texts:
        digest = hashlib.sha256(text.encode()).digest()
        rng = random.Random(digest)
        out.append([rng.uniform(-1, 1) for _ in range(DIMS)])
    return out


class Reference(InMemoryStore):
    """InMemoryStore with the quirks listed in the module docstring normalised."""

    def _extract_texts(self, put_ops: dict) -> dict:
        for ns, key in put_ops:
            self._vectors[ns].pop(key, None)
        return super()._extract_texts(put_ops)

    def _insertinmem_store(self, to_embed: dict, embeddings: list) -> None:
        for vector, places in zip(embeddings, to_embed.values()):
            for ns, key, path in places:
                self._vectors[ns][key][path] = vector

    def _filter_items(self, op: SearchOp) -> list:
        ordered = {ns: dict(sorted(self._data[ns].items())) for ns in sorted(self._data)}
        self._data.clear()
        self._data.update(ordered)
        return super()._filter_items(op)

    def _handle_list_namespaces(self, op: ListNamespacesOp) -> list:
        for ns in [ns for ns, items in self._data.items() if not items]:
            del self._data[ns]
        return super()._handle_list_namespaces(op)


class Rand:
    """Random ops from one seed (the seed shows in the test id)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.r = random.Random(seed)

    def __repr__(self) -> str:
        return f"Rand(seed={self.seed})"

    def value(self) -> dict[str, Any]:
        r = self.r
        v: dict[str, Any] = {
            "n": r.choice([r.randint(-3, 5), round(r.uniform(-3, 5), 2), True]),
            "meta": {"color": r.choice(COLORS), "size": r.randint(0, 3)},
        }
        if r.random() < 0.8:
            v["text"] = " ".join(r.sample(WORDS, r.randint(1, 3)))
        if r.random() < 0.6:
            v["tags"] = r.sample(WORDS, r.randint(0, 2))
        if r.random() < 0.2:
            v["extra"] = r.choice([None, [1, None], {}, [], "x", 2.5])
        return v

    def filter(self) -> dict[str, Any] | None:
        r = self.r
        choices: list[dict[str, Any]] = [
            {"n": {"$gt": r.randint(-2, 4)}},
            {"n": {"$lte": r.uniform(-2, 4)}},
            {"n": {"$gte": 0, "$lt": 3}},
            {"n": {"$ne": 1}},
            {"n": r.randint(-2, 4)},
            {"meta": {"color": r.choice(COLORS)}},
            {"meta": {"$eq": {"color": r.choice(COLORS), "size": r.randint(0, 3)}}},
            {"meta": {}},
            {"tags": r.sample(WORDS, r.randint(0, 2))},
            {"tags": []},
            {"extra": None},
            {"extra": {"$ne": None}},
            {"extra": [1, None]},
            {"text": r.choice(WORDS)},
        ]
        if r.random() < 0.3:
            return None
        out: dict[str, Any] = {}
        for f in r.sample(choices, r.randint(1, 2)):
            out.update(f)
        return out

    def prefix(self) -> tuple[str, ...]:
        ns = self.r.choice(NAMESPACES)
        return ns[: self.r.randint(0, len(ns))]

    def op(self) -> Any:
        r = self.r
        kind = r.choices(["put", "delete", "get", "search", "vsearch", "list"], [6, 1, 2, 2, 3, 2])[
            0
        ]
        ns, key = r.choice(NAMESPACES), r.choice(KEYS)
        if kind == "put":
            index = r.choice([None, None, False, ["text"], ["tags[*]"], ["text", "meta.color"]])
            return PutOp(ns, key, self.value(), index=index)
        if kind == "delete":
            return PutOp(ns, key, None)
        if kind == "get":
            return GetOp(ns, key)
        if kind in ("search", "vsearch"):
            query = " ".join(r.sample(WORDS, r.randint(1, 2))) if kind == "vsearch" else None
            return SearchOp(
                self.prefix(), self.filter(), r.randint(0, 6), r.choice([0, 0, 1, 3]), query
            )
        conditions = []
        if r.random() < 0.5:
            p = list(self.prefix())
            if p and r.random() < 0.4:
                p[r.randrange(len(p))] = "*"
            conditions.append(MatchCondition("prefix", tuple(p)))
        if r.random() < 0.3:
            ns = r.choice(NAMESPACES)
            s = list(ns[-r.randint(1, len(ns)) :])
            if r.random() < 0.3:
                s[0] = "*"
            conditions.append(MatchCondition("suffix", tuple(s)))
        return ListNamespacesOp(
            tuple(conditions),
            r.choice([None, None, 1, 2, 3]),
            r.choice([100, 100, 2, 3]),
            r.choice([0, 0, 1, 2]),
        )

    def batches(self, n: int) -> list[list[Any]]:
        out = []
        for _ in range(n):
            size = 1 if self.r.random() < 0.8 else self.r.randint(2, 5)
            out.append([self.op() for _ in range(size)])
        return out


def comparable(result: Any) -> Any:
    if result is None:
        return None
    if isinstance(result, list):
        return [comparable(x) for x in result]
    if isinstance(result, tuple):
        return result
    score = getattr(result, "score", None)
    return (
        "item",
        tuple(result.namespace),
        result.key,
        result.value,
        None if score is None else round(score, 9),
    )


INDEX = {"dims": DIMS, "embed": embed, "fields": FIELDS}


@pytest.fixture(autouse=True)
def _exact_ties(monkeypatch: pytest.MonkeyPatch) -> None:
    cosine = memory._cosine_similarity
    monkeypatch.setattr(
        memory, "_cosine_similarity", lambda x, y: [round(s, 12) for s in cosine(x, y)]
    )


@pytest.fixture(params=[11, 29], ids=lambda s: f"seed{s}")
def rand(request: pytest.FixtureRequest) -> Rand:
    return Rand(request.param)


def test_sync_store_agrees_with_in_memory_store(valkey_url: str, sid: str, rand: Rand) -> None:
    client = valkey.Valkey.from_url(valkey_url)
    store = ValkeyStore(client, index={**INDEX, "collection_name": sid, "index_type": "flat"})
    reference = Reference(index=INDEX)
    for step, batch in enumerate(rand.batches(400)):
        got = store.batch(batch)
        want = reference.batch(batch)
        assert comparable(got) == comparable(want), (rand, step, batch)
    client.close()


async def test_async_store_agrees_with_in_memory_store(
    valkey_url: str, sid: str, rand: Rand
) -> None:
    client = valkey.asyncio.Valkey.from_url(valkey_url)
    store = AsyncValkeyStore(client, index={**INDEX, "collection_name": sid, "index_type": "flat"})
    reference = Reference(index=INDEX)
    for step, batch in enumerate(rand.batches(250)):
        got = await store.abatch(batch)
        want = await reference.abatch(batch)
        assert comparable(got) == comparable(want), (rand, step, batch)
    await client.aclose()


def test_public_methods_agree(valkey_url: str, sid: str) -> None:
    """The BaseStore methods (not just batch) on a store without an index."""
    client = valkey.Valkey.from_url(valkey_url)
    store = ValkeyStore(client, index={"collection_name": sid})
    reference = Reference()
    rand = Rand(5)
    for _ in range(120):
        op = rand.op()
        for s in (store, reference):
            if isinstance(op, PutOp) and op.value is not None:
                s.put(op.namespace, op.key, op.value)
            elif isinstance(op, PutOp):
                s.delete(op.namespace, op.key)
        if isinstance(op, GetOp):
            assert comparable(store.get(*op[:2])) == comparable(reference.get(*op[:2]))
        elif isinstance(op, SearchOp):
            kwargs = {"filter": op.filter, "limit": op.limit, "offset": op.offset}
            # without an index a query is ignored, by both stores
            kwargs["query"] = op.query
            got = store.search(op.namespace_prefix, **kwargs)
            assert comparable(got) == comparable(reference.search(op.namespace_prefix, **kwargs))
        elif isinstance(op, ListNamespacesOp):
            conds = {c.match_type: c.path for c in op.match_conditions or ()}
            kwargs = {
                "prefix": conds.get("prefix"),
                "suffix": conds.get("suffix"),
                "max_depth": op.max_depth,
                "limit": op.limit,
                "offset": op.offset,
            }
            assert store.list_namespaces(**kwargs) == reference.list_namespaces(**kwargs)
    client.close()


# -- with compaction in between ----------------------------------------------------------

COMPACTIONS = ["compact", "full", "repack-step", "repack-step", "sweep"]


def compact_somehow(store: ValkeyStore, r: random.Random) -> str:
    """One kind of compaction, as a maintenance call or a repack left in progress."""
    kind = r.choice(COMPACTIONS)
    if kind == "compact":
        store.compact()
    elif kind == "full":
        store.compact(full=True)
    elif kind == "repack-step":  # copies a few entries; the writes that follow go on
        complete(store._core._maintain(0, r.randint(1, 8), True), store._log.run)
    else:
        store.sweep_ttl()
    return kind


async def acompact_somehow(store: AsyncValkeyStore, r: random.Random) -> str:
    kind = r.choice(COMPACTIONS)
    if kind == "compact":
        await store.compact()
    elif kind == "full":
        await store.compact(full=True)
    elif kind == "repack-step":
        await acomplete(store._core._maintain(0, r.randint(1, 8), True), store._log.run)
    else:
        await store.sweep_ttl()
    return kind


def assert_compact_and_rebuildable(client: valkey.Valkey, store: ValkeyStore) -> None:
    """The log holds what the views name (and tombstones); a rebuild gives the views."""
    keys = store._core.settings.keys
    named = {
        views.split_ref(raw)[0]
        for raw in client.hvals(keys.view("data")) + client.hvals(keys.view("created"))
    }
    tombstones = {t.decode() for t in client.smembers(keys.view("tombstones"))}
    present = {e.id for e in store._log.read(store.session)}
    assert present == named | tombstones
    shadow = Keyspace("ss-verify")
    store._log.rebuild(store.session, target=shadow)
    names = views.VIEW_NAMES
    live = store._log.snapshot([keys.view(n) for n in names])
    rebuilt = store._log.snapshot([shadow.session(store.session).view(n) for n in names])
    client.delete(*[shadow.session(store.session).view(n) for n in names])
    assert list(live.values()) == list(rebuilt.values())


def test_sync_stores_agree_with_compaction_in_between(
    valkey_url: str, sid: str, rand: Rand
) -> None:
    clients = [valkey.Valkey.from_url(valkey_url) for _ in range(2)]
    cfg: Any = {**INDEX, "collection_name": sid, "index_type": "flat"}
    stores = [ValkeyStore(c, index=cfg) for c in clients]  # two processes, one store
    reference = Reference(index=INDEX)
    chooser = random.Random(rand.seed)
    done: list[str] = []
    for step, batch in enumerate(rand.batches(400)):
        if chooser.random() < 0.2:
            done.append(compact_somehow(stores[chooser.randrange(2)], chooser))
        store = stores[step % 2]
        got = store.batch(batch)
        want = reference.batch(batch)
        assert comparable(got) == comparable(want), (rand, step, batch, done[-3:])
    assert set(done) == {"compact", "full", "repack-step", "sweep"}
    stores[0].compact()
    assert_compact_and_rebuildable(clients[0], stores[0])
    for c in clients:
        c.close()


async def test_async_stores_agree_with_compaction_in_between(
    valkey_url: str, sid: str, rand: Rand
) -> None:
    clients = [valkey.asyncio.Valkey.from_url(valkey_url) for _ in range(2)]
    cfg: Any = {**INDEX, "collection_name": sid, "index_type": "flat"}
    stores = [AsyncValkeyStore(c, index=cfg) for c in clients]
    reference = Reference(index=INDEX)
    chooser = random.Random(rand.seed)
    for step, batch in enumerate(rand.batches(250)):
        if chooser.random() < 0.2:
            await acompact_somehow(stores[chooser.randrange(2)], chooser)
        got = await stores[step % 2].abatch(batch)
        want = await reference.abatch(batch)
        assert comparable(got) == comparable(want), (rand, step, batch)
    await stores[0].compact()
    sync = valkey.Valkey.from_url(valkey_url)
    check = ValkeyStore(sync, index=cfg)
    assert_compact_and_rebuildable(sync, check)
    sync.close()
    for c in clients:
        await c.aclose()
