"""Request-head building and hop-by-hop filtering, in bytes, for the proxy hot path.

Every request goes through :func:`build_request_head`, so it does one pass over the client's
headers with a single dict lookup per header and joins the head once. Header names in ASGI
scopes are already lowercase (ASGI spec), so no per-header ``lower()`` is needed here; the
response side lowercases in the parser callback (see ``client.py``).

The forwarding headers an app receives are the gateway's word, never the client's
(`Forwarding`): ``X-Forwarded-For`` is the peer address, extended rather than replaced only
when the peer is one of the project's `trusted_proxies`; ``X-Forwarded-Proto`` and
``-Host`` are the connection's scheme and Host header unless a trusted proxy sent its own;
``X-Forwarded-Prefix`` is the app's mount path (only for an app whose prefix is stripped);
a ``Forwarded`` header is passed on (with the gateway's hop appended) only from a trusted
proxy and otherwise replaced by the gateway's own element. The trust check runs only for
requests that carry one of these headers, so ordinary requests pay nothing for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import quote

from gateway.extensions._client import NetworkSet, parse_address
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


def upstream_address(host: str, port: int) -> str:
    """How an upstream is named in the request context and the request log ("host:port",
    as nginx's ``$upstream_addr``)."""
    return f"{host}:{port}"


def may_resend(method: str, *, sent: bool) -> bool:
    """Whether a request that got no response byte may go to an upstream again (the one
    resend rule; the caller also needs the whole request still at hand, body included).

    As nginx's ``proxy_next_upstream`` by default: a request that never reached the
    upstream (`sent` False: the connection was refused) may go again whatever its method;
    one that was written and got no answer only when its method is idempotent, because the
    upstream may already have acted on it (RFC 9110 §9.2.2; nginx's ``non_idempotent`` is
    off by default).
    """
    return not sent or method in IDEMPOTENT_METHODS

#: Methods that carry no body unless the client framed one (Content-Length/Transfer-Encoding);
#: for these we never call ``receive()`` before forwarding, which keeps GETs retryable.
BODYLESS_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})


def reads_no_body(scope: Scope) -> bool:
    """Forwarding this request reads nothing from ``receive()`` (a bodyless method and no
    body framed), so a failed attempt can be made again from the scope alone."""
    return scope["method"] in BODYLESS_METHODS and not any(
        name == b"content-length" or name == b"transfer-encoding"
        for name, _ in scope["headers"])

# How the request body is framed towards the upstream.
BODY_NONE = 0
BODY_LENGTH = 1  # the client's Content-Length is forwarded as-is
BODY_CHUNKED = 2  # the client sent Transfer-Encoding: chunked; we re-chunk
BODY_UNKNOWN = 3  # no framing from the client on a method that may carry a body

# Headers that need attention in the request pass; anything else is copied verbatim.
_HOST, _CL, _TE, _CONN, _FORWARDING, _DROPPED = 1, 2, 3, 4, 5, 6
#: The forwarding headers: set by the gateway, believed from `trusted_proxies` only.
FORWARDING_HEADERS: frozenset[bytes] = frozenset({
    b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-prefix",
    b"forwarded",
})
_SPECIAL: dict[bytes, int] = {name: _CONN for name in HOP_BY_HOP}
_SPECIAL.update({name: _FORWARDING for name in FORWARDING_HEADERS})
_SPECIAL.update({
    b"host": _HOST, b"content-length": _CL, b"transfer-encoding": _TE, b"connection": _CONN,
    # The ASGI server already answered 100-continue to the client; the body is coming.
    b"expect": _DROPPED,
})


class Forwarding:
    """Whose forwarding headers are believed: the project's `trusted_proxies` (the union of
    the `security` and `rate_limit` lists). One object is shared by the transport and the
    in-process mounts; a configuration reload updates it in place."""

    __slots__ = ("trusted",)

    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self.trusted = NetworkSet(trusted_proxies)

    def update(self, trusted_proxies: Iterable[str]) -> None:
        self.trusted = NetworkSet(trusted_proxies)

    def trusts(self, scope: Scope) -> bool:
        """The TCP peer of this request is a trusted proxy."""
        if not self.trusted:
            return False
        client = scope.get("client")
        if not client:
            return False
        ip = parse_address(str(client[0])).ip
        return ip is not None and ip in self.trusted

    def headers(self, scope: Scope, received: dict[bytes, bytes], host: bytes,
                prefix: str | None) -> list[tuple[bytes, bytes]]:
        """The forwarding headers to send upstream, given those the client sent
        (`received`, repeated ones joined with ``", "``) and the Host it asked for."""
        trusted = bool(received) and self.trusts(scope)
        client = scope.get("client")
        peer = str(client[0]).encode("latin-1") if client else b""
        out: list[tuple[bytes, bytes]] = []
        xff = received.get(b"x-forwarded-for") if trusted else None
        if peer:
            out.append((b"x-forwarded-for", xff + b", " + peer if xff else peer))
        elif xff:
            out.append((b"x-forwarded-for", xff))
        proto = (received.get(b"x-forwarded-proto") if trusted else None) or _scheme(scope)
        fhost = (received.get(b"x-forwarded-host") if trusted else None) or host
        out.append((b"x-forwarded-proto", proto))
        if fhost:
            out.append((b"x-forwarded-host", fhost))
        if prefix:
            out.append((b"x-forwarded-prefix", prefix.encode("latin-1")))
        given = received.get(b"forwarded")
        if given is not None:
            hop = b"for=" + _forwarded_node(peer) if peer else b"for=unknown"
            if trusted:
                out.append((b"forwarded", given + b", " + hop))
            else:
                out.append((b"forwarded", hop + b";host=" + _quoted(host) + b";proto=" + proto))
        return out

    def __repr__(self) -> str:
        return f"<Forwarding trusted={self.trusted!r}>"


