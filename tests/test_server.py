"""The embedded server: durable, reused per directory, stopped cleanly; URL schemes.

And: one server per data directory whatever the timing (simultaneous starters, a
starter killed or interrupted while the server loads a large AOF), a private directory
and a password, and a port some other process holds never taken for ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import valkey

from streamstate.connection import client_from_url
from streamstate.errors import ConfigError
from streamstate.server import EmbeddedServer, resolve_url, valkey_binary

# -- helpers (tests/cli/test_server.py uses them too) ----------------------------------------

BIG_KEYS = 30_000
"""Keys in the "large AOF" (about 7 MB). Valkey's ``key-load-delay`` (microseconds per
key) stretches its load to seconds, so a signal sent while INFO says ``loading:1``
lands mid-load; the tests check ``loading:1`` again after the signal."""
LOAD_DELAY = 50

STARTER = """
import json, sys
from streamstate.server import EmbeddedServer
if len(sys.argv) > 3:  # wait for the go file: every starter begins at the same moment
    print("ready", flush=True)
    import os, time
    while not os.path.exists(sys.argv[3]):
        time.sleep(0.001)
try:
    s = EmbeddedServer(sys.argv[1], config=json.loads(sys.argv[2])).start(timeout=60)
except KeyboardInterrupt:
    print(json.dumps({"interrupted": True}), flush=True)
    sys.exit(130)
