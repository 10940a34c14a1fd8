"""The ``streamstate`` command line: typer commands over :mod:`streamstate.audit`.

Exit codes: 0 success; 1 a check failed (``rebuild --verify`` found differences, a demo
claim or a replay did not hold); 2 an error (unreachable server, unknown session or
checkpoint, bad arguments), reported as one line on stderr, never a traceback.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit

import typer
from rich.markup import escape as markup_escape

from streamstate._render import (
    KEYS_NOTE,
    PIPE_WIDTH,
    entry_lines,
    history_table,
    memory_line,
    plural,
    print_line,
    state_tree,
    stats_table,
)
from streamstate._render import human_bytes as _human_bytes  # noqa: F401 - for commands that print sizes
from streamstate._render import make_console as _console
from streamstate._render import progress as _progress
from streamstate.errors import BackendUnavailable, ConfigError, StreamstateError

app = typer.Typer(
    name="streamstate",
    help="Event-sourced LangGraph persistence on Valkey streams: audit, replay, fork, rebuild.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # help text is rich markup (prose wraps; see _tidy_help), and -h is --help everywhere
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

# -- shared options ------------------------------------------------------------------------

UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        metavar="URL",
        help="Valkey URL (valkey://, valkeys://, redis://, rediss://, unix://). "
        "Default: $STREAMSTATE_URL, else the embedded server.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
ActorOpt = Annotated[
    str | None,
    typer.Option(
        "--actor", metavar="ACTOR", help="AgentCore actor id: the session is (a, ACTOR, SESSION)."
    ),
]
NsOpt = Annotated[
    str, typer.Option("--ns", metavar="NS", help="Checkpoint namespace ('' is the root graph).")
]
SessionArg = Annotated[
    str, typer.Argument(metavar="SESSION", help="Thread id (the session ('t', SESSION)).")
]
_TIME_HELP = "ISO 8601 (naive: local time), or a duration ago: 90s, 30m, 2h, 1d."
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since", metavar="TIME", help=f"Made at or after: {_TIME_HELP}", show_default=False
    ),
]
UntilOpt = Annotated[
    str | None,
    typer.Option(
        "--until", metavar="TIME", help=f"Made at or before: {_TIME_HELP}", show_default=False
    ),
]


@dataclass
class Settings:
    """Options given before the command name; a command's own options win."""

    url: str | None = None
    prefix: str = "ss"
    json: bool = False


@app.callback()
def _root(
    ctx: typer.Context,
    url: UrlOpt = None,
    prefix: Annotated[str, typer.Option("--prefix", help="Key prefix of the savers.")] = "ss",
    json_out: JsonOpt = False,
) -> None:
    """Event-sourced LangGraph persistence on Valkey streams: audit, replay, fork, rebuild."""
    ctx.obj = Settings(url, prefix, json_out)


def _settings(ctx: typer.Context, url: str | None, json_out: bool) -> Settings:
    base: Settings = ctx.obj or Settings()
    return Settings(url or base.url, base.prefix, json_out or base.json)


def _checked_url(url: str) -> str:
    """``url``, or a ConfigError naming what is wrong with it (a port that is no number)."""
    parts = urlsplit(url)
    # a Sentinel URL lists several hosts; its parser checks each port itself
    if parts.scheme != "unix" and not parts.scheme.endswith("+sentinel"):
        try:
            parts.port  # noqa: B018 - parsing the port is the check
        except ValueError as exc:
            from streamstate.connection import redact_url

            raise ConfigError(f"bad port in URL {redact_url(url)}: {exc}") from None
    return url


@contextlib.contextmanager
def _cluster_errors(url: str) -> Iterator[None]:
    """The cluster client's own exception (not a ValkeyError) as a streamstate error."""
    from valkey.exceptions import ValkeyClusterException

    from streamstate.connection import redact_url

    try:
        yield
    except ValkeyClusterException as exc:
        message = " ".join(str(exc).split())
        if "cluster mode is not enabled" in message.lower():
            raise ConfigError(
                f"{redact_url(url)} asks for a cluster (?cluster=true) but the server is not a"
                " Valkey Cluster (cluster mode is not enabled); drop ?cluster=true"
            ) from exc
        raise BackendUnavailable(message) from exc


