"""Valkey streams backend of the event log."""

from streamstate.eventlog.valkey._exec import RetryPolicy
from streamstate.eventlog.valkey.log import AsyncValkeyEventLog, ValkeyEventLog

__all__ = ["AsyncValkeyEventLog", "RetryPolicy", "ValkeyEventLog"]
