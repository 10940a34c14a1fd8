"""Erasure with a receipt (``streamstate.erase``): nothing of the erased thread or actor
is left anywhere on the server, and everything else still reads the same.

Each test has a server of its own, so "anywhere" is checked literally: every key
(SCAN), every member of every set and sorted set, every field and value of every hash,
every field and value of every stream entry, every string, and each key's ``DUMP``
(uncompressed: bytes of stream entries deleted but not yet freed show there). Values
written for the
erased thread carry a marker; payloads stay under the codec's compression threshold,
so the marker is visible in stored bytes (the test checks it is before erasing).
"""

from __future__ import annotations

import hashlib
import random
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import valkey
from langgraph.checkpoint.base import empty_checkpoint

from streamstate import AgentCoreValkeySaver, ValkeySaver, ValkeyStore
from streamstate.connection import client_from_url
from streamstate.erase import erase_actor, erase_thread
from streamstate.errors import ConfigError
from streamstate.eventlog.keys import Keyspace, escape
from streamstate.server import EmbeddedServer
from streamstate.testing.cluster import LocalCluster

DIMS = 8
NASTY = ["t1", "g*l?b[1]{x}", "a,b:c%2C d"]
"""Erased ids: a plain one, glob and brace characters, separators and an escape."""


def embed(texts: list[str]) -> list[list[float]]:
    out = []
    for t in texts:
        rng = random.Random(hashlib.sha256(t.encode()).digest())
        out.append([rng.uniform(-1, 1) for _ in range(DIMS)])
    return out


@pytest.fixture
def own(private_server: EmbeddedServer) -> Iterator[valkey.Valkey]:
    c = valkey.Valkey.from_url(private_server.url)
    yield c
    c.close()


def mark() -> str:
    return f"secret-{uuid.uuid4().hex[:12]}"


def write_thread(
    saver: ValkeySaver, thread_id: str, marker: str, *, actor: str | None = None, run: str = ""
) -> None:
    """Three checkpoints, each with pending writes, all carrying ``marker``."""
    conf: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if actor is not None:
        conf["actor_id"] = actor
    config: Any = {"configurable": conf}
    for i in range(3):
        cp = empty_checkpoint()
        cp["channel_values"] = {"note": f"{marker}-{i}"}
        cp["channel_versions"] = {"note": i + 1}
        meta = {"source": "loop", "step": i, "who": marker, **({"run_id": run} if run else {})}
        config = saver.put(config, cp, meta, {"note": i + 1})
        saver.put_writes(config, [("note", f"{marker}-w{i}")], task_id=f"task-{i}")


def latest(saver: ValkeySaver, thread_id: str, actor: str | None = None) -> Any:
    conf: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if actor is not None:
        conf["actor_id"] = actor
    tup = saver.get_tuple({"configurable": conf})
    return None if tup is None else tup.checkpoint["channel_values"]["note"]


def dump(client: Any) -> list[tuple[bytes, str, bytes]]:
    """Everything on the server as ``(key, what, bytes)``: the key name itself, and each
    member, field and value it holds."""
    out: list[tuple[bytes, str, bytes]] = []
    client.config_set("rdbcompression", "no")
    for key in client.scan_iter(count=1000):
        out.append((key, "name", key))
        # the serialized key: deleted stream entries whose node still holds bytes too
        out.append((key, "dump", client.dump(key) or b""))
        kind = client.type(key).decode()
        if kind == "string":
            out.append((key, "value", client.get(key) or b""))
        elif kind == "hash":
            for f, v in client.hgetall(key).items():
                out += [(key, "field", f), (key, "value", v)]
        elif kind == "zset":
            out += [(key, "member", m) for m in client.zrange(key, 0, -1)]
        elif kind == "set":
            out += [(key, "member", m) for m in client.smembers(key)]
        elif kind == "list":
            out += [(key, "value", v) for v in client.lrange(key, 0, -1)]
        elif kind == "stream":
            for _id, fields in client.xrange(key):
                for f, v in fields.items():
                    out += [(key, "field", f), (key, "value", v)]
        else:  # pragma: no cover - streamstate writes no other type
            raise AssertionError(f"unexpected key type {kind} of {key!r}")
    return out


_SEPARATORS = re.compile(rb"[:,\x00|]+")
_HASH_TAG = re.compile(rb"\{([A-Za-z0-9_.~%,-]*)\}")
"""A key's hash tag: escaped session parts, so no brace inside."""


