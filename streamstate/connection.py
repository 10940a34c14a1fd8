"""Clients from URLs: ``valkey://``, ``valkeys://``, ``redis://``, ``rediss://``, ``unix://``.

``cluster=True`` (or ``?cluster=true`` in the URL) gives a Valkey Cluster client.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import valkey
import valkey.asyncio
import valkey.asyncio.cluster
import valkey.cluster

from streamstate.errors import ConfigError
from streamstate.server import resolve_url

SCHEMES = ("valkey", "valkeys", "redis", "rediss", "unix")


def _check(url: str) -> str:
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ConfigError(f"unsupported URL scheme {scheme!r} in {url!r}; use one of {SCHEMES}")
    return url


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, fit to print or log."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def wants_cluster(url: str, cluster: bool | None) -> tuple[str, bool]:
    """Strip a ``cluster`` query flag from ``url``; say whether a cluster client is wanted."""
    parts = urlsplit(url)
    query = [q for q in parts.query.split("&") if q]
    flags = [q for q in query if q.split("=", 1)[0] == "cluster"]
    rest = "&".join(q for q in query if q not in flags)
    from_url = bool(flags) and flags[-1].partition("=")[2].lower() in ("", "1", "true", "yes")
    return parts._replace(query=rest).geturl(), bool(cluster) or from_url


DEFAULT_SOCKET_TIMEOUT = 5.0
"""Seconds; without a timeout a server that stops answering blocks a call forever."""
DEFAULT_POOL_TIMEOUT = 20.0
"""Seconds a caller waits for a free pooled connection before giving up."""


def _defaults(kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs.setdefault("socket_timeout", DEFAULT_SOCKET_TIMEOUT)
    kwargs.setdefault("socket_connect_timeout", DEFAULT_SOCKET_TIMEOUT)
    return kwargs


def url_or_conn_string(url: str | None, conn_string: str | None) -> str | None:
    """The URL a factory was given: ``url``, or ``conn_string`` (the keyword name
    ``langgraph-checkpoint-aws`` uses), never both."""
    if url is not None and conn_string is not None:
        raise ConfigError("give url or conn_string, not both")
    return url if url is not None else conn_string


def client_from_url(
    url: str | None = None,
    *,
    pool_size: int | None = 10,
    cluster: bool | None = None,
    **kwargs: Any,
) -> valkey.Valkey | valkey.cluster.ValkeyCluster:
    """A sync client (binary replies) for ``url``; no URL means the embedded server.

    More concurrent callers than ``pool_size`` wait for a connection (a blocking pool,
    up to ``pool_timeout`` seconds) instead of failing; ``pool_size=None`` is unbounded.
    """
    url, is_cluster = wants_cluster(_check(resolve_url(url)), cluster)
    kwargs = _defaults(kwargs)
    if is_cluster:
        return valkey.cluster.ValkeyCluster.from_url(url, **_cluster_args(pool_size, kwargs))
    pool = _pool(valkey.BlockingConnectionPool, valkey.ConnectionPool, url, pool_size, kwargs)
    return valkey.Valkey.from_pool(pool)


def async_client_from_url(
    url: str | None = None,
    *,
    pool_size: int | None = 10,
    cluster: bool | None = None,
    **kwargs: Any,
) -> valkey.asyncio.Valkey | valkey.asyncio.cluster.ValkeyCluster:
    """An asyncio client (binary replies) for ``url``; no URL means the embedded server."""
    url, is_cluster = wants_cluster(_check(resolve_url(url)), cluster)
    kwargs = _defaults(kwargs)
    if is_cluster:
        return valkey.asyncio.cluster.ValkeyCluster.from_url(
            url, **_cluster_args(pool_size, kwargs)
        )
    pool = _pool(
        valkey.asyncio.BlockingConnectionPool, valkey.asyncio.ConnectionPool, url, pool_size, kwargs
    )
    return valkey.asyncio.Valkey.from_pool(pool)


def _pool(blocking: Any, unbounded: Any, url: str, size: int | None, kwargs: dict[str, Any]) -> Any:
    timeout = kwargs.pop("pool_timeout", DEFAULT_POOL_TIMEOUT)
    if size is None:
        # nobody ever waits for a connection (and a blocking pool would preallocate
        # a slot per allowed connection)
        return unbounded.from_url(url, decode_responses=False, **kwargs)
    return blocking.from_url(
        url, max_connections=size, timeout=timeout, decode_responses=False, **kwargs
    )


def _cluster_args(size: int | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs.pop("pool_timeout", None)  # cluster node pools do not wait for a connection
    if size is not None:
        kwargs["max_connections"] = size
    return {"decode_responses": False, **kwargs}
