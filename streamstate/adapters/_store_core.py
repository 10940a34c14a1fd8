"""The pure core of the Valkey store: LangGraph store ops to log events and view reads.

A store batch is one flow (a generator, see ``streamstate.eventlog._drive``) that yields
what needs I/O and receives the replies:

* :class:`EmbedDocuments` / :class:`EmbedQueries`: texts the shell embeds, with the sync
  or the async embeddings API (the only difference between the two shells);
* ``ScriptCall`` / ``Command``: what the shell runs on its event log's executor.

Round trips of one batch: gets, filter searches and namespace listings share one read
script; vector searches join it (the same script first checks that the in-process
vector index has seen the whole log, and hands back what it missed); all puts and
deletes are one atomic write script, which also reclaims what they supersede and does a
bounded share of the sweep and of a repack (``streamstate.projections.items``). Reads
run before writes, as in LangGraph's ``InMemoryStore``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from langchain_core.embeddings import Embeddings
from langgraph.store.base import (
    GetOp,
    IndexConfig,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    ensure_embeddings,
    get_text_at_path,
    tokenize_path,
    validate_op_namespace,
)
from typing_extensions import NotRequired

from streamstate.errors import ConfigError
from streamstate.eventlog._drive import Flow
from streamstate.eventlog.codec import Codec
from streamstate.eventlog.events import FieldVector, ItemDeleted, ItemPut, LogEntry
from streamstate.eventlog.keys import Keyspace, SessionKeys
from streamstate.eventlog.valkey import _core as logcore
from streamstate.eventlog.valkey._core import Command, ScriptCall, check_payload
from streamstate.eventlog.valkey.scripts import LuaScript
from streamstate.projections import items as views
from streamstate.projections.vectors import IndexSpec, Ranked, VectorIndex, snapshot_key

DEFAULT_COLLECTION = "default"
CATCH_UP_PAGE = 1000
"""Log entries handed back per read when the vector index is behind."""
MAINTAIN_PAGE = 1000
"""Expired items examined, or entries copied, per call of ``compact`` and ``sweep``."""
SNAPSHOT_EVERY = 10_000
"""Default: write the vector index snapshot after this many newly applied entries."""
_RANGE_OPS = {"$gt": "gt", "$gte": "ge", "$lt": "lt", "$lte": "le"}
_DISTANCES = {
    "cosine": "cosine",
    "l2": "l2",
    "inner_product": "inner_product",
    "COSINE": "cosine",
    "L2": "l2",
    "IP": "inner_product",
}


class ValkeyIndexConfig(IndexConfig, total=False):
    """Semantic search settings: LangGraph's ``IndexConfig`` plus the index's own.

    Keys as in ``langgraph-checkpoint-aws``; ``distance_type`` follows LangGraph's
    Postgres store and ``distance_metric`` (``COSINE``/``L2``/``IP``) is accepted too.
    """

    collection_name: NotRequired[str]
    """Names the store session (``("store", collection_name)``); default ``"default"``."""
    timezone: NotRequired[str]
    """Zone of the items' ``created_at``/``updated_at`` (IANA name); default UTC."""
    index_type: NotRequired[Literal["hnsw", "flat"]]
    """``"hnsw"`` (usearch, approximate; default) or ``"flat"`` (exact)."""
    distance_type: NotRequired[Literal["cosine", "l2", "inner_product"]]
    distance_metric: NotRequired[Literal["COSINE", "L2", "IP"]]
    hnsw_m: NotRequired[int]
    """HNSW links per node (default 16)."""
    hnsw_ef_construction: NotRequired[int]
    """HNSW candidate list while inserting (default 128)."""
    hnsw_ef_runtime: NotRequired[int]
    """HNSW candidate list while searching (default 64; raised to the k asked for)."""
    snapshot_every: NotRequired[int]
    """Write the index snapshot after this many new log entries (default 10 000)."""


@dataclass(frozen=True)
class EmbedDocuments:
    """Embed these texts as documents (``Embeddings.embed_documents``)."""

    texts: list[str]


@dataclass(frozen=True)
class EmbedQueries:
    """Embed each text as a query (``Embeddings.embed_query``)."""

    texts: list[str]


