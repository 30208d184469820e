"""The ``routing`` extension: nginx-style locations that return, proxy or serve files.

Everything is compiled when the pipeline is built (locations, regexes, proxy URLs, static
roots), so a request costs one normalisation of its path (`uri.normalise`, as nginx's
``$uri``), one location selection and the action itself. A path that cannot be normalised is
400 here, whatever the locations, as nginx refuses it before looking at any. A request no
location takes goes on down the pipeline, which ends in a 404.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from gateway.config.schema import LocationAction, RoutingOptions
from gateway.context import get_context
from gateway.direct import ANSWER, ASGI, PASS, Plan
from gateway.errors import ConfigError
from gateway.extensions.base import Extension
from gateway.responses import send_error, send_plain
from gateway.routing.actions import HeaderRules, ReturnAction
from gateway.routing.locations import LocationMatch, LocationTable
from gateway.routing.staticfiles import StaticFiles
from gateway.routing.upstream import ProxyPass
from gateway.routing.uri import InvalidURI, escape_uri, request_uri
from gateway.services import Services
from gateway.types import ASGIApp, Receive, Scope, Send


@dataclass(frozen=True, slots=True)
class Route:
    """What one location does, built from its `LocationAction`. At most one of
    `returns`/`proxy`/`static` is set; none means "only add headers, then pass on"."""

    returns: ReturnAction | None
    proxy: ProxyPass | None
    static: StaticFiles | None
    headers: HeaderRules


class RoutingExtension(Extension):
    name = "routing"
    Options = RoutingOptions
    plans = True

    def __init__(self, app: ASGIApp, *, options: RoutingOptions, services: Services) -> None:
        super().__init__(app, options=options, services=services)
        self.table: LocationTable[Route] = LocationTable(
            ((pattern, self._build(pattern, action, services))
             for pattern, action in options.regex_locations.items()),
            slash_redirect=lambda route: route.proxy is not None)
        self._counts: dict[str, int] = {}

    @staticmethod
    def _build(pattern: str, action: LocationAction, services: Services) -> Route:
        where = f"regex_locations.{pattern!r}"
        try:
            headers = HeaderRules(action.headers)
            returns = proxy = static = None
            if action.return_ is not None:
                returns = ReturnAction(action.return_, action.content_type)
            elif action.proxy_pass is not None:
                proxy = ProxyPass(action.proxy_pass, regex=pattern.startswith("~"),
                                  timeout=action.proxy_timeout, name=pattern)
            elif action.root is not None:
                static = StaticFiles(
                    services.project.resolve(action.root), index_file=action.index_file,
                    spa_fallback=action.spa_fallback, exclude_patterns=action.exclude_patterns,
                    cache_control=action.cache_control)
        except ValueError as exc:
            raise ConfigError(str(exc), path=str(services.project.path), where=where) from None
        return Route(returns, proxy, static, headers)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function returning the awaitable of whatever answers: no frame of its own
        # on the proxy hot path (see `Extension`).
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            return self.app(scope, receive, send)
        try:
            uri = request_uri(scope)
        except InvalidURI as exc:
            return self._refuse(scope, send, exc)
        match = self.table.select(uri)
        if match is None:
            return self.app(scope, receive, send)
        route = match.value
        ctx = get_context(scope)
        if ctx is not None:
            ctx.route = match.pattern
        counts = self._counts
        counts[match.pattern] = counts.get(match.pattern, 0) + 1
        if match.redirect:
            return self._add_slash(scope, send, match.location.key)
        if route.headers:
            send = route.headers.wrap(send, match.groups)
        if route.proxy is not None:
            return self._proxy(scope, receive, send, route.proxy, match, uri)
        if kind == "websocket":
            if route.returns is None and route.static is None:
                return self.app(scope, receive, send)
            # Only proxy_pass can carry a websocket; refuse it like nginx refuses the
            # upgrade on a location that serves files.
            return send({"type": "websocket.close", "code": 1008})
        if route.returns is not None:
            return route.returns(scope, receive, send, match.groups)
        if route.static is not None:
            return route.static.serve(scope, receive, send, uri)
        return self.app(scope, receive, send)

    def plan(self, scope: Scope, plan: Plan) -> int:
        try:
            uri = request_uri(scope)
        except InvalidURI:
            return ASGI  # the 400 is __call__'s
        match = self.table.select(uri)
        if match is None:
            return PASS
        route = match.value
        if match.redirect or route.headers or route.proxy is None:
            return ASGI  # only a plain proxy_pass is planned
        try:
            plan.target = route.proxy.target(scope, match, uri)
        except ValueError:
            return ASGI  # the 502 is __call__'s
        ctx = get_context(scope)
        if ctx is not None:
            ctx.route = match.pattern
        return ANSWER

    def planned(self, scope: Scope, plan: Plan, status: int) -> None:
        if plan.answerer is self:
            ctx = get_context(scope)
            pattern = ctx.route if ctx is not None else None
            if pattern is not None:
                self._counts[pattern] = self._counts.get(pattern, 0) + 1

    @staticmethod
    def _add_slash(scope: Scope, send: Send, name: bytes) -> Awaitable[None]:
        """nginx's answer to ``/api`` for a ``proxy_pass`` location ``/api/``: 301 to it."""
        if scope["type"] == "websocket":
            return send({"type": "websocket.close", "code": 1008})
        location = escape_uri(name).encode("ascii")
        if scope.get("query_string"):
            location += b"?" + scope["query_string"]
        return send_plain(send, 301, "301 Moved Permanently\n", headers=[(b"location", location)],
                          head=scope["method"] == "HEAD")

    @staticmethod
    def _refuse(scope: Scope, send: Send, exc: InvalidURI) -> Awaitable[None]:
        ctx = get_context(scope)
        if ctx is not None:
            ctx.notes["refused"] = str(exc)
        if scope["type"] == "websocket":
            return send({"type": "websocket.close", "code": 1008})
        return send_error(scope, send, 400, str(exc))

    def _proxy(self, scope: Scope, receive: Receive, send: Send, proxy: ProxyPass,
               match: LocationMatch[Route], uri: bytes) -> Awaitable[None]:
        try:
            target = proxy.target(scope, match, uri)
        except ValueError as exc:
            if scope["type"] == "websocket":
                return send({"type": "websocket.close", "code": 1011})
            return send_error(scope, send, 502, f"bad upstream URL: {exc}")
        transport = self.services.transport  # it records the upstream in the context
        if scope["type"] == "websocket":
            return transport.websocket(scope, receive, send, target)
        return transport.http(scope, receive, send, target)

    def metrics(self) -> dict[str, Any] | None:
        """Requests per location pattern, for /metrics."""
        return {"locations": dict(self._counts)}

    def __repr__(self) -> str:
        return f"<RoutingExtension {self.table!r}>"
