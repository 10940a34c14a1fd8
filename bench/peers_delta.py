"""``bench peers``, section 5: a chat whose messages channel is a LangGraph ``DeltaChannel``.

A ``DeltaChannel`` (``langgraph.channels.delta``, beta) stores a full snapshot only every
``snapshot_frequency`` updates (100); between snapshots a checkpoint holds no value for
it, and reading the thread rebuilds the channel from the writes of its ancestor
checkpoints, through the saver's ``get_delta_channel_history``. Savers that override it
(streamstate, PostgresSaver, InMemorySaver) fetch that history their own way; the
others inherit ``BaseCheckpointSaver``'s, one ``get_tuple`` per ancestor.

Per peer and round: a fresh thread of T turns (one ``invoke`` per turn: a HumanMessage
in, an AIMessage out), timed; then ``graph.get_state`` on the finished thread, timed, and
checked to hold all 2T messages. Each round runs every peer once, the order flipping
every round. T = 50 and 200 (``--quick``: 10 and 30).
"""

from __future__ import annotations

import gc
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from bench.common import X, fmt_num, fmt_ratio, fmt_stat, md_table, paired_ratios, summary
from bench.peers_graphs import chat_inputs, delta_chat_graph
from bench.peers_setup import Peer

SUBJECT = "streamstate"
FLOOR = "memory"  # InMemorySaver: LangGraph's serde, no round trip
VALKEY_PEERS = ("aws", "hotkv", "plainredis", "redis")
GET_STATE_CALLS = 5
LATE_SHARE = 0.1  # "late turns": the last 10% of the thread


def overrides_history(saver: Any) -> bool:
    """Whether the saver brings its own get_delta_channel_history."""
    return (
        type(saver).get_delta_channel_history is not BaseCheckpointSaver.get_delta_channel_history
    )


