"""Pooled HTTP/1.1 upstream connections: an ``asyncio.Protocol`` around httptools' C parser.

Why not httpx/aiohttp: proxying through them measured far below nginx (bench/README.md), the
stream/Protocol layers costing more than the parsing. Here the parser callbacks write straight
into the connection's state and one future wakes the forwarding coroutine, so a small response
costs one ``data_received`` and one wake-up.

One :class:`UpstreamConnection` carries one exchange at a time (no pipelining). Its state is
reset by :meth:`UpstreamConnection.begin`; the forwarder (``http.py``) reads ``status``,
``headers``, takes body chunks with :meth:`UpstreamConnection.take` and parks in
:meth:`UpstreamConnection.wait` when there is nothing to do. Errors are stored in ``error``
(already translated to ``gateway.errors``) rather than raised from callbacks, because callbacks
run inside the event loop, not inside the request's task.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, cast

from httptools import HttpParserError, HttpResponseParser

from gateway.errors import (
    UpstreamClosed,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from gateway.outbox import Outbox, Outgoing
from gateway.proxy.headers import HOP_BY_HOP, connection_tokens, upstream_address

if TYPE_CHECKING:
    from gateway.proxy.transport import UpstreamTarget

#: Response bytes buffered (taken by neither the client nor the socket) before we stop reading
#: the upstream socket. Bounds memory per slow client; one socket read (<=256 KiB) can overshoot.
READ_HIGH_WATER = 256 * 1024

_NO_BODY_STATUS = frozenset({204, 304})


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive TCP connection to an upstream, parsing responses as they arrive."""

    __slots__ = (
        "pool", "transport", "reused", "exchanges", "closed", "idle",
        "status", "headers", "head_done", "complete", "keep_alive", "error", "bytes_in",
        "client_gone", "head_deadline",
        "loop", "_parser", "_chunks", "_buffered", "_head_only", "_interim", "_framed",
        "_close_delimited", "_extra_hop", "_read_paused", "_write_paused", "_waiter",
        "_timer", "_timeout", "_wait_since", "_last_data", "_target", "sink", "out",
    )
    transport: asyncio.Transport  # set by connection_made, before anyone can use the object
    out: Outgoing  # likewise

    def __init__(self, pool: UpstreamPool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self._parser = HttpResponseParser(self)
        self.reused = False  # True once it served an exchange and came back from the pool
        self.exchanges = 0
        self.closed = False
        self.idle = False
        self._read_paused = False
        self._write_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._target: UpstreamTarget | None = None
        self._timeout = 60.0
        #: Told of every event instead of a waiting coroutine, while one is set: the
        #: gateway's direct path (`gateway.direct`) runs an exchange without a task.
        self.sink: Any = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = True
        self.error: UpstreamError | None = None
        self.bytes_in = 0
        self.client_gone = False
        self.head_deadline = 0.0
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._head_only = False
        self._interim = False
        self._framed = False  # Content-Length or Transfer-Encoding seen on the response
        self._close_delimited = False
        self._extra_hop: set[bytes] | None = None
        self._wait_since = 0.0
        self._last_data = 0.0

    def __repr__(self) -> str:
        if self.closed:
            state = "closed"
        elif self.idle:
            state = "idle"
        elif self.complete:
            state = "complete"
        elif self.head_done:
            state = f"streaming status={self.status} buffered={self._buffered}"
        else:
            state = "waiting-head" if self._target is not None else "new"
        flags = "".join((" read-paused" if self._read_paused else "",
                         " write-paused" if self._write_paused else "",
                         f" error={type(self.error).__name__}" if self.error else ""))
        return (f"<UpstreamConnection {self.pool.label} {state} exchanges={self.exchanges}"
                f"{flags}>")

    # -- exchange API used by http.py ------------------------------------------------------

    def begin(self, target: UpstreamTarget, head_only: bool) -> None:
        """Start a new exchange: the previous one must have completed cleanly."""
        self._reset()
        self._target = target
        self._timeout = target.timeout
        self._head_only = head_only

    def take(self) -> bytes:
        """All buffered body bytes, joined; call :meth:`resume_reading` once they are sent."""
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._buffered = 0
        return data

    @property
    def has_data(self) -> bool:
        return bool(self._chunks)

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    def resume_reading(self) -> None:
        """Called after the client accepted what we took: room in the buffer again."""
        if self._read_paused and not self.closed:
            self._read_paused = False
            self.transport.resume_reading()

    def wait(self) -> asyncio.Future[None]:
        """A future to await until the upstream makes progress (or fails, or times out).
        Callers re-check state after it resolves; a timeout is reported through ``error``.
        A plain future rather than a coroutine: one frame less on every wake-up."""
        self.watch()
        fut = self._waiter = self.loop.create_future()
        return fut

    def watch(self) -> None:
        """Make sure the timeout fires if the upstream stays silent from now on (`wait`
        does this; the direct path calls it itself)."""
        self._wait_since = self.loop.time()
        deadline = self._deadline()
        timer = self._timer
        # The timer outlives exchanges: it is only replaced when it would fire too late, so a
        # keep-alive connection arms about one timer per timeout period, not one per request.
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def wake(self) -> None:
        fut = self._waiter
        if fut is not None:
            self._waiter = None
            if not fut.done():
                fut.set_result(None)
        elif self.sink is not None:
            self.sink.upstream_event(self)

    def finish(self) -> None:
        """End the exchange; the caller then releases or closes the connection."""
        self._target = None

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """Drop the connection now (abort: no lingering half-read response)."""
        self._cancel_timer()
        self.keep_alive = False
        if not self.closed:
            self.out.drop()
            self.transport.abort()

    # -- timeouts ----------------------------------------------------------------------------

    def _deadline(self) -> float:
        if not self.head_done and self.head_deadline:
            return self.head_deadline
        return max(self._last_data, self._wait_since) + self._timeout

    def _on_timer(self) -> None:
        # One long-lived timer instead of a wait_for per wait: on firing it re-checks the
        # current deadline, which moves with every byte received.
        self._timer = None
        if (self._waiter is None and self.sink is None) or self.error is not None:
            return  # nobody waits on the upstream; the next wait() arms a new timer
        deadline = self._deadline()
        if self.loop.time() < deadline:
            self._timer = self.loop.call_at(deadline, self._on_timer)
            return
        target = self._target
        what = "response head" if not self.head_done else "more response body"
        self.error = UpstreamTimeout(
            f"{_describe(target, self.pool)}: no {what} within {self._timeout:g}s"
        )
        self.close()
        self.wake()

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        #: Requests are written when the loop's pass ends (`gateway.outbox`).
        self.out = Outgoing(self.transport, self.pool.outbox(self.loop))
        self.pool.opened += 1
        self.pool.open += 1

    def data_received(self, data: bytes) -> None:
        if self._target is None or self.error is not None:
            # Bytes on an idle or failed connection: the upstream is confused; drop it.
            self.close()
            return
        self.bytes_in += len(data)
        self._last_data = self.loop.time()
        try:
            self._parser.feed_data(data)
        except HttpParserError as exc:
            if not self.complete:  # else: junk after a full response, which still stands
                self.error = UpstreamProtocolError(
                    f"{_describe(self._target, self.pool)}: invalid HTTP response: {exc}"
                )
            self.close()
        if self._head_only and self.head_done:
            # llhttp cannot be told a response is to HEAD; it would wait for the announced
            # body. The message ended at the head, so start the next one with a fresh parser.
            self._parser = HttpResponseParser(self)
        if self._buffered > READ_HIGH_WATER and not self._read_paused and not self.closed:
            self._read_paused = True
            self.transport.pause_reading()
            self.pool.read_pauses += 1
            if self._buffered > self.pool.max_buffered:
                self.pool.max_buffered = self._buffered
        self.wake()

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost does the bookkeeping

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.closed = True
        self.keep_alive = False
        self.pool.open -= 1
        if self.idle:
            self.pool.discard(self)
        if self._target is not None and not self.complete and self.error is None:
            if self._close_delimited and exc is None:
                self.complete = True  # body delimited by connection close: this is its end
            elif self.bytes_in == 0:
                reason = f": {exc}" if exc else ""
                self.error = UpstreamConnectError(
                    f"{_describe(self._target, self.pool)}: connection closed before any "
                    f"response{reason}", sent=True
                )
            else:
                reason = f": {exc}" if exc else ""
                self.error = UpstreamClosed(
                    f"{_describe(self._target, self.pool)}: connection closed mid-response"
                    f"{reason}"
                )
        self.wake()

    def pause_writing(self) -> None:
        self._write_paused = True
        self.pool.write_pauses += 1

    def resume_writing(self) -> None:
        self._write_paused = False
        self.wake()

    # -- httptools callbacks (names are looked up by the parser) ---------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            # A second response to one request: refuse it (the parser raises, we close).
            raise UpstreamProtocolError("unsolicited response")

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in HOP_BY_HOP:
            if name == b"transfer-encoding":
                self._framed = True
            elif name == b"connection":
                tokens = connection_tokens(value)
                if b"close" in tokens:
                    self.keep_alive = False
                tokens -= {b"close", b"keep-alive"}
                if tokens:
                    self._extra_hop = tokens
            return
        if name == b"content-length":
            self._framed = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            # 1xx interim (100 Continue, 103 Early Hints): not forwarded; the final one follows.
            self._interim = True
            self.headers = []
            self._framed = False
            self._extra_hop = None
            return
        self.status = status
        self.head_done = True
        if self._extra_hop:
            extra = self._extra_hop
            self.headers = [(n, v) for n, v in self.headers if n not in extra]
        if self._head_only:
            self.complete = True
            if self._parser.get_http_version() != "1.1":
                self.keep_alive = False
        elif not self._framed and status not in _NO_BODY_STATUS:
            self._close_delimited = True
            self.keep_alive = False

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._head_only:
            return
        self.complete = True
        if not self._parser.should_keep_alive():
            self.keep_alive = False


def _describe(target: UpstreamTarget | None, pool: UpstreamPool) -> str:
    if target is not None and target.name:
        return f"upstream {target.name!r} ({pool.label})"
    return f"upstream {pool.label}"


class UpstreamPool:
    """Connections to one ``host:port``: a LIFO idle list (the most recently used socket is
    the least likely to have been closed by the server) plus counters for ``stats()``."""

    __slots__ = ("host", "port", "label", "max_idle", "connect_timeout", "_idle",
                 "opened", "open", "busy", "reused", "read_pauses", "write_pauses",
                 "max_buffered", "_outbox")

    def __init__(self, host: str, port: int, *, max_idle: int, connect_timeout: float) -> None:
        self.host = host
        self.port = port
        self.label = upstream_address(host, port)  # also what ctx.upstream says
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self._idle: list[UpstreamConnection] = []
        self.opened = 0  # connections ever opened
        self.open = 0  # currently open (idle + busy)
        self.busy = 0  # requests in progress (one may still be connecting): never pruned
        self.reused = 0  # exchanges served by a pooled connection
        self.read_pauses = 0  # times a slow client made us stop reading the upstream
        self.write_pauses = 0  # times a slow upstream made us stop reading the client's body
        self.max_buffered = 0  # largest per-connection body buffer seen when pausing
        self._outbox: Outbox | None = None

    def outbox(self, loop: asyncio.AbstractEventLoop) -> Outbox:
        """Where this pool's connections gather their writes (one per pool: its
        connections all belong to one loop)."""
        box = self._outbox
        if box is None or box.loop is not loop:
            box = self._outbox = Outbox(loop)
        return box

    def __repr__(self) -> str:
        return (f"<UpstreamPool {self.label} open={self.open} idle={len(self._idle)} "
                f"opened={self.opened} reused={self.reused}>")

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def pop_idle(self) -> UpstreamConnection | None:
        """The most recently used live idle connection, if any (sync: no await on a hit)."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            conn.idle = False
            if not conn.closed and not conn.transport.is_closing():
                conn.reused = True
                self.reused += 1
                return conn
        return None

    async def connect(self, target: UpstreamTarget) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: UpstreamConnection(self, loop), self.host, self.port
                )
        except TimeoutError:
            raise UpstreamTimeout(
                f"{_describe(target, self)}: connect timed out after {self.connect_timeout:g}s"
            ) from None
        except OSError as exc:
            raise UpstreamConnectError(
                f"cannot connect to {_describe(target, self)}: {exc.strerror or exc}",
                sent=False,
            ) from exc
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """Return a connection whose exchange completed cleanly; close it if not reusable."""
        conn.finish()
        conn.exchanges += 1
        if conn.closed or not conn.keep_alive or len(self._idle) >= self.max_idle:
            conn.close()
            return
        conn.resume_reading()  # an idle socket must be read to notice the server closing it
        conn.idle = True
        self._idle.append(conn)

    def discard(self, conn: UpstreamConnection) -> None:
        """Forget an idle connection the server closed."""
        conn.idle = False
        try:
            self._idle.remove(conn)
        except ValueError:
            pass

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.idle = False
            conn.close()

    def stats(self) -> dict[str, Any]:
        return {"open": self.open, "idle": len(self._idle), "opened": self.opened,
                "reused": self.reused, "read_pauses": self.read_pauses,
                "write_pauses": self.write_pauses,
                "max_buffered": self.max_buffered}