def traces(client: valkey.Valkey, ident: str, markers: list[str]) -> list[tuple[bytes, str, bytes]]:
    """Everything naming ``ident`` (as a whole token: raw, as store labels are, or
    escaped, as in keys and session tags) or holding one of ``markers``."""
    raw, escaped = ident.encode(), escape(ident).encode()
    found = []
    for key, what, blob in dump(client):
        named = _HASH_TAG.sub(rb":\1:", blob) if what == "name" else blob
        tokens = set(_SEPARATORS.split(named))
        labels = set(blob.split(b"\x00"))  # store members: labels, then the key
        if (
            escaped in tokens
            or raw in labels
            or blob == raw
            or any(m.encode() in blob for m in markers)
        ):
            found.append((key, what, blob))
    return found


def make_store(client: valkey.Valkey, prefix: str, collection: str) -> ValkeyStore:
    index = {"dims": DIMS, "embed": embed, "fields": ["text"], "collection_name": collection,
             "index_type": "flat"}  # fmt: skip
    return ValkeyStore(client, index=index, keyspace=Keyspace(prefix))  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["ss", "tenant-7"])
@pytest.mark.parametrize("erased", NASTY)
def test_erase_thread_leaves_nothing_and_spares_the_rest(
    own: valkey.Valkey, erased: str, prefix: str
) -> None:
    saver = ValkeySaver(own, prefix=prefix)
    agents = AgentCoreValkeySaver(own, prefix=prefix)
    store = make_store(own, prefix, "memories-store")
    secret = mark()
    # the erased thread, in both savers (its AgentCore sessions of two actors), in a run
    # of its own and in a run it shares with another thread
    write_thread(saver, erased, secret, run="run-shared")
    write_thread(saver, erased, secret, run=f"run-only-{erased}")
    write_thread(agents, erased, secret, actor="actor-1")
    write_thread(agents, erased, secret, actor="actor-2")
    # neighbours: the id extended (t1 / t10), glob matches of it, and the same run
    others = {erased + "0": mark(), erased + "*": mark(), "*": mark(), erased[:-1]: mark(),
              "[" + erased + "]": mark(), "{" + erased + "}": mark()}  # fmt: skip
    for i, (tid, m) in enumerate(others.items()):
        write_thread(saver, tid, m, run="run-shared" if i == 0 else "")
        write_thread(agents, tid, m, actor="actor-1")
    store.put(("memories", erased), "k1", {"text": f"likes tea {secret}"})
    store.put(("memories", erased, "deep"), "k2", {"text": f"lives in Lyon {secret}"})
    store.put(("memories", erased), "k1", {"text": f"likes coffee {secret}"})  # overwrite
    store.put(("memories", erased), "gone", {"text": f"old {secret}"})
    store.delete(("memories", erased), "gone")  # a tombstone naming the erased id
    kept_items = {("memories", tid): f"notes of {m}" for tid, m in others.items()}
    for ns, text in kept_items.items():
        store.put(ns, "k1", {"text": text})
    store.search(("memories",), query="tea")  # loads the vector index
    assert store.save_vectors(force=True)

    assert traces(own, erased, [secret]), "the test data must be visible to the scan"

    receipt = erase_thread(own, erased, prefix=prefix, store_namespaces=[("memories", erased)])

    assert receipt.ok, receipt.leftover
    assert traces(own, erased, [secret]) == []
    sessions = {(t.actor_id, t.thread_id) for t in receipt.threads}
    assert sessions == {(None, erased), ("actor-1", erased), ("actor-2", erased)}
    assert sum(t.checkpoints for t in receipt.threads) == 2 * 3 + 3 + 3
    assert sum(t.events for t in receipt.threads) >= 4 * 6
    assert receipt.key_counts()["log"] == 3
    assert receipt.key_counts()["views"] == 3
    assert receipt.key_counts()["index"] == 3
    assert receipt.key_counts()["vector_snapshot"] == 1
    regs = receipt.registry_counts()
    assert regs["threads"] == 3 and regs["actors-of"] == 2 and regs["runs"] == 2
    assert sum(s.items for s in receipt.store) == 2
    plain = next(t for t in receipt.threads if t.actor_id is None)
    assert sorted(plain.runs) == sorted(["run-shared", f"run-only-{erased}"])

    # everything else reads as before, through the savers and the store
    for tid, m in others.items():
        assert latest(saver, tid) == f"{m}-2"
        assert latest(agents, tid, "actor-1") == f"{m}-2"
        assert traces(own, tid, [])  # still named
    assert latest(saver, erased) is None
    assert latest(agents, erased, "actor-1") is None
    assert list(saver.list({"configurable": {"thread_id": erased}})) == []
    fresh = make_store(own, prefix, "memories-store")  # no snapshot: rebuilt from the log
    for ns, text in kept_items.items():
        item = fresh.get(ns, "k1")
        assert item is not None and item.value == {"text": text}
    hits = fresh.search(("memories",), query="likes tea", limit=50)
    assert {h.namespace for h in hits} == set(kept_items)
    assert fresh.get(("memories", erased), "k1") is None
    listed = {t.config["configurable"]["thread_id"] for t in saver.list(None)}
    assert listed == set(others)

    # erasing again finds nothing
    again = erase_thread(own, erased, prefix=prefix, store_namespaces=[("memories", erased)])
    assert again.threads == [] and sum(s.items for s in again.store) == 0 and again.ok


