"""The pure core of ``ValkeyCache``: LangGraph cache calls to planned Valkey calls, and back.

Nothing here touches a client, awaits, or reads a clock (expiry times are computed by
the server from its own ``TIME``). The sync and async methods of
:class:`streamstate.adapters.cache.ValkeyCache` only execute what these functions plan.

Keys may be given the way LangGraph passes them, ``(namespace, key)`` with a tuple
namespace, or as a plain string (``cache.get(["prompt-1"])``, as the
``langgraph-checkpoint-aws`` README writes them), which means the empty namespace. A
string namespace in a pair is a one-part namespace. Results are keyed by the caller's own
key objects, so ``cache.get([k])[k]`` works for every form.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol

from streamstate.errors import CodecError, ConfigError
from streamstate.eventlog._drive import Flow
from streamstate.eventlog.valkey._core import Command, ScriptCall, ttl_ms
from streamstate.projections.cache import (
    CACHE_CLEAR,
    CACHE_CLEAR_NAMESPACE,
    CACHE_REGISTER,
    CACHE_SET,
    CACHE_SET_NAMESPACE,
    CacheKeys,
    Namespace,
)

TYPE_SEPARATOR = b":"
"""Between the serde type name and the payload in a stored value (``msgpack:<bytes>``)."""

NEVER = -1
"""Script argument: the entry never expires."""

EXPIRED = 0
"""Script argument: the entry expired on arrival (ttl <= 0), so it is deleted."""

MAX_TTL = 1e12
"""Seconds; longer TTLs would overflow the server's millisecond expiry arithmetic."""


@dataclass(frozen=True)
class GetPlan:
    """A planned batch read.

    Attributes:
        call: One ``MGET`` of every entry key, or ``None`` when no key was asked for.
        keys: The caller's keys (or their normalised form when unhashable), in ``MGET``
            order, to key the result with.
        names: The entry key names, in the same order (named in decode errors).
    """

    call: Command | None
    keys: tuple[Hashable, ...]
    names: tuple[str, ...]


def normalize_namespace(ns: Any) -> Namespace:
    """A namespace as a tuple of strings; a string is a one-part namespace."""
    if isinstance(ns, str):
        return (ns,)
    if not isinstance(ns, (tuple, list)):
        raise ConfigError(f"a cache namespace must be a tuple of strings, got {ns!r}")
    for part in ns:
        if not isinstance(part, str):
            raise ConfigError(f"cache namespace parts must be strings, got {ns!r}")
    return tuple(ns)


def normalize_key(key: Any) -> tuple[Namespace, str]:
    """``(namespace, key)`` from a LangGraph full key or a plain string key."""
    if isinstance(key, str):
        return (), key
    if not isinstance(key, (tuple, list)) or len(key) != 2 or not isinstance(key[1], str):
        raise ConfigError(f"a cache key must be a string or a (namespace, key) pair, got {key!r}")
    return normalize_namespace(key[0]), key[1]


def _result_key(key: Any, ns: Namespace, name: str) -> Hashable:
    try:
        hash(key)
    except TypeError:
        return (ns, name)
    return key


def plan_get(keys: CacheKeys, requested: Sequence[Any]) -> GetPlan:
    """Plan reading ``requested`` in one ``MGET`` (no call at all for an empty batch)."""
    result_keys: list[Hashable] = []
    names: list[str] = []
    for key in requested:
        ns, name = normalize_key(key)
        result_keys.append(_result_key(key, ns, name))
        names.append(keys.entry(ns, name))
    call = Command(("MGET", *names)) if names else None
    return GetPlan(call, tuple(result_keys), tuple(names))


def read_get(
    plan: GetPlan, reply: Sequence[bytes | None] | None, serde: SerializerProtocol
) -> dict[Any, Any]:
    """The hits of a planned read, keyed by the caller's keys; misses are absent."""
    if plan.call is None:
        return {}
    if reply is None or len(reply) != len(plan.names):
        raise CodecError(f"MGET of {len(plan.names)} keys returned {reply!r}", stage="reply")
    return {
        key: decode_value(serde, raw, name)
        for key, name, raw in zip(plan.keys, plan.names, reply)
        if raw is not None
    }


def encode_value(serde: SerializerProtocol, value: Any) -> bytes:
    """``type:payload`` from the serde's ``dumps_typed``."""
    type_, data = serde.dumps_typed(value)
    if TYPE_SEPARATOR.decode() in type_:
        raise CodecError(f"serde type name {type_!r} contains ':'", stage="serde")
    return type_.encode() + TYPE_SEPARATOR + data


def decode_value(serde: SerializerProtocol, raw: bytes, name: str) -> Any:
    """Invert :func:`encode_value`; a foreign or undecodable value raises, never misses.

    The serde decides which classes may be revived (LangGraph's msgpack allow-list).
    """
    type_, sep, data = bytes(raw).partition(TYPE_SEPARATOR)
    if not sep:
        raise CodecError(
            f"cache entry {name!r} is not a streamstate value (no type prefix)", stage="header"
        )
    try:
        return serde.loads_typed((type_.decode(), data))
    except Exception as exc:
        raise CodecError(
            f"cache entry {name!r} could not be decoded as {type_!r}: {exc}", stage="serde"
        ) from exc


