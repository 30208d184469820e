"""Forward auth: ask another service about every request before it goes on.

As Traefik's ForwardAuth and nginx's ``auth_request``: the auth service gets the request's
method, headers and URI (without the body), plus ``X-Forwarded-Method``, ``X-Forwarded-Uri``,
``X-Forwarded-Proto``, ``X-Forwarded-Host`` and ``X-Forwarded-For`` (those a client sent are
replaced). A 2xx answer lets the request through, with the `response_headers` it names
copied onto the request; any other answer (401 with its challenge, a 302 to a login page, a
403...) goes to the client as it came: status, headers and body, streamed.

The service is an URL (``http://127.0.0.1:9200/verify``) or an orchestrated app
(``app:NAME/verify``), reached like any request for that app (its current port, held while
it restarts). Both go through the gateway's pooled upstream client: no client is made per
request. An auth service that cannot be reached answers 502, one that does not answer within
`timeout` 504, an app that is stopped 503; each says it was the authentication service.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any

from gateway.auth.forward_url import parse_forward_url
from gateway.context import SCOPE_KEY, RequestContext, get_context
from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.extensions._http import refuse
from gateway.types import Headers, Message, Scope, Send

if TYPE_CHECKING:
    from gateway.services import Services

#: Request headers the auth service does not get: the body's framing (no body is sent), the
#: websocket handshake, and the X-Forwarded-Method/-Uri we set ourselves.
_NOT_FORWARDED = frozenset({
    b"content-length", b"transfer-encoding", b"expect", b"upgrade", b"connection",
    b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions",
    b"sec-websocket-protocol", b"x-forwarded-method", b"x-forwarded-uri",
})
#: How much of a refusal is kept to answer a websocket handshake with (http streams it), and
#: how much of a 2xx answer's body (which nobody reads) is drained before the connection to
#: the auth service is dropped instead.
_WS_BODY_LIMIT = 64 * 1024
_DRAIN_LIMIT = 64 * 1024


class _Drained(OSError):
    """Raised from the relay's `send` to stop reading an allowing answer's endless body:
    the transport treats an OSError from `send` as a departed client and closes the
    upstream connection quietly (see `gateway.proxy.http`)."""
@dataclass
class ForwardAnswer:
    """What the auth service said: `allowed` with the headers to copy, or refused (already
    answered to the client)."""

    allowed: bool
    status: int
    copy: Headers
    elapsed_ms: float


class ForwardAuth:
    def __init__(self, url: str, response_headers: Sequence[str], timeout: float,
                 services: Services) -> None:
        self.url = parse_forward_url(url)
        self.copy_names = frozenset(h.strip().lower().encode("latin-1")
                                    for h in response_headers)
        self.timeout = timeout
        self.services = services

    def _scope(self, scope: Scope, path: str) -> Scope:
        is_ws = scope["type"] == "websocket"
        method = "GET" if is_ws else scope["method"]
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        uri = raw.split(b"?", 1)[0]
        if scope.get("query_string"):
            uri += b"?" + scope["query_string"]
        headers = [(k, v) for k, v in scope["headers"] if k not in _NOT_FORWARDED]
        headers.append((b"x-forwarded-method", method.encode("ascii")))
        headers.append((b"x-forwarded-uri", uri))
        ctx = get_context(scope)
        scheme = scope.get("scheme", "http")
        return {
            "type": "http", "asgi": scope.get("asgi", {"version": "3.0"}),
            "http_version": "1.1", "method": method,
            "scheme": {"ws": "http", "wss": "https"}.get(scheme, scheme),
            "path": path, "raw_path": None, "query_string": self.url.query,
            "root_path": "", "headers": headers, "client": scope.get("client"),
            "server": scope.get("server"),
            # Its own context: the auth exchange's timings must not pass for the app's.
            SCOPE_KEY: RequestContext(ctx.request_id, ctx.traceparent) if ctx else None,
        }

    async def ask(self, scope: Scope, send: Send) -> ForwardAnswer:
        """Ask the auth service about `scope`; on anything but 2xx the client has its answer."""
        from gateway.proxy.transport import UpstreamTarget

        started = perf_counter()
        state = _Relay(scope, send)
        url = self.url
        lease = None
        try:
            host, port = url.host, url.port
            if url.app is not None:
                lease, why = await self._lease(url.app)
                if lease is None:
                    await refuse(scope, send, 503,
                                 f"the authentication app {url.app!r} is {why}")
                    return ForwardAnswer(False, 503, [], _ms(started))
                host, port = lease.host, lease.port
            target = UpstreamTarget(host, port, url.path, url.query, self.timeout,
                                    f"auth {url.label}")
            try:
                await self.services.transport.http(self._scope(scope, url.path),
                                                   _no_body, state.send, target)
            except UpstreamError as exc:
                if state.passed:
                    raise  # part of the refusal went out: the connection must be cut
                status = 504 if isinstance(exc, UpstreamTimeout) else 502
                await refuse(scope, send, status,
                             f"the authentication service {url.label} failed: {exc}")
                return ForwardAnswer(False, status, [], _ms(started))
        finally:
            if lease is not None:
                lease.release()
        if state.allowed:
            copy = [(k, v) for k, v in state.headers if k in self.copy_names]
            return ForwardAnswer(True, state.status, copy, _ms(started))
        if scope["type"] == "websocket":
            await state.refuse_websocket()
        return ForwardAnswer(False, state.status, [], _ms(started))

    async def _lease(self, name: str) -> tuple[Any, str]:
        orch = self.services.orchestrator
        sup = orch.supervisors.get(name) if orch is not None else None
        if sup is None:
            return None, "not running (no such app)"
        lease = await sup.admit()
        return lease, str(sup.state)

    def __repr__(self) -> str:
        return f"<ForwardAuth {self.url.label} copy={sorted(self.copy_names)}>"


def _ms(started: float) -> float:
    return (perf_counter() - started) * 1000.0


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class _Relay:
    """The auth service's response: kept when it allows (its body dropped), passed on to
    the client as it arrives when it refuses an http request, collected (bounded) for a
    websocket handshake."""

    __slots__ = ("scope", "client_send", "status", "headers", "allowed", "passed", "body",
                 "drained")

    def __init__(self, scope: Scope, client_send: Send) -> None:
        self.scope = scope
        self.client_send = client_send
        self.status = 0
        self.headers: Headers = []
        self.allowed = False
        self.passed = False
        self.body = bytearray()
        self.drained = 0

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = int(message["status"])
            self.headers = list(message.get("headers") or ())
            self.allowed = 200 <= self.status < 300
            if not self.allowed and self.scope["type"] == "http":
                self.passed = True
                await self.client_send(message)
        elif kind == "http.response.body" and self.allowed:
            self.drained += len(message.get("body", b""))
            if self.drained > _DRAIN_LIMIT and message.get("more_body", False):
                raise _Drained
        elif kind == "http.response.body":
            if self.scope["type"] == "http":
                await self.client_send(message)
            elif len(self.body) < _WS_BODY_LIMIT:
                self.body += message.get("body", b"")[:_WS_BODY_LIMIT - len(self.body)]

    async def refuse_websocket(self) -> None:
        if "websocket.http.response" not in (self.scope.get("extensions") or {}):
            await self.client_send({"type": "websocket.close", "code": 1008})
            return
        body = bytes(self.body)
        headers = [(k, v) for k, v in self.headers
                   if k not in (b"content-length", b"transfer-encoding")]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.client_send({"type": "websocket.http.response.start",
                                "status": self.status, "headers": headers})
        await self.client_send({"type": "websocket.http.response.body", "body": body})
