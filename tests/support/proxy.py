"""Helpers for the proxy tests: raw upstream servers that send exact bytes, and a tiny ASGI
client harness (fake ``receive``/``send`` that record messages).

Raw ``asyncio.start_server`` upstreams let a test control every byte and every close, which a
real framework would hide; each one is closed (clients and handler tasks too) at teardown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.proxy import UpstreamTarget

DEADLINE = 5.0


@dataclass
class RawRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    conn_no: int

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n == name]
        return ", ".join(values) if values else None

    def names(self) -> set[str]:
        return {n for n, _ in self.headers}


async def read_head(reader: asyncio.StreamReader) -> tuple[str, str, list[tuple[str, str]]] | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = raw.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
    return method, target, headers


async def read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]]) -> bytes:
    h = dict(headers)
    if "content-length" in h:
        return await reader.readexactly(int(h["content-length"]))
    if h.get("transfer-encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readline()
                return bytes(out)
            out += await reader.readexactly(size)
            await reader.readline()
    return b""


Respond = Callable[[RawRequest, asyncio.StreamWriter], Awaitable[bool | None]]


@dataclass
class Upstream:
    """A raw upstream. ``respond`` writes the answer to each parsed request and returns False
    to close the socket; ``raw`` instead gets the connection's bytes to itself."""

    respond: Respond | None = None
    raw: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]] | None = None
    host: str = "127.0.0.1"
    port: int = 0
    connections: int = 0
    requests: list[RawRequest] = field(default_factory=list)
    closed_connections: int = 0
    server: asyncio.Server | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def target(self, path: str = "/", **kw: Any) -> UpstreamTarget:
        return UpstreamTarget(self.host, self.port, path, **kw)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.writers.append(writer)
        self.connections += 1
        conn_no = self.connections
        self._notify()
        try:
            if self.raw is not None:
                await self.raw(reader, writer)
                return
            assert self.respond is not None
            while True:
                head = await read_head(reader)
                if head is None:
                    break
                method, target, headers = head
                body = await read_body(reader, headers)
                req = RawRequest(method, target, headers, body, conn_no)
                self.requests.append(req)
                self._notify()
                keep = await self.respond(req, writer)
                await writer.drain()
                if keep is False:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Teardown cancels handlers parked on events; finishing normally keeps asyncio's
            # stream callback from logging the cancellation as an error.
            pass
        finally:
            writer.close()
            self.closed_connections += 1
            self._notify()
            self.tasks.discard(task)

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def until(self, predicate: Callable[[], bool], timeout: float = DEADLINE) -> None:
        """Wait for a condition on this server's state, with a deadline."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self.changed.wait()

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
        for w in self.writers:
            w.close()
        for t in list(self.tasks):
            t.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=DEADLINE)
        if self.server is not None:
            await self.server.wait_closed()


def response(status: int = 200, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
             *, length: bool = True, reason: str = "OK") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{n}: {v}" for n, v in headers or []]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class AsgiClient:
    """Fake ASGI server side for one request: feeds ``body_parts`` to ``receive`` and records
    what the app ``send``s. After the body, ``receive`` blocks until ``disconnect()``."""

    def __init__(self, body_parts: list[bytes] | None = None, *,
                 on_send: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
                 keep_body: bool = True) -> None:
        parts = body_parts if body_parts is not None else [b""]
        self.inbox: list[dict[str, Any]] = [
            {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
            for i, p in enumerate(parts)
        ]
        self.sent: list[dict[str, Any]] = []
        self.body_bytes = 0
        self.body = bytearray()
        self.keep_body = keep_body
        self.on_send = on_send
        self.gate: dict[int, asyncio.Event] = {}  # receive() of part i waits for gate[i]
        self.received = 0
        self._gone = asyncio.Event()
        self.first_body = asyncio.Event()

    def disconnect(self) -> None:
        self._gone.set()

    async def receive(self) -> dict[str, Any]:
        if self.inbox:
            gate = self.gate.get(self.received)
            if gate is not None:
                await asyncio.wait_for(gate.wait(), DEADLINE)
            self.received += 1
            return self.inbox.pop(0)
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.body":
            self.body_bytes += len(msg["body"])
            if self.keep_body:
                self.body += msg["body"]
            if msg["body"]:
                self.first_body.set()
            self.sent.append({**msg, "body": len(msg["body"])})
        else:
            self.sent.append(msg)
        if self.on_send is not None:
            await self.on_send(msg)

    @property
    def start(self) -> dict[str, Any]:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        assert len(starts) == 1, self.sent
        return starts[0]

    @property
    def status(self) -> int:
        return int(self.start["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.start["headers"])

    @property
    def finished(self) -> bool:
        last = self.sent[-1] if self.sent else {}
        return last.get("type") == "http.response.body" and not last.get("more_body", False)


def make_scope(method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None, *,
               peer: tuple[str, int] | None = ("10.0.0.7", 5555), scheme: str = "http",
               ctx: Any = None) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http", "method": method, "scheme": scheme, "path": "/", "raw_path": b"/",
        "query_string": b"", "headers": headers if headers is not None
        else [(b"host", b"gw.test")], "client": peer,
    }
    if ctx is not None:
        scope["pyserve"] = ctx
    return scope


async def ok(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
    writer.write(response(200, b"hello"))
    return True
