"""Small plain-text ASGI responses used by the gateway itself (errors, `return` actions)."""

from __future__ import annotations

from gateway.context import get_context
from gateway.types import Headers, Scope, Send

REASONS = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout", 413: "Payload Too Large", 416: "Range Not Satisfiable",
    429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}


async def send_plain(send: Send, status: int, body: bytes | str, *,
                     content_type: bytes = b"text/plain; charset=utf-8",
                     headers: Headers | None = None, head: bool = False) -> None:
    if isinstance(body, str):
        body = body.encode()
    out: Headers = [(b"content-type", content_type),
                    (b"content-length", str(len(body)).encode())]
    if headers:
        out.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def send_error(scope: Scope, send: Send, status: int, detail: str = "", *,
                     app: str | None = None, retry_after: float | None = None,
                     close: bool = False, headers: Headers | None = None) -> None:
    """A short, plain error naming the app (if any) and the request id; `close` ends the
    connection after it (the request's body was not read to its end); `headers` are added
    (a challenge such as ``WWW-Authenticate``)."""
    ctx = get_context(scope)
    rid = ctx.request_id if ctx else "-"
    reason = REASONS.get(status, "Error")
    parts = [f"{status} {reason}"]
    if app:
        parts.append(f"app {app!r}")
    if detail:
        parts.append(detail)
    parts.append(f"request id {rid}")
    extra: Headers = list(headers or ())
    if retry_after is not None:
        extra.append((b"retry-after", str(max(1, int(retry_after + 0.999))).encode()))
    if close:
        extra.append((b"connection", b"close"))
    await send_plain(send, status, ": ".join(parts[:1]) + (" - " + "; ".join(parts[1:]))
                     + "\n", headers=extra, head=scope.get("method") == "HEAD")
