"""``streamstate demo``: the README's main job, on its own embedded server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from streamstate.connection import redact_url
from streamstate.server import EmbeddedServer
from tests.cli.conftest import cli_env, run_cli, stop_embedded

CLAIMS = (
    "paused at interrupt() in review",
    "resumed after interrupt",
    "history has",
    "replayed state == live state at checkpoint",
    "replay from the log to their live state",
    "its get_tuple == the replayed state",
    "fork diverged",
    "untouched by the fork",
    "equal the live views",
)


def _script() -> list[str]:
    # The installed console script when there is one, as a user runs it.
    found = shutil.which("streamstate", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "streamstate.cli"]


def test_demo_starts_its_own_server_and_proves_its_claims(tmp_path: Path) -> None:
    data_dir = tmp_path / "embedded"
    env = cli_env(STREAMSTATE_DIR=str(data_dir))
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [*_script(), "demo"],
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=env,
            timeout=60,
        )
        elapsed = time.monotonic() - started
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert elapsed < 30, f"demo took {elapsed:.1f}s"
        # the URL is printed with its password redacted, and the password never shows
        assert "embedded valkey-server at valkey://:***@127.0.0.1:" in proc.stdout
        password = EmbeddedServer(data_dir).password
        assert password, "the embedded server runs with a generated password"
        assert password not in proc.stdout + proc.stderr
        for claim in CLAIMS:
            assert any(
                line.startswith("✓") and claim in line for line in proc.stdout.splitlines()
            ), f"missing claim {claim!r} in:\n{proc.stdout}"
        assert "✗" not in proc.stdout
        assert "Traceback" not in proc.stderr
        assert (data_dir / "server.json").exists()
    finally:
        stopped = run_cli("server", "--stop", env=env)
        stop_embedded(data_dir)  # in case the command above failed
    assert stopped.code == 0, stopped.err
    assert not (data_dir / "server.json").exists()


def test_demo_json_on_a_given_server(valkey_url: str) -> None:
    result = run_cli("demo", "--sessions", "2", "--json", "--url", valkey_url)
    assert result.code == 0, result.out + result.err
    doc = json.loads(result.out)
    assert doc["ok"] is True
    password = urlsplit(valkey_url).password
    assert password and password not in result.out + result.err
    assert doc["url"] == redact_url(valkey_url)
    assert len(doc["threads"]) == 2
    assert doc["fork"] == doc["threads"][0] + "-fork"
    assert all(c["ok"] for c in doc["claims"])
    assert len(doc["claims"]) >= len(CLAIMS)
