"""Forward one ASGI HTTP request to an upstream over a pooled connection, streaming both ways.

Order of work for a request: build the head (once, as bytes), take a connection, write the head
with the first body piece, stream the rest of the body, wait for the response head, send
``http.response.start``, then relay body bytes as they arrive. Memory stays bounded in both
directions: uploads wait for the upstream socket to drain, downloads stop reading the upstream
while more than ``READ_HIGH_WATER`` bytes wait for a slow client.

Failure contract (what the caller, which turns errors into 502/504, can rely on):

* Before ``http.response.start`` was sent, failures raise ``gateway.errors.Upstream*``.
* After it was sent, a dying upstream still raises ``UpstreamClosed``: an ASGI server aborts
  the client connection when the app raises after the start, so the client sees a truncated
  response instead of a clean, wrong end. The caller must not try to send an error page then.
* A request body that ends early (``http.disconnect`` before its last piece: the client
  left, or, with granian, sent broken chunked coding) raises ``RequestBodyIncomplete`` (400),
  and one that stalls for ``target.timeout`` raises ``RequestBodyTimeout`` (408); the
  upstream connection is closed. Nobody reads that answer if the client is really gone, but
  nothing waits forever and a live client learns why (instead of the server's own bare 500
  for a request the app returned from without answering).
* A client that goes away after the request (``http.disconnect``, or ``send`` raising
  ``OSError``) makes us close the upstream connection and return quietly. ``receive()`` is
  watched only while a streamed body is waiting for upstream data; while waiting for the
  response head, a departed client is noticed when the head arrives (or ``target.timeout``
  passes).
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import TYPE_CHECKING

from gateway.context import SCOPE_KEY
from gateway.errors import RequestBodyIncomplete, RequestBodyTimeout, UpstreamConnectError
from gateway.proxy.client import UpstreamConnection, UpstreamPool
from gateway.proxy.headers import (
    BODY_CHUNKED,
    BODY_NONE,
    BODY_UNKNOWN,
    Forwarding,
    build_request_head,
    may_resend,
    rewrite_location,
)
from gateway.types import Message, Receive, Scope, Send

if TYPE_CHECKING:
    from gateway.proxy.transport import UpstreamTarget

#: Scope key of an upstream exchange already under way for this request: the request head
#: was written on that connection (by the gateway's direct path, `gateway.direct`), and
#: `forward_http` continues it instead of sending the request again.
STARTED = "pyserve.upstream_started"

_START = "http.response.start"
_BODY = "http.response.body"


class _ClientGone(Exception):
    """The downstream client disconnected; unwind quietly."""


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


async def forward_http(pool: UpstreamPool, scope: Scope, receive: Receive, send: Send,
                       target: UpstreamTarget, forwarding: Forwarding | None = None) -> None:
    """Proxy one request; see the module docstring for the failure contract."""
    ctx = scope.get(SCOPE_KEY)
    started = perf_counter()
    method: str = scope["method"]
    parts, framing = build_request_head(scope, target, ctx, forwarding)

    more = False
    if framing == BODY_NONE:
        parts.append(b"\r\n")
    else:
        # Read the first body piece before connecting: a small body then leaves in the same
        # write (one packet) as the head, and BODY_UNKNOWN learns whether it needs chunking.
        msg = await _receive_body(receive, target.timeout)
        body = msg.get("body", b"")
        more = msg.get("more_body", False)
        if framing == BODY_UNKNOWN:
            if more:
                framing = BODY_CHUNKED
            else:
                parts.append(b"content-length: %d\r\n" % len(body))
        if framing == BODY_CHUNKED:
            parts.append(b"transfer-encoding: chunked\r\n\r\n")
            if body:
                parts.append(_chunk(body))
            if not more:
                parts.append(b"0\r\n\r\n")
        else:
            parts.append(b"\r\n")
            parts.append(body)
    payload = b"".join(parts)
    # A resend needs the whole request at hand: no body part was streamed past `payload`.
    resendable = not more
    head_only = method == "HEAD"

    if ctx is not None:
        ctx.upstream = pool.label  # set early so a failure is logged against its upstream
    acquire_at = perf_counter()
    conn = _adopt(scope, pool)
    written = conn is not None
    if conn is None:
        conn = pool.pop_idle() or await pool.connect(target)
    connected = perf_counter()
    released = False
    try:
        while True:
            if not written:
                conn.begin(target, head_only)
                conn.out.write(payload)
                if more:
                    await _upload(conn, receive, framing == BODY_CHUNKED, target.timeout)
                conn.head_deadline = conn.loop.time() + target.timeout
            written = False
            while not conn.head_done and conn.error is None:
                await conn.wait()
            if conn.head_done:
                break
            error = conn.error
            assert error is not None
            # A pooled socket the server closed just as we wrote: resend once, on a new one,
            # when the resend rule allows it.
            if not (resendable and conn.reused and isinstance(error, UpstreamConnectError)
                    and may_resend(method, sent=error.sent)):
                raise error
            resendable = False
            conn.finish()
            conn.close()
            conn = await pool.connect(target)
        head_at = perf_counter()
        if ctx is not None:
            ctx.upstream_connect_ms = (connected - acquire_at) * 1000.0
            ctx.upstream_ttfb_ms = (head_at - connected) * 1000.0
        if target.prefix is not None and 300 <= conn.status < 400:
            conn.headers = rewrite_location(conn.headers, target.host, target.port)

        await _relay_response(conn, scope, receive, send)
        if ctx is not None:
            ctx.upstream_total_ms = (perf_counter() - started) * 1000.0
        pool.release(conn)
        released = True
    except _ClientGone:
        return
    finally:
        if not released:
            conn.finish()
            conn.close()


def _adopt(scope: Scope, pool: UpstreamPool) -> UpstreamConnection | None:
    """The exchange already under way for this request (`STARTED`), if it went to
    `pool`'s upstream; one that went elsewhere is dropped."""
    conn: UpstreamConnection | None = scope.pop(STARTED, None)
    if conn is not None and conn.pool is not pool:
        conn.finish()
        conn.close()
        return None
    return conn


