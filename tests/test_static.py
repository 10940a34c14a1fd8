"""The code's static checks, run with the suite so CI runs them: ruff (lint and format)
over everything Python in the repository, mypy over the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON_DIRS = ["streamstate", "tests", "bench", "examples"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_lint_is_clean() -> None:
    result = _run("ruff", "check", *PYTHON_DIRS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = _run("ruff", "format", "--check", *PYTHON_DIRS)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(600)
def test_mypy_finds_no_type_errors() -> None:
    result = _run("mypy")  # settings and files: [tool.mypy] in pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr
