"""The direct path: a proxied request served without ASGI messages and without a task.

On the built-in front, most requests a gateway sees are bodyless and end in one proxied
exchange over a pooled keep-alive connection, answered by one read. For those, the ASGI
machinery (a task per request, the chain of coroutine frames, a message dict and a send
wrapper per extension and per message) costs about as much CPU as everything else the
gateway does (bench/README.md, "The direct path"). The direct path does the same work as
plain calls and callbacks:

1. `GatewayApp.serve_direct` makes the request's context, then asks the pipeline for a
   `Plan` (`Pipeline.plan`): each member decides synchronously, with the same code its ASGI
   ``__call__`` uses, whether it passes, answers with an upstream target, or needs ASGI.
   Only the built-in extensions that can (``Extension.plans``) take part; a pipeline with any
   other member (a plugin, an ``asgi`` mount, caching, compression...) never plans.
2. `start` takes an idle pooled connection and writes the request head built by
   `proxy.headers.build_request_head` (the one builder), and leaves an `Exchange` as the
   connection's ``sink`` instead of a waiting coroutine.
3. When the whole response is in (the common case), the exchange relays it in one write
   (`RequestCycle.respond`) with the headers the members and the gateway add, and the
   request is finished as the ASGI path finishes it: members' ``planned`` hooks (their
   counters, monitoring), metrics, the request log.

Anything else is not handled here twice: a request the plan cannot take, no idle
connection, a response that streams, an upstream error or timeout, all go to the ASGI path
(`RequestCycle.fall_back`). When the exchange had already started, the ASGI path adopts it:
`proxy.http.forward_http` picks up the connection left under `STARTED` in the scope instead
of writing the request again, so resend rules, 502/504 answers, streaming and logging are
the ASGI path's own. Only methods that may be sent again are taken (GET, HEAD, DELETE,
OPTIONS, TRACE without a body), so even a fallback that has to resend is what the resend
rule allows.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

from gateway.proxy.headers import (
    BODYLESS_METHODS,
    IDEMPOTENT_METHODS,
    build_request_head,
    rewrite_location,
)
from gateway.proxy.http import STARTED
from gateway.proxy.transport import PooledTransport

if TYPE_CHECKING:
    from gateway.context import RequestContext
    from gateway.extensions.base import Extension
    from gateway.orchestrator.lease import Lease
    from gateway.pipeline import GatewayApp
    from gateway.proxy.client import UpstreamConnection, UpstreamPool
    from gateway.proxy.transport import UpstreamTarget
    from gateway.types import Headers, Scope

#: What a member's `Extension.plan` says: go on to the next member, the request goes to
#: `plan.target`, or only the ASGI path can serve it.
PASS, ANSWER, ASGI = 0, 1, 2

#: Methods the direct path takes (when no body is framed): bodyless, and sent again if
#: need be (see `proxy.headers.may_resend`).
METHODS = BODYLESS_METHODS & IDEMPOTENT_METHODS

#: Scope key of the `Plan` whose exchange the ASGI path took over; its lease is released
#: when that request ends (`settle`).
PLAN_KEY = "pyserve.plan"

#: Response fields the front decides itself (framing, persistence, the date): what a
#: pre-encoded block of headers (`Extra.block`) may not carry.
FRONT_FIELDS = frozenset((b"content-length", b"transfer-encoding", b"connection", b"date"))


class DirectRequest(Protocol):
    """What the front gives the direct path (`gateway.servers.h1.RequestCycle`)."""

    scope: dict[str, Any]
    disconnected: bool

    def respond(self, status: int, headers: Headers, body: bytes, tail: bytes = b"",
                tail_lines: int = 0) -> None: ...

    def fall_back(self) -> None: ...

    def fail(self, exc: BaseException) -> None: ...


class Plan:
    """What the pipeline's members decided for one request (made per request: slotted)."""

    __slots__ = ("target", "answerer", "depth", "lease", "extra_headers")

    def __init__(self) -> None:
        self.target: UpstreamTarget | None = None
        #: The member that answered with `target`, and its place in the pipeline.
        self.answerer: Extension | None = None
        self.depth = 0
        #: An orchestrated app's hold on its process, released when the request ends.
        self.lease: Lease | None = None
        #: Response headers members add when the response has none of those names, in the
        #: order the members come (applied innermost first, as the ASGI send wrappers are).
        self.extra_headers: list[Extra] = []

    def release(self) -> None:
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.release()


class Extra:
    """Response headers a member adds when the response carries none of their names (made
    once, by the member: security's headers). `block` is the same headers encoded as head
    lines, when none is one of `FRONT_FIELDS`: written as it is."""

    __slots__ = ("headers", "names", "block", "lines")

    def __init__(self, headers: Headers) -> None:
        self.headers = headers
        self.names = frozenset(name for name, _ in headers)
        self.lines = len(headers)
        self.block: bytes | None = None
        if not self.names & FRONT_FIELDS:
            self.block = b"".join(name + b": " + value + b"\r\n" for name, value in headers)


