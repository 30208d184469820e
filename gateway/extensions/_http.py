"""Header helpers shared by the middleware-like extensions.

ASGI headers are lists of ``(lowercase name, value)`` byte pairs; these helpers read and edit
them without building dicts, because most requests only need one or two headers looked at.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.responses import REASONS, send_error
from gateway.types import Headers, Scope, Send


def header_value(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of header `name` (lowercase), or None."""
    for key, value in headers:
        if key == name:
            return value
    return None


def joined_values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """All values of a list-valued header joined with ", " (RFC 9110 5.3), or None."""
    found = [value for key, value in headers if key == name]
    if not found:
        return None
    return found[0] if len(found) == 1 else b", ".join(found)


def parse_directives(value: bytes | None) -> dict[str, str | None]:
    """``Cache-Control``-style ``a, b=1, c="x"`` into ``{"a": None, "b": "1", "c": "x"}``."""
    out: dict[str, str | None] = {}
    if not value:
        return out
    for part in value.decode("latin-1").split(","):
        name, sep, arg = part.partition("=")
        name = name.strip().lower()
        if name:
            out[name] = arg.strip().strip('"') if sep else None
    return out


def parse_qlist(value: bytes | None) -> dict[str, float]:
    """An ``Accept-Encoding``-style list into ``{token: q}``; malformed q-values count as 0."""
    out: dict[str, float] = {}
    if not value:
        return out
    for part in value.decode("latin-1").split(","):
        token, *params = part.split(";")
        token = token.strip().lower()
        if not token:
            continue
        q = 1.0
        for param in params:
            key, _, arg = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(arg.strip())
                except ValueError:
                    q = 0.0
                q = q if 0.0 <= q <= 1.0 else 0.0
        out[token] = q
    return out


def add_vary(headers: Headers, token: bytes) -> None:
    """Add `token` to the response's ``Vary`` unless it (or ``*``) is already listed."""
    wanted = token.lower()
    for i, (key, value) in enumerate(headers):
        if key == b"vary":
            listed = [t.strip().lower() for t in value.split(b",")]
            if wanted in listed or b"*" in listed:
                return
            headers[i] = (key, value + b", " + token if value.strip() else token)
            return
    headers.append((b"vary", token))


async def refuse(scope: Scope, send: Send, status: int, detail: str, *,
                 retry_after: float | None = None, headers: Headers | None = None) -> None:
    """Refuse an http request or a websocket handshake with `status` (and `headers`).

    A websocket is answered with a real HTTP status when the server supports the
    ``websocket.http.response`` extension, otherwise it is closed with 1008 (policy violation),
    which servers turn into a 403 before the handshake completes.
    """
    if scope["type"] != "websocket":
        await send_error(scope, send, status, detail, retry_after=retry_after,
                         headers=headers)
        return
    if "websocket.http.response" in (scope.get("extensions") or {}):
        body = f"{status} {REASONS.get(status, 'Error')} - {detail}\n".encode()
        out: Headers = [(b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()), *(headers or ())]
        if retry_after is not None:
            out.append((b"retry-after", str(max(1, int(retry_after + 0.999))).encode()))
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": out})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
