"""Helpers of the workbench tests (a module of its own: several conftest.py files exist, so
`from conftest import ...` would depend on collection order)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import harness
from textual.pilot import Pilot

ROOT = Path(__file__).resolve().parents[2]





def real_project_text(gateway_port: int, port_range: tuple[int, int], *,
                      apps: tuple[str, ...] = ("api", "shop"), backend: str = "uvicorn") -> str:
    """Two (or more) copies of examples/api.py behind the gateway, tuned for quick tests."""
    lines = [
        "# workbench tests: real app processes",
        "[server]",
        'host = "127.0.0.1"',
        f"port = {gateway_port}",
        f'backend = "{backend}"',
        "graceful_timeout = 3.0",
        "",
        "[[extensions]]",
        'type = "process_orchestration"',
        "[extensions.config]",
        f"port_range = [{port_range[0]}, {port_range[1]}]",
        "health_check_interval = 0.5",
        "health_check_timeout = 2.0",
        "restart_delay = 0.2",
        "shutdown_timeout = 5.0",
        "",
    ]
    for name in apps:
        lines += [
            "[[extensions.config.apps]]",
            f'name = "{name}"',
            f'path = "/{name}"',
            'app_path = "examples.api:app"',
            f'module_path = "{ROOT}"',
            "",
        ]
    lines += [
        "[[extensions]]",
        'type = "routing"',
        "[extensions.config.regex_locations]",
        '"=/ping" = { return = "200 pong", content_type = "text/plain" }',
        "",
    ]
    return "\n".join(lines)


async def wait_until(pilot: Pilot[object], predicate: Callable[[], object], what: str,
                     timeout: float = 30.0) -> None:
    """Let the app run until `predicate()` is true; fail naming `what` after `timeout`
    (`harness.wait_until`, pausing the Pilot between polls)."""
    await harness.wait_until(predicate, timeout, what=what, interval=0.1, pause=pilot.pause)