def check_ttl(ttl: Any, what: str = "ttl") -> float | None:
    """A TTL in seconds (sub-second allowed) or ``None``; refuses non-numbers."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or math.isnan(ttl):
        raise ConfigError(f"{what} must be a number of seconds or None, got {ttl!r}")
    if ttl > MAX_TTL and not math.isinf(ttl):
        raise ConfigError(f"{what} must be at most {MAX_TTL:g} seconds, got {ttl!r}")
    return float(ttl)


def entry_ms(ttl: Any, default: float | None) -> int:
    """The script's expiry argument for one entry.

    ``None`` falls back to the cache's default TTL, and to never expiring without one.
    A TTL of zero or less stores nothing and removes an older value, as an entry that
    expired on arrival (what LangGraph's ``InMemoryCache`` does).
    """
    seconds = check_ttl(ttl)
    if seconds is None:
        seconds = default
    if seconds is None or (math.isinf(seconds) and seconds > 0):
        return NEVER
    if seconds <= 0:
        return EXPIRED
    return ttl_ms(seconds)


def plan_set(
    keys: CacheKeys,
    pairs: Mapping[Any, Any],
    serde: SerializerProtocol,
    default_ttl: float | None,
) -> ScriptCall | None:
    """Plan writing every pair, indexes and registry included, in one script call.

    Pairs are grouped by namespace (a namespace's index is named once); within a
    namespace the mapping's order is kept, so a key given twice keeps its last value.
    """
    groups: dict[Namespace, list[tuple[str, int, bytes]]] = {}
    for key, item in pairs.items():
        ns, name = normalize_key(key)
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ConfigError(f"cache.set expects {{key: (value, ttl)}}, got {key!r}: {item!r}")
        value, ttl = item
        ms = entry_ms(ttl, default_ttl)
        payload = b"" if ms == EXPIRED else encode_value(serde, value)
        groups.setdefault(ns, []).append((keys.entry(ns, name), ms, payload))
    if not groups:
        return None
    script_keys: list[str] = [keys.registry]
    args: list[Any] = [len(groups)]
    for ns, entries in groups.items():
        script_keys.append(keys.index(ns))
        args.append(len(entries))
        for name, ms, payload in entries:
            script_keys.append(name)
            args.extend((ms, payload))
    # Rewriting the same values (a retry after a lost reply) converges to the same
    # state, so the executor may retry it.
    return ScriptCall(CACHE_SET, script_keys, args, idempotent=True)


def plan_clear(keys: CacheKeys, namespaces: Sequence[Any] | None) -> ScriptCall | None:
    """Plan deleting exactly ``namespaces`` (not their children), or everything on ``None``.

    An empty sequence clears nothing and needs no call.
    """
    if namespaces is None:
        return ScriptCall(CACHE_CLEAR, [keys.registry], ["all"])
    if isinstance(namespaces, str):
        raise ConfigError(
            f"clear() takes a sequence of namespaces, got the string {namespaces!r}; "
            f"write clear([({namespaces!r},)])"
        )
    indexes = list(dict.fromkeys(keys.index(normalize_namespace(ns)) for ns in namespaces))
    if not indexes:
        return None
    return ScriptCall(CACHE_CLEAR, [keys.registry, *indexes], ["some"])


# -- flows: one call in standalone mode, one per namespace (hash slot) on a cluster ------


def _tag(name: str) -> str:
    return name[name.index("{") : name.index("}") + 1]


def get_flow(
    keys: CacheKeys, requested: Sequence[Any], serde: SerializerProtocol, cluster: bool
) -> Flow[dict[Any, Any]]:
    """Read ``requested``: one ``MGET``, or on a cluster one per namespace in the batch."""
    plan = plan_get(keys, requested)
    if plan.call is None:
        return {}
    if not cluster:
        return read_get(plan, (yield plan.call), serde)
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(plan.names):
        groups.setdefault(_tag(name), []).append(i)
    reply: list[Any] = [None] * len(plan.names)
    for positions in groups.values():
        values = yield Command(("MGET", *(plan.names[i] for i in positions)))
        for i, value in zip(positions, values):
            reply[i] = value
    return read_get(plan, reply, serde)


def set_flow(
    keys: CacheKeys,
    pairs: Mapping[Any, Any],
    serde: SerializerProtocol,
    default_ttl: float | None,
    cluster: bool,
) -> Flow[None]:
    """Write ``pairs``: one atomic script, or on a cluster a script per namespace, each
    followed by its registry update (a namespace is written before it is listed)."""
    call = plan_set(keys, pairs, serde, default_ttl)
    if call is None:
        return
    if not cluster:
        yield call
        return
    k, a = 1, 1
    for _ in range(call.args[0]):
        index, n = call.keys[k], call.args[a]
        entries = call.keys[k + 1 : k + 1 + n]
        values = call.args[a + 1 : a + 1 + 2 * n]
        k, a = k + 1 + n, a + 1 + 2 * n
        top = yield ScriptCall(CACHE_SET_NAMESPACE, [index, *entries], [n, *values])
        yield ScriptCall(CACHE_REGISTER, [keys.registry], [index, "" if top is None else top])


def clear_flow(keys: CacheKeys, namespaces: Sequence[Any] | None, cluster: bool) -> Flow[None]:
    """Delete exactly ``namespaces`` (or all): one script, or per namespace on a cluster."""
    call = plan_clear(keys, namespaces)
    if call is None:
        return
    if not cluster:
        yield call
        return
    if namespaces is None:
        indexes = [
            i.decode() if isinstance(i, bytes) else i
            for i in (yield Command(("ZRANGE", keys.registry, 0, -1)))
        ]
    else:
        indexes = call.keys[1:]
    for index in indexes:
        yield ScriptCall(CACHE_CLEAR_NAMESPACE, [index], [])
        yield ScriptCall(CACHE_REGISTER, [keys.registry], [index, ""])
