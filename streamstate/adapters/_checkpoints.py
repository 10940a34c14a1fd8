"""Backend-neutral translation of LangGraph checkpointer calls into streamstate events.

Every saver — Valkey, AgentCore Memory, Bedrock sessions — builds its ``CheckpointPut``
and ``WritesPut`` events here, and addresses threads the same way. Pure: no client, no
I/O, no backend imports.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from streamstate.errors import ConfigError
from streamstate.eventlog.events import Blob, CheckpointPut, Write, WritesPut

_json = msgspec.json.Encoder(order="deterministic")

THREAD = "t"
ACTOR_THREAD = "a"


def text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, (bytes, bytearray)) else v


# -- addressing ------------------------------------------------------------------


@dataclass(frozen=True)
class Thread:
    """Where a LangGraph thread lives: its log session and how configs name it."""

    thread_id: str
    actor_id: str | None = None

    @property
    def session(self) -> tuple[str, ...]:
        if self.actor_id is None:
            return (THREAD, self.thread_id)
        return (ACTOR_THREAD, self.actor_id, self.thread_id)

    def config(self, ns: str, checkpoint_id: str) -> RunnableConfig:
        configurable: dict[str, Any] = {
            "thread_id": self.thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
        if self.actor_id is not None:
            configurable["actor_id"] = self.actor_id
        return {"configurable": configurable}

    @classmethod
    def from_session(cls, parts: Sequence[str]) -> Thread | None:
        if len(parts) == 2 and parts[0] == THREAD:
            return cls(parts[1])
        if len(parts) == 3 and parts[0] == ACTOR_THREAD:
            return cls(parts[2], parts[1])
        return None


def require_str(value: Any, name: str) -> str:
    if not isinstance(value, str) or value == "":
        raise ConfigError(
            f'config["configurable"]["{name}"] must be a non-empty string, got {value!r}'
        )
    return value


def thread_of(config: RunnableConfig, *, actors: bool) -> Thread:
    """The thread a config names; ``actors`` requires an ``actor_id`` too."""
    configurable = config.get("configurable") or {}
    if "thread_id" not in configurable:
        raise ConfigError('config["configurable"]["thread_id"] is required')
    thread_id = require_str(configurable["thread_id"], "thread_id")
    if not actors:
        return Thread(thread_id)
    if configurable.get("actor_id") is None:
        raise ConfigError(
            'config["configurable"]["actor_id"] is required by AgentCoreValkeySaver '
            "(the AgentCore actor that owns the session)"
        )
    return Thread(thread_id, require_str(configurable["actor_id"], "actor_id"))


def ns_of(config: RunnableConfig) -> str:
    ns = (config.get("configurable") or {}).get("checkpoint_ns", "")
    if not isinstance(ns, str):
        raise ConfigError(f'config["configurable"]["checkpoint_ns"] must be a string, got {ns!r}')
    return ns


# -- values -----------------------------------------------------------------------


def canonical(value: Any, serde: SerializerProtocol) -> str:
    """A string equal for equal metadata values, so the server can compare filters."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        return _json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        kind, data = serde.dumps_typed(value)
        return f"~{kind}:{data.hex()}"


def next_version(current: str | int | float | None) -> str:
    """String versions as LangGraph's InMemorySaver makes them: counter, then a random tie."""
    if current is None:
        n = 0
    elif isinstance(current, (int, float)):
        n = int(current)
    else:
        n = int(current.split(".")[0])
    return f"{n + 1:032}.{random.random():016}"


# -- events -------------------------------------------------------------------------


def checkpoint_event(
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    new_versions: ChannelVersions,
    serde: SerializerProtocol,
) -> CheckpointPut:
    """The event of a LangGraph ``put``: the checkpoint without its values, and a blob
    for each channel whose version is new (``empty`` when the channel has no value)."""
    if not isinstance(checkpoint.get("id"), str) or not checkpoint["id"]:
        raise ConfigError(
            f'checkpoint["id"] must be a non-empty string, got {checkpoint.get("id")!r}'
        )
    body = dict(checkpoint)
    values: dict[str, Any] = body.pop("channel_values", {}) or {}
    blobs = [
        Blob(ch, ver, serde.dumps_typed(values[ch]) if ch in values else ("empty", b""))
        for ch, ver in new_versions.items()
    ]
    meta = get_checkpoint_metadata(config, metadata)
    for key in meta:
        if not isinstance(key, str):
            raise ConfigError(f"metadata keys must be strings, got {type(key).__name__}: {key!r}")
    run_id = meta.get("run_id")
    return CheckpointPut(
        ns=ns_of(config),
        checkpoint_id=checkpoint["id"],
        parent_id=get_checkpoint_id(config),
        checkpoint=serde.dumps_typed(body),
        metadata=serde.dumps_typed(meta),
        blobs=blobs,
        filter={k: canonical(v, serde) for k, v in meta.items()},
        run_id=run_id if isinstance(run_id, str) else None,
        created_at=time.time(),
        versions=list(checkpoint["channel_versions"].items()),
    )


def writes_event(
    config: RunnableConfig,
    writes: Sequence[tuple[str, Any]],
    task_id: str,
    task_path: str,
    serde: SerializerProtocol,
) -> WritesPut:
    """The event of a LangGraph ``put_writes``; special channels take LangGraph's
    negative indexes so they overwrite instead of accumulating."""
    checkpoint_id = get_checkpoint_id(config)
    if not checkpoint_id:
        raise ConfigError('put_writes needs config["configurable"]["checkpoint_id"]')
    return WritesPut(
        ns=ns_of(config),
        checkpoint_id=checkpoint_id,
        task_id=task_id,
        task_path=task_path,
        writes=[
            Write(WRITES_IDX_MAP.get(channel, idx), channel, serde.dumps_typed(value))
            for idx, (channel, value) in enumerate(writes)
        ],
        created_at=time.time(),
    )
