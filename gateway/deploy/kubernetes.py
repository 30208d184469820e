"""``export kubernetes``: a Deployment and a Service per app, nginx as a Deployment.

Kubernetes scales by pods, so an app's ``workers`` become replicas of a one-worker pod.
The health keys become all three probes: a startup probe (so a slow start is not killed by
the liveness probe), a readiness probe (traffic only to healthy pods) and a liveness probe
that restarts after ``health_check_retries`` failures, as the workbench does. ``depends_on``
becomes an init container that waits until the dependency's Service answers its health
check: Kubernetes itself has no ordering.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from gateway.config.schema import ProjectConfig
from gateway.deploy import yamlout
from gateway.deploy.commands import health_path, python_path, unit_argv, unit_env
from gateway.deploy.image import NGINX_IMAGE, container_layout, dockerfile, image_name, in_image
from gateway.deploy.nginx import render_nginx
from gateway.deploy.plan import DeployPlan, Unit, build_plan
from gateway.deploy.probes import probe_code, wait_code
from gateway.deploy.report import Report

#: The Kubernetes version the manifests are written (and validated) for.
KUBERNETES_VERSION = "1.30.0"
DEPENDENCY_DEADLINE = 300.0


def no_expansion(value: str) -> str:
    """Kubernetes expands ``$(VAR)`` in command, args and env values; ``$$`` is a dollar."""
    return value.replace("$(", "$$(")


def _labels(plan: DeployPlan, name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": plan.name,
            "app.kubernetes.io/managed-by": "pyserve-tui"}


def _selector(plan: DeployPlan, name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": plan.name}


def _seconds(value: float) -> int:
    return max(1, math.ceil(value))


def _probe(unit: Unit, **timing: int) -> dict[str, Any]:
    h = unit.health
    action: dict[str, Any]
    if not h.enabled:
        action = {"tcpSocket": {"port": "http"}}
    elif h.lenient:
        # httpGet counts only 200-399; without a health path any answer below 500 does.
        action = {"exec": {"command": ["python", "-c", probe_code("127.0.0.1", unit)]}}
    else:
        action = {"httpGet": {"path": health_path(unit), "port": "http"}}
    return {**action, "timeoutSeconds": _seconds(h.timeout), **timing}


def _app_objects(unit: Unit, plan: DeployPlan, image: str, report: Report) -> list[dict]:
    project = plan.project
    single = Unit(**{**unit.__dict__, "workers": 1})
    argv = unit_argv(single, host="0.0.0.0", python="python",
                     event_loop=str(project.server.event_loop), report=report)
    env = unit_env(unit, python_path(unit, lambda rel: in_image(plan, rel)))
    h = unit.health
    period = _seconds(h.interval)
    if period != h.interval:
        report.add("health_check_interval", "Kubernetes probes run in whole seconds: the "
                   "interval is rounded up", subject=unit.name)
    container: dict[str, Any] = {
        "name": unit.slug,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": [no_expansion(a) for a in argv],
        "workingDir": "/app",
        "env": [{"name": k, "value": no_expansion(v)} for k, v in env.items()],
        "ports": [{"name": "http", "containerPort": unit.port, "protocol": "TCP"}],
        "startupProbe": _probe(unit, periodSeconds=1, failureThreshold=60),
        "readinessProbe": _probe(unit, periodSeconds=period, failureThreshold=1,
                                 successThreshold=1),
        "livenessProbe": _probe(unit, periodSeconds=period, failureThreshold=h.retries),
    }
    pod: dict[str, Any] = {"terminationGracePeriodSeconds": _seconds(unit.shutdown_timeout)}
    if unit.depends_on:
        pod["initContainers"] = [
            {"name": f"wait-for-{dep.slug}", "image": image,
             "imagePullPolicy": "IfNotPresent",
             "command": ["python", "-c", no_expansion(
                 wait_code(dep.slug, dep, DEPENDENCY_DEADLINE))]}
            for dep in (plan.unit(n) for n in unit.depends_on)]
        report.add("depends_on", "Kubernetes has no start order: an init container waits (up to "
                   f"{DEPENDENCY_DEADLINE:g}s, then the pod restarts and waits again) until "
                   "each dependency's Service answers its health check; a dependency that "
                   "fails later does not stop or restart this app", subject=unit.name)
    pod["containers"] = [container]
    report.add("restart_delay, max_restart_count", "Kubernetes restarts a failed container "
               "forever with its own backoff (10 s doubling to 5 min); neither key has an "
               "equivalent", subject=unit.name)
    if unit.workers > 1:
        report.note(f"app {unit.name}: workers={unit.workers} become {unit.workers} replicas "
                    "of a one-worker pod")
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": unit.slug, "labels": _labels(plan, unit.slug)},
        "spec": {
            "replicas": unit.workers,
            "selector": {"matchLabels": _selector(plan, unit.slug)},
            "template": {"metadata": {"labels": _labels(plan, unit.slug)}, "spec": pod},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": unit.slug, "labels": _labels(plan, unit.slug)},
        "spec": {"selector": _selector(plan, unit.slug),
                 "ports": [{"name": "http", "port": unit.port, "targetPort": "http",
                            "protocol": "TCP"}]},
    }
    return [deployment, service]


def _nginx_objects(plan: DeployPlan, conf_files: dict[str, str], roots: dict[str, str],
                   image: str) -> list[dict]:
    project = plan.project
    name = "nginx" if all(u.slug != "nginx" for u in plan.units) else "pyserve-nginx"
    port = project.server.port
    config_map = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": f"{name}-conf", "labels": _labels(plan, name)},
        "data": {"nginx.conf": conf_files["nginx.conf"]},
    }
    objects: list[dict] = [config_map]
    mounts = [{"name": "conf", "mountPath": "/etc/nginx/nginx.conf",
               "subPath": "nginx.conf", "readOnly": True},
              {"name": "cache", "mountPath": "/var/cache/nginx"}]
    volumes: list[dict] = [{"name": "conf", "configMap": {"name": f"{name}-conf"}},
                           {"name": "cache", "emptyDir": {}}]
    extra = sorted(k for k in conf_files if k != "nginx.conf")
    if extra:
        objects.append({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": f"{name}-auth", "labels": _labels(plan, name)},
            "type": "Opaque",
            "stringData": {k: conf_files[k] for k in extra},
        })
        volumes.append({"name": "auth", "secret": {"secretName": f"{name}-auth"}})
        mounts.append({"name": "auth", "mountPath": "/etc/nginx/pyserve", "readOnly": True})
    init: list[dict] = []
    if roots:
        # Static files travel in the app image; an init container copies them for nginx.
        volumes.append({"name": "static", "emptyDir": {}})
        mounts.append({"name": "static", "mountPath": "/srv/static", "readOnly": True})
        script = " && ".join(
            f"mkdir -p {dst} && cp -R {in_image(plan, src)}/. {dst}/"
            for src, dst in roots.items())
        init.append({"name": "static-files", "image": image, "imagePullPolicy": "IfNotPresent",
                     "command": ["sh", "-c", script],
                     "volumeMounts": [{"name": "static", "mountPath": "/srv/static"}]})
    container = {
        "name": "nginx", "image": NGINX_IMAGE,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "volumeMounts": mounts,
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"},
                           "periodSeconds": 5, "timeoutSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/health", "port": "http"},
                          "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
    }
    pod: dict[str, Any] = {}
    if init:
        pod["initContainers"] = init
    pod.update({"containers": [container], "volumes": volumes})
    objects.append({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": _labels(plan, name)},
        "spec": {"replicas": 1, "selector": {"matchLabels": _selector(plan, name)},
                 "template": {"metadata": {"labels": _labels(plan, name)}, "spec": pod}},
    })
    objects.append({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": _labels(plan, name)},
        "spec": {"selector": _selector(plan, name),
                 "ports": [{"name": "http", "port": port, "targetPort": "http",
                            "protocol": "TCP"}]},
    })
    return objects


def export_kubernetes(project: ProjectConfig, out: Path) -> tuple[dict[str, str], Report]:
    report = Report("kubernetes")
    plan = build_plan(project, report, local=False)
    files: dict[str, str] = {"Dockerfile": dockerfile(plan, report)}
    image = image_name(plan)
    layout, roots = container_layout(project)
    conf = render_nginx(project, plan, layout, report)
    files["nginx.conf"] = conf.text
    header = (f"# Generated by `pyserve-tui export kubernetes` from {project.path.name} "
              f"(Kubernetes {KUBERNETES_VERSION}).\n")
    for unit in plan.units:
        files[f"app-{unit.slug}.yaml"] = header + yamlout.dump_all(
            _app_objects(unit, plan, image, report))
    files["gateway.yaml"] = header + yamlout.dump_all(
        _nginx_objects(plan, {"nginx.conf": conf.text, **conf.files}, roots, image))
    report.note(f"build the app image with `docker build -t {image} -f Dockerfile "
                "<project folder>` and push it where the cluster can pull it; apply with "
                "`kubectl apply -f .`")
    report.note("the nginx Service is a ClusterIP: expose it with an Ingress or "
                "`type: LoadBalancer`")
    return files, report
