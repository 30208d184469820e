"""The adapter every serving backend implements.

A backend does two jobs: serve the gateway's ASGI app inside the workbench's own event loop
(`serve_gateway`), and run one app process's ASGI app with its workers (`run_app`, called in
the child process, blocking until SIGTERM).
"""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from typing import ClassVar

from gateway.config.schema import ServerConfig
from gateway.types import ASGIApp


class ServingHandle(ABC):
    """A running embedded server. `stop` drains in-flight requests up to `timeout`."""

    @abstractmethod
    async def stop(self, timeout: float) -> None: ...


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

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
