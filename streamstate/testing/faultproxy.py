"""A fault-injecting TCP proxy on loopback, for reliability tests.

``FaultProxy`` sits between a client and a server (Valkey, or anything speaking TCP)
and forwards bytes both ways, one thread per connection. On command, or at random
with a seeded RNG, it can:

* **reset** connections (an RST, as a crashed peer or a middlebox would send);
* **stall** forwarding for N seconds (a partition that heals: bytes wait in the
  kernel's buffers and are delivered afterwards, exactly as TCP would deliver them);
* **cut a reply** half-way: forward part of what the server sent, then close, so the
  server has applied a request whose reply the client never fully reads;
* **drop a request**: reset the client instead of forwarding what it sent, so the
  server never sees it.

Faults aimed at one request are armed with a byte pattern (``match=b"EVALSHA"``) that
must occur in the request, so a test can hit the one call it means. Every fault
injected is counted in :attr:`FaultProxy.stats`.

Example::

    with FaultProxy(("127.0.0.1", server_port)) as proxy:
        client = valkey.Valkey(host=proxy.host, port=proxy.port, socket_timeout=1)
        proxy.cut_next_reply(match=b"EVALSHA")  # the server applies, the client retries
        saver.put(...)
        assert proxy.stats.cuts == 1

Only loopback addresses are accepted, for both ends: this is a test tool.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from urllib.parse import urlsplit

__all__ = ["FaultProxy", "FaultStats", "RandomFaults"]

_CHUNK = 65536
_POLL = 0.02  # seconds: how often idle loops look at stop / stall flags


@dataclass(frozen=True)
class RandomFaults:
    """Faults drawn at random for every chunk forwarded, from one seeded RNG.

    Probabilities are per chunk (one ``recv``), so per request or reply for a
    request/response protocol such as RESP. With several connections at once the
    order of draws depends on thread scheduling; with one client it is reproducible.

    Args:
        seed: Seed of the RNG; put it in failure messages.
        reset_request: Reset the client instead of forwarding a request.
        reset_reply: Reset the client instead of forwarding a reply (the server applied
            the request).
        cut_reply: Forward part of a reply, then close (the server applied the request).
        stall: Stall the connection for ``stall_seconds`` before forwarding.
        stall_seconds: How long one random stall lasts.
    """

    seed: int
    reset_request: float = 0.0
    reset_reply: float = 0.0
    cut_reply: float = 0.0
    stall: float = 0.0
    stall_seconds: float = 0.2


@dataclass
class FaultStats:
    """What the proxy has done so far (read it after the load)."""

    connections: int = 0
    chunks_up: int = 0
    """Chunks (``recv`` results) read from clients: about one per request."""
    chunks_down: int = 0
    """Chunks read from the server: about one per reply."""
    bytes_up: int = 0
    bytes_down: int = 0
    resets: int = 0
    dropped_requests: int = 0
    cuts: int = 0
    stalls: int = 0

    @property
    def faults(self) -> int:
        """Every fault injected: resets (incl. dropped requests), cuts and stalls."""
        return self.resets + self.cuts + self.stalls

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class _Armed:
    """A one-shot fault waiting for a request that contains ``match``."""

    kind: str  # "cut" | "drop" | "reset_reply"
    match: bytes | None
    keep: float = 0.5
    rst: bool = False


@dataclass(eq=False)  # compared and hashed by identity: connections live in a set
class _Conn:
    client: socket.socket
    upstream: socket.socket
    # Set when a request matched an armed reply fault: the next reply gets it.
    reply_fault: _Armed | None = None
    stalled_until: float = 0.0
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def _require_loopback(host: str) -> None:
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise ValueError(f"FaultProxy only works on loopback addresses, got {host!r}")


def _rst(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN (SO_LINGER with a zero timeout)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """A threaded TCP proxy on loopback that injects faults.

    Args:
        upstream: ``(host, port)`` of the server, or a ``valkey://``-style URL (whose
            user and password, if any, :meth:`url` keeps).
        host: Address to listen on (loopback only).
        port: Port to listen on; 0 picks a free one.
        faults: Random faults to inject from the start (change with :meth:`set_faults`).
    """

    def __init__(
        self,
        upstream: tuple[str, int] | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: RandomFaults | None = None,
    ) -> None:
        # "user:password" as the upstream URL spells it (still percent-encoded), or ""
        self._userinfo = ""
        if isinstance(upstream, str):
            parts = urlsplit(upstream)
            if parts.hostname is None or parts.port is None:
                raise ValueError(f"upstream URL needs a host and a port: {upstream!r}")
            self._userinfo = parts.netloc.rpartition("@")[0]
            upstream = (parts.hostname, parts.port)
        _require_loopback(upstream[0])
        _require_loopback(host)
        self.upstream = upstream
        self.host = host
        self._requested_port = port
        self.port = 0
        self.stats = FaultStats()
        self._faults = faults
        self._rng = random.Random(faults.seed if faults else 0)
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []
        self._conns: set[_Conn] = set()
        self._stall_until = 0.0
        self._refusing = False
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Listen and start accepting; returns self."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self._requested_port))
        listener.listen(128)
        listener.settimeout(_POLL * 5)
        self._listener = listener
        self.port = int(listener.getsockname()[1])
        self._spawn(self._accept_loop, "faultproxy-accept")
        return self

    def stop(self) -> None:
        """Stop accepting, close every connection and wait for the threads."""
        self._stop.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            self._finish(conn)
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(timeout=2)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def url(self, scheme: str = "valkey", db: int = 0) -> str:
        """A client URL through the proxy, with the upstream URL's user and password."""
        auth = f"{self._userinfo}@" if self._userinfo else ""
        return f"{scheme}://{auth}{self.host}:{self.port}/{db}"

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    # -- faults on command --------------------------------------------------------------

    def set_faults(self, faults: RandomFaults | None) -> None:
        """Replace the random faults (``None``: forward faithfully); reseeds the RNG."""
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed if faults else 0)

    def reset_all(self) -> int:
        """Reset every open connection now; returns how many were reset."""
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            self._reset(conn)
        return len(conns)

    def stall(self, seconds: float) -> None:
        """Stop forwarding on every connection, new ones included, for ``seconds``."""
        with self._lock:
            self._stall_until = max(self._stall_until, time.monotonic() + seconds)
            self.stats.stalls += 1

    def refuse(self, refusing: bool = True) -> None:
        """Reset new connections as soon as they are accepted (a server that is down)."""
        with self._lock:
            self._refusing = refusing

    def cut_next_reply(
        self, match: bytes | None = None, *, keep: float = 0.5, rst: bool = False
    ) -> None:
        """Cut the reply to the next request containing ``match`` (any request if None).

        The request reaches the server; the client gets ``keep`` (a fraction) of the
        reply's first chunk, then a FIN (or an RST with ``rst``).
        """
        if not 0.0 <= keep < 1.0:
            raise ValueError(f"keep must be in [0, 1), got {keep!r}")
        with self._lock:
            self._armed.append(_Armed("cut", match, keep, rst))

    def drop_next_request(self, match: bytes | None = None) -> None:
        """Reset the client instead of forwarding the next request containing ``match``."""
        with self._lock:
            self._armed.append(_Armed("drop", match))

    def disarm(self) -> None:
        """Forget one-shot faults that have not fired."""
        with self._lock:
            self._armed.clear()

    @property
    def armed(self) -> int:
        """One-shot faults that have not fired yet."""
        with self._lock:
            return len(self._armed)

    # -- the pumps ----------------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                refusing = self._refusing
                self.stats.connections += 1
            if refusing:
                self._count("resets")
                _rst(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=2)
            except OSError:
                # The server is down: the client sees what it would see without us.
                self._count("resets")
                _rst(client)
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.setblocking(True)
                s.settimeout(None)
            conn = _Conn(client, upstream)
            with self._lock:
                self._conns.add(conn)
            self._spawn(self._pump, "faultproxy-conn", conn)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + n)

    def _stalled(self, conn: _Conn) -> bool:
        now = time.monotonic()
        with self._lock:
            until = max(self._stall_until, conn.stalled_until)
        return now < until

    def _pump(self, conn: _Conn) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(conn.client, selectors.EVENT_READ, "up")
            sel.register(conn.upstream, selectors.EVENT_READ, "down")
            while not self._stop.is_set() and not conn.closed:
                if self._stalled(conn):
                    # Read nothing: bytes wait in kernel buffers until the stall ends.
                    time.sleep(_POLL)
                    continue
                for key, _ in sel.select(timeout=_POLL):
                    if conn.closed:
                        break
                    src = conn.client if key.data == "up" else conn.upstream
                    try:
                        data = src.recv(_CHUNK)
                    except OSError:
                        data = b""
                    if not data:
                        self._finish(conn)
                        break
                    if key.data == "up":
                        self._forward_request(conn, data)
                    else:
                        self._forward_reply(conn, data)
        finally:
            sel.close()
            self._finish(conn)

    def _take_armed(self, kinds: tuple[str, ...], data: bytes) -> _Armed | None:
        with self._lock:
            for i, armed in enumerate(self._armed):
                if armed.kind in kinds and (armed.match is None or armed.match in data):
                    return self._armed.pop(i)
        return None

    def _draw(self, *names: str) -> str | None:
        """Draw at most one random fault among ``names`` for this chunk."""
        with self._lock:
            faults = self._faults
            if faults is None:
                return None
            x = self._rng.random()
        for name in names:
            p = getattr(faults, name)
            if x < p:
                return name
            x -= p
        return None

    def _random_stall(self, conn: _Conn) -> bool:
        with self._lock:
            faults = self._faults
        if faults is None or self._draw("stall") is None:
            return False
        conn.stalled_until = time.monotonic() + faults.stall_seconds
        self._count("stalls")
        return True

    def _wait_stall(self, conn: _Conn) -> None:
        while self._stalled(conn) and not self._stop.is_set() and not conn.closed:
            time.sleep(_POLL)

    def _forward_request(self, conn: _Conn, data: bytes) -> None:
        self._count("chunks_up")
        armed = self._take_armed(("drop",), data)
        if armed is not None or self._draw("reset_request"):
            self._count("dropped_requests")
            self._reset(conn)
            return
        if self._random_stall(conn):
            self._wait_stall(conn)
        armed = self._take_armed(("cut",), data)
        if armed is not None:
            conn.reply_fault = armed
        self._send(conn, conn.upstream, data, "bytes_up")

    def _forward_reply(self, conn: _Conn, data: bytes) -> None:
        self._count("chunks_down")
        armed, conn.reply_fault = conn.reply_fault, None
        if armed is None:
            drawn = self._draw("reset_reply", "cut_reply")
            if drawn == "reset_reply":
                self._reset(conn)
                return
            if drawn == "cut_reply":
                armed = _Armed("cut", None)
        if armed is not None:
            keep = min(len(data) - 1, int(len(data) * armed.keep))
            if keep > 0:
                self._send(conn, conn.client, data[:keep], "bytes_down")
            self._count("cuts")
            if armed.rst:
                self._reset(conn, count=False)
            else:
                self._finish(conn)
            return
        if self._random_stall(conn):
            self._wait_stall(conn)
        self._send(conn, conn.client, data, "bytes_down")

    def _send(self, conn: _Conn, dst: socket.socket, data: bytes, counter: str) -> None:
        # Counted first, so a test that has read the bytes also sees them counted.
        self._count(counter, len(data))
        try:
            dst.sendall(data)
        except OSError:
            self._finish(conn)

    def _reset(self, conn: _Conn, *, count: bool = True) -> None:
        with conn.lock:
            if conn.closed:
                return
            conn.closed = True
        if count:
            self._count("resets")
        _rst(conn.client)
        _close(conn.upstream)
        with self._lock:
            self._conns.discard(conn)

    def _finish(self, conn: _Conn) -> None:
        with conn.lock:
            if conn.closed:
                return
            conn.closed = True
        _close(conn.client)
        _close(conn.upstream)
        with self._lock:
            self._conns.discard(conn)
