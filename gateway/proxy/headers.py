"""Request-head building and hop-by-hop filtering, in bytes, for the proxy hot path.

Every request goes through :func:`build_request_head`, so it does one pass over the client's
headers with a single dict lookup per header and joins the head once. Header names in ASGI
scopes are already lowercase (ASGI spec), so no per-header ``lower()`` is needed here; the
response side lowercases in the parser callback (see ``client.py``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from gateway.types import Scope

if TYPE_CHECKING:
    from gateway.context import RequestContext
    from gateway.proxy.transport import UpstreamTarget

#: RFC 9110 §7.6.1 connection-specific headers plus the proxy-auth pair; never forwarded.
HOP_BY_HOP: frozenset[bytes] = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-authorization", b"proxy-authenticate",
})

#: Methods whose request may be sent twice without changing the outcome (RFC 9110 §9.2.2).
IDEMPOTENT_METHODS: frozenset[str] = frozenset(
    {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}
)

#: Methods that carry no body unless the client framed one (Content-Length/Transfer-Encoding);
#: for these we never call ``receive()`` before forwarding, which keeps GETs retryable.
_BODYLESS_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})

# How the request body is framed towards the upstream.
BODY_NONE = 0
BODY_LENGTH = 1  # the client's Content-Length is forwarded as-is
BODY_CHUNKED = 2  # the client sent Transfer-Encoding: chunked; we re-chunk
BODY_UNKNOWN = 3  # no framing from the client on a method that may carry a body

# Headers that need attention in the request pass; anything else is copied verbatim.
_HOST, _CL, _TE, _CONN, _XFF, _REPLACED = 1, 2, 3, 4, 5, 6
_SPECIAL: dict[bytes, int] = {name: _CONN for name in HOP_BY_HOP}
_SPECIAL.update({
    b"host": _HOST, b"content-length": _CL, b"transfer-encoding": _TE, b"connection": _CONN,
    b"x-forwarded-for": _XFF,
    # Set by us from trusted sources; a client-supplied value is dropped, not merged.
    b"x-forwarded-proto": _REPLACED, b"x-forwarded-host": _REPLACED,
    # The ASGI server already answered 100-continue to the client; the body is coming.
    b"expect": _REPLACED,
})

# Characters allowed in an origin-form request target (RFC 3986 pchar + "/" + "%"): a path
# made only of these is sent verbatim, so an already percent-encoded path is not re-encoded.
_NOT_TARGET_SAFE = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]")
_TARGET_SAFE = "/%:@!$&'()*+,;="


def encode_path(path: str) -> bytes:
    """Bytes for the request line. Only characters HTTP forbids (space, non-ASCII, controls)
    are percent-encoded; ``%`` is kept, so callers may pass a raw (encoded) path."""
    if _NOT_TARGET_SAFE.search(path) is None:
        return path.encode("ascii")
    return quote(path, safe=_TARGET_SAFE).encode("ascii")


def connection_tokens(value: bytes) -> set[bytes]:
    """Header names listed in a Connection header (which are hop-by-hop too)."""
    return {t.strip().lower() for t in value.split(b",") if t.strip()}


def build_request_head(
    scope: Scope, target: UpstreamTarget, ctx: RequestContext | None
) -> tuple[list[bytes], int]:
    """The request head as a list of byte pieces, without the final blank line, plus the body
    framing (``BODY_*``). The caller may append one framing header before joining."""
    method: str = scope["method"]
    line = encode_path(target.path)
    if target.query:
        line += b"?" + target.query
    parts = [method.encode("ascii"), b" ", line, b" HTTP/1.1\r\n"]
    extend = parts.extend

    host: bytes | None = None
    xff: bytes | None = None
    framing = BODY_NONE
    conn_value: bytes | None = None
    replace_ids = ctx is not None
    special_get = _SPECIAL.get
    for name, value in scope["headers"]:
        kind = special_get(name)
        if kind is None:
            if replace_ids and (name == b"x-request-id" or name == b"traceparent"):
                continue
            extend((name, b": ", value, b"\r\n"))
        elif kind == _HOST:
            host = value
            extend((b"host: ", value, b"\r\n"))
        elif kind == _CL:
            if framing != BODY_CHUNKED:  # RFC 9112 §6.3: Transfer-Encoding wins
                framing = BODY_LENGTH
                extend((b"content-length: ", value, b"\r\n"))
        elif kind == _TE:
            if framing == BODY_LENGTH:
                _drop_header(parts, b"content-length")
            framing = BODY_CHUNKED
        elif kind == _XFF:
            xff = value
        elif kind == _CONN and name == b"connection":
            conn_value = value
        # other hop-by-hop and _REPLACED headers are dropped

    if conn_value is not None:
        extra = connection_tokens(conn_value) - {b"close", b"keep-alive"}
        for token in extra:
            _drop_header(parts, token)
    if host is None:
        host = f"{target.host}:{target.port}".encode("ascii")
        extend((b"host: ", host, b"\r\n"))

    client = scope.get("client")
    if client:
        addr = client[0].encode("ascii")
        xff = xff + b", " + addr if xff else addr
    if xff:
        extend((b"x-forwarded-for: ", xff, b"\r\n"))
    proto = b"https" if scope.get("scheme") in ("https", "wss") else b"http"
    extend((b"x-forwarded-proto: ", proto, b"\r\nx-forwarded-host: ", host, b"\r\n"))
    if ctx is not None:
        extend((b"x-request-id: ", ctx.request_id.encode("latin-1"), b"\r\n"))
        if ctx.traceparent:
            extend((b"traceparent: ", ctx.traceparent.encode("latin-1"), b"\r\n"))

    if framing == BODY_NONE and method not in _BODYLESS_METHODS:
        framing = BODY_UNKNOWN
    return parts, framing


def _drop_header(parts: list[bytes], name: bytes) -> None:
    """Remove one already-appended header (4 pieces: name, ": ", value, CRLF). Rare path."""
    lname = name.lower()
    i = 4
    while i < len(parts):
        if parts[i].lower() == lname and parts[i + 1] == b": ":
            del parts[i:i + 4]
            continue
        if parts[i].lower() == lname + b": ":  # the "host: " / "content-length: " form
            del parts[i:i + 3]
            continue
        i += 1


def websocket_headers(scope: Scope, ctx: RequestContext | None) -> list[tuple[str, str]]:
    """Client headers to pass on a websocket handshake, as ``websockets`` wants them (str).

    The handshake headers (Host, Upgrade, Sec-WebSocket-*) are generated by the client
    library, so they are left out here along with the hop-by-hop set.
    """
    out: list[tuple[str, str]] = []
    xff: str | None = None
    host = ""
    replace_ids = ctx is not None
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")
        value = raw_value.decode("latin-1")
        if name == "host":
            host = value
            continue
        if name == "x-forwarded-for":
            xff = value
            continue
        if (raw_name in HOP_BY_HOP or name.startswith("sec-websocket-")
                or name in ("origin", "x-forwarded-proto", "x-forwarded-host")
                or (replace_ids and name in ("x-request-id", "traceparent"))):
            continue
        out.append((name, value))
    client: Any = scope.get("client")
    if client:
        xff = f"{xff}, {client[0]}" if xff else str(client[0])
    if xff:
        out.append(("x-forwarded-for", xff))
    out.append(("x-forwarded-proto", "https" if scope.get("scheme") in ("https", "wss")
                else "http"))
    if host:
        out.append(("x-forwarded-host", host))
    if ctx is not None:
        out.append(("x-request-id", ctx.request_id))
        if ctx.traceparent:
            out.append(("traceparent", ctx.traceparent))
    return out