@pytest.mark.parametrize("erased", ["actor-1", "ac*[t]{o}r?"])
def test_erase_actor_takes_every_session_of_the_actor_only(own: valkey.Valkey, erased: str) -> None:
    agents = AgentCoreValkeySaver(own)
    saver = ValkeySaver(own)
    store = make_store(own, "ss", "default")
    secret = mark()
    for tid in ("s1", "s2", erased):  # a session whose thread id is the actor id too
        write_thread(agents, tid, secret, actor=erased, run="run-a")
    others: dict[tuple[str, str], str] = {}
    for actor in (erased + "0", erased[:-1], "*", "[" + erased + "]"):
        for tid in ("s1", "s3"):
            others[(actor, tid)] = mark()
            write_thread(agents, tid, others[(actor, tid)], actor=actor, run="run-a")
    plain = mark()
    write_thread(saver, "s1", plain)  # a plain thread named like the actor's session
    store.put(("memories", erased), "m", {"text": f"prefers email {secret}"})
    store.put(("prefs", "x", erased), "m", {"text": f"label match {secret}"})
    store.put(("memories", erased + "0"), "m", {"text": "another actor"})

    dry = erase_actor(own, erased, with_store=True, dry_run=True)
    assert dry.dry_run and len(dry.threads) == 3 and sum(s.items for s in dry.store) == 2
    assert traces(own, erased, [secret]), "a dry run deletes nothing"

    receipt = erase_actor(own, erased, with_store=True)
    assert receipt.as_json()["totals"] == dry.as_json()["totals"]
    assert receipt.ok, receipt.leftover
    assert traces(own, erased, [secret]) == []
    assert {t.thread_id for t in receipt.threads} == {"s1", "s2", erased}
    for (actor, tid), m in others.items():
        assert latest(agents, tid, actor) == f"{m}-2"
    assert latest(saver, "s1") == f"{plain}-2"
    assert ValkeyStore(own).get(("memories", erased + "0"), "m") is not None


def test_erase_one_session_of_a_thread(own: valkey.Valkey) -> None:
    agents = AgentCoreValkeySaver(own)
    write_thread(agents, "t", mark(), actor="a")
    keep = mark()
    write_thread(agents, "t", keep, actor="b")
    receipt = erase_thread(own, "t", actor_id="a")
    assert [(t.actor_id, t.thread_id) for t in receipt.threads] == [("a", "t")]
    assert latest(agents, "t", "a") is None
    assert latest(agents, "t", "b") == f"{keep}-2"
    assert own.zrange("ss:actors-of:t", 0, -1) == [b"b"]


def test_receipt_json_and_lines(own: valkey.Valkey) -> None:
    saver = ValkeySaver(own)
    write_thread(saver, "r1", mark(), run="run-9")
    receipt = erase_thread(own, "r1")
    data = receipt.as_json()
    assert data["erased"] == {"thread_id": "r1", "actor_id": None}
    assert data["totals"]["checkpoints"] == 3
    assert data["totals"]["keys"]["log"] == 1
    assert data["totals"]["registry_entries"] == {"threads": 1, "runs": 1}
    assert data["at"].endswith("+00:00") and data["ok"] is True
    assert {k["key"] for k in data["threads"][0]["keys"]} == {
        "ss:{t,r1}:log", "ss:{t,r1}:v", "ss:{t,r1}:z"
    }  # fmt: skip
    text = "\n".join(receipt.lines())
    assert "erased thread 'r1'" in text and "3 checkpoints," in text
    assert all(len(line) <= 100 for line in receipt.lines())


def test_bad_arguments_and_aws_backends(own: valkey.Valkey) -> None:
    with pytest.raises(ConfigError, match="thread id or an actor id"):
        from streamstate.erase import erase

        erase(own)
    with pytest.raises(ConfigError, match="non-empty"):
        erase_thread(own, "")
    with pytest.raises(ConfigError, match="tuple of labels"):
        erase_thread(own, "x", store_namespaces=["memories"])  # type: ignore[list-item]


