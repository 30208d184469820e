"""A forward-auth service, as Traefik ForwardAuth and nginx auth_request talk to.

    /health      200
    /verify      200 with X-User and X-Auth-Saw ("METHOD URI" it was asked about) when the
                 request carries `X-Pass: yes`; 302 to /login with a Set-Cookie and a body
                 when it carries `X-Pass: login`; 200 with a body that takes 20 s to
                 stream for `X-Pass: stream`; 401 with its own challenge otherwise.
                 `?sleep=S` answers after S seconds.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

from tests.apps.common import lifespan, send_text


async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    headers = dict(scope["headers"])
    if scope["path"] == "/health":
        await send_text(send, "ok")
        return
    query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
    if "sleep" in query:
        await asyncio.sleep(float(query["sleep"]))
    verdict = headers.get(b"x-pass", b"")
    if verdict == b"yes":
        saw = headers.get(b"x-forwarded-method", b"-") + b" " + headers.get(
            b"x-forwarded-uri", b"-")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-user", b"bob"), (b"x-auth-saw", saw),
                                (b"x-not-copied", b"1"), (b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
    elif verdict == b"stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-user", b"streamer")]})
        await _stream_until_gone(receive, send)
    elif verdict == b"login":
        body = b"go and log in\n"
        await send({"type": "http.response.start", "status": 302,
                    "headers": [(b"location", b"/login?next=x"),
                                (b"set-cookie", b"flow=abc; Path=/"),
                                (b"content-type", b"text/plain"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    else:
        body = b"authsvc says no\n"
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"www-authenticate", b'Bearer realm="authsvc"'),
                                (b"content-type", b"text/plain"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


async def _stream_until_gone(receive, send) -> None:  # type: ignore[no-untyped-def]
    """16 KiB every 10 ms for 20 s, or until the client hangs up."""
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.create_task(watch())
    try:
        for _ in range(2000):
            if gone.is_set():
                return
            await send({"type": "http.response.body", "body": b"x" * 16384, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
    finally:
        watcher.cancel()
