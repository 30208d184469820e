"""Health checks as tiny Python programs, for places that can only run a command.

A slim Python image has no curl or wget, but it has Python: Compose health checks, the
Kubernetes probes and init containers that need more than an HTTP status range, and
systemd's wait-until-healthy step all run ``python -c`` with one of these. They judge an
answer as the workbench does (`gateway.orchestrator.health`): with an explicit
``health_check_path`` healthy is a 200; without one ``/health`` is probed and any answer
below 500 counts; with health checks off, the port accepting a connection. Redirects are
not followed, and every probe uses a fresh connection.
"""

from __future__ import annotations

from gateway.deploy.commands import health_path
from gateway.deploy.plan import Unit


def _check(host: str, unit: Unit) -> str:
    """Statements that set ``ok`` (or raise OSError when nothing answers)."""
    timeout = f"{unit.health.timeout:g}"
    if not unit.health.enabled:
        return f"s.create_connection(({host!r}, {unit.port}), {timeout}).close(); ok = True"
    judge = "< 500" if unit.health.lenient else "== 200"
    return (f"c = h.HTTPConnection({host!r}, {unit.port}, timeout={timeout}); "
            f"c.request('GET', {health_path(unit)!r}, headers={{'Connection': 'close'}}); "
            f"ok = c.getresponse().status {judge}")


def probe_code(host: str, unit: Unit) -> str:
    """Exit 0 when the app answers as healthy now, 1 otherwise."""
    return f"import http.client as h, socket as s, sys; {_check(host, unit)}; sys.exit(not ok)"


def wait_code(host: str, unit: Unit, deadline: float) -> str:
    """Exit 0 once the app is healthy, 1 if it is not within `deadline` seconds."""
    return ("import http.client as h, socket as s, sys, time\n"
            f"end = time.monotonic() + {deadline:g}\n"
            "while time.monotonic() < end:\n"
            "    try:\n"
            f"        {_check(host, unit)}\n"
            "        if ok: sys.exit(0)\n"
            "    except OSError: pass\n"
            "    time.sleep(0.5)\n"
            f"sys.exit('{host}:{unit.port} is not healthy after {deadline:g}s')\n")