def _embedded_url() -> str:
    """The URL of the embedded server already running for the data directory; a read-only
    command never starts an (empty) one."""
    from streamstate.server import EmbeddedServer, default_data_dir

    path = default_data_dir()
    server = EmbeddedServer(path)
    if not server.attach():
        raise ConfigError(
            f"no embedded server is running for {path} and no --url or STREAMSTATE_URL was"
            f" given; start one with `streamstate server --dir {path}` (or run"
            " `streamstate demo`), or pass --url"
        )
    return server.url


@contextlib.contextmanager
def _audit(settings: Settings) -> Iterator[Any]:
    """An audit handle for the settings; a dead server is reported with its URL."""
    from streamstate.audit import connect
    from streamstate.connection import redact_url

    url = _checked_url(settings.url or os.environ.get("STREAMSTATE_URL") or _embedded_url())
    try:
        with _cluster_errors(url), connect(url, prefix=settings.prefix) as audit:
            yield audit
    except BackendUnavailable as exc:
        raise BackendUnavailable(f"cannot reach {redact_url(url)}: {exc}") from exc


def _emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def _session(thread: str, actor: str | None) -> tuple[str, ...]:
    from streamstate.audit import session_of

    return session_of(thread, actor)


def _checkpoint(audit: Any, session: tuple[str, ...], ref: str | None, ns: str) -> str | None:
    """The checkpoint id ``ref`` names: the id, a unique head or tail of it (tables show
    tails), or ``@TIME``; ``None`` stays ``None`` (the newest)."""
    from streamstate.inspect import _resolve

    if ref is None or len(ref) == 36:
        # the newest, or a whole id: the command's own lookup reports a miss without
        # reading the whole log a second time
        return ref
    return _resolve(audit.fold(session), ref, ns)


def _fail(code: int) -> NoReturn:
    raise typer.Exit(code)


_CHECKPOINT_HELP = "a unique head or tail of one (as tables show it), or @TIME"

# -- commands ---------------------------------------------------------------------------------


