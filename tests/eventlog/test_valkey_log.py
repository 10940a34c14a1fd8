"""The Valkey event log (sync and async) runs the shared contract unchanged."""

from __future__ import annotations

import pytest
import valkey
import valkey.asyncio

from streamstate.eventlog.valkey import AsyncValkeyEventLog, ValkeyEventLog
from streamstate.testing.eventlog import EventLogContract, SyncToAsync


class TestValkeyEventLog(EventLogContract):
    @pytest.fixture
    def log(self, valkey_url: str):
        client = valkey.Valkey.from_url(valkey_url)
        yield SyncToAsync(ValkeyEventLog(client))
        client.close()


class TestAsyncValkeyEventLog(EventLogContract):
    @pytest.fixture
    async def log(self, valkey_url: str):
        client = valkey.asyncio.Valkey.from_url(valkey_url)
        yield AsyncValkeyEventLog(client)
        await client.aclose()
