"""``export compose``: a service per app, nginx in front, one image for the apps."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from gateway.config.schema import ProjectConfig
from gateway.deploy import yamlout
from gateway.deploy.commands import python_path, unit_argv, unit_env
from gateway.deploy.image import dockerfile, in_image
from gateway.deploy.nginx import NginxLayout, render_nginx
from gateway.deploy.plan import DeployPlan, Unit, build_plan
from gateway.deploy.probes import probe_code
from gateway.deploy.report import Report

NGINX_IMAGE = "nginx:1.27-alpine"


def interpolation_safe(value: str) -> str:
    """Compose interpolates ``$VAR`` in the file; a literal dollar is ``$$``."""
    return value.replace("$", "$$")


def duration(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def static_roots(project: ProjectConfig) -> dict[str, str]:
    """Each distinct static root -> the folder nginx serves it from in its container."""
    routing = project.extension("routing")
    roots: dict[str, str] = {}
    for action in (routing.options.regex_locations.values() if routing else ()):
        if action.root is not None:
            key = str(project.resolve(action.root).resolve())
            roots.setdefault(key, f"/srv/static/{len(roots)}")
    return roots


def _service(unit: Unit, plan: DeployPlan, image: str, build: dict[str, str],
             report: Report) -> dict[str, Any]:
    project = plan.project
    argv = unit_argv(unit, host="0.0.0.0", python="python",
                     event_loop=str(project.server.event_loop), report=report)
    env = unit_env(unit, python_path(unit, lambda rel: in_image(plan, rel)))
    h = unit.health
    service: dict[str, Any] = {"image": image}
    if build:
        service["build"] = build
    service.update({
        "command": [interpolation_safe(a) for a in argv],
        "working_dir": "/app",
        "environment": {k: interpolation_safe(v) for k, v in env.items()},
        "expose": [str(unit.port)],
        "healthcheck": {
            "test": ["CMD", "python", "-c", probe_code("127.0.0.1", unit)],
            "interval": duration(h.interval),
            "timeout": duration(h.timeout),
            "retries": h.retries,
            "start_period": "60s",
            "start_interval": "1s",
        },
        "restart": f"on-failure:{unit.max_restart_count}",
        "stop_grace_period": duration(unit.shutdown_timeout),
    })
    if unit.depends_on:
        service["depends_on"] = {d: {"condition": "service_healthy", "restart": True}
                                 for d in _service_names(plan, unit.depends_on)}
    report.add("restart_delay, health-based restarts",
               "Compose restarts on exit up to max_restart_count times (on-failure:N) with "
               "Docker's own backoff (from 100 ms, doubling), not restart_delay; a container "
               "that turns unhealthy is marked so but not restarted", subject=unit.name)
    return service


def _service_names(plan: DeployPlan, names: list[str]) -> list[str]:
    return [plan.unit(n).slug for n in names]


def export_compose(project: ProjectConfig, out: Path) -> tuple[dict[str, str], Report]:
    report = Report("compose")
    plan = build_plan(project, report, local=False)
    root = project.root.resolve()
    out_abs = out.resolve()
    files: dict[str, str] = {"Dockerfile": dockerfile(plan, report)}
    image = f"pyserve-{plan.name}-app:latest"
    context = os.path.relpath(root, out_abs)
    build = {"context": context,
             "dockerfile": os.path.relpath(out_abs / "Dockerfile", root)}
    services: dict[str, Any] = {}
    for unit in plan.units:
        # Every app names the same build: Compose builds it once and never tries to pull
        # an image that only exists locally.
        services[unit.slug] = _service(unit, plan, image, build, report)
    roots = static_roots(project)
    layout = NginxLayout(
        listen=str(project.server.port),
        upstream=lambda u: f"{u.slug}:{u.port}",
        static_root=lambda rel: roots[str(project.resolve(rel).resolve())],
        cache_dir="/var/cache/nginx/pyserve",
        auth_dir="/etc/nginx/pyserve")
    conf = render_nginx(project, plan, layout, report)
    files["nginx.conf"] = conf.text
    files.update(conf.files)
    volumes = ["./nginx.conf:/etc/nginx/nginx.conf:ro"]
    volumes += [f"./{name}:/etc/nginx/pyserve/{name}:ro" for name in sorted(conf.files)]
    volumes += [f"{os.path.relpath(src, out_abs)}:{dst}:ro" for src, dst in roots.items()]
    host = project.server.host
    published = f"{project.server.port}:{project.server.port}"
    nginx: dict[str, Any] = {
        "image": NGINX_IMAGE,
        "ports": [f"{host}:{published}" if host not in ("0.0.0.0", "") else published],
        "volumes": volumes,
        "healthcheck": {
            "test": ["CMD", "wget", "-q", "-O", "/dev/null",
                     f"http://127.0.0.1:{project.server.port}/health"],
            "interval": "10s", "timeout": "5s", "retries": 3,
        },
        "restart": "unless-stopped",
    }
    if plan.units:
        nginx["depends_on"] = {u.slug: {"condition": "service_healthy"} for u in plan.units}
    services["nginx" if "nginx" not in services else "pyserve-nginx"] = nginx
    doc = {"name": plan.name, "services": services}
    header = (f"# Compose file for {project.path.name}, generated by `pyserve-tui export "
              "compose`.\n# Start it with `docker compose up --build`; REPORT.md lists what "
              "differs from the workbench.\n")
    files["compose.yaml"] = header + yamlout.dump(doc)
    report.note(f"nginx ({NGINX_IMAGE}) publishes {published} on {host or 'every address'}, "
                "as the workbench's [server] does")
    if any(math.ceil(u.health.interval) != u.health.interval for u in plan.units):
        report.note("health intervals keep their fractions (Compose takes durations in ms)")
    return files, report
