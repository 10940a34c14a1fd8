"""``get_delta_channel_history`` against LangGraph's own definition: the base class's walk
up the parent chain with ``get_tuple``, on threads of any shape (forks, namespaces,
channels with and without stored values, several calls per task, special writes).

The Valkey script reads a chain's writes either one index range per checkpoint or in one
range over the namespace (when the index is short against the chain); both must give the
base walk's answer, and the tests below reach both.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import valkey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint

from streamstate import ValkeySaver

CHANNELS = ("a", "b", "c")
NAMESPACES = ("", "child:1")
LONG = "x" * 90  # above INLINE_MAX: the view points into the log


@dataclass
class Step:
    ns: str
    parent: int | None  # an earlier checkpoint of the namespace (counted back), None: a root
    changes: dict[str, str]  # channel -> "keep" | "value" | "novalue"
    calls: list[tuple[int, list[tuple[str, Any]]]] = field(default_factory=list)


write_values = st.one_of(st.integers(-5, 5), st.just(LONG), st.text(max_size=4))
one_call = st.tuples(
    st.integers(0, 2),  # task
    st.lists(
        st.tuples(st.sampled_from([*CHANNELS, "__error__", "__interrupt__"]), write_values),
        min_size=1,
        max_size=3,
    ),
)


@st.composite
def threads(draw: st.DrawFn) -> tuple[list[Step], int]:
    steps = []
    for _ in range(draw(st.integers(1, 14))):
        steps.append(
            Step(
                ns=draw(st.sampled_from(NAMESPACES)),
                # mostly the latest, sometimes a fork from further back, rarely a new root
                parent=draw(st.sampled_from([0, 0, 0, 0, 1, 2, 3, None])),
                changes={
                    ch: draw(st.sampled_from(["keep", "value", "novalue"])) for ch in CHANNELS
                },
                calls=draw(st.lists(one_call, max_size=3)),
            )
        )
    # writes of another namespace make the index long against any chain: the script then
    # reads one range per checkpoint instead of one over the namespace
    padding = draw(st.sampled_from([0, 120]))
    return steps, padding


def _config(thread: str, ns: str, cid: str | None = None) -> dict[str, Any]:
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
    if cid:
        conf["checkpoint_id"] = cid
    return {"configurable": conf}


def _build(saver: ValkeySaver, steps: list[Step], padding: int) -> list[dict[str, Any]]:
    """Writes the thread; returns each checkpoint's config."""
    thread = f"dh-{uuid.uuid4().hex[:8]}"
    made: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []  # ns, id, versions, values
    configs = []
    for step in steps:
        same_ns = [m for m in made if m[0] == step.ns]
        parent = None
        if step.parent is not None and same_ns:
            parent = same_ns[-1 - step.parent % len(same_ns)]
        versions = dict(parent[2]) if parent else {}
        values = dict(parent[3]) if parent else {}
        new_versions = {}
        for ch, change in step.changes.items():
            if change == "keep" and ch in versions:
                continue
            versions[ch] = new_versions[ch] = saver.get_next_version(versions.get(ch), None)
            if change == "value":
                values[ch] = f"{ch}@{len(made)}"
            else:  # a version without a stored value (what a DeltaChannel leaves)
                values.pop(ch, None)
        cp = empty_checkpoint()
        cp["channel_versions"] = dict(versions)
        cp["channel_values"] = dict(values)
        config = saver.put(
            _config(thread, step.ns, parent[1] if parent else None),
            cp,
            {"source": "loop", "step": len(made), "parents": {}},
            new_versions,
        )
        for task, writes in step.calls:
            saver.put_writes(config, writes, f"task-{task}", f"path-{task}")
        made.append((step.ns, cp["id"], versions, values))
        configs.append(config)
    if padding:
        cp = empty_checkpoint()
        pad = saver.put(
            _config(thread, "pad"), cp, {"source": "loop", "step": 0, "parents": {}}, {}
        )
        for k in range(padding):
            saver.put_writes(pad, [("a", k)], f"pad-{k}")
    return configs


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=threads())
def test_delta_history_equals_the_base_walk_on_any_thread(valkey_url: str, shape: Any) -> None:
    steps, padding = shape
    saver = ValkeySaver(valkey.Valkey.from_url(valkey_url))
    channels = [*CHANNELS, "__error__", "never-written"]
    for config in _build(saver, steps, padding):
        fast = saver.get_delta_channel_history(config=config, channels=channels)
        walk = BaseCheckpointSaver.get_delta_channel_history(
            saver, config=config, channels=channels
        )
        assert fast == walk


def test_the_chain_writes_are_read_in_one_range_or_per_checkpoint(
    valkey_url: str, count_commands: Any
) -> None:
    """A linear chain's writes cost one index range; with the index much longer than the
    chain (another namespace's writes), one range per checkpoint; the answer is the same."""
    client = valkey.Valkey.from_url(valkey_url)
    saver = ValkeySaver(client)
    calls = lambda i: [(0, [("a", LONG)]), (1, [("a", i)])]  # noqa: E731
    steps = [Step("", 0, {"a": "novalue", "b": "keep", "c": "keep"}, calls(i)) for i in range(12)]
    for padding, ranges in ((0, 1), (150, 11)):
        last = _build(saver, steps, padding)[-1]
        with count_commands(client) as counted:
            fast = saver.get_delta_channel_history(config=last, channels=["a"])
        assert counted.scripts == 1
        assert counted.delta.get("zrangebylex", 0) == ranges
        assert fast == BaseCheckpointSaver.get_delta_channel_history(
            saver, config=last, channels=["a"]
        )
        assert len(fast["a"]["writes"]) == 2 * 11
