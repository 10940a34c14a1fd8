"""A real 3-primary, 3-replica Valkey Cluster on loopback for the tests in this folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streamstate.testing.cluster import LocalCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("cluster"), primaries=3, replicas=1).start()
    yield c
    c.stop()
