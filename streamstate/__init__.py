"""streamstate: event-sourced persistence for LangGraph agents on Valkey streams.

Public classes are imported lazily, so ``import streamstate`` stays cheap and the AWS
adapters only need boto3 when used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ValkeySaver": "streamstate.adapters.valkey_saver",
    "AsyncValkeySaver": "streamstate.adapters.valkey_saver",
    "AgentCoreValkeySaver": "streamstate.adapters.valkey_saver",
    "AsyncAgentCoreValkeySaver": "streamstate.adapters.valkey_saver",
    "ValkeyStore": "streamstate.adapters.store",
    "AsyncValkeyStore": "streamstate.adapters.store",
    "ValkeyIndexConfig": "streamstate.adapters.store",
    "ValkeyCache": "streamstate.adapters.cache",
    "AgentCoreMemorySaver": "streamstate.adapters.agentcore",
    "AgentCoreMemoryStore": "streamstate.adapters.agentcore",
    "BedrockSessionSaver": "streamstate.adapters.bedrock",
    "AsyncBedrockSessionSaver": "streamstate.adapters.bedrock",
    "EmbeddedServer": "streamstate.server",
    "replay": "streamstate.audit",
    "fork": "streamstate.audit",
    "tail": "streamstate.audit",
    "history": "streamstate.audit",
    "show": "streamstate.audit",
    "rebuild": "streamstate.audit",
    "migrate": "streamstate.audit",
    "verify_chain": "streamstate.audit",
    "verify": "streamstate.audit",
    "stats": "streamstate.audit",
    "ValkeyAudit": "streamstate.audit",
    "threads": "streamstate.inspect",
    "diff": "streamstate.inspect",
    "checkpoint_at": "streamstate.inspect",
    "thread_spans": "streamstate.otel",
    "Codec": "streamstate.eventlog.codec",
    "import_checkpoints": "streamstate.importer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'streamstate' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
