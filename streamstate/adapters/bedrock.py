"""LangGraph checkpointers on Amazon Bedrock session management.

``BedrockSessionSaver`` and ``AsyncBedrockSessionSaver`` take the constructor of
langgraph-checkpoint-aws's classes, so its examples run after changing only the import::

    from streamstate import BedrockSessionSaver

    saver = BedrockSessionSaver(region_name="us-west-2")
    session_id = saver.session_client.create_session().session_id
    graph = builder.compile(checkpointer=saver)
    graph.invoke(1, {"configurable": {"thread_id": session_id}})

A ``thread_id`` is a Bedrock session: the session whose id it is, or, for any other id
(``"session-1"``, or a UUID no session has), a session the saver creates on the first
put and finds again by ``sessionMetadata`` (see :mod:`streamstate.eventlog.bedrock`).
Both classes have every sync and async method; the async ones run each boto3 call in a
worker thread, so they never block the event loop. They differ only in their
``session_client``: ``create_session()`` returns the session on the sync class and a
coroutine on the async one.

Calls per operation (a thread this process has resolved; W = writes steps of the
checkpoint, one per task; batches of independent calls go out concurrently):

=========================  =============================================================
put                        PutInvocationStep + CreateInvocation (the checkpoint's writes
                           invocation; + 1 the first time a process writes a namespace)
put_writes                 PutInvocationStep (a duplicate: + GetInvocationStep)
get_tuple (checkpoint id)  GetInvocationStep + ListInvocationSteps (one round trip),
                           then W GetInvocationStep (one round trip)
get_tuple (latest)         + 1 ListInvocationSteps (25 newest steps of the namespace)
list (one namespace)       per 1000 checkpoints 1 ListInvocationSteps; per checkpoint
                           as get_tuple with an id
list (all namespaces)      ListInvocationSteps of the whole session (1000 per page),
                           1 GetInvocationStep per checkpoint and per write
delete_thread              GetSession/ListSessions to find its sessions, then
                           EndSession + DeleteSession each
copy_thread                list + 1 GetInvocationStep per source entry, then as put /
                           put_writes per entry into the target
prune keep_latest          list the session + 1 PutInvocationStep per dropped checkpoint
delete_for_runs            every session: list it, get every checkpoint, retract matches
first use of a thread id   GetSession (a session id); otherwise ListSessions pages +
                           GetSession per session not seen before (+ CreateSession and a
                           second scan when the saver creates the alias session)
=========================  =============================================================

IAM actions (resource: the sessions, ``arn:aws:bedrock:<region>:<account>:session/*``):
both classes need ``bedrock:CreateSession``, ``GetSession``, ``ListSessions``,
``EndSession``, ``DeleteSession``, ``CreateInvocation``, ``PutInvocationStep``,
``GetInvocationStep`` and ``ListInvocationSteps``; ``kms:Decrypt``/``GenerateDataKey``/
``DescribeKey`` on the key of sessions created with ``encryptionKeyArn``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.serde.base import SerializerProtocol

from streamstate.adapters import _bedrock_core as core
from streamstate.adapters._bedrock_core import SessionInfo
from streamstate.adapters._saver_shell import CoreFlows, SaverShell
from streamstate.adapters._shell import Runners, documented
from streamstate.errors import ConfigError
from streamstate.eventlog import _aws
from streamstate.eventlog._drive import Flow
from streamstate.eventlog.bedrock import (
    ApiCall,
    AsyncBedrockEventLog,
    AsyncRunner,
    BedrockEventLog,
    BedrockLogCore,
    SyncRunner,
)
from streamstate.eventlog.codec import Codec

__all__ = [
    "AsyncBedrockSessionClient",
    "AsyncBedrockSessionSaver",
    "BedrockSessionClient",
    "BedrockSessionSaver",
    "SessionInfo",
    "make_client",
]

SERVICE = "bedrock-agent-runtime"


def make_client(
    session: Any = None,
    region_name: str | None = None,
    credentials_profile_name: str | None = None,
    aws_access_key_id: Any = None,
    aws_secret_access_key: Any = None,
    aws_session_token: Any = None,
    endpoint_url: str | None = None,
    config: Any = None,
) -> Any:
    """A ``bedrock-agent-runtime`` client with botocore's ``standard`` retries (5
    attempts; a ``config`` given by the caller is merged over these defaults): the
    shared :func:`streamstate.eventlog._aws.make_client`, with the positional order
    of langgraph-checkpoint-aws's savers."""
    return _aws.make_client(
        SERVICE,
        session=session,
        region_name=region_name,
        credentials_profile_name=credentials_profile_name,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        aws_session_token=aws_session_token,
        endpoint_url=endpoint_url,
        config=config,
    )


# --------------------------------------------------------------------------- session clients


