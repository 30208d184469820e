"""One description of what runs where, shared by every export target.

`build_plan` reads the validated project (the same `ProjectConfig` the workbench runs) and
decides, once, each process's port, backend and command line, so Compose, Kubernetes and
systemd cannot disagree with each other or with the workbench:

* a fixed ``port`` is kept; the other apps get ports from ``port_range`` in app order,
  skipping the fixed ones (the workbench hands out the same ports when they are free);
* ``backend = "auto"`` becomes the first backend the workbench would pick;
* an app is started by its backend's own command line (`gateway.deploy.commands`), a
  ``command`` app by its argv with ``$PORT`` filled in, as the workbench's runner does;
* in-process ``asgi`` mounts become processes of their own (reported).
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from gateway.config.schema import AppConfig, MountConfig, OrchestrationOptions, ProjectConfig
from gateway.deploy.report import Report
from gateway.orchestrator.health import DEFAULT_HEALTH_PATH
from gateway.servers.registry import AUTO_ORDER, BackendRegistry


@dataclass(frozen=True)
class Health:
    enabled: bool
    path: str
    interval: float
    timeout: float
    retries: int
    #: No health_check_path was given: any answer below 500 counts (see probes).
    lenient: bool = False


@dataclass(frozen=True)
class Unit:
    """One process to run: an orchestrated app or a mount turned into a process."""

    name: str
    path: str
    strip_path: bool
    port: int
    backend: str
    workers: int
    app_path: str | None
    app_type: str
    factory: bool
    factory_args: dict[str, Any]
    module_path: str | None
    command: list[str] | None
    env: dict[str, str]
    depends_on: list[str]
    health: Health
    restart_delay: float
    max_restart_count: int
    shutdown_timeout: float
    proxy_timeout: float
    mount: bool = False

    @property
    def prefix(self) -> str:
        """The path the app is served under, without a trailing slash ("" for "/")."""
        return self.path.rstrip("/")

    @property
    def slug(self) -> str:
        """A DNS-label-safe form of the name (Compose services, Kubernetes objects)."""
        return slug(self.name)


@dataclass
class DeployPlan:
    project: ProjectConfig
    units: list[Unit] = field(default_factory=list)
    name: str = "app"

    def unit(self, name: str) -> Unit:
        return next(u for u in self.units if u.name == name)


def slug(text: str) -> str:
    out = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return out[:50] or "app"


def backend_for(wanted: str, *, local: bool) -> str:
    """`auto` -> what the workbench would pick here (local) or its first choice (images);
    `builtin` (the gateway's own front) means the same for apps, which run on an ASGI
    server."""
    if wanted not in ("auto", "builtin"):
        return wanted
    if local:
        return BackendRegistry.resolve("auto")
    return AUTO_ORDER[0]


def build_plan(project: ProjectConfig, report: Report, *, local: bool) -> DeployPlan:
    """The processes of `project`; `local` when they run on this machine (systemd)."""
    plan = DeployPlan(project, name=slug(project.root.resolve().name))
    orch = project.orchestration or OrchestrationOptions()
    default_backend = str(project.server.backend)
    taken = {a.port for a in orch.apps if a.port is not None}
    lo, hi = orch.port_range
    cursor = lo

    def next_port() -> int:
        nonlocal cursor
        while cursor in taken:
            cursor += 1
        if cursor > hi:
            raise ValueError(f"port_range [{lo}, {hi}] has too few ports for every app")
        taken.add(cursor)
        return cursor

    chosen: list[str] = []
    for app in orch.apps:
        port = app.port if app.port is not None else next_port()
        if app.port is None:
            chosen.append(f"{app.name}={port}")
        plan.units.append(_app_unit(app, orch, port, backend_for(
            str(app.backend or default_backend), local=local), project, report))
    asgi = project.extension("asgi")
    for i, mount in enumerate(asgi.options.mounts if asgi else []):
        unit = _mount_unit(mount, i, orch, next_port(),
                           backend_for(default_backend, local=local), project, report)
        chosen.append(f"{unit.name}={unit.port}")
        report.add(f"asgi mount {mount.path}",
                   f"runs inside the gateway in the workbench; here it is its own process "
                   f"'{unit.name}' on port {unit.port}, health-checked by a TCP connect")
        plan.units.append(unit)
    if chosen:
        report.note(f"ports from port_range [{lo}, {hi}] in app order: {', '.join(chosen)} "
                    "(give an app `port = N` to fix it)")
    return plan


#: Asks the app's own object which interface it speaks, as the workbench's runner does.
_DETECT = """
import importlib, sys
sys.path[:0] = {paths!r}
from gateway.orchestrator.apploader import detect_interface
obj = importlib.import_module({module!r})
for part in {attr!r}.split("."):
    obj = getattr(obj, part)
if {factory!r}:
    obj = obj(**{args!r})
print(detect_interface(obj) or "")
"""


def detect_app_type(project: ProjectConfig, app_path: str, *, module_path: str | None,
                    factory: bool, factory_args: dict[str, Any],
                    report: Report, name: str) -> str:
    """asgi or wsgi for an app without `app_type`, by loading it in a child interpreter (an
    import has side effects and may fail; the export must not). Reported when it cannot
    be told, and then asgi."""
    root = str(project.root.resolve())
    paths = ([str(project.resolve(module_path).resolve())] if module_path else []) + [root]
    module, _, attr = app_path.partition(":")
    code = _DETECT.format(paths=paths, module=module, attr=attr, factory=factory,
                          args=factory_args)
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
        found = done.stdout.strip().splitlines()[-1] if done.returncode == 0 else ""
        why = (done.stderr.strip().splitlines() or ["no answer"])[-1]
    except (OSError, subprocess.TimeoutExpired, IndexError) as exc:
        found, why = "", str(exc)
    if found == "wsgi":
        return "wsgi"
    if found == "asgi3":
        return "asgi"
    if found == "asgi2":
        report.add("ASGI 2 app", "served as ASGI 3 by the server's command line (the "
                   "workbench adapts it); set app_type or wrap it", subject=name)
        return "asgi"
    report.add("app_type", f"could not be told from the app here ({why[:120]}); asgi is "
               "assumed: set app_type in the project file", subject=name)
    return "asgi"


def _app_unit(app: AppConfig, orch: OrchestrationOptions, port: int, backend: str,
              project: ProjectConfig, report: Report) -> Unit:
    def eff(key: str) -> Any:
        return orch.effective(app, key)

    app_type: str | None = app.app_type
    if app_type is None and app.app_path and not app.command:
        app_type = detect_app_type(project, app.app_path, module_path=app.module_path,
                                   factory=app.factory, factory_args=dict(app.factory_args),
                                   report=report, name=app.name)

    return Unit(
        name=app.name, path=app.path, strip_path=app.strip_path, port=port, backend=backend,
        workers=app.workers, app_path=app.app_path, app_type=app_type or "asgi",
        factory=app.factory, factory_args=dict(app.factory_args),
        module_path=app.module_path,
        command=[str(c) for c in app.command] if app.command else None,
        env=dict(app.env), depends_on=list(app.depends_on),
        health=Health(bool(eff("health_check_enabled")),
                      app.health_check_path or DEFAULT_HEALTH_PATH,
                      float(eff("health_check_interval")), float(eff("health_check_timeout")),
                      int(eff("health_check_retries")), lenient=app.health_check_path is None),
        restart_delay=float(eff("restart_delay")),
        max_restart_count=int(eff("max_restart_count")),
        shutdown_timeout=float(eff("shutdown_timeout")),
        proxy_timeout=float(eff("proxy_timeout")))


def _mount_unit(mount: MountConfig, index: int, orch: OrchestrationOptions, port: int,
                backend: str, project: ProjectConfig, report: Report) -> Unit:
    name = mount.name or (slug(mount.path) if mount.path != "/" else f"mount{index}")
    app_type: str = mount.app_type or detect_app_type(
        project, mount.app_path, module_path=mount.module_path, factory=mount.factory,
        factory_args=dict(mount.factory_args), report=report, name=name)
    env = {"DJANGO_SETTINGS_MODULE": mount.django_settings} if mount.django_settings else {}
    return Unit(
        name=name, path=mount.path, strip_path=mount.strip_path, port=port, backend=backend,
        workers=1, app_path=mount.app_path, app_type=app_type, factory=mount.factory,
        factory_args=dict(mount.factory_args), module_path=mount.module_path, command=None,
        env=env, depends_on=[],
        health=Health(False, "/", orch.health_check_interval, orch.health_check_timeout,
                      orch.health_check_retries),
        restart_delay=orch.restart_delay, max_restart_count=orch.max_restart_count,
        shutdown_timeout=orch.shutdown_timeout, proxy_timeout=orch.proxy_timeout, mount=True)
