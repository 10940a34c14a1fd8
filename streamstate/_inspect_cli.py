"""Rendering of ``streamstate threads`` and ``streamstate diff`` for people (rich).

Kept apart from :mod:`streamstate._cli` so the command functions there stay short; the
helpers shared with the other commands are in :mod:`streamstate._render`. Every
line fits the console's width (80 columns included): long values are cut with ``…``,
ids are shown by their tails, as ``history`` shows them.
"""

from __future__ import annotations

import datetime
from typing import Any, Literal

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from streamstate._render import human_bytes, ns_label, preview, short
from streamstate.inspect import ChannelChange, CheckpointDiff, TaskWrites, ThreadPage


def _local(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


FIGURE_WIDTHS = (19, 5, 6, 10)
"""last activity, ckpts, events, size: what the figures need."""


def threads_table(page: ThreadPage, width: int = 80) -> Table:
    """One page of threads: id, last activity (local time), checkpoints, events, size.

    ``width``: the console's; a long thread id is cut to fit (``--json`` has it whole).
    """
    shown = len(page.threads)
    span = f"{page.offset + 1}-{page.offset + shown}" if shown else "none"
    title = f"threads {span} of {page.total:,}, by {page.sort}"
    table = Table(title=title, title_justify="left")
    # borders and padding: 3 characters per column and one more
    room = width - sum(FIGURE_WIDTHS) - 3 * (len(FIGURE_WIDTHS) + 1) - 1
    table.add_column("thread", no_wrap=True, overflow="ellipsis", max_width=max(12, room))
    for name, least in zip(("last activity", "ckpts", "events", "size"), FIGURE_WIDTHS):
        justify: Literal["left", "right"] = "left" if name == "last activity" else "right"
        table.add_column(name, justify=justify, no_wrap=True, min_width=least)
    for t in page.threads:
        name = t.thread_id if t.actor_id is None else f"{t.actor_id}/{t.thread_id}"
        table.add_row(
            escape(name),
            _local(t.last_activity),
            "?" if t.checkpoints is None else str(t.checkpoints),
            "?" if t.events is None else str(t.events),
            "?" if t.bytes is None else human_bytes(t.bytes),
        )
    return table


def print_threads(console: Console, page: ThreadPage) -> None:
    console.print(threads_table(page, console.width))
    if page.next is not None:
        console.print(f"next page: --after {page.next}", soft_wrap=True)


def _line(console: Console, text: str, indent: int = 0) -> None:
    """One line cut to the console's width (never wrapped: one item per line)."""
    console.print(
        " " * indent + escape(" ".join(text.split())),
        no_wrap=True,
        overflow="ellipsis",
        crop=True,
    )


def _point(label: str, entry: Any) -> str:
    if entry is None:
        return f"{label} (none)"
    step = "" if entry.step is None else f" step {entry.step}"
    return f"{short(entry.checkpoint_id)}{step} ({entry.source or '?'})"


def _channel_line(c: ChannelChange, width: int) -> str:
    if c.messages is not None:
        counts: dict[str, int] = {}
        for m in c.messages:
            counts[m.change] = counts.get(m.change, 0) + 1
        summary = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "no message differs"
        mark = {"added": "+", "removed": "-"}.get(c.change, "~")
        return f"{mark} {c.channel}: {summary}"
    if c.change == "added":
        return f"+ {c.channel} = {preview(c.after, width)}"
    if c.change == "removed":
        return f"- {c.channel} (was {preview(c.before, width)})"
    return f"~ {c.channel}: {preview(c.before, width // 2)} → {preview(c.after, width)}"


def _message_line(m: Any, width: int) -> str:
    mark = {"appended": "+", "inserted": "+", "removed": "-"}.get(m.change, "~")
    value = m.before if m.change == "removed" else m.after
    kind = {"appended": "", "removed": ""}.get(m.change, f"{m.change} ")
    fields = f"({', '.join(m.fields)}) " if m.fields else ""
    return f"{mark} [{m.index}] {kind}{fields}{preview(value, width)}"


def _task_line(t: TaskWrites) -> str:
    channels = ", ".join(dict.fromkeys(c for c, _v in t.writes))
    return f"{t.node} (task {short(t.task_id)}, from {short(t.checkpoint_id)}): {channels}"


def print_diff(console: Console, d: CheckpointDiff) -> None:
    """A diff as short sections: channels, messages, metadata, tasks, interrupts."""
    width = max(40, console.width)
    thread = "/".join(d.thread.session[1:])  # actor/thread for an AgentCore thread
    _line(console, f"thread {thread}, namespace {ns_label(d.ns)}")
    steps = "" if d.path is None else f", {len(d.path) - 1} step(s)"
    _line(console, f"{_point('from', d.before)} → {_point('to', d.after)}{steps}")
    if d.path is None:
        _line(console, "(the first is not an ancestor of the second: no task leads there)")
    console.print("[bold]channels[/]" if d.channels else "channels: none changed")
    for c in d.channels:
        _line(console, _channel_line(c, width), 2)
        for m in c.messages or []:
            _line(console, _message_line(m, width), 6)
    if d.metadata:
        console.print("[bold]metadata[/]")
        for c in d.metadata:
            _line(console, _channel_line(c, width), 2)
    if d.tasks:
        console.print("[bold]tasks whose writes made it[/]")
        for t in d.tasks:
            _line(console, _task_line(t), 2)
    for t, value, resumed in d.interrupts:
        state = "resumed" if resumed else "waiting"
        _line(console, f"interrupt in {t.node} ({state}): {preview(value, width)}")
    for t, value in d.resumes:
        _line(console, f"resume for {t.node}: {preview(value, width)}")
    for t in d.tasks + d.pending:
        for value in t.errors:
            _line(console, f"error in {t.node}: {preview(value, width)}")
    if d.pending:
        console.print(f"[bold]pending writes at {short(d.after.checkpoint_id)}[/]")
        for t in d.pending:
            _line(console, _task_line(t), 2)
