"""Cross-origin resource sharing, answered at the gateway.

Preflights (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) are answered
here with 204, or refused with a plain 403 saying what was not allowed, and never reach the
app. Actual requests from an allowed origin get ``Access-Control-Allow-Origin`` on the way
out. With credentials the origin is echoed, never ``*`` (browsers reject that combination),
and every response whose headers depend on the origin carries ``Vary: Origin`` so a shared
cache does not hand one origin's answer to another. An app that sets its own
``Access-Control-Allow-Origin`` is left alone: it owns its CORS policy.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.config.schema import CorsOptions
from gateway.context import get_context
from gateway.extensions._http import add_vary, header_value
from gateway.extensions.base import Extension
from gateway.responses import send_error
from gateway.services import Services
from gateway.types import ASGIApp, Headers, Message, Receive, Scope, Send

# Request headers a browser may always send without them being allowed (Fetch standard).
_SAFELISTED = frozenset(("accept", "accept-language", "content-language", "content-type"))
_SUBDOMAINS = r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"


class OriginPolicy:
    """Which origins may read responses: exact strings, ``*``, or ``https://*.example.com``."""

    __slots__ = ("allow_all", "exact", "pattern", "_specs")

    def __init__(self, specs: list[str]) -> None:
        self._specs = tuple(specs)
        self.allow_all = "*" in specs
        self.exact = frozenset(s.rstrip("/") for s in specs if "*" not in s)
        wild = [re.escape(s.rstrip("/")).replace(r"\*", _SUBDOMAINS)
                for s in specs if "*" in s and s != "*"]
        self.pattern = re.compile("|".join(wild)) if wild else None

    def allows(self, origin: str) -> bool:
        if self.allow_all or origin in self.exact:
            return True
        return self.pattern is not None and self.pattern.fullmatch(origin) is not None

    def __repr__(self) -> str:
        return f"<OriginPolicy {list(self._specs)}>"


class CorsExtension(Extension):
    name = "cors"
    Options = CorsOptions

    def __init__(self, app: ASGIApp, *, options: CorsOptions, services: Services) -> None:
        super().__init__(app, options=options, services=services)
        self.origins = OriginPolicy(list(options.allow_origins))
        self.credentials = options.allow_credentials
        methods = [m.upper() for m in options.allow_methods]
        self.any_method = "*" in methods
        self.methods = frozenset(methods)
        self.methods_value = ", ".join(methods).encode()
        headers = [h.lower() for h in options.allow_headers]
        self.any_header = "*" in headers
        self.headers = frozenset(headers) | _SAFELISTED
        self.headers_value = ", ".join(options.allow_headers).encode()
        self.expose_value = ", ".join(options.expose_headers).encode()
        self.max_age_value = str(options.max_age).encode()
        # Only "anyone, no credentials" gives one answer for every origin; all else varies.
        self.fixed_origin = b"*" if self.origins.allow_all and not self.credentials else None
        self.preflights = 0
        self.refused = 0
        self.allowed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = header_value(scope["headers"], b"origin")
        if origin is not None and scope["method"] == "OPTIONS":
            requested = header_value(scope["headers"], b"access-control-request-method")
            if requested is not None:
                await self.preflight(scope, send, origin, requested)
                return
        if origin is not None and self.origins.allows(origin.decode("latin-1")):
            self.allowed += 1
            await self.app(scope, receive, self._allowing(origin, send))
        elif self.fixed_origin is None:
            await self.app(scope, receive, self._varying(send))
        else:
            await self.app(scope, receive, send)

    async def preflight(self, scope: Scope, send: Send, origin: bytes,
                        requested: bytes) -> None:
        self.preflights += 1
        ctx = get_context(scope)
        if ctx is not None and ctx.route is None:
            ctx.route = "cors-preflight"
        method = requested.decode("latin-1").strip().upper()
        asked = header_value(scope["headers"], b"access-control-request-headers") or b""
        names = [n.strip().lower() for n in asked.decode("latin-1").split(",") if n.strip()]
        problem = None
        if not self.origins.allows(origin.decode("latin-1")):
            problem = f"origin {origin.decode('latin-1')!r} is not allowed"
        elif not self.any_method and method not in self.methods:
            problem = f"method {method!r} is not allowed"
        elif not self.any_header:
            refused = [n for n in names if n not in self.headers]
            if refused:
                problem = f"header {refused[0]!r} is not allowed"
        if problem is not None:
            self.refused += 1
            if ctx is not None:
                ctx.notes["cors"] = problem
            await send_error(scope, send, 403, f"CORS preflight refused: {problem}")
            return
        headers: Headers = [
            (b"access-control-allow-origin", self.fixed_origin or origin),
            (b"access-control-allow-methods",
             method.encode() if self.any_method else self.methods_value),
            (b"access-control-max-age", self.max_age_value),
            (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
            (b"content-length", b"0"),
        ]
        if names:
            headers.append((b"access-control-allow-headers",
                            asked if self.any_header else self.headers_value))
        if self.credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    def _allowing(self, origin: bytes, send: Send) -> Send:
        allow_origin = self.fixed_origin or origin

        async def send_allowing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                if header_value(headers, b"access-control-allow-origin") is None:
                    headers.append((b"access-control-allow-origin", allow_origin))
                    if self.credentials:
                        headers.append((b"access-control-allow-credentials", b"true"))
                    if self.expose_value:
                        headers.append((b"access-control-expose-headers", self.expose_value))
                if self.fixed_origin is None:
                    add_vary(headers, b"Origin")
                message["headers"] = headers
            await send(message)

        return send_allowing

    @staticmethod
    def _varying(send: Send) -> Send:
        async def send_varying(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                add_vary(headers, b"Origin")
                message["headers"] = headers
            await send(message)

        return send_varying

    def metrics(self) -> dict[str, Any]:
        return {"preflights": self.preflights, "refused": self.refused,
                "allowed": self.allowed}

    def __repr__(self) -> str:
        return (f"<CorsExtension origins={self.origins!r} credentials={self.credentials} "
                f"preflights={self.preflights} refused={self.refused}>")
