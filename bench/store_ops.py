"""Store operations against peers, for ``bench store``.

Peers: streamstate ``ValkeyStore`` / ``AsyncValkeyStore`` (embedded valkey-server),
LangGraph's ``InMemoryStore``, and ``PostgresStore`` / ``AsyncPostgresStore``
(langgraph-checkpoint-postgres) on the local PostgreSQL of ``bench.peers_setup``; its
vector rows need the pgvector extension and are skipped, with the reason, without it.

Each peer holds the same data: ``items`` plain items spread over ``users`` namespaces
``("bench", "u<i>")`` and ``vectors`` items with a vector index over ``("vec", "u<i>")``.
Embeddings come from :class:`HashEmbeddings` (a few µs per text), so that the embedding
model is not what is measured. Every scenario runs each peer for a fixed slot of wall
time (operations counted), in ABBA order within a round; rates are medians over rounds
and ratios are paired per round.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import random
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import valkey
import valkey.asyncio
from langchain_core.embeddings import Embeddings
from langgraph.store.base import PutOp

from bench.common import RoundTrips, abba_order, paired_ratios
from bench.peers_setup import Postgres

PEERS = ["streamstate", "memory", "postgres"]


@dataclass(frozen=True)
class OpsSettings:
    rounds: int
    slot: float  # seconds of calls per peer, scenario and half round
    users: int  # namespaces
    items: int  # plain items per peer
    vectors: int  # vector-indexed items per peer
    dims: int


FULL = OpsSettings(rounds=5, slot=0.1, users=20, items=2000, vectors=5000, dims=384)
QUICK = OpsSettings(rounds=3, slot=0.03, users=10, items=1000, vectors=1000, dims=384)

# scenario -> (label, uses the vector-indexed store)
SCENARIOS: dict[str, tuple[str, bool]] = {
    "put": ("put (new item)", False),
    "get": ("get", False),
    "search_filter": ("search: filter, limit 10, no query", False),
    "list_namespaces": ("list_namespaces(prefix, limit 50)", False),
    "put_vector": ("put with embedding (indexed store)", True),
    "vector_user": ("vector search in one namespace, limit 10", True),
    "vector_all": ("vector search over all items, limit 10", True),
}

_SYLLABLES = [c + v for c in "bdgklmnprstv" for v in "aeiou"]


class HashEmbeddings(Embeddings):
    """Bag of words: each word a fixed random vector, a text their normalised sum.

    Deterministic, cheap (µs per text) and with real neighbours (texts sharing words),
    with the same sync and async cost for every peer.
    """

    def __init__(self, dims: int, buckets: int = 4096, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.buckets = buckets
        self.table = rng.standard_normal((buckets, dims)).astype(np.float32)

    def _one(self, text: str) -> list[float]:
        rows = [zlib.crc32(w.encode()) % self.buckets for w in text.lower().split()]
        v = self.table[rows].sum(axis=0)
        return (v / (float(np.linalg.norm(v)) or 1.0)).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._one(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._one(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return self._one(text)


class Texts:
    """Deterministic pseudo-sentences over a 600-word vocabulary."""

    def __init__(self, seed: int = 0) -> None:
        rng = random.Random(seed)
        words = {"".join(rng.choices(_SYLLABLES, k=rng.randint(2, 3))) for _ in range(900)}
        self.words = sorted(words)[:600]

    def sentence(self, i: int, n: int = 12) -> str:
        rng = random.Random(i)
        return " ".join(rng.choices(self.words, k=n))

    def value(self, i: int) -> dict[str, Any]:
        return {
            "text": self.sentence(i),
            "kind": f"k{zlib.crc32(str(i).encode()) % 5}",  # not tied to the namespace
            "n": i,
            "tags": ["memory", f"t{i % 7}"],
            "source": {"agent": "bench", "turn": i % 50},
        }


@dataclass
class StorePeer:
    """One store under test: a plain and a vector-indexed instance, or why not."""

    name: str
    plain: Any = None
    indexed: Any = None
    error: str = ""
    vector_error: str = ""
    loaded: bool = False  # holds the data already (a database copied from a loaded one)


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def _index(emb: Embeddings, dims: int) -> dict[str, Any]:
    return {"dims": dims, "embed": emb, "fields": ["text"]}


def _postgres(pg: Postgres, emb: Embeddings, dims: int, stack: contextlib.ExitStack) -> StorePeer:
    """PostgresStore, plain and with a vector index (that one needs pgvector)."""
    p = StorePeer("postgres", loaded=True)
    try:
        if pg.conninfo is None:
            raise RuntimeError(pg.note)
        import psycopg
        from langgraph.store.postgres import PostgresStore
        from psycopg.rows import dict_row

        def connect() -> Any:
            conn = psycopg.connect(
                pg.conninfo, autocommit=True, prepare_threshold=0, row_factory=dict_row
            )
            stack.callback(conn.close)
            return conn

        p.plain = PostgresStore(connect())
        p.plain.setup()
        try:
            p.indexed = PostgresStore(connect(), index=_index(emb, dims))  # type: ignore[arg-type]
            p.indexed.setup()  # CREATE EXTENSION vector
        except Exception as exc:
            p.indexed, p.vector_error = None, _why(exc)
    except Exception as exc:  # a peer that cannot run is reported, not fatal
        p.plain, p.error = None, _why(exc)
    return p


@contextlib.contextmanager
def sync_peers(url: str, pg: Postgres, emb: Embeddings, dims: int) -> Iterator[list[StorePeer]]:
    from langgraph.store.memory import InMemoryStore

    from streamstate.adapters.store import ValkeyStore

    with contextlib.ExitStack() as stack:
        pool = valkey.ConnectionPool.from_url(url, max_connections=8)
        stack.callback(pool.disconnect)
        client = valkey.Valkey(connection_pool=pool)
        ss = StorePeer(
            "streamstate",
            ValkeyStore(client),
            ValkeyStore(client, index={**_index(emb, dims), "collection_name": "vec"}),  # type: ignore[typeddict-item]
        )
        ss.plain.setup()
        ss.indexed.setup()
        memory = StorePeer("memory", InMemoryStore(), InMemoryStore(index=_index(emb, dims)))  # type: ignore[arg-type]
        yield [ss, memory, _postgres(pg, emb, dims, stack)]


@contextlib.asynccontextmanager
async def async_peers(
    url: str, pg: Postgres, emb: Embeddings, dims: int
) -> AsyncIterator[list[StorePeer]]:
    from langgraph.store.memory import InMemoryStore

    from streamstate.adapters.store import AsyncValkeyStore

    peers = []
    async with contextlib.AsyncExitStack() as stack:
        p = StorePeer("streamstate")
        pool = valkey.asyncio.ConnectionPool.from_url(url, max_connections=8)
        stack.push_async_callback(pool.disconnect)
        client = valkey.asyncio.Valkey(connection_pool=pool)
        p.plain = AsyncValkeyStore(client)
        p.indexed = AsyncValkeyStore(
            client,
            index={**_index(emb, dims), "collection_name": "avec"},  # type: ignore[typeddict-item]
        )
        await p.plain.setup()
        await p.indexed.setup()
        peers.append(p)
        peers.append(StorePeer("memory", InMemoryStore(), InMemoryStore(index=_index(emb, dims))))  # type: ignore[arg-type]
        p = StorePeer("postgres", loaded=True)
        try:
            if pg.conninfo is None:
                raise RuntimeError(pg.note)
            from langgraph.store.postgres.aio import AsyncPostgresStore

            p.plain = await stack.enter_async_context(
                AsyncPostgresStore.from_conn_string(pg.conninfo)
            )
            await p.plain.setup()
            try:
                p.indexed = await stack.enter_async_context(
                    AsyncPostgresStore.from_conn_string(pg.conninfo, index=_index(emb, dims))  # type: ignore[arg-type]
                )
                await p.indexed.setup()
            except Exception as exc:
                p.indexed, p.vector_error = None, _why(exc)
        except Exception as exc:
            p.plain, p.error = None, _why(exc)
        peers.append(p)
        yield peers


# -- the operations ----------------------------------------------------------------------


def _load_ops(s: OpsSettings, texts: Texts, plain_ns: str, vec_ns: str) -> tuple[list[PutOp], ...]:
    """The untimed data every peer starts from (plain items, indexed items)."""
    plain = [PutOp((plain_ns, f"u{i % s.users}"), f"k{i}", texts.value(i)) for i in range(s.items)]
    indexed = [
        PutOp((vec_ns, f"u{i % s.users}"), f"k{i}", texts.value(10**6 + i))
        for i in range(s.vectors)
    ]
    return plain, indexed


def _calls(
    peer: StorePeer, s: OpsSettings, texts: Texts, plain_ns: str, vec_ns: str, run_async: bool
) -> dict[str, Callable[[int], Any]]:
    """scenario -> call(i), a coroutine function when ``run_async``."""
    u = s.users
    new = itertools.count()  # put keys never repeat within a run

    def args(op: str, i: int) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        """The sync method's name, args and kwargs of call ``i``."""
        if op in ("put", "put_vector"):
            ns = (f"{plain_ns if op == 'put' else vec_ns}-put", f"u{i % u}")
            return "put", (ns, f"n{next(new)}", texts.value(i)), {}
        if op == "get":
            j = (i * 7919) % s.items
            return "get", ((plain_ns, f"u{j % u}"), f"k{j}"), {}
        if op == "search_filter":
            return "search", ((plain_ns, f"u{i % u}"),), {"filter": {"kind": "k3"}, "limit": 10}
        if op == "list_namespaces":
            return "list_namespaces", (), {"prefix": (plain_ns,), "limit": 50}
        ns = (vec_ns, f"u{i % u}") if op == "vector_user" else (vec_ns,)
        return "search", (ns,), {"query": texts.sentence(2 * 10**6 + i, n=6), "limit": 10}

    out: dict[str, Callable[[int], Any]] = {}
    for op, (_, vector) in SCENARIOS.items():
        store = peer.indexed if vector else peer.plain
        if store is None:
            continue

        def call(i: int, op: str = op, store: Any = store) -> Any:
            name, a, kw = args(op, i)
            return getattr(store, ("a" if run_async else "") + name)(*a, **kw)

        out[op] = call
    return out


