"""Helpers of the workbench tests: a real project of example apps. A Pilot test waits with
`harness.wait_until(..., pause=pilot.pause)`, which lets the app run between polls."""

from __future__ import annotations

from tests.support.harness import ROOT


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

