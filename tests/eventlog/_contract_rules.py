"""The sharp edges of the event-log contract (``streamstate.eventlog.contract``) as one
reusable test case, beside the shipped ``EventLogContract``: what an empty append
returns, what a duplicate reports, inclusive bounds in both orders, where a new group
starts, what ``ack``, ``delete`` and ``trim`` count.

A backend's module subclasses :class:`ContractRules` and provides the ``log`` fixture
(the async contract; wrap a sync log with ``SyncToAsync``), then deletes the imported
base so it is not collected twice.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from streamstate.testing.eventlog import make_event


class ContractRules:
    @pytest.fixture
    def session(self) -> str:
        return f"rules-{uuid.uuid4().hex[:10]}"

    async def test_an_empty_append_writes_nothing_and_is_not_a_duplicate(
        self, log: Any, session: str
    ) -> None:
        result = await log.append(session, [])
        assert (result.appended, result.ids) == (True, [])
        assert await log.length(session) == 0
        await log.append(session, [make_event(1)])
        result = await log.append(session, [])
        assert (result.appended, result.ids) == (True, [])
        assert await log.length(session) == 1

    async def test_an_empty_append_records_no_idempotency_key(self, log: Any, session: str) -> None:
        assert (await log.append(session, [], idempotency_key="k")).appended
        result = await log.append(session, [make_event(1)], idempotency_key="k")
        assert result.appended and len(result.ids) == 1
        again = await log.append(session, [make_event(1)], idempotency_key="k")
        assert not again.appended
        assert again.ids in ([], result.ids)
        assert await log.length(session) == 1

    async def test_an_append_returns_one_id_per_event_in_order(
        self, log: Any, session: str
    ) -> None:
        first = await log.append(session, [make_event(i) for i in range(3)])
        second = await log.append(session, [make_event(3)])
        assert [e.id for e in await log.read(session)] == first.ids + second.ids

    async def test_a_duplicate_writes_nothing_and_names_the_earlier_entries(
        self, log: Any, session: str
    ) -> None:
        first = await log.append(session, [make_event(1), make_event(2)], idempotency_key="k")
        again = await log.append(session, [make_event(1), make_event(2)], idempotency_key="k")
        assert not again.appended
        assert again.ids in ([], first.ids)  # all of them, when the backend knows them
        assert await log.length(session) == 2

    async def test_bounds_are_inclusive_in_both_orders(self, log: Any, session: str) -> None:
        await log.append(session, [make_event(i) for i in range(5)])
        ids = [e.id for e in await log.read(session)]
        newest_first = [e.id for e in await log.read(session, ids[1], ids[3], reverse=True)]
        assert newest_first == ids[3:0:-1]
        assert [e.id for e in await log.read(session, reverse=True, count=1)] == ids[-1:]
        assert [e.id for e in await log.read(session, ids[4], ids[4])] == ids[4:]

    async def test_a_group_from_the_end_delivers_only_later_appends(
        self, log: Any, session: str
    ) -> None:
        await log.append(session, [make_event(1), make_event(2)])
        assert await log.ensure_group(session, "live", "$") is True
        assert await log.group_read(session, "live", "c") == []
        await log.append(session, [make_event(3)])
        got = await log.group_read(session, "live", "c")
        assert [e.event for e in got] == [make_event(3)]

    async def test_a_group_on_an_empty_session_gets_the_first_append(
        self, log: Any, session: str
    ) -> None:
        assert await log.ensure_group(session, "g") is True
        assert await log.group_read(session, "g", "c") == []
        await log.append(session, [make_event(1)])
        assert [e.event for e in await log.group_read(session, "g", "c")] == [make_event(1)]

    async def test_ack_counts_only_pending_entries(self, log: Any, session: str) -> None:
        await log.append(session, [make_event(i) for i in range(3)])
        await log.ensure_group(session, "g")
        got = await log.group_read(session, "g", "c", count=2)
        assert len(got) == 2
        assert await log.ack(session, "g", [got[0].id]) == 1
        assert await log.ack(session, "g", [got[0].id]) == 0  # already acknowledged
        assert await log.ack(session, "g", [got[1].id]) == 1

    async def test_delete_says_whether_the_session_existed_and_a_new_log_starts(
        self, log: Any, session: str
    ) -> None:
        assert await log.delete(session) is False
        await log.append(session, [make_event(1)], idempotency_key="k")
        assert await log.delete(session) is True
        assert await log.length(session) == 0 and await log.read(session) == []
        assert (await log.append(session, [make_event(2)])).appended
        assert [e.event for e in await log.read(session)] == [make_event(2)]

    async def test_trim_by_min_id_drops_the_older_entries(self, log: Any, session: str) -> None:
        await log.append(session, [make_event(i) for i in range(5)])
        ids = [e.id for e in await log.read(session)]
        assert await log.trim(session, minid=ids[2]) == 2
        assert [e.id for e in await log.read(session)] == ids[2:]
        assert await log.length(session) == 3
