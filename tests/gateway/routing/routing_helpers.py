"""Helpers for the routing tests: raw HTTP over a socket, and a real echo upstream.

The raw client sends the request line exactly as written, because normalising clients
(httpx, browsers) would resolve ``..`` and re-encode the path before a traversal attempt ever
reached the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import uvicorn

DEADLINE = 10.0
T = TypeVar("T")


async def eventually(probe: Callable[[], T | None], timeout: float = DEADLINE) -> T:
    """Poll `probe` until it returns something truthy, failing after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            value = probe()
            if value:
                return value
            await asyncio.sleep(0.01)


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    header_lines: list[tuple[str, str]] = field(default_factory=list)


async def raw_http(port: int, request: bytes | str) -> RawResponse:
    """Send `request` verbatim (CRLFs added if given as lines) and read one response."""
    if isinstance(request, str):
        request = request.encode("latin-1")
    async with asyncio.timeout(DEADLINE):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            pairs = []
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    pairs.append((name.strip().lower(), value.strip()))
            headers = dict(pairs)
            if request.startswith(b"HEAD ") or status in (204, 304):
                body = b""
            elif "content-length" in headers:
                body = await reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding") == "chunked":
                body = await _read_chunked(reader)
            else:
                body = await reader.read()
            return RawResponse(status, headers, body, pairs)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        if size == 0:
            await reader.readline()
            return bytes(out)
        out += await reader.readexactly(size)
        await reader.readline()


def get(path: str, *headers: str, method: str = "GET") -> bytes:
    """A raw HTTP/1.1 request line plus headers, closing the connection afterwards."""
    lines = [f"{method} {path} HTTP/1.1", "Host: test", "Connection: close", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def echo_app(scope, receive, send):  # type: ignore[no-untyped-def]
    """Answers with what it received: the request target as sent, and the headers."""
    if scope["type"] == "lifespan":
        return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send",
                        "text": f"{scope['raw_path'].decode()} {msg.get('text')}"})
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    target = scope["raw_path"].decode("latin-1")
    if scope["query_string"]:
        target += "?" + scope["query_string"].decode("latin-1")
    payload = json.dumps({
        "method": scope["method"], "target": target, "body": body.decode("latin-1"),
        "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
    }).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()),
                            (b"x-upstream", b"echo")]})
    await send({"type": "http.response.body", "body": payload})


@contextlib.asynccontextmanager
async def echo_upstream() -> AsyncIterator[int]:
    """Serve `echo_app` with uvicorn on a free port; yields the port."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(echo_app, lifespan="off", log_level="error",
                                           access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started)
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, DEADLINE)
        sock.close()
