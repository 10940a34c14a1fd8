"""Text output of the command line and the demo, for people (rich).

Shared by :mod:`streamstate._cli`, :mod:`streamstate._inspect_cli` and
:mod:`streamstate.demo.run`, and importing none of them. Every line fits the console's
width, 80 columns included: ids are shown by their tails (``show``, ``replay``, ``fork``
and ``diff`` accept a tail), long values are cut with ``…``, prose wraps. ``--json`` and
``--format jsonl`` never pass through here.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Mapping, Sequence
from typing import IO, Any, cast

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

PIPE_WIDTH = 80
"""Width of text written to a pipe or a file when ``COLUMNS`` does not say."""


def console_width(environ: Mapping[str, str] | None = None) -> int:
    """The width for output that is not a terminal: ``$COLUMNS``, else 80."""
    columns = (os.environ if environ is None else environ).get("COLUMNS", "").strip()
    return int(columns) if columns.isdigit() and int(columns) > 0 else PIPE_WIDTH


class TrimmedLines:
    """A text stream that drops the spaces rich leaves at the end of a line (a table's
    padding, the space where prose wrapped), so piped output diffs and greps cleanly."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._partial = ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        if lines:
            self.stream.write("".join(line.rstrip(" ") + "\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        # a line not yet ended goes out, but for its trailing spaces: they wait to see
        # whether the line ends there
        text = self._partial.rstrip(" ")
        if text:
            self.stream.write(text)
            self._partial = self._partial[len(text) :]
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.stream.fileno()


def make_console(*, stderr: bool = False) -> Console:
    """A console for text output: a terminal's own width (``COLUMNS`` wins, as rich has
    it); written to a pipe or a file, ``COLUMNS`` or else 80 columns, never the width of
    whatever terminal the pipe ends in, and no trailing spaces."""
    console = Console(highlight=False, stderr=stderr)
    if console.is_terminal:
        return console
    stream = TrimmedLines(sys.stderr if stderr else sys.stdout)
    # rich calls only write, flush, isatty and fileno on its file
    return Console(highlight=False, file=cast(IO[str], stream), width=console_width())


def progress() -> Progress:
    """A progress bar on stderr (stdout stays clean for --json); silent when not a terminal."""
    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def line(text: str, style: str = "") -> Text:
    """One line cut to the console's width with ``…`` (never wrapped)."""
    return Text(text, style=style, no_wrap=True, overflow="ellipsis", end="\n")


def print_line(console: Console, text: str, style: str = "") -> None:
    """Print ``text`` as one line (line breaks become spaces) cut to the console's width."""
    console.print(line(" ".join(text.splitlines()), style), no_wrap=True, crop=True)


COMPACT: dict[str, Any] = {
    "box": box.SIMPLE_HEAD,
    "show_edge": False,
    "pad_edge": False,
    "collapse_padding": True,
}
"""Table settings for 80 columns: a rule under the header, two spaces between columns."""


# -- values --------------------------------------------------------------------------------


def marked_lines(mark: str, text: str, width: int) -> list[str]:
    """``text`` wrapped to ``width`` behind a one-character ``mark`` (rich markup), its
    continuation lines indented under the text; the text itself is escaped."""
    lines = textwrap.wrap(text, width=max(width - 2, 20), break_on_hyphens=False)
    return [f"{mark} {escape(lines[0])}", *(f"  {escape(rest)}" for rest in lines[1:])]


def short(value: str | None, keep: int = 8) -> str:
    """The tail of an id: enough to tell checkpoints apart in a table."""
    if not value:
        return "-"
    return value if len(value) <= keep + 1 else "…" + value[-keep:]


def ns_label(ns: str, keep: int = 8) -> str:
    """A checkpoint namespace for people: ``(root)``, or ``node:…<task id tail>``."""
    if not ns:
        return "(root)"
    node, _, task = ns.partition(":")
    return f"{node}:{short(task, keep)}" if task else node


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 session``, ``2 sessions``."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def preview(value: Any, width: int = 100) -> str:
    """One line describing a decoded value (messages by role and content)."""
    from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

    if isinstance(value, AIMessage) and value.tool_calls:
        calls = ", ".join(
            f"{c['name']}({', '.join(f'{k}={v!r}' for k, v in c['args'].items())})"
            for c in value.tool_calls
        )
        text = f"ai → {calls}"
    elif isinstance(value, ToolMessage):
        text = f"tool {value.name}: {value.content}"
    elif isinstance(value, BaseMessage):
        text = f"{value.type}: {value.content}"
    elif isinstance(value, list) and value and all(isinstance(v, BaseMessage) for v in value):
        shown = value if len(value) <= 3 else value[-1:]
        more = "" if len(value) <= 3 else f"[{len(value)} messages, the last] "
        text = more + " | ".join(preview(v, width) for v in shown)
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# -- history -------------------------------------------------------------------------------


def _writes_cell(writes: Mapping[str, Sequence[str]]) -> str:
    return "\n".join(f"{node} → {', '.join(chs)}" for node, chs in writes.items())


NS_KEEP = 4
"""Characters of a subgraph's task id that tables and tail lines show: enough to tell one
run of a subgraph from another within a thread."""


def history_table(rows: Sequence[Any], title: str) -> Table:
    """The history of a thread: one row per checkpoint, newest first.

    Checkpoints are shown by the tails of their ids, parents by their row number (or
    tail), a subgraph's namespace by its node and task id tail (blank: the root graph);
    the writes column wraps, one node a line, so the table fits 80 columns.
    """
    number = {r.checkpoint_id: len(rows) - i for i, r in enumerate(rows)}
    table = Table(
        title=title,
        title_justify="left",
        **COMPACT,
        caption="ids are shown by their tails: show, replay, fork and diff accept one",
        caption_justify="left",
    )
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("checkpoint", no_wrap=True)
    table.add_column("step", no_wrap=True)
    table.add_column("namespace", no_wrap=True, overflow="ellipsis")
    table.add_column("parent", no_wrap=True)
    table.add_column("writes that made it", ratio=1, min_width=16, overflow="fold")
    for r in rows:
        parent = f"#{number[r.parent_id]}" if r.parent_id in number else short(r.parent_id)
        step = "" if r.step is None else str(r.step)
        table.add_row(
            str(number[r.checkpoint_id]),
            short(r.checkpoint_id),
            escape(f"{step} {r.source or ''}".strip()),
            escape(ns_label(r.ns, NS_KEEP) if r.ns else ""),
            parent,
            escape(_writes_cell(r.writes)),
        )
    return table


# -- show, replay --------------------------------------------------------------------------


def state_tree(tup: Any, title: str) -> Tree:
    """A checkpoint tuple as a tree: ids, metadata, channel values, pending writes.

    The ids get a line each (whole: they fit 80 columns); every other line is cut to the
    console's width.
    """
    conf = tup.config["configurable"]
    parent = (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    head = Text.assemble((title, "bold"), no_wrap=True, overflow="ellipsis")
    ids = line(f"checkpoint {conf['checkpoint_id']}  ns {ns_label(conf.get('checkpoint_ns', ''))}")
    tree = Tree(Group(head, ids, line(f"parent     {parent or '-'}")))
    meta = tree.add("metadata")
    for key, value in sorted((tup.metadata or {}).items()):
        meta.add(line(f"{key} = {preview(value)}"))
    values = tree.add("channel values")
    for channel, value in sorted(tup.checkpoint.get("channel_values", {}).items()):
        if isinstance(value, list) and len(value) > 1:
            node = values.add(line(f"{channel} ({len(value)} items)"))
            for item in value:
                node.add(line(preview(item)))
        else:
            values.add(line(f"{channel} = {preview(value)}"))
    writes = tree.add(f"pending writes ({len(tup.pending_writes or [])})")
    for task_id, channel, value in tup.pending_writes or []:
        writes.add(line(f"task {short(task_id)}  {channel} = {preview(value)}"))
    return tree


# -- tail ----------------------------------------------------------------------------------


def entry_lines(d: dict[str, Any]) -> list[str]:
    """The lines of one tail event (described with decoded values: ``render=lambda v: v``).

    The first line names the entry, the event and its checkpoint; the lines after it
    (indented) hold what it carries: a checkpoint's channels, each write on a line.
    """
    kind = d["type"]
    if kind == "checkpoint":
        step = "" if d["step"] is None else f"  step {d['step']} {d['source'] or ''}"
        first = f"{d['id']}  checkpoint {short(d['checkpoint_id'])}  {ns_label(d['ns'], NS_KEEP)}"
        return [
            (first + step).rstrip(),
            f"    parent {short(d['parent_id'])}; channels: {', '.join(d['channels']) or '-'}",
        ]
    if kind == "writes":
        node = f"  by {d['node']}"
        first = f"{d['id']}  writes {short(d['checkpoint_id'])}  {ns_label(d['ns'], NS_KEEP)}"
        return [first + node] + [f"    {w['channel']} = {preview(w['value'])}" for w in d["writes"]]
    where = f"{'/'.join(d['namespace'])} {d['key']}"
    if kind == "item_put":
        return [f"{d['id']}  item put   {where} ({d['bytes']} B)"]
    return [f"{d['id']}  item del   {where}"]


# -- stats ---------------------------------------------------------------------------------

KEY_LABELS = {
    "log": "log",
    "idem": "idempotency keys",
    "v": "views",
    "z": "index",
    "items": "items",
    "data": "item data",
    "created": "created",
    "exp": "expiries",
    "vectors": "vectors",
}
"""What ``stats`` calls each key of a session (its name in the key layout otherwise)."""

KEYS_NOTE = (
    "log: the session's event stream; views: the checkpoints, channel values and writes "
    "that get_tuple reads; index: their sorted index (views and index rebuild from the log)"
)


def stats_table(report: Any, label: Any, width: int = PIPE_WIDTH) -> Table:
    """Sessions by size: events, bytes, and the largest of their keys (one a line on a
    console narrower than 100 columns)."""
    sep = ", " if width >= 100 else "\n"
    title = f"{plural(len(report.sessions), 'session')} by size"
    table = Table(title=title, title_justify="left", **COMPACT)
    table.add_column("session", overflow="fold")
    table.add_column("events", justify="right", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("largest keys", overflow="fold", no_wrap=True)
    for r in sorted(report.sessions, key=lambda r: -r.bytes):
        top = sorted(r.keys.items(), key=lambda kv: -kv[1])[:3]
        table.add_row(
            escape(label(r.session)),
            f"{r.events:,}",
            human_bytes(r.bytes),
            sep.join(f"{KEY_LABELS.get(k, k)} {human_bytes(v)}" for k, v in top),
        )
    table.add_section()
    table.add_row("total", f"{report.events:,}", human_bytes(report.bytes), "")
    return table


def memory_line(memory: Mapping[str, Any]) -> str:
    """The server's ``INFO memory`` in words (the fields it has)."""
    parts = []
    if "used_memory_human" in memory:
        peak = memory.get("used_memory_peak_human")
        parts.append(f"{memory['used_memory_human']} used" + (f" (peak {peak})" if peak else ""))
    if "used_memory_dataset" in memory:
        parts.append(f"{human_bytes(int(memory['used_memory_dataset']))} of data")
    if "maxmemory_human" in memory:
        limit = memory["maxmemory_human"]
        limit = "no limit" if str(limit) in ("0B", "0") else f"limit {limit}"
        policy = memory.get("maxmemory_policy")
        parts.append(limit + (f" (eviction policy {policy})" if policy else ""))
    if "mem_fragmentation_ratio" in memory:
        parts.append(f"fragmentation ratio {memory['mem_fragmentation_ratio']}")
    return "server memory: " + (", ".join(parts) or "(not reported)")