def _answers(op: str, result: Any) -> int:
    """How many results a call returned (a get: 1 or 0)."""
    return int(result is not None) if op == "get" else len(result)


def expected(op: str, s: OpsSettings) -> int | None:
    """What every peer should return (put: nothing to count)."""
    if op in ("search_filter", "vector_user", "vector_all"):
        return 10
    return {"get": 1, "list_namespaces": s.users}.get(op)


async def _timed(
    call: Callable[[int], Any], start: int, slot: float, run_async: bool
) -> tuple[int, float]:
    """Calls made in ``slot`` seconds (at least one) and the time they took."""
    n = 0
    t0 = time.perf_counter()
    end = t0 + slot
    while True:
        if run_async:
            await call(start + n)
        else:
            call(start + n)
        n += 1
        if time.perf_counter() >= end:
            return n, time.perf_counter() - t0


async def _measure(
    peers: list[StorePeer],
    s: OpsSettings,
    names: tuple[str, str],
    run_async: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Load every peer, check its answers, then the timed rounds."""
    texts = Texts()
    plain, indexed = _load_ops(s, texts, *names)
    ops: dict[str, dict[str, Callable[[int], Any]]] = {}
    answers: dict[str, dict[str, float]] = {}  # share of the expected results returned
    for p in peers:
        t0 = time.perf_counter()
        for store, data in ((p.plain, plain), (p.indexed, indexed)) if not p.loaded else ():
            for start in range(0, len(data) if store is not None else 0, 500):
                if run_async:
                    await store.abatch(data[start : start + 500])
                else:
                    store.batch(data[start : start + 500])
        if not p.loaded:
            log(f"  loaded {p.name} in {time.perf_counter() - t0:.1f} s")
        ops[p.name] = _calls(p, s, texts, *names, run_async=run_async)
        for op, call in ops[p.name].items():  # warm-up; how many results each returns
            if (want := expected(op, s)) is None:
                continue
            got = [_answers(op, (await call(i)) if run_async else call(i)) for i in range(20)]
            answers.setdefault(op, {})[p.name] = sum(got) / len(got) / want
    rates: dict[str, dict[str, list[float]]] = {}
    cursor = 1
    for rnd in range(s.rounds):
        gc.collect()
        for op in SCENARIOS:
            here = [p.name for p in peers if op in ops[p.name]]
            count = dict.fromkeys(here, 0)
            secs = dict.fromkeys(here, 0.0)
            for n in abba_order(here, rnd):
                k, t = await _timed(ops[n][op], cursor, s.slot, run_async)
                cursor += k
                count[n] += k
                secs[n] += t
            for n in here:
                rates.setdefault(op, {}).setdefault(n, []).append(count[n] / secs[n])
    out: dict[str, Any] = {"rates": rates, "answers": answers}
    if not run_async and "streamstate" in ops:
        trips: dict[str, float] = {}
        with RoundTrips() as rt:  # untimed: the patch costs a little per call
            for op, call in ops["streamstate"].items():
                before = rt.sends
                for i in range(20):
                    call(i)
                trips[op] = (rt.sends - before) / 20
        out["round_trips"] = trips
    return out


def _not_run(peers: list[StorePeer]) -> dict[str, str]:
    out = {p.name: p.error for p in peers if p.error}
    return out | {f"{p.name} (vector rows)": p.vector_error for p in peers if p.vector_error}


def postgres_databases(
    pg: Postgres, s: OpsSettings, log: Callable[[str], None]
) -> tuple[Postgres, Postgres]:
    """Two databases holding the same loaded data: one for the sync run, one for async.

    Loaded once (PostgresStore puts with pgvector take the longest), then copied.
    """
    if pg.conninfo is None:
        return pg, pg
    import psycopg

    def db(name: str) -> Postgres:
        return Postgres(pg.conninfo.rsplit("/", 1)[0] + f"/{name}", pg.note, pg.version)  # type: ignore[union-attr]

    with psycopg.connect(pg.conninfo, autocommit=True) as conn:
        for name in ("store_load", "store_sync", "store_async"):
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute("CREATE DATABASE store_load")
        t0 = time.perf_counter()
        with contextlib.ExitStack() as stack:
            p = _postgres(db("store_load"), HashEmbeddings(s.dims), s.dims, stack)
            if p.error:
                return pg, pg  # the runs report why
            plain, indexed = _load_ops(s, Texts(), "bench", "vec")
            for store, data in ((p.plain, plain), (p.indexed, indexed)):
                for start in range(0, len(data) if store is not None else 0, 500):
                    store.batch(data[start : start + 500])
        for name in ("store_sync", "store_async"):
            conn.execute(f"CREATE DATABASE {name} TEMPLATE store_load")
    log(f"  loaded postgres in {time.perf_counter() - t0:.1f} s (one copy per run)")
    return db("store_sync"), db("store_async")


def bench_sync(
    url: str, pg: Postgres, s: OpsSettings, log: Callable[[str], None]
) -> dict[str, Any]:
    """``pg``: a database from :func:`postgres_databases`."""
    with sync_peers(url, pg, HashEmbeddings(s.dims), s.dims) as peers:
        ok = [p for p in peers if not p.error]
        out = asyncio.run(_measure(ok, s, ("bench", "vec"), False, log))
        return out | {"not_run": _not_run(peers)}


def bench_async(
    url: str, pg: Postgres, s: OpsSettings, log: Callable[[str], None]
) -> dict[str, Any]:
    """``pg``: the other database from :func:`postgres_databases`."""

    async def run() -> dict[str, Any]:
        async with async_peers(url, pg, HashEmbeddings(s.dims), s.dims) as peers:
            ok = [p for p in peers if not p.error]
            out = await _measure(ok, s, ("bench", "vec"), True, log)
            return out | {"not_run": _not_run(peers)}

    return asyncio.run(run())


def ratios(rates: dict[str, dict[str, list[float]]], base: str) -> dict[str, dict[str, float]]:
    """streamstate ops/s / peer ops/s per scenario, paired per round (> 1: faster)."""
    return {
        op: paired_ratios(per["streamstate"], per[base])
        for op, per in rates.items()
        if "streamstate" in per and base in per
    }
