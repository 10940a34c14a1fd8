"""What ``pip install streamstate`` gives: the wheel's contents, ``streamstate
--version``, and a one-line hint when the command line's extra is missing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import streamstate
from streamstate.cli import main

ROOT = Path(__file__).resolve().parent.parent

# Runs the console script's entry point in a process where the `cli` extra's packages
# cannot be imported, as after `pip install streamstate` without extras.
WITHOUT_CLI_EXTRA = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder

    class NoCliExtra(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("typer", "rich"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoCliExtra())
    from streamstate.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _run_without_cli_extra(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STREAMSTATE_URL": "valkey://127.0.0.1:1"}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_CLI_EXTRA, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


def test_version_is_the_projects(capsys: pytest.CaptureFixture[str]) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    declared = re.search(r'^version = "([^"]+)"', pyproject, re.M)
    assert declared and declared.group(1) == streamstate.__version__
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"streamstate {streamstate.__version__}\n"


def test_console_script_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamstate.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert (done.returncode, done.stdout) == (0, f"streamstate {streamstate.__version__}\n")


def test_base_install_says_which_extra_to_install() -> None:
    done = _run_without_cli_extra("stats")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "streamstate[cli]" in lines[0] and "typer" in lines[0]
    version = _run_without_cli_extra("--version")
    assert (version.returncode, version.stdout.strip()) == (
        0,
        f"streamstate {streamstate.__version__}",
    )


def test_other_missing_modules_are_not_blamed_on_the_extra() -> None:
    """Only the extra's own modules get the hint; any other import error is raised."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["streamstate._cli"] = None  # importing it raises ModuleNotFoundError
        from streamstate.cli import main
        main(["stats"])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 1 and "ModuleNotFoundError" in done.stderr


def test_wheel_ships_the_type_marker_and_the_console_script(tmp_path: Path) -> None:
    """Build the wheel as pip does and read what it holds."""
    assert (ROOT / "streamstate" / "py.typed").is_file()
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("streamstate-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"streamstate-{streamstate.__version__}.dist-info"
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        metadata = zf.read(f"{info}/METADATA").decode()
    assert "streamstate/py.typed" in names
    assert "streamstate/langgraph_server.py" in names
    assert re.search(r"^streamstate = streamstate\.cli:main$", entry_points, re.M)
    assert f"\nVersion: {streamstate.__version__}\n" in metadata
    assert not any(n.startswith(("tests/", "examples/", "bench/")) for n in names)
