"""What the AWS backends share: the steps their flows yield, the runner that executes
them on a boto3 client (sync, or in worker threads for asyncio), and the client factory.

The AgentCore Memory log (:mod:`streamstate.eventlog.agentcore`) and the Bedrock
session log (:mod:`streamstate.eventlog.bedrock`) keep all their logic in flows
(generators, see :mod:`streamstate.eventlog._drive`) that yield these steps. Each
service only brings the translation of botocore's exceptions into its errors
(:mod:`streamstate.errors`), the one place that translates them.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from streamstate.errors import AwsError, ConfigError

NOT_FOUND = "ResourceNotFoundException"
RETRYABLE_CONFLICT = "RetryableConflictException"

# -- steps a flow yields -----------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One boto3 client call, planned."""

    method: str
    """The client method (``create_event``, ``put_invocation_step``, ...)."""
    params: dict[str, Any]
    missing_ok: bool = False
    """Answer ``None`` instead of raising for ResourceNotFoundException (deletes)."""


@dataclass(frozen=True)
class Parallel:
    """Independent calls the runner may make concurrently; the reply is the list of
    their replies, in call order.

    With ``settle``, a call that fails with an :class:`~streamstate.errors.AwsError`
    answers that error instead of raising it, so a flow can treat a miss per item.
    """

    calls: tuple[Call, ...]
    settle: bool = False


@dataclass(frozen=True)
class Sleep:
    """Wait; the reply is the monotonic clock afterwards."""

    seconds: float


@dataclass(frozen=True)
class Clock:
    """The reply is a clock reading (flows never read clocks themselves): the
    monotonic clock in seconds, or with ``wall_us`` the wall clock in microseconds."""

    wall_us: bool = False


CLOCK = Clock()
NOW = Clock(wall_us=True)

Translate = Callable[[Exception, Call], Exception]
"""A service's translation of a botocore ``ClientError`` or ``BotoCoreError``."""


# -- the executor: the only place that touches the client --------------------------------


class Runner:
    """Executes planned steps on a boto3 client, sync (``run``) or in worker threads
    (``arun``); parallel calls of ``run`` go to a small pool.

    Retries: botocore's ``standard`` and ``adaptive`` modes retry throttling (429),
    5xx and the modeled-retryable RetryableConflictException (409), reusing the
    request's ``clientToken``. ``legacy`` mode skips the 409, so for a client in that
    mode the runner retries it itself (same parameters, hence the same token).

    Args:
        client: The boto3 client.
        translate: The service's error translation.
        name: Names the pool's threads.
        conflict_attempts: Attempts at a RetryableConflictException in ``legacy`` mode.
        max_workers: Threads of the pool.
    """

    def __init__(
        self,
        client: Any,
        translate: Translate,
        *,
        name: str = "aws",
        conflict_attempts: int = 5,
        max_workers: int = 8,
    ) -> None:
        self.client = client
        self.translate = translate
        self.name = name
        config = getattr(getattr(client, "meta", None), "config", None)
        mode = (getattr(config, "retries", None) or {}).get("mode", "legacy")
        self.own_attempts = 1 if mode in ("standard", "adaptive") else conflict_attempts
        self._max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def call(self, call: Call) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        for attempt in range(self.own_attempts):
            try:
                return getattr(self.client, call.method)(**call.params)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == NOT_FOUND and call.missing_ok:
                    return None
                if code == RETRYABLE_CONFLICT and attempt + 1 < self.own_attempts:
                    time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
                    continue
                raise self.translate(exc, call) from exc
            except BotoCoreError as exc:
                raise self.translate(exc, call) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _settled(self, call: Call) -> Any:
        try:
            return self.call(call)
        except AwsError as exc:
            return exc

    def run(self, step: Any) -> Any:
        if isinstance(step, Call):
            return self.call(step)
        if isinstance(step, Parallel):
            one = self._settled if step.settle else self.call
            if len(step.calls) <= 1:
                return [one(c) for c in step.calls]
            return list(self._executor().map(one, step.calls))
        if isinstance(step, Sleep):
            time.sleep(max(0.0, step.seconds))
            return time.monotonic()
        if isinstance(step, Clock):
            return _read(step)
        raise TypeError(f"cannot run {step!r}")

    async def arun(self, step: Any) -> Any:
        if isinstance(step, Call):
            return await asyncio.to_thread(self.call, step)
        if isinstance(step, Parallel):
            one = self._settled if step.settle else self.call
            return list(await asyncio.gather(*(asyncio.to_thread(one, c) for c in step.calls)))
        if isinstance(step, Sleep):
            await asyncio.sleep(max(0.0, step.seconds))
            return time.monotonic()
        if isinstance(step, Clock):
            return _read(step)
        raise TypeError(f"cannot run {step!r}")

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self._max_workers, thread_name_prefix=f"streamstate-{self.name}"
                )
                # a runner dropped without close() must not leave idle threads behind
                weakref.finalize(self, self._pool.shutdown, wait=False)
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)


