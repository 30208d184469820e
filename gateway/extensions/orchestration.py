"""`process_orchestration`: route requests to app processes by path prefix.

The engine creates and owns the `Orchestrator` (it outlives pipeline rebuilds) and puts it
in `services.orchestrator`; this extension only routes. Admission is the supervisor's
(`AppSupervisor.admit`/`readmit`): a request for an app that is starting or restarting
waits up to `hold_requests` for it, then gets 503 with Retry-After; a stopped or failed app
answers 503 at once, naming the cause of a failure. A request refused by the app's process
goes once more when `proxy.headers.may_resend` allows and nothing of it was read from the
client (`reads_no_body`: a body cannot be sent twice). Upstream failures propagate as
`UpstreamError`, which the gateway core turns into 502/504 naming the app.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from gateway.config.schema import AppConfig, OrchestrationOptions
from gateway.context import RequestContext, get_context
from gateway.direct import ANSWER, ASGI, PASS, Plan
from gateway.errors import UpstreamConnectError
from gateway.extensions.base import Extension
from gateway.orchestrator.lease import Lease, resolve
from gateway.orchestrator.states import IDLE, AppState
from gateway.orchestrator.supervisor import AppContext, AppSupervisor
from gateway.proxy.headers import may_resend, reads_no_body
from gateway.proxy.transport import UpstreamTarget
from gateway.responses import send_error
from gateway.routing.uri import REWRITTEN, escape_uri, to_bytes
from gateway.services import Services
from gateway.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("pyserve.orchestrator.proxy")


class OrchestrationExtension(Extension):
    name: ClassVar[str] = "process_orchestration"
    Options: ClassVar[type] = OrchestrationOptions
    plans: ClassVar[bool] = True

    def __init__(self, app: ASGIApp, *, options: Any, services: Services) -> None:
        super().__init__(app, options=options, services=services)
        self._owns_orchestrator = False
        self.proxied = 0
        self.held = 0
        self.unavailable = 0
        self.retried = 0
        self._by_app: dict[str, _AppFacts] = {}

    async def startup(self) -> None:
        # Normally the engine made the orchestrator; on our own (tests, embedding) we make it.
        if self.services.orchestrator is None:
            from gateway.orchestrator import Orchestrator

            orch = Orchestrator.for_project(self.services.project, events=self.services.events)
            self.services.orchestrator = orch
            self._owns_orchestrator = True
            await orch.start()

    async def shutdown(self) -> None:
        if self._owns_orchestrator and self.services.orchestrator is not None:
            orch, self.services.orchestrator = self.services.orchestrator, None
            self._owns_orchestrator = False
            await orch.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        orch = self.services.orchestrator
        if scope["type"] not in ("http", "websocket") or orch is None:
            await self.app(scope, receive, send)
            return
        match = orch.resolve(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        sup, path = match
        facts = self._facts(sup)
        ctx = get_context(scope)
        facts.claim(ctx)
        lease = await sup.admit(self._count_hold)
        if lease is None:
            await self._unavailable(scope, send, sup)
            return
        target = facts.target(scope, lease, path)
        self.proxied += 1
        try:
            if scope["type"] == "websocket":
                await self.services.transport.websocket(scope, receive, send, target)
            else:
                await self._http(scope, receive, send, sup, lease, target)
        finally:
            lease.release()
        if ctx is not None:
            self._log(scope, ctx, ctx.status)

    def plan(self, scope: Scope, plan: Plan) -> int:
        orch = self.services.orchestrator
        if orch is None:
            return PASS
        match = resolve(orch.routes, scope["path"])
        if match is None:
            return PASS
        sup, path = match
        lease = sup.lease()  # what `admit` gives at once; waiting for one is __call__'s
        if lease is None:
            return ASGI
        facts = self._facts(sup)
        facts.claim(get_context(scope))
        plan.lease = lease
        plan.target = facts.target(scope, lease, path)
        return ANSWER

    def _facts(self, sup: AppSupervisor) -> _AppFacts:
        """What every request for `sup` is sent with, made again when its configuration or
        the options it inherits change."""
        facts = self._by_app.get(sup.name)
        if facts is None or facts.config is not sup.config or facts.context is not sup.context:
            facts = self._by_app[sup.name] = _AppFacts(sup)
        return facts

    def planned(self, scope: Scope, plan: Plan, status: int) -> None:
        if plan.answerer is self:
            self.proxied += 1
            ctx = get_context(scope)
            if ctx is not None:
                self._log(scope, ctx, status)

    def _log(self, scope: Scope, ctx: RequestContext, status: int) -> None:
        orch = self.services.orchestrator
        if orch is not None and orch.options.logging.proxy_logs \
                and log.isEnabledFor(logging.INFO):
            log.info("%s %s %s -> %s in %.1f ms [%s]", ctx.app, scope.get("method", "WS"),
                     scope["path"], status, ctx.elapsed_ms(), ctx.request_id)

    async def _http(self, scope: Scope, receive: Receive, send: Send, sup: AppSupervisor,
                    lease: Lease, target: UpstreamTarget) -> None:
        try:
            await self.services.transport.http(scope, receive, send, target)
        except UpstreamConnectError as exc:
            # The process we picked died (or was replaced) before it answered: the request
            # goes once more, held like any request for a restarting app, when the resend
            # rule allows and nothing of it was read from the client (a body is gone).
            if not (reads_no_body(scope) and may_resend(scope["method"], sent=exc.sent)):
                raise
            retry = await sup.readmit(lease, self._count_hold)
            if retry is None:
                raise
            self.retried += 1
            with retry:
                await self.services.transport.http(
                    scope, receive, send, target._replace(port=retry.port))

    def _count_hold(self) -> None:
        self.held += 1

    async def _unavailable(self, scope: Scope, send: Send, sup: AppSupervisor) -> None:
        self.unavailable += 1
        if scope["type"] == "websocket":
            await _refuse_websocket(scope, send, sup)
            return
        if sup.state in IDLE:
            await send_error(scope, send, 503, _why_unavailable(sup), app=sup.name)
            return
        hold = float(sup.opt("hold_requests"))
        await send_error(scope, send, 503, _why_unavailable(sup, hold), app=sup.name,
                         retry_after=max(1.0, hold))

    def metrics(self) -> dict[str, Any] | None:
        return {"proxied": self.proxied, "held": self.held, "unavailable": self.unavailable,
                "retried": self.retried}

    def __repr__(self) -> str:
        orch = self.services.orchestrator
        apps = len(orch.supervisors) if orch else 0
        return (f"<OrchestrationExtension apps={apps} proxied={self.proxied} "
                f"held={self.held} unavailable={self.unavailable}>")


async def _refuse_websocket(scope: Scope, send: Send, sup: AppSupervisor) -> None:
    """A 503 with a body when the server supports denial responses, else a plain refusal."""
    ctx = get_context(scope)
    rid = ctx.request_id if ctx else "-"
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1013})
        return
    body = (f"503 Service Unavailable - app {sup.name!r}; {_why_unavailable(sup)}; "
            f"request id {rid}\n").encode()
    if ctx is not None:
        ctx.status = 503
    await send({"type": "websocket.http.response.start", "status": 503,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()),
                            (b"x-request-id", rid.encode("latin-1"))]})
    await send({"type": "websocket.http.response.body", "body": body})


class _AppFacts:
    """An app's name, route label, prefix and proxy timeout, as of its configuration and
    the options it inherits (`config`, `context`): read once, not on every request."""

    __slots__ = ("config", "context", "name", "route", "timeout", "prefix")

    def __init__(self, sup: AppSupervisor) -> None:
        self.config: AppConfig = sup.config
        self.context: AppContext = sup.context
        self.name: str = sup.name
        self.route: str = f"app:{sup.name}"
        self.timeout: float = float(sup.opt("proxy_timeout"))
        self.prefix: str = sup.config.prefix

    def claim(self, ctx: RequestContext | None) -> None:
        """Mark the request as this app's in its context (the log, metrics and trace say
        so)."""
        if ctx is not None:
            ctx.app = self.name
            ctx.route = self.route

    def target(self, scope: Scope, lease: Lease, path: str) -> UpstreamTarget:
        """Where a request for the app goes: its leased process, `path` (the prefix stripped
        when `strip_path`)."""
        return UpstreamTarget("127.0.0.1", lease.port, _upstream_path(scope, path),
                              scope.get("query_string", b""), self.timeout, self.name,
                              "http", self.prefix)


def _why_unavailable(sup: AppSupervisor, waited: float | None = None) -> str:
    """"the app is failed: <cause>": the state and, when something went wrong, why
    (a stopped app was stopped on purpose; its old cause would mislead)."""
    state = sup.state
    text = f"the app is {state}" + (f" (waited {waited:g}s)" if waited is not None else "")
    if sup.last_error and state is not AppState.STOPPED:
        text += f": {sup.last_error}" if state in (AppState.FAILED, AppState.UNHEALTHY) \
            else f"; last error: {sup.last_error}"
    return text



def _upstream_path(scope: Scope, path: str) -> str:
    """The path to send, from the raw (still percent-encoded) path when there is one."""
    raw = scope.get("raw_path")
    full: str = scope["path"]
    if not raw:
        return path
    if scope.get(REWRITTEN):
        # The client's target needed normalising (`//api/x`, `/api/./x`): as nginx's
        # proxy_pass with a URI part, the normalised path goes, escaped again; without
        # one (no strip), the target as sent.
        if path == full:
            return raw.decode("latin-1").split("?", 1)[0]
        return escape_uri(to_bytes(path))
    raw_text = raw.decode("latin-1").split("?", 1)[0]
    if path == full:
        return raw_text
    cut = len(full) - len(path) if path != "/" or full.endswith("/") else len(full)
    prefix = full[:cut]
    if raw_text.startswith(prefix):
        return raw_text[len(prefix):] or "/"
    return path