# KEYS[1]: snapshot hash. ARGV[1]: stream id it covers, then field, value pairs.
# A snapshot never replaces one that covers more of the log. Reply: 1 written, 0 not.
SAVE_SNAPSHOT = LuaScript(
    "store_save_vectors",
    r"""
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local cur = redis.call('HGET', KEYS[1], 'id')
if cur then
  local a, b = parse(ARGV[1])
  local c, d = parse(cur)
  if a < c or (a == c and b <= d) then return 0 end
end
redis.call('DEL', KEYS[1])
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
""",
)


@dataclass(frozen=True)
class StoreSettings:
    """A store's resolved configuration."""

    session: tuple[str, str]
    keys: SessionKeys
    tz: tzinfo
    embeddings: Embeddings | None
    fields: list[tuple[str, str | list[str]]]
    spec: IndexSpec | None
    snapshot_every: int

    @property
    def view_keys(self) -> list[str]:
        """KEYS of the read script: the log, the item views, the refreshed expiries."""
        return views.read_keys(self.keys)


def resolve_settings(
    keyspace: Keyspace, index: Mapping[str, Any] | None, ttl: TTLConfig | None
) -> StoreSettings:
    """Check and resolve the constructor's ``index`` and ``ttl``.

    Raises:
        ConfigError: naming the offending key.
    """
    if ttl is not None:
        default = ttl.get("default_ttl")
        if default is not None and (
            isinstance(default, bool) or not isinstance(default, (int, float)) or default < 0
        ):
            raise ConfigError(f"ttl['default_ttl'] must be minutes >= 0, got {default!r}")
        given: dict[str, Any] = dict(ttl)
        for flag in ("refresh_on_read", "omit_expired"):
            if flag in given and not isinstance(given[flag], bool):
                raise ConfigError(f"ttl[{flag!r}] must be True or False, got {given[flag]!r}")
        every = given.get("sweep_interval_minutes")
        if every is not None and (
            isinstance(every, bool) or not isinstance(every, (int, float)) or every <= 0
        ):
            raise ConfigError(f"ttl['sweep_interval_minutes'] must be minutes > 0, got {every!r}")
    index = dict(index or {})
    collection = index.get("collection_name", DEFAULT_COLLECTION)
    if not isinstance(collection, str) or not collection:
        raise ConfigError(f"index['collection_name'] must be a non-empty string: {collection!r}")
    session = ("store", collection)
    tz = _zone(index.get("timezone", "UTC"))
    if not index or set(index) <= {"collection_name", "timezone"}:
        return StoreSettings(session, keyspace.session(session), tz, None, [], None, SNAPSHOT_EVERY)
    for required in ("dims", "embed"):
        if index.get(required) is None:
            raise ConfigError(f"index[{required!r}] is required for semantic search")
    dims = index["dims"]
    if not isinstance(dims, int) or dims <= 0:
        raise ConfigError(f"index['dims'] must be a positive int, got {dims!r}")
    kind = index.get("index_type", "hnsw")
    if kind not in ("hnsw", "flat"):
        raise ConfigError(f"index['index_type'] must be 'hnsw' or 'flat', got {kind!r}")
    metric = _metric(index)
    paths = index.get("fields") or ["$"]
    spec = IndexSpec(
        dims=dims,
        kind=kind,
        metric=metric,  # type: ignore[arg-type]
        m=_positive(index, "hnsw_m", 16),
        ef_construction=_positive(index, "hnsw_ef_construction", 128),
        ef_search=_positive(index, "hnsw_ef_runtime", 64),
    )
    return StoreSettings(
        session=session,
        keys=keyspace.session(session),
        tz=tz,
        embeddings=ensure_embeddings(index["embed"]),
        fields=[(p, p if p == "$" else tokenize_path(p)) for p in paths],
        spec=spec,
        snapshot_every=_positive(index, "snapshot_every", SNAPSHOT_EVERY),
    )


def _zone(name: Any) -> tzinfo:
    if name in ("UTC", "utc", None):
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ConfigError(f"index['timezone'] is not a known zone: {name!r}") from exc


