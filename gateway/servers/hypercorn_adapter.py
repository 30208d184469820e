"""hypercorn: HTTP/1.1 and HTTP/2 on asyncio.

For the embedded gateway we drive hypercorn's per-connection `TCPServer` from our own
`asyncio.start_server` rather than `hypercorn.asyncio.serve`: `serve` owns the accept loop and
the connection tasks, and a live backend switch needs to stop accepting, see which connections
are still open, and drain them, all on a listening socket the engine keeps.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, ClassVar, cast

from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.utils import wrap_app

from gateway.config.schema import ServerConfig
from gateway.servers.base import (
    DrainingApp,
    ServerAdapter,
    ServingHandle,
    sigterm_exits_cleanly,
    stop_accepting,
    unbuffered_stdio,
    wait_until,
)
from gateway.servers.loops import resolve_loop
from gateway.types import ASGIApp


def _config(settings: ServerConfig) -> Config:
    config = Config()
    config.backlog = settings.backlog
    config.graceful_timeout = settings.graceful_timeout
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    config.include_server_header = False
    if settings.ssl_certfile and settings.ssl_keyfile:
        config.certfile = settings.ssl_certfile
        config.keyfile = settings.ssl_keyfile
    if settings.http == "1":
        config.alpn_protocols = ["http/1.1"]
    elif settings.http == "2":
        config.alpn_protocols = ["h2"]
    return config


class HypercornHandle(ServingHandle):
    def __init__(self, app: DrainingApp, config: Config, sock: socket.socket) -> None:
        super().__init__(app)
        self._config = config
        self._sock = sock
        self._wrapped = wrap_app(cast(Any, app), config.wsgi_max_body_size, "asgi")
        self._context = WorkerContext(None)
        self._server: asyncio.Server | None = None
        # connection task -> its stream reader; a task outlives its connection by up to
        # keep_alive_timeout (hypercorn's idle timer), so "open" looks at the stream.
        self._connections: dict[asyncio.Task[None], asyncio.StreamReader] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ssl_context = self._config.create_ssl_context() if self._config.ssl_enabled else None

        async def on_connection(reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._connections[task] = reader
                task.add_done_callback(lambda done: self._connections.pop(done, None))
            try:
                await TCPServer(self._wrapped, loop, self._config, self._context, {}, reader,
                                writer)
            except asyncio.CancelledError:
                # Only `stop` cancels these (graceful timeout exceeded). Ending normally keeps
                # asyncio's stream callback from logging the cancellation as an error (3.11).
                writer.close()

        self._server = await asyncio.start_server(
            on_connection, sock=self._sock, backlog=self._config.backlog, ssl=ssl_context,
            ssl_handshake_timeout=self._config.ssl_handshake_timeout if ssl_context else None,
        )

    @property
    def serving(self) -> bool:
        return not self._stopped and self._server is not None and self._server.is_serving()

    @property
    def connections(self) -> int:
        """Connections whose client has not hung up."""
        return sum(1 for reader in self._connections.values() if not reader.at_eof())

    async def _stop_accepting(self) -> None:
        if self._server is not None:
            await stop_accepting([self._server])  # closes our dup, not the engine's socket

    def _open_connections(self) -> int:
        return self.connections

    async def _shut_down(self, deadline: float) -> None:
        # `terminated` makes hypercorn close idle connections and finish busy ones.
        await self._context.terminated.set()
        await wait_until(lambda: not self._connections, deadline=deadline)
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


class HypercornAdapter(ServerAdapter):
    name: ClassVar[str] = "hypercorn"
    package: ClassVar[str] = "hypercorn"
    unsupported: ClassVar[frozenset[str]] = frozenset({"max_concurrent_connections",
                                                       "max_body_size"})

    def run_app(self, import_string: str, *, host: str, port: int, workers: int,
                settings: ServerConfig) -> None:
        from hypercorn.run import run

        unbuffered_stdio()
        config = _config(settings)
        config.application_path = import_string
        config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        # workers=0 serves in this process; hypercorn spawns processes only for more than one.
        config.workers = workers if workers > 1 else 0
        config.worker_class = resolve_loop(settings.event_loop)
        with sigterm_exits_cleanly():
            code = run(config)
        if code:
            raise SystemExit(code)

    async def serve_gateway(self, app: ASGIApp, sock: socket.socket,
                            settings: ServerConfig) -> ServingHandle:
        wrapped = DrainingApp(app, idle_grace=settings.keep_alive_timeout)
        config = _config(settings)
        # A logger (not "-") keeps hypercorn from installing its own stderr handler: the
        # workbench's logging configuration decides where these go.
        config.errorlog = logging.getLogger("hypercorn.error")
        own = sock.dup()  # closing the asyncio server closes it; the engine's socket stays
        return await HypercornHandle(wrapped, config, own).start_on(own)
