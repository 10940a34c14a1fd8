"""Writers that record what was acknowledged, for the failover tests."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from streamstate import ValkeySaver
from streamstate.errors import BackendUnavailable, ReplicationTimeout
from streamstate.eventlog.events import CheckpointPut, WritesPut
from tests.replication._ops import aput, cfg, put

# what a failover may make a write raise: the caller retries (here, with the next step)
EXPECTED = (BackendUnavailable, ReplicationTimeout)


class Load:
    """Threads (and asyncio tasks, each on a loop of its own) writing checkpoint chains,
    each checkpoint followed by a task's writes; records every acknowledgement.

    Args:
        make_saver: A new sync saver (one per thread).
        make_async: A coroutine function giving ``(saver, close)`` for an async writer.
        threads: Sync writers.
        tasks: Async writers.
    """

    def __init__(
        self,
        make_saver: Callable[[], ValkeySaver],
        make_async: Callable[[], Any] | None = None,
        *,
        threads: int = 3,
        tasks: int = 1,
    ) -> None:
        self.make_saver = make_saver
        self.make_async = make_async
        run = uuid.uuid4().hex[:6]
        self.sync_threads = [f"load-{run}-s{i}" for i in range(threads)]
        self.async_threads = [f"load-{run}-a{i}" for i in range(tasks if make_async else 0)]
        self.checkpoints: dict[str, list[str]] = {}
        self.writes: dict[str, list[tuple[str, str, int]]] = {}
        for t in self.sync_threads + self.async_threads:
            self.checkpoints[t], self.writes[t] = [], []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def threads(self) -> list[str]:
        return self.sync_threads + self.async_threads

    def acked(self, threads: list[str] | None = None) -> int:
        with self._lock:
            return sum(len(self.checkpoints[t]) for t in threads or self.threads)

    def _record(self, thread: str, config: Any = None, write: Any = None) -> None:
        with self._lock:
            if config is not None:
                self.checkpoints[thread].append(config["configurable"]["checkpoint_id"])
            if write is not None:
                self.writes[thread].append(write)

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(exc)

    def _sync(self, thread: str) -> None:
        saver = self.make_saver()
        parent, i = None, 0
        while not self.stop.is_set():
            try:
                config = put(saver, thread, parent, i)
            except Exception as exc:  # the load reports, the test decides
                self._failed(exc)
                time.sleep(0.05)
                continue
            self._record(thread, config=config)
            parent = config
            try:
                saver.put_writes(config, [("w", i)], f"task-{i}")
            except Exception as exc:
                self._failed(exc)
                time.sleep(0.05)
                continue
            self._record(thread, write=(config["configurable"]["checkpoint_id"], f"task-{i}", i))
            i += 1

    def _async(self, thread: str) -> None:
        async def main() -> None:
            assert self.make_async is not None
            saver, close = await self.make_async()
            parent, i = None, 0
            try:
                while not self.stop.is_set():
                    try:
                        config = await aput(saver, thread, parent, i)
                    except Exception as exc:
                        self._failed(exc)
                        await asyncio.sleep(0.05)
                        continue
                    self._record(thread, config=config)
                    parent = config
                    try:
                        await saver.aput_writes(config, [("w", i)], f"task-{i}")
                    except Exception as exc:
                        self._failed(exc)
                        await asyncio.sleep(0.05)
                        continue
                    cid = config["configurable"]["checkpoint_id"]
                    self._record(thread, write=(cid, f"task-{i}", i))
                    i += 1
            finally:
                await close()

        asyncio.run(main())

    def __enter__(self) -> Load:
        self.workers = [threading.Thread(target=self._sync, args=(t,)) for t in self.sync_threads]
        self.workers += [
            threading.Thread(target=self._async, args=(t,)) for t in self.async_threads
        ]
        for w in self.workers:
            w.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for w in self.workers:
            w.join(60)
        assert not any(w.is_alive() for w in self.workers), "a writer hangs"

    def wait_for(self, more: int, threads: list[str] | None = None, timeout: float = 60) -> None:
        """Until ``more`` further checkpoints were acknowledged (on ``threads``)."""
        target = self.acked(threads) + more
        deadline = time.monotonic() + timeout
        while self.acked(threads) < target:
            assert time.monotonic() < deadline, f"writers did not carry on: {self.errors[-3:]}"
            time.sleep(0.05)

    def summary(self) -> str:
        """What the writers were told meanwhile, by error class."""
        kinds: dict[str, int] = {}
        for e in self.errors:
            kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
        return ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no errors"

    def verify(self, saver: ValkeySaver) -> tuple[int, int]:
        """Every acknowledged checkpoint and write is there, no event twice; the counts."""
        unexpected = [e for e in self.errors if not isinstance(e, EXPECTED)]
        assert not unexpected, unexpected[:3]
        checkpoints = writes = 0
        for thread in self.threads:
            stored = {t.config["configurable"]["checkpoint_id"] for t in saver.list(cfg(thread))}
            lost = [c for c in self.checkpoints[thread] if c not in stored]
            assert not lost, f"{len(lost)} acknowledged checkpoints lost in {thread}"
            for cid, task, value in self.writes[thread]:
                found = saver.get_tuple(cfg(thread, cid))
                assert found is not None and (task, "w", value) in found.pending_writes, (
                    f"an acknowledged write ({task}) lost in {thread}"
                )
            events = [e.event for e in saver.log.read(("t", thread))]
            cps = [e.checkpoint_id for e in events if isinstance(e, CheckpointPut)]
            assert len(cps) == len(set(cps)), f"a checkpoint appended twice in {thread}"
            tasks = [(e.checkpoint_id, e.task_id) for e in events if isinstance(e, WritesPut)]
            assert len(tasks) == len(set(tasks)), f"a task's writes appended twice in {thread}"
            checkpoints += len(self.checkpoints[thread])
            writes += len(self.writes[thread])
        return checkpoints, writes
