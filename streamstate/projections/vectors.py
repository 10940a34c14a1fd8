"""The store's vector index: an in-process projection of the store stream.

Vectors are computed once, at put time, and travel in :class:`ItemPut` events; the index
only ever replays them (it never embeds). Each process keeps its own index and catches
up from the last stream id it applied before each search, so it sees every process's
puts and deletes. A snapshot (index bytes, label map and the stream id it covers) is
kept in Valkey under the store session, so a new process restores it and replays only
the tail of the stream.

Compaction keeps entry ids, so snapshots and ``last_id`` stay valid. Removals that
leave no entry (expired items swept, tombstones dropped by a repack) reach an index
that had not caught up only through reads: a vector search reports candidates the
store no longer holds and the index forgets them (:meth:`VectorIndex.forget`).

Two kinds: ``"hnsw"`` (usearch, approximate) and ``"flat"`` (numpy, exact, float64 so
that scores equal LangGraph's ``InMemoryStore`` cosine). Scores are similarities,
higher is closer: cosine similarity, inner product, or minus the Euclidean distance.
An item may hold several vectors (several fields, or ``a[*].b`` paths); its score is
the best of them, as in ``InMemoryStore``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import msgspec
import numpy as np

from streamstate.eventlog.events import Event, ItemDeleted, ItemPut, LogEntry
from streamstate.eventlog.keys import SessionKeys
from streamstate.projections.items import member

Kind = Literal["hnsw", "flat"]
Metric = Literal["cosine", "l2", "inner_product"]

SNAPSHOT_FORMAT = 1
CHUNK = 64 << 20
"""Snapshot blobs are split into hash fields of at most this many bytes."""
EXACT_BELOW = 4096
"""An HNSW search whose prefix selects at most this many vectors is answered exactly."""

_USEARCH_METRIC = {"cosine": "cos", "l2": "l2sq", "inner_product": "ip"}


def stream_id(entry_id: str) -> tuple[int, int]:
    """A stream id as a comparable pair (``"0-0"`` is the start)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class IndexSpec:
    """What an index is: a snapshot made with another spec is not reused."""

    dims: int
    kind: Kind = "hnsw"
    metric: Metric = "cosine"
    m: int = 16
    ef_construction: int = 128
    ef_search: int = 64


@dataclass(frozen=True)
class Ranked:
    """Candidates best first: ``(member, score)``; ``exhausted`` when none were left out."""

    items: list[tuple[bytes, float]]
    exhausted: bool


class _Meta(msgspec.Struct, array_like=True):
    """A snapshot's map from labels to items, as packed arrays (fast to restore)."""

    format: int
    spec: tuple[int, str, str, int, int]
    last_id: str
    next_label: int
    sizes: bytes
    """uint32 length of each member, in item order."""
    members: bytes
    """The members, concatenated."""
    counts: bytes
    """uint32 number of labels of each item."""
    labels: bytes
    """uint64 labels, item by item (flat kind: matrix row i holds label i)."""


