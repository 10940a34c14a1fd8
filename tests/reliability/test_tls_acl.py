"""Security: ``valkeys://`` through TLS (stunnel4 in front of the embedded server), a
password, and an ACL user confined to streamstate's key prefix.

stunnel4 and the openssl CLI are Debian packages (``apt-get install -y stunnel4``);
without them these tests skip and say why. Certificates are made by the test: a CA, a
server certificate for 127.0.0.1, and a rogue CA nobody trusts.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import valkey
from langgraph.checkpoint.base import empty_checkpoint
from valkey.exceptions import NoPermissionError

from streamstate.adapters.valkey_saver import AsyncValkeySaver, ValkeySaver
from streamstate.errors import BackendError, BackendUnavailable, ScriptError
from streamstate.eventlog.valkey import RetryPolicy
from streamstate.server import EmbeddedServer, free_port
from tests.reliability import _support as sup

ADMIN_PW = "admin-secret"
APP_PW = "app-secret"
WIDE_PW = "wide-secret"

# The commands streamstate's saver, store, cache and event log send, and those their
# Lua scripts call (ACLs apply inside scripts too). Found by running the whole API
# (``_support.app_workload``) and reading ``INFO commandstats``; docs/reliability.md
# gives the same rule.
APP_COMMANDS = [
    "evalsha", "eval",
    "xadd", "xrange", "xrevrange", "xlen", "xread", "xreadgroup", "xgroup|create", "xack",
    "xtrim",
    "hget", "hgetall", "hmget", "hset", "hsetnx", "hdel", "hexists",
    "zadd", "zrem", "zrange", "zrangebylex", "zrevrangebylex", "zscore", "zcount", "zcard",
    "zremrangebyscore", "zremrangebyrank",
    "sadd", "srem", "smembers", "smismember", "sscan", "sunion",
    "get", "mget", "set", "del", "unlink", "exists", "type", "pexpire", "pexpireat", "persist",
    "time", "pttl", "zscan", "hscan", "xinfo|stream", "xinfo|groups", "xdel", "xsetid",
    "hincrby", "rename", "scard", "sismember",
    "ping", "client|setinfo",
]  # fmt: skip
APP_RULE = [
    "on", f">{APP_PW}", "resetkeys", "~ss:*", "resetchannels", "-@all",
    *(f"+{c}" for c in APP_COMMANDS),
]  # fmt: skip
WIDE_RULE = ["on", f">{WIDE_PW}", "resetkeys", "~ss:*", "resetchannels", "+@all", "-@dangerous"]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost signed by it, and a rogue CA."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "rogue"):
        _openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                 "-days", "2", "-subj", f"/CN=streamstate test {ca}", cwd=d)  # fmt: skip
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
             cwd=d)  # fmt: skip
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.cnf",
             cwd=d)  # fmt: skip
    return {n: d / f"{n}.crt" for n in ("ca", "rogue", "server")} | {"key": d / "server.key"}


@dataclass
class TlsServer:
    server: EmbeddedServer
    tls_port: int
    pki: dict[str, Path]
    admin: valkey.Valkey

    def url(self, user: str | None, password: str | None, *, ca: str = "ca") -> str:
        cred = f"{user or ''}:{password}@" if password else ""
        return (
            f"valkeys://{cred}127.0.0.1:{self.tls_port}/0"
            f"?ssl_ca_certs={self.pki[ca]}&ssl_check_hostname=true&socket_timeout=5"
        )


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    missing = [n for n, p in (("stunnel4", stunnel), ("openssl", shutil.which("openssl"))) if not p]
    if missing:
        reason = f"{' and '.join(missing)} not installed (apt-get install -y stunnel4 openssl)"
        print(f"SKIP TLS tests: {reason}")
        pytest.skip(reason)
    d = tmp_path_factory.mktemp("tls")
    pki = make_pki(d)
    server = EmbeddedServer(d / "valkey").start()
    admin = valkey.Valkey.from_url(server.url)
    admin.execute_command("ACL", "SETUSER", "app", *APP_RULE)
    admin.execute_command("ACL", "SETUSER", "wide", *WIDE_RULE)
    # Last: from here on the default user needs the password (this connection stays in).
    admin.config_set("requirepass", ADMIN_PW)
    tls_port = free_port()
    conf = d / "stunnel.conf"
    conf.write_text(
        "foreground = yes\npid =\n"
        f"output = {d / 'stunnel.log'}\n"
        "[valkey]\n"
        f"accept = 127.0.0.1:{tls_port}\nconnect = 127.0.0.1:{server.port}\n"
        f"cert = {pki['server']}\nkey = {pki['key']}\n"
    )
    proc = subprocess.Popen(
        [stunnel, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", tls_port), 0.2),
            ):
                break
            assert proc.poll() is None, (d / "stunnel.log").read_text()
            assert time.monotonic() < deadline, "stunnel did not listen"
            time.sleep(0.05)
        yield TlsServer(server, tls_port, pki, admin)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        # EmbeddedServer.stop() does not authenticate: shut down as admin first.
        with contextlib.suppress(valkey.ValkeyError):
            admin.shutdown(nosave=True)
        server.stop()


def test_everything_works_over_tls_as_the_restricted_acl_user(tls: TlsServer) -> None:
    tls.admin.execute_command("ACL", "LOG", "RESET")
    with ValkeySaver.from_conn_string(tls.url("app", APP_PW)) as saver:
        conn = saver.client.connection_pool.get_connection("PING")
        assert type(conn).__name__ == "SSLConnection"
        saver.client.connection_pool.release(conn)
        calls = sup.app_workload(saver.client)
    assert tls.admin.execute_command("ACL", "LOG") == [], "a call was denied"
    print(f"{calls} streamstate calls over TLS as ACL user 'app'")


async def test_async_saver_over_tls(tls: TlsServer) -> None:
    async with AsyncValkeySaver.from_conn_string(tls.url("app", APP_PW)) as saver:
        config = sup.cfg("tls-async")
        out = await saver.aput(config, empty_checkpoint(), {}, {})
        assert (await saver.aget_tuple(out)) is not None


def test_plaintext_and_untrusted_certificates_are_refused(tls: TlsServer) -> None:
    # A certificate error is retried like any connection error: keep the budget short.
    quick = {"retry": RetryPolicy(attempts=2, budget=2, max_wait=0.05)}
    plain = f"valkey://app:{APP_PW}@127.0.0.1:{tls.tls_port}/0?socket_timeout=2"
    with ValkeySaver.from_conn_string(plain, **quick) as saver, pytest.raises(BackendUnavailable):
        saver.get_tuple(sup.cfg("x"))
    rogue = tls.url("app", APP_PW, ca="rogue")
    with (
        ValkeySaver.from_conn_string(rogue, **quick) as saver,
        pytest.raises(BackendUnavailable, match="certificate verify failed"),
    ):
        saver.get_tuple(sup.cfg("x"))


@pytest.mark.parametrize(
    "user,password", [(None, None), ("app", "wrong"), (None, "wrong"), ("nobody", APP_PW)]
)
def test_passwords_are_required_and_checked(tls: TlsServer, user, password) -> None:
    with (
        ValkeySaver.from_conn_string(tls.url(user, password)) as saver,
        pytest.raises(BackendError, match="authentication failed"),
    ):
        saver.get_tuple(sup.cfg("x"))


def test_acl_user_cannot_reach_foreign_keys_or_server_wide_commands(tls: TlsServer) -> None:
    tls.admin.set("other:secret", "s")
    app = valkey.Valkey.from_url(tls.url("app", APP_PW))
    with pytest.raises(NoPermissionError):
        app.get("other:secret")
    # Scripts are checked against the ACL too, declared keys or not.
    with pytest.raises(valkey.ResponseError, match="No permissions"):
        app.eval("return redis.call('GET', KEYS[1])", 1, "other:secret")
    with pytest.raises(valkey.ResponseError, match="No permissions"):
        app.eval("return redis.call('GET', 'other:secret')", 0)
    with pytest.raises(ScriptError, match="No permissions"):
        ValkeySaver(app, prefix="other").put(sup.cfg("x"), empty_checkpoint(), {}, {})
    for command in (
        ("SCAN", 0),
        ("RANDOMKEY",),
        ("KEYS", "*"),
        ("DBSIZE",),
        ("FLUSHALL",),
        ("CONFIG", "GET", "requirepass"),
        ("SCRIPT", "FLUSH"),
        ("FUNCTION", "FLUSH"),
        ("ACL", "LIST"),
        ("CLIENT", "LIST"),
        ("INFO",),
    ):
        with pytest.raises(NoPermissionError):
            app.execute_command(*command)
    app.close()
    assert tls.admin.get("other:secret") == b"s"


def test_plus_all_minus_dangerous_is_too_broad(tls: TlsServer) -> None:
    """Why docs/reliability.md recommends the explicit rule: ``+@all -@dangerous`` does
    keep values out of reach, but lets a tenant list every key name and flush every
    script and function on the server."""
    tls.admin.set("other:secret", "s")
    wide = valkey.Valkey.from_url(tls.url("wide", WIDE_PW))
    with pytest.raises(NoPermissionError):
        wide.get("other:secret")
    assert sup.app_workload(wide) > 0
    names = wide.scan(0, match="other:*", count=1000)[1]
    assert b"other:secret" in names
    assert wide.execute_command("FUNCTION", "FLUSH") == b"OK"
    wide.close()


def servers_in(data_dir: Path) -> list[int]:
    """Pids of processes whose working directory is ``data_dir`` (EmbeddedServer runs
    valkey-server there)."""
    pids = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and (proc / "cwd").resolve() == data_dir.resolve():
                pids.append(int(proc.name))
    return pids


def test_embedded_server_runs_with_requirepass(tmp_path: Path) -> None:
    data = tmp_path / "pw"
    server = EmbeddedServer(data, port=free_port(), config={"requirepass": ADMIN_PW})
    try:
        server.start(timeout=0.5)
        started = time.monotonic()
        server.stop(timeout=3)
        assert time.monotonic() - started < 2, "stop() had to fall back to SIGKILL"
    finally:
        for pid in servers_in(data):  # only the server this test started
            sup.kill9(pid)


def test_a_failed_start_leaves_no_server_behind(tmp_path: Path) -> None:
    data = tmp_path / "pw"
    # the server starts but answers elsewhere, so it never becomes ready on our port
    with pytest.raises(BackendUnavailable):
        EmbeddedServer(data, config={"bind": "127.0.0.2"}).start(timeout=0.5)
    left = servers_in(data)
    for pid in left:
        sup.kill9(pid)
    assert left == []
