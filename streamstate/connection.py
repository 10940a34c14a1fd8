"""Clients from URLs: ``valkey://``, ``valkeys://``, ``redis://``, ``rediss://``, ``unix://``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import valkey
import valkey.asyncio

from streamstate.errors import ConfigError
from streamstate.server import resolve_url

SCHEMES = ("valkey", "valkeys", "redis", "rediss", "unix")


def _check(url: str) -> str:
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ConfigError(f"unsupported URL scheme {scheme!r} in {url!r}; use one of {SCHEMES}")
    return url


def client_from_url(url: str | None = None, *, pool_size: int = 10, **kwargs: Any) -> valkey.Valkey:
    """A sync client (binary replies) for ``url``; no URL means the embedded server."""
    url = _check(resolve_url(url))
    return valkey.Valkey.from_url(url, max_connections=pool_size, decode_responses=False, **kwargs)


def async_client_from_url(
    url: str | None = None, *, pool_size: int = 10, **kwargs: Any
) -> valkey.asyncio.Valkey:
    """An asyncio client (binary replies) for ``url``; no URL means the embedded server."""
    url = _check(resolve_url(url))
    return valkey.asyncio.Valkey.from_url(
        url, max_connections=pool_size, decode_responses=False, **kwargs
    )
