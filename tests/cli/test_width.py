"""Every line the CLI prints fits 80 columns: piped (``COLUMNS=80``, and no ``COLUMNS``) and
in a real terminal 80 columns wide; ``COLUMNS`` is honoured, ``--json`` never wrapped."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Callable

import pytest

from streamstate import ValkeySaver
from streamstate._cli import app
from tests.cli.conftest import CLI, cli_env, interrupted_checkpoint, run_cli

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)")


def _piped(args: list[str], columns: str | None) -> str:
    env = cli_env()
    env.pop("COLUMNS")
    if columns is not None:
        env["COLUMNS"] = columns
    result = run_cli(*args, env=env)
    assert result.code == 0, result.out + result.err
    return result.out


def _terminal(args: list[str]) -> str:
    """The output of ``streamstate ARGS`` run in a pseudo-terminal 80 columns wide."""
    env = cli_env()
    env.pop("COLUMNS")  # the terminal's own size, as in an interactive shell
    env.pop("FORCE_COLOR", None)
    line = f"stty cols 80 rows 50; exec {shlex.join([*CLI, *args])}"
    proc = subprocess.run(
        ["script", "-qec", line, "/dev/null"],
        capture_output=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    out = ANSI.sub("", proc.stdout.decode("utf-8", errors="replace"))
    assert proc.returncode == 0, out + proc.stderr.decode()
    # a carriage return starts the line again (a progress bar redrawn in place): each
    # stretch between two is what one drawing showed
    return "\n".join(part for line in out.split("\n") for part in line.split("\r") if part)


def _modes() -> list[str]:
    modes = ["COLUMNS=80", "no COLUMNS"]
    return modes + (["terminal"] if shutil.which("script") else [])


def _output(mode: str, args: list[str]) -> str:
    if mode == "terminal":
        return _terminal(args)
    return _piped(args, "80" if mode == "COLUMNS=80" else None)


def _assert_fits(out: str, what: str) -> None:
    lines = out.splitlines()
    assert lines, f"{what} printed nothing"
    long = [line for line in lines if len(line) > 80]
    assert not long, f"{what}: {len(long)} lines over 80 columns:\n" + "\n".join(long)


@pytest.fixture(scope="module")
def forked(valkey_url: str) -> tuple[str, str]:
    """A demo-agent thread and a fork of it, made once for the module's commands."""
    import valkey

    from streamstate.demo.agent import build_agent
    from tests.cli.conftest import run_agent

    client = valkey.Valkey.from_url(valkey_url)
    try:
        saver = ValkeySaver(client)
        thread_id = f"width-{uuid.uuid4().hex[:10]}"
        run_agent(build_agent(saver), thread_id)
        target = interrupted_checkpoint(saver, thread_id)
    finally:
        client.close()
    fork_id = f"{thread_id}-a-fork-with-a-rather-long-thread-id"
    made = _piped(["fork", thread_id, fork_id, "--to", target[-8:], "--url", valkey_url], "80")
    _assert_fits(made, "fork")
    return thread_id, fork_id


COMMANDS: list[Callable[[str, str], list[str]]] = [
    lambda t, f: ["history", t],
    lambda t, f: ["history", f, "--ns", ""],
    lambda t, f: ["show", t],
    lambda t, f: ["replay", t],
    lambda t, f: ["tail", t],
    lambda t, f: ["tail", f, "--follow", "--timeout", "0.5"],
    lambda t, f: ["stats", "--session", f],
    lambda t, f: ["threads", "--prefix", t],
    lambda t, f: ["diff", t],
    lambda t, f: ["demo", "--sessions", "1"],
    lambda t, f: ["check"],
]


@pytest.mark.parametrize("mode", _modes())
@pytest.mark.parametrize("command", range(len(COMMANDS)))
def test_commands_fit_80_columns(
    valkey_url: str, forked: tuple[str, str], command: int, mode: str
) -> None:
    args = COMMANDS[command](*forked)
    out = _output(mode, [*args, "--url", valkey_url])
    _assert_fits(out, f"{' '.join(args)} ({mode})")
    if mode != "terminal":  # piped: no padding left at the ends of lines
        padded = [line for line in out.splitlines() if line != line.rstrip(" ")]
        assert not padded, f"{' '.join(args)}: trailing spaces in\n" + "\n".join(padded)


def _command_names() -> list[str]:
    import typer

    return sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", _modes())
@pytest.mark.parametrize("name", ["", *_command_names()])
def test_help_fits_80_columns(name: str, mode: str) -> None:
    args = [name, "-h"] if name else ["-h"]
    out = _output(mode, args)
    _assert_fits(out, f"{' '.join(args)} ({mode})")
    assert "Usage: streamstate" in out
    assert "<bool>" not in out, "a flag shows a value placeholder"
    assert out == _output(mode, [*args[:-1], "--help"])


@pytest.mark.parametrize("name", ["replay", "tail", "rebuild", "fork"])
def test_help_prose_is_reflowed(name: str) -> None:
    out = _piped([name, "--help"], "80")
    prose = out.split("╭")[0].split("Usage:")[1]
    paragraphs = [p.splitlines() for p in re.split(r"\n\s*\n", prose)]
    for lines in paragraphs[1:]:
        # a docstring's line breaks are gone: each line but a paragraph's last is full
        full = [line for line in lines[:-1] if line.strip()]
        assert all(len(line.rstrip()) > 65 for line in full), "\n".join(lines)


def test_piped_output_honours_columns(valkey_url: str, forked: tuple[str, str]) -> None:
    wide = _piped(["-h"], "120")
    assert max(len(line) for line in wide.splitlines()) == 120
    assert max(len(line) for line in _piped(["-h"], None).splitlines()) == 80
    thread_id, _fork = forked
    stats = _piped(["stats", "--session", thread_id, "--url", valkey_url], "120")
    assert any(len(line) > 80 for line in stats.splitlines())  # never cut to 80 regardless


def test_json_is_never_wrapped(valkey_url: str, forked: tuple[str, str]) -> None:
    thread_id, _fork = forked
    for args in (["history", thread_id, "--json"], ["tail", thread_id, "--format", "jsonl"]):
        narrow = _piped([*args, "--url", valkey_url], "40")
        assert narrow == _piped([*args, "--url", valkey_url], None)
        for line in narrow.splitlines():
            json.loads(line)
    doc = json.loads(_piped(["show", thread_id, "--json", "--url", valkey_url], "40"))
    assert len(doc["checkpoint_id"]) == 36


def test_trimmed_lines_keep_spaces_inside_a_line_written_in_pieces() -> None:
    import io

    from streamstate._render import TrimmedLines

    out = io.StringIO()
    stream = TrimmedLines(out)
    stream.write("a table row   ")
    stream.flush()
    assert out.getvalue() == "a table row"  # the spaces wait for the rest of the line
    stream.write("\nwords  ")
    stream.flush()
    stream.write("go on  \n")
    assert out.getvalue() == "a table row\nwords  go on\n"