class BedrockSessionClient:
    """Creates, reads, ends and deletes Bedrock sessions (the saver's ``session_client``).

    Args:
        client: The boto3 ``bedrock-agent-runtime`` client (also ``self.client``).
        log: The saver's log core, told when a session is deleted.
    """

    def __init__(self, client: Any, log: BedrockLogCore | None = None) -> None:
        self.client = client
        self._log = log
        self._run = SyncRunner(client)

    def create_session(
        self,
        request: Any = None,
        *,
        session_metadata: Mapping[str, str] | None = None,
        encryption_key_arn: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> SessionInfo:
        """Create a session; its ``session_id`` is a ``thread_id`` for the saver.

        Args:
            request: Optional object with ``session_metadata``, ``encryption_key_arn``
                and ``tags`` attributes (langgraph-checkpoint-aws's request model).
            session_metadata: Up to 50 string pairs.
            encryption_key_arn: A KMS key to encrypt the session with.
            tags: Resource tags.
        """
        call = core.plan_create_session(
            request,
            session_metadata=session_metadata,
            encryption_key_arn=encryption_key_arn,
            tags=tags,
        )
        return core.read_session(self._run(call))

    def get_session(self, session_id: Any) -> SessionInfo:
        """The session with its status and metadata; raises ``BedrockNotFound`` if none."""
        ident = core.session_ident(session_id)
        return core.read_session(self._run(ApiCall("get_session", {"sessionIdentifier": ident})))

    def end_session(self, session_id: Any) -> SessionInfo:
        """End a session: its checkpoints stay readable, new writes are refused."""
        ident = core.session_ident(session_id)
        return core.read_session(self._run(ApiCall("end_session", {"sessionIdentifier": ident})))

    def delete_session(self, session_id: Any) -> None:
        """Delete an ended session (an ACTIVE one raises ``BedrockConflict``)."""
        ident = core.session_ident(session_id)
        self._run(ApiCall("delete_session", {"sessionIdentifier": ident}))
        if self._log is not None:
            self._log.forget(ident)


class AsyncBedrockSessionClient:
    """The asyncio twin of :class:`BedrockSessionClient` (same methods, awaitable)."""

    def __init__(self, client: Any, log: BedrockLogCore | None = None) -> None:
        self.client = client
        self._log = log
        self._run = AsyncRunner(client)

    async def create_session(
        self,
        request: Any = None,
        *,
        session_metadata: Mapping[str, str] | None = None,
        encryption_key_arn: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> SessionInfo:
        call = core.plan_create_session(
            request,
            session_metadata=session_metadata,
            encryption_key_arn=encryption_key_arn,
            tags=tags,
        )
        return core.read_session(await self._run(call))

    async def get_session(self, session_id: Any) -> SessionInfo:
        ident = core.session_ident(session_id)
        call = ApiCall("get_session", {"sessionIdentifier": ident})
        return core.read_session(await self._run(call))

    async def end_session(self, session_id: Any) -> SessionInfo:
        ident = core.session_ident(session_id)
        call = ApiCall("end_session", {"sessionIdentifier": ident})
        return core.read_session(await self._run(call))

    async def delete_session(self, session_id: Any) -> None:
        ident = core.session_ident(session_id)
        await self._run(ApiCall("delete_session", {"sessionIdentifier": ident}))
        if self._log is not None:
            self._log.forget(ident)


# --------------------------------------------------------------------------- savers


class _BedrockFlows(CoreFlows):
    """The Bedrock core's flows under the shell's names and arguments (sessions have no
    actors: ``actor_id`` is always ``None``). A write is built, then sent."""

    def put_flow(self, *args: Any) -> Flow[RunnableConfig]:
        thread_id, event, out = self.core.build_put(*args)
        yield from self.core.put_flow(thread_id, event)
        return out

    def put_writes_flow(self, *args: Any) -> Flow[None]:
        thread_id, event = self.core.build_put_writes(*args)
        yield from self.core.put_writes_flow(thread_id, event)

    def delete_thread_flow(self, thread_id: str, _actor_id: str | None) -> Flow[None]:
        return self.core.delete_thread_flow(thread_id)

    def copy_thread_flow(self, source_id: str, target_id: str, _actor_id: str | None) -> Flow[int]:
        return self.core.copy_flow(source_id, target_id)

    def prune_flow(
        self, thread_ids: Sequence[str], strategy: str, _actor_id: str | None, serde: Any
    ) -> Flow[None]:
        return self.core.prune_flow(thread_ids, strategy, serde)


class _BedrockSaverBase(SaverShell):
    """Both shells of every method (from :class:`SaverShell`): Bedrock's constructor,
    flows and the documentation of each sync method."""

    # the sync or async session client and event log a subclass hands its users
    session_client_class: type[BedrockSessionClient] | type[AsyncBedrockSessionClient]
    log_class: type[BedrockEventLog] | type[AsyncBedrockEventLog]

    def __init__(
        self,
        client: Any = None,
        session: Any = None,
        region_name: str | None = None,
        credentials_profile_name: str | None = None,
        aws_access_key_id: Any = None,
        aws_secret_access_key: Any = None,
        aws_session_token: Any = None,
        endpoint_url: str | None = None,
        config: Any = None,
        *,
        serde: SerializerProtocol | None = None,
        codec: Codec | None = None,
        auto_create_sessions: bool = True,
    ) -> None:
        super().__init__(serde=serde)
        if client is None:
            client = make_client(
                session,
                region_name,
                credentials_profile_name,
                aws_access_key_id,
                aws_secret_access_key,
                aws_session_token,
                endpoint_url,
                config,
            )
        elif any(
            v is not None
            for v in (
                session,
                region_name,
                credentials_profile_name,
                aws_access_key_id,
                aws_secret_access_key,
                aws_session_token,
                endpoint_url,
                config,
            )
        ):
            raise ConfigError("pass a boto3 client, or the arguments to make one, not both")
        self.client = client
        self._log = BedrockLogCore(codec, auto_create=auto_create_sessions)
        self._core = core.BedrockSaverCore(self._log)
        self._exec = Runners(SyncRunner(client), AsyncRunner(client))
        self._flows = _BedrockFlows(self._core)
        self.session_client = self.session_client_class(client, self._log)
        self.log = self.log_class(client, core=self._log)

    put = documented(
        SaverShell.put,
        """Store a checkpoint (one step in its namespace's invocation).

        Raises:
            SessionNotActive: The thread's session is ENDED or EXPIRED.
            BedrockApiError: The service refused the call (after retries for throttling
                and 5xx).
        """,
    )

    put_writes = documented(
        SaverShell.put_writes,
        """Store a task's writes against a checkpoint (one step per call).""",
    )

    get_tuple = documented(
        SaverShell.get_tuple,
        """The checkpoint ``config`` names, or the latest of its namespace; ``None`` if
        there is none (a service error raises, it is never "not found").""",
    )

    list = documented(
        SaverShell.list,
        """Checkpoints newest first: of a thread (one namespace if ``checkpoint_ns`` is
        in the config, else all), or of every session when ``config`` is None.""",
    )

    delete_thread = documented(
        SaverShell.delete_thread,
        """End and delete the thread's session(s); a missing thread is a no-op.""",
    )

    delete_for_runs = documented(
        SaverShell.delete_for_runs,
        """Retract the checkpoints (and writes) of these runs in every session.""",
    )

    copy_thread = documented(
        SaverShell.copy_thread,
        """Copy every live checkpoint and write into the target thread.

        The target is the session ``target_thread_id`` names if it exists (say, one
        from ``session_client.create_session()``), else a session created for that id.
        """,
    )

    prune = documented(
        SaverShell.prune,
        """``keep_latest`` retracts all but each namespace's latest checkpoint;
        ``delete`` deletes the threads' sessions.""",
    )


class BedrockSessionSaver(_BedrockSaverBase):
    """A LangGraph checkpointer storing every checkpoint and write as Bedrock
    invocation steps of the thread's session.

    Args:
        client: A boto3 ``bedrock-agent-runtime`` client (else one is made from the
            arguments below, with botocore's ``standard`` retries).
        session: A ``boto3.Session`` to make the client with.
        region_name: AWS region.
        credentials_profile_name: A profile from the AWS config files.
        aws_access_key_id: Access key id (``str`` or pydantic ``SecretStr``).
        aws_secret_access_key: Secret access key (``str`` or ``SecretStr``).
        aws_session_token: Session token for temporary credentials.
        endpoint_url: A custom endpoint (a VPC endpoint, an emulator).
        config: A ``botocore.config.Config``; it wins over the retry defaults.
        serde: Serializer of channel values and metadata (LangGraph's default).
        codec: Codec of stored entries (compression, optional cipher).
        auto_create_sessions: Create a session for a ``thread_id`` that is not one.
            When False such a put raises :class:`~streamstate.errors.ConfigError`.

    Attributes:
        session_client: :class:`BedrockSessionClient` on the same client.
        log: The thread log as a :class:`~streamstate.eventlog.bedrock.BedrockEventLog`
            (read, tail, consumer groups), sharing this saver's caches.
    """

    session_client_class = BedrockSessionClient
    log_class = BedrockEventLog


class AsyncBedrockSessionSaver(_BedrockSaverBase):
    """:class:`BedrockSessionSaver` for asyncio code: the same arguments and methods,
    with an awaitable ``session_client`` and an :class:`AsyncBedrockEventLog` ``log``.

    ``(await saver.session_client.create_session()).session_id`` is a thread id.
    """

    session_client_class = AsyncBedrockSessionClient
    log_class = AsyncBedrockEventLog
