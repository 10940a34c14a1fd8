"""``streamstate demo``: run the scripted agent over several threads, then prove claims.

Each claim is checked, not asserted by a print: the demo exits non-zero when one fails.
It shows one thread's history (read from its log), replays it to the checkpoint where
the agent waited for a human (state rebuilt from the log alone, compared with
``get_tuple``), forks a new thread there and continues it with another decision, and
rebuilds every view it wrote into a shadow keyspace to compare with the live ones.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import Command
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from streamstate._render import history_table, progress, short, state_tree
from streamstate.adapters.valkey_saver import ValkeySaver
from streamstate.audit import CLI_RETRY, ValkeyAudit
from streamstate.connection import client_from_url, redact_url
from streamstate.demo.agent import QUESTIONS, build_agent, calculator, user_message, weather
from streamstate.server import ensure_server


@dataclass
class Claims:
    """Claims checked so far; printed as they are made unless the output is JSON."""

    console: Console
    quiet: bool
    made: list[tuple[bool, str]] = field(default_factory=list)

    def check(self, ok: bool, claim: str) -> bool:
        self.made.append((ok, claim))
        if not self.quiet:
            # a long claim wraps under itself, not under its mark
            row = Table.grid(padding=(0, 1))
            row.add_column(no_wrap=True)
            row.add_column()
            row.add_row("[green]✓[/]" if ok else "[red]✗[/]", escape(claim))
            self.console.print(row)
        return ok

    @property
    def ok(self) -> bool:
        return all(ok for ok, _ in self.made)


def _config(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread_id}
    if checkpoint_id is not None:
        configurable |= {"checkpoint_ns": "", "checkpoint_id": checkpoint_id}
    return {"configurable": configurable}


def _head(saver: ValkeySaver, thread_id: str) -> str | None:
    tup = saver.get_tuple(_config(thread_id))
    return None if tup is None else tup.config["configurable"]["checkpoint_id"]


def _expected_facts(i: int) -> list[str]:
    city, expr = QUESTIONS[i % len(QUESTIONS)]
    return [weather.invoke({"city": city}), calculator.invoke({"expression": expr})]


def run_demo(
    url: str | None,
    *,
    sessions: int = 5,
    prefix: str = "ss",
    json_out: bool = False,
    console: Console | None = None,
) -> bool:
    """Run the demo; returns whether every claim held.

    Args:
        url: Valkey URL; ``None`` uses ``STREAMSTATE_URL`` or starts the embedded server
            (which keeps running afterwards; ``streamstate server --stop`` stops it).
        sessions: How many threads the agent runs.
        prefix: Key prefix for the saver.
        json_out: Print one JSON document at the end instead of rich output.
        console: Where rich output goes.
    """
    console = console or Console()
    claims = Claims(console, quiet=json_out)
    say = (lambda *a, **k: None) if json_out else console.print

    embedded = None
    resolved = url or os.environ.get("STREAMSTATE_URL")
    if resolved is None:
        embedded = ensure_server()
        resolved = embedded.url
        say(f"embedded valkey-server at {redact_url(resolved)} (data in {embedded.data_dir})")
    else:
        say(f"using {redact_url(resolved)}")

    client = client_from_url(resolved, socket_connect_timeout=5)
    try:
        saver = ValkeySaver(client, prefix=prefix, retry=CLI_RETRY)
        audit = ValkeyAudit.from_saver(saver)
        graph = build_agent(saver)
        tag = uuid.uuid4().hex[:6]
        threads = [f"demo-{tag}-{i + 1}" for i in range(sessions)]

        # 1. The agent, over several threads: tools in a subgraph, then a human review.
        paused, resumed, answered = [], [], []

        with progress() as bar:
            task = bar.add_task("running the agent", total=2 * sessions)
            for i, thread_id in enumerate(threads):
                cfg = _config(thread_id)
                bar.update(task, description=f"{thread_id}: research → review")
                first = graph.invoke({"messages": [user_message(i)]}, cfg)
                paused.append(
                    bool(first.get("__interrupt__")) and graph.get_state(cfg).next == ("review",)
                )
                bar.advance(task)
                bar.update(task, description=f"{thread_id}: resume → publish")
                final = graph.invoke(Command(resume={"approved": True}), cfg)
                resumed.append(
                    graph.get_state(cfg).next == () and final.get("verdict") == "approved"
                )
                answered.append(all(f in final.get("answer", "") for f in _expected_facts(i)))
                bar.advance(task)
        say(f"ran the agent on {sessions} threads: {', '.join(threads)}")
        claims.check(all(paused), f"all {sessions} threads paused at interrupt() in review")
        claims.check(
            all(resumed), f"all {sessions} threads resumed after interrupt with Command(resume=...)"
        )
        claims.check(
            all(answered),
            "the scripted model called weather and calculator (in the research subgraph) "
            "and every answer quotes both results",
        )

        # 2. History of one thread, read from its log.
        thread_id = threads[0]
        rows = audit.history(thread_id)
        listed = list(saver.list(_config(thread_id)))
        sub = [r for r in rows if r.ns]
        say(history_table(rows, f"history of {thread_id}, from its log"))
        claims.check(
            {r.checkpoint_id for r in rows}
            == {t.config["configurable"]["checkpoint_id"] for t in listed}
            and len(rows) == len(listed),
            f"history has {len(rows)} checkpoints ({len(rows) - len(sub)} root, {len(sub)} "
            "subgraph), the same as saver.list()",
        )
        claims.check(
            bool(sub) and all(r.ns.startswith("research:") for r in sub),
            "subgraph checkpoints live under their own namespace (research:<task id>)",
        )

        # 3. Replay to the checkpoint where the agent waited for a human.
        fold = audit.fold(thread_id)
        waiting = sorted(
            cid
            for (ns, cid), writes in fold.writes.items()
            if ns == "" and any(ch == "__interrupt__" for _p, ch, _v in writes.values())
        )
        if not claims.check(bool(waiting), "the log records the interrupt as a pending write"):
            return _finish(claims, console, json_out, resolved, embedded)
        target = waiting[0]
        replayed = fold.tuple("", target, audit.serde)
        live = saver.get_tuple(_config(thread_id, target))
        say(state_tree(replayed, f"{thread_id} replayed from its log"))
        step = replayed.metadata.get("step")
        claims.check(
            replayed == live,
            f"replayed state == live state at checkpoint {target} (step {step}, paused in review)",
        )
        every = [
            fold.tuple(ns, cid, audit.serde)
            == saver.get_tuple(
                {
                    "configurable": {
                        "thread_id": thread_id,
                        "checkpoint_ns": ns,
                        "checkpoint_id": cid,
                    }
                }
            )
            for ns, cid in fold.checkpoints
        ]
        claims.check(
            all(every),
            f"all {len(every)} checkpoints of {thread_id} replay from the log to their live state",
        )

        # 4. Fork there, then continue the fork with the other decision.
        head_before = _head(saver, thread_id)
        answer_before = graph.get_state(_config(thread_id)).values.get("answer")
        fork_id = f"{thread_id}-fork"
        audit.fork(thread_id, target, fork_id)
        forked = saver.get_tuple(_config(fork_id))
        claims.check(
            forked is not None
            and forked.config["configurable"]["checkpoint_id"] == target
            and forked.checkpoint == replayed.checkpoint
            and forked.metadata == replayed.metadata
            and forked.pending_writes == []
            and forked.parent_config is not None
            and replayed.parent_config is not None
            and forked.parent_config["configurable"]["checkpoint_id"]
            == replayed.parent_config["configurable"]["checkpoint_id"],
            f"fork {fork_id} starts at {short(target)}: its get_tuple == the replayed state,"
            " without the pending writes (the interrupt and the human's answer stay behind)",
        )
        # resumed as any thread is, by its id: review runs again and asks again
        again = graph.invoke(None, _config(fork_id))
        claims.check(
            bool(again.get("__interrupt__")),
            "resuming the fork re-ran review: interrupt() asked again (the original answer"
            " is not reused)",
        )
        final = graph.invoke(Command(resume={"approved": False}), _config(fork_id))
        claims.check(
            final.get("verdict") == "rejected" and final.get("answer") != answer_before,
            "fork diverged: the original published its draft, the fork withdrew it",
        )
        claims.check(
            _head(saver, thread_id) == head_before
            and graph.get_state(_config(thread_id)).values.get("answer") == answer_before,
            f"{thread_id} itself is untouched by the fork",
        )

        # 5. The log can rebuild every view.
        written = [*threads, fork_id]
        report = audit.verify(written)
        for d in report.differences:
            say(f"  {escape(str(d))}")
        claims.check(
            report.ok and len(report.checked) == len(written),
            f"views rebuilt from the logs of all {len(written)} threads equal the live views",
        )
        return _finish(claims, console, json_out, resolved, embedded, threads, fork_id)
    finally:
        client.close()


def _finish(
    claims: Claims,
    console: Console,
    json_out: bool,
    url: str,
    embedded: Any,
    threads: list[str] | None = None,
    fork_id: str | None = None,
) -> bool:
    failed = sum(1 for ok, _ in claims.made if not ok)
    if json_out:
        doc = {
            "ok": claims.ok,
            "url": redact_url(url),
            "threads": threads or [],
            "fork": fork_id,
            "claims": [{"ok": ok, "claim": text} for ok, text in claims.made],
        }
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
        return claims.ok
    if failed:
        console.print(f"[red]{failed} of {len(claims.made)} claims failed[/]")
    else:
        console.print(f"[green]all {len(claims.made)} claims hold[/]")
    if embedded is not None:
        console.print(
            escape(
                f"the embedded server keeps running (data in {embedded.data_dir}); "
                "stop it with: streamstate server --stop"
            )
        )
    return claims.ok
