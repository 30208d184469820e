"""Serve a real gateway built from project-file text on a free 127.0.0.1 port.

Extension tests use this to go through real sockets and the real pipeline, without the
orchestrator (which has its own integration tests with real app processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from gateway.config.loader import validate_text
from gateway.events import EventBus
from gateway.metrics import MetricsRegistry
from gateway.pipeline import GatewayApp, Pipeline
from gateway.requestlog import RequestLog
from gateway.services import Services


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServedGateway:
    host: str
    port: int
    app: GatewayApp
    services: Services

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _transport() -> object:
    from gateway.proxy.transport import PooledTransport

    return PooledTransport()


@contextlib.asynccontextmanager
async def serve_config(text: str, folder: Path) -> AsyncIterator[ServedGateway]:
    """Write `text` as workbench.toml in `folder`, build its pipeline, serve it."""
    path = folder / "workbench.toml"
    path.write_text(text)
    project = validate_text(path, text, environ={})
    events = EventBus()
    services = Services(project=project, events=events, metrics=MetricsRegistry(),
                        request_log=RequestLog(events, project.logging.request_log_size),
                        transport=_transport(), backend=lambda: "uvicorn")
    pipeline = Pipeline(project.extensions, services)
    app = GatewayApp(pipeline, services)
    await pipeline.startup()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    # proxy_headers off: the gateway alone decides whom to trust with X-Forwarded-For.
    config = uvicorn.Config(app, lifespan="off", log_level="error", access_log=False,
                            proxy_headers=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
                await asyncio.sleep(0.01)
        yield ServedGateway("127.0.0.1", port, app, services)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        await pipeline.shutdown()
        await services.transport.aclose()
        sock.close()