def add_missing(headers: Headers, extra: Headers, names: frozenset[bytes]) -> None:
    """Append the `extra` headers (lower-case `names`) whose names `headers` does not carry
    yet."""
    for name, _ in headers:
        if name.lower() in names:
            present = {name.lower() for name, _ in headers}
            headers.extend(h for h in extra if h[0] not in present)
            return
    headers.extend(extra)  # the common case: none of them


def start(gateway: GatewayApp, request: DirectRequest, ctx: RequestContext,
          plan: Plan) -> bool:
    """Send the planned request upstream over an idle pooled connection; False (and
    nothing done) when there is none or the transport is not the pooled one."""
    transport = gateway.services.transport
    target = plan.target
    if type(transport) is not PooledTransport or target is None:
        return False
    pool = transport.pool(target.host, target.port)
    conn = pool.pop_idle()
    if conn is None:
        return False  # the ASGI path connects (and waits for it) in a task
    scope = request.scope
    parts, _ = build_request_head(scope, target, ctx, transport.forwarding)
    parts.append(b"\r\n")
    ctx.upstream = pool.label
    pool.busy += 1
    conn.begin(target, scope["method"] == "HEAD")
    conn.head_deadline = conn.loop.time() + target.timeout
    conn.sink = Exchange(gateway, request, ctx, plan, pool)
    conn.watch()
    conn.out.write(b"".join(parts))
    return True


class Exchange:
    """One direct exchange in flight: its upstream connection's ``sink``."""

    __slots__ = ("gateway", "request", "ctx", "plan", "pool", "sent")

    def __init__(self, gateway: GatewayApp, request: DirectRequest, ctx: RequestContext,
                 plan: Plan, pool: UpstreamPool) -> None:
        self.gateway = gateway
        self.request = request
        self.ctx = ctx
        self.plan = plan
        self.pool = pool
        self.sent = perf_counter()

    def upstream_event(self, conn: UpstreamConnection) -> None:
        """The connection made progress, failed or timed out."""
        if conn.error is None and conn.complete:
            conn.sink = None
            try:
                self._relay(conn)
            except BaseException as exc:  # noqa: BLE001 - what the front does for an app
                self.plan.release()
                self.request.fail(exc)
                self.gateway.finish(self.request.scope, self.ctx)
        elif conn.error is not None or conn.head_done or conn.closed:
            # A streamed body, an error or a timeout: the ASGI path takes the exchange over.
            conn.sink = None
            self.pool.busy -= 1
            scope = self.request.scope
            scope[STARTED] = conn
            scope[PLAN_KEY] = self.plan
            self.request.fall_back()
        # else: the head is not whole yet

    def _relay(self, conn: UpstreamConnection) -> None:
        ctx = self.ctx
        plan = self.plan
        target = plan.target
        assert target is not None
        done = perf_counter()
        ctx.upstream_connect_ms = 0.0  # an idle pooled connection
        ctx.upstream_ttfb_ms = ctx.upstream_total_ms = (done - self.sent) * 1000.0
        status = conn.status
        headers = list(conn.headers)
        if target.prefix is not None and 300 <= status < 400:
            headers = rewrite_location(headers, target.host, target.port)
        body = conn.take() if conn.has_data else b""
        self.pool.busy -= 1
        self.pool.release(conn)
        plan.release()
        # The members' extra headers: as pre-encoded lines after the rest (the common case:
        # the upstream sent none of them; its names are lower-case, `UpstreamConnection`),
        # else merged as the ASGI path does.
        blocks: list[Extra] = []
        for extra in reversed(plan.extra_headers):
            if extra.block is not None and not _carries(headers, extra.names):
                blocks.append(extra)
            else:
                add_missing(headers, extra.headers, extra.names)
        scope = self.request.scope
        gateway = self.gateway
        gateway.pipeline.planned(scope, plan, status)
        headers = gateway.stamp(ctx, status, headers)
        if not blocks:
            self.request.respond(status, headers, body)
        else:
            tail: list[bytes] = []
            lines = 0
            logged = headers
            for extra in blocks:
                assert extra.block is not None
                tail.append(extra.block)
                lines += extra.lines
                logged = logged + extra.headers
            ctx.response_headers = logged  # the log shows every header, as sent
            self.request.respond(status, headers, body, b"".join(tail), lines)
        gateway.finish(scope, ctx)


def _carries(headers: Headers, names: frozenset[bytes]) -> bool:
    """Does `headers` (lower-case names) carry any of `names`?"""
    for name, _ in headers:
        if name in names:
            return True
    return False


def settle(scope: Scope) -> None:
    """The end of a request the ASGI path took over from the direct path: an exchange it
    did not adopt is dropped, the plan's lease released."""
    conn = scope.pop(STARTED, None)
    if conn is not None:
        conn.finish()
        conn.close()
    plan = scope.pop(PLAN_KEY, None)
    if plan is not None:
        plan.release()
