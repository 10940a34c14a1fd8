"""The fault proxy itself, against a line echo server: each fault does what it says."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from streamstate.testing.faultproxy import FaultProxy, RandomFaults


class _Echo(socketserver.StreamRequestHandler):
    """Echoes each line back twice (a reply longer than the request), and counts lines."""

    def handle(self) -> None:
        for line in self.rfile:
            self.server.lines.append(line)  # type: ignore[attr-defined]
            self.wfile.write(line.strip() * 2 + b"\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Echo)
    server.lines = []  # type: ignore[attr-defined]
    t = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    t.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def fp(echo: _Server) -> Iterator[FaultProxy]:
    with FaultProxy(echo.server_address) as p:  # type: ignore[arg-type]
        yield p


def connect(p: FaultProxy, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection(p.address, timeout=timeout)


def ask(s: socket.socket, line: bytes) -> bytes:
    s.sendall(line + b"\n")
    out = b""
    while not out.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            return out
        out += chunk
    return out


def test_forwards_faithfully_and_counts(fp: FaultProxy) -> None:
    with connect(fp) as s:
        assert ask(s, b"hello") == b"hellohello\n"
    assert fp.stats.connections == 1 and fp.stats.bytes_up == 6 and fp.stats.bytes_down == 11
    assert fp.stats.faults == 0


def test_cut_next_reply_reaches_the_server_and_truncates_the_reply(
    fp: FaultProxy, echo: _Server
) -> None:
    fp.cut_next_reply(b"two", keep=0.5)
    with connect(fp) as s:
        assert ask(s, b"one") == b"oneone\n"  # no match: untouched
        assert ask(s, b"two") == b"two"  # half of "twotwo\n", then EOF
    assert echo.lines == [b"one\n", b"two\n"]  # type: ignore[attr-defined]
    assert fp.stats.cuts == 1 and fp.armed == 0


def test_drop_next_request_resets_and_the_server_never_sees_it(
    fp: FaultProxy, echo: _Server
) -> None:
    fp.drop_next_request(b"secret")
    with connect(fp) as s:
        s.sendall(b"secret\n")
        with pytest.raises(ConnectionResetError):
            s.recv(10)
    time.sleep(0.1)
    assert echo.lines == []  # type: ignore[attr-defined]
    assert fp.stats.dropped_requests == 1 and fp.stats.resets == 1


def test_reset_all_sends_rst_to_open_connections(fp: FaultProxy) -> None:
    with connect(fp) as s:
        assert ask(s, b"a")
        deadline = time.monotonic() + 1
        while fp.open_connections == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fp.reset_all() == 1
        with pytest.raises(ConnectionResetError):
            s.sendall(b"b\n")
            s.recv(10)


def test_stall_holds_bytes_and_delivers_them_afterwards(fp: FaultProxy) -> None:
    with connect(fp, timeout=3) as s:
        assert ask(s, b"warm")
        fp.stall(0.6)
        started = time.monotonic()
        assert ask(s, b"late") == b"latelate\n"
        assert time.monotonic() - started >= 0.5
    assert fp.stats.stalls == 1


def test_refuse_resets_new_connections(fp: FaultProxy) -> None:
    fp.refuse()
    # The RST can arrive while connecting, sending or receiving: any of them fails.
    with pytest.raises(OSError), connect(fp) as s:
        s.sendall(b"x\n")
        if not s.recv(10):
            raise ConnectionResetError("closed")
    fp.refuse(False)
    with connect(fp) as s:
        assert ask(s, b"ok") == b"okok\n"


def _outcomes(fp: FaultProxy, seed: int, n: int = 40) -> list[str]:
    fp.set_faults(RandomFaults(seed=seed, reset_request=0.1, cut_reply=0.1))
    out = []
    s = connect(fp)
    for i in range(n):
        try:
            reply = ask(s, b"m%d" % i)
            out.append("ok" if reply.endswith(b"\n") else "cut")
            if reply.endswith(b"\n"):
                continue
        except OSError:
            out.append("reset")
        s.close()
        s = connect(fp)
    s.close()
    fp.set_faults(None)
    return out


def test_random_faults_are_reproducible_from_the_seed(fp: FaultProxy) -> None:
    first, again, other = _outcomes(fp, 7), _outcomes(fp, 7), _outcomes(fp, 8)
    assert first == again
    assert first != other
    assert {"ok", "cut", "reset"} <= set(first) | set(other)


def test_only_loopback_addresses() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(("10.0.0.1", 6379))
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(("127.0.0.1", 6379), host="0.0.0.0")
    assert FaultProxy("valkey://localhost:6379/0").upstream == ("localhost", 6379)
