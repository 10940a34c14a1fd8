"""The shared event-log contract, unchanged, on the AgentCore Memory backend (both shells)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from streamstate.eventlog.agentcore import AgentCoreEventLog, AsyncAgentCoreEventLog
from streamstate.testing.aws_emulator import AwsEmulator
from streamstate.testing.eventlog import EventLogContract, SyncToAsync


@pytest.fixture(scope="module")
def emulator() -> Iterator[AwsEmulator]:
    with AwsEmulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def memory_id(emulator: AwsEmulator) -> str:
    return emulator.create_memory("contract")


class TestAgentCoreEventLog(EventLogContract):
    @pytest.fixture
    def log(self, emulator: AwsEmulator, memory_id: str) -> Any:
        return SyncToAsync(AgentCoreEventLog(memory_id, client=emulator.agentcore_client()))


class TestAsyncAgentCoreEventLog(EventLogContract):
    @pytest.fixture
    def log(self, emulator: AwsEmulator, memory_id: str) -> Any:
        return AsyncAgentCoreEventLog(memory_id, client=emulator.agentcore_client())


del EventLogContract
