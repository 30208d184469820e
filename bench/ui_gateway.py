"""The gateway with the workbench TUI open, for benchmarks: a real Engine inside WorkbenchApp.

    python bench/ui_gateway.py PROJECT_FILE [LAG_FILE] [--no-ui]

The app is built by `create_app` around a real `Engine` and run by Textual in headless mode
(no terminal: everything but writing escape codes to a terminal happens: messages, the request
log table, metrics polls, layout and rendering of the screen), on the event loop the project
file asks for, the same loop the engine serves on, as `pyserve-tui` runs it. It serves until
SIGTERM or SIGINT, then stops the engine cleanly (drain, stop every app) and exits 0.

A loop-lag probe runs on the same loop all the time: a callback is due every 10 ms and its
lateness is recorded (with the wall-clock time) in a ring buffer. On SIGUSR1 the samples are
written as JSON to LAG_FILE (written to a temporary name, then renamed), with a few facts
about the UI (rows in the request log, metrics polls) that show it was doing its work.

`--no-ui` runs the same engine and probe without Textual: the lag of the engine alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # Last, not first: a gateway on PYTHONPATH (the compiled build, bench/compiled.py) wins.
    sys.path.append(str(ROOT))

from gateway.config.loader import load_config  # noqa: E402
from gateway.engine import Engine  # noqa: E402
from gateway.errors import GatewayError  # noqa: E402
from gateway.servers.loops import loop_factory  # noqa: E402

INTERVAL = 0.010
KEEP = 100 * 60 * 15  # 15 minutes of samples at 100 a second


class LagProbe:
    """A callback due every `interval` s; records (wall time, lateness in ms)."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self.samples: deque[tuple[float, float]] = deque(maxlen=KEEP)
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self.interval
        self._handle = loop.call_at(self._due, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        self.samples.append((time.time(), (now - self._due) * 1000.0))
        self._due += self.interval
        if self._due <= now:  # a stall: skip the missed slots, its lateness is recorded
            self._due = now + self.interval
        self._handle = loop.call_at(self._due, self._tick, loop)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


def dump(probe: LagProbe, path: Path, app: Any) -> None:
    facts: dict[str, Any] = {"ui": app is not None}
    if app is not None:
        facts["phase"] = app.phase
        dashboard = app._dashboard()
        if dashboard is not None:
            facts["request_log_rows"] = dashboard.request_log.row_count
        # The last metrics poll the UI handled: it keeps up if this follows the load.
        facts["ui_seen_requests"] = app.metrics.gateway.requests if app.metrics else None
    payload = {"interval_ms": probe.interval * 1000, "pid": os.getpid(), **facts,
               "samples": list(probe.samples)}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)


async def serve(config: Path, lag_file: Path | None, ui: bool) -> int:
    loop = asyncio.get_running_loop()
    probe = LagProbe()
    probe.start()
    engine = Engine(config)
    app = None
    stop = asyncio.Event()
    if ui:
        from workbench.app import create_app

        app = create_app(engine)
    if lag_file is not None:
        loop.add_signal_handler(signal.SIGUSR1, dump, probe, lag_file, app)
    try:
        if app is not None:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, app.request_quit)  # the app stops the engine
            try:
                await app.run_async(headless=True, size=(160, 48))
            finally:
                await engine.stop()  # a no-op after a clean quit; covers a crash
            if app.startup_error:
                print(f"ui_gateway: {app.startup_error}", file=sys.stderr)
            return app.return_code or 0
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await engine.start()
            await stop.wait()
        finally:
            await engine.stop()
        return 0
    except GatewayError as exc:
        print(f"ui_gateway: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        probe.stop()


def main(argv: list[str]) -> int:
    flags = [a for a in argv if a.startswith("--")]
    args = [a for a in argv if not a.startswith("--")]
    if not args or set(flags) - {"--no-ui"}:
        print(__doc__, file=sys.stderr)
        return 2
    config = Path(args[0])
    lag_file = Path(args[1]).resolve() if len(args) > 1 else None
    try:
        factory = loop_factory(load_config(config).server.event_loop.value)
    except GatewayError as exc:
        print(f"ui_gateway: {exc}", file=sys.stderr)
        return exc.exit_code
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(serve(config, lag_file, "--no-ui" not in flags))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
