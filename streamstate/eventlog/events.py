"""Every event streamstate writes to a log.

Events are frozen, tagged msgspec Structs encoded as arrays. Schema evolution rules
(msgspec's): new fields go last with defaults, field types never change, tags never
change (a renamed class keeps its tag, so stored data is never orphaned). Channel and
item values stay opaque ``(type, bytes)`` pairs produced by LangGraph's serde.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

Typed = tuple[str, bytes]
"""A value as LangGraph's serde produced it: ``(type name, bytes)``."""

Version = str | int | float


class Blob(msgspec.Struct, array_like=True, frozen=True):
    """One channel value at one version."""

    channel: str
    version: Version
    value: Typed


class CheckpointPut(msgspec.Struct, tag="cp", array_like=True, frozen=True):
    """A checkpoint was saved (LangGraph ``put``)."""

    ns: str
    """Checkpoint namespace (``""`` for the root graph)."""
    checkpoint_id: str
    parent_id: str | None
    checkpoint: Typed
    """The checkpoint without ``channel_values``, through the saver's serde."""
    metadata: Typed
    """The checkpoint metadata, through the saver's serde."""
    blobs: list[Blob]
    """Channel values whose version is new in this checkpoint."""
    filter: dict[str, str]
    """Canonical JSON of each top-level metadata value, for server-side ``list`` filters."""
    run_id: str | None = None
    created_at: float = 0.0
    """Unix time the event was created (seconds)."""
    versions: list[tuple[str, Version]] = []
    """Every ``(channel, version)`` of the checkpoint (``channel_versions``)."""


class Write(msgspec.Struct, array_like=True, frozen=True):
    idx: int
    """Index in the task's writes; special channels use LangGraph's negative indexes."""
    channel: str
    value: Typed


class WritesPut(msgspec.Struct, tag="wr", array_like=True, frozen=True):
    """A task's pending writes against a checkpoint (LangGraph ``put_writes``)."""

    ns: str
    checkpoint_id: str
    task_id: str
    task_path: str
    writes: list[Write]
    created_at: float = 0.0


class BlobsPut(msgspec.Struct, tag="bl", array_like=True, frozen=True):
    """More channel values of the checkpoint that follows it in the log: a checkpoint
    with very many new values is stored as a few of these, then its ``CheckpointPut``."""

    ns: str
    checkpoint_id: str
    blobs: list[Blob]


class FieldVector(msgspec.Struct, array_like=True, frozen=True):
    """An embedding computed at put time (replay never re-embeds)."""

    path: str
    vector: list[float]


class ItemPut(msgspec.Struct, tag="ip", array_like=True, frozen=True):
    """A store item was written (LangGraph ``BaseStore.put``)."""

    namespace: tuple[str, ...]
    key: str
    value: bytes
    """The item's value dict, msgpack-encoded (LangGraph store values are JSON-like)."""
    created_at: float
    updated_at: float
    ttl_minutes: float | None = None
    vectors: list[FieldVector] = []


class ItemDeleted(msgspec.Struct, tag="id", array_like=True, frozen=True):
    """A store item was deleted."""

    namespace: tuple[str, ...]
    key: str
    deleted_at: float = 0.0


Event = CheckpointPut | WritesPut | BlobsPut | ItemPut | ItemDeleted
"""Every event type; decoding uses this tagged union."""

EVENT_TYPES: tuple[type, ...] = (CheckpointPut, WritesPut, BlobsPut, ItemPut, ItemDeleted)


class LogEntry(NamedTuple):
    """One decoded log entry."""

    id: str
    """The backend's entry id (a Valkey stream id such as ``1732200000000-0``)."""
    event: Event


def event_kind(event: Event) -> str:
    """The event's stable tag (``cp``, ``wr``, ``bl``, ``ip``, ``id``)."""
    return type(event).__struct_config__.tag  # type: ignore[return-value]


# -- values stored beside the event --------------------------------------------------
#
# A backend may store an event's channel and write values apart from the rest of it (the
# Valkey log keeps each in its own stream field, so views can point at one value instead
# of holding a second copy). ``detach`` and ``attach`` are the two directions; a detached
# event carries ``EMPTY`` in place of each value.

EMPTY: Typed = ("", b"")


def detach(event: Event) -> tuple[Event, list[Typed]]:
    """Split the event's values off, in a fixed order (blobs, or writes, by position)."""
    match event:
        case CheckpointPut(blobs=blobs) | BlobsPut(blobs=blobs) if blobs:
            bare = [Blob(b.channel, b.version, EMPTY) for b in blobs]
            return msgspec.structs.replace(event, blobs=bare), [b.value for b in blobs]
        case WritesPut(writes=writes) if writes:
            bare_w = [Write(w.idx, w.channel, EMPTY) for w in writes]
            return msgspec.structs.replace(event, writes=bare_w), [w.value for w in writes]
        case _:
            return event, []


def attach(event: Event, values: list[Typed]) -> Event:
    """Invert :func:`detach`."""
    if not values:
        return event
    match event:
        case CheckpointPut(blobs=blobs) | BlobsPut(blobs=blobs) if len(blobs) == len(values):
            full = [Blob(b.channel, b.version, v) for b, v in zip(blobs, values)]
            return msgspec.structs.replace(event, blobs=full)
        case WritesPut(writes=writes) if len(writes) == len(values):
            full_w = [Write(w.idx, w.channel, v) for w, v in zip(writes, values)]
            return msgspec.structs.replace(event, writes=full_w)
    raise ValueError(f"{len(values)} detached values do not fit a {type(event).__name__}")
