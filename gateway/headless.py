"""`pyserve-tui --no-ui`: the same engine, logging to stdout, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from gateway.config.schema import ProjectConfig
from gateway.engine import Engine
from gateway.errors import GatewayError
from gateway.events import (
    AppOutput,
    AppStateChanged,
    BackendChanged,
    ConfigRejected,
    ConfigReloaded,
    EngineMessage,
    Event,
)
from gateway.requestlog import RequestRecord


class LineWriter:
    """Formats engine events and finished requests as text or JSON lines."""

    def __init__(self, fmt: str, out: TextIO) -> None:
        self.json = fmt == "json"
        self.out = out

    def emit(self, kind: str, text: str, flush: bool = True, **fields: Any) -> None:
        if self.json:
            fields = {"time": round(time.time(), 3), "kind": kind, "message": text, **fields}
            self.out.write(json.dumps(fields, default=str) + "\n")
        else:
            stamp = time.strftime("%H:%M:%S")
            self.out.write(f"{stamp} {text}\n")
        if flush:
            self.out.flush()

    async def flush_periodically(self, interval: float = 0.2) -> None:
        """Request lines are written unflushed (one flush per line costs a syscall each)."""
        while True:
            await asyncio.sleep(interval)
            self.out.flush()

    def request(self, r: RequestRecord) -> None:
        app = r.app or "-"
        self.emit("request", f"{r.method} {r.path} {r.status} {r.latency_ms:.1f}ms "
                             f"app={app} rid={r.request_id}", flush=False,
                  method=r.method, path=r.path, status=r.status,
                  latency_ms=round(r.latency_ms, 3), app=r.app, request_id=r.request_id)

    def event(self, ev: Event) -> None:
        if isinstance(ev, AppOutput):
            rid = f" rid={ev.request_id}" if ev.request_id else ""
            self.emit("app_output", f"[{ev.app}] {ev.line}{rid}", app=ev.app,
                      stream=ev.stream, request_id=ev.request_id)
        elif isinstance(ev, AppStateChanged):
            reason = f" ({ev.reason})" if ev.reason else ""
            self.emit("app_state", f"app {ev.app}: {ev.old} -> {ev.new}{reason}"
                                   f" pid={ev.pid} port={ev.port}",
                      app=ev.app, old=ev.old, new=ev.new, pid=ev.pid, port=ev.port,
                      restarts=ev.restarts)
        elif isinstance(ev, BackendChanged):
            self.emit("backend", f"backend: {ev.old} -> {ev.new}", old=ev.old, new=ev.new)
        elif isinstance(ev, ConfigReloaded):
            self.emit("reload", f"config applied: added={list(ev.added)} removed="
                                f"{list(ev.removed)} changed={list(ev.changed)}",
                      added=ev.added, removed=ev.removed, changed=ev.changed)
        elif isinstance(ev, ConfigRejected):
            self.emit("config_rejected", f"config refused, running config kept: {ev.message}")
        elif isinstance(ev, EngineMessage):
            self.emit(ev.level, ev.text, app=ev.app)


async def run_headless(config_path: Path, overrides: Mapping[str, Any], log_format: str | None,
                       out: TextIO = sys.stdout, *, project: ProjectConfig | None = None) -> int:
    """Run until Ctrl-C or SIGTERM; `project` is the file as the command line validated it."""
    engine = Engine(config_path, overrides=overrides, project=project)
    fmt = log_format or "text"
    writer = LineWriter(fmt, out)
    engine.events.subscribe(writer.event)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)  # record the signal; the loop below acts
    try:
        try:
            await engine.start()
        except BaseException:
            await engine.stop()
            raise
        assert engine.project is not None
        if log_format is None and engine.project.logging.format == "json":
            writer.json = True
        level = engine.project.logging.level
        logging.getLogger("pyserve").setLevel(level.upper())
        if engine.gateway is not None and level in ("debug", "info"):
            engine.gateway.on_record.append(writer.request)  # the access log is info level
        flusher = loop.create_task(writer.flush_periodically())
        await stop.wait()
        flusher.cancel()
        writer.emit("info", "stopping: draining requests and stopping apps")
        await engine.stop()
        writer.emit("info", "stopped")
        return 0
    except GatewayError as exc:
        print(f"pyserve-tui: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
