"""The projection hook API: views are updated by ops that run inside the append.

A projection turns an event into a list of :class:`Op` (pure Python, no I/O). The
backend runs the event append and all its ops in one atomic server-side step; the same
ops, replayed from the log, rebuild the view. Ops name keys directly, so a projection
decides its own key layout (under the session's hash tag).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from streamstate.eventlog.events import Event
from streamstate.eventlog.keys import SessionKeys

Arg = bytes | str | int | float


class Op(NamedTuple):
    """One mutation of a view. ``code`` is one of :data:`OP_SPECS`."""

    code: str
    key: str
    args: tuple[Arg, ...] = ()


class OpSpec(NamedTuple):
    """What the server-side interpreter knows of one op code."""

    arity: int  # arguments after the key
    key_type: str | None  # the type the key must hold (or not exist); None: any
    batched: bool  # a run of consecutive ops with this code on one key is one command


OP_SPECS: dict[str, OpSpec] = {
    "HSET": OpSpec(2, "hash", True),  # field value
    "HSETNX": OpSpec(2, "hash", True),  # field value: insert-if-absent
    "HMAX": OpSpec(2, "hash", False),  # field value: set if absent or greater (bytewise)
    "HDEL": OpSpec(1, "hash", True),  # field
    "ZADD": OpSpec(2, "zset", True),  # score member
    "ZREM": OpSpec(1, "zset", True),  # member
    "SADD": OpSpec(1, "set", True),  # member
    "SREM": OpSpec(1, "set", True),  # member
    "SET": OpSpec(1, "string", False),  # value
    "DEL": OpSpec(0, None, False),
    "PEXPIRE": OpSpec(1, None, False),  # milliseconds
}
"""The op codes: the one definition. The append script's Lua tables are rendered from
it (:func:`streamstate.eventlog.valkey.scripts.op_tables_lua`), so the two cannot differ."""

ARITY: dict[str, int] = {code: spec.arity for code, spec in OP_SPECS.items()}
"""Op codes and their argument counts."""


def hset(key: str, field: Arg, value: Arg) -> Op:
    return Op("HSET", key, (field, value))


def hsetnx(key: str, field: Arg, value: Arg) -> Op:
    return Op("HSETNX", key, (field, value))


def hmax(key: str, field: Arg, value: Arg) -> Op:
    return Op("HMAX", key, (field, value))


def hdel(key: str, field: Arg) -> Op:
    return Op("HDEL", key, (field,))


def zadd(key: str, score: float, member: Arg) -> Op:
    return Op("ZADD", key, (score, member))


def zrem(key: str, member: Arg) -> Op:
    return Op("ZREM", key, (member,))


def sadd(key: str, member: Arg) -> Op:
    return Op("SADD", key, (member,))


def srem(key: str, member: Arg) -> Op:
    return Op("SREM", key, (member,))


def set_(key: str, value: Arg) -> Op:
    return Op("SET", key, (value,))


def delete(key: str) -> Op:
    return Op("DEL", key)


def pexpire(key: str, ms: int) -> Op:
    return Op("PEXPIRE", key, (ms,))


class Projection(Protocol):
    """A view materialised from a session's events.

    ``apply`` is the view's one definition of how an event changes it; live appends
    and rebuilds both go through it. It must ignore events it does not handle.
    """

    name: str

    def apply(self, keys: SessionKeys, event: Event) -> Sequence[Op]: ...

    def view_keys(self, keys: SessionKeys) -> Sequence[str]:
        """Every key this view may hold for the session (for TTL, delete and rebuild)."""
        ...