@app.command()
def demo(
    ctx: typer.Context,
    sessions: Annotated[
        int, typer.Option("--sessions", metavar="N", min=1, max=50, help="Threads to run.")
    ] = 5,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a scripted ReAct agent (tools, subgraph, interrupt) and prove what the log gives."""
    from streamstate.demo.run import run_demo

    s = _settings(ctx, url, json_out)
    given = s.url or os.environ.get("STREAMSTATE_URL")
    with _cluster_errors(_checked_url(given) if given else ""):
        ok = run_demo(
            s.url, sessions=sessions, prefix=s.prefix, json_out=s.json, console=_console()
        )
    if not ok:
        _fail(1)


@app.command()
def tail(
    ctx: typer.Context,
    session: SessionArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep waiting for new events.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            min=0.1,
            help="With --follow: stop after this long without a new event.",
            show_default=False,
        ),
    ] = None,
    from_id: Annotated[
        str,
        typer.Option(
            "--from",
            metavar="ID",
            help="Start after this entry id ('0': the beginning, '$': new only); with "
            "--group, where a new group starts.",
        ),
    ] = "0",
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            metavar="GROUP",
            help="Read as a consumer group: acknowledge what was printed.",
        ),
    ] = None,
    consumer: Annotated[
        str | None,
        typer.Option(
            "--consumer", metavar="NAME", help="Consumer name in --group (default: host name)."
        ),
    ] = None,
    actor: ActorOpt = None,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="text (default), or jsonl: one JSON object per event (as --json), for pipes.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print a session's events, decoded, oldest first; --follow waits for new ones.

    Each event is a line naming its entry id, kind and checkpoint (ids by their tails),
    then indented lines with what it carries: channels, each write. --json or
    --format jsonl prints one JSON object per event instead, ids whole.

    With --group the tail is an at-least-once audit consumer: an event is acknowledged
    after it is printed, and a restarted consumer prints its unacknowledged events first.
    """
    from streamstate.audit import describe_entry

    if fmt not in (None, "jsonl", "text"):
        raise ConfigError(f"--format must be jsonl or text, got {fmt!r}")
    s = _settings(ctx, url, json_out or fmt == "jsonl")
    console = _console()
    with _audit(s) as audit:
        sess = _session(session, actor)
        entries = audit.tail(
            sess,
            follow=follow,
            from_id=from_id,
            group=group,
            consumer=consumer,
            idle_timeout=timeout,
        )
        try:
            for entry in entries:
                if s.json:
                    _emit_json(describe_entry(entry, audit.serde, sess))
                else:
                    described = describe_entry(entry, audit.serde, sess, render=lambda v: v)
                    for text in entry_lines(described):
                        print_line(console, text)
                    console.file.flush()
        finally:
            close = getattr(entries, "close", None)
            if close is not None:
                close()


@app.command()
def history(
    ctx: typer.Context,
    session: SessionArg,
    ns: Annotated[
        str | None,
        typer.Option("--ns", metavar="NS", help="Only this namespace ('' is the root graph)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", metavar="N", min=1, help="Newest N only.")
    ] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    actor: ActorOpt = None,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List a thread's checkpoints, newest first, from its log.

    Each row shows the writes that made the checkpoint: for a step of the graph, those
    of the tasks run from its parent; for an update_state, the update's; none for an
    input or a fork (a copy).
    """
    import dataclasses

    from streamstate import inspect

    s = _settings(ctx, url, json_out)
    with _audit(s) as audit:
        sess = _session(session, actor)
        rows = inspect.history(audit, sess, ns=ns, since=since, until=until, limit=limit)
    if s.json:
        _emit_json([dataclasses.asdict(r) for r in rows])
        return
    title = f"history of {session} ({plural(len(rows), 'checkpoint')})"
    _console().print(history_table(rows, title))


@app.command()
def show(
    ctx: typer.Context,
    session: SessionArg,
    checkpoint: Annotated[
        str | None,
        typer.Argument(
            metavar="CHECKPOINT",
            help=f"Checkpoint id, {_CHECKPOINT_HELP} (default: the newest).",
            show_default=False,
        ),
    ] = None,
    ns: NsOpt = "",
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="TIME",
            help="The checkpoint current at this time (ISO 8601, or 2h: that long ago).",
            show_default=False,
        ),
    ] = None,
    actor: ActorOpt = None,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show the decoded state at a checkpoint: channel values, metadata, pending writes."""
    from streamstate import inspect
    from streamstate.audit import describe_tuple

    s = _settings(ctx, url, json_out)
    with _audit(s) as audit:
        sess = _session(session, actor)
        tup = inspect.show(audit, sess, _checkpoint(audit, sess, checkpoint, ns), at=at, ns=ns)
    if s.json:
        _emit_json(describe_tuple(tup))
        return
    _console().print(state_tree(tup, f"thread {session}"))


ToOpt = Annotated[
    str | None,
    typer.Option(
        "--to",
        metavar="ID",
        help=f"Checkpoint id, {_CHECKPOINT_HELP} (default: the newest).",
        show_default=False,
    ),
]


@app.command()
def replay(
    ctx: typer.Context,
    session: SessionArg,
    to: ToOpt = None,
    fork: Annotated[
        str | None,
        typer.Option(
            "--fork",
            metavar="NEW",
            help="Also start thread NEW at the checkpoint (as the fork command does).",
            show_default=False,
        ),
    ] = None,
    ns: NsOpt = "",
    actor: ActorOpt = None,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Rebuild the state at a checkpoint from the log alone, print it, optionally fork there.

    The rebuilt state is then compared with the live view (get_tuple); exit 1 if they
    differ. See fork --help for what a fork carries.
    """
    from streamstate.audit import describe_tuple

    s = _settings(ctx, url, json_out)
    console = _console()
    with _audit(s) as audit:
        sess = _session(session, actor)
        state = audit.replay(sess, _checkpoint(audit, sess, to, ns), ns=ns)
        cid = state.config["configurable"]["checkpoint_id"]
        matches = audit.show(sess, cid, ns=ns) == state
        fork_config = audit.fork(sess, cid, fork, ns=ns) if fork else None
    if s.json:
        out = describe_tuple(state) | {"matches_live": matches}
        if fork_config is not None:
            out["fork"] = fork_config["configurable"]
        _emit_json(out)
    else:
        console.print(state_tree(state, f"replayed {session} from its log"))
        mark = "[green]✓[/]" if matches else "[red]✗[/]"
        console.print(f"{mark} live view (get_tuple) {'agrees' if matches else 'DIFFERS'}")
        if fork is not None and fork_config is not None:
            console.print(f"[green]✓[/] forked {markup_escape(fork)} at checkpoint {cid}")
    if not matches:
        _fail(1)


@app.command()
def fork(
    ctx: typer.Context,
    session: SessionArg,
    new: Annotated[
        str, typer.Argument(metavar="NEW", help="The new thread id (it must not exist yet).")
    ],
    to: ToOpt = None,
    ns: NsOpt = "",
    actor: ActorOpt = None,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Start thread NEW at a checkpoint of SESSION (default: its newest).

    NEW gets SESSION's log up to the checkpoint, in one atomic append: the same state,
    checkpoint ids, parents and history. It gets none of the pending writes recorded at
    the checkpoint (an interrupt, the human's resume answer, the writes of tasks run from
    it), as LangGraph's own fork (update_state) leaves them behind: resuming NEW runs the
    next step again, and an interrupt() there asks again instead of reusing the answer
    given on SESSION.

    Retrying the same fork is harmless; a NEW that already exists is an error.
    """
    s = _settings(ctx, url, json_out)
    with _audit(s) as audit:
        sess = _session(session, actor)
        config = audit.fork(sess, _checkpoint(audit, sess, to, ns), new, ns=ns)
    conf = config["configurable"]
    if s.json:
        _emit_json({"fork": conf, "from": {"session": list(sess), "checkpoint_ns": ns}})
        return
    console = _console()
    console.print(f"[green]✓[/] forked {markup_escape(new)}")
    console.print(f"  from {markup_escape(session)} at checkpoint {conf['checkpoint_id']}")
    console.print("  without its pending writes: resuming the fork runs the next step again")


@app.command()
def rebuild(
    ctx: typer.Context,
    session: Annotated[
        str | None,
        typer.Option(
            "--session", metavar="THREAD", help="Only this thread (default: every session)."
        ),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Rebuild into a shadow keyspace and compare with the live views (exit 1 on "
            "any difference); the live views are not touched.",
        ),
    ] = False,
    actor: ActorOpt = None,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Rebuild the projections from the logs (all registered sessions, or one).

    A session whose log was trimmed is not rebuilt (that would drop state only its views
    still hold): it is reported and the exit code is 1.
    """
    from streamstate.audit import session_label

    s = _settings(ctx, url, json_out)
    console = _console()
    with _audit(s) as audit:
        targets = [_session(session, actor)] if session else None
        total = len(targets) if targets else len(audit.sessions())
        with _progress() as bar:
            task = bar.add_task("verifying" if verify else "rebuilding", total=total)
            if verify:
                report = audit.verify(targets, progress=lambda *_: bar.advance(task))
            else:
                results = audit.rebuild(targets, progress=lambda *_: bar.advance(task))
    if not verify:
        done = [r for r in results if r.skipped is None]
        skipped = [r for r in results if r.skipped is not None]
        if s.json:
            _emit_json(
                {
                    "rebuilt": [{"session": r.session, "entries": r.entries} for r in done],
                    "skipped": [
                        {
                            "session": r.session,
                            "reason": r.skipped,
                            "trimmed": r.trimmed,
                            "unreadable": r.unreadable,
                        }
                        for r in skipped
                    ],
                }
            )
            if any(r.trimmed or r.unreadable for r in skipped):
                _fail(1)
            return
        entries = sum(r.entries for r in done)
        read = plural(entries, "log entry", "log entries")
        console.print(f"rebuilt {plural(len(done), 'session')} from {read}")
        for r in skipped:
            mark = "[red]✗[/]" if r.trimmed or r.unreadable else "-"
            console.print(f"{mark} skipped {markup_escape(session_label(r.session))}: {r.skipped}")
        if any(r.trimmed or r.unreadable for r in skipped):
            _fail(1)
        return
    if s.json:
        _emit_json(
            {
                "ok": report.ok,
                "checked": report.checked,
                "skipped": report.skipped,
                "differences": [
                    {"session": d.session, "view": d.view, "field": d.field, "problem": d.problem}
                    for d in report.differences
                ],
            }
        )
    else:
        for d in report.differences:
            console.print(f"[red]✗[/] {markup_escape(str(d))}", soft_wrap=True)
        n = len(report.checked)
        if report.ok:
            console.print(
                f"[green]✓[/] {plural(n, 'session')}: the live views equal the views rebuilt from"
                " the logs"
            )
        else:
            bad = len({d.session for d in report.differences})
            console.print(
                f"[red]✗[/] {plural(len(report.differences), 'difference')} in {bad} of"
                f" {plural(n, 'session')}"
            )
        if report.skipped:
            names = ", ".join(session_label(x) for x in report.skipped[:5])
            console.print(
                f"skipped {plural(len(report.skipped), 'session')} with no known views ({names})"
            )
    if not report.ok:
        _fail(1)


@app.command()
def verify(
    ctx: typer.Context,
    threads: Annotated[
        list[str] | None, typer.Argument(help="Thread ids (default with --all: every thread).")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Check every thread.")] = False,
    actor: ActorOpt = None,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check threads' tamper-evident chains; report the first entry altered, deleted,
    inserted or reordered (exit 1 if any)."""
    s = _settings(ctx, url, json_out)
    console = _console()
    if not threads and not every:
        raise typer.BadParameter("name a thread, or pass --all")
    with _audit(s) as audit:
        if every:
            sessions = [x for x in audit.sessions() if x[0] in ("t", "a")]
            reports = [audit.verify_chain(x) for x in sessions]
        else:
            reports = [audit.verify_chain(t, actor_id=actor) for t in threads or []]
    if s.json:
        _emit_json(
            [
                {
                    "session": r.session,
                    "ok": r.ok,
                    "checked": r.checked,
                    "unchained": r.unchained,
                    "problem": r.problem,
                    "entry_id": r.entry_id,
                    "head": r.head,
                    "message": str(r),
                }
                for r in reports
            ]
        )
    else:
        for r in reports:
            mark = "[green]✓[/]" if r.ok else "[red]✗[/]"
            console.print(f"{mark} {markup_escape(str(r))}", soft_wrap=True)
    if not all(r.ok for r in reports):
        _fail(1)


@app.command()
def check(
    ctx: typer.Context,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Say what the server's settings mean for streamstate's data.

    Persistence (what an acknowledged write survives), replication, the eviction
    policy, the stream node size and scripting, each marked ok, note or risk. Reads
    INFO and, where allowed, CONFIG GET; writes nothing. Exit 1 when anything is a risk.
    """
    from streamstate._render import marked_lines
    from streamstate.server_check import check_server, worst

    s = _settings(ctx, url, json_out)
    with _audit(s) as audit:
        findings = check_server(audit.client)
    verdict = worst(findings)
    if s.json:
        _emit_json({"verdict": verdict, "findings": [f.as_dict() for f in findings]})
    else:
        console = _console()
        marks = {"ok": "[green]✓[/]", "note": "[yellow]![/]", "risk": "[red]✗[/]"}
        for f in findings:
            where = f" ({f.node})" if f.node else ""
            for text in marked_lines(marks[f.status], f"{f.topic}{where}: {f.message}",
                                     console.width):  # fmt: skip
                console.print(text, soft_wrap=True)
        risks = sum(f.status == "risk" for f in findings)
        console.print(f"{plural(risks, 'risk')} to acknowledged data or to operations" if risks
                      else "nothing puts acknowledged data at risk")  # fmt: skip
    if verdict == "risk":
        _fail(1)


@app.command()
def migrate(
    ctx: typer.Context,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Move every thread still in key layout 1 to the current layout and drop layout 1's keys.

    Savers already convert a layout-1 thread when they first touch it; this converts all
    of them at once. A thread whose log cannot be replayed is left as it was and
    reported (exit 1). Running it again is harmless.
    """
    from streamstate.audit import session_label

    s = _settings(ctx, url, json_out)
    console = _console()
    with _audit(s) as audit:
        report = audit.migrate()
    if s.json:
        _emit_json(
            {
                "ok": report.ok,
                "migrated": report.migrated,
                "failed": [{"session": f[0], "reason": f[1]} for f in report.failed],
                "registries_dropped": report.registries_dropped,
            }
        )
    else:
        console.print(
            f"migrated {plural(len(report.migrated), 'thread')} to key layout 2; "
            f"dropped {report.registries_dropped} layout-1 registries"
        )
        for session, reason in report.failed:
            console.print(f"[red]✗[/] {markup_escape(session_label(session))}: {reason}")
    if not report.ok:
        _fail(1)


@app.command()
def stats(
    ctx: typer.Context,
    session: Annotated[
        str | None, typer.Option("--session", metavar="THREAD", help="Only this thread.")
    ] = None,
    actor: ActorOpt = None,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Sessions by size: events, bytes (MEMORY USAGE) and largest keys; server memory."""
    from streamstate.audit import session_label

    s = _settings(ctx, url, json_out)
    with _audit(s) as audit:
        report = audit.stats([_session(session, actor)] if session else None)
    memory_keys = (
        "used_memory",
        "used_memory_human",
        "used_memory_peak_human",
        "used_memory_dataset",
        "maxmemory_human",
        "maxmemory_policy",
        "mem_fragmentation_ratio",
    )
    memory = {k: report.memory[k] for k in memory_keys if k in report.memory}
    if s.json:
        _emit_json(
            {
                "sessions": [
                    {"session": r.session, "events": r.events, "bytes": r.bytes, "keys": r.keys}
                    for r in report.sessions
                ],
                "total": {
                    "sessions": len(report.sessions),
                    "events": report.events,
                    "bytes": report.bytes,
                },
                "server_memory": memory,
            }
        )
        return
    console = _console()
    console.print(stats_table(report, session_label, console.width))
    console.print(memory_line(report.memory))
    console.print(f"[dim]{markup_escape(KEYS_NOTE)}[/]")


@app.command()
def server(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Data directory (default: $STREAMSTATE_DIR or ./.streamstate).",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", help="TCP port (default: a free one).", show_default=False),
    ] = None,
    stop: Annotated[
        bool,
        typer.Option("--stop", help="Stop the server running for the directory, and no other."),
    ] = False,
) -> None:
    """Run the embedded Valkey server in the foreground (Ctrl-C stops it cleanly).

    The URL printed first carries the server's password (kept in the directory's
    ``password`` file). If the directory's server already runs, its URL is printed and
    the command returns; --stop stops it.
    """
    from streamstate.server import (
        EmbeddedServer,
        default_data_dir,
        forget_interrupts,
        noting_interrupts,
        raise_if_interrupted,
    )

    path = (data_dir or default_data_dir()).absolute()
    srv = EmbeddedServer(path, port=port)
    if stop:
        pid = srv.stop_running()
        if pid is None:
            print(f"no embedded server is running for {path}; nothing to stop")
        else:
            print(f"stopped the embedded server of {path} (pid {pid})")
        return

    # Ctrl-C and SIGTERM stop it; noted, so that one landing where Python swallows the
    # KeyboardInterrupt (a client's __del__) still does
    with noting_interrupts(signal.SIGINT, signal.SIGTERM):
        try:
            srv.start(daemonize=False)
        except KeyboardInterrupt:
            # start() stopped the server it had spawned (it may have been loading its AOF)
            print(
                "interrupted before the server was ready; nothing it started is left running",
                file=sys.stderr,
            )
            _fail(1)
        if srv.reused:
            print(f"already running: {srv.url} (pid {srv.pid}, data in {path})", flush=True)
            return
        try:
            # inside the try: a Ctrl-C right after the URL is printed must still stop it
            print(f"{srv.url}", flush=True)
            print(
                f"embedded valkey-server (pid {srv.pid}, data in {path}); Ctrl-C stops it",
                file=sys.stderr,
            )
            while srv.is_running():
                raise_if_interrupted()
                time.sleep(0.5)
            print(f"the server exited: {srv.log_tail(3)}", file=sys.stderr)
            _fail(1)
        except KeyboardInterrupt:
            forget_interrupts()
        finally:
            srv.stop()
        print("stopped", file=sys.stderr)


# -- auditing threads (streamstate.inspect, streamstate.otel) --------------------------------


@app.command()
def threads(
    ctx: typer.Context,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Only this AgentCore actor's threads.")
    ] = None,
    run: Annotated[
        str | None,
        typer.Option("--run", help="Only the threads this run (metadata run_id) wrote to."),
    ] = None,
    prefix: Annotated[
        str | None,
        typer.Option(
            "--prefix",
            help="Only thread ids starting with this (the key prefix is the --prefix given"
            " before the command name).",
        ),
    ] = None,
    sort: Annotated[
        str,
        typer.Option(
            "--sort", help="activity (newest first), size, checkpoints (largest first) or id."
        ),
    ] = "activity",
    limit: Annotated[int, typer.Option("--limit", min=1, help="Threads per page.")] = 50,
    after: Annotated[
        str | None,
        typer.Option("--after", help="Cursor printed under the previous page.", show_default=False),
    ] = None,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List threads with their last activity, checkpoints and size, sorted and paged."""
    from streamstate import inspect
    from streamstate._inspect_cli import print_threads

    s = _settings(ctx, url, json_out)
    with _audit(s) as audit:
        page = inspect.threads(
            audit,
            actor=actor,
            run=run,
            prefix=prefix,
            sort=sort,  # type: ignore[arg-type]  # inspect.threads checks it (a clear error)
            limit=limit,
            after=after,
        )
    if s.json:
        _emit_json(page.as_json())
        return
    print_threads(_console(), page)


@app.command()
def diff(
    ctx: typer.Context,
    session: SessionArg,
    a: Annotated[
        str | None,
        typer.Argument(
            metavar="A",
            help="Checkpoint id, a unique head or tail of one, or @TIME. Alone: A against its"
            " parent.",
            show_default=False,
        ),
    ] = None,
    b: Annotated[
        str | None,
        typer.Argument(metavar="B", help="Compare A with B.", show_default=False),
    ] = None,
    ns: NsOpt = "",
    actor: ActorOpt = None,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """What changed between two checkpoints (default: the newest and its parent), from the log.

    Channels added, removed or changed (message lists by message id),
    the tasks whose writes led from A to B, interrupts, resumes, errors, metadata.
    """
    from streamstate import inspect
    from streamstate._inspect_cli import print_diff

    s = _settings(ctx, url, json_out)
    with _audit(s) as audit:
        found = inspect.diff(audit, _session(session, actor), a, b, ns=ns)
    if s.json:
        _emit_json(found.as_json())
        return
    print_diff(_console(), found)


@app.command()
def export(
    ctx: typer.Context,
    session: SessionArg,
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl (spans to stdout) or otlp (to --endpoint).")
    ] = "jsonl",
    endpoint: Annotated[
        str | None,
        typer.Option(
            "--endpoint",
            help="OTLP/HTTP URL (http://host:4318, or a full .../v1/traces URL). Default:"
            " $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, $OTEL_EXPORTER_OTLP_ENDPOINT.",
            show_default=False,
        ),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", help="KEY=VALUE sent with the export (repeatable)."),
    ] = None,
    service_name: Annotated[
        str, typer.Option("--service-name", help="The spans' service.name.")
    ] = "streamstate",
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds for the OTLP export.")
    ] = 10.0,
    actor: ActorOpt = None,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export a thread's runs, super-steps and tasks as OpenTelemetry spans, from its log."""
    from streamstate import otel

    if fmt not in ("jsonl", "otlp"):
        raise ConfigError(f"--format must be jsonl or otlp, got {fmt!r}")
    headers = {}
    for item in header or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--header {item!r} is not KEY=VALUE")
        headers[key.strip()] = value.strip()
    s = _settings(ctx, url, json_out)
    with _audit(s) as audit:
        spans = otel.thread_spans(audit, _session(session, actor))
    if fmt == "jsonl":
        for span in spans:
            _emit_json(otel.span_json(span))
        return
    target = otel.traces_url(endpoint)
    sent = otel.export_otlp(
        spans, target, headers=headers, timeout=timeout, service_name=service_name
    )
    runs = sum(1 for span in spans if span.kind == "run")
    if s.json:
        _emit_json({"spans": sent, "runs": runs, "endpoint": target})
    else:
        _console().print(f"exported {sent} spans of {runs} runs to {markup_escape(target)}")


@app.command("import")
def import_(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            metavar="SOURCE",
            help="A Valkey URL holding langgraph-checkpoint-aws ValkeySaver or"
            " AgentCoreValkeySaver data, or module:factory making a LangGraph checkpointer"
            " (or a context manager yielding one).",
        ),
    ],
    thread: Annotated[
        list[str] | None, typer.Option("--thread", help="Only this thread (repeatable).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count only; write nothing.")] = False,
    check: Annotated[
        bool, typer.Option("--verify", help="Compare every imported checkpoint with the source.")
    ] = False,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Copy every thread, checkpoint and pending write of another checkpointer into
    streamstate (same ids, parents, metadata). Running it again appends nothing, so an
    interrupted import is resumed by running it again; --verify exits 1 on a difference."""
    from streamstate import AgentCoreValkeySaver, ValkeySaver
    from streamstate.connection import client_from_url, redact_url
    from streamstate.importer import import_checkpoints, open_source

    s = _settings(ctx, url, json_out)
    target_url = _checked_url(s.url or os.environ.get("STREAMSTATE_URL") or _embedded_url())
    src = open_source(source)
    client = client_from_url(target_url)
    try:
        with _progress() as bar, _cluster_errors(target_url):
            task = bar.add_task("dry run" if dry_run else "importing", total=None)
            report = import_checkpoints(
                src,
                ValkeySaver(client, prefix=s.prefix),
                actor_target=AgentCoreValkeySaver(client, prefix=s.prefix),
                dry_run=dry_run,
                verify=check,
                threads=thread,
                on_thread=lambda n: bar.update(task, description=f"{n} threads"),
                on_checkpoint=lambda _rec: bar.advance(task),
            )
    except BackendUnavailable as exc:
        raise BackendUnavailable(f"cannot reach {redact_url(target_url)}: {exc}") from exc
    finally:
        client.close()
        src.close()
    counts = {
        "threads": report.threads,
        "namespaces": report.namespaces,
        "checkpoints": report.checkpoints,
        "writes": report.writes,
    }
    if s.json:
        _emit_json(
            {
                **counts,
                "dry_run": dry_run,
                "verified": report.verified,
                "mismatches": report.mismatches,
            }
        )
    else:
        verb = "would import" if dry_run else "imported"
        line = ", ".join(f"{v} {k}" for k, v in counts.items())
        _console().print(f"{verb} {line}" + (f"; verified {report.verified}" if check else ""))
        for problem in report.mismatches:
            _console().print(f"[red]✗[/] {markup_escape(problem)}")
    if not report.ok:
        _fail(1)


# -- entry point ------------------------------------------------------------------------------


HELP_OPTION_NAMES = ["-h", "--help"]


def _reflow(text: str) -> str:
    """Each paragraph of a docstring on one line, for rich to wrap to the terminal's width
    (a paragraph starting with \\b is kept as written); ``literals`` lose their quotes."""
    paragraphs = re.sub(r"``([^`]+)``", r"\1", inspect.cleandoc(text)).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


def _tidy_help(command: Any) -> None:
    """Help as people read it: docstrings reflowed, no ``<bool>`` after a flag (a flag
    takes no value), for the command and every subcommand."""
    if command.help:
        command.help = _reflow(command.help)
    ctx = typer.Context(command, help_option_names=HELP_OPTION_NAMES)
    for param in [*command.params, command.get_help_option(ctx)]:
        if param is not None and getattr(param, "is_flag", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _tidy_help(sub)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code; errors become one line on stderr and code 2."""
    if not os.environ.get("COLUMNS") and not sys.stdout.isatty():
        # written to a pipe or a file: 80 columns for every console (help and errors
        # included), never the width of whatever terminal stdin happens to be
        os.environ["COLUMNS"] = str(PIPE_WIDTH)
    command = typer.main.get_command(app)
    _tidy_help(command)
    try:
        command.main(
            args=list(argv) if argv is not None else sys.argv[1:],
            prog_name="streamstate",
            standalone_mode=True,
        )
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except StreamstateError as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        sys.stderr.write(f"streamstate: error: {message}\n")
        return 2
    except BrokenPipeError:
        # The reader went away (e.g. `streamstate tail ... | head`).
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 1
    return 0


# -- erasure (streamstate.erase) ---------------------------------------------------------------


@app.command()
def erase(
    ctx: typer.Context,
    thread: Annotated[
        str | None,
        typer.Option(
            "--thread",
            metavar="THREAD",
            help="Erase every session with this thread id.",
            show_default=False,
        ),
    ] = None,
    actor: Annotated[
        str | None,
        typer.Option(
            "--actor",
            metavar="ACTOR",
            help="Erase every AgentCore session of this actor (with --thread: that one only).",
            show_default=False,
        ),
    ] = None,
    store_namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--store-namespace",
            metavar="NAMESPACE",
            help="Also erase store items under this namespace prefix: labels joined by '/'"
            ' (memories/user-1) or a JSON array (\'["memories", "a/b"]\'). Repeatable.',
            show_default=False,
        ),
    ] = None,
    with_store: Annotated[
        bool,
        typer.Option(
            "--with-store",
            help="Also erase store items with a namespace label equal to an erased id.",
        ),
    ] = False,
    collection: Annotated[
        list[str] | None,
        typer.Option(
            "--collection",
            metavar="NAME",
            help="Store collections to look in (default: all). Repeatable.",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would go; delete nothing.")
    ] = False,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Erase a thread or an actor (log, views, registry entries, store items asked for)
    and print a receipt; exit 1 if something was still there afterwards. Asks nothing."""
    from streamstate.erase import erase as erase_now
    from streamstate.erase import namespace_arg

    s = _settings(ctx, url, json_out)
    if thread is None and actor is None:
        raise typer.BadParameter("name what to erase: --thread THREAD and/or --actor ACTOR")
    namespaces = [namespace_arg(n) for n in store_namespace or []]
    with _audit(s) as audit:
        receipt = erase_now(
            audit,
            thread_id=thread,
            actor_id=actor,
            store_namespaces=namespaces,
            with_store=with_store,
            collections=collection,
            dry_run=dry_run,
        )
    if s.json:
        _emit_json(receipt.as_json())
    else:
        console = _console()
        for line in receipt.lines(console.width):
            console.print(markup_escape(line), soft_wrap=True)
    if not receipt.ok:
        _fail(1)
