"""IP filtering and security response headers.

Runs first in the pipeline (``runs_first``) so a refused client gets its 403 before any other
extension spends work on it. Addresses are checked against the real peer; X-Forwarded-For is
believed only from `trusted_proxies` (see `_client`). On the way out the configured security
headers, or a modern default set, are added to every http response that does not already
carry them: an app that sets its own ``X-Frame-Options`` knows better than a global default.
"""

from __future__ import annotations

from typing import Any

from gateway.config.schema import SecurityOptions
from gateway.context import get_context
from gateway.direct import ASGI, PASS, Extra, Plan, add_missing
from gateway.extensions._client import ClientResolver, NetworkSet
from gateway.extensions._http import refuse
from gateway.extensions.base import Extension
from gateway.services import Services
from gateway.types import ASGIApp, Headers, Message, Receive, Scope, Send

# Current best practice: no legacy X-XSS-Protection (it can introduce leaks in old browsers
# and does nothing in new ones), and HSTS only on https where browsers honour it.
DEFAULT_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
DEFAULT_HSTS = (b"strict-transport-security", b"max-age=31536000")
#: Peer addresses whose verdict is remembered (`SecurityExtension.client_refused`).
VERDICTS = 4096


def _encode(headers: dict[str, str]) -> Headers:
    return [(k.strip().lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in headers.items()]


class SecurityExtension(Extension):
    name = "security"
    Options = SecurityOptions
    runs_first = True
    plans = True

    def __init__(self, app: ASGIApp, *, options: SecurityOptions, services: Services) -> None:
        super().__init__(app, options=options, services=services)
        self.allowed = NetworkSet(options.allowed_ips) if options.allowed_ips is not None \
            else None
        self.blocked = NetworkSet(options.blocked_ips)
        self.resolver = ClientResolver(options.trusted_proxies)
        #: Whether any proxy may name the client (else the peer alone decides).
        self.trusting = bool(self.resolver.trusted)
        configured = options.security_headers
        self.headers = _encode(DEFAULT_HEADERS if configured is None else configured)
        # On https the default set also gets HSTS; a configured set is sent as written.
        self.https_headers = self.headers + [DEFAULT_HSTS] if configured is None \
            else self.headers
        self._names = frozenset(name for name, _ in self.https_headers)
        #: The same, as the direct path adds them (`direct.Extra`: pre-encoded).
        self._direct = Extra(self.headers)
        self._direct_https = Extra(self.https_headers)
        self.filtering = self.allowed is not None or bool(self.blocked)
        self.blocked_count = 0
        self.allowed_count = 0
        #: Verdicts by peer address, when no proxy is trusted (the peer alone decides): the
        #: same few peers send nearly every request. Bounded: cleared when full.
        self._verdicts: dict[str, str | None] = {}

    def client_refused(self, scope: Scope) -> str | None:
        """Why this request's client is refused, or None when it may pass."""
        if self.trusting:
            return self._verdict(scope)
        client = scope.get("client")
        peer = str(client[0]) if client else ""
        verdicts = self._verdicts
        if peer in verdicts:
            return verdicts[peer]
        if len(verdicts) >= VERDICTS:
            verdicts.clear()
        verdict = verdicts[peer] = self._verdict(scope)
        return verdict

    def _verdict(self, scope: Scope) -> str | None:
        client = self.resolver.resolve(scope)
        if client.ip is not None and client.ip in self.blocked:
            return f"client {client.text} is blocked"
        if self.allowed is not None and (client.ip is None or client.ip not in self.allowed):
            return f"client {client.text or 'unknown'} is not allowed"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        if self.filtering:
            reason = self.client_refused(scope)
            if reason is not None:
                self.blocked_count += 1
                ctx = get_context(scope)
                if ctx is not None:
                    ctx.notes["security"] = reason
                await refuse(scope, self._with_headers(scope, send), 403, reason)
                return
        self.allowed_count += 1
        if kind == "websocket":
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, self._with_headers(scope, send))

    def plan(self, scope: Scope, plan: Plan) -> int:
        if self.filtering and self.client_refused(scope) is not None:
            return ASGI  # the refusal (403, counted, noted) is __call__'s
        plan.extra_headers.append(
            self._direct_https if scope.get("scheme") == "https" else self._direct)
        return PASS

    def planned(self, scope: Scope, plan: Plan, status: int) -> None:
        self.allowed_count += 1

    def _extra(self, scope: Scope) -> Headers:
        return self.https_headers if scope.get("scheme") == "https" else self.headers

    def _with_headers(self, scope: Scope, send: Send) -> Send:
        extra = self._extra(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                add_missing(headers, extra, self._names)
                message["headers"] = headers
            await send(message)

        return send_with_headers

    def metrics(self) -> dict[str, Any]:
        return {"blocked": self.blocked_count, "allowed": self.allowed_count}

    def __repr__(self) -> str:
        return (f"<SecurityExtension allowed={self.allowed!r} blocked={self.blocked!r} "
                f"trusted={self.resolver.trusted!r} refused={self.blocked_count}>")
