"""Which checkpoints a DeltaChannel is rebuilt from: one rule for every saver.

A ``DeltaChannel`` stores a value (a ``_DeltaSnapshot``, or a plain value from before
the channel became one) only every so often; in between, a checkpoint has a version of
the channel and no value, and LangGraph rebuilds it from the nearest ancestor holding a
value plus the writes of the checkpoints since (``get_delta_channel_history``). A
checkpoint's delta channels are the ones its metadata counts in
``counters_since_delta_snapshot`` (LangGraph drops a channel from it at a snapshot).

Whatever drops checkpoints (``prune(keep_latest)``, compaction) must therefore keep,
for each checkpoint it keeps, the parent chain back to the checkpoint that holds a
value of each of those channels. Pure: the savers say how to read their own records.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, TypeVar

from streamstate.errors import CodecError

COUNTERS = "counters_since_delta_snapshot"
"""LangGraph's checkpoint metadata key naming the delta channels not stored since a
snapshot (channel name to ``(updates, supersteps)``)."""

K = TypeVar("K", bound=Hashable)

_OPEN = "{[("
_CLOSE = "}])"
_DECODER = json.JSONDecoder()


def delta_channels(metadata: Any, channels: Iterable[str]) -> set[str]:
    """The channels of ``channels`` (those a checkpoint has a version of) that its
    decoded ``metadata`` counts as delta channels."""
    counters = metadata.get(COUNTERS) if isinstance(metadata, Mapping) else None
    if not isinstance(counters, Mapping):
        return set()
    return {ch for ch in channels if ch in counters}


def filter_delta_channels(filter: Mapping[str, str], channels: Iterable[str]) -> set[str]:
    """:func:`delta_channels` from a checkpoint event's ``filter`` instead of its
    metadata, for a flow that has no serde: the filter holds the stored form of each
    top-level metadata value (``_checkpoints.stored_filter``), and the form of a
    string-keyed dict is ``{"name":<form>,...}``, keys as JSON strings.

    Raises:
        CodecError: The counters' form is not one of a string-keyed dict.
    """
    form = filter.get(COUNTERS)
    if not form:
        return set()
    return set(channels) & _form_keys(form)


def _form_keys(form: str) -> set[str]:
    """The keys of a string-keyed dict's stored form. Every value form is
    self-delimiting (strings quoted as JSON, everything else bracketed or a bare
    token), so a JSON string at depth 1 followed by ``:`` is a key."""
    if not form.startswith("{"):
        raise CodecError(f"{COUNTERS} is stored as {form[:40]!r}, not a string-keyed dict")
    keys: set[str] = set()
    depth = 0
    i = 0
    while i < len(form):
        c = form[i]
        if c == '"':
            key, i = _DECODER.raw_decode(form, i)
            if depth == 1 and form.startswith(":", i):
                keys.add(key)
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        i += 1
    return keys


def with_delta_ancestors(
    kept: Iterable[K],
    *,
    deltas: Callable[[K], set[str]],
    stores: Callable[[K], set[str]],
    parent: Callable[[K], K | None],
) -> set[K]:
    """``kept`` and, for each kept checkpoint, its ancestors back to the one holding a
    value of each of its delta channels.

    Args:
        kept: The checkpoints to keep.
        deltas: A checkpoint's delta channels (see :func:`delta_channels`).
        stores: The channels a checkpoint holds a value of, as ``get_tuple`` resolves
            its ``channel_values`` (a value written with an older version counts).
        parent: A checkpoint's parent, or ``None`` at the root or where the parent is
            gone (the walk, like LangGraph's, ends there).

    Returns:
        The checkpoints to keep, ``kept`` included.
    """
    out = set(kept)
    for key in list(out):
        waiting = set(deltas(key))
        cursor: K | None = key
        while waiting and cursor is not None:
            out.add(cursor)
            waiting -= stores(cursor)
            cursor = parent(cursor)
    return out
