"""``streamstate server``: the embedded server in the foreground, stopped by Ctrl-C;
``--stop`` stops exactly the directory's server; a port in use is an error."""

from __future__ import annotations

import re
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import valkey

from streamstate.server import EmbeddedServer
from tests.cli.conftest import CLI, cli_env, run_cli, stop_embedded
from tests.cli.test_errors import _one_line_error
from tests.test_server import (
    LOAD_DELAY,
    SWALLOWING,
    assert_big_data,
    big_aof,  # noqa: F401 - a fixture
    client_for,
    copy_data,
    kill_servers_in,
    loading,
    servers_in,
    wait_until_loading,
)

# The CLI with every embedded server loading its data slowly (Valkey's key-load-delay),
# so that a signal lands while it loads.
SLOW_CLI = [
    sys.executable,
    "-c",
    "import sys, streamstate.server as s\n"
    "init = s.EmbeddedServer.__init__\n"
    "def slow(self, *a, **k):\n"
    "    init(self, *a, **k)\n"
    f"    self.config.setdefault('key-load-delay', {LOAD_DELAY})\n"
    "s.EmbeddedServer.__init__ = slow\n"
    "from streamstate.cli import main\n"
    "sys.exit(main())\n",
]


def spawn(*args: str, cli: list[str] = CLI) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*cli, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
        text=True,
    )


