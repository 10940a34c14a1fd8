"""Fixtures of the reliability tests; long load variants only run with ``-m slow``."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import valkey

from streamstate.server import EmbeddedServer
from streamstate.testing.faultproxy import FaultProxy

HERE = Path(__file__).resolve().parent
SLOW_COMMAND = "python -m pytest -m slow tests/reliability"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip this directory's ``slow`` tests unless the run selects them with ``-m``.

    The default ``python -m pytest`` must stay well under two minutes for this
    directory; the long load variants are run by ``SLOW_COMMAND``.
    """
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason=f"long load variant; run with `{SLOW_COMMAND}`")
    for item in items:
        if "slow" in item.keywords and HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


class Seed(int):
    """An RNG seed that shows itself in test ids and failure reports."""

    def __repr__(self) -> str:
        return f"Seed({int(self)})"


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> Seed:
    """A fresh seed per test; set RELIABILITY_SEED to replay a failure."""
    import os

    fixed = os.environ.get("RELIABILITY_SEED")
    value = Seed(int(fixed) if fixed else random.randrange(2**32))
    request.node.user_properties.append(("seed", int(value)))
    print(f"seed={int(value)} (replay with RELIABILITY_SEED={int(value)})")
    return value


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A server of the test module's own (its global counters and keys are the module's)."""
    server = EmbeddedServer(tmp_path_factory.mktemp("module")).start()
    yield server
    server.stop()


@pytest.fixture
def proxy(module_server: EmbeddedServer) -> Iterator[FaultProxy]:
    """A fault proxy in front of ``module_server``, faithful until told otherwise."""
    with FaultProxy(module_server.url) as p:
        yield p


@pytest.fixture
def direct(module_server: EmbeddedServer) -> Iterator[valkey.Valkey]:
    """A client that bypasses the proxy, to look at what the server really holds."""
    c = valkey.Valkey.from_url(module_server.url)
    yield c
    c.close()
