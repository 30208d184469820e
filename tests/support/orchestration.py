"""Helpers for orchestrator tests: app configs, projects, event recording, polling."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

from gateway.config.schema import (
    AppConfig,
    ExtensionConfig,
    LoggingConfig,
    OrchestrationOptions,
    ProjectConfig,
    ServerConfig,
)
from gateway.events import AppStateChanged
from tests.support.harness import ROOT, project_file

#: Fast timings so restarts and health failures happen within a test's patience.
FAST = {"health_check_interval": 0.2, "health_check_timeout": 1.0, "health_check_retries": 2,
        "restart_delay": 0.05, "max_restart_count": 3, "shutdown_timeout": 5.0,
        "hold_requests": 5.0}


def app(name: str, path: str | None = None, **kw: Any) -> AppConfig:
    """An AppConfig for one of the fixture apps in tests/apps."""
    kw.setdefault("module_path", str(ROOT))
    if "command" not in kw:
        kw.setdefault("app_path", "tests.apps.basic:app")
    return AppConfig(name=name, path=path or f"/{name}", **kw)


def port_range() -> tuple[int, int]:
    """A small range below the ephemeral ports, different per test (and per worker)."""
    base = random.Random(os.getpid() ^ random.getrandbits(32)).randrange(20000, 32000, 40)
    return base, base + 39


def make_project(folder: Path, apps: list[AppConfig], *, server: ServerConfig | None = None,
                 **options: Any) -> tuple[OrchestrationOptions, ProjectConfig]:
    values = {**FAST, "port_range": port_range(), **options}
    opts = OrchestrationOptions(apps=list(apps), **values)
    project = ProjectConfig(
        path=folder / "workbench.toml", server=server or ServerConfig(graceful_timeout=5.0),
        logging=LoggingConfig(),
        extensions=(ExtensionConfig("process_orchestration", opts, 0),))
    return opts, project


class Recorder:
    """Collects events and every pid the orchestrators reported."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.pids: set[int] = set()
        # When each event arrived, on the clock /proc/<pid>/stat counts process starts in
        # (CLOCK_BOOTTIME), so launch order can be checked without mixing time bases.
        self.boottimes: list[float] = []

    def __call__(self, event: Any) -> None:
        self.events.append(event)
        self.boottimes.append(time.clock_gettime(time.CLOCK_BOOTTIME))
        if isinstance(event, AppStateChanged) and event.pid:
            self.pids.add(event.pid)

    def states(self, app: str) -> list[str]:
        return [e.new for e in self.events if isinstance(e, AppStateChanged) and e.app == app]

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]




def project_toml(apps: list[dict[str, Any]], *, server: dict[str, Any] | None = None,
                 extensions: list[dict[str, Any]] | None = None, **options: Any) -> str:
    """Project-file text (`harness.project_file`) with one process_orchestration extension
    running `apps` (each a table; `module_path` defaults to the tests folder, `app_path` to
    tests.apps.basic), with fast timings."""
    return project_file(server={"graceful_timeout": 5.0, **(server or {})},
                        extensions=extensions or [], apps=apps,
                        orchestration={**FAST, "port_range": list(port_range()), **options})