def _metric(index: Mapping[str, Any]) -> str:
    given = {k: index[k] for k in ("distance_type", "distance_metric") if k in index}
    resolved = {k: _DISTANCES.get(v) for k, v in given.items()}
    for k, v in resolved.items():
        if v is None:
            raise ConfigError(
                f"index[{k!r}] must be one of cosine, l2, inner_product "
                f"(or COSINE, L2, IP), got {given[k]!r}"
            )
    if len(set(resolved.values())) > 1:
        raise ConfigError(f"index['distance_type'] and index['distance_metric'] disagree: {given}")
    return next(iter(resolved.values()), "cosine")  # type: ignore[return-value]


def _positive(index: Mapping[str, Any], key: str, default: int) -> int:
    value = index.get(key, default)
    if not isinstance(value, int) or value <= 0:
        raise ConfigError(f"index[{key!r}] must be a positive int, got {value!r}")
    return value


# -- validation and filters ---------------------------------------------------------


def validate_op(op: Op) -> None:
    """LangGraph's namespace rules, for ops that reach ``batch`` directly.

    Raises:
        InvalidNamespaceError: an empty namespace for a put or delete, a label that is
            empty, not a string, or holds ``.`` or NUL; ``"langgraph"`` as a put's root.
        ValueError: a negative ``limit``, ``offset`` or ``max_depth``.
    """
    validate_op_namespace(op)
    if isinstance(op, PutOp):
        if not op.namespace:
            raise InvalidNamespaceError("Namespace cannot be empty.")
        if op.value is not None and op.namespace[0] == "langgraph":
            raise InvalidNamespaceError(
                f'Root label for namespace cannot be "langgraph". Got: {op.namespace}'
            )
        if op.ttl is not None and op.ttl < 0:
            raise ValueError(f"ttl must be minutes >= 0, got {op.ttl}")
    elif isinstance(op, (SearchOp, ListNamespacesOp)):
        if op.limit < 0 or op.offset < 0:
            raise ValueError(f"limit and offset must be >= 0, got {op.limit}, {op.offset}")
        if isinstance(op, ListNamespacesOp) and op.max_depth is not None and op.max_depth < 0:
            raise ValueError(f"max_depth must be >= 0, got {op.max_depth}")
    elif not isinstance(op, GetOp):
        raise ValueError(f"Unknown operation type: {type(op)}")


def compile_filter(flt: Mapping[str, Any] | None) -> list[list[Any]]:
    """LangGraph's filter dict as the read script's conditions (see ``ITEMS_READ``).

    Semantics are ``InMemoryStore``'s: plain values compare with Python equality, a
    nested dict requires a dict and matches key by key, a list requires a list of the
    same length matched element by element, and ``$eq $ne $gt $gte $lt $lte`` apply to
    the value (the range operators compare ``float()`` of both sides; a value that has
    no float matches nothing instead of raising).

    Raises:
        ValueError: an unknown operator, a non-numeric range bound, a non-string key.
    """
    out: list[list[Any]] = []
    for key, expected in (flt or {}).items():
        _compile([_key(key)], expected, out)
    return out


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise ValueError(f"filter keys must be strings, got {key!r}")
    return key


def _compile(path: list[Any], expected: Any, out: list[list[Any]]) -> None:
    if isinstance(expected, dict):
        if any(_key(k).startswith("$") for k in expected):
            for op, arg in expected.items():
                if op in ("$eq", "$ne"):
                    out.append([path, op[1:], msgspec.msgpack.encode(arg)])
                elif op in _RANGE_OPS:
                    out.append([path, _RANGE_OPS[op], float(arg)])
                else:
                    raise ValueError(f"Unsupported operator: {op}")
            return
        out.append([path, "d", 0])
        for k, v in expected.items():
            _compile([*path, _key(k)], v, out)
    elif isinstance(expected, (list, tuple)):
        out.append([path, "l", len(expected)])
        for i, v in enumerate(expected):
            _compile([*path, i + 1], v, out)
    else:
        out.append([path, "eq", msgspec.msgpack.encode(expected)])


def prefix_range(prefix: Sequence[str]) -> tuple[bytes, bytes]:
    """ZRANGEBYLEX bounds of every member whose namespace starts with ``prefix``."""
    if not prefix:
        return b"-", b"+"
    ns = views.namespace_bytes(prefix)
    return b"[" + ns + b"\x00", b"(" + ns + b"\x01"


# -- planning puts ------------------------------------------------------------------


