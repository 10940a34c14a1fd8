"""Backend-neutral translation of LangGraph checkpointer calls into streamstate events.

Every saver — Valkey, AgentCore Memory, Bedrock sessions — builds its ``CheckpointPut``
and ``WritesPut`` events here, and addresses threads the same way. Pure: no client, no
I/O, no backend imports.
"""

from __future__ import annotations

import math
import numbers
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import Any
from uuid import UUID

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
from streamstate.eventlog.events import Blob, CheckpointPut, Typed, Write, WritesPut

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


#: The query form of a value that nothing stored can equal (a NaN anywhere in it, or a
#: value the serializer cannot encode). No stored form is this string: a stored NaN is
#: ``~nan``, and the other ``~`` forms carry brackets or a ``:``.
NO_MATCH = "~nomatch"


class _Unmatchable(Exception):
    """Raised inside a query form: the query value equals nothing that can be stored."""


def canonical(value: Any, serde: SerializerProtocol) -> str:
    """The query form of a ``list(filter=...)`` value.

    A checkpoint matches when the stored form of its metadata value (``stored_form``)
    is this string; the forms are equal exactly when Python's ``==`` is, which is what
    LangGraph's InMemorySaver compares: ``1``, ``1.0`` and ``True`` are one value (also
    nested), ``b"x"`` is not ``"x"``, a datetime is not its ISO string, a tuple is not a
    list. A NaN equals nothing, not even itself, so a query with a NaN anywhere in it
    gets ``NO_MATCH``, a form no stored value has. ``None`` gives ``null``, which also
    matches a missing key (the backends apply that rule).
    """
    try:
        return _Form(serde, query=True).of(value)
    except _Unmatchable:
        return NO_MATCH


def legacy_forms(value: Any) -> list[str]:
    """Stored forms the previous release gave a value equal to this query value, which
    checkpoints written then still hold: only a top-level ``True``/``False`` (then
    ``true``/``false``, now ``1``/``0``) can be told apart from other values."""
    if (isinstance(value, (bool, int, float)) and not isinstance(value, float)) or (
        isinstance(value, float) and value in (0.0, 1.0)
    ):
        if value == 1:
            return ["true"]
        if value == 0:
            return ["false"]
    return []


def stored_form(value: Any, serde: SerializerProtocol) -> str:
    """What ``canonical`` is compared with: the form of a metadata value as the
    serializer reads it back. A NaN in it gives ``~nan``, which no query form is."""
    return _Form(serde, query=False).of(value)


def stored_filter(metadata: Typed, serde: SerializerProtocol) -> dict[str, str]:
    """The ``filter`` of a checkpoint event: the stored form of each top-level value of
    its serialized metadata, read back first, since lists are compared against what the
    serializer returns (msgpack gives a list for a tuple, for instance)."""
    form = _Form(serde, query=False)
    return {k: form.of(v) for k, v in serde.loads_typed(metadata).items()}


def _json_float(value: float) -> str:
    return _json.encode(value).decode()


