"""Errors are one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from streamstate import ValkeySaver
from streamstate.server import free_port
from tests.cli.conftest import Result, cli_env, interrupted_checkpoint, run_cli


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