def texts_to_embed(
    settings: StoreSettings, puts: Iterable[PutOp]
) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """The distinct texts to embed, and per put its ``(path, text)`` pairs.

    Paths follow ``InMemoryStore``: a field yielding several texts (``a[*].b``) gives
    paths ``a[*].b.0``, ``a[*].b.1``...; ``index=False`` or no index config gives none.
    """
    texts: dict[str, None] = {}
    per_put: list[list[tuple[str, str]]] = []
    for op in puts:
        pairs: list[tuple[str, str]] = []
        if settings.embeddings is not None and op.value is not None and op.index is not False:
            fields = (
                settings.fields
                if op.index is None
                else [(p, p if p == "$" else tokenize_path(p)) for p in op.index]
            )
            for path, tokens in fields:
                found = get_text_at_path(op.value, tokens)
                if len(found) == 1:
                    pairs.append((path, found[0]))
                else:
                    pairs.extend((f"{path}.{i}", text) for i, text in enumerate(found))
        for _, text in pairs:
            texts[text] = None
        per_put.append(pairs)
    return list(texts), per_put


def events_for_puts(
    settings: StoreSettings,
    puts: Sequence[PutOp],
    texts: Sequence[str],
    vectors: Sequence[Sequence[float]],
    per_put: Sequence[Sequence[tuple[str, str]]],
    now: float,
) -> list[ItemPut | ItemDeleted]:
    """The events of a batch's writes (one per item: the last op on it wins)."""
    if len(vectors) != len(texts):
        raise ValueError(f"embed returned {len(vectors)} vectors for {len(texts)} texts")
    by_text = dict(zip(texts, vectors))
    dims = settings.spec.dims if settings.spec else None
    events: list[ItemPut | ItemDeleted] = []
    for op, pairs in zip(puts, per_put):
        ns = tuple(op.namespace)
        if op.value is None:
            events.append(ItemDeleted(ns, str(op.key), now))
            continue
        fvs = []
        for path, text in pairs:
            vector = [float(x) for x in by_text[text]]
            if len(vector) != dims:
                raise ValueError(f"embed returned {len(vector)} dims, index['dims'] is {dims}")
            fvs.append(FieldVector(path, vector))
        value = msgspec.msgpack.encode(dict(op.value))
        events.append(ItemPut(ns, str(op.key), value, now, now, op.ttl, fvs))
    return events


# -- reading replies ----------------------------------------------------------------


def read_item(
    m: bytes, rec: bytes, created: bytes, tz: tzinfo, score: float | None = None, *, search: bool
) -> Item:
    """An item from its view record and ``created`` value (see ``projections.items``)."""
    _, body = views.split_ref(rec)
    _, updated_at, _, _ = views.RECORD.unpack_from(body)
    value = msgspec.msgpack.decode(body[views.RECORD.size :])
    ns, key = views.split_member(m)
    made = views.created_at(created)
    created_at = updated_at if made is None else made
    c = datetime.fromtimestamp(created_at, tz)
    u = datetime.fromtimestamp(updated_at, tz)
    if search:
        return SearchItem(ns, key, value, c, u, score)
    return Item(value=value, key=key, namespace=ns, created_at=c, updated_at=u)


def _triples(flat: Sequence[Any]) -> Iterable[tuple[bytes, bytes, bytes]]:
    it = iter(flat)
    return zip(it, it, it)


# -- the batch flow -----------------------------------------------------------------


@dataclass
class _VectorRead:
    """A vector search in progress: widen ``k`` until the page is full or nothing is left."""

    op: SearchOp
    query: list[float]
    k: int
    ranked: Ranked = field(default_factory=lambda: Ranked([], True))


@dataclass(frozen=True)
class Compaction:
    """What :meth:`StoreCore.compact` did."""

    swept: int
    """Expired items removed (views and log entries)."""
    unreferenced: int
    """Log entries no view named, deleted (``full`` only)."""
    entries: int
    """Entries the log holds afterwards."""


