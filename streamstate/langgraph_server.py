"""Ready factories for LangGraph Server (``langgraph dev``, ``langgraph up``, LangSmith
deployments): name them in ``langgraph.json`` and the server keeps its threads and its
long-term memory in Valkey::

    {
      "graphs": {"agent": "./agent.py:graph"},
      "checkpointer": {"path": "streamstate.langgraph_server.checkpointer"},
      "store": {"path": "streamstate.langgraph_server.store"}
    }

The server imports the object a ``path`` names, calls it and enters the async context
manager it returns at startup (once per event-loop thread), uses the yielded
``AsyncValkeySaver`` / ``AsyncValkeyStore`` for every run, and exits it at shutdown,
which closes the connections. The saver has every optional method the server probes
(``adelete_thread``, ``adelete_for_runs``, ``acopy_thread``, ``aprune``), so thread
deletion, ``multitask_strategy="rollback"``, thread copies and TTL sweeps with
``keep_latest`` all work.

Settings come from the environment (the ``env`` file of ``langgraph.json`` works):

=================================  ==================================================
``STREAMSTATE_URL``                 ``valkey://``, ``valkeys://``, ``redis://``,
                                    ``rediss://`` or ``unix://`` URL (``?cluster=true``
                                    for a Valkey Cluster). Unset: the embedded server,
                                    data in ``./.streamstate``.
``STREAMSTATE_TTL_SECONDS``         Threads expire this many seconds after their last
                                    write (every key of a thread together). Unset: never.
``STREAMSTATE_STORE_TTL_SECONDS``   Default TTL of store items put without ``ttl=``.
                                    Unset: never.
``STREAMSTATE_REFRESH_ON_READ``     ``true`` / ``false``: reading a thread or an item
                                    restarts its TTL. Default: false for threads, true
                                    for store items (LangGraph's default).
``STREAMSTATE_PREFIX``              Key prefix (default ``ss``).
``STREAMSTATE_POOL_SIZE``           Connections per factory (default 10).
``STREAMSTATE_STORE_INDEX``         JSON of the store's semantic search settings
                                    (:class:`~streamstate.ValkeyIndexConfig`), e.g.
                                    ``{"dims": 1536, "embed": "openai:text-embedding-3-small"}``;
                                    ``embed`` may also name a function,
                                    ``"./embed.py:embed_texts"`` or
                                    ``"my_pkg.embed:embed_texts"``. Unset: no vectors.
=================================  ==================================================

A bad value raises :class:`~streamstate.errors.ConfigError` naming the variable, when
the server starts.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamstate.errors import ConfigError

__all__ = ["ServerSettings", "checkpointer", "store"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class ServerSettings:
    """The factories' settings, read from ``STREAMSTATE_*`` environment variables."""

    url: str | None = None
    ttl_seconds: float | None = None
    store_ttl_seconds: float | None = None
    refresh_on_read: bool | None = None
    prefix: str = "ss"
    pool_size: int = 10
    store_index: dict[str, Any] | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """Read the settings; raises ``ConfigError`` naming a variable whose value is bad."""
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def seconds(name: str) -> float | None:
            value = text(name)
            if value is None:
                return None
            try:
                number = float(value)
            except ValueError:
                number = -1.0
            if not number > 0 or number == float("inf"):
                raise ConfigError(f"{name} must be a number of seconds > 0, got {value!r}")
            return number

        refresh = text("STREAMSTATE_REFRESH_ON_READ")
        if refresh is not None and refresh.lower() not in (*_TRUE, *_FALSE):
            raise ConfigError(f"STREAMSTATE_REFRESH_ON_READ must be true or false, got {refresh!r}")
        pool = text("STREAMSTATE_POOL_SIZE") or "10"
        if not pool.isdigit() or int(pool) < 1:
            raise ConfigError(f"STREAMSTATE_POOL_SIZE must be a whole number >= 1, got {pool!r}")
        return cls(
            url=text("STREAMSTATE_URL"),
            ttl_seconds=seconds("STREAMSTATE_TTL_SECONDS"),
            store_ttl_seconds=seconds("STREAMSTATE_STORE_TTL_SECONDS"),
            refresh_on_read=None if refresh is None else refresh.lower() in _TRUE,
            prefix=text("STREAMSTATE_PREFIX") or "ss",
            pool_size=int(pool),
            store_index=_index(text("STREAMSTATE_STORE_INDEX")),
        )

    def store_ttl(self) -> dict[str, Any] | None:
        """The store's ``TTLConfig`` (minutes, as LangGraph counts them)."""
        ttl: dict[str, Any] = {}
        if self.store_ttl_seconds is not None:
            ttl["default_ttl"] = self.store_ttl_seconds / 60
        if self.refresh_on_read is not None:
            ttl["refresh_on_read"] = self.refresh_on_read
        return ttl or None


