"""The in-memory reference log runs the shared contract and its sharp edges, unchanged,
through both shells (and both shells share one core, as two clients of one server)."""

from __future__ import annotations

from typing import Any

import pytest

from streamstate.eventlog.memory import AsyncMemoryEventLog, MemoryEventLog, MemoryLogCore
from streamstate.testing.eventlog import EventLogContract, SyncToAsync, make_event
from tests.eventlog._contract_rules import ContractRules


class TestMemoryEventLog(EventLogContract, ContractRules):
    @pytest.fixture
    def log(self) -> Any:
        return SyncToAsync(MemoryEventLog())


class TestAsyncMemoryEventLog(EventLogContract, ContractRules):
    @pytest.fixture
    def log(self) -> Any:
        return AsyncMemoryEventLog()


async def test_both_shells_share_one_core() -> None:
    core = MemoryLogCore()
    sync, other = MemoryEventLog(core), AsyncMemoryEventLog(core)
    sync.append("s", [make_event(1)])
    assert [e.event for e in await other.read("s")] == [make_event(1)]


def test_a_deleted_session_forgets_its_idempotency_keys() -> None:
    log = MemoryEventLog()
    log.append("s", [make_event(1)], idempotency_key="k")
    log.delete("s")
    assert log.append("s", [make_event(1)], idempotency_key="k").appended


def test_what_it_cannot_do_is_refused() -> None:
    from streamstate.errors import ConfigError
    from streamstate.eventlog.ops import sadd

    log = MemoryEventLog()
    with pytest.raises(ConfigError):
        log.append("s", [make_event(1)], extra_ops=[sadd("k", "m")])
    with pytest.raises(ConfigError):
        log.append("s", [make_event(1)], ttl=5)
    assert log.length("s") == 0


del EventLogContract, ContractRules
