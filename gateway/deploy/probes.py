"""Health checks as tiny Python programs, for places that can only run a command.

A slim Python image has no curl or wget, but it has Python: Compose health checks, the
Kubernetes init containers that wait for a dependency and systemd's wait-until-healthy step
all run ``python -c`` with one of these. They mean what the workbench's probe means: healthy
is an HTTP 200 on the health path (or, with health checks off, an accepted connection).
"""

from __future__ import annotations

from gateway.deploy.commands import health_path
from gateway.deploy.plan import Unit


def probe_code(host: str, unit: Unit) -> str:
    """Exit 0 when the app answers as healthy now, 1 otherwise."""
    health, port = unit.health, unit.port
    if not health.enabled:
        return (f"import socket;socket.create_connection(({host!r}, {port}), "
                f"{health.timeout:g}).close()")
    url = f"http://{host}:{port}{health_path(unit)}"
    return (f"import sys,urllib.request as u;"
            f"sys.exit(u.urlopen({url!r}, timeout={health.timeout:g}).status != 200)")


def wait_code(host: str, unit: Unit, deadline: float) -> str:
    """Exit 0 once the app is healthy, 1 if it is not within `deadline` seconds."""
    health, port = unit.health, unit.port
    if health.enabled:
        check = (f"ok = u.urlopen({f'http://{host}:{port}{health_path(unit)}'!r}, "
                 f"timeout={health.timeout:g}).status == 200")
    else:
        check = (f"s.create_connection(({host!r}, {port}), {health.timeout:g}).close()"
                 "; ok = True")
    return ("import socket as s, sys, time, urllib.request as u\n"
            f"end = time.monotonic() + {deadline:g}\n"
            "while time.monotonic() < end:\n"
            "    try:\n"
            f"        {check}\n"
            "        if ok: sys.exit(0)\n"
            "    except OSError: pass\n"
            "    time.sleep(0.5)\n"
            f"sys.exit('{host}:{port} is not healthy after {deadline:g}s')\n")
