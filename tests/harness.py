"""Serve a real gateway built from project-file text on a free 127.0.0.1 port.

Extension tests use this to go through real sockets and the real pipeline, without the
orchestrator (which has its own integration tests with real app processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config.loader import validate_text
from gateway.config.schema import ServerConfig
from gateway.events import EventBus
from gateway.metrics import MetricsRegistry
from gateway.orchestrator.ports import port_is_free
from gateway.pipeline import GatewayApp, Pipeline
from gateway.requestlog import RequestLog
from gateway.servers.base import ServingHandle
from gateway.servers.registry import BackendRegistry
from gateway.services import Services


async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, *,
                     what: str = "condition", interval: float = 0.02) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy, and return that;
    AssertionError naming `what` after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_range(size: int = 40) -> tuple[int, int]:
    """`size` consecutive ports free now in 20000-30000 (below Linux's ephemeral range, so
    client sockets do not take them meanwhile), at a random offset so concurrent test runs
    rarely pick the same block. Best effort: nothing reserves them."""
    rng = random.SystemRandom()
    for _ in range(200):
        base = rng.randrange(20000, 30000 - size)
        if all(port_is_free(p) for p in range(base, base + size)):
            return base, base + size - 1
    raise RuntimeError("no free port range in 20000-30000")


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
                        transport=_transport(), backend=lambda: "builtin")
    pipeline = Pipeline(project.extensions, services)
    app = GatewayApp(pipeline, services)
    await pipeline.startup()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    handle = await serve_front(app, sock)
    try:
        yield ServedGateway("127.0.0.1", port, app, services)
    finally:
        await handle.stop(5)
        await pipeline.shutdown()
        await services.transport.aclose()
        sock.close()


async def serve_front(app: Any, sock: socket.socket, **settings: Any) -> ServingHandle:
    """Serve `app` on the listening `sock` with the gateway's built-in front (its default
    server), in the running loop; `settings` are `[server]` keys."""
    config = ServerConfig(host="127.0.0.1", port=0, graceful_timeout=5, **settings)
    return await BackendRegistry.get("builtin").serve_gateway(app, sock, config)
