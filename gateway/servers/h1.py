"""The built-in front's HTTP/1.1 connection: parsing, limits, framing and the ASGI http cycle.

One `H1Connection` per client connection, on the workbench's event loop, parsing with
httptools (llhttp). It is bounded the way nginx bounds a connection:

- the request head must arrive whole within `keep_alive_timeout` of the connection opening or
  of the previous response (nginx's `client_header_timeout`/`keepalive_timeout`): a silent
  connection is closed, a partial head gets 408;
- the request target may be `MAX_TARGET` bytes (414), one header line `MAX_FIELD` bytes, the
  head `MAX_HEAD` bytes and `MAX_FIELDS` header lines (431), as nginx's
  `large_client_header_buffers`; a body larger than `max_body_size` (when set) gets 413, as
  `client_max_body_size`;
- framing is strict (RFC 9112 §6): `Transfer-Encoding` must be exactly `chunked` and never
  comes with `Content-Length` or HTTP/1.0; one `Content-Length`; one `Host` (HTTP/1.1);
  obs-fold, NUL and bare CR/LF are refused by the parser. Every refusal is 400 (or the status
  above) with `connection: close`, written after the responses already owed, and the
  connection is closed without reading further requests from it.

Request bodies are buffered up to `BODY_HIGH_WATER` before the connection stops reading (the
kernel then pushes back on the client); the app's `receive()` resumes it. Responses wait for
the transport's write buffer to drain below its high-water mark. Pipelined requests are
parsed ahead (at most `MAX_PIPELINED`, after which reading stops) and answered one at a time,
in order.

Whether a connection stays open after a response is decided in one place,
`RequestCycle._head`: the client's wish (HTTP/1.0 default, `Connection: close`), the app's
`connection: close`, a request body left unread, and the server draining.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httptools

from gateway.direct import FRONT_FIELDS
from gateway.outbox import Outgoing
from gateway.types import ASGIApp, Message

if TYPE_CHECKING:
    from gateway.servers.front import FrontServer

log = logging.getLogger("pyserve.front")

MAX_TARGET = 8 * 1024
MAX_FIELD = 16 * 1024
MAX_HEAD = 64 * 1024
MAX_FIELDS = 100
BODY_HIGH_WATER = 64 * 1024
MAX_PIPELINED = 32
#: An unread request body smaller than this is read and dropped after the response, so the
#: connection can be kept; a larger (or chunked, or `Expect`ed) one closes it.
DISCARD_LIMIT = 64 * 1024
#: How long a connection closed with unread input keeps reading (and dropping) it, so the
#: kernel does not reset the connection and lose the response in flight (nginx's
#: `lingering_close`).
LINGER = 2.0


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}
#: The control bytes of a response head: only its own line ends may be among them (a CR,
#: LF or other control byte in a name or value is refused; HTAB is allowed, RFC 9110 §5.5).
_CONTROL_BYTES = bytes([*range(0x09), *range(0x0a, 0x20), 0x7f])
#: A Host header's value: a reg-name, IPv4 or IP-literal, and an optional port.
_HOST = re.compile(rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=%]*|\[[0-9A-Fa-f:.vV]+\])(?::[0-9]*)?")
_NO_BODY_STATUS = frozenset((204, 304))
_FRAMING = frozenset((b"host", b"content-length", b"transfer-encoding", b"expect", b"upgrade"))
#: Request methods as ASGI strings, without decoding the common ones every time.
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH",
                                    "OPTIONS")}
_DISCONNECT: Message = {"type": "http.disconnect"}


class BadRequest(Exception):
    """A request the front refuses before the app sees it: its status and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def refusal(status: int, reason: str) -> bytes:
    """A complete plain-text error response that closes the connection."""
    body = f"{status} {HTTPStatus(status).phrase}: {reason}\n".encode("latin-1")
    return b"".join((STATUS_LINES[status], b"content-type: text/plain; charset=utf-8\r\n",
                     b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n",
                     body))


