"""LangGraph persistence on Amazon Bedrock AgentCore Memory.

``AgentCoreMemorySaver`` is a checkpointer: a thread is the AgentCore session
``thread_id`` of the actor ``actor_id`` (both required in ``config["configurable"]``),
and every checkpoint and write is one AgentCore event (see ``_agentcore_core`` for the
layout and the calls each method makes). ``AgentCoreMemoryStore`` is a LangGraph store
over AgentCore's long-term memory: ``put`` records conversation messages, ``search``
retrieves the memory records the service extracted from them.

Both classes offer the sync and the async API; every method runs one flow from the
core, with the sync driver or the async one (boto3 calls then run in worker threads,
so the event loop never blocks).

IAM actions (``bedrock-agentcore:`` prefix):

* AgentCoreMemorySaver: CreateEvent, ListEvents, GetEvent, DeleteEvent; ListActors
  and ListSessions for ``list(None)``, ``delete_for_runs`` and thread-wide operations
  without an ``actor_id``.
* AgentCoreMemoryStore: CreateEvent, ListEvents, DeleteEvent (messages);
  RetrieveMemoryRecords, ListMemoryRecords, GetMemoryRecord, DeleteMemoryRecord.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.store.base import BaseStore, Op, Result

from streamstate.adapters import _agentcore_core as core
from streamstate.adapters._agentcore_store_core import StoreCore
from streamstate.adapters._saver_shell import ActorSaverShell, CoreFlows
from streamstate.adapters._shell import Runners, documented
from streamstate.eventlog._drive import Flow
from streamstate.eventlog.agentcore import AgentCoreEventLog, Limits, LogCore, Runner, make_client
from streamstate.eventlog.codec import Codec


class AgentCoreMemorySaver(ActorSaverShell):
    """A LangGraph checkpointer that stores every checkpoint and write as an AgentCore event.

    ``config["configurable"]`` must hold ``thread_id`` (the AgentCore session id) and
    ``actor_id``; a missing one raises ``ValueError`` (``ConfigError``) naming it.

    Args:
        memory_id: The AgentCore memory id (or ARN).
        serde: Serializer for channel values and metadata (LangGraph's default).
        codec: Codec for stored events (compression, optional cipher).
        limits: CreateEvent size limits (the documented quotas by default).
        carry_max: Unchanged channel values up to this many serialized bytes are
            repeated in every checkpoint event instead of referenced (fewer reads).
        batching: How checkpoints and writes become CreateEvent calls (AgentCore
            allows 5-10 per second per actor and session, and bills each one):

            * ``"off"`` (default): one event per ``put`` and per ``put_writes``, each
              durable when the call returns.
            * ``"step"``: a step's writes wait for the step's checkpoint and travel
              with it, in one event (more only if the payload limits, 100 items or
              10 MB, demand). Writes of an interrupt or an error are sent at once.
              **A crash in the middle of a step loses the writes of that step's tasks
              that already finished** (LangGraph re-runs them on resume); a finished
              step is as durable as with ``"off"``.
            * ``"deferred"``: nothing is sent until :meth:`flush` (or ``aflush``), the
              end of a ``with saver:`` block, the end of a run given
              ``config={"callbacks": [saver.flush_handler()]}``, or the next read of
              this saver (``get_tuple``, ``list``, ...); then each thread sends one
              event per run (more only if the payload limits demand).
              **A crash or a process exit before the flush loses every buffered
              step**: the thread resumes from the last flushed checkpoint, as if the
              steps since had never run. Only for runs that can be repeated.

            Buffered checkpoints carry all their channel values (no references to
            events not yet created); the event is compressed as a whole, so repeated
            values cost little. Reading a checkpoint by id that sits inside a batch
            costs one more ListEvents (and a GetEvent per batch that may hold it).
        **boto3_kwargs: ``region_name``, ``endpoint_url``, ``config``,
            ``aws_access_key_id``, ``aws_secret_access_key``, ``aws_session_token``,
            ``credentials_profile_name``, a ready ``client`` or ``session``, and any
            other ``boto3`` client option.

    Raises:
        ConfigError: A malformed memory id, or conflicting client options.
    """

    def __init__(
        self,
        memory_id: str,
        *,
        serde: SerializerProtocol | None = None,
        codec: Codec | None = None,
        limits: Limits | None = None,
        carry_max: int = core.CARRY_MAX,
        batching: str = "off",
        **boto3_kwargs: Any,
    ) -> None:
        super().__init__(serde=serde)
        self.memory_id = memory_id
        self.client = make_client(**boto3_kwargs)
        self._runner = Runner(self.client)
        self._core = core.SaverCore(
            LogCore(memory_id, codec=codec, limits=limits), carry_max=carry_max, batching=batching
        )
        self._flows = _AgentCoreFlows(self._core)
        self._exec = Runners(self._runner.run, self._runner.arun)

    @property
    def batching(self) -> str:
        return self._core.batching

    @property
    def pending(self) -> int:
        """Checkpoints and writes buffered, not yet sent (``batching`` modes)."""
        return len(self._core.buffer)

    def flush(self) -> int:
        """Send everything buffered; returns the number of batches sent."""
        return self._exec.complete(self._core.flush_flow())

    async def aflush(self) -> int:
        return await self._exec.acomplete(self._core.flush_flow())

    def __enter__(self) -> AgentCoreMemorySaver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    async def __aenter__(self) -> AgentCoreMemorySaver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aflush()

    def flush_handler(self) -> Any:
        """A LangChain callback handler that flushes when a run ends (or fails).

        Pass it in the run's config: ``graph.invoke(x, {"configurable": ...,
        "callbacks": [saver.flush_handler()]})``. LangGraph reports the end of a run
        after its last save, so the flush sends the whole run.
        """
        return _FlushHandler(self)

    @functools.cached_property
    def log(self) -> AgentCoreEventLog:
        """The event log behind this saver, to read, tail or audit a thread's events
        (its sessions are ``(actor_id, thread_id)``)."""
        return AgentCoreEventLog(self.memory_id, client=self.client, codec=self._core.log.codec)

    # LangGraph's methods come from the shell; these take an ``actor_id`` or say more.

    delete_thread = documented(
        ActorSaverShell.delete_thread,
        """Delete a thread's checkpoints and writes: of ``actor_id``, or of every actor.""",
    )

    delete_for_runs = documented(
        ActorSaverShell.delete_for_runs,
        """Delete the checkpoints (and their writes) of these runs, in every session.""",
    )

    def copy_thread(  # type: ignore[override]
        self, source_thread_id: str, target_thread_id: str, actor_id: str | None = None
    ) -> None:
        """Copy every checkpoint and write, of ``actor_id`` or of every actor's session."""
        self._exec.complete(
            self._flows.copy_thread_flow(source_thread_id, target_thread_id, actor_id)
        )

    async def acopy_thread(  # type: ignore[override]
        self, source_thread_id: str, target_thread_id: str, actor_id: str | None = None
    ) -> None:
        flow = self._flows.copy_thread_flow(source_thread_id, target_thread_id, actor_id)
        await self._exec.acomplete(flow)

    def prune(  # type: ignore[override]
        self,
        thread_ids: Sequence[str],
        *,
        strategy: str = "keep_latest",
        actor_id: str | None = None,
    ) -> None:
        """Keep only the latest checkpoint per namespace (``keep_latest``) or delete all."""
        self._exec.complete(self._flows.prune_flow(thread_ids, strategy, actor_id, self.serde))

    async def aprune(  # type: ignore[override]
        self,
        thread_ids: Sequence[str],
        *,
        strategy: str = "keep_latest",
        actor_id: str | None = None,
    ) -> None:
        flow = self._flows.prune_flow(thread_ids, strategy, actor_id, self.serde)
        await self._exec.acomplete(flow)


