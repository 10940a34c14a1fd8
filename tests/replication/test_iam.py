"""ElastiCache IAM authentication: the token's shape, botocore's reference signer giving
the same token, its reuse and refresh (an injected clock), and real connections to a
local server whose ACL user's password is the token."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
import valkey
from botocore.credentials import Credentials
from botocore.hooks import HierarchicalEmitter
from botocore.model import ServiceId
from botocore.signers import RequestSigner

from streamstate import ValkeySaver, ValkeyStore
from streamstate.connection import ElastiCacheIAMProvider, client_from_url
from streamstate.errors import BackendError, ConfigError
from streamstate.eventlog.valkey import RetryPolicy
from streamstate.testing.replication import ValkeyNode
from tests.replication._ops import cfg, put, thread_id

CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
T0 = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc).timestamp()
USER = "iam-user-01"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def provider(clock: Clock, **kwargs: object) -> ElastiCacheIAMProvider:
    kwargs.setdefault("credentials", CREDENTIALS)
    return ElastiCacheIAMProvider(USER, "My-Cache", "us-east-1", clock=clock, **kwargs)  # type: ignore[arg-type]


def test_the_token_is_a_presigned_connect_request_without_its_scheme() -> None:
    user, token = provider(Clock()).get_credentials()
    assert user == USER
    assert not token.startswith(("http://", "https://"))
    parts = urlsplit(f"//{token}")
    assert (parts.netloc, parts.path) == ("my-cache", "/")
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert q["Action"] == "connect" and q["User"] == USER
    assert q["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert q["X-Amz-Credential"] == "AKIDEXAMPLE/20250102/us-east-1/elasticache/aws4_request"
    assert q["X-Amz-Date"] == "20250102T030405Z"
    assert q["X-Amz-Expires"] == "900"
    assert q["X-Amz-SignedHeaders"] == "host"
    assert len(q["X-Amz-Signature"]) == 64 and int(q["X-Amz-Signature"], 16) >= 0
    assert "ResourceType" not in q and "X-Amz-Security-Token" not in q
    temporary = Credentials("ASIAEXAMPLE", "secret", token="session-token")
    _, token = provider(Clock(), credentials=temporary, serverless=True).get_credentials()
    q = {k: v[0] for k, v in parse_qs(urlsplit(f"//{token}").query).items()}
    assert q["ResourceType"] == "ServerlessCache"
    assert q["X-Amz-Security-Token"] == "session-token"


def test_the_token_equals_botocores_presigned_url() -> None:
    """AWS's own recipe: ``RequestSigner.generate_presigned_url`` of the same request."""
    _, token = provider(Clock()).get_credentials()
    emitter = HierarchicalEmitter()
    signer = RequestSigner(
        ServiceId("elasticache"), "us-east-1", "elasticache", "v4", CREDENTIALS, emitter
    )
    request = {
        "method": "GET",
        "url": f"http://my-cache/?Action=connect&User={USER}",
        "body": {},
        "headers": {},
        "context": {},
    }
    at = dt.datetime.fromtimestamp(T0, dt.timezone.utc).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=at):
        url = signer.generate_presigned_url(
            request, operation_name="connect", expires_in=900, region_name="us-east-1"
        )
    assert url.removeprefix("http://") == token


def test_a_token_is_reused_then_signed_again_before_it_expires() -> None:
    clock = Clock()
    p = provider(clock)
    first = p.get_credentials()[1]
    clock.now += 599
    assert p.get_credentials()[1] == first
    clock.now += 1  # 10 minutes: 5 of its 15 left, time to sign a new one
    second = p.get_credentials()[1]
    assert second != first
    assert "X-Amz-Date=20250102T031405Z" in second
    with pytest.raises(ConfigError, match="refresh_after"):
        provider(clock, refresh_after=900)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ValkeyNode]:
    node = ValkeyNode(tmp_path / "iam").start()
    yield node
    node.stop()


def _allow(server: ValkeyNode, token: str) -> None:
    server.client().execute_command(
        "ACL", "SETUSER", USER, "reset", "on", f">{token}", "~ss:*", "+@all"
    )


def test_a_saver_and_a_store_connect_with_the_token(server: ValkeyNode) -> None:
    p = provider(Clock(), refresh_after=600)
    _allow(server, p.token_at(T0))
    with ValkeySaver.from_conn_string(server.url, credential_provider=p) as saver:
        out = put(saver, thread_id())
        assert saver.get_tuple(out) is not None
        assert saver.client.acl_whoami() == USER
    with ValkeyStore.from_conn_string(server.url, credential_provider=p) as store:
        store.put(("a",), "k", {"v": 1})
        assert store.get(("a",), "k").value == {"v": 1}


def test_a_reconnection_after_expiry_signs_a_new_token(server: ValkeyNode) -> None:
    clock = Clock()
    p = provider(clock)
    old = p.token_at(T0)
    _allow(server, old)
    saver = ValkeySaver(client_from_url(server.url, credential_provider=p))
    thread = thread_id()
    out = put(saver, thread)
    clock.now += 16 * 60  # the first token has expired
    _allow(server, p.token_at(clock.now))  # the server now takes only the new one
    server.client().execute_command("CLIENT", "KILL", "USER", USER)
    assert saver.get_tuple(out) is not None  # reconnected, with a new token
    assert saver.client.acl_whoami() == USER
    with pytest.raises(valkey.AuthenticationError):
        server.client(username=USER, password=old).ping()


def test_the_url_flag(server: ValkeyNode, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    url = f"valkey://{USER}@127.0.0.1:{server.port}/0?iam=1&cache_name=my-cache&region=eu-west-1"
    client = client_from_url(url)
    given = client.connection_pool.connection_kwargs["credential_provider"]
    assert isinstance(given, ElastiCacheIAMProvider)
    assert (given.user_id, given.cache_name, given.region) == (USER, "my-cache", "eu-west-1")
    _allow(server, given.get_credentials()[1])  # the token the connections will send
    saver = ValkeySaver(client)
    assert saver.get_tuple(cfg(thread_id())) is None
    assert client.acl_whoami() == USER
    refused = client_from_url(url.replace("iam=1", "iam=0"))  # the user, no token
    with pytest.raises(BackendError, match="authentication"):
        ValkeySaver(refused, retry=RetryPolicy(attempts=1)).get_tuple(cfg("x"))


def test_iam_settings_that_cannot_work_are_config_errors() -> None:
    base = "valkey://u@127.0.0.1:1/0?iam=1&region=us-east-1"
    with pytest.raises(ConfigError, match="cache_name"):
        client_from_url(base)
    with pytest.raises(ConfigError, match="password"):
        client_from_url(base.replace("u@", "u:pw@") + "&cache_name=c")
    with pytest.raises(ConfigError, match="user"):
        client_from_url(base.replace("u@", "") + "&cache_name=c")
    with pytest.raises(ConfigError, match="not both"):
        client_from_url("valkey://u:pw@127.0.0.1:1/0", credential_provider=provider(Clock()))
