"""Fixtures of the replication tests: real primaries, replicas, Sentinels and clusters
from the bundled ``valkey-server``; long load variants only run with ``-m slow``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streamstate.testing.replication import ReplicaSet

HERE = Path(__file__).resolve().parent
SLOW_COMMAND = "python -m pytest -m slow tests/replication"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip this directory's ``slow`` tests unless the run selects them with ``-m``."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason=f"long load variant; run with `{SLOW_COMMAND}`")
    for item in items:
        if "slow" in item.keywords and HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture
def replica_set(tmp_path: Path) -> Iterator[ReplicaSet]:
    """A primary and one replica of the test's own (tests kill and promote them)."""
    rs = ReplicaSet(tmp_path / "rs", replicas=1).start()
    yield rs
    rs.stop()
