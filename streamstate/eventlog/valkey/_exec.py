"""Executing planned calls against a Valkey client: the only I/O of the Valkey backend.

Client exceptions are translated in one place (:func:`map_errors`). Connection errors
and timeouts are retried with bounded, jittered backoff, and only for idempotent calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import valkey
import valkey.asyncio
from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)
from valkey import exceptions as vx

from streamstate.errors import BackendError, BackendUnavailable, ConfigError, ScriptError
from streamstate.eventlog.valkey._core import Call, Command, ScriptCall


@dataclass(frozen=True)
class RetryPolicy:
    """Retry budget for connection errors and timeouts.

    Args:
        attempts: Total tries, the first included.
        budget: Seconds after which no new try starts.
        max_wait: Upper bound of one jittered exponential backoff wait.
    """

    attempts: int = 5
    budget: float = 10.0
    max_wait: float = 1.0
    initial_wait: float = 0.02


class _Transient(Exception):
    """A retryable failure, carrying the translated error."""

    def __init__(self, error: BackendUnavailable) -> None:
        super().__init__(str(error))
        self.error = error


def _gave_up(
    exc: _Transient, attempts: int, started: float, policy: RetryPolicy
) -> BackendUnavailable:
    """The final error says what was tried, not only what failed last."""
    elapsed = time.monotonic() - started
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    return BackendUnavailable(
        f"gave up after {tries} in {elapsed:.1f} s (retry budget {policy.attempts} attempts"
        f" / {policy.budget:g} s): {exc.error}"
    )


@contextlib.contextmanager
def map_errors(call: Call) -> Iterator[None]:
    """Translate valkey-py exceptions into streamstate's hierarchy."""
    try:
        yield
    except (vx.AuthenticationError, vx.AuthorizationError) as exc:
        raise BackendError(f"authentication failed: {exc}") from exc
    except vx.MaxConnectionsError as exc:
        # the pool is full, not the server down: retrying would only add load
        raise BackendError(
            f"connection pool exhausted ({exc}); raise pool_size or use a blocking pool"
        ) from exc
    except (vx.ConnectionError, vx.TimeoutError, OSError) as exc:
        raise _Transient(BackendUnavailable(f"{type(exc).__name__}: {exc}")) from exc
    except (vx.ClusterDownError, vx.TryAgainError, vx.ReadOnlyError) as exc:
        # a failover or slot migration in progress: the call did not run; try again
        raise _Transient(BackendUnavailable(f"{type(exc).__name__}: {exc}")) from exc
    except vx.NoScriptError:
        raise
    except vx.ResponseError as exc:
        msg = str(exc)
        if isinstance(call, ScriptCall):
            raise ScriptError(f"script {call.script.name} failed: {msg}") from exc
        raise BackendError(f"{call.args[0]} failed: {msg}") from exc
    except vx.ValkeyError as exc:
        raise BackendError(f"{type(exc).__name__}: {exc}") from exc


def is_cluster(client: Any) -> bool:
    import valkey.asyncio.cluster
    import valkey.cluster

    return isinstance(client, (valkey.cluster.ValkeyCluster, valkey.asyncio.cluster.ValkeyCluster))


class _SentOnce:
    """Remembers side calls already applied (registry adds are idempotent and last for
    good, or for their ``valid_for``), so a cluster put costs one round trip after a
    thread's first."""

    limit = 100_000

    def __init__(self) -> None:
        self.seen: dict[tuple[Any, ...], float] = {}

    @staticmethod
    def _key(call: Call) -> tuple[Any, ...]:
        if isinstance(call, Command):
            return call.args
        return (call.script.sha, *call.keys, *call.args)

    def pending(self, call: Call) -> list[Call]:
        if not isinstance(call, ScriptCall) or not call.before:
            return []
        now = time.monotonic()
        return [c for c in call.before if self.seen.get(self._key(c), 0.0) <= now]

    def done(self, call: Call) -> None:
        if len(self.seen) >= self.limit:
            self.seen.clear()
        valid = call.valid_for if isinstance(call, ScriptCall) else None
        self.seen[self._key(call)] = math.inf if valid is None else time.monotonic() + valid

    def settled(self, command: Command) -> None:
        """A deleted key loses its remembered adds: a run registry deleted by
        ``delete_for_runs`` must be written again by the next put of that run."""
        if self.seen and command.args and str(command.args[0]).upper() in ("DEL", "UNLINK"):
            gone = set(command.args[1:])
            # a side call's key[1] is the key it writes (command or script)
            self.seen = {key: until for key, until in self.seen.items() if key[1] not in gone}


