"""The same guarantees when the service derives eventIds from ``eventTimestamp``.

The real service's eventIds look timestamp-derived (aws_api.md 1.1); the emulator's
default orders by arrival. Reads rely only on newest-first listing, which both give,
so the key tests run again here with ``event_id_source="event_timestamp"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import tests.aws.test_agentcore_conformance as conformance
import tests.aws.test_agentcore_graph as graph
import tests.aws.test_agentcore_saver as saver_tests
from streamstate.eventlog.agentcore import AsyncAgentCoreEventLog
from streamstate.testing.aws_emulator import AwsEmulator
from streamstate.testing.eventlog import EventLogContract


@pytest.fixture(scope="module")
def emulator() -> Iterator[AwsEmulator]:
    with AwsEmulator(event_id_source="event_timestamp") as emu:
        yield emu
        assert emu.internal_errors == []


saver = graph.saver
test_conformance_all_capabilities = conformance.test_conformance_all_capabilities
test_get_tuple_budget = saver_tests.test_get_tuple_latest_costs_the_same_after_5_and_500_checkpoints
test_rewrites = saver_tests.test_prune_copy_and_delete_for_runs_keep_referenced_values
test_early_writes = saver_tests.test_writes_stored_before_their_checkpoint_are_found
test_list = saver_tests.test_list_across_namespaces_threads_and_filters
test_interrupt_then_resume = graph.test_interrupt_then_resume
test_subgraph = graph.test_subgraph_interrupt_and_resume
test_send_fan_out = graph.test_send_fan_out


class TestAsyncAgentCoreEventLog(EventLogContract):
    @pytest.fixture
    def log(self, emulator: AwsEmulator) -> Any:
        return AsyncAgentCoreEventLog(
            emulator.create_memory("ordering"), client=emulator.agentcore_client()
        )


del EventLogContract
