"""Small ASGI apps the backend tests serve (also imported by `run_app` in child processes)."""

from __future__ import annotations

import os

from gateway.types import Receive, Scope, Send
from tests.apps.common import lifespan


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers every request with its own PID (tells workers apart) and echoes a POST body."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    text = body or f"pid={os.getpid()} path={scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(text)).encode())]})
    await send({"type": "http.response.body", "body": text})
