"""The upstream every benchmark proxies to: the smallest useful ASGI app."""

BODY = b"Hello, World!"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def plaintext(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


CHUNK = 64 * 1024
_BLOCK = b"\x5a" * CHUNK


async def bodies(scope, receive, send):
    """Moves bodies without keeping them: POST/PUT reads and discards the request body and
    answers its size; `GET /download?mb=N` streams N MiB in 64 KiB chunks; anything else is
    the plain-text answer (so `/health` is 200)."""
    if scope["type"] != "http":
        return
    if scope["method"] in ("POST", "PUT"):
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = str(size).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    if scope["path"].endswith("/download"):
        query = scope.get("query_string", b"").decode()
        mb = int(query.partition("mb=")[2].partition("&")[0] or "1")
        total = mb * 2**20
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream"),
                                (b"content-length", str(total).encode())]})
        for _ in range(total // CHUNK):
            await send({"type": "http.response.body", "body": _BLOCK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await plaintext(scope, receive, send)
