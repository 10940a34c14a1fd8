"""LangGraph's checkpointer interface over a core that writes every method as a flow.

Each saver (Valkey, AgentCore Memory, Bedrock sessions; sync or async client) keeps its
logic in a core, reached through :class:`SaverFlows`: one flow per method, named after
it. :class:`SaverShell` is the only code that runs those flows: every sync method and
its async twin is one call to the flows and one :class:`~streamstate.adapters._shell.
Execution` driver, written once for every backend. A backend sets ``_flows`` and
``_exec`` in its constructor and adds only what is its own (factories, flushing).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Protocol

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from streamstate.adapters._checkpoints import next_version
from streamstate.adapters._shell import Execution
from streamstate.eventlog._drive import Flow


class SaverFlows(Protocol):
    """One flow per saver method. The shell passes every argument positionally,
    ``actor_id`` ``None`` for a saver without actors, and the saver's current ``serde``
    (a clone from ``with_allowlist`` has its own)."""

    def get_tuple_flow(
        self, config: RunnableConfig, serde: SerializerProtocol, /
    ) -> Flow[CheckpointTuple | None]: ...

    def list_flow(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
        serde: SerializerProtocol,
        /,
    ) -> Flow[None]:
        """Emits the checkpoint tuples, newest first."""
        ...

    def put_flow(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
        serde: SerializerProtocol,
        /,
    ) -> Flow[RunnableConfig]: ...

    def put_writes_flow(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
        serde: SerializerProtocol,
        /,
    ) -> Flow[None]: ...

    def delete_thread_flow(self, thread_id: str, actor_id: str | None, /) -> Flow[None]: ...

    def delete_for_runs_flow(self, run_ids: Sequence[str], /) -> Flow[None]: ...

    def copy_thread_flow(
        self, source_thread_id: str, target_thread_id: str, actor_id: str | None, /
    ) -> Flow[Any]: ...

    def prune_flow(
        self,
        thread_ids: Sequence[str],
        strategy: str,
        actor_id: str | None,
        serde: SerializerProtocol,
        /,
    ) -> Flow[None]: ...

    def delta_flow(
        self, config: RunnableConfig, channels: Sequence[str], serde: SerializerProtocol, /
    ) -> Flow[Mapping[str, DeltaChannelHistory]]: ...


class CoreFlows:
    """:class:`SaverFlows` over a core that has each flow under the protocol's name and
    arguments: every method passes its arguments on. A backend whose core names or
    shapes a flow otherwise overrides that method."""

    def __init__(self, core: Any) -> None:
        self.core = core

    def get_tuple_flow(self, *args: Any) -> Flow[CheckpointTuple | None]:
        return self.core.get_tuple_flow(*args)

    def list_flow(self, *args: Any) -> Flow[None]:
        return self.core.list_flow(*args)

    def put_flow(self, *args: Any) -> Flow[RunnableConfig]:
        return self.core.put_flow(*args)

    def put_writes_flow(self, *args: Any) -> Flow[None]:
        return self.core.put_writes_flow(*args)

    def delete_thread_flow(self, *args: Any) -> Flow[None]:
        return self.core.delete_thread_flow(*args)

    def delete_for_runs_flow(self, *args: Any) -> Flow[None]:
        return self.core.delete_for_runs_flow(*args)

    def copy_thread_flow(self, *args: Any) -> Flow[Any]:
        return self.core.copy_thread_flow(*args)

    def prune_flow(self, *args: Any) -> Flow[None]:
        return self.core.prune_flow(*args)

    def delta_flow(self, *args: Any) -> Flow[Mapping[str, DeltaChannelHistory]]:
        return self.core.delta_flow(*args)


class SaverShell(BaseCheckpointSaver[str]):
    """Every method of LangGraph's ``BaseCheckpointSaver``, sync and async, once.

    The methods carry no docstrings of their own, so ``help()`` shows LangGraph's; a
    backend that documents a method its own way re-documents it with
    :func:`~streamstate.adapters._shell.documented`.
    """

    _flows: SaverFlows
    _exec: Execution

    def get_next_version(self, current: str | None, channel: None = None) -> str:
        return next_version(current)

    # sync -----------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._exec.complete(self._flows.get_tuple_flow(config, self.serde))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        return self._exec.drive(self._flows.list_flow(config, filter, before, limit, self.serde))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        flow = self._flows.put_flow(config, checkpoint, metadata, new_versions, self.serde)
        return self._exec.complete(flow)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        flow = self._flows.put_writes_flow(config, writes, task_id, task_path, self.serde)
        self._exec.complete(flow)

    def delete_thread(self, thread_id: str) -> None:
        self._exec.complete(self._flows.delete_thread_flow(thread_id, None))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._exec.complete(self._flows.delete_for_runs_flow(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._exec.complete(self._flows.copy_thread_flow(source_thread_id, target_thread_id, None))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._exec.complete(self._flows.prune_flow(thread_ids, strategy, None, self.serde))

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return self._exec.complete(self._flows.delta_flow(config, channels, self.serde))

    # async ----------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._exec.acomplete(self._flows.get_tuple_flow(config, self.serde))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        flow = self._flows.list_flow(config, filter, before, limit, self.serde)
        async for item in self._exec.adrive(flow):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        flow = self._flows.put_flow(config, checkpoint, metadata, new_versions, self.serde)
        return await self._exec.acomplete(flow)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        flow = self._flows.put_writes_flow(config, writes, task_id, task_path, self.serde)
        await self._exec.acomplete(flow)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._exec.acomplete(self._flows.delete_thread_flow(thread_id, None))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._exec.acomplete(self._flows.delete_for_runs_flow(run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        flow = self._flows.copy_thread_flow(source_thread_id, target_thread_id, None)
        await self._exec.acomplete(flow)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._exec.acomplete(self._flows.prune_flow(thread_ids, strategy, None, self.serde))

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await self._exec.acomplete(self._flows.delta_flow(config, channels, self.serde))


class ActorSaverShell(SaverShell):
    """A saver whose threads are AgentCore sessions (``actor_id`` + ``thread_id``):
    ``delete_thread`` takes an ``actor_id`` (``None``: every actor's session)."""

    def delete_thread(self, thread_id: str, actor_id: str | None = None) -> None:  # type: ignore[override]
        """Delete the session of ``actor_id``, or of every actor when it is ``None``."""
        self._exec.complete(self._flows.delete_thread_flow(thread_id, actor_id))

    async def adelete_thread(self, thread_id: str, actor_id: str | None = None) -> None:  # type: ignore[override]
        await self._exec.acomplete(self._flows.delete_thread_flow(thread_id, actor_id))
