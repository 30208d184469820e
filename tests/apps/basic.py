"""The all-purpose test app.

    /health         200, or 500 while the file named by $BAD_HEALTH_FILE exists
    /echo...        JSON: method, path (without root_path), scope_path, root_path, query,
                    headers, body, pid
    /env?name=X     JSON: the value of $X
    /pid            the process id
    /crash          the process exits in the middle of the request
    /slow?s=0.5     answers after s seconds
    /sse?n=3&gap=0.3  server-sent events, `gap` seconds apart
    /log            prints and logs a line (carrying the request id)
    /self-redirect  302 to /echo on the app's own address (as an app that ignores Host does)
    /ws             WebSocket echo
"""

from __future__ import annotations

import asyncio
import logging
import os
from urllib.parse import parse_qs

from tests.apps.common import lifespan, read_body, route_path, send_json, send_text

log = logging.getLogger("tests.apps.basic")


def _query(scope: dict) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}


def _sick() -> bool:
    flag = os.environ.get("BAD_HEALTH_FILE")
    return bool(flag) and os.path.exists(flag)  # a stat call: cheap enough for a test app


async def app(scope: dict, receive, send) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        await lifespan(receive, send)
        return
    if kind == "websocket":
        await websocket_echo(receive, send)
        return
    path = route_path(scope)
    query = _query(scope)
    if path == "/health":
        if _sick():
            await send_text(send, "sick", 500)
        else:
            await send_text(send, "ok")
    elif path == "/pid":
        await send_text(send, str(os.getpid()))
    elif path == "/env":
        await send_json(send, {"value": os.environ.get(query.get("name", ""))})
    elif path == "/crash":
        await read_body(receive)
        os._exit(3)
    elif path == "/slow":
        await asyncio.sleep(float(query.get("s", "0.5")))
        await send_text(send, "slow done")
    elif path == "/sse":
        await sse(send, int(query.get("n", "3")), float(query.get("gap", "0.3")))
    elif path == "/self-redirect":
        own = f"http://127.0.0.1:{os.environ.get('PORT', '0')}{scope.get('root_path', '')}/echo"
        await send({"type": "http.response.start", "status": 302,
                    "headers": [(b"location", own.encode()), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/log":
        print("printed inside a request")
        log.warning("logged inside a request")
        await send_text(send, "logged")
    else:
        body = await read_body(receive)
        await send_json(send, {
            "method": scope["method"], "path": path, "scope_path": scope["path"],
            "root_path": scope.get("root_path", ""),
            "query": scope.get("query_string", b"").decode(),
            "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
            "body": body.decode(errors="replace"), "pid": os.getpid(),
        })


async def sse(send, n: int, gap: float) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream"),
                            (b"cache-control", b"no-cache")]})
    for i in range(n):
        await send({"type": "http.response.body", "body": f"data: event {i}\n\n".encode(),
                    "more_body": True})
        await asyncio.sleep(gap)
    await send({"type": "http.response.body", "body": b""})


async def websocket_echo(receive, send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": "echo: " + message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
