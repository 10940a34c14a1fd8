"""Every script in ``examples/`` runs to completion against the test server.

Each is run as a user would run it (``python examples/NAME.py``, in a fresh process),
pointed at the test Valkey through ``STREAMSTATE_URL``; the scripts assert what they
show, so a script that runs is a script that works.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py"))


def test_there_are_examples() -> None:
    assert {"react_agent.py", "semantic_store.py", "time_travel.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs(script: str, valkey_url: str) -> None:
    env = {**os.environ, "STREAMSTATE_URL": valkey_url}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        env=env,
        cwd=EXAMPLES.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip(), "an example shows what it did"
    assert "Traceback" not in done.stderr
