"""granian: the Rust (hyper/tokio) ASGI server, first in the `auto` cascade.

Embedded serving uses `granian.server.embed.Server` ("experimental" upstream). It normally
binds its own socket (on Linux a fresh SO_REUSEPORT listener per worker); we hand it the
engine's listening socket instead by overriding `_init_shared_socket` with a
`SocketHolder(fd, is_uds, backlog)` around a dup of the engine's fd. Granian's Rust side owns
that fd from then on (it closes it when the worker stops), which is exactly why it gets a dup.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path
from typing import Any, ClassVar

from granian._granian import SocketHolder
from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings, HTTP2Settings
from granian.log import LogLevels
from granian.server.embed import Server as EmbeddedServer

from gateway.config.schema import ServerConfig
from gateway.errors import StartupError
from gateway.servers.base import (
    DrainingApp,
    ServerAdapter,
    ServingHandle,
    sigterm_exits_cleanly,
    unbuffered_stdio,
    wait_until,
)
from gateway.servers.loops import resolve_loop
from gateway.types import ASGIApp

_HTTP = {"auto": HTTPModes.auto, "1": HTTPModes.http1, "2": HTTPModes.http2}


def _options(settings: ServerConfig) -> dict[str, Any]:
    ssl: dict[str, Any] = {}
    if settings.ssl_certfile and settings.ssl_keyfile:
        ssl = {"ssl_cert": Path(settings.ssl_certfile), "ssl_key": Path(settings.ssl_keyfile)}
    return {
        "http": _HTTP[str(settings.http)],
        "backlog": settings.backlog,
        "http1_settings": HTTP1Settings(keep_alive=settings.keep_alive_timeout > 0),
        "http2_settings": HTTP2Settings(
            keep_alive_timeout=max(1, round(settings.keep_alive_timeout))),
        "log_access": False,
        "log_level": LogLevels.warning,
        **ssl,
    }


class _SharedSocketServer(EmbeddedServer):
    """The embedded server, serving on a socket it is given instead of one it binds."""

    def __init__(self, target: Any, fd: int, **options: Any) -> None:
        super().__init__(target, **options)
        self._given_fd = fd

    def _init_shared_socket(self) -> None:
        self._ssp = None
        self._shd = SocketHolder(self._given_fd, False, self.backlog)
        self._sfd = self._given_fd


class GranianHandle(ServingHandle):
    def __init__(self, server: _SharedSocketServer, app: DrainingApp, fd: int) -> None:
        self._server = server
        self._app = app
        self._fd = fd
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(), name="granian-embedded")
        # `serve` spawns its worker synchronously once it runs; give it that first step and
        # surface a startup failure here rather than in a task nobody awaits.
        await asyncio.sleep(0)
        if self._task.done():
            exc = self._task.exception()
            raise StartupError(f"granian failed to start: {exc}") from exc

    async def stop(self, timeout: float) -> None:
        if self._stopped:
            return
        self._stopped = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._app.draining = True
        await wait_until(lambda: self._app.open_connections() == 0,
                         deadline=min(deadline, loop.time() + self._app.idle_grace))
        self._server.stop()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), max(0.0, deadline - loop.time()))
        except TimeoutError:
            for worker in list(self._server.wrks):
                worker.kill()
            await asyncio.gather(self._task, return_exceptions=True)

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "serving"
        return f"<GranianHandle {state} fd={self._fd} {self._app!r}>"


class GranianAdapter(ServerAdapter):
    name: ClassVar[str] = "granian"
    package: ClassVar[str] = "granian"
    unsupported: ClassVar[frozenset[str]] = frozenset({"max_concurrent_connections",
                                                       "keep_alive_timeout"})

    def run_app(self, import_string: str, *, host: str, port: int, workers: int,
                settings: ServerConfig) -> None:
        from granian import Granian

        unbuffered_stdio()
        loop = Loops.uvloop if resolve_loop(settings.event_loop) == "uvloop" else Loops.asyncio
        server = Granian(
            import_string,
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            workers=max(1, workers),
            loop=loop,
            workers_kill_timeout=max(1, round(settings.graceful_timeout)),
            **_options(settings),
        )
        with sigterm_exits_cleanly():
            server.serve()

    async def serve_gateway(self, app: ASGIApp, sock: socket.socket,
                            settings: ServerConfig) -> ServingHandle:
        wrapped = DrainingApp(app, idle_grace=settings.keep_alive_timeout)
        fd = os.dup(sock.fileno())
        logging.getLogger("_granian").setLevel(logging.WARNING)
        server = _SharedSocketServer(wrapped, fd, interface=Interfaces.ASGINL, **_options(settings))
        handle = GranianHandle(server, wrapped, fd)
        await handle.start()
        return handle
