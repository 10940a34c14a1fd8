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
    """One mutation of a view. ``code`` is one of :data:`ARITY`."""

    code: str
    key: str
    args: tuple[Arg, ...] = ()


ARITY: dict[str, int] = {
    "HSET": 2,  # field value
    "HSETNX": 2,  # field value: insert-if-absent
    "HMAX": 2,  # field value: set if absent or value is greater (bytewise)
    "HDEL": 1,  # field
    "ZADD": 2,  # score member
    "ZREM": 1,  # member
    "SADD": 1,  # member
    "SREM": 1,  # member
    "SET": 1,  # value
    "DEL": 0,
    "PEXPIRE": 1,  # milliseconds
}
"""Op codes and their argument counts; the server-side interpreter knows exactly these."""


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