class SyncRunning:
    """For a sync flow shell (``FlowEventLog``): ``run`` is its runner's."""

    runner: Runner

    def run(self, step: Any) -> Any:
        return self.runner.run(step)


class AsyncRunning:
    """For an asyncio flow shell (``AsyncFlowEventLog``): ``run`` is its runner's, in
    worker threads."""

    runner: Runner

    async def run(self, step: Any) -> Any:
        return await self.runner.arun(step)


def _read(clock: Clock) -> Any:
    return time.time_ns() // 1000 if clock.wall_us else time.monotonic()


def operation_name(method: str) -> str:
    """The API operation a client method calls (``create_event``: ``CreateEvent``)."""
    return "".join(part.capitalize() for part in method.split("_"))


# -- client construction -----------------------------------------------------------------


def secret(value: Any) -> Any:
    """The plain value of a pydantic ``SecretStr`` (anything else as it is)."""
    getter = getattr(value, "get_secret_value", None)
    return getter() if callable(getter) else value


def make_client(
    service: str,
    *,
    client: Any = None,
    session: Any = None,
    region_name: str | None = None,
    credentials_profile_name: str | None = None,
    aws_access_key_id: Any = None,
    aws_secret_access_key: Any = None,
    aws_session_token: Any = None,
    endpoint_url: str | None = None,
    config: Any = None,
    **client_kwargs: Any,
) -> Any:
    """A boto3 client of ``service`` from the usual boto3 options, or the one given.

    A client we build uses botocore's ``standard`` retry mode with 5 attempts unless
    ``config`` says otherwise (``config`` is merged over ours).

    Raises:
        ConfigError: ``client`` combined with options that would build one,
            ``session`` combined with ``credentials_profile_name`` or with credentials,
            or a key id without its secret (or the reverse).
    """
    if (aws_access_key_id is None) != (aws_secret_access_key is None):
        raise ConfigError("aws_access_key_id and aws_secret_access_key must be given together")
    options = {
        "region_name": region_name,
        "aws_access_key_id": secret(aws_access_key_id),
        "aws_secret_access_key": secret(aws_secret_access_key),
        "aws_session_token": secret(aws_session_token),
        "endpoint_url": endpoint_url,
        **client_kwargs,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if client is not None:
        extra = sorted(options) + (["session"] if session is not None else [])
        extra += ["config"] if config is not None else []
        extra += ["credentials_profile_name"] if credentials_profile_name else []
        if extra:
            raise ConfigError(f"pass either client or options to build one, not both: {extra}")
        return client
    import boto3
    from botocore.config import Config

    if session is not None and credentials_profile_name:
        raise ConfigError("pass either session or credentials_profile_name, not both")
    if session is not None and aws_access_key_id is not None:
        raise ConfigError("pass credentials or a boto3 session, not both")
    if session is None:
        session = boto3.session.Session(profile_name=credentials_profile_name or None)
    merged = Config(
        retries={"mode": "standard", "total_max_attempts": 5},
        user_agent_extra="streamstate",
    )
    if config is not None:
        merged = merged.merge(config)
    return session.client(service, config=merged, **options)