class VectorIndex:
    """Vectors of every indexed item of one store session, by member.

    Thread-safe: every public method holds the index's lock.

    Args:
        spec: Dimensions, kind, metric and HNSW parameters.
    """

    name = "vectors"

    def __init__(self, spec: IndexSpec) -> None:
        if spec.dims <= 0:
            raise ValueError(f"dims must be positive, got {spec.dims}")
        self.spec = spec
        self.last_id = "0-0"
        """The last stream entry applied."""
        self.unsaved = 0
        """Entries applied since the last snapshot was written or read."""
        self._lock = threading.RLock()
        self._next = 1
        self._labels: dict[bytes, list[int]] = {}
        self._owner: dict[int, bytes] = {}
        self._by_ns: dict[bytes, set[bytes]] = {}
        self._ns_vectors: dict[bytes, int] = {}
        self._count = 0
        if spec.kind == "hnsw":
            self._hnsw = self._new_hnsw()
        else:
            # one matrix row per vector; free rows are reused. Per row: its label (0:
            # free), whether it is live, and its norm, so a query is one matrix product
            self._rows: dict[int, int] = {}
            self._free: list[int] = []
            self._matrix = np.zeros((0, spec.dims), dtype=np.float64)
            self._row_labels: list[int] = []
            self._live = np.zeros(0, dtype=bool)
            self._norms = np.zeros(0, dtype=np.float64)
            # each row's namespace as a small int, so a prefix covering much of the
            # index is a mask over the matrix rather than a gather of its rows
            self._ns_ids: dict[bytes, int] = {}
            self._row_ns = np.zeros(0, dtype=np.int64)

    # -- the projection ------------------------------------------------------------

    def apply(self, entry_id: str, event: Event) -> None:
        """Apply one log entry (entries at or before :attr:`last_id` are ignored)."""
        self.apply_entries([LogEntry(entry_id, event)])

    def apply_entries(self, entries: Iterable[LogEntry]) -> int:
        """Apply entries in log order; returns how many were new."""
        with self._lock:
            last = stream_id(self.last_id)
            pending: dict[int, np.ndarray] = {}
            applied = 0
            for entry in entries:
                if stream_id(entry.id) <= last:
                    continue
                match entry.event:
                    case ItemPut(namespace=ns, key=key, vectors=vectors):
                        m = member(ns, key)
                        self._drop(m, pending)
                        if vectors:
                            labels = []
                            for fv in vectors:
                                if len(fv.vector) != self.spec.dims:
                                    raise ValueError(
                                        f"vector of {len(fv.vector)} dims for {ns}/{key}, "
                                        f"index has {self.spec.dims}"
                                    )
                                label = self._next
                                self._next += 1
                                pending[label] = np.asarray(fv.vector, dtype=np.float64)
                                labels.append(label)
                            self._keep(m, labels)
                    case ItemDeleted(namespace=ns, key=key):
                        self._drop(member(ns, key), pending)
                    case _:
                        pass
                last = stream_id(entry.id)
                self.last_id = entry.id
                applied += 1
            self._add(pending)
            self.unsaved += applied
            return applied

    def forget(self, members: Iterable[bytes], at: str) -> int:
        """Drop items the store no longer holds although no entry said so.

        A sweep of expired items writes no event, and a repack deletes tombstones, so an
        index that had not caught up keeps their vectors. A read that found no record for
        these members saw the log end at ``at``; they are dropped only if the index still
        stands there (an entry applied since may have put them again). Returns how many
        were dropped.
        """
        with self._lock:
            if self.last_id != at:
                return 0
            pending: dict[int, np.ndarray] = {}
            dropped = 0
            for m in members:
                if m in self._labels:
                    self._drop(m, pending)
                    dropped += 1
            self.unsaved += dropped
            return dropped

    def view_keys(self, keys: SessionKeys) -> Sequence[str]:
        """The one Valkey key this view keeps: its snapshot."""
        return [snapshot_key(keys)]

    def set_ef_search(self, ef: int) -> None:
        """Change the HNSW search breadth (recall against speed); no-op for ``flat``."""
        with self._lock:
            self.spec = replace(self.spec, ef_search=ef)
            if self.spec.kind == "hnsw":
                self._hnsw.expansion_search = ef

    # -- queries ---------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    def has(self, m: bytes) -> bool:
        return m in self._labels

    def rank(self, query: Sequence[float], prefix: bytes | None, k: int) -> Ranked:
        """The ``k`` best items whose namespace starts with ``prefix`` (``None``: all).

        Items are ranked by their best vector's score, ties broken by member (that is
        ``(namespace, key)``) order, so exact rankings are deterministic.
        """
        q = np.asarray(query, dtype=np.float64)
        if q.shape != (self.spec.dims,):
            raise ValueError(f"query has {q.shape[0]} dims, index has {self.spec.dims}")
        with self._lock:
            namespaces = self._selected(prefix)
            if namespaces is None:
                n_items, n_vectors = len(self._labels), self._count
            else:
                n_items = sum(len(self._by_ns[ns]) for ns in namespaces)
                n_vectors = sum(self._ns_vectors[ns] for ns in namespaces)
            if n_items == 0 or k <= 0:
                return Ranked([], n_items == 0)
            if self.spec.kind == "flat":
                best = self._exact_rows(q, namespaces, k)
                complete = len(best) >= n_items  # else the caller may widen k
            elif n_vectors <= max(EXACT_BELOW, 8 * k):
                members = (
                    list(self._labels)
                    if namespaces is None
                    else [m for ns in namespaces for m in self._by_ns[ns]]
                )
                best = self._exact(q, members, k)
                complete = len(best) >= n_items
            else:
                best, complete = self._approximate(q, prefix, k, n_vectors)
            return Ranked(_top(best, k), complete and k >= len(best))

    # -- snapshots -------------------------------------------------------------------

    def to_snapshot(self) -> dict[bytes, bytes]:
        """The index as hash fields (``meta``, ``blob.0`` ...), for ``SAVE_SNAPSHOT``."""
        with self._lock:
            members = list(self._labels)
            label_lists = list(self._labels.values())
            labels = np.fromiter(
                (label for ls in label_lists for label in ls), dtype=np.uint64, count=self._count
            )
            if self.spec.kind == "hnsw":
                blob = bytes(self._hnsw.save())
            else:
                rows = [self._rows[label] for label in labels.tolist()]
                blob = np.ascontiguousarray(self._matrix[rows]).tobytes()
            meta = _Meta(
                format=SNAPSHOT_FORMAT,
                spec=_spec_tuple(self.spec),
                last_id=self.last_id,
                next_label=self._next,
                sizes=np.fromiter(map(len, members), np.uint32, len(members)).tobytes(),
                members=b"".join(members),
                counts=np.fromiter(map(len, label_lists), np.uint32, len(members)).tobytes(),
                labels=labels.tobytes(),
            )
            fields = {b"meta": msgspec.msgpack.encode(meta), b"id": self.last_id.encode()}
            for n, start in enumerate(range(0, max(len(blob), 1), CHUNK)):
                fields[f"blob.{n}".encode()] = blob[start : start + CHUNK]
            self.unsaved = 0
            return fields

    @classmethod
    def from_snapshot(cls, spec: IndexSpec, fields: Mapping[bytes, bytes]) -> VectorIndex | None:
        """Restore a snapshot; ``None`` when there is none or it was made with another spec."""
        raw = fields.get(b"meta")
        if not raw:
            return None
        meta = msgspec.msgpack.decode(raw, type=_Meta)
        if meta.format != SNAPSHOT_FORMAT or tuple(meta.spec) != _spec_tuple(spec):
            return None
        chunks = sorted(
            (int(k.split(b".")[1]), v) for k, v in fields.items() if k.startswith(b"blob.")
        )
        blob = b"".join(v for _, v in chunks)
        index = cls(spec)
        index.last_id = meta.last_id
        index._next = meta.next_label
        index._restore_maps(meta)
        if spec.kind == "hnsw":
            from usearch.index import Index

            restored = Index.restore(blob)
            if restored is None:
                return None
            restored.expansion_search = spec.ef_search  # type: ignore[misc]  # a setter in usearch
            index._hnsw = restored
        else:
            index._matrix = np.frombuffer(blob, dtype=np.float64).reshape(-1, spec.dims).copy()
            index._rows = {label: row for row, label in enumerate(index._owner)}
            index._row_labels = list(index._owner)
            index._live = np.ones(len(index._row_labels), dtype=bool)
            index._norms = np.linalg.norm(index._matrix, axis=1)
            index._row_ns = np.fromiter(
                (index._ns_id(_ns_of(m)) for m in index._owner.values()),
                dtype=np.int64,
                count=len(index._owner),
            )
        index.unsaved = 0
        return index

    def _restore_maps(self, meta: _Meta) -> None:
        ends = np.cumsum(np.frombuffer(meta.sizes, dtype=np.uint32), dtype=np.int64).tolist()
        packed = meta.members
        members = [packed[a:b] for a, b in zip([0, *ends], ends)]
        counts = np.frombuffer(meta.counts, dtype=np.uint32)
        labels = np.frombuffer(meta.labels, dtype=np.uint64).tolist()
        if len(labels) == len(members):  # one vector per item, the common case
            self._labels = {m: [label] for m, label in zip(members, labels)}
            self._owner = dict(zip(labels, members))
        else:
            bounds = np.cumsum(counts, dtype=np.int64).tolist()
            lists = [labels[a:b] for a, b in zip([0, *bounds], bounds)]
            self._labels = dict(zip(members, lists))
            self._owner = {label: m for m, ls in zip(members, lists) for label in ls}
        for m, ls in self._labels.items():
            ns = m[: m.index(b"\x00\x00")]
            group = self._by_ns.get(ns)
            if group is None:
                group = self._by_ns[ns] = set()
                self._ns_vectors[ns] = 0
            group.add(m)
            self._ns_vectors[ns] += len(ls)
        self._count = len(labels)

    # -- internals -------------------------------------------------------------------

    def _new_hnsw(self) -> Any:
        from usearch.index import Index

        return Index(
            ndim=self.spec.dims,
            metric=_USEARCH_METRIC[self.spec.metric],
            dtype="f32",
            connectivity=self.spec.m,
            expansion_add=self.spec.ef_construction,
            expansion_search=self.spec.ef_search,
        )

    def _keep(self, m: bytes, labels: list[int]) -> None:
        self._labels[m] = labels
        for label in labels:
            self._owner[label] = m
        ns = _ns_of(m)
        self._by_ns.setdefault(ns, set()).add(m)
        self._ns_vectors[ns] = self._ns_vectors.get(ns, 0) + len(labels)
        self._count += len(labels)

    def _drop(self, m: bytes, pending: dict[int, np.ndarray]) -> None:
        labels = self._labels.pop(m, None)
        if not labels:
            return
        ns = _ns_of(m)
        members = self._by_ns[ns]
        members.discard(m)
        self._ns_vectors[ns] -= len(labels)
        if not members:
            del self._by_ns[ns], self._ns_vectors[ns]
        stored = []
        for label in labels:
            del self._owner[label]
            if pending.pop(label, None) is None:
                stored.append(label)
        self._count -= len(labels)
        if not stored:
            return
        if self.spec.kind == "hnsw":
            self._hnsw.remove(np.asarray(stored, dtype=np.uint64))
        else:
            for label in stored:
                row = self._rows.pop(label)
                self._free.append(row)
                self._row_labels[row] = 0
                self._live[row] = False

    def _add(self, pending: dict[int, np.ndarray]) -> None:
        if not pending:
            return
        labels = np.fromiter(pending, dtype=np.uint64, count=len(pending))
        vectors = np.stack(list(pending.values()))
        if self.spec.kind == "hnsw":
            self._hnsw.add(labels, vectors.astype(np.float32))
            return
        need = len(pending) - len(self._free)
        if need > 0:
            start = self._matrix.shape[0]
            grow = max(need, start // 2, 64)
            self._matrix = np.vstack([self._matrix, np.zeros((grow, self.spec.dims))])
            self._live = np.concatenate([self._live, np.zeros(grow, dtype=bool)])
            self._row_ns = np.concatenate([self._row_ns, np.zeros(grow, dtype=np.int64)])
            self._norms = np.concatenate([self._norms, np.zeros(grow)])
            self._row_labels.extend([0] * grow)
            self._free.extend(range(start + grow - 1, start - 1, -1))
        rows = [self._free.pop() for _ in range(len(pending))]
        for label, row in zip(labels.tolist(), rows):
            self._rows[label] = row
            self._row_labels[row] = label
        self._matrix[rows] = vectors
        self._live[rows] = True
        self._row_ns[rows] = [self._ns_id(_ns_of(self._owner[label])) for label in pending]
        self._norms[rows] = np.linalg.norm(vectors, axis=1)

    def _selected(self, prefix: bytes | None) -> list[bytes] | None:
        """Namespaces under ``prefix`` (``None``: no prefix, everything)."""
        if not prefix:
            return None
        below = prefix + b"\x00"
        return [ns for ns in self._by_ns if ns == prefix or ns.startswith(below)]

    def _vectors_of(self, labels: list[int]) -> np.ndarray:
        if self.spec.kind == "flat":
            return self._matrix[[self._rows[label] for label in labels]]
        got = self._hnsw.get(np.asarray(labels, dtype=np.uint64), dtype="f32")
        return np.stack(got).astype(np.float64)

    def _exact_rows(
        self, q: np.ndarray, namespaces: list[bytes] | None, k: int
    ) -> dict[bytes, float]:
        """Exact scores from the flat matrix: one product over the rows in scope."""
        in_scope = None if namespaces is None else sum(self._ns_vectors[ns] for ns in namespaces)
        if in_scope is None or in_scope * 8 >= self._count:
            scores = similarity(self.spec.metric, q, self._matrix, self._norms)
            keep = self._live
            if namespaces is not None:
                keep = keep & np.isin(self._row_ns, [self._ns_ids[ns] for ns in namespaces])
            scores[~keep] = -np.inf
            labels = self._row_labels
            return self._settle(scores, lambda picked: [labels[i] for i in picked], k)
        assert namespaces is not None  # the whole index was handled above
        rows = np.fromiter(
            (
                self._rows[label]
                for ns in namespaces
                for m in self._by_ns[ns]
                for label in self._labels[m]
            ),
            dtype=np.int64,
        )
        scores = similarity(self.spec.metric, q, self._matrix[rows], self._norms[rows])
        return self._settle(
            scores, lambda picked: [self._row_labels[r] for r in rows[picked].tolist()], k
        )

    def _ns_id(self, ns: bytes) -> int:
        got = self._ns_ids.get(ns)
        if got is None:
            got = self._ns_ids[ns] = len(self._ns_ids)
        return got

    def _exact(self, q: np.ndarray, members: list[bytes], k: int) -> dict[bytes, float]:
        """Exact scores of the members' vectors (an HNSW index too small to search)."""
        labels = [label for m in members for label in self._labels[m]]
        if not labels:
            return {}
        scores = similarity(self.spec.metric, q, self._vectors_of(labels))
        return self._settle(scores, lambda picked: [labels[i] for i in picked], k)

    def _settle(
        self, scores: np.ndarray, labels_of: Callable[[list[int]], list[int]], k: int
    ) -> dict[bytes, float]:
        """Each owner's best score, for just enough of the highest ``scores`` to settle
        the top ``k`` items: every item holding one of the k best scores, and every item
        that ties with the k-th (ties are ordered by member)."""
        n = len(scores)
        m = min(n, max(4 * k, 64))
        while True:
            top = np.argpartition(-scores, m - 1)[:m] if m < n else np.arange(n)
            best = self._best_per_owner(top, scores, labels_of)
            if len(best) >= k or m >= n:
                break
            m = min(n, m * 4)
        if len(best) >= k:
            kth = sorted((round(v, 12) for v in best.values()), reverse=True)[k - 1]
            best = self._best_per_owner(np.flatnonzero(scores >= kth - 1e-12), scores, labels_of)
        return best

    def _best_per_owner(
        self,
        picked: np.ndarray,
        scores: np.ndarray,
        labels_of: Callable[[list[int]], list[int]],
    ) -> dict[bytes, float]:
        best: dict[bytes, float] = {}
        indices = picked.tolist()
        for label, score in zip(labels_of(indices), scores[picked].tolist()):
            if score == -math.inf:
                continue
            m = self._owner[label]
            if score > best.get(m, -math.inf):
                best[m] = score
        return best

    def _approximate(
        self, q: np.ndarray, prefix: bytes | None, k: int, n_vectors: int
    ) -> tuple[dict[bytes, float], bool]:
        # Over-fetch for items holding several vectors and for the prefix's share of
        # the index; the caller widens k when filters leave too few.
        share = max(n_vectors, 1) / max(self._count, 1)
        count = min(self._count, max(2 * k, math.ceil(2 * k / share)))
        matches = self._hnsw.search(q.astype(np.float32), count)
        best: dict[bytes, float] = {}
        below = prefix + b"\x00" if prefix else None
        for label, distance in zip(matches.keys.tolist(), matches.distances.tolist()):
            m = self._owner.get(label)
            if m is None or (below is not None and not m.startswith(below)):
                continue
            score = _score_from_distance(self.spec.metric, distance)
            if score > best.get(m, -math.inf):
                best[m] = score
        return best, count >= self._count


def similarity(
    metric: Metric, q: np.ndarray, vectors: np.ndarray, norms: np.ndarray | None = None
) -> np.ndarray:
    """Exact scores of ``vectors`` against ``q`` (cosine as LangGraph's InMemoryStore);
    ``norms`` are the vectors' norms when the caller keeps them."""
    if metric == "inner_product":
        return vectors @ q
    if metric == "l2":
        return -np.linalg.norm(vectors - q, axis=1)
    if norms is None:
        norms = np.linalg.norm(vectors, axis=1)
    # zero vectors score 0; no boolean indexing of ``vectors``, which would copy them
    denominators = norms * np.linalg.norm(q)
    return np.divide(vectors @ q, denominators, out=np.zeros(len(vectors)), where=denominators != 0)


def _score_from_distance(metric: Metric, distance: float) -> float:
    if metric == "l2":
        return -math.sqrt(max(distance, 0.0))
    return 1.0 - distance


def _top(best: dict[bytes, float], k: int) -> list[tuple[bytes, float]]:
    # Items sharing a text tie; rounding keeps float noise from breaking a tie.
    return sorted(best.items(), key=lambda kv: (-round(kv[1], 12), kv[0]))[:k]


def _ns_of(m: bytes) -> bytes:
    return m[: m.index(b"\x00\x00")]


def _spec_tuple(spec: IndexSpec) -> tuple[int, str, str, int, int]:
    return (spec.dims, spec.kind, spec.metric, spec.m, spec.ef_construction)


def snapshot_key(keys: SessionKeys) -> str:
    """The hash holding the store session's vector index snapshot."""
    return keys.view("vectors")