def _get_state_us(app: Any, cfg: dict[str, Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    for _ in range(GET_STATE_CALLS):
        state = app.get_state(cfg)
    return (time.perf_counter() - t0) * 1e6 / GET_STATE_CALLS, state


def _thread(app: Any, inputs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One fresh thread: per-turn times, get_state before the last turn (the channel
    rebuilt from the writes since the last snapshot) and after it, and the message count."""
    cfg = {"configurable": {"thread_id": f"delta-{uuid.uuid4().hex[:12]}"}}
    turn_us = []
    deep_us = float("nan")
    for i, x in enumerate(inputs):
        if i == len(inputs) - 1:  # not timed as part of a turn
            deep_us, state = _get_state_us(app, cfg)
            assert len(state.values.get("messages", [])) == 2 * i, "history read wrong"
        t0 = time.perf_counter()
        app.invoke(x, cfg)
        turn_us.append((time.perf_counter() - t0) * 1e6)
    get_state_us, state = _get_state_us(app, cfg)
    late = turn_us[-max(1, int(len(turn_us) * LATE_SHARE)) :]
    return {
        "us_per_turn": sum(turn_us) / len(turn_us),
        "late_us_per_turn": sum(late) / len(late),
        "get_state_deep_us": deep_us,
        "get_state_us": get_state_us,
        "messages": len(state.values.get("messages", [])),
    }


def history_depth(turns: int) -> int:
    """Ancestor checkpoints without a ``messages`` value that reading the thread goes back
    through after ``turns`` turns (up to the last snapshot), counted on an InMemorySaver."""
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.memory import InMemorySaver

    saver = InMemorySaver()
    app = delta_chat_graph().compile(checkpointer=saver)
    cfg: RunnableConfig = {"configurable": {"thread_id": "depth"}}
    for x in chat_inputs(turns):
        app.invoke(x, cfg)
    depth, tup = 0, saver.get_tuple(cfg)
    while tup is not None and "messages" not in tup.checkpoint["channel_values"]:
        depth += 1
        tup = saver.get_tuple(tup.parent_config) if tup.parent_config else None
    return depth


def bench_delta(
    peers: list[Peer], turns: Sequence[int], rounds: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Per turn count: each peer's per-round results, and the peers that kept wrong state."""
    graph = delta_chat_graph()
    apps = {p.name: graph.compile(checkpointer=p.saver) for p in peers}
    names = [p.name for p in peers]
    for name in names:  # warm-up: connections, scripts, tables
        _thread(apps[name], chat_inputs(2))
    out: dict[str, Any] = {
        "turns": list(turns),
        "rounds": rounds,
        "overrides_history": {p.name: overrides_history(p.saver) for p in peers},
        "by_turns": {},
    }
    for t in turns:
        inputs = chat_inputs(t)
        res: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        for rnd in range(rounds):
            for name in names if rnd % 2 == 0 else names[::-1]:
                gc.collect()
                res[name].append(_thread(apps[name], inputs))
        wrong = {
            n: f"{r[-1]['messages']} messages after {t} turns, expected {2 * t}"
            for n, r in res.items()
            if r[-1]["messages"] != 2 * t
        }
        out["by_turns"][str(t)] = {
            "results": res,
            "wrong_state": wrong,
            "history_depth_before_last_turn": history_depth(t - 1),
        }
        med = {n: summary([x["us_per_turn"] for x in r])["median"] for n, r in res.items()}
        log(
            f"  delta chat, {t} turns: µs/turn "
            + ", ".join(f"{n} {fmt_num(v)}" for n, v in med.items())
        )
        for n, why in wrong.items():
            log(f"  delta chat, {t} turns: {n} kept the wrong state: {why}")
    return out


# -- report --------------------------------------------------------------------------------

MEASURES = (
    ("us_per_turn", "µs per turn (whole thread)"),
    ("late_us_per_turn", "µs per turn (last 10% of turns)"),
    ("get_state_deep_us", "graph.get_state µs before the last turn"),
    ("get_state_us", "graph.get_state µs (finished thread)"),
)


def _values(res: dict[str, list[dict[str, Any]]], name: str, measure: str) -> list[float]:
    return [x[measure] for x in res[name]]


def report_section(delta: dict[str, Any]) -> list[str]:
    if delta.get("skipped"):
        return ["## 5. DeltaChannel chat", "", f"Not run: {delta['skipped']}.", ""]
    lines = [
        "## 5. DeltaChannel chat: time per turn and get_state",
        "",
        "A one-node chat whose `messages` channel is `DeltaChannel(_messages_delta_reducer)`"
        " (LangGraph beta): a snapshot every 100 updates, otherwise the channel is rebuilt"
        " from ancestor writes through the saver's `get_delta_channel_history`. Each round"
        f" ({delta['rounds']}) runs every peer on a fresh thread of T turns (order flipping"
        " every round); µs per"
        " turn = wall time of the invoke; get_state = mean of"
        f" {GET_STATE_CALLS} calls, before the last turn and on the finished thread. With"
        " T a multiple of 50, the last turn stores a snapshot: the finished thread needs no"
        " history, while before the last turn the channel is rebuilt from the writes of"
        " the longest history there is (the ancestors since the previous snapshot). Median"
        " over rounds (min\u2013max).",
        "",
    ]
    own = delta["overrides_history"]
    for t, block in delta["by_turns"].items():
        res = block["results"]
        names = list(res)
        rows = [
            [
                n,
                "own" if own[n] else "default (get_tuple per ancestor)",
                *[fmt_stat(summary(_values(res, n, m))) for m, _ in MEASURES],
                "**wrong**: " + block["wrong_state"][n] if n in block["wrong_state"] else "ok",
            ]
            for n in names
        ]
        lines += [
            f"### {t} turns ({2 * int(t)} messages at the end; before the last turn, "
            f"get_state reads back through {block.get('history_depth_before_last_turn', '?')}"
            " ancestor checkpoints)",
            "",
            md_table(
                [
                    "peer",
                    "get_delta_channel_history",
                    *[label for _, label in MEASURES],
                    "state after the thread",
                ],
                rows,
            ),
            "",
        ]
        if SUBJECT in res:
            lines += [_ratio_table(res, names), ""]
    return lines


def _ratio_table(res: dict[str, list[dict[str, Any]]], names: list[str]) -> str:
    others = [n for n in names if n != SUBJECT]
    valkey_peers = [n for n in others if n in VALKEY_PEERS]
    rows = []
    for m, label in MEASURES:
        ss = _values(res, SUBJECT, m)
        row = [label, *[fmt_ratio(paired_ratios(ss, _values(res, n, m))) for n in others]]
        if valkey_peers:
            best = min(valkey_peers, key=lambda n: summary(_values(res, n, m))["median"])
            row.append(f"{fmt_ratio(paired_ratios(ss, _values(res, best, m)))} ({best})")
        else:
            row.append("\u2013")
        rows.append(row)
    return (
        f"streamstate time \u00f7 peer time (< 1{X} = streamstate faster; \u00f7 {FLOOR} is how"
        " far streamstate is from the floor, InMemorySaver):\n\n"
        + md_table(["measure", *[f"\u00f7 {n}" for n in others], "\u00f7 best Valkey peer"], rows)
    )
