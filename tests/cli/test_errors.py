"""Errors are one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from streamstate import ValkeySaver
from streamstate.server import EmbeddedServer, free_port
from tests.cli.conftest import CLI, Result, cli_env, interrupted_checkpoint, run_cli


def _one_line_error(result: Result, *needles: str) -> None:
    assert result.code == 2, (result.code, result.out, result.err)
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    for needle in needles:
        assert needle in lines[0]


def test_unreachable_server() -> None:
    url = f"valkey://127.0.0.1:{free_port()}/0"
    _one_line_error(run_cli("history", "t-1", "--url", url), "cannot reach", url)


def test_unreachable_server_from_the_environment() -> None:
    url = f"valkey://127.0.0.1:{free_port()}/0"
    _one_line_error(run_cli("tail", "t-1", env=cli_env(STREAMSTATE_URL=url)), url)


@pytest.mark.parametrize("command", ["history", "replay"])
def test_unknown_session(cli: Callable[..., Result], command: str) -> None:
    name = f"nope-{uuid.uuid4().hex[:8]}"
    _one_line_error(cli(command, name), f"t/{name}", "not found")


def test_unknown_checkpoint(
    cli: Callable[..., Result], saver: ValkeySaver, agent_thread: str
) -> None:
    interrupted_checkpoint(saver, agent_thread)
    _one_line_error(cli("show", agent_thread, "no-such-id"), "no-such-id", "not found")
    _one_line_error(cli("replay", agent_thread, "--to", "no-such-id"), "no-such-id")


def test_bad_url_scheme() -> None:
    _one_line_error(run_cli("stats", "--url", "http://localhost"), "unsupported URL scheme")


# -- the data directory, URLs and ports -------------------------------------------------------

READ_ONLY = [["history", "t-1"], ["show", "t-1"], ["stats"], ["tail", "t-1"]]


def _unprivileged(args: list[str]) -> list[str]:
    """``args`` run so that file permissions apply: as root, without capabilities."""
    if os.geteuid() != 0:
        return args
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    return [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--", *args]


def run_in(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """``streamstate ARGS`` in ``cwd``, as a user whom file permissions bind."""
    proc = subprocess.run(
        _unprivileged([*CLI, *args]),
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env or cli_env(),
        cwd=cwd,
        timeout=60,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody may write to."""
    path = tmp_path / "read-only"
    path.mkdir()
    path.chmod(0o555)
    yield path
    path.chmod(0o755)


@pytest.mark.parametrize("args", [["server"], ["demo", "--sessions", "1"]])
def test_unwritable_working_directory(read_only: Path, args: list[str]) -> None:
    result = run_in(read_only, *args)
    _one_line_error(
        result, f"cannot use the data directory {read_only / '.streamstate'}", "Permission denied"
    )


@pytest.mark.parametrize("args", READ_ONLY, ids=[a[0] for a in READ_ONLY])
def test_read_only_command_in_an_unwritable_working_directory(
    read_only: Path, args: list[str]
) -> None:
    result = run_in(read_only, *args)
    _one_line_error(result, f"no embedded server is running for {read_only / '.streamstate'}")


def test_unwritable_dir_option(read_only: Path, tmp_path: Path) -> None:
    result = run_in(tmp_path, "server", "--dir", str(read_only / "data"))
    _one_line_error(result, f"cannot use the data directory {read_only / 'data'}")


@pytest.mark.parametrize("args", [["server"], ["demo", "--sessions", "1"]])
def test_unwritable_streamstate_dir(read_only: Path, tmp_path: Path, args: list[str]) -> None:
    env = cli_env(STREAMSTATE_DIR=str(read_only / "data"))
    result = run_in(tmp_path, *args, env=env)
    _one_line_error(result, f"cannot use the data directory {read_only / 'data'}")


@pytest.mark.parametrize("args", READ_ONLY, ids=[a[0] for a in READ_ONLY])
def test_read_only_commands_never_start_a_server(tmp_path: Path, args: list[str]) -> None:
    data = tmp_path / "data"
    result = run_cli(*args, env=cli_env(STREAMSTATE_DIR=str(data)))
    _one_line_error(result, f"no embedded server is running for {data}", "streamstate server")
    assert not data.exists()
    # a directory whose server was stopped: the same, and still no server
    EmbeddedServer(data).start().stop()
    result = run_cli(*args, env=cli_env(STREAMSTATE_DIR=str(data)))
    _one_line_error(result, f"no embedded server is running for {data}")
    assert not (data / "server.json").exists()


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("valkey://127.0.0.1:notaport", "could not be cast to integer"),
        ("valkey://:secret@127.0.0.1:notaport/0", "could not be cast to integer"),
        ("redis://127.0.0.1:99999/0", "out of range"),
    ],
)
def test_url_with_a_bad_port(url: str, needle: str) -> None:
    result = run_cli("history", "t-1", "--url", url)
    _one_line_error(result, "bad port in URL", needle)
    assert "secret" not in result.err
    from_env = run_cli("stats", env=cli_env(STREAMSTATE_URL=url))
    _one_line_error(from_env, "bad port in URL", needle)
    demo = run_cli("demo", "--sessions", "1", "--url", url)
    _one_line_error(demo, "bad port in URL", needle)


@pytest.mark.parametrize("port", ["99999", "0", "65536"])
def test_port_out_of_range(tmp_path: Path, port: str) -> None:
    result = run_cli("server", "--dir", str(tmp_path / "data"), "--port", port)
    _one_line_error(result, f"port must be between 1 and 65535, got {port}")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("command", [["history", "t-1"], ["stats"], ["demo", "--sessions", "1"]])
def test_cluster_flag_on_a_standalone_server(valkey_url: str, command: list[str]) -> None:
    url = f"{valkey_url}?cluster=true"
    result = run_cli(*command, "--url", url)
    _one_line_error(result, "not a Valkey Cluster", "?cluster=true")
    assert urlsplit(valkey_url).password not in result.err  # redacted
