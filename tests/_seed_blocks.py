"""Extract, rewrite and run the ```python blocks of the seed documents (no tests here).

A block runs as a user would run it after changing the import: its
``langgraph_checkpoint_aws`` imports become ``from streamstate import ...`` and the
environment is supplied (Valkey URLs, placeholders, names it uses without defining).
Rewrites go through the AST, so line numbers stay the document's own and a traceback
points at the line of the ``.md`` file.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import io
import re
import socket
import ssl
import subprocess
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

PACKAGE = "langgraph_checkpoint_aws"
# A Valkey URL's scheme and authority; the path (a database number) is kept.
URL_RE = re.compile(r"\b(?:valkeys?|rediss?)://[^/\s\"']+")
_FENCE = re.compile(r"^```(\w*)\s*$")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$")


@dataclass(frozen=True)
class Block:
    doc: Path
    number: int  # 1-based among the document's python blocks
    heading: str  # the nearest heading above the block
    nth: int  # 1-based among the python blocks under that heading
    line: int  # document line of the block's first source line
    source: str

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"{self.doc.stem}-{self.number:02d}-{slug}" + (
            f"-{self.nth}" if self.nth > 1 else ""
        )


def extract_blocks(doc: Path) -> list[Block]:
    """Every ```python block of a Markdown document, with the heading it sits under."""
    blocks: list[Block] = []
    per_heading: dict[str, int] = {}
    heading, lang, start = "", None, 0
    body: list[str] = []
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        fence = _FENCE.match(line)
        if lang is None:
            if fence:
                lang, start, body = fence.group(1), number + 1, []
            elif match := _HEADING.match(line):
                heading = match.group(1)
        elif fence and not fence.group(1):
            if lang == "python":
                per_heading[heading] = per_heading.get(heading, 0) + 1
                source = "\n".join(body) + "\n"
                blocks.append(
                    Block(doc, len(blocks) + 1, heading, per_heading[heading], start, source)
                )
            lang = None
        else:
            body.append(line)
    return blocks


def rewrite_signature_listing(source: str) -> str:
    """Turn a documented call signature into a call, keeping the line count.

    ``Name(\\n    param: Annotation = default,  # comment\\n)`` lists a constructor's
    parameters; it becomes ``listed = Name(param=default, ...)``. A parameter without a
    default gets the annotation when that is a lower-case name (the doc passes a
    variable: ``client: valkey_client``), else a variable of the parameter's own name
    that the environment supplies (``client: Valkey``).
    """
    lines = source.splitlines()
    out: list[str] = []
    listing: str | None = None
    for line in lines:
        if listing is None:
            match = re.fullmatch(r"(\w+)\(", line)
            if match:
                listing = match.group(1)
                out.append(f"listed = {listing}(")
            else:
                out.append(line)
            continue
        if line.strip() == ")":
            out.append(")")
            listing = None
            continue
        code = re.sub(r"\s+#.*$", "", line).rstrip().rstrip(",")
        param = re.fullmatch(r"\s*(\w+):\s*(.+?)(?:\s+=\s+(.+))?", code)
        if param is None:
            raise ValueError(f"not a parameter line of a signature listing: {line!r}")
        name, annotation, default = param.groups()
        if default is None:
            default = annotation if re.fullmatch(r"[a-z_]\w*", annotation) else name
        out.append(f"    {name}={default},")
    return "\n".join(out) + "\n"


class _Rewrite(ast.NodeTransformer):
    """Imports to streamstate, Valkey URLs to the test server, placeholders filled."""

    def __init__(self, url: str, placeholders: Mapping[str, str]) -> None:
        self.url = url
        self.placeholders = placeholders

    def visit(self, node: ast.AST) -> Any:
        if self.placeholders and isinstance(node, ast.expr):
            replacement = self.placeholders.get(ast.unparse(node))
            if replacement is not None:
                return ast.copy_location(ast.parse(replacement, mode="eval").body, node)
        return super().visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.ImportFrom:
        module = node.module or ""
        if module == PACKAGE or module.startswith(PACKAGE + "."):
            return ast.copy_location(ast.ImportFrom("streamstate", node.names, 0), node)
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        if isinstance(node.value, str) and URL_RE.search(node.value):
            return ast.copy_location(ast.Constant(URL_RE.sub(self.url, node.value)), node)
        return node


def _record_after_each_statement(tree: ast.Module) -> None:
    """Call ``__record__()`` after every top-level statement (see :class:`Ran.seen`)."""
    body: list[ast.stmt] = []
    for statement in tree.body:
        record = ast.Expr(ast.Call(ast.Name("__record__", ast.Load()), [], []))
        body += [statement, ast.copy_location(record, statement)]
    tree.body = body
    ast.fix_missing_locations(tree)


@dataclass
class Ran:
    """What a block left: its namespace, every value each name held, what it printed."""

    ns: dict[str, Any]
    seen: dict[str, list[Any]] = field(default_factory=dict)
    stdout: str = ""

    def __getitem__(self, name: str) -> Any:
        return self.ns[name]


def run_block(
    block: Block,
    *,
    url: str,
    names: Mapping[str, Any] | None = None,
    placeholders: Mapping[str, str] | None = None,
    source: str | None = None,
) -> Ran:
    """Rewrite and run a block; top-level ``await`` runs it in a new event loop.

    Args:
        url: Replaces the scheme and authority of every Valkey URL in a string literal.
        names: What the environment supplies (names the block uses without defining).
        placeholders: Source of an expression (as ``ast.unparse`` writes it) -> the
            source to put in its place, for values the doc leaves to the user.
        source: The block's source after a textual rewrite (signature listings).
    """
    tree = ast.parse(source or block.source, filename=str(block.doc))
    tree = _Rewrite(url, placeholders or {}).visit(tree)
    _record_after_each_statement(tree)
    ast.increment_lineno(tree, block.line - 1)
    ran = Ran(ns={"__name__": "__seed__", **(names or {})})

    def record() -> None:
        for name, value in ran.ns.items():
            if name.startswith("__"):
                continue
            history = ran.seen.setdefault(name, [])
            if not history or history[-1] is not value:
                history.append(value)

    ran.ns["__record__"] = record
    code = compile(tree, str(block.doc), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if code.co_flags & inspect.CO_COROUTINE:
            asyncio.run(eval(code, ran.ns))
        else:
            exec(code, ran.ns)
    ran.stdout = out.getvalue()
    return ran


class WordEmbeddings(Embeddings):
    """Bag-of-words vectors: texts sharing words are close. Deterministic, no model."""

    def __init__(self, dims: int) -> None:
        self.dims = dims

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        vector = [0.0] * self.dims
        vector[0] = 1e-3  # never the zero vector, whose cosine is undefined
        for word in re.findall(r"\w+", text.lower()):
            vector[zlib.crc32(word.encode()) % self.dims] += 1.0
        return vector


# TLS: the docs' secure-connection example needs a TLS server with client certificates,
# and the embedded valkey-server is built without TLS: a terminating proxy stands in.


def make_pki(directory: Path) -> None:
    """``ca-cert.pem``, ``client-cert.pem``/``client-key.pem`` (the names the docs use) and
    ``server-cert.pem``/``server-key.pem`` for localhost, all signed by one CA."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", *key, "-keyout", "ca-key.pem", "-out", "ca-cert.pem",
            "-days", "1", "-subj", "/CN=seed-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl("req", *key, "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
                "-subj", f"/CN=seed-{name}")  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca-cert.pem",
                "-CAkey", "ca-key.pem", "-CAcreateserial", "-days", "1",
                "-out", f"{name}-cert.pem", "-extfile", "san.ext")  # fmt: skip


class TlsProxy:
    """Accepts TLS connections (a client certificate signed by the CA required) on a
    loopback port and relays each to a plain-text server."""

    def __init__(self, pki: Path, target_port: int) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki / "server-cert.pem", pki / "server-key.pem")
        self.context.load_verify_locations(pki / "ca-cert.pem")
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.peers: list[str] = []  # the client certificate's CN, per connection
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        subject = dict(item for rdn in tls.getpeercert()["subject"] for item in rdn)
        self.peers.append(subject["commonName"])
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        threading.Thread(target=_pump, args=(upstream, tls), daemon=True).start()
        _pump(tls, upstream)

    def close(self) -> None:
        self.listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
