"""Save SVG screenshots of the workbench's main views into screenshots/.

    python scripts/export_screenshots.py            # the real engine, real example apps
    python scripts/export_screenshots.py --fake     # the deterministic fake engine

By default a demo project (two copies of examples/api.py behind the gateway, on free ports)
runs on the real engine; the script sends it some traffic, then captures the dashboard, a
request trace, the logs view, the config editor refusing a broken edit, and the backend
picker, and stops every app before it exits. `--fake` uses the fixed data of the snapshot
tests instead, so the pictures do not change from run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from textual.pilot import Pilot  # noqa: E402
from textual.widgets import TextArea  # noqa: E402

from workbench.app import WorkbenchApp, create_app  # noqa: E402
from workbench.protocol import EngineAPI  # noqa: E402

SIZE = (120, 36)
TRAFFIC = ["/api/items", "/api/items/1", "/api/items/2", "/shop/items", "/api/items/9",
           "/shop/items/3", "/ping", "/api/echo", "/shop/nope", "/api/slow"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_project(folder: Path) -> Path:
    base = free_port()
    apps = "".join(f"""
[[extensions.config.apps]]
name = "{name}"
path = "/{name}"
app_path = "examples.api:app"
module_path = "{ROOT}"
""" for name in ("api", "shop"))
    text = f"""# Demo project for the screenshots: two apps behind one gateway.
[server]
host = "127.0.0.1"
port = {free_port()}
backend = "uvicorn"        # auto | granian | uvicorn | hypercorn
graceful_timeout = 3.0

[[extensions]]
type = "security"
[extensions.config]
blocked_ips = ["10.0.0.50"]

[[extensions]]
type = "process_orchestration"
[extensions.config]
port_range = [{base}, {base + 50}]
health_check_interval = 1.0
{apps}
[[extensions]]
type = "routing"
[extensions.config.regex_locations]
"=/ping" = {{ return = "200 pong", content_type = "text/plain" }}
"""
    path = folder / "workbench.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def until(pilot: Pilot[None], predicate: Callable[[], object], what: str,
                timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await pilot.pause(0.1)


async def traffic(app: WorkbenchApp, rounds: int) -> None:
    import httpx

    host, port = app.engine.address
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as client:
        for i in range(rounds):
            await client.get(TRAFFIC[i % len(TRAFFIC)])
            await asyncio.sleep(0.02)


async def capture(app: WorkbenchApp, out: Path, real: bool) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.phase != "starting", "the engine to start")
        if app.phase != "running":
            raise SystemExit(f"the engine did not start: {app.startup_error}")
        await until(pilot, lambda: app.metrics is not None and bool(app.metrics.apps) and all(
            a.state in ("healthy", "unhealthy") for a in app.metrics.apps.values()),
            "the apps to be up")
        if real:
            await traffic(app, 120)
            await pilot.pause(2.5)  # a few metrics ticks for the sparklines
        else:
            from tests.support.fake_engine import LATENCY, RATE

            app.history.seed("api", LATENCY, RATE)
            assert app.metrics is not None
            app.dashboard.show_metrics(app.metrics, app.engine.project)
        await pilot.pause(0.5)

        async def shot(name: str, *keys: str, before: Callable[[], Awaitable[None]] | None = None
                       ) -> None:
            if before is not None:
                await before()
            await pilot.press(*keys)
            await pilot.pause(0.5)
            app.save_screenshot(f"{name}.svg", str(out))
            print(f"saved {out / name}.svg")

        await shot("dashboard")
        log = app.dashboard.request_log

        async def pick_request() -> None:
            log.focus()
            # The newest listing: examples/api.py logs a line for it, so the trace shows one.
            row = max((i for i in range(log.row_count) if log.record_at(i).path == "/api/items"),
                      default=log.row_count - 1)
            log.move_cursor(row)
            await pilot.pause()

        await shot("request-trace", "enter", before=pick_request)
        await pilot.press("escape")
        app.dashboard.apps_table.focus()
        await shot("logs", "l")
        await pilot.press("escape")

        async def break_config() -> None:
            await pilot.press("e")
            area = app.screen.query_one(TextArea)
            area.text = re.sub(r"^port = \d+", 'port = "eight thousand"', area.text,
                               count=1, flags=re.MULTILINE)
            await pilot.pause()

        await shot("config-editor-error", "ctrl+s", before=break_config)
        await pilot.press("escape", "escape")
        await shot("backend-picker", "b")
        await pilot.press("escape")
        await shot("help", "question_mark")
        await pilot.press("escape")
        app.request_quit()
        await until(pilot, lambda: app.phase == "stopped", "every app to stop")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fake", action="store_true", help="deterministic fake engine")
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TZ", "UTC")
    time.tzset()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / ("shop" if args.fake else "demo")
        folder.mkdir()
        os.chdir(folder)  # config errors then name workbench.toml, not a temporary path
        engine: EngineAPI
        if args.fake:
            from tests.support.fake_engine import FakeEngine

            engine = FakeEngine(folder / "workbench.toml")
        else:
            from gateway.engine import Engine

            demo_project(folder)
            engine = Engine(Path("workbench.toml"))
        app = create_app(engine, poll_interval=3600 if args.fake else 0.5)

        async def run() -> None:
            try:
                await capture(app, out, real=not args.fake)
            finally:
                await engine.stop()

        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
