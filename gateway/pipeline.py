"""The gateway's ASGI application: request identity, built-in endpoints, the extension chain.

The chain is built once per configuration from the ordered ``[[extensions]]`` list, in
reverse, so the first declared extension sees the request first. Error handling and request
bookkeeping sit outermost, in `GatewayApp`. A reload swaps the whole chain in one assignment,
so a request runs entirely on the old chain or entirely on the new one.
"""

from __future__ import annotations

import logging
import re
from functools import partial
from random import getrandbits
from typing import Any

from gateway import direct
from gateway.builtin import handle_builtin
from gateway.config.schema import ExtensionConfig
from gateway.context import SCOPE_KEY, RequestContext, is_event_stream
from gateway.direct import ANSWER, ASGI, PLAN_KEY, DirectRequest, Plan
from gateway.direct import METHODS as DIRECT_METHODS
from gateway.errors import RequestError, UpstreamError
from gateway.extensions.base import Extension
from gateway.extensions.registry import extension_class
from gateway.requestlog import RequestRecord
from gateway.responses import send_error
from gateway.routing.uri import REWRITTEN, InvalidURI, canonicalise
from gateway.services import Services
from gateway.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("pyserve.gateway")

_REQUEST_ID_RE = re.compile(rb"[\x21-\x7e]{1,128}")
_TRACEPARENT_RE = re.compile(rb"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_BUILTIN_PATHS = frozenset(("/health", "/metrics"))
_make_record = RequestRecord._make


def new_request_id() -> str:
    """A random (version 4) UUID, formatted; cheaper than str(uuid.uuid4()) (no UUID object).

    Request ids need uniqueness, not secrecy, so the Mersenne Twister is enough.
    """
    h = "%032x" % (getrandbits(128) & _UUID_CLEAR | _UUID_V4)  # noqa: UP031 - fastest here
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_V4 = (0x4000 << 64) | (0x8000 << 48)


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """The end of every chain: no extension answered."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send_error(scope, send, 404, f"no route for {scope.get('path', '/')}")


class Pipeline:
    """One built chain of extensions, with the instances kept for metrics and lifecycle."""

    def __init__(self, configs: tuple[ExtensionConfig, ...], services: Services) -> None:
        ordered = sorted(configs, key=lambda c: not getattr(extension_class(c.type),
                                                            "runs_first", False))
        app: ASGIApp = not_found
        members: list[Extension] = []
        for cfg in reversed(ordered):
            cls = extension_class(cfg.type)
            ext = cls(app, options=cfg.options, services=services)
            if not getattr(ext, "name", ""):
                ext.name = cfg.type
            members.append(ext)
            app = ext
        self.app = app
        self.members = list(reversed(members))
        seen: dict[str, int] = {}
        named: list[Any] = self.members  # instance names, as above (a ClassVar by default)
        for member in named:  # a repeated type (auth) is auth, auth#2... in /metrics
            seen[member.name] = n = seen.get(member.name, 0) + 1
            if n > 1:
                member.name = f"{member.name}#{n}"
        #: Members that also guard the gateway's own /metrics (authentication), in order.
        self.guards = [e for e in self.members if getattr(e, "guards_builtins", False)]
        #: Whether every member can decide a request without ASGI (`gateway.direct`).
        self.plans = bool(self.members) and all(getattr(e, "plans", False)
                                                for e in self.members)

    def plan(self, scope: Scope) -> Plan | None:
        """The members' decision for a request the direct path may serve (`Extension.plan`),
        or None when it must take the ASGI path (a member said so, or none answered)."""
        plan = Plan()
        for depth, member in enumerate(self.members):
            verdict = member.plan(scope, plan)
            if verdict == ANSWER:
                plan.answerer = member
                plan.depth = depth
                return plan
            if verdict == ASGI:
                plan.release()
                return None
        return None

    def planned(self, scope: Scope, plan: Plan, status: int) -> None:
        """Tell the members that took part in `plan` (innermost first, as the response
        passes them on the ASGI path) that its response, `status`, is going out."""
        members = self.members
        i = plan.depth
        while i >= 0:
            members[i].planned(scope, plan, status)
            i -= 1

    async def guarded(self, scope: Scope, receive: Receive, send: Send,
                      endpoint: ASGIApp) -> None:
        """Run `endpoint` behind the guards (only /metrics comes here: no per-request cost
        elsewhere)."""
        app = endpoint
        for ext in reversed(self.guards):
            app = partial(ext.guard, app=app)
        await app(scope, receive, send)

    async def startup(self) -> None:
        for ext in self.members:
            await ext.startup()

    async def shutdown(self) -> None:
        for ext in reversed(self.members):
            try:
                await ext.shutdown()
            except Exception:
                log.exception("extension %r failed to shut down", ext)

    def metrics(self) -> dict[str, Any]:
        out = {}
        for ext in self.members:
            m = ext.metrics()
            if m is not None:
                out[ext.name] = m
        return out

    def __repr__(self) -> str:
        return f"<Pipeline {[e.name for e in self.members]}>"


class GatewayApp:
    """The ASGI app the serving backend runs."""

    def __init__(self, pipeline: Pipeline, services: Services) -> None:
        self.pipeline = pipeline
        self.services = services
        self.on_record: list[Any] = []  # callables(record) e.g. headless access log
        #: Requests the direct path started (`serve_direct`), whether or not it finished them.
        self.direct_started = 0

    @staticmethod
    def context(scope: Scope) -> RequestContext:
        """The request's context: its id (the client's `X-Request-ID` when well-formed, or
        a new one), its `traceparent`; made once (the direct path may have made it)."""
        ctx: RequestContext | None = scope.get(SCOPE_KEY)
        if ctx is not None:
            return ctx
        rid = tp = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if _REQUEST_ID_RE.fullmatch(value):
                    rid = value.decode("ascii")
            elif name == b"traceparent":
                if _TRACEPARENT_RE.fullmatch(value):
                    tp = value.decode("ascii")
        ctx = scope[SCOPE_KEY] = RequestContext(rid or new_request_id(), tp)
        return ctx

    @staticmethod
    def stamp(ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]],
              session: bool = False) -> list[tuple[bytes, bytes]]:
        """The response head as it leaves the gateway: the request id and `traceparent`
        added to `headers` (in place), the context told the status and headers; a session
        (a WebSocket, an event stream) gets its latency now, at its head."""
        headers.append((b"x-request-id", ctx.request_id.encode("ascii")))
        if ctx.traceparent:
            headers.append((b"traceparent", ctx.traceparent.encode("ascii")))
        ctx.status = status
        ctx.response_headers = headers
        if session or is_event_stream(headers):
            ctx.head_ms = ctx.elapsed_ms()
        return headers

    def serve_direct(self, request: DirectRequest) -> bool:
        """Serve a request without a body on the direct path (`gateway.direct`) when the
        pipeline can; False when the ASGI app must run instead (nothing was sent)."""
        pipeline = self.pipeline
        scope = request.scope
        if not pipeline.plans or scope["method"] not in DIRECT_METHODS \
                or scope["path"] in _BUILTIN_PATHS:
            return False
        ctx = self.context(scope)
        try:
            canonicalise(scope)
        except InvalidURI:
            return False  # the ASGI path answers 400
        plan = pipeline.plan(scope)
        if plan is None:
            return False
        if not direct.start(self, request, ctx, plan):
            plan.release()
            return False
        self.direct_started += 1
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind not in ("http", "websocket"):
            return

        ctx = self.context(scope)
        started = False
        stamp = self.stamp

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            mtype = message["type"]
            if mtype == "http.response.start" or mtype == "websocket.accept":
                started = True
                message["headers"] = stamp(ctx, message.get("status", 101),
                                           [*(message.get("headers") or ())],
                                           mtype == "websocket.accept")
            elif mtype == "websocket.close" and not started:
                ctx.status = 403
            await send(message)

        try:
            canonicalise(scope)
        except InvalidURI as invalid:
            # (A name per clause: the compiled build types a name by its first binding.)
            ctx.notes["refused"] = str(invalid)
            if kind == "websocket":
                await send_wrapper({"type": "websocket.close", "code": 1008})
            else:
                await send_error(scope, send_wrapper, 400, str(invalid))
            self.finish(scope, ctx)
            return
        try:
            if kind == "http" and scope["path"] in _BUILTIN_PATHS:
                ctx.route = "builtin"
                if scope["path"] == "/metrics" and self.pipeline.guards:
                    await self.pipeline.guarded(scope, receive, send_wrapper, self._builtin)
                else:
                    await handle_builtin(scope, send_wrapper, self)
            else:
                await self.pipeline.app(scope, receive, send_wrapper)
        except (UpstreamError, RequestError) as exc:
            if started:
                raise  # the response is under way: the server must cut the connection
            unread_body = isinstance(exc, RequestError)
            await send_error(scope, send_wrapper, exc.status, str(exc) or type(exc).__name__,
                             app=ctx.app, close=unread_body)
        except Exception:
            log.exception("request %s failed", ctx.request_id)
            if started:
                raise
            await send_error(scope, send_wrapper, 500, "internal error in the gateway",
                             app=ctx.app)
        finally:
            if PLAN_KEY in scope:  # the direct path handed this request over
                direct.settle(scope)
            self.finish(scope, ctx)

    async def _builtin(self, scope: Scope, receive: Receive, send: Send) -> None:
        await handle_builtin(scope, send, self)

    def finish(self, scope: Scope, ctx: RequestContext) -> None:
        """The request is over: metrics and the request log (and `on_record` hooks)."""
        latency = ctx.latency_ms()
        if ctx.head_ms is not None:  # a session: its latency is its head; keep how long too
            ctx.notes["open_ms"] = round(ctx.elapsed_ms(), 1)
        self.services.metrics.record(ctx.app, ctx.status, latency)
        client = scope.get("client")
        path = scope.get("path", "")
        as_sent = scope.get(REWRITTEN)
        if as_sent is not None:  # the log shows what was asked; the trace, what it meant
            ctx.notes["uri"], path = path, as_sent
        # A plain tuple of RequestRecord's fields: see RequestLog for why.
        raw = (
            ctx.wall_time, ctx.request_id, scope.get("method", "WS"), path,
            scope.get("query_string", b"").decode("latin-1"), client[0] if client else "",
            ctx.status, latency, ctx.app, ctx.route, ctx.upstream, ctx.upstream_connect_ms,
            ctx.upstream_ttfb_ms, ctx.upstream_total_ms, ctx.cache, ctx.traceparent,
            scope["headers"], ctx.response_headers,  # encoded at once, never kept live
            tuple(ctx.notes.items()) if ctx.notes else (),
        )
        self.services.request_log.add(raw)
        if self.on_record:
            record = _make_record(raw)
            for hook in self.on_record:
                hook(record)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