def _index(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        index = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"STREAMSTATE_STORE_INDEX is not valid JSON: {exc}") from None
    if not isinstance(index, dict):
        raise ConfigError('STREAMSTATE_STORE_INDEX must be a JSON object, e.g. {"dims": 1536, ...}')
    embed = index.get("embed")
    if isinstance(embed, str) and _names_function(embed):
        index["embed"] = _load_function(embed)
    return index


def _names_function(embed: str) -> bool:
    """``./embed.py:fn`` or ``my_pkg.embed:fn`` (not a provider string ``openai:model``)."""
    where, sep, attr = embed.rpartition(":")
    return bool(sep and attr) and ("/" in where or where.endswith(".py") or "." in where)


def _load_function(spec: str) -> Any:
    where, _, attr = spec.rpartition(":")
    try:
        if "/" in where or where.endswith(".py"):
            path = Path(where).expanduser().resolve()
            name = f"_streamstate_embed_{abs(hash(str(path)))}"
            module = sys.modules.get(name)
            if module is None:
                loader = importlib.util.spec_from_file_location(name, path)
                if loader is None or loader.loader is None:
                    raise ConfigError(f"STREAMSTATE_STORE_INDEX embed: no Python file at {path}")
                module = importlib.util.module_from_spec(loader)
                loader.loader.exec_module(module)
                sys.modules[name] = module
        else:
            module = importlib.import_module(where)
    except (ImportError, OSError) as exc:
        raise ConfigError(f"STREAMSTATE_STORE_INDEX embed {spec!r}: {exc}") from exc
    function = getattr(module, attr, None)
    if not callable(function):
        raise ConfigError(f"STREAMSTATE_STORE_INDEX embed {spec!r}: no function {attr!r} there")
    return function


@contextlib.asynccontextmanager
async def checkpointer() -> AsyncIterator[Any]:
    """An :class:`~streamstate.AsyncValkeySaver` configured from the environment, on a
    connection pool of its own that is closed on exit."""
    from streamstate.adapters.valkey_saver import AsyncValkeySaver

    settings = ServerSettings.from_env()
    async with AsyncValkeySaver.from_conn_string(
        settings.url,
        ttl_seconds=settings.ttl_seconds,
        pool_size=settings.pool_size,
        prefix=settings.prefix,
        refresh_on_read=bool(settings.refresh_on_read),
    ) as saver:
        yield saver


@contextlib.asynccontextmanager
async def store() -> AsyncIterator[Any]:
    """An :class:`~streamstate.AsyncValkeyStore` configured from the environment, set up
    (its vector index loaded) before use; on exit its index snapshot is saved and its
    connections closed."""
    from streamstate.adapters.store import AsyncValkeyStore
    from streamstate.connection import async_client_from_url
    from streamstate.eventlog.keys import Keyspace

    settings = ServerSettings.from_env()
    keyspace = Keyspace(settings.prefix)
    client = async_client_from_url(settings.url, pool_size=settings.pool_size)
    try:
        memory = AsyncValkeyStore(
            client,  # type: ignore[arg-type]  # a cluster client works too
            index=settings.store_index,  # type: ignore[arg-type]
            ttl=settings.store_ttl(),  # type: ignore[arg-type]
            keyspace=keyspace,
        )
        await memory.setup()
        yield memory
        await memory.close()
    finally:
        await client.aclose()