def _scheme(scope: Scope) -> bytes:
    return b"https" if scope.get("scheme") in ("https", "wss") else b"http"


def _forwarded_node(peer: bytes) -> bytes:
    """An RFC 7239 node: IPv6 addresses are bracketed and quoted."""
    return b'"[' + peer + b']"' if b":" in peer else peer


def _quoted(value: bytes) -> bytes:
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def collect_forwarding(headers: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The forwarding headers a client sent, repeated ones joined (for `Forwarding.headers`)."""
    received: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in FORWARDING_HEADERS:
            seen = received.get(name)
            received[name] = seen + b", " + value if seen is not None else value
    return received


def rewrite_location(headers: list[tuple[bytes, bytes]], host: str,
                     port: int) -> list[tuple[bytes, bytes]]:
    """nginx's ``proxy_redirect default`` for an app told its prefix: a ``Location`` that
    names the app's own address (``http://127.0.0.1:9001/x``, an app that ignored the Host
    header) becomes the same path on the gateway (``/x``), never a link to the app's port."""
    origin = f"http://{host}:{port}".encode("ascii")
    out = headers
    for i, (name, value) in enumerate(headers):
        if name == b"location" and value.startswith(origin) and (
                len(value) == len(origin) or value[len(origin)] in b"/?#"):
            if out is headers:
                out = list(headers)
            rest = value[len(origin):]
            out[i] = (name, rest if rest.startswith(b"/") else b"/" + rest)
    return out

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
    scope: Scope, target: UpstreamTarget, ctx: RequestContext | None,
    forwarding: Forwarding | None = None,
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
    received: dict[bytes, bytes] | None = None
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
        elif kind == _FORWARDING:
            if received is None:
                received = {}
            seen = received.get(name)
            received[name] = seen + b", " + value if seen is not None else value
        elif kind == _CONN and name == b"connection":
            conn_value = value
        # other hop-by-hop and _DROPPED headers are dropped

    if conn_value is not None:
        extra = connection_tokens(conn_value) - {b"close", b"keep-alive"}
        for token in extra:
            _drop_header(parts, token)
    if host is None:
        host = f"{target.host}:{target.port}".encode("ascii")
        extend((b"host: ", host, b"\r\n"))

    if received is None:
        # The common case, without a dict or a trust check: nothing forwarded by the client.
        client = scope.get("client")
        if client:
            extend((b"x-forwarded-for: ", client[0].encode("ascii"), b"\r\n"))
        extend((b"x-forwarded-proto: ", _scheme(scope), b"\r\nx-forwarded-host: ", host,
                b"\r\n"))
        if target.prefix:
            extend((b"x-forwarded-prefix: ", target.prefix.encode("latin-1"), b"\r\n"))
    else:
        for name, value in (forwarding or _UNTRUSTING).headers(
                scope, received or {}, host, target.prefix):
            extend((name, b": ", value, b"\r\n"))
    if ctx is not None:
        extend((b"x-request-id: ", ctx.request_id.encode("latin-1"), b"\r\n"))
        if ctx.traceparent:
            extend((b"traceparent: ", ctx.traceparent.encode("latin-1"), b"\r\n"))

    if framing == BODY_NONE and method not in BODYLESS_METHODS:
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


def websocket_headers(scope: Scope, ctx: RequestContext | None,
                      forwarding: Forwarding | None = None,
                      prefix: str | None = None) -> list[tuple[str, str]]:
    """Client headers to pass on a websocket handshake, as ``websockets`` wants them (str).

    The handshake headers (Host, Upgrade, Sec-WebSocket-*) are generated by the client
    library, so they are left out here along with the hop-by-hop set; the forwarding
    headers are the gateway's (see `Forwarding`).
    """
    out: list[tuple[str, str]] = []
    received: dict[bytes, bytes] = {}
    host = b""
    replace_ids = ctx is not None
    for raw_name, raw_value in scope["headers"]:
        if raw_name == b"host":
            host = raw_value
            continue
        if raw_name in FORWARDING_HEADERS:
            seen = received.get(raw_name)
            received[raw_name] = seen + b", " + raw_value if seen is not None else raw_value
            continue
        name = raw_name.decode("latin-1")
        if (raw_name in HOP_BY_HOP or name.startswith("sec-websocket-") or name == "origin"
                or (replace_ids and name in ("x-request-id", "traceparent"))):
            continue
        out.append((name, raw_value.decode("latin-1")))
    for raw_name, raw_value in (forwarding or _UNTRUSTING).headers(scope, received, host,
                                                                   prefix):
        out.append((raw_name.decode("latin-1"), raw_value.decode("latin-1")))
    if ctx is not None:
        out.append(("x-request-id", ctx.request_id))
        if ctx.traceparent:
            out.append(("traceparent", ctx.traceparent))
    return out


#: Trusts nobody: what a caller without the project's `Forwarding` gets.
_UNTRUSTING = Forwarding()
