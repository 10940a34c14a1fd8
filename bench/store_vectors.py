"""ValkeyStore vector search at scale, for ``bench store``: recall, queries/s, cold start.

For each data set: ``n`` unit vectors go through ``ValkeyStore`` puts (each an
``ItemPut`` event carrying its vector), the in-process HNSW index is built by replaying
the log, and then, for each ``ef_search``, recall@k against exact search (numpy, every
vector) and queries per second in one process, for the index alone and for
``store.search`` end to end (index + the read script that checks, filters and fetches
the items). Then the snapshot (size, write time), cold starts (a new client and store
restoring the snapshot and answering a first search) and, for one data set, a flat
(exact) index replayed from the same log.

Recall counts a hit when a returned item is at least as close as the k-th exact
neighbour (less 1e-5), so ties at the k-th place are not misses.

Data sets:

* ``real``: sentences of botocore's AWS documentation, embedded with static word-piece
  vectors distilled from all-MiniLM-L6-v2 (``bench.store_embed``, 384 dims).
* ``minilm``: the same sentences with the model's own contextual embeddings: the exact
  MiniLM vectors, but about 500 sentences/s to compute (3.5 minutes for 100k on 2 idle
  cores), so not in the default run.
* ``clustered``: unit vectors around ``n / 100`` random centres (Gaussian noise).
* ``random``: isotropic random unit vectors, HNSW's worst case: a query's nearest
  neighbours are barely closer than any other vector.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import valkey
from langgraph.store.base import PutOp

from streamstate.adapters.store import ValkeyStore
from streamstate.projections import vectors as vv


@dataclass(frozen=True)
class VecSettings:
    n: int
    queries: int
    dims: int
    k: int
    m: int
    ef_construction: int
    efs: tuple[int, ...]
    passes: int  # timed passes over the queries (index and store.search)
    cold_starts: int
    sizes: dict[str, int]  # data set -> n, where it differs from ``n``
    flat_queries: int


FULL = VecSettings(
    n=100_000,
    queries=500,
    dims=384,
    k=10,
    m=16,
    ef_construction=128,
    efs=(32, 64, 128),
    passes=3,
    cold_starts=3,
    sizes={"random": 20_000},  # its index build is 3x slower than the others'
    flat_queries=20,  # exact search over 100k vectors: tens of queries/s
)
QUICK = VecSettings(
    n=5_000,
    queries=100,
    dims=384,
    k=10,
    m=16,
    ef_construction=128,
    efs=(64,),
    passes=2,
    cold_starts=2,
    sizes={},
    flat_queries=20,
)

DESCRIPTIONS = {
    "real": "botocore AWS documentation sentences; static word-piece vectors distilled from"
    " all-MiniLM-L6-v2 (IDF-weighted mean, centred), 384 dims",
    "minilm": "botocore AWS documentation sentences; all-MiniLM-L6-v2 contextual embeddings"
    " (int8 ONNX, mean pooling), 384 dims",
    "clustered": "synthetic: unit vectors around n/100 random centres, Gaussian noise"
    " (0.6/sqrt(dims) per dimension)",
    "random": "synthetic: isotropic random unit vectors (HNSW's worst case)",
}


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def make_data(
    kind: str, n: int, queries: int, dims: int, seed: int = 0, log: Callable[[str], None] = print
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(data, queries, info)``; ``info`` says how the vectors were made and how long."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    info: dict[str, Any] = {"description": DESCRIPTIONS[kind]}
    if kind in ("real", "minilm"):
        from bench import store_embed

        if missing := store_embed.available():
            raise RuntimeError(missing)
        vecs, info["examples"] = store_embed.embed(
            "static" if kind == "real" else "contextual", n + queries, seed
        )
        if vecs.shape[1] != dims:
            raise ValueError(f"{kind} vectors have {vecs.shape[1]} dims, not {dims}")
        data, qs = vecs[:n], vecs[n:]
    elif kind == "random":
        data, qs = (
            _unit(rng.standard_normal((n, dims))),
            _unit(rng.standard_normal((queries, dims))),
        )
    elif kind == "clustered":
        centres = _unit(rng.standard_normal((max(1, n // 100), dims)))
        noise = 0.6 / np.sqrt(dims)

        def around(count: int) -> np.ndarray:
            picks = centres[rng.integers(0, len(centres), count)]
            return _unit(picks + rng.standard_normal((count, dims)) * noise)

        data, qs = around(n), around(queries)
    else:
        raise ValueError(f"unknown data set {kind!r}")
    info["make_seconds"] = time.perf_counter() - t0
    log(f"  {kind}: {n:,} + {queries} query vectors made in {info['make_seconds']:.1f} s")
    return data, qs, info


def _recall(
    found: list[list[int]], queries: np.ndarray, data: np.ndarray, kth: np.ndarray, k: int
) -> float:
    hits = 0
    for q, ids, bar in zip(queries, found, kth, strict=True):
        if ids:
            hits += int(np.count_nonzero(data[ids] @ q >= bar - 1e-5))
    return hits / (len(queries) * k)


def _passes(run: Callable[[], list[list[int]]], passes: int) -> tuple[list[float], list]:
    """Queries/s of each timed pass, and the last pass's answers (for recall)."""
    rates, got = [], []
    for _ in range(passes):
        t0 = time.perf_counter()
        got = run()
        rates.append(len(got) / (time.perf_counter() - t0))
    return rates, got


def _by_index(live: vv.VectorIndex, qlist: list[list[float]], k: int) -> list[list[int]]:
    return [[int(m.rsplit(b"\x00", 1)[1]) for m, _ in live.rank(q, None, k).items] for q in qlist]


