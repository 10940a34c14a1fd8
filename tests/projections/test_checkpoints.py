"""The checkpoint views of a thread (``v`` and ``z``): rebuilt from the thread's log they
are the live views, for plain threads and for AgentCore-addressed (actor) threads, after
puts and writes in several namespaces, after ``delete_for_runs`` and ``prune``, and a
rebuild in place repairs a view that lost a field."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import valkey
from langgraph.checkpoint.base import empty_checkpoint

from streamstate.adapters._checkpoints import Thread
from streamstate.adapters.valkey_saver import AgentCoreValkeySaver, ValkeySaver
from streamstate.eventlog._drive import complete
from streamstate.eventlog.keys import Keyspace
from streamstate.projections.checkpoints import thread_keys
from tests.projections._rebuild_case import RebuildCase

SHADOW = Keyspace("ss-verify")


class CheckpointViews:
    """One thread of a Valkey saver, written through ``put`` and ``put_writes``."""

    def __init__(self, saver: ValkeySaver, client: valkey.Valkey, actor_id: str | None) -> None:
        self.saver = saver
        self.client = client
        self.thread = Thread(f"views-{uuid.uuid4().hex[:8]}", actor_id)
        self.keys = saver._core.keys(self.thread)
        self.version: str | None = None

    def config(self, ns: str) -> dict[str, Any]:
        configurable = {"thread_id": self.thread.thread_id, "checkpoint_ns": ns}
        if self.thread.actor_id is not None:
            configurable["actor_id"] = self.thread.actor_id
        return {"configurable": configurable}

    def write(self, round: int) -> None:
        for ns in ("", "child"):
            parent: dict[str, Any] = self.config(ns)
            big = None
            for step in range(3):
                self.version = self.saver.get_next_version(self.version, None)
                big = big or self.version  # written once, then unchanged
                checkpoint = empty_checkpoint()
                checkpoint["channel_values"] = {"big": "x" * 3000, "n": round * 10 + step}
                checkpoint["channel_versions"] = {"big": big, "n": self.version}
                new = {"n": self.version} if step else {"big": big, "n": self.version}
                metadata = {"source": "loop", "step": step, "run_id": f"run-{round}"}
                parent = self.saver.put(parent, checkpoint, metadata, new)  # type: ignore[arg-type]
                self.saver.put_writes(parent, [("n", step), ("note", "x" * step)], f"t{step}")

    def snapshot(self, keyspace: Keyspace, *, markers: bool = False) -> list[Any]:
        """``v`` and ``z``. A rebuild beside the live views registers nothing, so it
        writes no ``r:`` marker (the field saying a run's registry names the thread):
        they are left out unless asked for. A rebuild in place writes them again."""
        keys = thread_keys(keyspace.session(self.thread.session))[1:]
        (v_kind, v), z = self.saver.log.snapshot(keys).values()
        if not markers:
            v = {f: value for f, value in v.items() if not f.startswith(b"r:")}
        return [(v_kind, v), z]

    def live(self) -> list[Any]:
        return self.snapshot(self.saver.log.keyspace)

    def rebuilt(self) -> list[Any]:
        replayed = complete(self.saver._core.rebuild_flow(self.thread, SHADOW), self.saver.log.run)
        assert replayed == self.client.xlen(self.keys.log)
        return self.snapshot(SHADOW)

    def reclaim(self) -> None:
        self.saver.delete_for_runs(["run-0"])
        self.saver.prune([self.thread.thread_id])

    def damage(self) -> None:
        views = thread_keys(self.keys)[1]
        field = next(f for f in self.client.hkeys(views) if f.startswith(b"c:"))
        self.client.hdel(views, field)

    def repair(self) -> None:
        complete(self.saver._core.rebuild_flow(self.thread), self.saver.log.run)


class TestCheckpointViews(RebuildCase):
    @pytest.fixture(params=["thread", "actor thread"])
    def view(self, request: pytest.FixtureRequest, valkey_url: str) -> Iterator[CheckpointViews]:
        client = valkey.Valkey.from_url(valkey_url)
        if request.param == "thread":
            yield CheckpointViews(ValkeySaver(client), client, None)
        else:
            yield CheckpointViews(AgentCoreValkeySaver(client), client, "actor-1")
        client.close()


def test_a_rebuild_in_place_writes_the_run_markers_again(valkey_url: str) -> None:
    client = valkey.Valkey.from_url(valkey_url)
    view = CheckpointViews(ValkeySaver(client), client, None)
    view.write(0)
    view.write(1)
    before = view.snapshot(view.saver.log.keyspace, markers=True)
    assert {f for f in before[0][1] if f.startswith(b"r:")} == {b"r:run-0", b"r:run-1"}
    client.delete(view.keys.view("v"), view.keys.view("z"))
    view.repair()
    assert view.snapshot(view.saver.log.keyspace, markers=True) == before
    client.close()


del RebuildCase
