"""Peers for ``bench peers``: a local PostgreSQL, and the checkpointers under test.

Each peer is built once per run; a peer whose backend cannot run is recorded with the
reason instead of failing the bench.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import valkey
import valkey.asyncio

from bench import checkpoint_savers
from streamstate.server import free_port


def _pg_bin_dirs() -> list[Path]:
    return sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _install_postgres() -> str:
    """Install Debian's ``postgresql`` when we may (root, apt); '' or why not."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "PostgreSQL not installed (apt-get install -y postgresql)"
    print("[bench] PostgreSQL not found: apt-get install -y postgresql ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "postgresql"],
            check=True,
            capture_output=True,
            env=env,
            timeout=600,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        tail = detail.decode(errors="replace").strip().splitlines()[-1:] or [str(exc)]
        return f"PostgreSQL could not be installed: {tail[0]}"
    return "" if _pg_bin_dirs() else "PostgreSQL installed but no server binaries found"


@dataclass
class Postgres:
    """A running throwaway PostgreSQL cluster (``conninfo``), or why there is none."""

    conninfo: str | None = None
    note: str = ""
    version: str = ""


def _as_postgres(args: list[str]) -> list[str]:
    """Run ``args`` as the postgres user when we are root (initdb refuses root)."""
    if os.geteuid() == 0 and shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *args]
    return args


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """initdb + pg_ctl start on a temp dir and a free port; stopped and removed on exit."""
    if not _pg_bin_dirs():
        note = _install_postgres()
        if note:
            yield Postgres(note=note)
            return
    bindir = _pg_bin_dirs()[0]
    tmp = tempfile.mkdtemp(prefix="ss-bench-pg-")
    started = False
    try:
        if os.geteuid() == 0:
            shutil.chown(tmp, "postgres")
        port = free_port()
        data = f"{tmp}/data"
        subprocess.run(
            _as_postgres([f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres"]),
            check=True,
            capture_output=True,
            timeout=120,
        )
        opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1"
        subprocess.run(
            _as_postgres(
                [f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-l", f"{tmp}/log", "-w", "start"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        started = True
        version = subprocess.run(
            [f"{bindir}/postgres", "--version"], capture_output=True, text=True
        ).stdout.strip()
        yield Postgres(f"postgresql://postgres@127.0.0.1:{port}/postgres", version=version)
    except (OSError, subprocess.SubprocessError) as exc:
        yield Postgres(note=f"PostgreSQL could not start: {type(exc).__name__}: {exc}")
    finally:
        if started:
            subprocess.run(
                _as_postgres([f"{bindir}/pg_ctl", "-D", f"{tmp}/data", "-m", "fast", "stop"]),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Peer:
    """One checkpointer under test: a saver, or the reason it could not be built."""

    name: str
    saver: Any = None
    error: str = ""
    valkey_backed: bool = False
    size: Callable[[], int] | None = None  # bytes the backend holds (file or database)
    closers: list[Callable[[], Any]] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                close()


def _pool(url: str) -> valkey.ConnectionPool:
    return valkey.ConnectionPool.from_url(url, max_connections=32, decode_responses=False)


def _guard(name: str, build: Callable[[Peer], None], **kw: Any) -> Peer:
    peer = Peer(name, **kw)
    try:
        build(peer)
    except Exception as exc:  # a peer that cannot run is reported, not fatal
        peer.close()
        peer.saver, peer.error = None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return peer


def sync_peers(url: str, pg: Postgres, workdir: str) -> list[Peer]:
    """streamstate, aws, hotkv, plainredis, in-memory, sqlite, postgres, redis — built, or
    with an error."""

    def streamstate(p: Peer) -> None:
        from streamstate.adapters.valkey_saver import ValkeySaver

        pool = _pool(url)
        p.saver, p.closers = ValkeySaver(valkey.Valkey(connection_pool=pool)), [pool.disconnect]

    def aws(p: Peer) -> None:
        from langgraph_checkpoint_aws.checkpoint.valkey import ValkeySaver

        pool = _pool(url)
        p.saver, p.closers = ValkeySaver(valkey.Valkey(connection_pool=pool)), [pool.disconnect]

    def opened_by(make: Callable[[], checkpoint_savers.Checkpointer]) -> Callable[[Peer], None]:
        """A peer opened as ``bench checkpoint`` opens it (its own client library)."""

        def build(p: Peer) -> None:
            cp = make()
            if not cp.installed():
                raise RuntimeError(f"{cp.label} is not installed")
            opened = cp.open_sync(url, None)
            p.saver, p.closers = opened.saver, [opened.close]

        return build

    def memory(p: Peer) -> None:
        from langgraph.checkpoint.memory import InMemorySaver

        p.saver = InMemorySaver()

    def sqlite(p: Peer) -> None:
        from langgraph.checkpoint.sqlite import SqliteSaver

        path = f"{workdir}/checkpoints.sqlite"
        conn = sqlite3.connect(path, check_same_thread=False)
        p.saver, p.closers = SqliteSaver(conn), [conn.close]
        p.saver.setup()

        def size() -> int:
            with p.saver.lock:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                pages = conn.execute("PRAGMA page_count").fetchone()[0]
                free = conn.execute("PRAGMA freelist_count").fetchone()[0]
                return (pages - free) * conn.execute("PRAGMA page_size").fetchone()[0]

        p.size = size

    def postgres(p: Peer) -> None:
        if pg.conninfo is None:
            raise RuntimeError(pg.note)
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row

        conn = psycopg.connect(
            pg.conninfo, autocommit=True, prepare_threshold=0, row_factory=dict_row
        )
        p.saver, p.closers = PostgresSaver(conn), [conn.close]
        p.saver.setup()

        def size() -> int:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_database_size(current_database()) AS n")
                row = cur.fetchone()
                return int(row["n"]) if row else 0

        p.size = size

    def redis(p: Peer) -> None:
        from langgraph.checkpoint.redis import RedisSaver

        saver = RedisSaver(redis_url=url.replace("valkey://", "redis://", 1))
        p.closers = [lambda: saver._redis.close()]
        saver.setup()  # needs RediSearch (FT.*) and RedisJSON (JSON.*)
        p.saver = saver

    return [
        _guard("streamstate", streamstate, valkey_backed=True),
        _guard("aws", aws, valkey_backed=True),
        _guard("hotkv", opened_by(checkpoint_savers.hotkv), valkey_backed=True),
        _guard("plainredis", opened_by(checkpoint_savers.plainredis), valkey_backed=True),
        _guard("memory", memory),
        _guard("sqlite", sqlite),
        _guard("postgres", postgres),
        _guard("redis", redis, valkey_backed=True),
    ]


@contextlib.asynccontextmanager
async def async_peers(url: str, pg: Postgres, workdir: str) -> Any:
    """The asyncio savers: streamstate, aws, hotkv, plainredis, in-memory, aiosqlite, async
    postgres."""
    peers: list[Peer] = []
    stack = contextlib.AsyncExitStack()
    async with stack:

        async def build(name: str, make: Callable[[], Any]) -> None:
            try:
                peers.append(Peer(name, saver=await make()))
            except Exception as exc:
                peers.append(Peer(name, error=f"{type(exc).__name__}: {str(exc)[:200]}"))

        def apool() -> valkey.asyncio.ConnectionPool:
            pool = valkey.asyncio.ConnectionPool.from_url(url, max_connections=32)
            stack.push_async_callback(pool.disconnect)
            return pool

        async def streamstate() -> Any:
            from streamstate.adapters.valkey_saver import AsyncValkeySaver

            return AsyncValkeySaver(valkey.asyncio.Valkey(connection_pool=apool()))

        async def aws() -> Any:
            from langgraph_checkpoint_aws.checkpoint.valkey import AsyncValkeySaver

            return AsyncValkeySaver(valkey.asyncio.Valkey(connection_pool=apool()))

        def opened_by(make: Callable[[], checkpoint_savers.Checkpointer]) -> Callable[[], Any]:
            async def build() -> Any:
                cp = make()
                if not cp.installed():
                    raise RuntimeError(f"{cp.label} is not installed")
                opened = cp.open_async(url, None)
                stack.push_async_callback(opened.close)
                return opened.saver

            return build

        async def memory() -> Any:
            from langgraph.checkpoint.memory import InMemorySaver

            return InMemorySaver()

        async def sqlite() -> Any:
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

            saver = await stack.enter_async_context(
                AsyncSqliteSaver.from_conn_string(f"{workdir}/async.sqlite")
            )
            await saver.setup()
            return saver

        async def postgres() -> Any:
            if pg.conninfo is None:
                raise RuntimeError(pg.note)
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

            saver = await stack.enter_async_context(
                AsyncPostgresSaver.from_conn_string(pg.conninfo)
            )
            await saver.setup()
            return saver

        for name, make in [
            ("streamstate", streamstate),
            ("aws", aws),
            ("hotkv", opened_by(checkpoint_savers.hotkv)),
            ("plainredis", opened_by(checkpoint_savers.plainredis)),
            ("memory", memory),
            ("sqlite", sqlite),
            ("postgres", postgres),
        ]:
            await build(name, make)
        yield peers
