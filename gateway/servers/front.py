"""The built-in front: the gateway's own HTTP/1.1 server, on the workbench's event loop.

It serves the gateway (never an app process) where the `[server]` settings allow it: plain
HTTP/1.1, so no TLS and not `http = "2"`; for those a backend that offers them (granian,
hypercorn) serves instead (see `gateway.servers.registry.gateway_backend`). Its connections
are `gateway.servers.h1.H1Connection`, WebSocket sessions
`gateway.servers.front_ws.WebSocketSession`.

Compared with an embedded backend, it saves the hand-over of every request between a
server's own threads and the loop (granian) and a generic ASGI layer (uvicorn), and it drains
natively: the server knows it is draining, so a response says `connection: close` without a
send wrapper, and idle connections are closed at once.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any, ClassVar

from gateway.config.schema import ServerConfig
from gateway.errors import StartupError
from gateway.outbox import Outbox
from gateway.servers.base import ServerAdapter, ServingHandle, wait_until
from gateway.servers.front_ws import WebSocketSession
from gateway.servers.h1 import DateHeader, H1Connection
from gateway.types import ASGIApp

log = logging.getLogger("pyserve.front")

#: accept() errors that mean the process or the system is out of file descriptors or memory;
#: after those (and any other failing accept) the listening socket is left alone for
#: `ACCEPT_PAUSE` seconds instead of failing again at once, as asyncio does.
_RESOURCE_ERRORS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
ACCEPT_PAUSE = 1.0


class FrontServer:
    """The state the front's connections share: the app, the limits, the drain."""

    def __init__(self, app: ASGIApp, settings: ServerConfig,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        #: The app's way to serve a request without a body without ASGI and without a task
        #: (`GatewayApp.serve_direct`): called with the `RequestCycle`, True when it took it.
        self.direct: Callable[[Any], bool] | None = getattr(app, "serve_direct", None)
        self.loop = loop
        self.keep_alive_timeout = max(0.1, float(settings.keep_alive_timeout))
        self.max_connections = settings.max_concurrent_connections
        self.max_body_size = settings.max_body_size
        self.idle_grace = self.keep_alive_timeout
        self.asgi = {"version": "3.0", "spec_version": "2.4"}
        self.date = DateHeader()
        #: Responses are written when the loop's pass ends (`gateway.outbox`).
        self.outbox = Outbox(loop)
        self.connections: set[Any] = set()  # H1Connection and WebSocketSession
        self.tasks: set[asyncio.Task[None]] = set()
        self._draining = False
        self._sweep_every = min(1.0, self.keep_alive_timeout / 4)
        self._sweeper: asyncio.TimerHandle | None = None

    def start_sweeping(self) -> None:
        self._sweeper = self.loop.call_later(self._sweep_every, self.sweep)

    def stop_sweeping(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def sweep(self) -> None:
        """Close what is past its deadline: heads not whole in time, idle keep-alive
        connections, lingering closes. One pass a fraction of `keep_alive_timeout` apart
        instead of a timer armed and cancelled on every request."""
        now = self.loop.time()
        for conn in [c for c in self.connections if c.deadline and c.deadline <= now]:
            conn.timed_out()
        self.start_sweeping()

    @property
    def draining(self) -> bool:
        return self._draining

    @draining.setter
    def draining(self, value: bool) -> None:
        """Set by `ServingHandle.stop`: from now on every response says `connection:
        close` (see `H1Connection.drain`); websocket sessions are closed (1001)."""
        self._draining = value
        if value:
            for conn in list(self.connections):
                conn.drain()

    def protocol(self) -> H1Connection:
        return H1Connection(self)

    def websocket(self, transport: asyncio.Transport, scope: dict[str, Any]) -> WebSocketSession:
        """The session an accepted WebSocket upgrade of `transport` continues as."""
        return WebSocketSession(self, transport, scope)

    def __repr__(self) -> str:
        state = "draining" if self._draining else "serving"
        return (f"<FrontServer {state} connections={len(self.connections)} "
                f"tasks={len(self.tasks)}>")


class FrontHandle(ServingHandle):
    """Serves the front on a listening socket, accepting connections itself.

    uvloop's server accepts one connection per loop iteration; under load an iteration serves
    every busy connection first, so a burst of new connections (a client pool opening, a load
    generator starting) waited in the kernel's accept queue, their first requests with them.
    Here each readiness of the socket accepts everything queued, up to `backlog`, as the
    stdlib loop's server does; each accepted socket becomes a transport at once.
    """

    def __init__(self, front: FrontServer, sock: socket.socket, backlog: int) -> None:
        super().__init__(front)
        self._front = front
        self._sock = sock
        self._backlog = backlog
        self._watching = False  # the socket's readiness calls `_accept`
        self._resume: asyncio.TimerHandle | None = None  # after a failed accept
        self._wrapping: set[asyncio.Task[Any]] = set()  # accepted, not yet transports

    async def start(self) -> None:
        self._sock.setblocking(False)
        self._sock.listen(self._backlog)
        self._watch()
        self._front.start_sweeping()

    def _watch(self) -> None:
        self._resume = None
        self._front.loop.add_reader(self._sock.fileno(), self._accept)
        self._watching = True

    def _unwatch(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if self._watching:
            self._watching = False
            self._front.loop.remove_reader(self._sock.fileno())

    def _accept(self) -> None:
        loop = self._front.loop
        for _ in range(self._backlog):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:
                    continue  # the client gave up while queued
                if exc.errno in _RESOURCE_ERRORS:
                    log.error("cannot accept connections (%s); trying again in %gs",
                              exc.strerror or exc, ACCEPT_PAUSE)
                else:
                    log.error("accept failed: %s", exc.strerror or exc)
                self._unwatch()
                self._resume = loop.call_later(ACCEPT_PAUSE, self._watch)
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(self._wrap(conn))
            self._wrapping.add(task)
            task.add_done_callback(self._wrapping.discard)

    async def _wrap(self, conn: socket.socket) -> None:
        try:
            await self._front.loop.connect_accepted_socket(self._front.protocol, sock=conn)
        except OSError:
            conn.close()  # reset before it became a transport: nothing to answer

    @property
    def serving(self) -> bool:
        return not self._stopped

    async def _stop_accepting(self) -> None:
        self._unwatch()
        if self._wrapping:
            await asyncio.gather(*self._wrapping, return_exceptions=True)
        self._sock.close()  # our dup; the engine's socket stays

    def _open_connections(self) -> int:
        return len(self._front.connections)

    async def _shut_down(self, deadline: float) -> None:
        front = self._front
        await wait_until(lambda: not front.connections and not front.tasks, deadline=deadline)
        for task in list(front.tasks):
            task.cancel("the server is stopping and its graceful timeout ran out")
        for conn in list(front.connections):
            conn.transport.abort()
        if front.tasks:
            await asyncio.gather(*front.tasks, return_exceptions=True)
        front.stop_sweeping()

    def __repr__(self) -> str:
        return f"<FrontHandle {'stopped' if self._stopped else 'serving'} {self._front!r}>"


class FrontAdapter(ServerAdapter):
    """The built-in front as a backend choice. It serves the gateway only: apps run on an
    ASGI server of their own (`registry.app_backend`)."""

    name: ClassVar[str] = "builtin"
    package: ClassVar[str] = "pyserve-tui"
    unsupported: ClassVar[frozenset[str]] = frozenset({"ssl_certfile", "ssl_keyfile", "http"})

    @classmethod
    def unsupported_in(cls, settings: ServerConfig) -> list[str]:
        return cannot_serve(settings)

    def run_app(self, import_string: str, *, host: str, port: int, workers: int,
                settings: ServerConfig) -> None:
        raise StartupError("the built-in front serves the gateway only; apps run on "
                           "granian, uvicorn or hypercorn")

    async def serve_gateway(self, app: ASGIApp, sock: socket.socket,
                            settings: ServerConfig) -> ServingHandle:
        front = FrontServer(app, settings, asyncio.get_running_loop())
        own = sock.dup()  # closing the asyncio server closes it; the engine's socket stays
        return await FrontHandle(front, own, settings.backlog).start_on(own)


def cannot_serve(settings: ServerConfig) -> list[str]:
    """The `[server]` keys set to something the built-in front cannot do."""
    keys = []
    if settings.ssl_certfile or settings.ssl_keyfile:
        keys.append("ssl_certfile")
    if str(settings.http) == "2":
        keys.append("http")
    return keys