@dataclass
class StoreCore:
    """Everything the sync and async stores share: settings, planner, vector index.

    Args:
        settings: From :func:`resolve_settings`.
        keyspace: The log's keyspace.
        codec: The log's codec (encodes events, decodes entries handed back for catch-up).
        cluster: The client is a cluster client (the session registry is on another slot).
        register: Add the store session to the keyspace's session registry.
        max_payload_bytes: Refuse larger writes before sending them (``None``: no limit).
    """

    settings: StoreSettings
    keyspace: Keyspace
    codec: Codec
    cluster: bool = False
    register: bool = True
    max_payload_bytes: int | None = None
    vectors: VectorIndex | None = None
    """The in-process vector index, loaded by the first vector search (or ``setup``)."""

    # -- flows -----------------------------------------------------------------------

    def batch(self, ops: Iterable[Op], now: float) -> Flow[list[Result]]:
        """One LangGraph batch: reads first (as ``InMemoryStore``), then all writes."""
        ops = list(ops)
        for op in ops:
            validate_op(op)
        results: list[Result] = [None] * len(ops)
        reads: list[tuple[int, Op]] = [
            (i, op) for i, op in enumerate(ops) if not isinstance(op, PutOp)
        ]
        puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
        for op in ops:
            if isinstance(op, PutOp):
                puts[(tuple(op.namespace), str(op.key))] = op
        if reads:
            yield from self._reads(reads, results)
        if puts:
            yield from self._writes(list(puts.values()), now)
        return results

    def setup(self) -> Flow[None]:
        """Load the vector index (snapshot, then the rest of the log); no-op without one."""
        if self.settings.spec is None:
            return
        yield from self._load_vectors()
        index = self._index()
        while True:
            call = logcore.plan_read(
                self.keyspace, self.settings.session, "(" + index.last_id, count=CATCH_UP_PAGE
            )
            entries = logcore.read_entries((yield call), self.codec, self.settings.session)
            index.apply_entries(entries)
            if len(entries) < CATCH_UP_PAGE:
                break
        yield from self._maybe_save()

    def compact(self, *, full: bool = False) -> Flow[Compaction]:
        """Reclaim now what writes reclaim bit by bit: sweep every expired item, then
        repack the log (tombstones go, live entries are copied into a fresh stream).

        With ``full``, first read the whole log and delete every entry no view names
        (an item whose views were written before they named entry ids keeps all of its
        entries: rebuild such a store's views once). Each step is one bounded script
        that checks what it deletes when it runs, so writes may go on meanwhile.
        """
        unreferenced = 0
        if full:
            session = self.settings.session
            after = "-"
            while True:
                reply = yield logcore.plan_read(self.keyspace, session, after, count=CATCH_UP_PAGE)
                if not reply:
                    break
                entries, _ = logcore.read_entries_skipping(reply, self.codec, session, strict=False)
                candidates = [c for c in map(_candidate, entries) if c is not None]
                if candidates:
                    unreferenced += (yield from self._maintain(0, 0, False, candidates))[1]
                if len(reply) < CATCH_UP_PAGE:
                    break
                after = "(" + logcore.text(reply[-1][0])
        swept = yield from self.sweep()
        start = True
        while True:
            _, _, busy, _, length = yield from self._maintain(0, MAINTAIN_PAGE, start)
            start = False
            if not busy:
                return Compaction(swept, unreferenced, length)

    def sweep(self) -> Flow[int]:
        """Remove every expired item (views and log entries); returns how many."""
        swept = 0
        while True:
            n, _, _, done, _ = yield from self._maintain(MAINTAIN_PAGE, 0, False)
            swept += n
            if done:
                return swept

    def save_vectors(self, *, force: bool = False) -> Flow[bool]:
        """Write the vector index snapshot if it has unsaved entries (or ``force``)."""
        if self.vectors is None or not (force or self.vectors.unsaved):
            return False
        fields = self.vectors.to_snapshot()
        last_id = fields[b"id"]
        args: list[Any] = [last_id]
        for k, v in fields.items():
            args += [k, v]
        key = snapshot_key(self.settings.keys)
        return bool((yield ScriptCall(SAVE_SNAPSHOT, [key], args)))

    # -- reads -----------------------------------------------------------------------

    def _reads(self, reads: list[tuple[int, Op]], results: list[Result]) -> Flow[None]:
        st = self.settings
        plain: list[tuple[int, Op]] = []
        vector: dict[int, _VectorRead] = {}
        queries = sorted(
            {
                op.query
                for _, op in reads
                if isinstance(op, SearchOp) and op.query and st.embeddings is not None
            }
        )
        qvecs: dict[str, list[float]] = {}
        if queries:
            got = yield EmbedQueries(queries)
            qvecs = dict(zip(queries, ([float(x) for x in v] for v in got)))
            yield from self._load_vectors()
        for i, op in reads:
            if isinstance(op, SearchOp) and op.query in qvecs:
                need = op.offset + op.limit
                vector[i] = _VectorRead(op, qvecs[op.query], k=max(2 * need, 16))
            else:
                plain.append((i, op))
        while plain or vector:
            index = self.vectors if vector else None
            seen = index.last_id if index is not None else ""
            args: list[Any] = [seen, CATCH_UP_PAGE]
            args += [self._encode_plain(op) for _, op in plain]
            for v in vector.values():
                args.append(self._encode_vector(v))
            reply = yield ScriptCall(views.ITEMS_READ, st.view_keys, args)
            if int(reply[0]) == 1:
                assert index is not None
                entries = logcore.read_entries(reply[1], self.codec, st.session)
                index.apply_entries(entries)
                if len(entries) < CATCH_UP_PAGE:  # caught up: a good moment to snapshot
                    yield from self._maybe_save()
                continue
            answers = iter(reply[1:])
            for i, op in plain:
                results[i] = self._read_plain(op, next(answers))
            plain = []
            for i, v in list(vector.items()):
                answer = next(answers)
                if answer[2]:
                    self._index().forget(answer[2], seen)
                matched = int(answer[0])
                if matched >= v.op.offset + v.op.limit or v.ranked.exhausted:
                    results[i] = self._read_vector(v, answer)
                    del vector[i]
                else:
                    v.k *= 4

    def _encode_plain(self, op: Op) -> bytes:
        if isinstance(op, GetOp):
            m = views.member(op.namespace, str(op.key))
            return msgspec.msgpack.encode(["g", m, int(op.refresh_ttl)])
        if isinstance(op, SearchOp):
            lo, hi = prefix_range(op.namespace_prefix)
            conds = compile_filter(op.filter)
            return msgspec.msgpack.encode(
                ["s", lo, hi, conds, op.offset, op.limit, int(op.refresh_ttl)]
            )
        assert isinstance(op, ListNamespacesOp)
        conds = []
        fixed: list[str] = []
        for cond in op.match_conditions or ():
            if cond.match_type not in ("prefix", "suffix"):
                raise ValueError(f"Unsupported match type: {cond.match_type}")
            path = ["" if label == "*" else label for label in cond.path]
            conds.append([cond.match_type, path])
            if cond.match_type == "prefix":
                lead = []
                for label in cond.path:
                    if label == "*":
                        break
                    lead.append(label)
                if len(lead) > len(fixed):
                    fixed = lead
        lo, hi = prefix_range(fixed)
        depth = -1 if op.max_depth is None else op.max_depth
        return msgspec.msgpack.encode(["n", lo, hi, conds, depth, op.offset, op.limit])

    def _encode_vector(self, v: _VectorRead) -> bytes:
        op = v.op
        prefix = views.namespace_bytes(op.namespace_prefix) if op.namespace_prefix else None
        v.ranked = self._index().rank(v.query, prefix, v.k)
        lo, hi = prefix_range(op.namespace_prefix)
        head = ["v", compile_filter(op.filter), op.offset, op.limit, int(op.refresh_ttl)]
        head += [int(v.ranked.exhausted), lo, hi]
        return msgspec.msgpack.encode(head + [m for m, _ in v.ranked.items])

    def _read_plain(self, op: Op, answer: Any) -> Result:
        tz = self.settings.tz
        if isinstance(op, GetOp):
            if not answer:
                return None
            m = views.member(op.namespace, str(op.key))
            return read_item(m, answer[0], answer[1], tz, search=False)
        if isinstance(op, SearchOp):
            return [read_item(m, rec, c, tz, search=True) for m, rec, c in _triples(answer)]
        return [views.parse_namespace(ns) for ns in answer]

    def _read_vector(self, v: _VectorRead, answer: Sequence[Any]) -> list[SearchItem]:
        tz = self.settings.tz
        scores = dict(v.ranked.items)
        n_scored = int(answer[1])
        out = []
        for j, (m, rec, c) in enumerate(_triples(answer[3:])):
            score = scores[m] if j < n_scored else None
            out.append(read_item(m, rec, c, tz, score, search=True))  # type: ignore[arg-type]
        return out  # type: ignore[return-value]

    # -- writes ----------------------------------------------------------------------

    def _writes(self, puts: list[PutOp], now: float) -> Flow[None]:
        texts, per_put = texts_to_embed(self.settings, puts)
        vectors = (yield EmbedDocuments(texts)) if texts else []
        events = events_for_puts(self.settings, puts, texts, vectors, per_put, now)
        logcore.read_append((yield self.plan_write(events)))

    def plan_write(self, events: Sequence[ItemPut | ItemDeleted]) -> ScriptCall:
        """The write script call of a batch's events (see ``STORE_WRITE``).

        Retrying it is safe: a retry whose puts all landed is a duplicate (each put
        rewrites its record with a new ``updated_at``, so a first attempt never is), and
        a delete of an item that is gone writes nothing.
        """
        sk = self.settings.keys
        keys = views.write_keys(sk)
        before: tuple[Command, ...] = ()
        if self.register and self.cluster:
            before = (Command(("SADD", self.keyspace.sessions, sk.tag)),)
        elif self.register:
            keys.append(self.keyspace.sessions)
        births = self.codec.cipher is None  # a birth entry is stored unencrypted
        any_put = any(isinstance(e, ItemPut) for e in events)
        args: list[Any] = ["1" if any_put else "0", sk.tag, len(events)]
        for event in events:
            m = views.member(event.namespace, event.key)
            (entry,) = logcore.encode_entry(self.codec, event)
            if isinstance(event, ItemPut):
                ttl = event.ttl_minutes
                expiry = "" if ttl is None else views.expiry_ms(event.updated_at, ttl)
                birth = views.birth_prefix(event) if births else b""
                args += ["p", m, entry, views.record(event), repr(event.created_at), expiry, birth]
            else:
                args += ["d", m, entry]
        call = ScriptCall(views.STORE_WRITE, keys, args, idempotent=True, before=before)
        check_payload(call, self.max_payload_bytes)
        return call

    def _maintain(
        self,
        sweep: int,
        copy: int,
        start: bool,
        candidates: Sequence[tuple[str, bytes, str]] = (),
    ) -> Flow[tuple[int, int, bool, bool, int]]:
        """One ``STORE_MAINTAIN`` call: (swept, deleted, repacking, sweep done, length)."""
        args: list[Any] = [sweep, copy, "1" if start else "0"]
        for entry_id, m, kind in candidates:
            args += [entry_id, m, kind]
        keys = views.write_keys(self.settings.keys)
        reply = yield ScriptCall(views.STORE_MAINTAIN, keys, args)
        swept, deleted, busy, done, length = (int(x) for x in reply)
        return swept, deleted, bool(busy), bool(done), length

    # -- the vector index ------------------------------------------------------------

    def _index(self) -> VectorIndex:
        assert self.vectors is not None, "vector index not loaded"
        return self.vectors

    def _load_vectors(self) -> Flow[None]:
        spec = self.settings.spec
        if spec is None or self.vectors is not None:
            return
        reply = yield Command(("HGETALL", snapshot_key(self.settings.keys)))
        fields = _hash(reply)
        if self.vectors is None:
            self.vectors = VectorIndex.from_snapshot(spec, fields) or VectorIndex(spec)

    def _maybe_save(self) -> Flow[None]:
        index = self.vectors
        if index is not None and index.unsaved >= self.settings.snapshot_every:
            yield from self.save_vectors()


def _candidate(entry: LogEntry) -> tuple[str, bytes, str] | None:
    """A log entry as a maintenance candidate: (entry id, member, 'p' or 'd')."""
    event = entry.event
    if isinstance(event, ItemPut):
        return entry.id, views.member(event.namespace, event.key), "p"
    if isinstance(event, ItemDeleted):
        return entry.id, views.member(event.namespace, event.key), "d"
    return None


def _hash(reply: Any) -> dict[bytes, bytes]:
    if isinstance(reply, dict):
        return {bytes(k): bytes(v) for k, v in reply.items()}
    it = iter(reply or ())
    return {bytes(k): bytes(v) for k, v in zip(it, it)}
