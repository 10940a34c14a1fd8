"""The embedded server: durable, reused per directory, stopped cleanly; URL schemes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import valkey

from streamstate.connection import client_from_url
from streamstate.errors import ConfigError
from streamstate.server import EmbeddedServer, resolve_url, valkey_binary


def test_second_start_for_the_same_directory_reuses_the_server(tmp_path: Path) -> None:
    first = EmbeddedServer(tmp_path).start()
    try:
        second = EmbeddedServer(tmp_path).start()
        assert second.reused and second.port == first.port and second.pid == first.pid
        # another process reuses it too
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                (
                    "from streamstate.server import EmbeddedServer as E;"
                    f" s=E({str(tmp_path)!r}).start(); print(s.reused, s.port)"
                ),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert out.stdout.split() == ["True", str(first.port)]
    finally:
        first.stop()
    assert not first.is_running()
    assert not (tmp_path / "server.json").exists()


def test_data_survives_a_restart_through_the_aof(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path).start()
    client = valkey.Valkey.from_url(server.url)
    client.xadd("durable", {"e": "1"})
    client.close()
    server.stop()
    assert list(tmp_path.glob("appendonlydir/*"))
    server = EmbeddedServer(tmp_path).start()
    try:
        assert valkey.Valkey.from_url(server.url).xlen("durable") == 1
    finally:
        server.stop()


def test_resolve_url_prefers_argument_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSTATE_URL", "valkey://env:1/0")
    assert resolve_url("redis://arg:2/0") == "redis://arg:2/0"
    assert resolve_url(None) == "valkey://env:1/0"


def test_unsupported_scheme_names_the_scheme() -> None:
    with pytest.raises(ConfigError, match="'http'"):
        client_from_url("http://localhost:6379")


def test_unix_socket_url_with_password_and_db(tmp_path: Path) -> None:
    sock = tmp_path / "v.sock"
    proc = subprocess.Popen(
        [
            valkey_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--requirepass",
            "s3cret",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        for url in (f"unix://:s3cret@{sock}?db=2", f"unix://default:s3cret@{sock}?db=2"):
            client = client_from_url(url)
            client.set("k", "v")
            assert client.connection_pool.connection_kwargs["db"] == 2
            assert client.get("k") == b"v"
            client.close()
        with pytest.raises(valkey.AuthenticationError):
            client_from_url(f"unix://:wrong@{sock}").ping()
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("scheme", ["valkey", "redis"])
def test_tcp_url_schemes(valkey_server, scheme: str) -> None:
    url = valkey_server.url.replace("valkey://", f"{scheme}://")
    assert client_from_url(url).ping()
