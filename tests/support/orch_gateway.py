"""Serve a real gateway whose process_orchestration extension drives real app processes.

Built the way the engine builds it: the Orchestrator is made first and handed to the
pipeline through `services.orchestrator`; the built-in front serves the gateway on a free
port.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from gateway.config.loader import validate_text
from gateway.events import EventBus
from gateway.metrics import MetricsRegistry
from gateway.orchestrator import Orchestrator
from gateway.pipeline import GatewayApp, Pipeline
from gateway.proxy.transport import PooledTransport
from gateway.requestlog import RequestLog
from gateway.services import Services
from tests.support.harness import serve_front
from tests.support.orchestration import Recorder


@dataclass
class ServedGateway:
    url: str
    orchestrator: Orchestrator
    services: Services
    app: GatewayApp


@contextlib.asynccontextmanager
async def serve_gateway(folder: Path, text: str, recorder: Recorder,
                        start: bool = True) -> AsyncIterator[ServedGateway]:
    path = folder / "workbench.toml"
    path.write_text(text)
    project = validate_text(path, text, environ={})
    events = EventBus()
    events.subscribe(recorder)
    assert project.orchestration is not None
    orch = Orchestrator(project.orchestration, project=project, events=events,
                        default_backend=str(project.server.backend))
    services = Services(project=project, events=events, metrics=MetricsRegistry(),
                        request_log=RequestLog(events, project.logging.request_log_size),
                        transport=PooledTransport(), orchestrator=orch,
                        backend=lambda: orch.default_backend)
    pipeline = Pipeline(project.extensions, services)
    app = GatewayApp(pipeline, services)
    sock = socket.socket()
    server = None
    try:
        if start:
            await orch.start()
        await pipeline.startup()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        sock.setblocking(False)
        server = await serve_front(app, sock)
        yield ServedGateway(f"http://127.0.0.1:{port}", orch, services, app)
    finally:
        for status in orch.snapshot():
            if status["pid"]:
                recorder.pids.add(status["pid"])
        if server is not None:
            await server.stop(5)
        await pipeline.shutdown()
        await orch.stop()
        await services.transport.aclose()
        sock.close()
