"""The adapter every serving backend implements.

A backend does two jobs: serve the gateway's ASGI app inside the workbench's own event loop
(`serve_gateway`), and run one app process's ASGI app with its workers (`run_app`, called in
the child process, blocking until SIGTERM).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import ClassVar, Protocol

from gateway.config.schema import ServerConfig
from gateway.types import ASGIApp, Message, Receive, Scope, Send


class Drainable(Protocol):
    """What `ServingHandle.stop` drains: setting `draining` makes every later response say
    `connection: close`; idle keep-alive clients get `idle_grace` seconds to leave."""

    draining: bool
    idle_grace: float


class ServingHandle(ABC):
    """A running embedded server. `stop` drains in-flight requests up to `timeout`.

    The drain is the same for every backend: stop accepting (the engine's socket stays open
    and queues connections for whoever serves next), let keep-alive clients go (every
    response now says `connection: close`, so a client's next request is its last here and
    none is cut off in flight), then shut the server down by the deadline. A backend says
    how to stop accepting, how many connections it still has, and how to shut down.
    """

    def __init__(self, app: Drainable) -> None:
        self._app = app
        self._stopped = False

    async def stop(self, timeout: float) -> None:
        if self._stopped:
            return
        self._stopped = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._app.draining = True
        await self._stop_accepting()
        await wait_until(lambda: self._open_connections() == 0,
                         deadline=min(deadline, loop.time() + self._app.idle_grace),
                         steady=SETTLE)
        await self._shut_down(deadline)

    @abstractmethod
    async def start(self) -> None:
        """Begin serving; raise `StartupError` if the server cannot."""

    async def start_on(self, own: socket.socket) -> ServingHandle:
        """`start` a handle that serves on `own` (its dup of the engine's socket), closing
        `own` if it cannot start; the handle, for `serve_gateway` to return."""
        try:
            await self.start()
        except BaseException:
            own.close()
            raise
        return self

    @abstractmethod
    async def _stop_accepting(self) -> None: ...

    @abstractmethod
    def _open_connections(self) -> int: ...

    @abstractmethod
    async def _shut_down(self, deadline: float) -> None:
        """Finish what is in flight and stop, by `deadline` (loop time)."""

    @property
    def serving(self) -> bool:
        """False once stopped, or if the server died on its own."""
        return True

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "serving"
        return f"<{type(self).__name__} {state} connections={self._open_connections()}>"


class ServerAdapter(ABC):
    name: ClassVar[str]
    #: What to `pip install` when the backend is missing.
    package: ClassVar[str]
    #: [server] keys this backend cannot honour; `check` reports them.
    unsupported: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def run_app(self, import_string: str, *, host: str, port: int, workers: int,
                settings: ServerConfig) -> None:
        """Serve the ASGI app at `import_string` on host:port; blocks until stopped."""

    @abstractmethod
    async def serve_gateway(self, app: ASGIApp, sock: socket.socket,
                            settings: ServerConfig) -> ServingHandle:
        """Start serving `app` on the already-listening `sock` in the running loop."""

    @classmethod
    def unsupported_in(cls, settings: ServerConfig) -> list[str]:
        """The `unsupported` keys `settings` actually sets (differ from the default)."""
        defaults = ServerConfig()
        return sorted(key for key in cls.unsupported
                      if getattr(settings, key) != getattr(defaults, key))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def _exit_zero(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


@contextmanager
def sigterm_exits_cleanly() -> Iterator[None]:
    """Make SIGTERM end `run_app` with exit status 0.

    Backends install their own handlers while serving and, like uvicorn, re-raise the signal
    once they have shut down; with the default disposition that would kill the process by
    SIGTERM (status -15). Before and after the backend's own handlers, a SIGTERM here becomes
    a clean `SystemExit(0)`.
    """
    previous = signal.signal(signal.SIGTERM, _exit_zero)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def unbuffered_stdio() -> None:
    """Line-buffer the app's stdout/stderr so its prints reach the orchestrator promptly."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)


#: How long a backend's connection count must stay at zero before it is believed: a socket
#: the loop has accepted becomes a connection only a few loop iterations later.
SETTLE = 0.05


async def wait_until(predicate: Callable[[], bool], *, deadline: float,
                     interval: float = 0.01, steady: float = 0.0) -> bool:
    """Poll `predicate` until it holds (for `steady` seconds running, when given) or the
    loop clock passes `deadline`; say which."""
    loop = asyncio.get_running_loop()
    held_since: float | None = None
    while True:
        now = loop.time()
        if predicate():
            held_since = now if held_since is None else held_since
            if now - held_since >= steady:
                return True
        else:
            held_since = None
        if now >= deadline:
            return False
        await asyncio.sleep(interval)


async def stop_accepting(servers: list[asyncio.Server]) -> None:
    """Stop `servers` accepting, then close them once accepted sockets have become transports.

    Closing an asyncio server straight away races with its own accept: on the selector loop a
    socket accepted in the same iteration is wrapped in a transport a step later, and on a
    closed server that step fails (`Server._attach` asserts) and drops the connection with
    its request unread, which the client sees as a reset. Unhooking the listening fd first
    and letting the loop settle closes that gap. (uvloop accepts and wraps synchronously.)
    """
    loop = asyncio.get_running_loop()
    for server in servers:
        for sock in server.sockets:
            try:
                loop.remove_reader(sock.fileno())
            except (RuntimeError, ValueError):  # a loop without remove_reader raises RuntimeError
                pass
    await asyncio.sleep(SETTLE)
    for server in servers:
        server.close()


class DrainingApp:
    """Wraps the gateway's app on an embedded backend (granian, uvicorn, hypercorn), whose
    connections the gateway does not own, so a stopping server lets keep-alive clients go.

    This is where an embedded backend's HTTP/1 response gets `connection: close` (the built-in
    front decides it in `h1.RequestCycle._head`): once `draining` is set, so a client's next
    request on this server is answered and then the connection ends instead of being cut in
    flight; and for a request framed both by Content-Length and Transfer-Encoding (RFC 9112
    §6.1: possibly a smuggling attempt; h11, under hypercorn, would keep the connection).
    It also tracks, by client address, the connections that are busy or were used within
    `active_window` seconds, for a backend (granian) that does not expose its own connection
    count: those are the ones about to send another request.
    """

    def __init__(self, app: ASGIApp, *, idle_grace: float, active_window: float = 0.5) -> None:
        self.app = app
        self.idle_grace = idle_grace
        self.active_window = active_window
        self.draining = False
        self.in_flight = 0
        self._tasks: set[asyncio.Task[object]] = set()
        # client (host, port) -> monotonic time of its last response, -1 while busy;
        # dropped once the response said `connection: close`
        self._seen: dict[tuple[str, int], float] = {}

    def active_connections(self) -> int:
        """Connections busy now or used within `active_window` and not told to close."""
        now = time.monotonic()
        stale = [key for key, seen in self._seen.items()
                 if seen >= 0 and now - seen >= self.active_window]
        for key in stale:
            del self._seen[key]
        return len(self._seen)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = (client[0], client[1]) if client else None
        closing = False
        if scope.get("http_version", "1.1") in ("1.0", "1.1"):
            raw_send = send
            framing = 0
            for name, _ in scope["headers"]:
                if name == b"content-length":
                    framing |= 1
                elif name == b"transfer-encoding":
                    framing |= 2
            ambiguous = framing == 3

            async def send_wrapper(message: Message) -> None:
                nonlocal closing
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", []))
                    closing = any(k.lower() == b"connection" and v.lower() == b"close"
                                  for k, v in headers)
                    if (self.draining or ambiguous) and not closing:
                        headers.append((b"connection", b"close"))
                        message = {**message, "headers": headers}
                        closing = True
                await raw_send(message)

            send = send_wrapper

        self.in_flight += 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        if key is not None:
            if len(self._seen) > 4096:
                self.active_connections()  # prune
            self._seen[key] = -1.0
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            if task is not None:
                self._tasks.discard(task)
            if key is not None:
                if closing:
                    self._seen.pop(key, None)
                else:
                    self._seen[key] = time.monotonic()

    def cancel_in_flight(self) -> int:
        """Cancel the requests still running (the drain ran out of time); how many."""
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel("the server is stopping and its graceful timeout ran out")
        return len(tasks)

    def __repr__(self) -> str:
        state = "draining" if self.draining else "serving"
        return f"<DrainingApp {state} in_flight={self.in_flight} seen={len(self._seen)}>"
