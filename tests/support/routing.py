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
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TypeVar

import uvicorn

from tests.support.harness import read_response, wait_until

DEADLINE = 10.0
T = TypeVar("T")


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    header_lines: list[tuple[str, str]] = field(default_factory=list)


async def raw_http(port: int, request: bytes | str) -> RawResponse:
    """Send `request` verbatim and read one response (`harness.read_response`), seen
    with its headers as a dict."""
    if isinstance(request, str):
        request = request.encode("latin-1")
    async with asyncio.timeout(DEADLINE):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            await writer.drain()
            response = await read_response(reader, head_request=request.startswith(b"HEAD "))
            assert response is not None, "the connection closed without a response"
            return RawResponse(response.status, dict(response.headers), response.body,
                               list(response.headers))
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


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
        await wait_until(lambda: server.started, DEADLINE, interval=0.01)
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, DEADLINE)
        sock.close()
