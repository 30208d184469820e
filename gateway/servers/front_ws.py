"""The built-in front's WebSocket sessions: the ASGI websocket scope over `websockets`' sans-I/O
protocol, so extensions and `asgi` mounts see what uvicorn or hypercorn would give them.

The handshake is checked before the app runs (a bad key or version is answered 4xx by the
protocol); the app then gets `websocket.connect` and answers `websocket.accept` (101, with
its subprotocol and headers), `websocket.close` (403 before accepting) or a
`websocket.http.response` (any HTTP answer). Messages are reassembled from frames; pings are
answered by the protocol. At most `MAX_QUEUED` received messages wait for the app before the
session stops reading, and sends wait while the transport's write buffer is full.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from gateway.servers.h1 import STATUS_LINES, WriteFlow, refusal
from gateway.types import Message

if TYPE_CHECKING:
    from gateway.servers.front import FrontServer

log = logging.getLogger("pyserve.front")

#: Largest message taken from a client (uvicorn's default `ws_max_size`).
MAX_MESSAGE = 16 * 1024 * 1024
MAX_QUEUED = 16
CLOSE_TIMEOUT = 5.0


class WebSocketSession(WriteFlow):
    """One upgraded connection, from the handshake to the close."""

    def __init__(self, server: FrontServer, transport: asyncio.Transport,
                 scope: dict[str, Any]) -> None:
        self.server = server
        self.transport = transport
        self.loop = server.loop
        headers = scope["headers"]
        subprotocols = [token.strip() for name, value in headers if name ==
                        b"sec-websocket-protocol" for token in value.decode("latin-1").split(",")
                        if token.strip()]
        target = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        self.scope = {**scope, "type": "websocket", "scheme": "ws",
                      "subprotocols": subprotocols,
                      "extensions": {"websocket.http.response": {}}}
        self.scope.pop("method", None)
        # The handshake was parsed by the front: one protocol object checks it and writes
        # the 101, then one that starts in the OPEN state reads and writes the frames.
        self.handshake = ServerProtocol(max_size=MAX_MESSAGE)
        self.protocol = ServerProtocol(state=State.OPEN, max_size=MAX_MESSAGE)
        self._request = Request(target, Headers(
            [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers]))
        self._response: Response | None = None
        self._messages: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._fragments: list[bytes] = []
        self._text = False
        self._accepted = False
        self._answered = False  # the handshake got its HTTP answer (101 or a refusal)
        self._closed = False  # the app's side is over (it closed, or the peer is gone)
        self._paused = False
        self._drain_waiters = []
        self._close_timer: asyncio.TimerHandle | None = None
        self._denial_started = False
        self._pending = b""  # frames that came with the handshake, read once accepted
        self.task: asyncio.Task[None] | None = None
        self.deadline = 0.0  # the server's sweep leaves websocket sessions alone

    # --- start and transport events ----------------------------------------------------------

    def start(self, rest: bytes) -> None:
        self.server.connections.add(self)
        response = self.handshake.accept(self._request)
        if response.status_code != 101:
            # Not a valid WebSocket handshake: the protocol says why (400/426).
            self.transport.write(refusal(response.status_code if response.status_code < 500
                                         else 400, "invalid WebSocket handshake"))
            self.transport.close()
            return
        self._response = response
        self._messages.append({"type": "websocket.connect"})
        self.task = self.loop.create_task(self._run())
        self.server.tasks.add(self.task)
        self.task.add_done_callback(self.server.tasks.discard)
        self._pending = rest
        self.transport.pause_reading()
        self._paused = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        pass  # the transport is handed over already open

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self._close_timer is not None:
            self._close_timer.cancel()
        if not self._closed:
            code = 1005 if self.protocol.close_rcvd is not None else 1006
            self._push({"type": "websocket.disconnect", "code": code})
        self._closed = True
        self.write_paused = False
        self._wake_drain_waiters()

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        self._handle_events()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._handle_events()
        return None

    def drain(self) -> None:
        """The server is stopping: tell the app (1001, going away) and close."""
        if self._accepted and not self._closed:
            self._push({"type": "websocket.disconnect", "code": 1001})
            self._closed = True
            self._send_close(1001, "")

    # --- frames in ---------------------------------------------------------------------------

    def _handle_events(self) -> None:
        for event in self.protocol.events_received():
            if not isinstance(event, Frame):
                continue
            if event.opcode in (Opcode.TEXT, Opcode.BINARY):
                self._text = event.opcode == Opcode.TEXT
                self._fragments = [bytes(event.data)]
            elif event.opcode == Opcode.CONT:
                self._fragments.append(bytes(event.data))
            elif event.opcode == Opcode.CLOSE:
                close = self.protocol.close_rcvd
                if not self._closed:
                    self._closed = True
                    self._push({"type": "websocket.disconnect",
                                "code": close.code if close else 1005,
                                "reason": close.reason if close else ""})
                continue
            else:
                continue  # ping (answered by the protocol) or pong
            if event.fin and event.opcode != Opcode.CLOSE:
                data = b"".join(self._fragments)
                self._fragments = []
                if self._text:
                    try:
                        text = data.decode()
                    except UnicodeDecodeError:
                        self._fail(1007, "invalid UTF-8 in a text message")
                        return
                    self._push({"type": "websocket.receive", "text": text})
                else:
                    self._push({"type": "websocket.receive", "bytes": data})
        self._flush()
        if self.protocol.close_expected() or self.protocol.parser_exc is not None:
            if self.protocol.parser_exc is not None and not self._closed:
                self._closed = True
                sent = self.protocol.close_sent
                self._push({"type": "websocket.disconnect",
                            "code": sent.code if sent else 1002})
            self._close_soon()

    def _fail(self, code: int, reason: str) -> None:
        """Close the session for a protocol error of the client's (RFC 6455 §7.4)."""
        if not self._closed:
            self._closed = True
            self._push({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.protocol.fail(code, reason)
        self._flush()
        self._close_soon()

    def _push(self, message: Message) -> None:
        self._messages.append(message)
        if len(self._messages) >= MAX_QUEUED and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _flush(self) -> None:
        data = self.protocol.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(b"".join(data))

    def _close_soon(self) -> None:
        if self._close_timer is None:
            self._close_timer = self.loop.call_later(CLOSE_TIMEOUT, self.transport.close)
        if self.protocol.close_rcvd is not None and self.protocol.close_sent is not None:
            self.transport.close()

    # --- the app -----------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self.server.app(self.scope, self.receive, self.send)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.error("the app failed on a websocket session", exc_info=exc)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
        finally:
            if not self._answered:
                self._answered = True
                self.transport.write(refusal(500, "the websocket handshake got no answer"))
                self.transport.close()
            elif self._denial_started and not self.transport.is_closing():
                self.transport.close()
            elif not self._closed and self._accepted:
                self._closed = True
                self._send_close(1011 if not self.transport.is_closing() else 1006, "")

    async def receive(self) -> Message:
        while not self._messages:
            if self._closed and self._answered:
                return {"type": "websocket.disconnect", "code": 1006}
            self._waiter = self.loop.create_future()
            await self._waiter
            self._waiter = None
        message = self._messages.popleft()
        if self._paused and self._accepted and len(self._messages) < MAX_QUEUED // 2 \
                and not self.transport.is_closing():
            self._paused = False
            self.transport.resume_reading()
        return message

    async def send(self, message: Message) -> None:
        if self.write_paused and not self.transport.is_closing():
            await self.drained()
        kind = message["type"]
        if not self._answered:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._answered = True
                self._closed = True
                self.transport.write(refusal(403, "the websocket was refused"))
                self.transport.close()
            elif kind == "websocket.http.response.start":
                self._answered = True
                self._denial_started = True
                self._deny_head(message)
            else:
                raise RuntimeError(f"expected 'websocket.accept', got {kind!r}")
            return
        if self._denial_started:
            if kind != "websocket.http.response.body":
                raise RuntimeError(f"expected 'websocket.http.response.body', got {kind!r}")
            if not self.transport.is_closing():
                self.transport.write(message.get("body", b""))
                if not message.get("more_body", False):
                    self.transport.close()
            return
        if self._closed or self.transport.is_closing():
            return  # the peer is gone; the app learns it from `receive`
        if kind == "websocket.send":
            text = message.get("text")
            if text is not None:
                self.protocol.send_text(text.encode())
            else:
                self.protocol.send_binary(message.get("bytes") or b"")
            self._flush()
        elif kind == "websocket.close":
            self._closed = True
            self._send_close(message.get("code") or 1000, message.get("reason") or "")
        else:
            raise RuntimeError(f"unexpected {kind!r} on an accepted websocket")

    def _accept(self, message: Message) -> None:
        response = self._response
        assert response is not None
        subprotocol = message.get("subprotocol")
        if subprotocol:
            response.headers["Sec-WebSocket-Protocol"] = subprotocol
        for name, value in message.get("headers") or ():
            response.headers[name.decode("latin-1")] = value.decode("latin-1")
        self.handshake.send_response(response)
        self.transport.write(b"".join(self.handshake.data_to_send()))
        self._answered = self._accepted = True
        pending, self._pending = self._pending, b""
        if pending:
            self.data_received(pending)
        if self._paused and len(self._messages) < MAX_QUEUED:
            self._paused = False
            self.transport.resume_reading()

    def _deny_head(self, message: Message) -> None:
        status = int(message["status"])
        parts = [STATUS_LINES.get(status, b"HTTP/1.1 %d \r\n" % status)]
        for name, value in message.get("headers") or ():
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(parts))

    def _send_close(self, code: int, reason: str) -> None:
        if self.transport.is_closing():
            return
        try:
            self.protocol.send_close(code, reason)
        except Exception:  # the protocol is past closing already
            self.transport.close()
            return
        self._flush()
        self._close_soon()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._accepted else "handshake"
        return f"<WebSocketSession {self.scope.get('client')} {self.scope['path']!r} {state}>"