def first_line(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """The first stdout line of ``proc``; fails (instead of blocking) if none comes."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            proc.kill()
            raise AssertionError(f"no output within {timeout}s: {proc.communicate()}")
    line = proc.stdout.readline().strip()
    assert line, (proc.wait(10), proc.communicate())
    return line


def assert_url_of(url: str, data_dir: Path) -> None:
    """The URL printed is the directory's server, with the directory's password."""
    password = (data_dir / "password").read_text().strip()
    assert re.fullmatch(rf"valkey://:{re.escape(password)}@127\.0\.0\.1:\d+/0", url), url


def assert_gone(url: str) -> None:
    probe = valkey.Valkey.from_url(url, socket_connect_timeout=0.5)
    try:
        probe.ping()
        raise AssertionError("the server still answers")
    except valkey.ConnectionError:
        pass
    finally:
        probe.close()


def test_server_runs_in_the_foreground_until_interrupted(tmp_path: Path) -> None:
    data_dir = tmp_path / "server"
    proc = spawn("server", "--dir", str(data_dir))
    try:
        url = first_line(proc)
        assert_url_of(url, data_dir)
        client = valkey.Valkey.from_url(url)
        assert client.set("k", "v")
        client.close()
        # everything that reuses it connects: `server` again, a read-only command
        again = run_cli("server", "--dir", str(data_dir))
        assert again.code == 0 and again.out.startswith(f"already running: {url} "), again
        stats = run_cli("stats", "--json", env=cli_env(STREAMSTATE_DIR=str(data_dir)))
        assert stats.code == 0, stats
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        stop_embedded(data_dir)
    assert not (data_dir / "server.json").exists()
    assert servers_in(data_dir) == []
    assert_gone(url)


def test_stop_stops_exactly_that_directorys_server(tmp_path: Path) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a = spawn("server", "--dir", str(a_dir))
    b = EmbeddedServer(b_dir).start()
    try:
        url = first_line(a)
        (a_pid,) = servers_in(a_dir)
        stopped = run_cli("server", "--stop", "--dir", str(a_dir))
        assert stopped.code == 0, stopped
        assert stopped.out.strip() == f"stopped the embedded server of {a_dir} (pid {a_pid})"
        assert servers_in(a_dir) == []
        assert_gone(url)
        a.wait(timeout=20)  # the foreground command saw its server go
        assert b.is_running() and servers_in(b_dir) == [b.pid]
        again = run_cli("server", "--stop", "--dir", str(a_dir))
        assert again.code == 0, again
        assert again.out.strip() == f"no embedded server is running for {a_dir}; nothing to stop"
        # STREAMSTATE_DIR names the directory as well
        by_env = run_cli("server", "--stop", env=cli_env(STREAMSTATE_DIR=str(b_dir)))
        assert by_env.code == 0 and f"stopped the embedded server of {b_dir}" in by_env.out
        assert servers_in(b_dir) == []
        # a directory that never had a server is not created
        never = run_cli("server", "--stop", "--dir", str(tmp_path / "never"))
        assert never.code == 0 and "no embedded server is running" in never.out
        assert not (tmp_path / "never").exists()
    finally:
        if a.poll() is None:
            a.kill()
        b.stop()
        kill_servers_in(a_dir)


def test_a_port_in_use_is_an_error_and_the_other_server_is_untouched(tmp_path: Path) -> None:
    other = EmbeddedServer(tmp_path / "other").start()
    try:
        client = valkey.Valkey.from_url(other.url)
        client.set("precious", "1")
        result = run_cli("server", "--dir", str(tmp_path / "mine"), "--port", str(other.port))
        _one_line_error(result, f"port {other.port} is already in use")
        assert result.out == ""  # no URL claimed as its own
        assert servers_in(tmp_path / "mine") == []
        assert other.is_running() and servers_in(tmp_path / "other") == [other.pid]
        assert client.get("precious") == b"1"
        client.close()
    finally:
        other.stop()


def test_ctrl_c_while_the_server_loads_a_large_aof(tmp_path: Path, big_aof: Path) -> None:  # noqa: F811
    data = copy_data(big_aof, tmp_path / "data")
    slow = spawn("server", "--dir", str(data), cli=SLOW_CLI)
    again = None
    try:
        wait_until_loading(data, slow)
        slow.send_signal(signal.SIGINT)
        out, err = slow.communicate(timeout=30)
        assert slow.returncode == 1, (out, err)
        assert out == "" and "Traceback" not in err
        assert "interrupted before the server was ready" in err
        assert servers_in(data) == []
        # started again: one server, all the data
        again = spawn("server", "--dir", str(data))
        url = first_line(again)
        assert_url_of(url, data)
        assert len(servers_in(data)) == 1
        client = valkey.Valkey.from_url(url)
        assert_big_data(client)
        client.close()
        again.send_signal(signal.SIGINT)
        assert again.wait(timeout=20) == 0
    finally:
        for proc in (slow, again):
            if proc is not None and proc.poll() is None:
                proc.kill()
        kill_servers_in(data)


def test_ctrl_c_swallowed_in_a_del_still_stops_the_foreground_server(tmp_path: Path) -> None:
    # the Ctrl-C lands inside the __del__ of the first probe client collected once the
    # server is ready, i.e. in the foreground loop; Python ignores the KeyboardInterrupt there
    swallowing = SWALLOWING.replace('== "loading"', '== "ready"')
    cli = [sys.executable, "-c", swallowing + "from streamstate.cli import main\nmain()\n"]
    data_dir = tmp_path / "server"
    proc = spawn("server", "--dir", str(data_dir), cli=cli)
    try:
        out, err = proc.communicate(timeout=60)
        assert "Exception ignored" not in err and "Traceback" not in err, err
        assert proc.returncode == 0, (out, err)
        assert_url_of(out.strip(), data_dir)
        assert err.splitlines()[-2:] == ["stopped", "interrupt raised inside __del__"], err
        assert servers_in(data_dir) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_servers_in(data_dir)


def test_killed_while_the_server_loads_then_started_again(tmp_path: Path, big_aof: Path) -> None:  # noqa: F811
    data = copy_data(big_aof, tmp_path / "data")
    slow = spawn("server", "--dir", str(data), cli=SLOW_CLI)
    try:
        wait_until_loading(data, slow)
        slow.send_signal(signal.SIGKILL)
        slow.wait(10)
        assert loading(data), "the kill did not land while the server loaded its AOF"
        (pid,) = servers_in(data)
        # the same command again waits for the load and reports that server, no second one
        again = run_cli("server", "--dir", str(data))
        assert again.code == 0, again
        assert again.out.startswith("already running: ") and f"(pid {pid}," in again.out
        assert servers_in(data) == [pid]
        client = client_for(data)
        assert_big_data(client)
        client.close()
        stopped = run_cli("server", "--stop", "--dir", str(data))
        assert stopped.code == 0 and f"(pid {pid})" in stopped.out, stopped
        assert servers_in(data) == []
    finally:
        if slow.poll() is None:
            slow.kill()
        kill_servers_in(data)
    # the stopped server flushed its AOF: a new one has everything
    server = EmbeddedServer(data).start()
    try:
        client = valkey.Valkey.from_url(server.url)
        assert_big_data(client)
        client.close()
    finally:
        server.stop()
