"""Small helpers shared by the replication tests."""

from __future__ import annotations

import uuid
from typing import Any

from langgraph.checkpoint.base import empty_checkpoint


def cfg(thread: str, cid: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if cid is not None:
        c["checkpoint_id"] = cid
    return {"configurable": c}


def checkpoint(saver: Any, i: int, cid: str | None = None) -> tuple[Any, dict[str, Any], Any]:
    """``(checkpoint, metadata, new_versions)`` of step ``i`` (id ``cid`` if given)."""
    cp = empty_checkpoint()
    if cid is not None:
        cp["id"] = cid
    version = saver.get_next_version(None, None)
    cp["channel_values"] = {"n": i}
    cp["channel_versions"] = {"n": version}
    return cp, {"source": "loop", "step": i}, {"n": version}


def put(saver: Any, thread: str, parent: dict[str, Any] | None = None, i: int = 0) -> Any:
    cp, meta, versions = checkpoint(saver, i)
    return saver.put(parent or cfg(thread), cp, meta, versions)


async def aput(saver: Any, thread: str, parent: dict[str, Any] | None = None, i: int = 0) -> Any:
    cp, meta, versions = checkpoint(saver, i)
    return await saver.aput(parent or cfg(thread), cp, meta, versions)


def thread_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def calls(node_client: Any, command: str) -> int:
    """How many times the server ran ``command`` (INFO commandstats)."""
    stats = node_client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
