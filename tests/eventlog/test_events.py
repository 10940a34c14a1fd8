"""Stored events stay readable: golden bytes of every event version decode unchanged.

When a field is added (last, with a default), the old golden files must still decode;
never regenerate them — add new ``*_v2.bin`` files next to them instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamstate.eventlog.codec import Codec
from streamstate.eventlog.events import (
    CheckpointPut,
    Event,
    ItemDeleted,
    WritesPut,
    event_kind,
)

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize(
    ("name", "kind", "check"),
    [
        (
            "checkpoint_put_v1",
            CheckpointPut,
            lambda e: (
                e.checkpoint_id == "1ef-abc"
                and e.parent_id == "1ef-abb"
                and [b.channel for b in e.blobs] == ["messages", "n"]
                and e.blobs[1].version == 3
                and e.versions[0] == ("messages", "00000000000000000000000000000002.0.5")
                and e.run_id == "run-1"
            ),
        ),
        (
            "writes_put_v1",
            WritesPut,
            lambda e: [w.idx for w in e.writes] == [0, -3] and e.task_path.endswith("agent"),
        ),
        ("item_deleted_v1", ItemDeleted, lambda e: e.namespace == ("users", "u:1")),
    ],
)
def test_golden_entries_decode(name: str, kind: type, check) -> None:
    event = Codec().decode((GOLDEN / f"{name}.bin").read_bytes(), Event)
    assert type(event) is kind
    assert check(event)


def test_tags_are_stable() -> None:
    tags = {cls: cls.__struct_config__.tag for cls in (CheckpointPut, WritesPut, ItemDeleted)}
    assert tags == {CheckpointPut: "cp", WritesPut: "wr", ItemDeleted: "id"}
    assert event_kind(Codec().decode((GOLDEN / "writes_put_v1.bin").read_bytes(), Event)) == "wr"