async def _receive_body(receive: Receive, timeout: float) -> Message:
    """The next piece of the request body (see the module docstring for the failures)."""
    try:
        async with asyncio.timeout(timeout):
            msg = await receive()
    except TimeoutError:
        raise RequestBodyTimeout(f"no request body for {timeout:g}s") from None
    if msg["type"] != "http.request":
        raise RequestBodyIncomplete("the request body ended before it was complete "
                                    "(cut short, or not valid HTTP)")
    return msg


async def _upload(conn: UpstreamConnection, receive: Receive, chunked: bool,
                  timeout: float) -> None:
    """Stream the remaining request body, pausing while the upstream socket is full.

    Stops early if the upstream already answered (e.g. 413): the response is what matters
    then, and the connection will not be reused since the body was cut short.
    """
    write = conn.out.write
    while True:
        try:
            msg = await _receive_body(receive, timeout)
        except RequestBodyTimeout:
            if conn.head_done:  # it answered without waiting for the rest: relay that
                conn.keep_alive = False
                return
            raise
        body = msg.get("body", b"")
        more = msg.get("more_body", False)
        if conn.head_done or conn.error is not None or conn.closed:
            conn.keep_alive = False
            return
        if chunked:
            if body:
                write(_chunk(body) + b"0\r\n\r\n" if not more else _chunk(body))
            elif not more:
                write(b"0\r\n\r\n")
        elif body:
            write(body)
        while conn.write_paused and not conn.head_done and conn.error is None:
            await conn.wait()
        if not more:
            return


async def _relay_response(conn: UpstreamConnection, scope: Scope, receive: Receive,
                          send: Send) -> None:
    """Send the response head, then the body as it arrives (the final piece carries
    ``more_body=False``: if the whole body is already here, that is the only body message).

    The head is only committed together with body bytes (or the end of the body), because
    the ASGI servers disagree about a response that was started but got no body message yet:
    uvicorn and hypercorn have sent the head, granian has not and, when the app then raises,
    answers with its own bodiless 500 (no request id, no app name). So a sized body is waited
    for before the head goes out (an upstream dying or stalling in between is still a clean
    502/504), and a streamed one gets an empty body message right after the head, which makes
    every server send the head at once (Server-Sent Events clients see the stream open).
    """
    try:
        if not (conn.has_data or conn.complete) and _sized(conn):
            while not (conn.has_data or conn.complete) and conn.error is None:
                await conn.wait()
            if conn.error is not None and not conn.has_data:
                raise conn.error  # nothing sent yet: the caller answers 502/504
        await send({"type": _START, "status": conn.status, "headers": conn.headers})
        if not (conn.has_data or conn.complete):
            await send({"type": _BODY, "body": b"", "more_body": True})
        watcher: asyncio.Task[None] | None = None
        try:
            while True:
                if conn.has_data:
                    data = conn.take()
                    done = conn.complete and not conn.has_data
                    await send({"type": _BODY, "body": data, "more_body": not done})
                    conn.resume_reading()
                    if done:
                        return
                elif conn.complete:
                    await send({"type": _BODY, "body": b"", "more_body": False})
                    return
                elif conn.error is not None:
                    raise conn.error  # after start: the server aborts the client connection
                elif conn.client_gone:
                    raise _ClientGone
                else:
                    if watcher is None:
                        # Streaming (SSE, long downloads): notice a client that leaves while
                        # the upstream is quiet. Not started for responses that arrive whole.
                        watcher = asyncio.get_running_loop().create_task(
                            _watch_disconnect(receive, conn))
                    await conn.wait()
        finally:
            if watcher is not None:
                watcher.cancel()
    except OSError as exc:  # ASGI servers raise OSError subclasses for a vanished client
        raise _ClientGone from exc


def _sized(conn: UpstreamConnection) -> bool:
    """The response body is framed by Content-Length (not chunked, not ended by a close)."""
    return any(name == b"content-length" for name, _ in conn.headers)


async def _watch_disconnect(receive: Receive, conn: UpstreamConnection) -> None:
    """Wait for ``http.disconnect`` and wake the relay. A server that answers ``receive()``
    with a finished request more than once (instead of blocking) gets no watcher."""
    finished_requests = 0
    while True:
        msg = await receive()
        kind = msg["type"]
        if kind == "http.disconnect":
            conn.client_gone = True
            conn.wake()
            return
        if kind == "http.request" and not msg.get("more_body", False):
            finished_requests += 1
            if finished_requests > 1:
                return
