"""Erasure with a receipt: remove everything a deployment holds of a thread or an actor.

:func:`erase_thread` and :func:`erase_actor` (``streamstate erase``) delete, for every
session of the thread (or every AgentCore session of the actor):

* its keys: the log, the views hash ``v`` and the index ``z`` (and key layout 1's view
  keys), with the saver's own delete path (``delete_thread``'s ``THREAD_DELETE`` script);
* its registry entries: ``<prefix>:threads``, ``<prefix>:actors-of:<thread>``, every
  ``<prefix>:runs:<run>`` of a run that wrote a checkpoint of it (read from the
  checkpoint records; ``delete_thread`` leaves those, as it leaves layout 1's session
  set and run sets);
* when asked, store items under namespaces the caller names (store items are keyed by
  namespace, not by thread), or under any namespace with a label equal to an erased id
  (``with_store``): deleted with the store's write path, then the store's log is
  compacted so no entry or tombstone of theirs is left, and the collection's vector
  snapshot, which names items, is deleted (the index is rebuilt from the log).

The LangGraph node cache is not keyed by thread (a key is a hash of the node's input),
so it holds nothing erase could attribute to one; see ``docs/auditing.md``.

Each operation is a flow (``streamstate.eventlog._drive``) that surveys first, so
``dry_run`` returns the same receipt without deleting, then deletes and surveys again:
what is still there is reported in :attr:`Receipt.leftover` (a writer that was still
writing to the thread, say).
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from streamstate.adapters._checkpoints import ACTOR_THREAD, Thread, text
from streamstate.adapters._saver_core import SaverCore
from streamstate.adapters._store_core import StoreCore, prefix_range, resolve_settings
from streamstate.errors import ConfigError
from streamstate.eventlog._drive import Flow, complete
from streamstate.eventlog.events import ItemDeleted
from streamstate.eventlog.keys import Keyspace, escape, parse_session_tag
from streamstate.eventlog.valkey._core import Command, ScriptCall, read_append
from streamstate.eventlog.valkey.log import _LogConfig
from streamstate.eventlog.valkey.scripts import LuaScript
from streamstate.inspect import plan_thread_stats, read_thread_page
from streamstate.projections import checkpoints as thread_views
from streamstate.projections import items as item_views
from streamstate.projections.vectors import snapshot_key

SCAN_COUNT = 1000
"""Members asked for per ZSCAN/SSCAN page of a registry."""
ITEMS_PAGE = 1000
"""Store members read per ZRANGE page."""
DELETE_BATCH = 200
"""Store items deleted per write script call."""

_KIND_OF_VIEW = {"log": "log", "v": "views", "z": "index"}

# KEYS: a thread's log, v, z, then key layout 1's view keys. Reply: {EXISTS of each key,
# the run markers of v ('r:<escaped run id>' fields), the checkpoint records of v (each
# names its run; on a cluster no marker is written)}. Read-only.
ERASE_SURVEY = LuaScript(
    "erase_survey",
    r"""
