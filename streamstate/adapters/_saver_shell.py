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

# Short names for the protocol's signatures (the savers' methods spell them out).
Config = RunnableConfig
Serde = SerializerProtocol


class SaverFlows(Protocol):
    """One flow per saver method, taking the method's arguments in order, then
    ``serde`` where it reads or writes values. The shell passes every argument
    positionally: ``actor_id`` is None for a saver without actors, and ``serde`` is the
    saver's own (a clone from ``with_allowlist`` has its own)."""

    def get_tuple_flow(self, config: Config, serde: Serde, /) -> Flow[CheckpointTuple | None]: ...

    def list_flow(
        self, config: Config | None, filter: dict[str, Any] | None, before: Config | None,
        limit: int | None, serde: Serde, /,
    ) -> Flow[None]:  # fmt: skip
        """Emits the checkpoint tuples, newest first."""
        ...

    def put_flow(
        self, config: Config, checkpoint: Checkpoint, metadata: CheckpointMetadata,
        new_versions: ChannelVersions, serde: Serde, /,
    ) -> Flow[Config]:  # fmt: skip
        """Returns the config of the stored checkpoint."""
        ...

    def put_writes_flow(
        self, config: Config, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str,
        serde: Serde, /,
    ) -> Flow[None]: ...  # fmt: skip

    def delete_thread_flow(self, thread_id: str, actor_id: str | None, /) -> Flow[None]: ...

    def delete_for_runs_flow(self, run_ids: Sequence[str], /) -> Flow[None]: ...

    def copy_thread_flow(
        self, source_thread_id: str, target_thread_id: str, actor_id: str | None, /
    ) -> Flow[Any]: ...

    def prune_flow(
        self, thread_ids: Sequence[str], strategy: str, actor_id: str | None, serde: Serde, /
    ) -> Flow[None]: ...

    def delta_flow(
        self, config: Config, channels: Sequence[str], serde: Serde, /
    ) -> Flow[Mapping[str, DeltaChannelHistory]]: ...


def _core_flow(name: str) -> Any:
    def flow(self: CoreFlows, *args: Any) -> Flow[Any]:
        return getattr(self.core, name)(*args)

    flow.__name__ = flow.__qualname__ = name
    return flow


class CoreFlows:
    """:class:`SaverFlows` over a core that has these flows under the protocol's names
    and arguments: each passes its arguments on to the core's flow of the same name. A
    backend whose core names or shapes a flow otherwise overrides it, and always
    ``prune_flow`` (no core takes the protocol's arguments for it)."""

    def __init__(self, core: Any) -> None:
        self.core = core

    get_tuple_flow = _core_flow("get_tuple_flow")
    list_flow = _core_flow("list_flow")
    put_flow = _core_flow("put_flow")
    put_writes_flow = _core_flow("put_writes_flow")
    delete_thread_flow = _core_flow("delete_thread_flow")
    delete_for_runs_flow = _core_flow("delete_for_runs_flow")
    copy_thread_flow = _core_flow("copy_thread_flow")
    delta_flow = _core_flow("delta_flow")


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
