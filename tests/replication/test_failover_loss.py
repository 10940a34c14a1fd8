"""What a failover loses on a primary with one replica, staged deterministically.

The replica is paused (``SIGSTOP``) and its link cut (``CLIENT KILL TYPE replica`` on the
primary: a paused replica alone would still receive what sits in its socket buffer), a
write is made, the primary is killed (``SIGKILL``), and the replica is resumed and
promoted (``REPLICAOF NO ONE``).

* With the defaults the write is acknowledged and then gone: asynchronous replication's
  documented limit.
* With ``wait_replicas=1`` the write is never acknowledged (``ReplicationTimeout``), so
  nothing acknowledged is lost; what was acknowledged before the cut survives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from streamstate import AsyncValkeySaver, ValkeyCache, ValkeySaver, ValkeyStore
from streamstate.connection import async_client_from_url, client_from_url
from streamstate.errors import ReplicationTimeout
from streamstate.testing.replication import ReplicaSet
from tests.replication._ops import aput, cfg, put, thread_id

# long enough for a loaded machine to confirm step 0; step 1 then times out after it
WAIT = {"wait_replicas": 1, "wait_timeout_ms": 1000}


class SaverPut:
    """``ValkeySaver.put``: a checkpoint per step."""

    def __init__(self, url: str, **wait: Any) -> None:
        self.saver = ValkeySaver(client_from_url(url), **wait)
        self.thread = thread_id("put")
        self.configs: dict[int, Any] = {}

    def write(self, i: int) -> None:
        self.configs[i] = put(self.saver, self.thread, self.configs.get(i - 1), i)

    def written(self, i: int) -> str:
        return self.configs[i]["configurable"]["checkpoint_id"] if i in self.configs else ""

    @staticmethod
    def present(url: str, thread: str, cid: str) -> bool:
        return ValkeySaver(client_from_url(url)).get_tuple(cfg(thread, cid)) is not None


class SaverPutWrites:
    """``ValkeySaver.put_writes``: a task's writes per step, on one checkpoint."""

    def __init__(self, url: str, **wait: Any) -> None:
        self.saver = ValkeySaver(client_from_url(url))  # the checkpoint itself, unwaited
        self.thread = thread_id("writes")
        self.parent = put(self.saver, self.thread)
        self.saver = ValkeySaver(client_from_url(url), **wait)

    def write(self, i: int) -> None:
        self.saver.put_writes(self.parent, [("ch", i)], f"task-{i}")

    def present_step(self, url: str, i: int) -> bool:
        found = ValkeySaver(client_from_url(url)).get_tuple(self.parent)
        return found is not None and (f"task-{i}", "ch", i) in found.pending_writes


class StorePut:
    def __init__(self, url: str, **wait: Any) -> None:
        self.store = ValkeyStore(client_from_url(url), **wait)
        self.ns = ("users", thread_id("ns"))

    def write(self, i: int) -> None:
        self.store.put(self.ns, f"k{i}", {"i": i})

    def present_step(self, url: str, i: int) -> bool:
        return ValkeyStore(client_from_url(url)).get(self.ns, f"k{i}") is not None


class CacheSet:
    def __init__(self, url: str, **wait: Any) -> None:
        self.prefix = f"{thread_id('c')}:"
        self.cache: ValkeyCache[Any] = ValkeyCache(client_from_url(url), prefix=self.prefix, **wait)

    def write(self, i: int) -> None:
        self.cache.set({(("n",), f"k{i}"): (i, None)})

    def present_step(self, url: str, i: int) -> bool:
        cache: ValkeyCache[Any] = ValkeyCache(client_from_url(url), prefix=self.prefix)
        return bool(cache.get([(("n",), f"k{i}")]))


class AsyncSaverPut:
    """``AsyncValkeySaver.aput``, each call on its own event loop and client."""

    def __init__(self, url: str, **wait: Any) -> None:
        self.url, self.wait = url, wait
        self.thread = thread_id("aput")
        self.configs: dict[int, Any] = {}

    def write(self, i: int) -> None:
        async def main() -> Any:
            client = async_client_from_url(self.url)
            try:
                saver = AsyncValkeySaver(client, **self.wait)
                return await aput(saver, self.thread, self.configs.get(i - 1), i)
            finally:
                await client.aclose()

        self.configs[i] = asyncio.run(main())

    def present_step(self, url: str, i: int) -> bool:
        cid = self.configs[i]["configurable"]["checkpoint_id"] if i in self.configs else None
        return cid is not None and SaverPut.present(url, self.thread, cid)


def _saver_put_present(op: SaverPut) -> Callable[[str, int], bool]:
    return lambda url, i: bool(op.written(i)) and op.present(url, op.thread, op.written(i))


def _stage(rs: ReplicaSet, op: Any, present: Callable[[str, int], bool]) -> tuple[bool, bool]:
    """Step 0 with the replica linked, step 1 with it cut, then the failover.

    Returns ``(step 1 acknowledged, step 1 present after the failover)``; step 0 must
    survive in every case.
    """
    op.write(0)
    rs.wait_synced()
    replica = rs.replicas[0]
    rs.cut(replica)
    try:
        op.write(1)
        acknowledged = True
    except ReplicationTimeout as exc:
        assert "not confirmed" in str(exc) and "idempotent" in str(exc)
        assert (exc.wanted, exc.confirmed) == (1, 0)
        acknowledged = False
    rs.primary.kill()
    rs.promote(replica)
    assert present(replica.url, 0), "a write confirmed before the cut was lost"
    return acknowledged, present(replica.url, 1)


def test_default_acknowledges_a_put_that_a_failover_then_loses(replica_set: ReplicaSet) -> None:
    """The documented limit of asynchronous replication."""
    op = SaverPut(replica_set.url)
    acknowledged, survived = _stage(replica_set, op, _saver_put_present(op))
    assert acknowledged
    assert not survived, "an acknowledged put lost by the failover, as documented"


@pytest.mark.parametrize(
    "kind", ["put", "put_writes", "store put", "cache set", "async put"]
)  # fmt: skip
def test_wait_replicas_never_acknowledges_what_a_failover_loses(
    replica_set: ReplicaSet, kind: str
) -> None:
    url = replica_set.url
    op: Any
    if kind == "put":
        op = SaverPut(url, **WAIT)
        present = _saver_put_present(op)
    else:
        op = {
            "put_writes": SaverPutWrites,
            "store put": StorePut,
            "cache set": CacheSet,
            "async put": AsyncSaverPut,
        }[kind](url, **WAIT)
        present = op.present_step
    acknowledged, survived = _stage(replica_set, op, present)
    assert not acknowledged, "a write was acknowledged that no replica had"
    assert not survived  # it was never acknowledged: nothing acknowledged is lost
