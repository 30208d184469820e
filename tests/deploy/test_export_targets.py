"""Every export target, checked by its engine's own validator, offline.

The bundled project, the frameworks example (when present) and a project that uses every
exportable feature are exported to Compose, Kubernetes and systemd; `nginx -t`, the Compose
specification's schema, the Kubernetes schemas (strict, pinned version) and
`systemd-analyze verify` must accept every file without a single complaint.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from gateway.config import load_config
from gateway.deploy import MANIFEST, TARGETS, export_files
from gateway.deploy.plan import build_plan
from gateway.deploy.probes import probe_code, wait_code
from gateway.deploy.report import Report
from tests.support.deploy import (
    compose_validate,
    export,
    kubernetes_validate,
    nginx_test,
    systemd_verify,
    with_local_upstreams,
)
from tests.support.harness import ROOT

FULL = Path(__file__).parent / "projects" / "full" / "workbench.toml"
PROJECTS = {
    "bundled": ROOT / "workbench.toml",
    "frameworks": ROOT / "examples" / "frameworks" / "workbench.toml",
    "full": FULL,
}


def _project(name: str) -> Path:
    path = PROJECTS[name]
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout")
    return path


def _nginx_ok(conf: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "nginx"
    testable = tmp_path / "nginx-test.conf"
    testable.write_text(with_local_upstreams(conf.read_text(), prefix / "cache"))
    nginx_test(testable, prefix)


@pytest.mark.parametrize("name", list(PROJECTS))
def test_systemd_units_and_nginx_pass_their_validators(name: str, tmp_path: Path) -> None:
    out = tmp_path / "systemd"
    result = export(_project(name), "systemd", out)
    systemd_verify(out)
    _nginx_ok(out / "nginx.conf", tmp_path)
    units = [n for n in result.files if n.endswith(".service")]
    project = load_config(_project(name), environ={})
    assert len(units) == len(project.apps) + _mounts(project) + 1  # + nginx
    assert (out / "REPORT.md").read_text() == result.report.text()


@pytest.mark.parametrize("name", list(PROJECTS))
def test_compose_passes_the_compose_schema(name: str, tmp_path: Path) -> None:
    out = tmp_path / "compose"
    export(_project(name), "compose", out)
    compose_validate(out / "compose.yaml")
    _nginx_ok(out / "nginx.conf", tmp_path)
    assert (out / "Dockerfile").read_text().startswith("# The image")
    if name == "frameworks":
        # No app_type in that project: the apps' own objects tell (Flask, Django: WSGI).
        services = yaml.safe_load((out / "compose.yaml").read_text())["services"]
        interfaces = {n: s["command"][s["command"].index("--interface") + 1]
                      for n, s in services.items() if "--interface" in s.get("command", [])}
        assert interfaces == {"fastapi": "asgi", "flask": "wsgi", "django": "wsgi"}


@pytest.mark.parametrize("name", list(PROJECTS))
def test_kubernetes_manifests_pass_the_strict_schemas(name: str, tmp_path: Path) -> None:
    out = tmp_path / "kubernetes"
    result = export(_project(name), "kubernetes", out)
    manifests = sorted(out.glob("*.yaml"))
    assert len(manifests) == len(load_config(_project(name), environ={}).apps) \
        + _mounts(load_config(_project(name), environ={})) + 1
    kubernetes_validate(manifests)
    _nginx_ok(out / "nginx.conf", tmp_path)
    # The ConfigMap carries exactly the nginx.conf written beside it.
    assert result.files["nginx.conf"].splitlines()[3] in result.files["gateway.yaml"]


def _mounts(project: object) -> int:
    ext = project.extension("asgi")  # type: ignore[attr-defined]
    return len(ext.options.mounts) if ext else 0


@pytest.mark.parametrize("target", TARGETS)
def test_same_project_same_bytes_and_stale_files_go(target: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = export(FULL, target, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    second = export(FULL, target, out)
    assert first.files == second.files
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # A file an earlier export wrote and this one no longer makes is removed; others stay.
    (out / "mine.txt").write_text("not ours")
    stale = "pyserve-gone.service"
    (out / stale).write_text("old")
    (out / MANIFEST).write_text((out / MANIFEST).read_text() + stale + "\n")
    export(FULL, target, out)
    assert not (out / stale).exists() and (out / "mine.txt").exists()


def test_the_full_project_maps_its_values(tmp_path: Path) -> None:
    project = load_config(FULL, environ={})
    compose = export_files(project, "compose", tmp_path).files
    systemd = export_files(project, "systemd", tmp_path).files
    kube = export_files(project, "kubernetes", tmp_path).files
    # A fixed port is kept; the others come from port_range in app order, skipping it.
    assert "server 127.0.0.1:9350;" in systemd["nginx.conf"]
    assert "server 127.0.0.1:9300;" in systemd["nginx.conf"]  # reports
    assert "ports from port_range [9300, 9399]" in compose["REPORT.md"]
    # uvicorn with its workers and the prefix it is served under; hypercorn without strip.
    assert "--workers\n    - '3'" in compose["compose.yaml"]
    assert "--root-path\n    - /api" in compose["compose.yaml"]
    assert "proxy_pass http://pyserve_reports;" in systemd["nginx.conf"]
    # Kubernetes scales by replicas of one-worker pods and has all three probes.
    assert "replicas: 3" in kube["app-db-api.yaml"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert probe in kube["app-db-api.yaml"]
    assert "tcpSocket" in kube["app-factory.yaml"]  # health checks off: a TCP probe
    assert "wait-for-db-api" in kube["app-factory.yaml"]
    assert "wait-for-reports" in kube["app-factory.yaml"]
    # Compose waits for healthy dependencies and restarts with the project's count.
    assert "condition: service_healthy" in compose["compose.yaml"]
    assert "restart: on-failure:3" in compose["compose.yaml"]
    # systemd: dependencies, restart keys, an absolute interpreter, the target.
    unit = systemd["pyserve-full-factory.service"]
    assert "Requires=pyserve-full-db-api.service pyserve-full-reports.service" in unit
    assert "After=network.target pyserve-full-db-api.service pyserve-full-reports.service" \
        in unit
    assert "RestartSec=2\n" in unit and "StartLimitBurst=4" in unit
    assert re.search(r'ExecStart="/[^"]+python[^"]*" "-m" "granian"', unit)
    assert "pyserve-full-factory.service" in systemd["pyserve-full.target"]


def test_environment_values_are_quoted_for_each_engine(tmp_path: Path) -> None:
    project = load_config(FULL, environ={})
    unit = export_files(project, "systemd", tmp_path).files["pyserve-full-db-api.service"]
    # systemd: one quoted word, backslash and quote escaped, % doubled ($ is literal here).
    assert ('Environment="GREETING=say \\"hi\\" at 100%% for $HOME \\\\ and ${PATH}"'
            in unit), unit
    assert 'Environment="EMPTY="' in unit
    worker = export_files(project, "systemd", tmp_path).files["pyserve-full-worker.service"]
    assert '"50%% $$(whoami)"' in worker  # Exec lines expand $ too
    compose = export_files(project, "compose", tmp_path).files["compose.yaml"]
    assert "GREETING: say \"hi\" at 100% for $$HOME \\ and $${PATH}" in compose
    kube = export_files(project, "kubernetes", tmp_path).files
    assert "50% $$(whoami)" in kube["app-worker.yaml"]


def test_reports_name_what_has_no_equivalent(tmp_path: Path) -> None:
    project = load_config(FULL, environ={})
    reports = {t: export_files(project, t, tmp_path).report.text() for t in TARGETS}
    assert "RestartSteps" in reports["systemd"]
    assert "Docker's own backoff" in reports["compose"]
    assert "Kubernetes has no start order" in reports["kubernetes"]
    assert "restarts a failed container forever" in reports["kubernetes"]
    for text in reports.values():
        assert "asgi mount /inproc" in text
        assert "factory_args (factory)" in text
        assert "location /only-headers" in text
        assert "/metrics" in text


def test_health_check_commands_work_with_a_bare_python(tmp_path: Path) -> None:
    """The Compose health check and the wait used by systemd and Kubernetes init containers
    are `python -c` programs (no curl in a slim image): healthy means a 200 on the path."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response({"/health": 200, "/broken": 500}.get(self.path, 404))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        unit = build_plan(load_config(FULL, environ={}), Report("t"), local=False).units[0]
        unit = dataclasses.replace(unit, port=server.server_port, strip_path=False,
                                   health=dataclasses.replace(unit.health, lenient=False))

        def run(code: str) -> int:
            return subprocess.run([sys.executable, "-I", "-c", code], capture_output=True,
                                  timeout=30).returncode

        assert run(probe_code("127.0.0.1", unit)) == 0
        assert run(wait_code("127.0.0.1", unit, 5)) == 0
        sick = dataclasses.replace(unit, health=dataclasses.replace(unit.health, path="/bad"))
        assert run(probe_code("127.0.0.1", sick)) != 0
        assert run(wait_code("127.0.0.1", sick, 1)) != 0
        tcp = dataclasses.replace(unit, health=dataclasses.replace(unit.health, enabled=False))
        assert run(probe_code("127.0.0.1", tcp)) == 0
        # No health_check_path: /health is asked and any answer below 500 counts.
        lenient = dataclasses.replace(sick, health=dataclasses.replace(sick.health,
                                                                       lenient=True))
        assert run(probe_code("127.0.0.1", lenient)) == 0
        broken = dataclasses.replace(lenient, health=dataclasses.replace(lenient.health,
                                                                         path="/broken"))
        assert run(probe_code("127.0.0.1", broken)) != 0
    finally:
        server.shutdown()
        server.server_close()


def test_apps_of_a_builtin_project_run_on_an_asgi_server() -> None:
    """`builtin` serves only the gateway: exported apps get what `auto` gives them."""
    from gateway.deploy.plan import backend_for
    from gateway.servers.registry import BackendRegistry

    assert backend_for("builtin", local=False) == "granian"
    assert backend_for("builtin", local=True) == BackendRegistry.resolve("auto")
    assert backend_for("uvicorn", local=True) == "uvicorn"
