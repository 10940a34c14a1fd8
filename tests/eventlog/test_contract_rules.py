"""The contract's sharp edges (``_contract_rules``) on every backend but the reference
(``test_memory_log``): Valkey (both shells), AgentCore Memory and Bedrock sessions
(through the emulator). A known discrepancy of a backend is an ``xfail`` naming it, as
listed in ``streamstate.eventlog.contract``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import valkey
import valkey.asyncio

from streamstate.eventlog.agentcore import AgentCoreEventLog
from streamstate.eventlog.bedrock import BedrockEventLog
from streamstate.eventlog.valkey import AsyncValkeyEventLog, ValkeyEventLog
from streamstate.testing.aws_emulator import AwsEmulator
from streamstate.testing.eventlog import SyncToAsync
from tests.eventlog._contract_rules import ContractRules


@pytest.fixture(scope="module")
def emulator() -> Iterator[AwsEmulator]:
    with AwsEmulator() as emu:
        yield emu


class TestValkeyEventLog(ContractRules):
    @pytest.fixture
    def log(self, valkey_url: str) -> Iterator[Any]:
        client = valkey.Valkey.from_url(valkey_url)
        yield SyncToAsync(ValkeyEventLog(client))
        client.close()


class TestAsyncValkeyEventLog(ContractRules):
    @pytest.fixture
    async def log(self, valkey_url: str) -> Any:
        client = valkey.asyncio.Valkey.from_url(valkey_url)
        yield AsyncValkeyEventLog(client)
        await client.aclose()


class TestAgentCoreEventLog(ContractRules):
    @pytest.fixture
    def log(self, emulator: AwsEmulator) -> Any:
        memory_id = emulator.create_memory("rules")
        return SyncToAsync(AgentCoreEventLog(memory_id, client=emulator.agentcore_client()))


class TestBedrockEventLog(ContractRules):
    @pytest.fixture
    def log(self, emulator: AwsEmulator) -> Any:
        return SyncToAsync(BedrockEventLog(emulator.agent_runtime_client()))


del ContractRules
