"""The agentcore log's sync and asyncio shells over its core."""

from __future__ import annotations

from typing import Any

from streamstate.eventlog import _aws
from streamstate.eventlog._flow_shell import AsyncFlowEventLog, FlowEventLog
from streamstate.eventlog.agentcore._core import Limits, LogCore
from streamstate.eventlog.agentcore._exec import Runner, make_client
from streamstate.eventlog.codec import Codec

# -- the two shells ------------------------------------------------------------------------


class _AgentCoreShell:
    """The constructor both AgentCore shells share; they differ only in ``run``
    (:class:`~streamstate.eventlog._aws.SyncRunning` or ``AsyncRunning``)."""

    def __init__(
        self,
        memory_id: str,
        *,
        actor_id: str = "streamstate",
        codec: Codec | None = None,
        limits: Limits | None = None,
        **boto3_kwargs: Any,
    ) -> None:
        self.core = LogCore(memory_id, codec=codec, limits=limits, actor_id=actor_id)
        self.client = make_client(**boto3_kwargs)
        self.runner: _aws.Runner = Runner(self.client)


class AgentCoreEventLog(_AgentCoreShell, _aws.SyncRunning, FlowEventLog[LogCore]):
    """The event-log contract over AgentCore Memory, synchronous.

    Args:
        memory_id: The AgentCore memory id (or ARN).
        actor_id: Actor of sessions named by a plain string.
        codec: Codec for envelopes (default: msgpack + zstd).
        limits: CreateEvent size limits.
        **boto3_kwargs: ``client``, ``session``, ``region_name``, ``endpoint_url``,
            ``config``, credentials...: see :func:`make_client`.
    """


class AsyncAgentCoreEventLog(_AgentCoreShell, _aws.AsyncRunning, AsyncFlowEventLog[LogCore]):
    """The asyncio twin of :class:`AgentCoreEventLog` (boto3 calls run in worker threads)."""