class _AgentCoreFlows(CoreFlows):
    """The AgentCore core has the shell's flows, but for ``prune_flow``'s arguments."""

    def prune_flow(
        self, thread_ids: Sequence[str], strategy: str, actor_id: str | None, _serde: Any
    ) -> Flow[None]:
        return self.core.prune_flow(thread_ids, strategy, actor_id)


class _FlushHandler(BaseCallbackHandler):
    """Flushes a saver when a root run (no parent) ends or fails."""

    run_inline = True  # in the caller's thread, before invoke returns

    def __init__(self, saver: AgentCoreMemorySaver) -> None:
        self.saver = saver

    def on_chain_end(
        self, outputs: Any, *, run_id: Any, parent_run_id: Any = None, **kw: Any
    ) -> None:
        if parent_run_id is None:
            self.saver.flush()

    def on_chain_error(
        self, error: BaseException, *, run_id: Any, parent_run_id: Any = None, **kw: Any
    ) -> None:
        if parent_run_id is None:
            self.saver.flush()


class AgentCoreMemoryStore(BaseStore):
    """A LangGraph store over AgentCore Memory's long-term memory.

    * ``put((actor_id, session_id), key, {"message": message})`` records the message
      as a conversational event (role from the message type: human USER, ai ASSISTANT,
      tool TOOL, anything else OTHER), which the memory's strategies extract records
      from; ``get`` of that key gives the value back, ``delete`` removes the event.
    * ``search(namespace, query=..., filter=..., limit=..., offset=...)`` retrieves
      memory records under the namespace path (``("facts", "u1")`` -> ``/facts/u1``),
      ranked by the service, as ``SearchItem``s with their score; without a query the
      records are listed, unscored.
    * ``get``/``delete`` of a memory record id (``mem-...``), and ``list_namespaces``
      (the distinct namespaces of the records under a prefix).

    Args:
        memory_id: The AgentCore memory id (or ARN).
        serde: Serializer for the stored message values.
        namespace_root: ``"/"`` (default) or ``""`` when the memory's strategy
            namespaces have no leading slash.
        strategy_id: Restrict searches to one memory strategy.
        **boto3_kwargs: As for :class:`AgentCoreMemorySaver`.
    """

    supports_ttl: bool = False

    def __init__(
        self,
        memory_id: str,
        *,
        serde: SerializerProtocol | None = None,
        namespace_root: str = "/",
        strategy_id: str | None = None,
        **boto3_kwargs: Any,
    ) -> None:
        self.memory_id = memory_id
        self.client = make_client(**boto3_kwargs)
        self._runner = Runner(self.client)
        self._exec = Runners(self._runner.run, self._runner.arun)
        self._core = StoreCore(
            LogCore(memory_id),
            serde or JsonPlusSerializer(),
            namespace_root=namespace_root,
            strategy_id=strategy_id,
        )

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return self._exec.complete(self._core.batch_flow(ops))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await self._exec.acomplete(self._core.batch_flow(ops))