class _Form:
    """One value's form: JSON where the value is JSON (so the forms of strings, ints,
    ``None``, lists and string-keyed dicts are their compact JSON with sorted keys), and
    ``~name(...)``, ``~name[...]``, ``~name{...}`` or ``~kind:hex`` elsewhere; every part
    is self-delimiting, so different values cannot share a form."""

    def __init__(self, serde: SerializerProtocol, *, query: bool) -> None:
        self.serde = serde
        self.query = query

    def nan(self) -> str:
        if self.query:
            raise _Unmatchable
        return "~nan"

    def of(self, value: Any) -> str:
        kind = type(value)
        if kind is str:  # the common cases first
            return _json.encode(value).decode()
        if kind is int:
            return str(value)
        if value is None:
            return "null"
        if isinstance(value, str):
            return _json.encode(str.__str__(value)).decode()
        if isinstance(value, int):  # bool too: True == 1
            return str(int(value))
        if isinstance(value, float):
            return self.real(value)
        if isinstance(value, (bytes, bytearray, memoryview)):  # b"x" == bytearray(b"x")
            return f"~bytes({bytes(value).hex()})"
        if isinstance(value, list):
            return "[" + ",".join(self.of(v) for v in value) + "]"
        if isinstance(value, tuple):  # namedtuples too: they equal plain tuples
            return "~tuple[" + ",".join(self.of(v) for v in value) + "]"
        if isinstance(value, dict):
            return self.mapping(value)
        if isinstance(value, (set, frozenset)):  # set() == frozenset()
            return "~set{" + ",".join(sorted(self.of(v) for v in value)) + "}"
        if isinstance(value, datetime):
            return self.datetime(value)
        if isinstance(value, date):  # after datetime: a datetime never equals a date
            return f"~date({value.isoformat()})"
        if isinstance(value, dtime):
            return self.time(value)
        if isinstance(value, timedelta):
            return f"~timedelta({value.days},{value.seconds},{value.microseconds})"
        if isinstance(value, UUID):
            return f"~uuid({value.hex})"
        if isinstance(value, Decimal):
            if value.is_nan():
                return self.nan()
            if value.is_infinite():
                return self.real(float(value))
            return self.ratio(*value.as_integer_ratio())
        if isinstance(value, numbers.Rational):  # Fraction, and numpy-like integers
            return self.ratio(int(value.numerator), int(value.denominator))
        if isinstance(value, complex):
            if math.isnan(value.real) or math.isnan(value.imag):
                return self.nan()
            if value.imag == 0:
                return self.real(value.real)
            return f"~complex({self.real(value.real)},{self.real(value.imag)})"
        if isinstance(value, numbers.Real):  # numpy-like floats: compared exactly
            return self.real(float(value))
        return self.typed(value)

    def real(self, value: float) -> str:
        if math.isnan(value):
            return self.nan()
        if math.isinf(value):
            return "~float(inf)" if value > 0 else "~float(-inf)"
        if value.is_integer():
            return str(int(value))
        return _json_float(value)

    def ratio(self, n: int, d: int) -> str:
        """An exact rational in lowest terms: the int or float it equals, if any."""
        if d == 1:
            return str(n)
        try:
            f = n / d
        except OverflowError:
            return f"~rational({n}/{d})"
        if f.as_integer_ratio() == (n, d):
            return _json_float(f)
        return f"~rational({n}/{d})"

    def mapping(self, value: dict[Any, Any]) -> str:
        if all(isinstance(k, str) for k in value):
            # as msgspec's deterministic JSON orders them: by code point
            keys = sorted((str.__str__(k), k) for k in value)
            return "{" + ",".join(f"{self.of(s)}:{self.of(value[k])}" for s, k in keys) + "}"
        entries = sorted(f"{self.of(k)}:{self.of(v)}" for k, v in value.items())
        return "~dict{" + ",".join(entries) + "}"

    def datetime(self, value: datetime) -> str:
        offset = value.utcoffset()
        if offset is None:  # naive: equal when the fields are (fold aside)
            return f"~datetime({value.replace(fold=0).isoformat()})"
        # aware: equal when the instants are
        since = value.replace(tzinfo=None) - datetime.min - offset
        return f"~datetime(Z{since // timedelta(microseconds=1)})"

    def time(self, value: dtime) -> str:
        offset = value.utcoffset()
        if offset is None:
            return f"~time({value.replace(fold=0).isoformat()})"
        since = (
            timedelta(
                hours=value.hour,
                minutes=value.minute,
                seconds=value.second,
                microseconds=value.microsecond,
            )
            - offset
        )
        return f"~time(Z{since // timedelta(microseconds=1)})"

    def typed(self, value: Any) -> str:
        """Any other type: its serialized bytes (equal objects of one type serialize alike)."""
        try:
            kind, data = self.serde.dumps_typed(value)
        except (TypeError, ValueError):
            if self.query:  # what cannot be serialized was never stored
                raise _Unmatchable from None
            raise
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
    """The event of a LangGraph ``put``, for every saver: the checkpoint without its
    values, and a blob for each channel whose version is new (``empty`` when the channel
    has no value). A backend that stores more values with a checkpoint adds them with
    :func:`unchanged_values`.

    Raises:
        ConfigError: the checkpoint has no string id, or a metadata key is no string.
    """
    if not isinstance(checkpoint.get("id"), str) or not checkpoint["id"]:
        raise ConfigError(
            f'checkpoint["id"] must be a non-empty string, got {checkpoint.get("id")!r}'
        )
    body = dict(checkpoint)
    values: dict[str, Any] = body.pop("channel_values", {}) or {}  # type: ignore[assignment]
    blobs = [
        Blob(ch, ver, serde.dumps_typed(values[ch]) if ch in values else ("empty", b""))
        for ch, ver in new_versions.items()
    ]
    meta = get_checkpoint_metadata(config, metadata)
    for key in meta:
        if not isinstance(key, str):
            raise ConfigError(f"metadata keys must be strings, got {type(key).__name__}: {key!r}")
    run_id = meta.get("run_id")
    meta_typed = serde.dumps_typed(meta)
    return CheckpointPut(
        ns=ns_of(config),
        checkpoint_id=checkpoint["id"],
        parent_id=get_checkpoint_id(config),
        checkpoint=serde.dumps_typed(body),
        metadata=meta_typed,
        blobs=blobs,
        filter=stored_filter(meta_typed, serde),
        run_id=run_id if isinstance(run_id, str) and run_id else None,
        created_at=time.time(),
        versions=list(checkpoint["channel_versions"].items()),
    )


@dataclass(frozen=True)
class ListQuery:
    """A LangGraph ``list`` call's arguments, read the same way by every saver."""

    filter: dict[str, list[str]]
    """Each metadata key's stored forms to match: the canonical one first, then those
    older releases stored (:func:`legacy_forms`; only the Valkey log holds such data)."""
    before_id: str | None
    limit: int | None

    @property
    def empty(self) -> bool:
        """A limit of 0 (or less) asks for nothing: no call is made."""
        return self.limit is not None and self.limit <= 0

    @property
    def canonical(self) -> dict[str, str]:
        return {k: forms[0] for k, forms in self.filter.items()}


def list_query(
    filter: Mapping[str, Any] | None,
    before: RunnableConfig | None,
    limit: int | None,
    serde: SerializerProtocol,
) -> ListQuery:
    forms = {k: [canonical(v, serde), *legacy_forms(v)] for k, v in (filter or {}).items()}
    return ListQuery(forms, get_checkpoint_id(before) if before else None, limit)


def unchanged_values(
    checkpoint: Checkpoint, new_versions: ChannelVersions, serde: SerializerProtocol
) -> list[Blob]:
    """Blobs of the checkpoint's channels whose version is not new and that have a value:
    what a backend that keeps a checkpoint's values together adds to
    :func:`checkpoint_event` (Bedrock: one step read gives the whole checkpoint)."""
    values: Mapping[str, Any] = checkpoint.get("channel_values") or {}
    return [
        Blob(ch, ver, serde.dumps_typed(values[ch]))
        for ch, ver in checkpoint["channel_versions"].items()
        if ch not in new_versions and ch in values
    ]


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
