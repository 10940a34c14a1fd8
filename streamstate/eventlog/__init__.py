"""The event log: events, codec, key layout, the contract and its backends.

Knows nothing of LangGraph beyond opaque ``(type, bytes)`` values.
"""

from streamstate.eventlog.codec import Codec, Zstd
from streamstate.eventlog.contract import AppendResult, AsyncEventLog, EventLog
from streamstate.eventlog.events import (
    Blob,
    CheckpointPut,
    Event,
    FieldVector,
    ItemDeleted,
    ItemPut,
    LogEntry,
    Write,
    WritesPut,
)
from streamstate.eventlog.keys import Keyspace, SessionKeys
from streamstate.eventlog.ops import Op, Projection

__all__ = [
    "AppendResult",
    "AsyncEventLog",
    "Blob",
    "CheckpointPut",
    "Codec",
    "Event",
    "EventLog",
    "FieldVector",
    "ItemDeleted",
    "ItemPut",
    "Keyspace",
    "LogEntry",
    "Op",
    "Projection",
    "SessionKeys",
    "Write",
    "WritesPut",
    "Zstd",
]
