"""Vector search of the Valkey store: HNSW recall, queries per second, cold start.

Puts ``--n`` unit vectors (``--dims``) through ``ValkeyStore`` (each an ``ItemPut``
event carrying its vector), lets the in-process HNSW index catch up from the log, then
measures, for each ``--ef-search``:

* recall@k of the store's search against exact search (numpy, all vectors);
* queries per second in one process, for the index alone and for ``store.search``
  end to end (index + one read script that checks, filters and fetches the items);

and once per data set the snapshot (size, write time) and a cold start: a new client
and store restoring the snapshot and answering a first search.

Data sets (``--data``): ``random``, isotropic random unit vectors, HNSW's worst case
(a query's nearest neighbours are barely closer than any other vector); ``clustered``,
unit vectors around ``n / 100`` random centres, closer to what embedding models produce.

Usage::

    python bench/store_bench.py                 # 100k x 384, both data sets
    python bench/store_bench.py --n 20000 --data random --ef-search 64,512
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import valkey
from langgraph.store.base import PutOp

from streamstate.adapters.store import ValkeyStore
from streamstate.projections import vectors as vv
from streamstate.server import EmbeddedServer

Row = tuple[str, str, str, str]


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def make_data(kind: str, rng: np.random.Generator, n: int, q: int, dims: int) -> tuple:
    if kind == "random":
        return unit(rng.standard_normal((n, dims))), unit(rng.standard_normal((q, dims)))
    centres = unit(rng.standard_normal((max(1, n // 100), dims)))
    noise = 0.6 / np.sqrt(dims)

    def around(count: int) -> np.ndarray:
        picks = centres[rng.integers(0, len(centres), count)]
        return unit(picks + rng.standard_normal((count, dims)) * noise)

    return around(n), around(q)


@contextlib.contextmanager
def server_url(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedServer(Path(tmp)).start()
        try:
            yield server.url
        finally:
            server.stop()


def bench(url: str, kind: str, args: argparse.Namespace) -> list[Row]:
    rng = np.random.default_rng(args.seed)
    data, queries = make_data(kind, rng, args.n, args.queries, args.dims)

    def embed(texts: list[str]) -> list[list[float]]:
        # "v12" is data row 12, "q3" query row 3
        return [(data if t[0] == "v" else queries)[int(t[1:])].tolist() for t in texts]

    efs = [int(x) for x in args.ef_search.split(",")]
    index = {
        "collection_name": f"bench-{kind}-{time.time_ns()}",
        "dims": args.dims,
        "embed": embed,
        "fields": ["text"],
        "index_type": "hnsw",
        "hnsw_m": args.m,
        "hnsw_ef_construction": args.ef_construction,
        "hnsw_ef_runtime": efs[0],
        "snapshot_every": 10**9,
    }
    rows: list[Row] = []
    client = valkey.Valkey.from_url(url)
    store = ValkeyStore(client, index=index)  # type: ignore[arg-type]

    t0 = time.perf_counter()
    for start in range(0, args.n, args.batch):
        stop = min(start + args.batch, args.n)
        store.batch([PutOp(("bench",), str(i), {"text": f"v{i}"}) for i in range(start, stop)])
    ingest = time.perf_counter() - t0
    rows.append((f"[{kind}] puts (events appended) / s", f"{args.n / ingest:,.0f}", "", ""))

    t0 = time.perf_counter()
    store.setup()  # replay the log into the index
    rows.append(
        (f"[{kind}] index build from the log (s)", f"{time.perf_counter() - t0:.1f}", "", "")
    )
    live = store._core.vectors
    assert live is not None and len(live) == args.n

    exact = np.argsort(-(queries @ data.T), axis=1)[:, : args.k]
    want = [{str(i) for i in row} for row in exact]
    vv.EXACT_BELOW = 0  # always the approximate path, even for a small --n
    results: list = []
    for ef in efs:
        live.set_ef_search(ef)
        t0 = time.perf_counter()
        ranked = [live.rank(q, None, args.k) for q in queries.tolist()]
        index_qps = args.queries / (time.perf_counter() - t0)
        recall_index = sum(
            len({m.rsplit(b"\x00", 1)[1].decode() for m, _ in r.items} & w)
            for r, w in zip(ranked, want)
        ) / (args.queries * args.k)
        t0 = time.perf_counter()
        results = [
            store.search(("bench",), query=f"q{j}", limit=args.k) for j in range(args.queries)
        ]
        store_qps = args.queries / (time.perf_counter() - t0)
        recall_store = sum(len({h.key for h in got} & w) for got, w in zip(results, want)) / (
            args.queries * args.k
        )
        tag = f"[{kind}] ef={ef}"
        rows.append((f"{tag} recall@{args.k}, index", f"{recall_index:.3f}", ">= 0.95", ""))
        rows.append((f"{tag} recall@{args.k}, store.search", f"{recall_store:.3f}", ">= 0.95", ""))
        rows.append((f"{tag} queries / s, index", f"{index_qps:,.0f}", ">= 500", ""))
        rows.append((f"{tag} queries / s, store.search", f"{store_qps:,.0f}", ">= 500", ""))

    t0 = time.perf_counter()
    assert store.save_vectors(force=True)
    save = time.perf_counter() - t0
    key = vv.snapshot_key(store._core.settings.keys)
    size = sum(client.hstrlen(key, f) for f in client.hkeys(key))
    rows.append((f"[{kind}] snapshot size (MB)", f"{size / 2**20:,.0f}", "", ""))
    rows.append((f"[{kind}] snapshot write (s)", f"{save:.2f}", "", ""))
    client.close()

    t0 = time.perf_counter()
    cold_client = valkey.Valkey.from_url(url)
    cold = ValkeyStore(cold_client, index=index)  # type: ignore[arg-type]
    first = cold.search(("bench",), query="q0", limit=args.k)
    cold_start = time.perf_counter() - t0
    assert cold._core.vectors is not None and cold._core.vectors.unsaved == 0
    assert len(first) == args.k
    rows.append((f"[{kind}] cold start from snapshot (s)", f"{cold_start:.2f}", "< 3", ""))
    cold_client.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dims", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=128)
    ap.add_argument("--ef-search", default="64,256,1024", help="comma-separated")
    ap.add_argument("--data", default="clustered,random", help="clustered and/or random")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--url", default=None, help="Valkey URL (default: embedded server)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rows: list[Row] = []
    with server_url(args.url) as url:
        for kind in args.data.split(","):
            rows += bench(url, kind, args)
    rows = [_ratio(r) for r in rows]
    print(
        f"\nValkeyStore vector search: n={args.n:,} dims={args.dims} k={args.k} "
        f"queries={args.queries} M={args.m} ef_construction={args.ef_construction}"
    )
    header = ("metric", "value", "target", "ratio")
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))


def _ratio(row: tuple[str, str, str, str]) -> tuple[str, str, str, str]:
    """value / target (>= 1 meets it; for '<' targets, target / value)."""
    name, value, target, _ = row
    if not target:
        return row
    v = float(value.replace(",", ""))
    t = float(target.split()[-1])
    ratio = t / v if target.startswith("<") else v / t
    return (name, value, target, f"{ratio:.2f}{' ok' if ratio >= 1 else ' MISS'}")


if __name__ == "__main__":
    main()