print(json.dumps({"pid": s.pid, "port": s.port, "reused": s.reused}), flush=True)
"""


def spawn_starter(
    data_dir: Path, config: dict[str, object] | None = None, go: Path | None = None
) -> subprocess.Popen[str]:
    """Another process calling ``EmbeddedServer(data_dir, config=config).start()``."""
    args = [sys.executable, "-c", STARTER, str(data_dir), json.dumps(config or {})]
    return subprocess.Popen(
        [*args, *([str(go)] if go else [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def starter_result(proc: subprocess.Popen[str], timeout: float = 90) -> dict[str, object]:
    out, err = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, (proc.returncode, out, err)
    return json.loads(lines[-1])


def servers_in(data_dir: Path) -> list[int]:
    """Pids of the processes running in ``data_dir`` (valkey-server runs there)."""
    pids = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and (proc / "cwd").resolve() == data_dir.resolve():
                pids.append(int(proc.name))
    return sorted(pids)


def kill_servers_in(data_dir: Path) -> None:
    """Clean-up: SIGKILL whatever still runs in ``data_dir`` (only this test's servers)."""
    for pid in servers_in(data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def client_for(data_dir: Path) -> valkey.Valkey:
    """A client for the directory's server, from its files, as a user would connect."""
    port = json.loads((data_dir / "server.json").read_text())["port"]
    password = (data_dir / "password").read_text().strip()
    return valkey.Valkey(port=port, password=password, socket_timeout=5)


def loading(data_dir: Path) -> bool:
    """Whether the directory's server answers and is loading its data."""
    try:
        client = client_for(data_dir)
    except (OSError, ValueError, KeyError):
        return False
    try:
        return bool(int(client.info("persistence")["loading"]))
    except valkey.ValkeyError:
        return False
    finally:
        client.close()


def wait_until_loading(data_dir: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not loading(data_dir):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the server never reported loading:1"
        time.sleep(0.02)


def write_big_aof(data_dir: Path) -> None:
    """A server's directory holding ``BIG_KEYS`` keys in its AOF (the server stopped)."""
    server = EmbeddedServer(data_dir).start()
    client = valkey.Valkey.from_url(server.url)
    pipe = client.pipeline(transaction=False)
    for i in range(BIG_KEYS):
        pipe.set(f"k{i}", f"{i}:" + "x" * 200)
    pipe.execute()
    client.close()
    server.stop()


def copy_data(template: Path, target: Path) -> Path:
    """The AOF and password of ``template`` in a new directory."""
    target.mkdir(mode=0o700)
    shutil.copytree(template / "appendonlydir", target / "appendonlydir")
    shutil.copy2(template / "password", target / "password")
    return target


def assert_big_data(client: valkey.Valkey) -> None:
    assert client.dbsize() == BIG_KEYS
    for i in (0, BIG_KEYS // 2, BIG_KEYS - 1):
        assert client.get(f"k{i}") == f"{i}:".encode() + b"x" * 200


@pytest.fixture(scope="module")
def big_aof(tmp_path_factory: pytest.TempPathFactory) -> Path:
    template = tmp_path_factory.mktemp("big-aof") / "data"
    write_big_aof(template)
    return template


# -- reuse and durability -------------------------------------------------------------------


def test_second_start_for_the_same_directory_reuses_the_server(tmp_path: Path) -> None:
    first = EmbeddedServer(tmp_path).start()
    try:
        second = EmbeddedServer(tmp_path).start()
        assert second.reused and second.port == first.port and second.pid == first.pid
        assert second.url == first.url  # the password comes from the directory
        # another process reuses it too
        result = starter_result(spawn_starter(tmp_path))
        assert result == {"pid": first.pid, "port": first.port, "reused": True}
    finally:
        first.stop()
    assert not first.is_running()
    assert not (tmp_path / "server.json").exists()


def test_data_survives_a_restart_through_the_aof(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path).start()
    client = valkey.Valkey.from_url(server.url)
    client.xadd("durable", {"e": "1"})
    client.close()
    server.stop()
    assert list(tmp_path.glob("appendonlydir/*"))
    server = EmbeddedServer(tmp_path).start()
    try:
        assert valkey.Valkey.from_url(server.url).xlen("durable") == 1
    finally:
        server.stop()


# -- one server per directory, whatever the timing ----------------------------------------


def test_simultaneous_starters_share_one_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    go = tmp_path / "go"
    procs = [spawn_starter(data, go=go) for _ in range(4)]
    try:
        for proc in procs:  # every interpreter is up and polling for the go file
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        go.touch()
        results = [starter_result(proc) for proc in procs]
        assert len({(r["pid"], r["port"]) for r in results}) == 1, results
        assert sorted(r["reused"] for r in results) == [False, True, True, True]
        assert servers_in(data) == [results[0]["pid"]]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        EmbeddedServer(data).stop_running()
        kill_servers_in(data)
    assert servers_in(data) == []


def test_a_starter_killed_while_the_server_loads_leaves_one_server(
    tmp_path: Path, big_aof: Path
) -> None:
    data = copy_data(big_aof, tmp_path / "data")
    starter = spawn_starter(data, {"key-load-delay": LOAD_DELAY})
    try:
        wait_until_loading(data, starter)
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)
        assert loading(data), "the kill did not land while the server loaded its AOF"
        (loading_pid,) = servers_in(data)
        # Started again (twice, at once): both wait for the load, neither starts a server.
        again = [spawn_starter(data), spawn_starter(data)]
        results = [starter_result(proc) for proc in again]
        assert all(r["pid"] == loading_pid and r["reused"] for r in results), results
        assert servers_in(data) == [loading_pid]
        client = client_for(data)
        assert_big_data(client)
        client.close()
    finally:
        if starter.poll() is None:
            starter.kill()
        EmbeddedServer(data).stop_running()
        kill_servers_in(data)
    assert servers_in(data) == []


def test_a_starter_interrupted_while_the_server_loads_stops_it(
    tmp_path: Path, big_aof: Path
) -> None:
    data = copy_data(big_aof, tmp_path / "data")
    starter = spawn_starter(data, {"key-load-delay": LOAD_DELAY})
    try:
        wait_until_loading(data, starter)
        starter.send_signal(signal.SIGINT)  # Ctrl-C
        assert starter_result(starter) == {"interrupted": True}
        assert starter.returncode == 130
        assert servers_in(data) == []  # the server it spawned is gone with it
        assert not (data / "server.json").exists()
        server = EmbeddedServer(data).start()
        try:
            assert not server.reused and servers_in(data) == [server.pid]
            client = valkey.Valkey.from_url(server.url)
            assert_big_data(client)
            client.close()
        finally:
            server.stop()
    finally:
        if starter.poll() is None:
            starter.kill()
        kill_servers_in(data)
    assert servers_in(data) == []


# Python ignores an exception raised in __del__: here the Ctrl-C lands inside the __del__ of
# a probe client (the first one collected after the server reported loading), once.
SWALLOWING = """
import atexit, os, signal, sys, valkey
from streamstate.server import EmbeddedServer
armed, fired = [], []
atexit.register(lambda: fired and print("interrupt raised inside __del__", file=sys.stderr))
probe = EmbeddedServer._probe
def noting_probe(self, *a, **k):
    status = probe(self, *a, **k)
    if status[0] == "loading" and not fired:
        armed.append(True)
    return status
EmbeddedServer._probe = noting_probe
collect = valkey.Valkey.__del__
def interrupted_del(self):
    if armed and armed.pop():
        fired.append(True)
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100_000):  # the handler runs here, inside __del__
            pass
    collect(self)
valkey.Valkey.__del__ = interrupted_del
"""


def test_a_ctrl_c_swallowed_in_a_del_still_interrupts_the_start(
    tmp_path: Path, big_aof: Path
) -> None:
    data = copy_data(big_aof, tmp_path / "data")
    args = [sys.executable, "-c", SWALLOWING + STARTER, str(data)]
    starter = subprocess.Popen(
        [*args, json.dumps({"key-load-delay": LOAD_DELAY})],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = starter.communicate(timeout=90)
        assert "interrupt raised inside __del__" in err, err
        # delivered, so not reported as ignored
        assert "Exception ignored" not in err and "Traceback" not in err, err
        assert json.loads(out.splitlines()[-1]) == {"interrupted": True}, (out, err)
        assert starter.returncode == 130
        assert servers_in(data) == []
        assert not (data / "server.json").exists()
    finally:
        if starter.poll() is None:
            starter.kill()
        kill_servers_in(data)


def test_stop_running_stops_that_directory_only(tmp_path: Path) -> None:
    a = EmbeddedServer(tmp_path / "a").start()
    b = EmbeddedServer(tmp_path / "b").start()
    try:
        assert EmbeddedServer(tmp_path / "a").stop_running() == a.pid
        assert servers_in(tmp_path / "a") == []
        assert b.is_running() and servers_in(tmp_path / "b") == [b.pid]
        assert EmbeddedServer(tmp_path / "a").stop_running() is None
        # a directory that never had a server: None, and nothing is created
        assert EmbeddedServer(tmp_path / "never").stop_running() is None
        assert not (tmp_path / "never").exists()
    finally:
        a.stop()
        b.stop()


# -- privacy ---------------------------------------------------------------------------------


def _modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in [root, *root.rglob("*")]
    }


def test_the_directory_is_private_and_the_server_needs_its_password(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = EmbeddedServer(data).start()
    try:
        client = valkey.Valkey.from_url(server.url)
        client.set("k", "v")
        client.close()
        modes = _modes(data)
        assert modes.pop(".") == 0o700 and modes.pop("appendonlydir") == 0o700
        for name in ("password", "server.json", "valkey.conf", "valkey.log", "valkey.pid"):
            assert name in modes
        assert {name: mode for name, mode in modes.items() if mode != 0o600} == {}
        password = (data / "password").read_text().strip()
        assert len(password) >= 32
        assert server.url == f"valkey://:{password}@127.0.0.1:{server.port}/0"
        # not on the command line, where every local user can read it
        assert password not in Path(f"/proc/{server.pid}/cmdline").read_bytes().decode()
        anonymous = valkey.Valkey(port=server.port, socket_timeout=5)
        with pytest.raises(valkey.AuthenticationError):
            anonymous.get("k")
        anonymous.close()
    finally:
        server.stop()


def test_an_existing_directory_is_made_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    (data / "notes.txt").write_text("x")
    os.chmod(data / "notes.txt", 0o644)
    server = EmbeddedServer(data).start()
    try:
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert stat.S_IMODE((data / "notes.txt").stat().st_mode) == 0o600
    finally:
        server.stop()


def test_requirepass_in_config_replaces_the_generated_password(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "open", config={"requirepass": ""}).start()
    try:
        assert server.url == f"valkey://127.0.0.1:{server.port}/0"
        assert valkey.Valkey(port=server.port).ping()
        # another process, without the config, finds the server and connects
        assert EmbeddedServer(tmp_path / "open").start().url == server.url
    finally:
        server.stop()


# -- ports ------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", [0, 65536, 99999, -1])
def test_a_port_out_of_range_is_a_config_error(port: int) -> None:
    with pytest.raises(ConfigError, match="between 1 and 65535"):
        EmbeddedServer(port=port)


@pytest.fixture
def other_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A server of another directory, holding a key."""
    server = EmbeddedServer(tmp_path / "other").start()
    client = valkey.Valkey.from_url(server.url)
    client.set("precious", "1")
    client.close()
    yield server
    server.stop()


def _assert_untouched(server: EmbeddedServer, pid: int | None) -> None:
    assert server.pid == pid and server.is_running()
    client = valkey.Valkey.from_url(server.url)
    assert client.get("precious") == b"1"
    client.close()


def test_a_port_in_use_is_an_error_never_a_server_to_claim(
    tmp_path: Path, other_server: EmbeddedServer
) -> None:
    pid = other_server.pid
    mine = EmbeddedServer(tmp_path / "mine", port=other_server.port)
    with pytest.raises(ConfigError, match=f"port {other_server.port} is already in use"):
        mine.start()
    assert mine.port is None
    mine.stop()  # nothing to stop: it must not touch the other server
    assert servers_in(tmp_path / "mine") == []
    _assert_untouched(other_server, pid)
    # a port held by something that is not valkey at all
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} is already in use"):
            EmbeddedServer(tmp_path / "mine", port=port).start()


def test_a_port_taken_after_the_check_is_still_not_claimed(
    tmp_path: Path, other_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: the port looked free, another server holds it when ours binds. The
    other server answers on the port, but with another pid (and password): never ours."""
    import streamstate.server as server_module

    monkeypatch.setattr(server_module, "port_in_use", lambda port, host="": False)
    pid = other_server.pid
    mine = EmbeddedServer(tmp_path / "mine", port=other_server.port)
    with pytest.raises(ConfigError, match="already in use"):
        mine.start(timeout=5)
    assert servers_in(tmp_path / "mine") == []
    _assert_untouched(other_server, pid)


# -- URLs ----------------------------------------------------------------------------------


def test_resolve_url_prefers_argument_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSTATE_URL", "valkey://env:1/0")
    assert resolve_url("redis://arg:2/0") == "redis://arg:2/0"
    assert resolve_url(None) == "valkey://env:1/0"


def test_unsupported_scheme_names_the_scheme() -> None:
    with pytest.raises(ConfigError, match="'http'"):
        client_from_url("http://localhost:6379")


def test_unix_socket_url_with_password_and_db(tmp_path: Path) -> None:
    sock = tmp_path / "v.sock"
    proc = subprocess.Popen(
        [
            valkey_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--requirepass",
            "s3cret",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:  # the socket file appears before the server answers on it
            with contextlib.suppress(valkey.ConnectionError):
                if valkey.Valkey(unix_socket_path=str(sock), password="s3cret").ping():
                    break
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        for url in (f"unix://:s3cret@{sock}?db=2", f"unix://default:s3cret@{sock}?db=2"):
            client = client_from_url(url)
            client.set("k", "v")
            assert client.connection_pool.connection_kwargs["db"] == 2
            assert client.get("k") == b"v"
            client.close()
        with pytest.raises(valkey.AuthenticationError):
            client_from_url(f"unix://:wrong@{sock}").ping()
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("scheme", ["valkey", "redis"])
def test_tcp_url_schemes(valkey_server, scheme: str) -> None:
    url = valkey_server.url.replace("valkey://", f"{scheme}://")
    assert client_from_url(url).ping()
