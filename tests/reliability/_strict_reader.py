"""Reads one checkpoint in a fresh process, so that LANGGRAPH_STRICT_MSGPACK (read by
LangGraph at import) is whatever the parent test put in the environment.

Run: ``python -m tests.reliability._strict_reader URL THREAD CHECKPOINT_ID``; prints a
JSON summary: the type and repr of every channel value and pending write, and whether
the canary module was ever imported.
"""

from __future__ import annotations

import json
import sys

import valkey

from streamstate.adapters.valkey_saver import ValkeySaver


def main() -> int:
    url, thread, cid = sys.argv[1:4]
    saver = ValkeySaver(valkey.Valkey.from_url(url))
    config = {"configurable": {"thread_id": thread, "checkpoint_ns": "", "checkpoint_id": cid}}
    tup = saver.get_tuple(config)
    assert tup is not None, "checkpoint not found"
    print(
        json.dumps(
            {
                "values": {
                    k: [type(v).__name__, repr(v)]
                    for k, v in tup.checkpoint["channel_values"].items()
                },
                "writes": [[ch, type(v).__name__, repr(v)] for _, ch, v in tup.pending_writes],
                "canary_imported": "tests.reliability._canary" in sys.modules,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
