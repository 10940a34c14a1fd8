"""``streamstate server``: the embedded server in the foreground, stopped by Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import valkey

from tests.cli.conftest import CLI, cli_env, stop_embedded


def test_server_runs_in_the_foreground_until_interrupted(tmp_path: Path) -> None:
    data_dir = tmp_path / "server"
    proc = subprocess.Popen(
        [*CLI, "server", "--dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("valkey://127.0.0.1:"), proc.stderr.read()
        client = valkey.Valkey.from_url(url)
        assert client.ping()
        client.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        stop_embedded(data_dir)
    assert not (data_dir / "server.json").exists()
    probe = valkey.Valkey.from_url(url, socket_connect_timeout=0.5)
    try:
        probe.ping()
        raise AssertionError("the server still answers after Ctrl-C")
    except valkey.ConnectionError:
        pass