class DateHeader:
    """The `date` response header line, formatted at most once a second."""

    __slots__ = ("_second", "line")

    def __init__(self) -> None:
        self._second = -1
        self.line = b""

    def get(self, now: float) -> bytes:
        second = int(now)
        if second != self._second:
            self._second = second
            self.line = b"date: %s\r\n" % formatdate(second, usegmt=True).encode("ascii")
        return self.line


class RequestCycle:
    """One request and its response: the `receive` and `send` the app is given.

    Most of its state starts as the class-level defaults below (one is made per request, and
    setting two dozen attributes costs more than the rest of its life)."""

    body: bytes | bytearray = b""  # request body received and not yet handed to the app
    more_body = True
    handed_over = False  # the last body message went to the app
    waiter: asyncio.Future[None] | None = None
    received = 0
    started = False
    complete = False
    disconnected = False
    status = 0
    headers: Any = ()
    chunked = False
    remaining = -1  # bytes of response body still owed when a length was given
    head_pending = False
    task: asyncio.Task[None] | None = None
    cut = False  # the request's input ended before its body did
    tail = b""  # header lines written as they are at the end of the head (`respond`)
    tail_lines = 0

    def __init__(self, conn: H1Connection, scope: dict[str, Any], keep_alive: bool,
                 expect_100: bool, content_length: int | None, http10: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.expect_100 = expect_100
        self.keep_alive = keep_alive
        self.http10 = http10
        self.content_length = content_length
        self.head_only = scope["method"] == "HEAD"

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # --- receive ---------------------------------------------------------------------------

    async def receive(self) -> Message:
        conn = self.conn
        if self.handed_over:
            if not (self.disconnected or self.complete):
                self.waiter = conn.loop.create_future()
                await self.waiter
            return _DISCONNECT
        if self.expect_100:
            self.expect_100 = False
            if not (self.started or self.http10 or conn.transport.is_closing()):
                conn.out.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not self.body and self.more_body and not self.disconnected and not self.cut:
            conn.resume_reading()
            self.waiter = conn.loop.create_future()
            await self.waiter
        if self.disconnected or (self.cut and not self.body):
            self.handed_over = True
            return _DISCONNECT
        body = bytes(self.body)
        self.body = b""
        if not self.more_body:
            self.handed_over = True
        elif conn.reading_paused:
            conn.resume_reading()
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    # --- send ------------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        conn = self.conn
        if conn.write_paused and not self.disconnected:
            await conn.drained()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected 'http.response.start', got {kind!r}")
            self.started = True
            self.status = message["status"]
            self.headers = message.get("headers") or ()
            # The head goes out with the first body message, in one write (as granian does;
            # a stream that wants its head seen at once sends an empty body message).
            self.head_pending = True
            return
        if self.complete:
            raise RuntimeError(f"unexpected {kind!r} after the response completed")
        if kind != "http.response.body":
            raise RuntimeError(f"expected 'http.response.body', got {kind!r}")
        self._body(message.get("body", b""), message.get("more_body", False))

    def _body(self, body: bytes, more: bool) -> None:
        """Write a piece of the response body (with the head when it is still owed), framed
        as the head said; the last piece completes the response."""
        conn = self.conn
        out: list[bytes] = []
        if self.head_pending:
            out.append(self._head(None if more else len(body)))
            self.head_pending = False
        if self.head_only:
            body = b""
        elif self.chunked:
            if body:
                out += (b"%x\r\n" % len(body), body, b"\r\n")
            if not more:
                out.append(b"0\r\n\r\n")
            body = b""
        elif self.remaining >= 0:
            self.remaining -= len(body)
            if self.remaining < 0:
                raise RuntimeError("response body longer than its content-length")
        if body:
            out.append(body)
        if out:
            conn.out.write(out[0] if len(out) == 1 else b"".join(out))
        if not more:
            if self.remaining > 0 and not self.head_only:
                raise RuntimeError("response body shorter than its content-length")
            self.complete = True
            self.wake()
            conn.response_done(self)

    # --- the direct path -------------------------------------------------------------------

    def respond(self, status: int, headers: Any, body: bytes, tail: bytes = b"",
                tail_lines: int = 0) -> None:
        """The whole response at once, as `send` would write a start and one final body
        message, without ASGI messages: how the gateway's direct path answers (see
        `gateway.direct`). `tail`: `tail_lines` header lines already encoded, written after
        `headers` (none of `FRONT_FIELDS`; checked with the rest of the head). Nothing is
        written for a client that is gone."""
        if self.disconnected:
            return
        if self.started:
            raise RuntimeError("the response was already started")
        self.started = True
        self.status = status
        self.headers = headers
        if tail_lines:
            self.tail = tail
            self.tail_lines = tail_lines
        self.head_pending = True
        self._body(body, False)

    def fall_back(self) -> None:
        """Run the ASGI app for this request after all (the direct path could not finish
        it)."""
        self.conn.run_app(self)

    def fail(self, exc: BaseException) -> None:
        """The direct path failed on this request: as an app that raised."""
        self.conn.app_failed(self, exc)

    def _head(self, length: int | None) -> bytes:
        """The response head; `length` is the whole body's size when it is already known.

        Decides the response framing and whether the connection stays open; the app's own
        `connection` header is replaced by that decision. The server's `date` goes first
        unless the app sent its own (one Date field, RFC 9110 §6.6.1: a proxied response
        keeps its origin's).
        """
        conn = self.conn
        status = self.status
        parts = [STATUS_LINES.get(status) or _status_line(status), b""]
        has_length = has_date = False
        lines = 2  # the status line and the blank line
        for name, value in self.headers:
            name = name.lower()
            if name in FRONT_FIELDS:  # the response fields the front acts on
                if name == b"content-length":
                    has_length = True
                    self.remaining = int(value)
                elif name == b"transfer-encoding":
                    self.chunked = True
                elif name == b"date":
                    has_date = True
                else:  # connection
                    if b"close" in value.lower():
                        self.keep_alive = False
                    continue
            parts += (name, b": ", value, b"\r\n")
            lines += 1
        if not has_date:
            parts[1] = conn.server.date.get(time.time())
            lines += 1
        if self.chunked:
            has_length = True
            self.remaining = -1
            if self.http10:  # an HTTP/1.0 client cannot read chunks
                raise RuntimeError("transfer-encoding in a response to HTTP/1.0")
        if status in _NO_BODY_STATUS or status < 200:
            self.head_only = True  # no body on the wire, whatever the app sends
        if not has_length and not self.head_only:
            lines += 1
            if length is not None:
                parts.append(b"content-length: %d\r\n" % length)
                self.remaining = length
            elif self.http10:
                self.keep_alive = False  # the body ends when the connection does
                lines -= 1
            else:
                parts.append(b"transfer-encoding: chunked\r\n")
                self.chunked = True
        if self.keep_alive and (conn.server.draining or conn.eof or self.cut
                                or not self._request_done()):
            self.keep_alive = False
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
            lines += 1
        elif self.http10:
            parts.append(b"connection: keep-alive\r\n")
            lines += 1
        if self.tail_lines:
            parts.append(self.tail)
            lines += self.tail_lines
        parts.append(b"\r\n")
        head = b"".join(parts)
        # Response splitting: a CR, LF or other control byte inside a name or value. Each
        # line brings exactly its CR and LF, so any other control byte makes the head lose
        # more than two bytes a line here: one pass over the whole head, in C, cheaper than
        # a check per header or a regex search (bench/README.md, "The response head's
        # control-byte check").
        if len(head) - len(head.translate(None, _CONTROL_BYTES)) != 2 * lines:
            raise RuntimeError(f"invalid response header in {self.headers!r}")
        return head

    def _request_done(self) -> bool:
        """Is the request body read, or cheap to read and drop, so the connection can be
        used again after this response?"""
        if not self.more_body:
            return True
        if self.expect_100 or self.content_length is None:
            return False  # never invited, or chunked: how much is coming is unknown
        return self.content_length - self.received <= DISCARD_LIMIT

    def __repr__(self) -> str:
        return (f"<RequestCycle {self.scope['method']} {self.scope['path']!r} "
                f"status={self.status} complete={self.complete}>")


class WriteFlow(asyncio.Protocol):
    """Write-side flow control shared by the front's protocols: the transport says when its
    buffer is over or back under its high-water mark; senders wait in `drained`."""

    write_paused = False
    _drain_waiters: list[asyncio.Future[None]]

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain_waiters()

    def _wake_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def drained(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        await waiter


class H1Connection(WriteFlow):
    """One client connection of the built-in front."""

    def __init__(self, server: FrontServer) -> None:
        self.server = server
        self.app: ASGIApp = server.app
        self.loop = server.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.out: Outgoing = None  # type: ignore[assignment]  # with the transport
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.current: RequestCycle | None = None  # the request being answered
        self.parsing: RequestCycle | None = None  # the request whose body is being read
        self.queue: deque[RequestCycle] = deque()
        self.reading_paused = False
        self.write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        # Loop time by which the next request head must be whole (0: none due); the server
        # sweeps its connections instead of a timer per request (see FrontServer.sweep).
        self.deadline = 0.0
        self._in_head = True
        self._head_bytes = 0
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0  # the parsed head so far (the bytes fed are `_head_bytes`)
        self._hosts = 0
        self._length: int | None = None
        self._chunked = False
        self._expect_100 = False
        self._upgrade: bytes | None = None
        self._refused: bytes | None = None  # an error response owed after the queue
        self._closing = False
        self._lingering = False
        self.eof = False
        self._pending_upgrade: dict[str, Any] | None = None
        self._ignore_input = False  # after an upgrade that is not taken

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.out = Outgoing(self.transport, self.server.outbox)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.local = (str(local[0]), int(local[1])) if isinstance(local, tuple) else None
        server = self.server
        server.connections.add(self)
        limit = server.max_connections
        if limit is not None and len(server.connections) > limit:
            self.out.write(refusal(503, "too many connections"))
            self._close()
            return
        self._arm_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self._cancel_timer()
        self._closing = True
        for cycle in (self.current, *self.queue):
            if cycle is not None:
                cycle.disconnected = True
                cycle.wake()
        self.queue.clear()
        self.write_paused = False
        self._wake_drain_waiters()

    def eof_received(self) -> bool | None:
        self.eof = True
        if self._lingering or (self.current is None and self.parsing is None
                               and not self.queue):
            return None  # nothing owed: close
        parsing = self.parsing
        if parsing is not None:
            # The client stopped sending mid-request: its body will not come.
            parsing.cut = True
            parsing.wake()
            self.parsing = None
        # Keep the transport open for writing: a client that half-closes after its request
        # still gets the answer (the connection closes after it).
        return True

    def data_received(self, data: bytes) -> None:
        if self._lingering or self._refused is not None or self._ignore_input:
            return  # dropping what comes after a refusal, an upgrade, or while lingering
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if self._pending_upgrade is not None:
                self._upgraded(data[upgrade.args[0]:] if upgrade.args else b"")
            else:
                self._ignore_input = True  # served as plain HTTP/1.1, then closed
            return
        except BadRequest as bad:
            # (A name per clause: the compiled build types a name by its first binding.)
            self._refuse(bad.status, bad.reason)
            return
        except httptools.HttpParserCallbackError as failed:
            cause = failed.__context__
            if isinstance(cause, BadRequest):
                self._refuse(cause.status, cause.reason)
            else:
                self._refuse(400, "malformed request")
            return
        except httptools.HttpParserError as invalid:
            self._refuse(400, str(invalid) or "malformed request")
            return
        if self._in_head and self._head_bytes > MAX_HEAD:
            self._refuse(431, "request head too large")

    # --- parser callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._hosts = 0
        self._length = None
        self._chunked = False
        self._expect_100 = False
        self._upgrade = None
        if not self.deadline:
            self._arm_timer()

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_TARGET:
            raise BadRequest(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        self._head_size += size + 4
        if size > MAX_FIELD or self._head_size > MAX_HEAD:
            raise BadRequest(431, "header field too large" if size > MAX_FIELD else
                             "request head too large")
        name = name.lower()
        value = value.rstrip(b" \t")  # llhttp keeps trailing whitespace (RFC 9110 §5.5)
        if name in _FRAMING:
            self._framing_header(name, value)
        self._headers.append((name, value))

    def _framing_header(self, name: bytes, value: bytes) -> None:
        """The header fields the front itself acts on."""
        if name == b"host":
            self._hosts += 1
            if not _HOST.fullmatch(value):
                raise BadRequest(400, "invalid Host header")
        elif name == b"content-length":
            self._length = int(value)  # llhttp checked the digits and refused a second one
        elif name == b"transfer-encoding":
            if self._chunked or value.lower() != b"chunked":
                raise BadRequest(400, "only 'Transfer-Encoding: chunked' is accepted")
            self._chunked = True
        elif name == b"expect":
            if value.lower() != b"100-continue":
                raise BadRequest(417, "only 'Expect: 100-continue' is understood")
            self._expect_100 = True
        elif name == b"upgrade":
            self._upgrade = value.lower()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._cancel_timer()
        if len(self._headers) > MAX_FIELDS:  # their bytes were bounded while they came
            raise BadRequest(431, "too many header fields")
        parser = self.parser
        version = parser.get_http_version()
        http10 = version == "1.0"
        if version not in ("1.1", "1.0"):
            raise BadRequest(505 if version > "1.1" else 400, f"HTTP/{version} is not served")
        if self._hosts > 1 or (self._hosts == 0 and not http10):
            raise BadRequest(400, "a request needs exactly one Host header")
        if self._chunked and (self._length is not None or http10):
            # RFC 9112 §6.1: both framings (llhttp refuses that too), or chunked on HTTP/1.0.
            raise BadRequest(400, "ambiguous request framing")
        server = self.server
        if server.max_body_size is not None and (self._length or 0) > server.max_body_size:
            raise BadRequest(413, "request body too large")
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        url = self._url
        headers = self._headers
        if url[:1] == b"/" and b"#" not in url:
            raw_path, _, query = url.partition(b"?")  # origin-form: path [ "?" query ]
        elif method == "CONNECT" or url == b"*":
            raise BadRequest(400 if method != "CONNECT" else 405,
                             f"{method} {url[:64]!r} is not served here")
        else:
            parsed: Any = httptools.parse_url(url) if url[:1] == b"/" \
                else self._absolute_form(url)  # Any: see _absolute_form
            raw_path, query = parsed.path or b"/", parsed.query or b""
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)  # percent-escapes are UTF-8 (ASGI), as uvicorn decodes them
        scope = {
            "type": "http",
            "asgi": server.asgi,
            "http_version": version,
            "server": self.local,
            "client": self.client,
            "scheme": "http",
            "method": method,
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": headers,
        }
        keep_alive = parser.should_keep_alive()
        if self._upgrade is not None and parser.should_upgrade():
            if self._upgrade == b"websocket" and method == "GET" and self.current is None:
                self._pending_upgrade = scope
                return
            keep_alive = False  # another protocol (h2c...): answered in HTTP/1.1, then closed
        cycle = RequestCycle(self, scope, keep_alive, self._expect_100, self._length, http10)
        if self._length == 0 or (self._length is None and not self._chunked):
            cycle.more_body = False
        if self.current is None:
            self.parsing = cycle
            self._start(cycle)
        else:
            if len(self.queue) >= MAX_PIPELINED:
                raise BadRequest(400, "too many pipelined requests")
            self.parsing = cycle
            self.queue.append(cycle)
            self.pause_reading()

    def _absolute_form(self, url: bytes) -> Any:
        """An absolute-form target (RFC 9112 §3.2.2): its authority replaces the Host."""
        try:
            # Any: httptools' stubs call its fields bytes and int, but absent ones are None
            # (and the compiled build would check the stubs' types).
            parsed: Any = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            raise BadRequest(400, "invalid request target") from None
        if parsed.schema not in (b"http", b"https") or not parsed.host:
            raise BadRequest(400, "invalid request target")
        authority = parsed.host if parsed.port is None else b"%s:%d" % (parsed.host,
                                                                        parsed.port)
        if not _HOST.fullmatch(authority):
            raise BadRequest(400, "invalid request target")
        self._headers[:] = [(k, authority if k == b"host" else v) for k, v in self._headers]
        if not self._hosts:
            self._headers.append((b"host", authority))
            self._hosts = 1
        return parsed

    def on_body(self, body: bytes) -> None:
        cycle = self.parsing
        if cycle is None:
            return
        cycle.received += len(body)
        limit = self.server.max_body_size
        if limit is not None and cycle.received > limit:
            raise BadRequest(413, "request body too large")
        if cycle.complete or cycle.disconnected:
            return  # answered already: the rest is read and dropped
        if cycle.body:
            cycle.body += body  # a bytearray by now: appended in place
        else:
            cycle.body = bytearray(body)
        if len(cycle.body) > BODY_HIGH_WATER:
            self.pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        cycle = self.parsing
        if cycle is None:
            return
        cycle.more_body = False
        cycle.wake()
        self.parsing = None
        if cycle.complete and self.current is None and not self.queue:
            # The response went out before the body ended; now the connection is idle.
            if self.server.draining:
                self._close()
            else:
                self._arm_timer()

    # --- flow ------------------------------------------------------------------------------

    def pause_reading(self) -> None:
        if not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and not self.queue and not self._closing:
            parsing = self.parsing
            if parsing is None or len(parsing.body) <= BODY_HIGH_WATER:
                self.reading_paused = False
                self.transport.resume_reading()

    def _start(self, cycle: RequestCycle) -> None:
        self.current = cycle
        direct = self.server.direct
        # A request without a body may be served by the app's direct path, without a task
        # or ASGI messages (`gateway.direct`); it calls `fall_back` when it cannot.
        if direct is not None and not cycle.more_body and cycle.content_length is None \
                and direct(cycle):
            return
        self.run_app(cycle)

    def run_app(self, cycle: RequestCycle) -> None:
        """Run the ASGI app on `cycle` in a task of its own."""
        task = cycle.task = self.loop.create_task(self._run(cycle))
        self.server.tasks.add(task)

    async def _run(self, cycle: RequestCycle) -> None:
        try:
            await self.app(cycle.scope, cycle.receive, cycle.send)
        except BaseException as exc:
            self.server.tasks.discard(cycle.task)  # type: ignore[arg-type]
            self.app_failed(cycle, exc)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return
        self.server.tasks.discard(cycle.task)  # type: ignore[arg-type]
        if not cycle.complete and not cycle.disconnected:
            if cycle.cut and not cycle.started:
                self._close(linger=True)  # the client left mid-request; the app let it go
            elif not cycle.started:
                log.error("the app answered nothing to %r", cycle)
                self._write_refusal(cycle, 500, "the server gave no response")
            else:
                log.error("the app left its response unfinished: %r", cycle)
                cycle.disconnected = True
                self.abort()

    def app_failed(self, cycle: RequestCycle, exc: BaseException) -> None:
        """The app raised on `cycle`: a 500 if nothing was written, else the connection
        is cut."""
        if not isinstance(exc, asyncio.CancelledError):
            log.error("the app failed on %r", cycle, exc_info=exc)
        if cycle.disconnected:
            pass
        elif not cycle.started or cycle.head_pending:  # nothing written yet
            self._write_refusal(cycle, 500, "internal error")
        elif not cycle.complete:
            cycle.disconnected = True
            self.abort()  # the response is under way: cut it

    def _write_refusal(self, cycle: RequestCycle, status: int, reason: str) -> None:
        cycle.started = cycle.complete = True
        cycle.keep_alive = False
        self.out.write(refusal(status, reason))
        self.response_done(cycle)

    def response_done(self, cycle: RequestCycle) -> None:
        """`cycle`'s response is out: close, or start the next request, or wait for one."""
        self.current = None
        cycle.body = b""  # an unread body is dropped from here on
        if not cycle.keep_alive:
            self._close(linger=cycle.more_body or bool(self.queue))
            return
        if self.queue:
            self._start(self.queue.popleft())
            if not self.queue:
                self.resume_reading()
            return
        if self._refused is not None:
            self._flush_refusal()
            return
        if self.reading_paused:
            self.resume_reading()
        if self.parsing is None and self.server.draining:
            self._close()
            return
        if self.parsing is None:
            self._arm_timer()

    # --- refusals, timers, closing -----------------------------------------------------------

    def _refuse(self, status: int, reason: str) -> None:
        """Answer `status` after the complete requests before it are answered, then close;
        read nothing more."""
        self._refused = refusal(status, reason)
        self._cancel_timer()
        parsing, self.parsing = self.parsing, None
        if parsing is not None:
            # The request whose body broke: the refusal is its answer.
            parsing.cut = True
            if parsing is self.current:
                parsing.disconnected = True  # what the app sends now goes nowhere
                parsing.wake()
                self.current = None
                if parsing.started:
                    self.abort()  # its response is under way: cut it
                    return
            elif parsing in self.queue:
                self.queue.remove(parsing)
        if self.current is None:
            self._flush_refusal()

    def _flush_refusal(self) -> None:
        if self._refused and not self.transport.is_closing():
            self.out.write(self._refused)
        self._close(linger=True)

    def _arm_timer(self) -> None:
        self.deadline = self.loop.time() + self.server.keep_alive_timeout

    def _cancel_timer(self) -> None:
        self.deadline = 0.0

    def timed_out(self) -> None:
        """The sweep found the deadline passed."""
        self.deadline = 0.0
        if self._lingering:
            self.transport.close()
            return
        if self._closing or self.current is not None or self.parsing is not None:
            return
        if self._lingering:
            self.transport.close()
        elif self._head_bytes:
            self.out.write(refusal(408, "request head not received in time"))
            self._close(linger=True)
        else:
            self._close()  # idle: nothing to say

    def drain(self) -> None:
        """The server is stopping: a busy connection closes after its response (which says
        `connection: close`). An idle one is left to its keep-alive deadline, or to its next
        request, which is answered with `connection: close`: closing it now could cross a
        request the client is sending on it at this very moment, which it would see fail.
        """

    def abort(self) -> None:
        """Cut the connection now: what is not written yet is dropped."""
        self.out.drop()
        self.transport.abort()

    def _close(self, linger: bool = False) -> None:
        if self._closing:
            return
        self._closing = True
        transport = self.transport
        self.out.flush()
        if linger and transport.can_write_eof() and not transport.is_closing():
            # Stop writing, keep reading (and dropping) for a while, then close.
            self._lingering = True
            transport.write_eof()
            if self.reading_paused:
                self.reading_paused = False
                transport.resume_reading()
            self.deadline = self.loop.time() + LINGER
            return
        transport.close()

    def _upgraded(self, rest: bytes) -> None:
        scope = getattr(self, "_pending_upgrade", None)
        if scope is None or self.current is not None or self.queue:
            self._refuse(400, "an upgrade must not be pipelined")
            return
        self.server.connections.discard(self)
        self._cancel_timer()
        self.out.flush()
        session = self.server.websocket(self.transport, scope)
        self.transport.set_protocol(session)
        session.start(rest)

    def __repr__(self) -> str:
        state = "closing" if self._closing else "busy" if self.current else "idle"
        return f"<H1Connection {self.client} {state} queued={len(self.queue)}>"

