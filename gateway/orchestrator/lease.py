"""A proxied request's hold on an app process, and the routes that find the app.

Both run on every request for an orchestrated app, so this module is compiled with the
request path (`HOT_PATH` in setup.py); the supervisor and the process stay Python.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.orchestrator.process import AppProcess
    from gateway.orchestrator.supervisor import AppSupervisor

#: Where every app process listens.
HOST = "127.0.0.1"

#: The orchestrator's routes: (prefix, prefix + "/", app), longest prefix first, "/" last.
Routes = list[tuple[str, str, "AppSupervisor"]]


def resolve(routes: Routes, path: str) -> tuple[AppSupervisor, str] | None:
    """The app whose prefix is the longest prefix of `path` at a segment boundary, with the
    path to send upstream (the prefix removed when the app's `strip_path` says so)."""
    for prefix, under, sup in routes:
        if prefix == "/":
            return sup, path
        if path == prefix or path.startswith(under):
            if sup.config.strip_path:
                return sup, path[len(prefix):] or "/"
            return sup, path
    return None


class InFlight:
    """The requests in flight on one process; `idle` is set while there are none (what a
    process being drained waits for)."""

    __slots__ = ("count", "idle")

    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def acquire(self) -> None:
        self.count += 1
        if self.count == 1:  # no longer idle (once, not on every request)
            self.idle.clear()

    def release(self) -> None:
        self.count -= 1
        if self.count <= 0:
            self.idle.set()


class Lease:
    """One proxied request's hold on a process; the process is not drained while held."""

    __slots__ = ("process", "host", "port", "_flight", "_released")

    def __init__(self, process: AppProcess) -> None:
        self.process = process
        self.host = HOST
        self.port: int = process.port
        self._flight: InFlight = process.flight
        self._released = False
        self._flight.acquire()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._flight.release()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Lease {self.host}:{self.port} pid={self.process.pid}>"