local found = {}
for i = 1, #KEYS do found[i] = redis.call('EXISTS', KEYS[i]) end
local markers, records = {}, {}
if redis.call('TYPE', KEYS[2])['ok'] == 'hash' then
  local cursor = '0'
  repeat
    local page = redis.call('HSCAN', KEYS[2], cursor, 'COUNT', 1000)
    cursor = page[1]
    for y = 1, #page[2], 2 do
      local f = page[2][y]
      local kind = string.sub(f, 1, 2)
      if kind == 'r:' then markers[#markers + 1] = f
      elseif kind == 'c:' then records[#records + 1] = page[2][y + 1] end
    end
  until cursor == '0'
end
return {found, markers, records}
""",
)


# -- the receipt ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RegistryEntry:
    """One registry membership of an erased thread."""

    kind: str
    """``threads``, ``runs``, ``actors-of``; layout 1's ``sessions``, ``run``, ``actors``."""
    key: str
    member: str


@dataclasses.dataclass(frozen=True)
class ErasedThread:
    """One session erased (or, in a dry run, that would be)."""

    thread_id: str
    actor_id: str | None
    events: int
    """Entries of its log."""
    checkpoints: int
    """Checkpoints of every namespace (0 for a thread of key layout 1)."""
    bytes: int
    """``MEMORY USAGE`` of its log, views and index."""
    keys: dict[str, str]
    """Key name -> kind (``log``, ``views``, ``index``, ``layout1``), of the keys that existed."""
    registries: list[RegistryEntry]
    runs: list[str]
    """Run ids (metadata ``run_id``) that wrote to it."""

    @property
    def thread(self) -> Thread:
        return Thread(self.thread_id, self.actor_id)

    @property
    def session(self) -> tuple[str, ...]:
        return self.thread.session


@dataclasses.dataclass(frozen=True)
class ErasedItems:
    """Store items of one collection erased under one namespace prefix."""

    collection: str
    namespace: tuple[str, ...] | None
    """The namespace prefix named by the caller; ``None``: found by ``with_store``."""
    items: int


@dataclasses.dataclass(frozen=True)
class Receipt:
    """What an erasure removed (or, with ``dry_run``, would remove)."""

    thread_id: str | None
    actor_id: str | None
    prefix: str
    dry_run: bool
    at: float
    """When the erasure finished (Unix seconds, this machine's clock)."""
    threads: list[ErasedThread]
    store: list[ErasedItems]
    store_keys: dict[str, str]
    """Store keys deleted (key name -> kind): vector snapshots naming erased items."""
    store_entries_left: dict[str, int]
    """Per collection touched, the entries its log holds after compaction."""
    leftover: list[str]
    """What a survey after the erasure still found (empty when complete; always empty
    in a dry run)."""

    @property
    def ok(self) -> bool:
        return not self.leftover

    def key_counts(self) -> dict[str, int]:
        """Keys deleted per kind."""
        counts: dict[str, int] = {"log": 0, "views": 0, "index": 0, "layout1": 0}
        for t in self.threads:
            for kind in t.keys.values():
                counts[kind] = counts.get(kind, 0) + 1
        for kind in self.store_keys.values():
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def registry_counts(self) -> dict[str, int]:
        """Registry entries removed per registry kind."""
        counts: dict[str, int] = {}
        for t in self.threads:
            for r in t.registries:
                counts[r.kind] = counts.get(r.kind, 0) + 1
        return counts

    def as_json(self) -> dict[str, Any]:
        """The receipt as JSON-ready data (times in ISO 8601 UTC and Unix seconds)."""
        return {
            "erased": {"thread_id": self.thread_id, "actor_id": self.actor_id},
            "prefix": self.prefix,
            "dry_run": self.dry_run,
            "at": _iso(self.at),
            "at_unix": self.at,
            "ok": self.ok,
            "totals": {
                "threads": len(self.threads),
                "events": sum(t.events for t in self.threads),
                "checkpoints": sum(t.checkpoints for t in self.threads),
                "bytes": sum(t.bytes for t in self.threads),
                "keys": self.key_counts(),
                "registry_entries": self.registry_counts(),
                "store_items": sum(s.items for s in self.store),
            },
            "threads": [
                {
                    "thread_id": t.thread_id,
                    "actor_id": t.actor_id,
                    "events": t.events,
                    "checkpoints": t.checkpoints,
                    "bytes": t.bytes,
                    "runs": t.runs,
                    "keys": [{"key": k, "kind": kind} for k, kind in t.keys.items()],
                    "registries": [dataclasses.asdict(r) for r in t.registries],
                }
                for t in self.threads
            ],
            "store": [
                {
                    "collection": s.collection,
                    "namespace": None if s.namespace is None else list(s.namespace),
                    "items": s.items,
                }
                for s in self.store
            ],
            "store_keys": [{"key": k, "kind": kind} for k, kind in self.store_keys.items()],
            "store_entries_left": self.store_entries_left,
            "leftover": self.leftover,
        }

    def lines(self, width: int = 80) -> list[str]:
        """The receipt for people, wrapped to ``width`` columns (a long id is cut
        across lines, never shortened: a receipt names exactly what went)."""
        verb = "would erase" if self.dry_run else "erased"
        who = []
        if self.actor_id is not None:
            who.append(f"actor {self.actor_id!r}")
        if self.thread_id is not None:
            who.append(f"thread {self.thread_id!r}")
        head = "DRY RUN: nothing was deleted" if self.dry_run else "erasure receipt"
        aws = self.prefix.startswith(("agentcore:", "bedrock"))
        where = f"on {self.prefix}" if aws else f"key prefix {self.prefix!r}"
        out = [
            f"{head}, {_iso(self.at)} ({where})",
            f"{verb} {' of '.join(who)}: {_count(len(self.threads), 'session')}, "
            f"{sum(t.checkpoints for t in self.threads)} checkpoints, "
            f"{sum(t.events for t in self.threads)} events, "
            f"{sum(t.bytes for t in self.threads):,} bytes",
        ]
        for t in self.threads:
            label = f"{t.actor_id}/{t.thread_id}" if t.actor_id is not None else t.thread_id
            runs = f", runs {', '.join(t.runs)}" if t.runs else ""
            stored = "" if aws else f", {len(t.keys)} keys, {len(t.registries)} registry entries"
            out.append(f"  {label}: {t.checkpoints} checkpoints, {t.events} events{stored}{runs}")
        if not aws:  # AWS keeps no keys or registries of ours
            keys = ", ".join(f"{n} {kind}" for kind, n in self.key_counts().items() if n)
            out.append(f"keys: {keys or 'none'}")
            regs = ", ".join(f"{n} {kind}" for kind, n in sorted(self.registry_counts().items()))
            out.append(f"registry entries: {regs or 'none'}")
        if self.store or self.store_entries_left:
            out.append(f"store items: {sum(s.items for s in self.store)}")
            for s in self.store:
                ns = "(label match)" if s.namespace is None else "/".join(s.namespace)
                out.append(f"  {s.collection}: {ns}: {s.items}")
            for name, left in sorted(self.store_entries_left.items()):
                out.append(f"  {name}: log compacted, {left} entries left")
        if not self.dry_run and self.ok:
            out.append("checked afterwards: none of it is left")
        for problem in self.leftover:
            out.append(f"LEFT: {problem}")
        return [part for line in out for part in _wrapped(line, width)]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _wrapped(line: str, width: int) -> list[str]:
    """``line`` in lines of at most ``width`` characters, continuations indented."""
    indent = " " * (len(line) - len(line.lstrip()) + 2)
    return textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False) or [""]


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


# -- the flows ------------------------------------------------------------------------------


@dataclasses.dataclass
class Eraser:
    """The erasure flows of one deployment (one key prefix). Only yields calls: the
    caller runs them (:func:`erase_thread` on a sync log's executor).

    Args:
        log: The deployment's Valkey event log (its key prefix, codec, and whether the
            client is a cluster client); nothing here runs a call on it.
    """

    log: _LogConfig

    def __post_init__(self) -> None:
        self.keyspace: Keyspace = self.log.keyspace
        self.codec = self.log.codec
        self.cluster = self.log.cluster
        self._saver = SaverCore(self.log, self.codec, ttl=None, actors=False)

    # finding sessions ---------------------------------------------------------------------

    def sessions_flow(self, thread_id: str | None, actor_id: str | None) -> Flow[list[Thread]]:
        """The registered sessions of a thread id, of an actor, or of both (one session).

        A thread id names its plain thread and every AgentCore session with that id
        (any actor); an actor every AgentCore session of that actor. Registries are
        read, never the keyspace: ``<prefix>:threads``, ``<prefix>:actors-of:<thread>``
        and key layout 1's session and actor sets.
        """
        found: set[Thread] = set()
        if thread_id is not None and actor_id is not None:
            return [Thread(thread_id, actor_id)]
        if thread_id is not None:
            found.add(Thread(thread_id))
            pattern = f"{ACTOR_THREAD},*,{escape(thread_id)}"
            actors = yield Command(
                ("ZRANGE", thread_views.actor_registry(self.keyspace, thread_id), 0, -1)
            )
            legacy = yield Command(("SMEMBERS", self.keyspace.global_key("actors", thread_id)))
            for a in (*actors, *legacy):
                found.add(Thread(thread_id, text(a)))
        else:
            assert actor_id is not None
            pattern = f"{ACTOR_THREAD},{escape(actor_id)},*"
        for kind, key in (("ZSCAN", thread_views.threads_registry(self.keyspace)),
                          ("SSCAN", self.keyspace.sessions)):  # fmt: skip
            for tag in (yield from _scan(kind, key, pattern)):
                thread = Thread.from_session(parse_session_tag(tag))
                if thread is None or thread.actor_id is None:
                    continue
                if thread_id is not None and thread.thread_id != thread_id:
                    continue
                if actor_id is not None and thread.actor_id != actor_id:
                    continue
                found.add(thread)
        return sorted(found, key=lambda t: (t.actor_id or "", t.thread_id))

    # one session --------------------------------------------------------------------------

    def survey_flow(self, thread: Thread) -> Flow[ErasedThread]:
        """What the deployment holds of one session: keys, figures, registry entries."""
        keys = self.keyspace.session(thread.session)
        names = [*thread_views.thread_keys(keys), *thread_views.legacy_keys(keys)]
        found, markers, records = yield ScriptCall(ERASE_SURVEY, names, [])
        present: dict[str, str] = {}
        for name, exists in zip(names, found):
            if int(exists):
                present[name] = _KIND_OF_VIEW.get(name.rsplit(":", 1)[1], "layout1")
        events = checkpoints = size = 0
        if present:
            stats = yield plan_thread_stats(self.keyspace, [keys.tag], "page")
            events, _last, checkpoints, size = read_thread_page(stats)[0]
        runs = {parse_session_tag(text(m)[2:])[0] for m in markers}
        runs.update(thread_views.decode_record(bytes(r))[3] for r in records)
        runs.discard("")
        candidates = self._registries(thread, sorted(runs))
        registries = []
        for entry, is_set in candidates:
            if is_set:
                member = int((yield Command(("SISMEMBER", entry.key, entry.member)))) == 1
            else:
                member = (yield Command(("ZSCORE", entry.key, entry.member))) is not None
            if member:
                registries.append(entry)
        return ErasedThread(
            thread.thread_id,
            thread.actor_id,
            events=max(events, 0),
            checkpoints=max(checkpoints, 0),
            bytes=size,
            keys=present,
            registries=registries,
            runs=sorted(runs),
        )

    def _registries(self, thread: Thread, runs: Sequence[str]) -> list[tuple[RegistryEntry, bool]]:
        """Every registry that can name the session, and whether it is a set."""
        ks = self.keyspace
        tag = ks.session(thread.session).tag
        out = [(RegistryEntry("threads", thread_views.threads_registry(ks), tag), False)]
        if thread.actor_id is not None:
            key = thread_views.actor_registry(ks, thread.thread_id)
            out.append((RegistryEntry("actors-of", key, thread.actor_id), False))
        for run in runs:
            out.append((RegistryEntry("runs", thread_views.run_registry(ks, run), tag), False))
        out.append((RegistryEntry("sessions", ks.sessions, tag), True))
        if thread.actor_id is not None:
            key = ks.global_key("actors", thread.thread_id)
            out.append((RegistryEntry("actors", key, thread.actor_id), True))
        for run in runs:
            out.append((RegistryEntry("run", ks.global_key("run", run), tag), True))
        return out

    def delete_flow(self, survey: ErasedThread) -> Flow[None]:
        """Delete the session with the saver's path, then the entries that path leaves."""
        yield from self._saver.delete_one(survey.thread)
        done = {"threads", "actors-of", "actors"}  # what delete_one removes
        for entry in survey.registries:
            if entry.kind not in done:
                command = "ZREM" if entry.kind == "runs" else "SREM"
                yield Command((command, entry.key, entry.member))

    # the store ----------------------------------------------------------------------------

    def collections_flow(self, names: Sequence[str] | None) -> Flow[list[str]]:
        """The store collections: those named, else every registered store session."""
        if names is not None:
            return sorted(set(names))
        out = set()
        for tag in (yield from _scan("SSCAN", self.keyspace.sessions, "store,*")):
            parts = parse_session_tag(tag)
            if len(parts) == 2 and parts[0] == "store":
                out.add(parts[1])
        return sorted(out)

    def store_members_flow(
        self,
        collection: str,
        namespaces: Sequence[tuple[str, ...]],
        labels: Iterable[str],
    ) -> Flow[list[tuple[tuple[str, ...] | None, list[bytes]]]]:
        """The members of a collection to erase: per namespace prefix, then (``labels``)
        those with a namespace label equal to one of ``labels``, not already listed."""
        items = self.keyspace.session(("store", collection)).view("items")
        seen: set[bytes] = set()
        out: list[tuple[tuple[str, ...] | None, list[bytes]]] = []
        for ns in namespaces:
            lo, hi = prefix_range(ns)
            members: list[bytes] = []
            offset = 0
            while True:
                page = yield Command(
                    ("ZRANGE", items, lo, hi, "BYLEX", "LIMIT", offset, ITEMS_PAGE)
                )
                members += [bytes(m) for m in page if bytes(m) not in seen]
                seen.update(bytes(m) for m in page)
                if len(page) < ITEMS_PAGE:
                    break
                offset += ITEMS_PAGE
            out.append((ns, members))
        wanted = set(labels)
        if wanted:
            matched = []
            cursor = 0
            while True:
                cursor, page = yield from _scan_page(("ZSCAN", items, cursor, "COUNT", SCAN_COUNT))
                for raw in page:
                    m = bytes(raw[0] if isinstance(raw, (list, tuple)) else raw)
                    if m in seen:
                        continue
                    namespace, _key = item_views.split_member(m)
                    if wanted.intersection(namespace):
                        seen.add(m)
                        matched.append(m)
                if cursor == 0:
                    break
            out.append((None, sorted(matched)))
        return out

    def store_delete_flow(
        self, collection: str, members: Sequence[bytes]
    ) -> Flow[tuple[int, dict[str, str]]]:
        """Delete items with the store's write path, compact its log (tombstones and
        superseded entries go) and drop its vector snapshot. Returns the entries left
        and the keys deleted."""
        settings = resolve_settings(self.keyspace, {"collection_name": collection}, None)
        core = StoreCore(settings, self.keyspace, self.codec, cluster=self.cluster,
                         register=False, max_payload_bytes=None)  # fmt: skip
        now = time.time()
        for start in range(0, len(members), DELETE_BATCH):
            events = []
            for m in members[start : start + DELETE_BATCH]:
                namespace, key = item_views.split_member(m)
                events.append(ItemDeleted(namespace, key, now))
            read_append((yield core.plan_write(events)))
        compaction = yield from core.compact(full=True)
        deleted: dict[str, str] = {}
        snapshot = snapshot_key(settings.keys)
        if int((yield Command(("DEL", snapshot)))):
            deleted[snapshot] = "vector_snapshot"
        return compaction.entries, deleted

    # the whole erasure --------------------------------------------------------------------

    def erase_flow(
        self,
        *,
        thread_id: str | None,
        actor_id: str | None,
        store_namespaces: Sequence[tuple[str, ...]] = (),
        with_store: bool = False,
        collections: Sequence[str] | None = None,
        dry_run: bool = False,
    ) -> Flow[Receipt]:
        threads = yield from self.sessions_flow(thread_id, actor_id)
        surveys = []
        for thread in threads:
            survey = yield from self.survey_flow(thread)
            if survey.keys or survey.registries:
                surveys.append(survey)
        store: list[ErasedItems] = []
        doomed: dict[str, list[bytes]] = {}
        if store_namespaces or with_store:
            labels = [i for i in (thread_id, actor_id) if i is not None] if with_store else []
            for collection in (yield from self.collections_flow(collections)):
                groups = yield from self.store_members_flow(collection, store_namespaces, labels)
                for ns, members in groups:
                    store.append(ErasedItems(collection, ns, len(members)))
                    doomed.setdefault(collection, []).extend(members)
        store_keys: dict[str, str] = {}
        entries_left: dict[str, int] = {}
        leftover: list[str] = []
        if not dry_run:
            for survey in surveys:
                yield from self.delete_flow(survey)
            for collection, members in doomed.items():
                if not members:
                    continue
                left, deleted = yield from self.store_delete_flow(collection, members)
                entries_left[collection] = left
                store_keys.update(deleted)
            leftover = yield from self.leftover_flow(surveys, doomed)
        return Receipt(thread_id, actor_id, self.keyspace.prefix, dry_run, time.time(),
                       list(surveys), store, store_keys, entries_left,
                       leftover)  # fmt: skip

    def leftover_flow(
        self, surveys: Sequence[ErasedThread], doomed: dict[str, list[bytes]]
    ) -> Flow[list[str]]:
        """What a second survey still finds of the erased sessions and items."""
        out: list[str] = []
        for survey in surveys:
            again = yield from self.survey_flow(survey.thread)
            label = "/".join(survey.thread.session)
            out += [f"{label}: key {k}" for k in again.keys]
            out += [f"{label}: member of {r.key}" for r in again.registries]
        for collection, members in doomed.items():
            data = self.keyspace.session(("store", collection)).view("data")
            for start in range(0, len(members), DELETE_BATCH):
                chunk = members[start : start + DELETE_BATCH]
                found = yield Command(("HMGET", data, *chunk))
                out += [f"store {collection}: item {item_views.split_member(m)}"
                        for m, rec in zip(chunk, found) if rec is not None]  # fmt: skip
        return out


def _scan(kind: str, key: str, pattern: str) -> Flow[list[str]]:
    """Every member of a registry matching ``pattern`` (ZSCAN or SSCAN pages)."""
    out: list[str] = []
    cursor = 0
    while True:
        args = (kind, key, cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)
        cursor, page = yield from _scan_page(args)
        if kind == "ZSCAN" and page and not isinstance(page[0], (list, tuple)):
            page = page[0::2]  # member, score, member, score...
        out += [text(m[0] if isinstance(m, (list, tuple)) else m) for m in page]
        if cursor == 0:
            return out


def _scan_page(args: tuple[Any, ...]) -> Flow[tuple[int, list[Any]]]:
    cursor, items = yield Command(args)
    return int(cursor), list(items)


# -- the library calls ----------------------------------------------------------------------

# -- the AWS savers: through their own delete_thread ------------------------------------------


def _aws_kind(target: Any) -> str | None:
    module = type(target).__module__
    for name in ("agentcore", "bedrock"):
        if module.startswith((f"streamstate.adapters.{name}", f"streamstate.eventlog.{name}")):
            return name
    return None


def _aws_sessions(saver: Any, thread_id: str | None, actor_id: str | None) -> list[Thread]:
    """The sessions an erasure of an AWS saver names: one AgentCore session, or every
    session of a thread id or an actor (found by listing the saver's checkpoints)."""
    if thread_id is not None and (actor_id is not None or _aws_kind(saver) == "bedrock"):
        return [Thread(thread_id, actor_id)]
    found: dict[tuple[str | None, str], Thread] = {}
    for tup in saver.list(None):
        conf = tup.config["configurable"]
        t, a = conf["thread_id"], conf.get("actor_id")
        if (thread_id is None or t == thread_id) and (actor_id is None or a == actor_id):
            found.setdefault((a, t), Thread(t, a))
    return list(found.values())


def _aws_survey(saver: Any, thread: Thread) -> ErasedThread:
    conf: dict[str, Any] = {"thread_id": thread.thread_id}
    if thread.actor_id is not None:
        conf["actor_id"] = thread.actor_id
    checkpoints, write_sets, runs = 0, 0, set()
    for tup in saver.list({"configurable": conf}):
        checkpoints += 1
        write_sets += len({task for task, _ch, _v in tup.pending_writes or ()})
        run = (tup.metadata or {}).get("run_id")
        if isinstance(run, str) and run:
            runs.add(run)
    return ErasedThread(
        thread.thread_id,
        thread.actor_id,
        events=checkpoints + write_sets,
        checkpoints=checkpoints,
        bytes=0,  # the services report no sizes
        keys={},
        registries=[],
        runs=sorted(runs),
    )


def _erase_aws(
    saver: Any,
    *,
    thread_id: str | None,
    actor_id: str | None,
    store_asked: bool,
    dry_run: bool,
) -> Receipt:
    """Erase the sessions of an AgentCore Memory or Bedrock sessions saver with its own
    ``delete_thread`` (DeleteEvent per event; EndSession + DeleteSession), surveyed
    before and after through ``list``."""
    kind = _aws_kind(saver)
    if store_asked:
        raise ConfigError(
            "erase takes store items from a Valkey store only; for AgentCore Memory use the"
            " store's delete (memory records), see docs/auditing.md"
        )
    if kind == "bedrock" and (actor_id is not None or thread_id is None):
        raise ConfigError("Bedrock sessions have no actors: erase one thread (thread_id)")
    if not callable(getattr(saver, "list", None)):
        raise ConfigError(f"erase needs the saver, not {type(saver).__name__}")
    threads = [_aws_survey(saver, t) for t in _aws_sessions(saver, thread_id, actor_id)]
    leftover: list[str] = []
    if not dry_run:
        for t in threads:
            if kind == "bedrock":
                saver.delete_thread(t.thread_id)
            else:
                saver.delete_thread(t.thread_id, actor_id=t.actor_id)
        for t in threads:
            left = _aws_survey(saver, t.thread)
            if left.checkpoints:
                label = t.thread_id if t.actor_id is None else f"{t.actor_id}/{t.thread_id}"
                leftover.append(f"{label}: {left.checkpoints} checkpoints still listed")
    where = "bedrock" if kind == "bedrock" else f"agentcore:{getattr(saver, 'memory_id', '?')}"
    return Receipt(thread_id, actor_id, where, dry_run, time.time(), threads, [], {}, {}, leftover)


def namespace_arg(value: str) -> tuple[str, ...]:
    """A namespace given on the command line: labels joined by ``/`` (``memories/u-1``),
    or a JSON array of labels (``["memories", "a/b"]``) when a label holds a ``/``."""
    if value.startswith("["):
        try:
            labels = json.loads(value)
        except ValueError as exc:
            raise ConfigError(f"store namespace {value!r} is not a JSON array: {exc}") from None
        if not isinstance(labels, list):
            raise ConfigError(f"store namespace {value!r} is not a JSON array")
    else:
        labels = value.split("/")
    return _namespaces([labels])[0]


def _namespaces(given: Iterable[Sequence[str]]) -> list[tuple[str, ...]]:
    out = []
    for ns in given:
        if isinstance(ns, str):
            raise ConfigError(f"a store namespace is a tuple of labels, got the string {ns!r}")
        labels = tuple(ns)
        if not labels or not all(isinstance(x, str) and x for x in labels):
            raise ConfigError(f"a store namespace needs non-empty string labels, got {ns!r}")
        out.append(labels)
    return out


def erase(
    target: Any = None,
    *,
    thread_id: str | None = None,
    actor_id: str | None = None,
    store_namespaces: Iterable[Sequence[str]] = (),
    with_store: bool = False,
    collections: Sequence[str] | None = None,
    dry_run: bool = False,
    prefix: str = "ss",
) -> Receipt:
    """Erase a thread, an actor, or one AgentCore session (both given); see the module.

    Raises:
        ConfigError: neither id given, an empty id, a bad namespace, store items asked
            of an AWS saver, or an actor of a Bedrock saver.
        BackendError: the server refused a call (nothing after it ran).
    """
    from streamstate.audit import connect

    if thread_id is None and actor_id is None:
        raise ConfigError("erase needs a thread id or an actor id (or both)")
    for name, value in (("thread_id", thread_id), ("actor_id", actor_id)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
    namespaces = _namespaces(store_namespaces)
    if _aws_kind(target) is not None:
        return _erase_aws(
            target,
            thread_id=thread_id,
            actor_id=actor_id,
            store_asked=bool(namespaces) or with_store,
            dry_run=dry_run,
        )
    with connect(target, prefix=prefix) as audit:
        eraser = Eraser(audit.log)
        flow = eraser.erase_flow(
            thread_id=thread_id,
            actor_id=actor_id,
            store_namespaces=namespaces,
            with_store=with_store,
            collections=collections,
            dry_run=dry_run,
        )
        return complete(flow, audit.log.run)


def erase_thread(
    target: Any, thread_id: str, *, actor_id: str | None = None, **kwargs: Any
) -> Receipt:
    """Erase a thread: its plain session and every AgentCore session with this id (or,
    with ``actor_id``, that actor's only), their registry entries and, when asked,
    store items.

    Args:
        target: A URL (``None``: ``STREAMSTATE_URL``, else the embedded server), a
            ``valkey.Valkey`` client, a sync ``ValkeySaver``/``AgentCoreValkeySaver``,
            or a ``ValkeyAudit``; or an ``AgentCoreMemorySaver`` /
            ``BedrockSessionSaver``, erased through its ``delete_thread`` (no keys or
            registries there: the receipt counts checkpoints and write sets).
        thread_id: The thread id, exactly (no pattern: ``t1`` never erases ``t10``).
        actor_id: Only this actor's session of the thread.
        store_namespaces: Namespace prefixes whose store items go too, e.g.
            ``[("memories", "user-1")]`` (items of ``("memories", "user-1", ...)`` too).
        with_store: Also store items with a namespace label equal to an erased id.
        collections: Store collections to look in (default: every registered one).
        dry_run: Survey and return the receipt, delete nothing.
        prefix: Key prefix, for URL and client targets.

    Returns:
        The :class:`Receipt`; ``receipt.ok`` is False when something was still there
        after the erasure (a writer recreated the thread meanwhile).

    Raises:
        ConfigError: an empty id, a bad namespace, or store items asked of an AWS
            saver (see ``docs/auditing.md``).
    """
    return erase(target, thread_id=thread_id, actor_id=actor_id, **kwargs)


def erase_actor(target: Any, actor_id: str, **kwargs: Any) -> Receipt:
    """Erase every AgentCore session of an actor (``AgentCoreValkeySaver``), their
    registry entries and, when asked, store items; arguments as :func:`erase_thread`."""
    return erase(target, actor_id=actor_id, **kwargs)
