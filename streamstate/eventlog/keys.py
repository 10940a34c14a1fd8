"""Key layout: every key of one session shares one hash tag.

A session is named by a tuple of strings (``("t", thread_id)``, ``("store", name)``).
Each part is percent-escaped so that only ``[A-Za-z0-9-_.~%]`` remain: no ``{``, ``}``,
``:``, ``*``, ``?``, ``[`` or newline can reach a key, glob pattern or hash tag, and
escaping is injective, so no id can name another session's keys.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from urllib.parse import quote, unquote

from streamstate.errors import ConfigError

SessionName = str | Sequence[str]

_SAFE = "-_.~"
_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch


def escape(part: str) -> str:
    """Escape one id for use inside a key (injective, glob- and tag-safe)."""
    if not isinstance(part, str):
        raise ConfigError(f"ids must be strings, got {type(part).__name__}: {part!r}")
    return _escape(part)


@lru_cache(maxsize=8192)
def _escape(part: str) -> str:
    # channel names, namespaces and thread ids repeat on every put: cache them
    return part if _PLAIN(part) is not None else quote(part, safe=_SAFE)


def unescape(part: str) -> str:
    """Invert :func:`escape`."""
    return unquote(part) if "%" in part else part


def session_parts(session: SessionName) -> tuple[str, ...]:
    """Normalise a session name to a non-empty tuple of non-empty strings."""
    parts = (session,) if isinstance(session, str) else tuple(session)
    if not parts:
        raise ConfigError("a session name needs at least one part")
    for p in parts:
        if not isinstance(p, str):
            raise ConfigError(f"session parts must be strings, got {type(p).__name__}: {p!r}")
        if p == "":
            raise ConfigError(f"session parts must be non-empty strings, got {parts!r}")
    return parts


def session_tag(session: SessionName) -> str:
    """The hash-tag body of a session: escaped parts joined by ``,``."""
    return ",".join(escape(p) for p in session_parts(session))


def parse_session_tag(tag: str) -> tuple[str, ...]:
    """Invert :func:`session_tag`."""
    return tuple(unescape(p) for p in tag.split(","))


@dataclass(frozen=True)
class Keyspace:
    """Names the keys of a streamstate deployment under one prefix."""

    prefix: str = "ss"

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in "{}*?[] \n"):
            raise ConfigError(
                f"prefix must be non-empty without braces or glob chars: {self.prefix!r}"
            )

    @property
    def sessions(self) -> str:
        """Registry of every session that has a log (a set of session tags)."""
        return f"{self.prefix}:sessions"

    def session(self, session: SessionName) -> SessionKeys:
        try:
            return _session_keys(self.prefix, session)
        except TypeError:  # an unhashable name (a list): not cached, same checks
            return SessionKeys(self.prefix, session_tag(session))

    def global_key(self, *parts: str) -> str:
        """A key outside any session (registries, indexes), parts escaped."""
        return ":".join([self.prefix, *(escape(p) for p in parts)])


@dataclass(frozen=True)
class SessionKeys:
    """The keys of one session; all share the hash tag ``{tag}``."""

    prefix: str
    tag: str

    @cached_property
    def base(self) -> str:
        return f"{self.prefix}:{{{self.tag}}}"

    @property
    def log(self) -> str:
        """The session's event stream."""
        return f"{self.base}:log"

    @property
    def idem(self) -> str:
        """Caller-supplied idempotency keys -> entry id."""
        return f"{self.base}:idem"

    def view(self, name: str) -> str:
        """A projection key of this session (``name`` is a fixed identifier)."""
        return f"{self.base}:{name}"

    @property
    def parts(self) -> tuple[str, ...]:
        return parse_session_tag(self.tag)


@lru_cache(maxsize=4096)
def _session_keys(prefix: str, session: SessionName) -> SessionKeys:
    # every operation names its thread's keys two or three times: build them once
    return SessionKeys(prefix, session_tag(session))
