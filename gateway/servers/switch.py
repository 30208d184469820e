"""The gateway's serving: one listening socket, and whichever backend currently serves it.

A switch starts the new backend on the same socket before the old one stops accepting, then
drains the old one. At every instant at least one server accepts from the socket, and
connections that arrive in between wait in the kernel's backlog, so clients see neither a
refused connection nor a cut request.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from gateway.config.schema import ServerConfig
from gateway.errors import StartupError
from gateway.servers.base import ServingHandle
from gateway.servers.listener import create_listener, display_address
from gateway.servers.registry import Backend, BackendRegistry
from gateway.types import ASGIApp


async def _serve(name: Backend, app: ASGIApp, sock: socket.socket,
                 settings: ServerConfig) -> ServingHandle:
    """Start `name` on `sock`; whatever stops it (bad TLS files, a backend refusing an
    option) becomes one StartupError naming the backend."""
    adapter = BackendRegistry.get(name)
    try:
        return await adapter.serve_gateway(app, sock, settings)
    except StartupError:
        raise
    except Exception as exc:
        raise StartupError(f"{name} could not start serving: {exc}") from exc


logger = logging.getLogger(__name__)


class GatewayServer:
    """Owns the gateway's listening socket and the backend serving it."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._handle: ServingHandle | None = None
        self._app: ASGIApp | None = None
        self._settings: ServerConfig | None = None
        self._backend: Backend | None = None
        self._lock = asyncio.Lock()
        self.switches = 0

    @property
    def backend(self) -> Backend | None:
        """What serves now, resolved (`builtin`, `granian`..., never `auto`); None when
        stopped."""
        return self._backend

    @property
    def running(self) -> bool:
        return self._handle is not None

    @property
    def serving(self) -> bool:
        """Started and its backend still serving (False if the backend died on its own)."""
        return self._handle is not None and self._handle.serving

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port): the real port when the settings asked for port 0."""
        if self._sock is None:
            raise RuntimeError("the gateway server is not started")
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def settings(self) -> ServerConfig | None:
        return self._settings

    async def start(self, app: ASGIApp, backend: Backend | str, settings: ServerConfig) -> None:
        """Bind settings.host:settings.port and serve `app` on `backend` (the engine passes
        the one it resolved; a name, even `auto`, is resolved here for other callers).

        Raises StartupError (port in use, backend missing) with nothing left running.
        """
        async with self._lock:
            if self._handle is not None:
                raise RuntimeError(f"{self!r} is already started")
            name = BackendRegistry.resolve_gateway(backend, settings)
            BackendRegistry.get(name)  # a missing backend fails before the port is taken
            sock = create_listener(settings.host, settings.port, backlog=settings.backlog)
            try:
                handle = await _serve(name, app, sock, settings)
            except BaseException:
                sock.close()
                raise
            self._sock, self._handle, self._app = sock, handle, app
            self._settings, self._backend = settings, name

    async def switch(self, backend: Backend | str,
                     settings: ServerConfig | None = None) -> Backend:
        """Re-serve on `backend` (and new settings, if given) without dropping a client.

        The new backend starts on the same socket first; only then is the old one drained,
        for up to `graceful_timeout`. If the new one cannot start, the old one keeps serving
        and the error is raised. Returns the resolved backend name. Host and port cannot
        change here: the socket is the one thing that stays.
        """
        async with self._lock:
            if self._handle is None or self._sock is None or self._app is None:
                raise RuntimeError(f"{self!r} is not started")
            current = self._settings or ServerConfig()
            new_settings = settings or current
            if (new_settings.host, new_settings.port) != (current.host, current.port):
                old_at = display_address(current.host, current.port)
                new_at = display_address(new_settings.host, new_settings.port)
                raise StartupError(
                    f"cannot move the gateway from {old_at} to {new_at} without a restart")
            name = BackendRegistry.resolve_gateway(backend, new_settings)
            if name == self._backend and settings is None:
                return name
            handle = await _serve(name, self._app, self._sock, new_settings)
            old, self._handle = self._handle, handle
            self._settings, self._backend = new_settings, name
            self.switches += 1
            try:
                await old.stop(current.graceful_timeout)
            except Exception:
                # The new backend already serves; a messy exit of the old one is not the
                # switch failing.
                logger.exception("stopping the previous backend failed: %r", old)
            return name

    async def stop(self, timeout: float | None = None) -> None:
        """Drain in-flight requests (up to `timeout`, default graceful_timeout) and close."""
        async with self._lock:
            handle, self._handle = self._handle, None
            try:
                if handle is not None:
                    if timeout is None:
                        timeout = (self._settings or ServerConfig()).graceful_timeout
                    await handle.stop(timeout)
            finally:
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None
                self._backend = None

    def __repr__(self) -> str:
        if self._sock is None:
            return "<GatewayServer stopped>"
        host, port = self.address
        return (f"<GatewayServer {self._backend} on {display_address(host, port)} "
                f"switches={self.switches} {self._handle!r}>")