def test_erase_on_the_aws_savers() -> None:
    """AgentCore Memory and Bedrock sessions (through the emulator and real boto3): the
    sessions go by the saver's own delete_thread, surveyed before and after; other
    sessions, including an id that extends the erased one, stay."""
    from streamstate import AgentCoreMemorySaver, BedrockSessionSaver
    from streamstate.testing.aws_emulator import AwsEmulator

    with AwsEmulator() as emulator:
        agents = AgentCoreMemorySaver(
            emulator.create_memory("erase"), client=emulator.agentcore_client()
        )
        for actor, thread in (("u1", "t1"), ("u2", "t1"), ("u1", "t10"), ("u2", "t2")):
            _write_aws(agents, {"thread_id": thread, "actor_id": actor})
        dry = erase_thread(agents, "t1", dry_run=True)
        assert dry.ok and {(t.actor_id, t.thread_id) for t in dry.threads} == {
            ("u1", "t1"), ("u2", "t1")
        }  # fmt: skip
        assert all(t.checkpoints == 2 and t.runs == ["run-1"] for t in dry.threads)
        assert _aws_threads(agents) == {("u1", "t1"), ("u2", "t1"), ("u1", "t10"), ("u2", "t2")}
        receipt = erase_thread(agents, "t1")
        assert receipt.ok and len(receipt.threads) == 2
        assert _aws_threads(agents) == {("u1", "t10"), ("u2", "t2")}
        by_actor = erase_actor(agents, "u2")
        assert by_actor.ok and [(t.actor_id, t.thread_id) for t in by_actor.threads] == [
            ("u2", "t2")
        ]
        assert _aws_threads(agents) == {("u1", "t10")}
        with pytest.raises(ConfigError, match="store"):
            erase_thread(agents, "t10", store_namespaces=[("memories", "u1")])

        sessions = BedrockSessionSaver(client=emulator.agent_runtime_client())
        kept, gone = (sessions.session_client.create_session().session_id for _ in "ab")
        for sid in (kept, gone):
            _write_aws(sessions, {"thread_id": sid})
        receipt = erase_thread(sessions, gone)
        assert receipt.ok and receipt.threads[0].checkpoints == 2
        assert "2 checkpoints" in "\n".join(receipt.lines())
        assert sessions.get_tuple({"configurable": {"thread_id": gone}}) is None
        assert sessions.get_tuple({"configurable": {"thread_id": kept}}) is not None
        with pytest.raises(ConfigError, match="no actors"):
            erase_actor(sessions, "u1")


def _write_aws(saver: Any, conf: dict[str, str]) -> None:
    """Two checkpoints of run-1, the first with a task's writes."""
    parent = {"configurable": {**conf, "checkpoint_ns": ""}}
    for step in range(2):
        cp = empty_checkpoint()
        cp["channel_values"] = {"messages": [f"m{step}"]}
        cp["channel_versions"] = {"messages": f"{step + 1}"}
        parent = saver.put(
            parent,
            cp,
            {"source": "loop", "step": step, "run_id": "run-1"},
            {"messages": f"{step + 1}"},
        )
        if step == 0:
            saver.put_writes(parent, [("messages", ["w"])], "task-1")


def _aws_threads(saver: Any) -> set[tuple[str | None, str]]:
    return {
        (t.config["configurable"].get("actor_id"), t.config["configurable"]["thread_id"])
        for t in saver.list(None)
    }


def test_erase_on_a_cluster(tmp_path: Any) -> None:
    """Registries live on other slots than the thread: each goes by its own command, and
    the runs of a thread are read from its checkpoint records (no run markers there)."""
    with LocalCluster(tmp_path / "cluster", primaries=3, replicas=0).start() as cluster:
        client = client_from_url(cluster.url)
        saver, agents = ValkeySaver(client), AgentCoreValkeySaver(client)
        store = ValkeyStore(client)
        secret = mark()
        write_thread(saver, "t1", secret, run="run-1")
        write_thread(agents, "t1", secret, actor="u1", run="run-2")
        write_thread(saver, "t10", "m-t10", run="run-1")
        store.put(("memories", "t1"), "k", {"text": secret})
        store.put(("memories", "t10"), "k", {"text": "kept"})

        nodes = [valkey.Valkey(port=port) for port in cluster.primary_ports()]
        assert any(traces(node, "t1", [secret]) for node in nodes)

        receipt = erase_thread(client, "t1", store_namespaces=[("memories", "t1")])

        assert receipt.ok, receipt.leftover
        assert receipt.registry_counts() == {"threads": 2, "actors-of": 1, "runs": 2}
        for node in nodes:
            assert traces(node, "t1", [secret]) == []
            node.close()
        assert latest(saver, "t10") == "m-t10-2"
        assert store.get(("memories", "t10"), "k") is not None
        client.close()
