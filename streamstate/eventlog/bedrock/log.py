"""The bedrock log's sync and asyncio shells over its core."""

from __future__ import annotations

from typing import Any

from streamstate.eventlog import _aws
from streamstate.eventlog._flow_shell import AsyncFlowEventLog, FlowEventLog
from streamstate.eventlog.bedrock._core import BedrockLogCore
from streamstate.eventlog.bedrock._exec import SyncRunner
from streamstate.eventlog.codec import Codec

# --------------------------------------------------------------------------- shells


class _BedrockShell:
    """The constructor both Bedrock shells share; they differ only in ``run``
    (:class:`~streamstate.eventlog._aws.SyncRunning` or ``AsyncRunning``)."""

    def __init__(
        self,
        client: Any,
        *,
        codec: Codec | None = None,
        core: BedrockLogCore | None = None,
        **kwargs: Any,
    ) -> None:
        self.client = client
        self.core = core or BedrockLogCore(codec, **kwargs)
        self.runner: _aws.Runner = SyncRunner(client)


class BedrockEventLog(_BedrockShell, _aws.SyncRunning, FlowEventLog[BedrockLogCore]):
    """The event-log contract over Bedrock sessions, synchronously.

    Methods keep the semantics of :mod:`streamstate.eventlog.contract`, with the
    limits the module docstring lists: an append of several events is written step by
    step (a retry with the same key completes it), ``trim`` hides entries instead of
    deleting them, ``tail`` polls every ``block_ms``, and consumer groups keep
    deliveries in memory (acknowledgements are stored).

    Args:
        client: A boto3 ``bedrock-agent-runtime`` client. Use botocore's ``standard``
            retry mode (the default from botocore 1.44): throttling and 5xx are retried
            with backoff, and retries resend the same step id, so they never duplicate.
        codec: Codec of stored entries.
        core: Share caches with another log or saver on the same client.
        **kwargs: Passed to :class:`BedrockLogCore` when ``core`` is not given.
    """


class AsyncBedrockEventLog(_BedrockShell, _aws.AsyncRunning, AsyncFlowEventLog[BedrockLogCore]):
    """The asyncio twin of :class:`BedrockEventLog` (same arguments and methods)."""
