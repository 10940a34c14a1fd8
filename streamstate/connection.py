"""Clients from URLs: ``valkey://``, ``valkeys://``, ``redis://``, ``rediss://``, ``unix://``,
and Sentinel-managed primaries: ``valkey+sentinel://`` / ``valkeys+sentinel://``.

``cluster=True`` (or ``?cluster=true`` in the URL) gives a Valkey Cluster client.

A Sentinel URL names the Sentinels and the service they watch::

    valkey+sentinel://[user:password@]host1:26379,host2:26379/mymaster[/db]
        [?sentinel_password=...&sentinel_username=...]

``user:password`` authenticate to the data nodes (the primary), ``sentinel_password`` /
``sentinel_username`` to the Sentinels; a host without a port means 26379.
``valkeys+sentinel://`` uses TLS to the data nodes and to the Sentinels
(``sentinel_ssl=false``: plain TCP to the Sentinels). The client asks the Sentinels for the
primary at every new connection and follows a failover: a write that reaches a demoted
primary fails over to a reconnection, which the executors retry.

Parameters streamstate reads from any URL (and removes before valkey-py sees it):

* ``wait_replicas=N``, ``wait_timeout_ms=MS``, ``wait_aof=1``: replica-confirmed writes
  (see :func:`url_wait_options`). A client from :func:`client_from_url` carries them, and
  the savers, stores and the cache built on it take them as the defaults of their
  arguments of the same names.
* ``iam=1&cache_name=NAME&region=REGION[&serverless=1]``: ElastiCache IAM
  authentication, the URL's user being the IAM-enabled user id (see
  :class:`ElastiCacheIAMProvider`).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import valkey
import valkey.asyncio
import valkey.asyncio.cluster
import valkey.asyncio.sentinel
import valkey.cluster
import valkey.sentinel
from valkey.credentials import CredentialProvider

from streamstate.errors import ConfigError
from streamstate.eventlog.valkey._exec import DEFAULT_WAIT_TIMEOUT_MS, WaitPolicy
from streamstate.server import resolve_url

SyncClient = valkey.Valkey | valkey.cluster.ValkeyCluster
"""A sync client every streamstate class takes: standalone, Sentinel-managed or cluster."""
AsyncClient = valkey.asyncio.Valkey | valkey.asyncio.cluster.ValkeyCluster
"""The asyncio counterpart of :data:`SyncClient`."""

SENTINEL_SCHEMES = ("valkey+sentinel", "valkeys+sentinel")
SCHEMES = ("valkey", "valkeys", "redis", "rediss", "unix", *SENTINEL_SCHEMES)
DEFAULT_SENTINEL_PORT = 26379


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


def take_params(url: str, names: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """Remove the query parameters ``names`` from ``url``; their (last, decoded) values."""
    parts = urlsplit(url)
    kept, taken = [], {}
    for item in (q for q in parts.query.split("&") if q):
        name, _, value = item.partition("=")
        if name in names:
            taken[name] = unquote(value)
        else:
            kept.append(item)
    return parts._replace(query="&".join(kept)).geturl(), taken


_TRUE = ("", "1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
WAIT_PARAMS = ("wait_replicas", "wait_timeout_ms", "wait_aof")
IAM_PARAMS = ("iam", "cache_name", "region", "serverless")
SENTINEL_PARAMS = ("sentinel_password", "sentinel_username", "sentinel_ssl")


def _flag(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(f"URL parameter {name}={value!r}: expected 1/0, true/false, yes/no")


def _count(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"URL parameter {name}={value!r}: expected a whole number") from None


def url_wait_options(url: str | None) -> dict[str, Any]:
    """The replica-confirmation arguments a URL asks for, as keyword arguments.

    ``?wait_replicas=1&wait_timeout_ms=500&wait_aof=1`` gives ``{"wait_replicas": 1,
    "wait_timeout_ms": 500, "wait_aof": True}``; absent parameters are absent. No URL
    means ``STREAMSTATE_URL`` (the embedded server's URL never has any).

    Raises:
        ConfigError: A value that is not a number (or a flag), naming the parameter.
    """
    url = url or os.environ.get("STREAMSTATE_URL")
    if not url:
        return {}
    _, found = take_params(url, WAIT_PARAMS)
    out: dict[str, Any] = {}
    for name in ("wait_replicas", "wait_timeout_ms"):
        if name in found:
            out[name] = _count(name, found[name])
    if "wait_aof" in found:
        out["wait_aof"] = _flag("wait_aof", found["wait_aof"])
    return out


WAIT_ATTRIBUTE = "_streamstate_wait"
"""Where a client made from a URL keeps the URL's wait options."""


def resolve_wait(
    client: Any,
    wait_replicas: int | None = None,
    wait_timeout_ms: int | None = None,
    wait_aof: bool | None = None,
) -> WaitPolicy | None:
    """The wait policy of a class built on ``client``: each argument given (not
    ``None``), else the option of the URL the client was made from, else the default
    (no wait, 1000 ms, no AOF).

    Raises:
        ConfigError: A bad value, naming the argument.
    """
    from_url: dict[str, Any] = getattr(client, WAIT_ATTRIBUTE, None) or {}
    given = {"wait_replicas": wait_replicas, "wait_timeout_ms": wait_timeout_ms}
    given["wait_aof"] = wait_aof
    merged = {**from_url, **{k: v for k, v in given.items() if v is not None}}
    return WaitPolicy.of(
        merged.get("wait_replicas", 0),
        merged.get("wait_timeout_ms", DEFAULT_WAIT_TIMEOUT_MS),
        merged.get("wait_aof", False),
    )


def _remember(client: Any, wait: dict[str, Any]) -> Any:
    if wait:
        setattr(client, WAIT_ATTRIBUTE, wait)
    return client


# -- ElastiCache IAM authentication ----------------------------------------------------

IAM_TOKEN_SECONDS = 900
"""How long an ElastiCache IAM token is valid (``X-Amz-Expires``)."""


class ElastiCacheIAMProvider(CredentialProvider):
    """ElastiCache IAM authentication: signs the token each new connection sends as its
    password, from boto3 credentials.

    The token is a SigV4 query-signed ``GET http://<cache_name>/?Action=connect&User=
    <user_id>`` (service ``elasticache``, ``X-Amz-Expires=900``) without its ``http://``
    scheme, as AWS documents it. A token is reused for ``refresh_after`` seconds, then
    signed again, so every connection opens with at least 5 of its 15 minutes left (an
    open connection is not affected by its token expiring; ElastiCache closes IAM
    connections after 12 hours, and the client reconnects with a fresh token).

    Args:
        user_id: The IAM-enabled ElastiCache user's id (its name must be the same).
        cache_name: The replication group id, or the serverless cache's name.
        region: The cache's AWS region (default: the boto3 session's).
        serverless: A serverless cache (adds ``ResourceType=ServerlessCache``).
        session: The ``boto3.Session`` whose credentials sign (default: a new one:
            environment, profile, container or instance role).
        credentials: botocore credentials to sign with instead of the session's.
        refresh_after: Seconds a token is reused (< 900).
        clock: Seconds since the epoch (default ``time.time``).

    Raises:
        ConfigError: No region, no credentials, or ``refresh_after`` not below 900.
    """

    def __init__(
        self,
        user_id: str,
        cache_name: str,
        region: str | None = None,
        *,
        serverless: bool = False,
        session: Any = None,
        credentials: Any = None,
        refresh_after: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not user_id:
            raise ConfigError("ElastiCache IAM authentication needs the user id")
        if not cache_name:
            raise ConfigError("ElastiCache IAM authentication needs cache_name")
        if not 0 < refresh_after < IAM_TOKEN_SECONDS:
            raise ConfigError(f"refresh_after must be in (0, {IAM_TOKEN_SECONDS}) seconds")
        if credentials is None or region is None:
            if session is None:
                try:
                    import boto3
                except ImportError as exc:  # pragma: no cover - depends on the install
                    raise ConfigError(
                        "ElastiCache IAM authentication needs boto3: pip install 'streamstate[aws]'"
                    ) from exc
                session = boto3.Session()
            region = region or session.region_name
            credentials = credentials or session.get_credentials()
        if not region:
            raise ConfigError(
                "ElastiCache IAM authentication needs region (URL ?region=, argument, or"
                " AWS_REGION)"
            )
        if credentials is None:
            raise ConfigError("ElastiCache IAM authentication found no AWS credentials (boto3)")
        self.user_id = user_id
        self.cache_name = cache_name.lower()
        self.region = region
        self.serverless = serverless
        self.refresh_after = refresh_after
        self._credentials = credentials
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._signed_at = 0.0

    def get_credentials(self) -> tuple[str, str]:
        """``(user_id, token)``, the token signed again once ``refresh_after`` passed."""
        with self._lock:
            now = self._clock()
            if self._token is None or now - self._signed_at >= self.refresh_after:
                self._token = self.token_at(now)
                self._signed_at = now
            return self.user_id, self._token

    def token_at(self, now: float) -> str:
        """The token signed at ``now`` (seconds since the epoch)."""
        from botocore.awsrequest import AWSRequest

        frozen = getattr(self._credentials, "get_frozen_credentials", None)
        credentials = frozen() if frozen else self._credentials
        params = {"Action": "connect", "User": self.user_id}
        if self.serverless:
            params["ResourceType"] = "ServerlessCache"
        request = AWSRequest(method="GET", url=f"http://{self.cache_name}/", params=params)
        at = dt.datetime.fromtimestamp(now, dt.timezone.utc).replace(tzinfo=None)
        _query_signer(credentials, self.region, at).add_auth(request)
        return request.url.removeprefix("http://")


def _query_signer(credentials: Any, region: str, at: dt.datetime) -> Any:
    """botocore's ``SigV4QueryAuth`` for ``elasticache``, signing at ``at`` instead of
    botocore's own clock (its ``add_auth`` with the timestamp given)."""
    from botocore.auth import SIGV4_TIMESTAMP, SigV4QueryAuth
    from botocore.exceptions import NoCredentialsError

    class SigV4QueryAt(SigV4QueryAuth):
        def add_auth(self, request: Any) -> None:
            if self.credentials is None:
                raise NoCredentialsError()
            request.context["timestamp"] = at.strftime(SIGV4_TIMESTAMP)
            self._modify_request_before_signing(request)
            canonical = self.canonical_request(request)
            signature = self.signature(self.string_to_sign(request, canonical), request)
            self._inject_signature_to_request(request, signature)

    return SigV4QueryAt(credentials, "elasticache", region, expires=IAM_TOKEN_SECONDS)


def _iam_from_url(url: str, provider: CredentialProvider | None) -> tuple[str, Any]:
    """``url`` without IAM parameters (and without its user when ``?iam=1`` takes it),
    and the credential provider to connect with (``None``: the URL's own password)."""
    url, found = take_params(url, IAM_PARAMS)
    if not _flag("iam", found.get("iam", "0")):
        if provider is not None and urlsplit(url).username:
            raise ConfigError("give the URL a user and password or a credential_provider, not both")
        return url, provider
    if provider is not None:
        raise ConfigError("give ?iam=1 in the URL or a credential_provider, not both")
    parts = urlsplit(url)
    if parts.password:
        raise ConfigError("?iam=1 signs a token for the password: drop the URL's password")
    if not parts.username:
        raise ConfigError("?iam=1 needs the IAM user id as the URL's user: valkeys://USER@host")
    if "cache_name" not in found:
        raise ConfigError("?iam=1 needs cache_name (the replication group id or cache name)")
    provider = ElastiCacheIAMProvider(
        unquote(parts.username),
        found["cache_name"],
        found.get("region") or None,
        serverless=_flag("serverless", found.get("serverless", "0")),
    )
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl(), provider


# -- Sentinel --------------------------------------------------------------------------


@dataclass(frozen=True)
class SentinelTarget:
    """A parsed ``valkey+sentinel://`` URL."""

    sentinels: list[tuple[str, int]]
    service: str
    connection_kwargs: dict[str, Any] = field(default_factory=dict)
    """For the data nodes: db, user, password, TLS and socket settings."""
    sentinel_kwargs: dict[str, Any] = field(default_factory=dict)
    """For the Sentinels: their credentials, TLS and socket settings."""


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Split a Sentinel URL into Sentinel addresses, service name and client settings.

    Raises:
        ConfigError: No service name, a bad host or port, or a bad parameter.
    """
    url, own = take_params(url, SENTINEL_PARAMS)
    parts = urlsplit(url)
    tls = parts.scheme == "valkeys+sentinel"
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels = [_host_port(h, url) for h in hosts.split(",") if h]
    if not sentinels:
        raise ConfigError(f"{redact_url(url)}: no Sentinel host")
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ConfigError(
            f"{redact_url(url)}: the path must be the service name and an optional db:"
            " valkey+sentinel://host:26379/mymaster/0"
        )
    # valkey-py parses userinfo, db and typed query parameters as for a standalone URL
    standalone = urlunsplit(
        ("valkeys" if tls else "valkey", f"{userinfo}@x" if userinfo else "x", "", parts.query, "")
    )
    kwargs = dict(valkey.connection.parse_url(standalone))
    for key in ("host", "port", "connection_class"):
        kwargs.pop(key, None)
    if len(path) == 2:
        kwargs.setdefault("db", _count("db", path[1]))
    sentinel_kwargs = {
        k: v for k, v in kwargs.items() if k.startswith(("socket_", "ssl_")) or k == "protocol"
    }
    if tls:
        kwargs["ssl"] = True
        if _flag("sentinel_ssl", own.get("sentinel_ssl", "1")):
            sentinel_kwargs["ssl"] = True
    if "sentinel_password" in own:
        sentinel_kwargs["password"] = own["sentinel_password"]
    if "sentinel_username" in own:
        sentinel_kwargs["username"] = own["sentinel_username"]
    return SentinelTarget(sentinels, unquote(path[0]), kwargs, sentinel_kwargs)


def _host_port(text: str, url: str) -> tuple[str, int]:
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        number = int(port) if port else DEFAULT_SENTINEL_PORT
    except ValueError:
        raise ConfigError(f"bad Sentinel port {port!r} in {redact_url(url)}") from None
    if not host or not 0 < number < 65536:
        raise ConfigError(f"bad Sentinel address {text!r} in {redact_url(url)}")
    return host, number


class BlockingSentinelConnectionPool(
    valkey.sentinel.SentinelConnectionPool, valkey.BlockingConnectionPool
):
    """A Sentinel-managed pool whose callers wait for a free connection (up to
    ``timeout`` seconds) instead of failing, as streamstate's other URL pools do."""

    def disconnect(self, inuse_connections: bool = True) -> None:
        # the Sentinel proxy asks for idle ones only when the primary moved; connections
        # in use then fail over to a reconnection anyway
        valkey.BlockingConnectionPool.disconnect(self)


class AsyncBlockingSentinelConnectionPool(
    valkey.asyncio.sentinel.SentinelConnectionPool, valkey.asyncio.BlockingConnectionPool
):
    """The asyncio twin of :class:`BlockingSentinelConnectionPool`."""


class _SentinelClient(valkey.Valkey):
    """The primary's client; closing it also closes its connections to the Sentinels."""

    def close(self) -> None:
        try:
            super().close()
        finally:
            pool: Any = self.connection_pool  # a SentinelConnectionPool
            for sentinel in pool.sentinel_manager.sentinels:
                sentinel.close()


class _AsyncSentinelClient(valkey.asyncio.Valkey):
    """The asyncio twin of :class:`_SentinelClient`."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            pool: Any = self.connection_pool  # a SentinelConnectionPool
            for sentinel in pool.sentinel_manager.sentinels:
                await sentinel.aclose()


def _sentinel_client(url: str, size: int | None, kwargs: dict[str, Any], asyncio: bool) -> Any:
    target = parse_sentinel_url(url)
    timeout = kwargs.pop("pool_timeout", DEFAULT_POOL_TIMEOUT)
    data = {**target.connection_kwargs, **kwargs, "decode_responses": False}
    sentinel_kwargs = {
        "socket_timeout": data.get("socket_timeout"),
        "socket_connect_timeout": data.get("socket_connect_timeout"),
        **target.sentinel_kwargs,
    }
    module = valkey.asyncio.sentinel if asyncio else valkey.sentinel
    manager = module.Sentinel(target.sentinels, sentinel_kwargs=sentinel_kwargs)
    pool: dict[str, Any] = {}
    if size is not None:
        pool = {"max_connections": size, "timeout": timeout}
        pool["connection_pool_class"] = (
            AsyncBlockingSentinelConnectionPool if asyncio else BlockingSentinelConnectionPool
        )
    return manager.master_for(
        target.service,
        valkey_class=_AsyncSentinelClient if asyncio else _SentinelClient,
        **pool,
        **data,
    )


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


def _prepare(
    url: str | None, cluster: bool | None, provider: Any, kwargs: dict[str, Any]
) -> tuple[str, bool, dict[str, Any], dict[str, Any]]:
    """The URL valkey-py gets, whether it is a cluster, the client arguments, and the
    URL's wait options (for the classes built on the client)."""
    url, is_cluster = wants_cluster(_check(resolve_url(url)), cluster)
    wait = url_wait_options(url)
    url, _ = take_params(url, WAIT_PARAMS)
    url, provider = _iam_from_url(url, provider)
    kwargs = _defaults(kwargs)
    if provider is not None:
        kwargs["credential_provider"] = provider
    if is_cluster and urlsplit(url).scheme in SENTINEL_SCHEMES:
        raise ConfigError("a Sentinel URL names a primary, not a cluster: drop ?cluster=true")
    return url, is_cluster, kwargs, wait


def client_from_url(
    url: str | None = None,
    *,
    pool_size: int | None = 10,
    cluster: bool | None = None,
    credential_provider: CredentialProvider | None = None,
    **kwargs: Any,
) -> valkey.Valkey | valkey.cluster.ValkeyCluster:
    """A sync client (binary replies) for ``url``; no URL means the embedded server.

    More concurrent callers than ``pool_size`` wait for a connection (a blocking pool,
    up to ``pool_timeout`` seconds) instead of failing; ``pool_size=None`` is unbounded.
    A ``valkey+sentinel://`` URL gives a client of the primary the Sentinels name.
    ``credential_provider`` (or ``?iam=1``) authenticates every new connection. The URL's
    ``wait_*`` options stay with the client (:func:`resolve_wait`).
    """
    url, is_cluster, kwargs, wait = _prepare(url, cluster, credential_provider, kwargs)
    client: Any
    if urlsplit(url).scheme in SENTINEL_SCHEMES:
        client = _sentinel_client(url, pool_size, kwargs, asyncio=False)
    elif is_cluster:
        client = valkey.cluster.ValkeyCluster.from_url(url, **_cluster_args(pool_size, kwargs))
    else:
        pool = _pool(valkey.BlockingConnectionPool, valkey.ConnectionPool, url, pool_size, kwargs)
        client = valkey.Valkey.from_pool(pool)
    return _remember(client, wait)


def async_client_from_url(
    url: str | None = None,
    *,
    pool_size: int | None = 10,
    cluster: bool | None = None,
    credential_provider: CredentialProvider | None = None,
    **kwargs: Any,
) -> valkey.asyncio.Valkey | valkey.asyncio.cluster.ValkeyCluster:
    """An asyncio client (binary replies) for ``url``; no URL means the embedded server."""
    url, is_cluster, kwargs, wait = _prepare(url, cluster, credential_provider, kwargs)
    client: Any
    if urlsplit(url).scheme in SENTINEL_SCHEMES:
        client = _sentinel_client(url, pool_size, kwargs, asyncio=True)
    elif is_cluster:
        client = valkey.asyncio.cluster.ValkeyCluster.from_url(
            url, **_cluster_args(pool_size, kwargs)
        )
    else:
        pool = _pool(
            valkey.asyncio.BlockingConnectionPool,
            valkey.asyncio.ConnectionPool,
            url,
            pool_size,
            kwargs,
        )
        client = valkey.asyncio.Valkey.from_pool(pool)
    return _remember(client, wait)


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
