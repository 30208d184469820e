"""granian: the Rust (hyper/tokio) ASGI server, first in the `auto` cascade.

Embedded serving uses `granian.server.embed.Server` ("experimental" upstream) with the ASGINL
interface (no lifespan: the engine runs its own startup). How it is made to share the
engine's socket and to hand over without dropping a client:

- Granian normally binds its own listener (on Linux one SO_REUSEPORT socket per worker).
  `_init_shared_socket` is overridden to give the worker `SocketHolder(fd, False, backlog)`
  around a dup of the engine's fd. Granian's Rust side owns that fd from then on and closes
  it when the worker stops, which is why it gets a dup.
- Granian cannot stop accepting without shutting down, and its shutdown closes connections it
  has just accepted before their request is read. `GranianHandle._detach_listener` therefore
  points granian's fd (dup2) at an idle listener of our own first; see there.
- Its constructor reconfigures the whole process's logging; see `_configure_logging_quietly`.
- Its ASGINL worker resolves a future twice on stop; `_spawn_asgi_worker` is granian's own,
  made idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from granian import _granian
from granian._futures import _new_cbscheduler
from granian.constants import HTTPModes, Interfaces, Loops, TaskImpl
from granian.http import HTTP1Settings, HTTP2Settings
from granian.log import LogLevels
from granian.server import common as granian_common
from granian.server.embed import AsyncWorker
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

# granian's bundled type stubs lag behind its Rust extension's real signatures.
SocketHolder: Any = _granian.SocketHolder
ASGIWorker: Any = _granian.ASGIWorker

#: After the graceful timeout, how long cancelled requests get to unwind in granian.
_KILL_GRACE = 5.0

_HTTP = {"auto": HTTPModes.auto, "1": HTTPModes.http1, "2": HTTPModes.http2}


def _options(settings: ServerConfig) -> dict[str, Any]:
    ssl: dict[str, Any] = {}
    if settings.ssl_certfile and settings.ssl_keyfile:
        ssl = {"ssl_cert": Path(settings.ssl_certfile), "ssl_key": Path(settings.ssl_keyfile)}
    return {
        "http": _HTTP[str(settings.http)],
        "backlog": settings.backlog,
        # A connection must deliver a whole request head within keep_alive_timeout of opening
        # or of its previous response (hyper's default is 30 s), which is the idle keep-alive
        # timeout uvicorn and hypercorn apply, and keeps slow or silent clients from piling up.
        "http1_settings": HTTP1Settings(
            keep_alive=settings.keep_alive_timeout > 0,
            header_read_timeout=max(1000, round(settings.keep_alive_timeout * 1000))),
        "http2_settings": HTTP2Settings(
            keep_alive_timeout=max(1, round(settings.keep_alive_timeout))),
        "log_access": False,
        "log_level": LogLevels.warning,
        **ssl,
    }


class _DropExperimentalNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Embedded server is experimental" not in record.getMessage()


def _configure_logging_quietly(level: LogLevels, config: Any = None,
                               enabled: bool = True) -> None:
    """Stand-in for granian's `configure_logging` in the workbench process.

    Granian's own runs `logging.config.dictConfig`, which closes every handler in the process
    and sends granian's logger to stdout, where it would scribble over the terminal UI.
    Here granian's loggers just propagate to whatever logging the workbench set up.
    """
    logger = logging.getLogger("_granian")
    logger.setLevel(logging.WARNING)
    logger.propagate = True
    if not any(isinstance(f, _DropExperimentalNotice) for f in logger.filters):
        logger.addFilter(_DropExperimentalNotice())
    logging.getLogger("granian.access").setLevel(logging.CRITICAL + 1)


@contextmanager
def _workbench_logging() -> Iterator[None]:
    original = granian_common.configure_logging
    granian_common.configure_logging = _configure_logging_quietly
    try:
        yield
    finally:
        granian_common.configure_logging = original


def _direct_watcher(app: Any) -> Any:
    """granian's per-request entry, calling the app straight from the protocol object.

    Stands in for granian's `_future_watcher_wrapper(_callback_wrapper(...))`, which on every
    request also copies a lifespan `state` dict into the scope and sets `root_path` (neither is
    used here: the engine runs no ASGI lifespan, and a missing `root_path` means ""), and its
    access logger is off.
    """

    async def watcher(w: Any) -> None:
        proto = w.proto
        try:
            await app(w.scope, proto.receive, proto.send)
        except BaseException as exc:
            w.err(exc)
            return
        w.done()

    return watcher


class _SharedSocketServer(EmbeddedServer):
    """The embedded server, serving on a socket it is given instead of one it binds."""

    def __init__(self, target: Any, fd: int, **options: Any) -> None:
        super().__init__(target, **options)
        self._given_fd = fd

    def _init_shared_socket(self) -> None:
        self._ssp = None
        self._shd = SocketHolder(self._given_fd, False, self.backlog)
        self._sfd = self._given_fd  # type: ignore[assignment]  # granian annotates it None

    # granian's own ASGI (no lifespan) worker, except that its shutdown callback may fire
    # twice (granian 2.x resolves the same future again: "InvalidStateError" logged on every
    # stop); here the second call is a no-op.
    @staticmethod
    @AsyncWorker.wrap_target
    async def _spawn_asgi_worker(worker_id: int, shutdown_event: Any, callback: Any,
                                 sock: Any, loop: asyncio.AbstractEventLoop,
                                 runtime_threads: int, runtime_blocking_threads: int | None,
                                 blocking_threads: int, blocking_threads_idle_timeout: int,
                                 backpressure: int, task_impl: TaskImpl, http_mode: HTTPModes,
                                 http1_settings: HTTP1Settings | None,
                                 http2_settings: HTTP2Settings | None, websockets: bool,
                                 static_path: Any, log_access_fmt: str | None, ssl_ctx: Any,
                                 scope_opts: dict[str, Any]) -> None:
        wcallback = _direct_watcher(callback)
        stopped: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not stopped.done():
                stopped.set_result(None)

        shutdown_event.add_cb(lambda: loop.call_soon_threadsafe(resolve))
        worker = ASGIWorker(worker_id, sock, None, runtime_threads, runtime_blocking_threads,
                            blocking_threads, blocking_threads_idle_timeout, backpressure,
                            http_mode, http1_settings, http2_settings, websockets, static_path,
                            *ssl_ctx, (None, None))
        scheduler = _new_cbscheduler(loop, wcallback, impl_asyncio=task_impl == TaskImpl.asyncio)
        worker.serve_async(scheduler, loop, shutdown_event)
        await stopped


def _file_id(fd: int) -> tuple[int, int]:
    stat = os.fstat(fd)
    return stat.st_dev, stat.st_ino


class GranianHandle(ServingHandle):
    def __init__(self, server: _SharedSocketServer, app: DrainingApp, fd: int) -> None:
        super().__init__(app)
        self._app: DrainingApp = app
        self._server = server
        self._fd = fd
        self._listener = _file_id(fd)
        self._task: asyncio.Task[None] | None = None
        self.detached = False

    async def start(self) -> None:
        task = self._task = asyncio.create_task(self._server.serve(), name="granian-embedded")
        loop = asyncio.get_running_loop()
        await wait_until(lambda: task.done() or bool(self._server.wrks),
                         deadline=loop.time() + 5, interval=0)
        # The worker's first steps build the Rust worker and start it serving, or fail;
        # granian reports a failed worker only in its log, so look at the task here.
        for _ in range(3):
            await asyncio.sleep(0)
        failure = self._failure()
        if failure is not None:
            self._stopped = True
            self._server.stop()
            await asyncio.gather(task, return_exceptions=True)
            try:
                if _file_id(self._fd) == self._listener:
                    os.close(self._fd)  # granian never took it over
            except OSError:
                pass
            raise StartupError(f"granian failed to start: {failure}")

    @property
    def serving(self) -> bool:
        return not self._stopped and self._failure() is None

    def _failure(self) -> str | None:
        tasks = [self._task] + [worker._task for worker in self._server.wrks]
        for task in tasks:
            if task is not None and task.done():
                if task.cancelled():
                    return "its worker was cancelled"
                exc = task.exception()
                return str(exc) if exc is not None else "its worker exited"
        return None

    def _detach_listener(self) -> None:
        """Stop granian accepting from the engine's socket, leaving its connections alone.

        Granian has no "stop accepting" short of its shutdown, and its shutdown closes
        connections it has just accepted before their request is read (the client sees the
        connection drop). So the fd granian polls is pointed, with dup2, at an idle
        non-blocking listener of our own: its accept() then finds nothing (EAGAIN) while the
        engine's socket, still open here, keeps queueing connections for the new backend.
        Granian closes the stand-in when it stops.
        """
        if self._task is None or self._task.done():
            return  # the worker may have closed the fd already; the number may be reused
        try:
            if _file_id(self._fd) != self._listener:
                return
        except OSError:
            return
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as stand_in:
            stand_in.bind(("127.0.0.1", 0))
            stand_in.listen(1)
            stand_in.setblocking(False)
            os.dup2(stand_in.fileno(), self._fd, inheritable=False)
        self.detached = True

    async def _stop_accepting(self) -> None:
        self._detach_listener()

    def _open_connections(self) -> int:
        # granian does not expose its connections; the app tracks the recently busy ones
        return self._app.active_connections()

    async def _shut_down(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        self._server.stop()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), max(0.0, deadline - loop.time()))
            return
        except TimeoutError:
            pass
        # Out of time: granian waits for its in-flight requests, so end them (each answers
        # 500 or drops), then give the Rust side a moment to wind down before the last resort.
        self._app.cancel_in_flight()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), _KILL_GRACE)
        except TimeoutError:
            for worker in list(self._server.wrks):
                worker.kill()
            await asyncio.gather(self._task, return_exceptions=True)

    def __repr__(self) -> str:
        if self._stopped:
            return f"<GranianHandle stopped {self._app!r}>"
        state = "serving" if self.serving else "died"
        return f"<GranianHandle {state} fd={self._fd} {self._app!r}>"


class GranianAdapter(ServerAdapter):
    name: ClassVar[str] = "granian"
    package: ClassVar[str] = "granian"
    unsupported: ClassVar[frozenset[str]] = frozenset({"max_concurrent_connections",
                                                       "max_body_size"})

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
        options = _options(settings)
        try:
            with _workbench_logging():
                server = _SharedSocketServer(wrapped, fd, interface=Interfaces.ASGINL,
                                             **options)
        except BaseException:
            os.close(fd)  # granian never saw it
            raise
        handle = GranianHandle(server, wrapped, fd)
        await handle.start()
        return handle
