"""A failed embedded start leaves only empty lock files (and the password) behind, and they
do not matter: no command takes them for a server, and the next start starts one."""

from __future__ import annotations

import socket
from pathlib import Path

from streamstate.server import LOCK_FILE, STATE_FILE, EmbeddedServer
from tests.cli.conftest import cli_env, run_cli, stop_embedded


def test_a_failed_start_leaves_nothing_that_matters(tmp_path: Path) -> None:
    data_dir = tmp_path / "embedded"
    env = cli_env(STREAMSTATE_DIR=str(data_dir))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        failed = run_cli("server", "--port", str(port), env=env)
    assert failed.code == 2 and "already in use" in failed.err
    assert (data_dir / LOCK_FILE).exists() and (data_dir / LOCK_FILE).stat().st_size == 0
    assert not (data_dir / STATE_FILE).exists()

    # no command takes the leftover lock file for a server
    assert EmbeddedServer(data_dir).attach() is False
    read = run_cli("history", "t-1", env=env)
    assert read.code == 2 and "no embedded server is running" in read.err
    stop = run_cli("server", "--stop", env=env)
    assert stop.code == 0 and "nothing to stop" in stop.out

    # and the next start starts one
    server = EmbeddedServer(data_dir).start()
    try:
        assert server.is_running() and not server.reused
    finally:
        server.stop()
        stop_embedded(data_dir)
