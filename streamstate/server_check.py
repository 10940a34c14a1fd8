"""Is this Valkey server set up to keep what streamstate acknowledges?

``streamstate check`` (and :func:`check_server`) read a server's ``INFO`` and, where the
server allows it, ``CONFIG GET``, and say for each concern what it means for
streamstate's data: persistence (what an acknowledged write survives), replication
(whether ``wait_replicas`` can make it survive the primary), eviction (which
``maxmemory-policy`` values can take a thread), the stream node size (the memory of small
threads) and scripting (every operation is a script call). The rules are the ones
docs/reliability.md states; nothing is written to the server.

Managed services often refuse ``CONFIG`` (ElastiCache does): a setting that cannot be
read is reported as unknown, with where to look instead, never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import valkey

from streamstate.errors import BackendUnavailable
from streamstate.server import STREAM_NODE_MAX_BYTES as EMBEDDED_NODE_BYTES

Status = Literal["ok", "note", "risk"]
"""``ok``: as streamstate expects. ``note``: works, with a cost worth knowing.
``risk``: acknowledged data can be lost, or operations fail."""


@dataclass(frozen=True)
class Finding:
    topic: str
    status: Status
    message: str
    node: str = ""  # on a cluster: the primaries it holds for, when not all of them

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def check_server(client: Any) -> list[Finding]:
    """What a server's settings mean for streamstate, one finding per concern.

    ``client`` is a ``valkey.Valkey`` (standalone, or a Sentinel's primary) or a
    ``valkey.ValkeyCluster``, whose primaries are each checked.

    Raises:
        BackendUnavailable: the server cannot be reached.
    """
    if isinstance(client, valkey.ValkeyCluster):
        return _check_cluster(client)
    return _check_node(client)


def _check_cluster(client: valkey.ValkeyCluster) -> list[Finding]:
    per_node = {
        node.name: _check_node(client.get_valkey_connection(node), cluster=True)
        for node in client.get_primaries()
    }
    # one line per distinct finding, naming the primaries it holds for unless it holds
    # for all of them
    holders: dict[tuple[str, Status, str], list[str]] = {}
    for name, findings in per_node.items():
        for f in findings:
            holders.setdefault((f.topic, f.status, f.message), []).append(name)
    return [
        Finding(topic, status, message, "" if len(names) == len(per_node) else ", ".join(names))
        for (topic, status, message), names in holders.items()
    ]


def _check_node(client: Any, *, cluster: bool = False) -> list[Finding]:
    try:
        info: dict[str, Any] = client.info("everything")
    except (valkey.ConnectionError, valkey.TimeoutError) as exc:
        raise BackendUnavailable(f"cannot read the server's INFO: {exc}") from exc
    config = _config(client)
    return [
        _server(info, cluster),
        _persistence(info, config),
        _replication(info),
        _eviction(info, config),
        _stream_nodes(config),
        _scripting(client),
    ]


def _config(client: Any) -> dict[str, str] | None:
    """The settings CONFIG GET shows, or None where the server refuses CONFIG."""
    wanted = ("appendonly", "appendfsync", "save", "maxmemory-policy", "stream-node-max-bytes")
    try:
        out: dict[str, str] = {}
        for name in wanted:
            out.update({str(k): str(v) for k, v in client.config_get(name).items()})
        return out
    except valkey.ResponseError:  # no permission, or a managed service's renamed CONFIG
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _server(info: Mapping[str, Any], cluster: bool) -> Finding:
    name = "Valkey" if "valkey_version" in info else "Redis"
    version = _text(info.get("valkey_version") or info.get("redis_version") or "?")
    mode = "cluster" if cluster or str(info.get("cluster_enabled")) == "1" else "standalone"
    role = _text(info.get("role", "?"))
    return Finding("server", "ok", f"{name} {version}, {mode}, role {role}")


def _persistence(info: Mapping[str, Any], config: Mapping[str, str] | None) -> Finding:
    aof = str(info.get("aof_enabled")) == "1"
    if aof:
        fsync = config.get("appendfsync") if config else None
        if fsync == "always":
            return Finding(
                "persistence",
                "ok",
                "AOF with appendfsync always: an acknowledged "
                "write survives a crash of the server or of the machine",
            )
        if fsync == "everysec":
            return Finding(
                "persistence",
                "ok",
                "AOF with appendfsync everysec: an "
                "acknowledged write survives a server crash; a machine crash can "
                "lose up to about a second of them",
            )
        if fsync == "no":
            return Finding(
                "persistence",
                "note",
                "AOF with appendfsync no: the kernel decides "
                "when writes reach the disk, so a machine crash can lose tens of "
                "seconds of acknowledged writes",
            )
        return Finding(
            "persistence",
            "ok",
            "AOF is on (appendfsync unknown: CONFIG is not "
            "available); wait_aof=True makes an acknowledgement mean fsynced",
        )
    saves = str(info.get("rdb_saves", "")) or "?"
    save_rule = (config or {}).get("save")
    if save_rule:
        return Finding(
            "persistence",
            "risk",
            "no AOF: RDB snapshots only (save "
            f"'{save_rule}'), so acknowledged writes since the last snapshot are "
            "lost when the server restarts; turn on appendonly",
        )
    if config is not None:
        return Finding(
            "persistence",
            "risk",
            "no AOF and no RDB snapshots: everything is "
            "lost when the server restarts; turn on appendonly",
        )
    return Finding(
        "persistence",
        "risk",
        "no AOF (snapshot rules unknown: CONFIG is not "
        f"available; {saves} RDB saves so far): acknowledged writes since the last "
        "snapshot are lost when the server restarts; on a managed service rely on "
        "replicas with wait_replicas",
    )


def _replication(info: Mapping[str, Any]) -> Finding:
    role = _text(info.get("role", ""))
    if role == "slave":
        return Finding(
            "replication",
            "risk",
            "this is a replica: streamstate must write to "
            "the primary (a replica refuses writes, or loses them on resync)",
        )
    replicas = int(info.get("connected_slaves", 0) or 0)
    if replicas == 0:
        return Finding(
            "replication", "note", "no replicas: an acknowledged write lives on this server only"
        )
    return Finding(
        "replication",
        "ok",
        f"{replicas} connected replica(s): pass "
        "wait_replicas=1 to acknowledge a write only once a replica has it, so "
        "a failover cannot lose it",
    )


def _eviction(info: Mapping[str, Any], config: Mapping[str, str] | None) -> Finding:
    policy = _text(info.get("maxmemory_policy") or (config or {}).get("maxmemory-policy") or "")
    limit = int(info.get("maxmemory", 0) or 0)
    if not policy:
        return Finding(
            "eviction",
            "note",
            "maxmemory-policy unknown; docs/reliability.md lists which values are safe",
        )
    if policy == "noeviction":
        return Finding(
            "eviction",
            "ok",
            "maxmemory-policy noeviction: at the memory limit "
            "writes fail with an error and nothing is evicted",
        )
    if limit == 0:
        return Finding(
            "eviction",
            "ok",
            f"maxmemory-policy {policy}, but no maxmemory limit is set, so nothing is evicted",
        )
    if policy.startswith("volatile-"):
        return Finding(
            "eviction",
            "note",
            f"maxmemory-policy {policy}: threads without a ttl "
            "are never evicted; with a saver ttl, memory pressure can evict a "
            "thread's keys (reads then raise ThreadDamaged or find nothing)",
        )
    return Finding(
        "eviction",
        "risk",
        f"maxmemory-policy {policy}: at the memory limit any "
        "thread's keys can be evicted (reads then raise ThreadDamaged or find "
        "nothing); use noeviction, or volatile-* with no saver ttl",
    )


def _stream_nodes(config: Mapping[str, str] | None) -> Finding:
    raw = (config or {}).get("stream-node-max-bytes")
    if raw is None:
        return Finding(
            "stream nodes",
            "note",
            "stream-node-max-bytes unknown (CONFIG is not "
            f"available); {EMBEDDED_NODE_BYTES} keeps a small thread near 2.8 kB "
            "instead of 5.3 kB: set it in the parameter group",
        )
    size = int(raw)
    if 0 < size <= EMBEDDED_NODE_BYTES:
        return Finding(
            "stream nodes", "ok", f"stream-node-max-bytes {size}: small threads stay compact"
        )
    return Finding(
        "stream nodes",
        "note",
        f"stream-node-max-bytes {size}: each thread's log "
        f"starts at about {min(size, 4096) if size else 4096:,} bytes however "
        f"little it holds; {EMBEDDED_NODE_BYTES} keeps a small thread near 2.8 kB "
        "(real conversations take the same memory either way)",
    )


def _scripting(client: Any) -> Finding:
    try:
        client.eval("return 1", 0)
    except valkey.ResponseError as exc:
        return Finding(
            "scripting",
            "risk",
            f"this user cannot run Lua scripts, and every streamstate operation is one: {exc}",
        )
    return Finding("scripting", "ok", "Lua scripts run (every operation is one script call)")


def worst(findings: Iterable[Finding]) -> Status:
    order: dict[Status, int] = {"ok": 0, "note": 1, "risk": 2}
    return max((f.status for f in findings), key=order.__getitem__, default="ok")