def _by_store(store: ValkeyStore, count: int, k: int) -> list[list[int]]:
    return [
        [int(h.key) for h in store.search(("bench",), query=f"q{j}", limit=k)] for j in range(count)
    ]


def bench_dataset(
    url: str,
    kind: str,
    data: np.ndarray,
    queries: np.ndarray,
    s: VecSettings,
    flat: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    n, nq, k = len(data), len(queries), s.k

    def embed(texts: list[str]) -> list[list[float]]:
        # "v12" is data row 12, "q3" query row 3: the store bench measures the store
        return [(data if t[0] == "v" else queries)[int(t[1:])].tolist() for t in texts]

    index: dict[str, Any] = {
        "collection_name": f"bench-{kind}-{time.time_ns()}",
        "dims": s.dims,
        "embed": embed,
        "fields": ["text"],
        "index_type": "hnsw",
        "hnsw_m": s.m,
        "hnsw_ef_construction": s.ef_construction,
        "hnsw_ef_runtime": s.efs[0],
        "snapshot_every": 10**9,  # written once, below, and timed
    }
    out: dict[str, Any] = {"n": n, "queries": nq, "dims": s.dims, "k": k, "efs": {}}
    client = valkey.Valkey.from_url(url)
    store = ValkeyStore(client, index=index)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    for start in range(0, n, 500):
        stop = min(start + 500, n)
        store.batch([PutOp(("bench",), str(i), {"text": f"v{i}"}) for i in range(start, stop)])
    out["ingest_per_s"] = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    store.setup()  # replay the log into the index
    out["build_seconds"] = time.perf_counter() - t0
    live = store._core.vectors
    assert live is not None and len(live) == n
    log(f"  {kind}: {out['ingest_per_s']:,.0f} puts/s; index built in {out['build_seconds']:.1f} s")

    sims = queries @ data.T
    part = np.partition(-sims, k - 1, axis=1)[:, :k]
    kth = -part.max(axis=1)  # the k-th best similarity of each query
    out["similarity"] = {
        "nearest": float(-part.min(axis=1).mean()),
        "kth": float(kth.mean()),
        "mean": float(sims.mean()),
    }
    del sims, part
    qlist = queries.tolist()
    for ef in s.efs:
        live.set_ef_search(ef)
        qps_index, ranked = _passes(partial(_by_index, live, qlist, k), s.passes)
        qps_store, hits = _passes(partial(_by_store, store, nq, k), s.passes)
        row = {
            "qps_index": qps_index,
            "recall_index": _recall(ranked, queries, data, kth, k),
            "qps_store": qps_store,
            "recall_store": _recall(hits, queries, data, kth, k),
        }
        out["efs"][str(ef)] = row
        log(
            f"  {kind} ef={ef}: recall {row['recall_index']:.3f} / {row['recall_store']:.3f},"
            f" q/s {np.median(row['qps_index']):,.0f} / {np.median(row['qps_store']):,.0f}"
            " (index / store.search)"
        )

    t0 = time.perf_counter()
    assert store.save_vectors(force=True)
    out["snapshot_write_seconds"] = time.perf_counter() - t0
    key = vv.snapshot_key(store._core.settings.keys)
    out["snapshot_bytes"] = sum(client.hstrlen(key, f) for f in client.hkeys(key))
    del store, live
    gc.collect()
    colds = []
    for _ in range(s.cold_starts):
        t0 = time.perf_counter()
        cold_client = valkey.Valkey.from_url(url)
        cold = ValkeyStore(cold_client, index=index)  # type: ignore[arg-type]
        first = cold.search(("bench",), query="q0", limit=k)
        colds.append(time.perf_counter() - t0)
        assert cold._core.vectors is not None and cold._core.vectors.unsaved == 0
        assert len(first) == k
        cold_client.close()
        del cold
        gc.collect()
    out["cold_start_seconds"] = colds
    log(f"  {kind}: cold start {np.median(colds):.2f} s (median of {len(colds)})")

    if flat:  # a flat index replayed from the same log: exact, for the q/s it costs
        t0 = time.perf_counter()
        flat_store = ValkeyStore(client, index={**index, "index_type": "flat"})  # type: ignore[arg-type]
        flat_store.setup()
        replay = time.perf_counter() - t0
        fq = min(nq, s.flat_queries)
        qps, got = _passes(partial(_by_store, flat_store, fq, k), 2)
        out["flat"] = {
            "replay_seconds": replay,
            "queries": fq,
            "qps_store": qps,
            "recall_store": _recall(got, queries[:fq], data, kth[:fq], k),
        }
        log(f"  {kind} flat: replay {replay:.1f} s, {np.median(qps):,.0f} q/s")
        del flat_store
    client.close()
    gc.collect()
    return out


def bench_vectors(
    url: str, kinds: list[str], s: VecSettings, seed: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Every data set in ``kinds``; one that cannot be made is reported, not fatal."""
    results: dict[str, Any] = {}
    saved = vv.EXACT_BELOW
    vv.EXACT_BELOW = 0  # always the approximate path, whatever n
    try:
        for i, kind in enumerate(kinds):
            n = s.sizes.get(kind, s.n)
            try:
                data, queries, info = make_data(kind, n, s.queries, s.dims, seed, log)
            except Exception as exc:  # e.g. the embedding packages are missing
                results[kind] = {"error": f"{type(exc).__name__}: {exc}"}
                log(f"  {kind}: cannot run: {results[kind]['error']}")
                continue
            results[kind] = info | bench_dataset(url, kind, data, queries, s, i == 0, log)
            del data, queries
    finally:
        vv.EXACT_BELOW = saved
    return results