def capped_block_ms(client: Any, block_ms: int) -> int:
    """A blocking read must return before the client's socket timeout fires."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}) or {}
    timeout = kwargs.get("socket_timeout")
    if not timeout:
        return block_ms
    return max(1, min(block_ms, int(timeout * 1000 * 0.8)))


def check_client(client: Any) -> None:
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}) or {}
    if kwargs.get("decode_responses"):
        raise ConfigError(
            "decode_responses=True: streamstate stores binary payloads; "
            "pass a client created with decode_responses=False"
        )


def _retrying_kwargs(policy: RetryPolicy, started: float) -> dict[str, Any]:
    """Tenacity settings for the retries after a first failed try at ``started``."""
    remaining = max(0.0, policy.budget - (time.monotonic() - started))
    return {
        "stop": stop_after_attempt(max(1, policy.attempts - 1)) | stop_after_delay(remaining),
        "wait": wait_random_exponential(multiplier=policy.initial_wait, max=policy.max_wait),
        "retry": retry_if_exception_type(_Transient),
        "reraise": True,
    }


def _may_retry(policy: RetryPolicy, started: float) -> bool:
    return policy.attempts > 1 and time.monotonic() - started < policy.budget


def _first_wait(policy: RetryPolicy) -> float:
    """Jittered pause before the first retry (tenacity waits only between its own tries)."""
    return random.uniform(0, policy.initial_wait)


class ValkeyExecutor:
    """Runs calls on a sync client."""

    def __init__(self, client: valkey.Valkey, retry: RetryPolicy | None = None) -> None:
        check_client(client)
        self.client = client
        self.retry = retry or RetryPolicy()
        self.sent = _SentOnce()

    def run(self, call: Call) -> Any:
        for command in self.sent.pending(call):
            self.run(command)
            self.sent.done(command)
        started = time.monotonic()
        try:
            return self._once(call)  # the common case pays nothing for retries
        except _Transient as first:
            if not call.idempotent or not _may_retry(self.retry, started):
                raise _gave_up(first, 1, started, self.retry) from first.__cause__
        attempts = 1
        time.sleep(_first_wait(self.retry))
        try:
            for attempt in Retrying(**_retrying_kwargs(self.retry, started)):
                attempts += 1
                with attempt:
                    return self._once(call)
        except _Transient as exc:
            raise _gave_up(exc, attempts, started, self.retry) from exc.__cause__
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, call: Call) -> Any:
        with map_errors(call):
            if isinstance(call, Command):
                reply = self.client.execute_command(*call.args)
                self.sent.settled(call)
                return reply
            try:
                return self.client.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
            except vx.NoScriptError:
                return self.client.eval(call.script.source, len(call.keys), *call.keys, *call.args)


class AsyncValkeyExecutor:
    """Runs calls on an asyncio client."""

    def __init__(self, client: valkey.asyncio.Valkey, retry: RetryPolicy | None = None) -> None:
        check_client(client)
        self.client = client
        self.retry = retry or RetryPolicy()
        self.sent = _SentOnce()

    async def run(self, call: Call) -> Any:
        for command in self.sent.pending(call):
            await self.run(command)
            self.sent.done(command)
        started = time.monotonic()
        try:
            return await self._once(call)
        except _Transient as first:
            if not call.idempotent or not _may_retry(self.retry, started):
                raise _gave_up(first, 1, started, self.retry) from first.__cause__
        attempts = 1
        await asyncio.sleep(_first_wait(self.retry))
        try:
            async for attempt in AsyncRetrying(**_retrying_kwargs(self.retry, started)):
                attempts += 1
                with attempt:
                    return await self._once(call)
        except _Transient as exc:
            raise _gave_up(exc, attempts, started, self.retry) from exc.__cause__
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, call: Call) -> Any:
        with map_errors(call):
            if isinstance(call, Command):
                reply = await self.client.execute_command(*call.args)
                self.sent.settled(call)
                return reply
            try:
                return await self.client.evalsha(
                    call.script.sha, len(call.keys), *call.keys, *call.args
                )
            except vx.NoScriptError:
                return await self.client.eval(
                    call.script.source, len(call.keys), *call.keys, *call.args
                )
