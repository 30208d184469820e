"""A small ASGI JSON API with no framework: health, items, echo, a slow call and SSE."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

log = logging.getLogger("demo.api")
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

ITEMS = [{"id": 1, "name": "kettle"}, {"id": 2, "name": "teapot"}, {"id": 3, "name": "mug"}]
STARTED = time.time()


async def _json(send, status: int, payload: object) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    # Behind the gateway (as behind `uvicorn --root-path`) `path` starts with `root_path`,
    # the prefix the app is mounted under; routes are matched on what follows it.
    path = scope["path"][len(scope.get("root_path", "")):] or "/"
    if path == "/health":
        await _json(send, 200, {"status": "ok", "pid": os.getpid()})
    elif path in ("/", "/items"):
        log.info("listing %d items", len(ITEMS))
        await _json(send, 200, ITEMS)
    elif path.startswith("/items/"):
        item = next((i for i in ITEMS if str(i["id"]) == path.rsplit("/", 1)[1]), None)
        if item is None:
            log.warning("no item at %s", path)
            await _json(send, 404, {"error": "no such item"})
        else:
            await _json(send, 200, item)
    elif path == "/echo":
        body = await _read_body(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        await _json(send, 200, {"method": scope["method"], "body": body.decode(errors="replace"),
                                "headers": headers})
    elif path == "/slow":
        await asyncio.sleep(0.5)
        await _json(send, 200, {"slept": 0.5})
    elif path == "/events":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"),
                                (b"cache-control", b"no-cache")]})
        for n in range(5):
            await send({"type": "http.response.body", "body": f"data: tick {n}\n\n".encode(),
                        "more_body": True})
            await asyncio.sleep(0.5)
        await send({"type": "http.response.body", "body": b""})
    else:
        await _json(send, 404, {"error": f"no route {path}"})
