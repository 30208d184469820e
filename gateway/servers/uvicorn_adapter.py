"""uvicorn: the ecosystem-standard ASGI server (HTTP/1.1 only here)."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import socket
from typing import Any, ClassVar

import uvicorn

from gateway.config.schema import ServerConfig
from gateway.servers.base import (
    DrainingApp,
    ServerAdapter,
    ServingHandle,
    sigterm_exits_cleanly,
    stop_accepting,
    unbuffered_stdio,
)
from gateway.servers.loops import resolve_loop
from gateway.types import ASGIApp


def _http_impl() -> str:
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


#: The largest request head (request line and headers) the gateway takes on uvicorn. Its
#: httptools parser has no limit of its own; granian's is about 400 KiB, h11's 16 KiB.
MAX_HEAD_BYTES = 64 * 1024


def _gateway_protocol() -> type[asyncio.Protocol] | str:
    """uvicorn's httptools protocol with the two limits a server facing clients needs.

    uvicorn's own protocol lets a client hold a connection forever by sending a request head
    slowly, or never: its keep-alive timer only runs between requests and stops at the first
    byte, and a new connection has none. Here a request head must be complete within
    `timeout_keep_alive` of the connection opening or the head's first byte (408, or a plain
    close for a connection that never sent anything), as hypercorn and granian do. And the
    head may not grow past MAX_HEAD_BYTES (431): httptools keeps buffering it otherwise.
    """
    if _http_impl() != "httptools":
        return "h11"  # h11 bounds the head itself (h11_max_incomplete_event_size)
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    class GatewayHttpToolsProtocol(HttpToolsProtocol):
        _in_head = True
        _head_bytes = 0
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(431, "Request header fields too large.")

        def on_message_begin(self) -> None:
            self._in_head = True
            self._arm_head_timer()
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._head_bytes = 0
            self._cancel_head_timer()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_head = True  # what comes next is the next request's head
            super().on_message_complete()

        def _arm_head_timer(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.timeout_keep_alive,
                                                        self._head_timed_out)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if not self._in_head or self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                self._arm_head_timer()  # a pipelined head waits for the response first
                return
            if self._head_bytes:
                self._refuse(408, "Request head not received in time.")
            else:
                self.transport.close()  # opened, never used: nothing to say

        def _refuse(self, status: int, message: str) -> None:
            self._cancel_head_timer()
            if self.transport.is_closing():
                return
            body = message.encode("ascii")
            self.transport.write(b"".join((
                STATUS_LINE[status], b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body)))
            self.transport.close()

    return GatewayHttpToolsProtocol


def _common_options(settings: ServerConfig) -> dict[str, Any]:
    return {
        "http": _http_impl(),
        "log_level": "warning",
        "access_log": False,
        "server_header": False,
        "backlog": settings.backlog,
        "timeout_keep_alive": max(1, round(settings.keep_alive_timeout)),
        "timeout_graceful_shutdown": settings.graceful_timeout,
        "limit_concurrency": settings.max_concurrent_connections,
        "ssl_certfile": settings.ssl_certfile,
        "ssl_keyfile": settings.ssl_keyfile,
    }


class UvicornHandle(ServingHandle):
    def __init__(self, server: uvicorn.Server, app: DrainingApp, sock: socket.socket) -> None:
        super().__init__(app)
        self._server = server
        self._sock = sock
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._server.startup(sockets=[self._sock])
        self._task = asyncio.create_task(self._server.main_loop(), name="uvicorn-main-loop")

    @property
    def connections(self) -> int:
        return len(self._server.server_state.connections)

    @property
    def serving(self) -> bool:
        return not self._stopped and self._task is not None and not self._task.done()

    async def _stop_accepting(self) -> None:
        await stop_accepting(self._server.servers)

    def _open_connections(self) -> int:
        return self.connections

    async def _shut_down(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        self._server.config.timeout_graceful_shutdown = max(0, math.ceil(deadline - loop.time()))
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        # `shutdown` closes the sockets it is given: ours is a dup, the engine keeps its own.
        await self._server.shutdown(sockets=[self._sock])


class UvicornAdapter(ServerAdapter):
    name: ClassVar[str] = "uvicorn"
    package: ClassVar[str] = "uvicorn"
    unsupported: ClassVar[frozenset[str]] = frozenset({"http", "max_body_size"})

    @classmethod
    def unsupported_in(cls, settings: ServerConfig) -> list[str]:
        # uvicorn speaks HTTP/1.1 only (its HTTP/2 needs the separate zttp protocol), so
        # only `http = "2"` is out of reach; "1" and "auto" are what it does anyway.
        keys = ["http"] if str(settings.http) == "2" else []
        return keys + (["max_body_size"] if settings.max_body_size is not None else [])

    def run_app(self, import_string: str, *, host: str, port: int, workers: int,
                settings: ServerConfig) -> None:
        unbuffered_stdio()
        loop = resolve_loop(settings.event_loop)
        with sigterm_exits_cleanly():
            uvicorn.run(
                import_string,
                host=host,
                port=port,
                workers=workers if workers > 1 else None,
                lifespan="auto",
                loop=loop,
                **_common_options(settings),
            )

    async def serve_gateway(self, app: ASGIApp, sock: socket.socket,
                            settings: ServerConfig) -> ServingHandle:
        wrapped = DrainingApp(app, idle_grace=settings.keep_alive_timeout)
        # log_config=None: uvicorn's default runs logging.config.dictConfig, which closes
        # every handler in the process; the workbench owns logging, uvicorn's loggers propagate.
        options = {**_common_options(settings), "http": _gateway_protocol()}
        # proxy_headers=False: uvicorn believes X-Forwarded-For/-Proto from 127.0.0.1 by
        # default and would rewrite the peer and scheme before the gateway sees them; whom
        # the gateway believes is its `trusted_proxies` (gateway.proxy.headers.Forwarding).
        config = uvicorn.Config(wrapped, lifespan="off", loop="none", log_config=None,
                                proxy_headers=False, **options)
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        own = sock.dup()  # uvicorn closes the sockets it serves; the engine's must outlive it
        return await UvicornHandle(server, wrapped, own).start_on(own)
