"""The exported systemd units' own commands serve the bundled project behind the exported
nginx.conf, on each backend, and the apps see their requests as they do in the workbench.

Nothing here runs systemd: each unit's `Environment=`, `WorkingDirectory=`, `ExecStart=` and
`ExecStartPost=` are read back (unquoted by systemd's rules) and run as systemd would run
them, so what is tested is the command line, the environment and the health wait.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.config.loader import validate_text
from gateway.deploy import export_files, write_export
from tests.support.deploy import NGINX, Nginx, need
from tests.support.harness import ROOT, free_port, free_port_range
from tests.support.integration import Project, WorkbenchFactory

pytestmark = pytest.mark.slow

_WORD = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPES = {"n": "\n", '"': '"', "\\": "\\"}


def words(value: str, *, exec_line: bool) -> list[str]:
    """The words of a unit-file value written by the exporter (every word quoted)."""
    out = []
    for raw in _WORD.findall(value):
        text = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], "\\" + m[1]), raw)
        text = text.replace("%%", "%")
        out.append(text.replace("$$", "$") if exec_line else text)
    return out


def parse_unit(text: str) -> dict[str, list[str]]:
    unit: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("Environment", "ExecStart", "ExecStartPost", "WorkingDirectory"):
            unit.setdefault(key, []).append(value)
    return unit


def bundled_project(backend: str, port: int, port_range: tuple[int, int]) -> str:
    text = (ROOT / "workbench.toml").read_text()
    text = re.sub(r'backend = "auto"', f'backend = "{backend}"', text, count=1)
    text = re.sub(r"(?m)^port = 8000", f"port = {port}", text)
    return text.replace("port_range = [9100, 9199]", f"port_range = [{port_range[0]}, "
                                                     f"{port_range[1]}]")


class Units:
    """The app units of one export, started as systemd would start them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str) -> None:
        unit = parse_unit((self.folder / name).read_text())
        env = {"LANG": "C.UTF-8"}
        for value in unit["Environment"]:
            key, _, val = words(value, exec_line=False)[0].partition("=")
            env[key] = val
        cwd = unit["WorkingDirectory"][0]
        argv = words(unit["ExecStart"][0], exec_line=True)
        self.procs.append(subprocess.Popen(argv, cwd=cwd, env=env, start_new_session=True,
                                           stdin=subprocess.DEVNULL,
                                           stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE))
        # ExecStartPost: returns once the app is healthy (or fails after its deadline).
        wait = subprocess.run(words(unit["ExecStartPost"][0], exec_line=True), cwd=cwd,
                              env=env, capture_output=True, text=True, timeout=90)
        if wait.returncode != 0:
            proc = self.procs[-1]
            err = b""
            if proc.poll() is not None and proc.stderr:
                err = proc.stderr.read()
            raise AssertionError(f"{name}: {wait.stderr} {err.decode(errors='replace')}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(15)
            if proc.stderr:
                proc.stderr.close()


@pytest.fixture(scope="module")
def workbench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The bundled project in a real workbench: what the apps see there is the reference.
    (Its file lives in a temporary folder, its relative paths pointed at the checkout.)"""
    folder = tmp_path_factory.mktemp("reference")
    port, port_range = free_port(), free_port_range()
    text = bundled_project("uvicorn", port, port_range)
    text = text.replace('"./examples/', f'"{ROOT}/examples/')
    text = text.replace('app_path = "examples.', f'module_path = "{ROOT}"\napp_path = "examples.')
    text = text.replace('command = ["python", "examples/',
                        f'command = ["python", "{ROOT}/examples/')
    project = Project(folder, port, port_range)
    project.write(text)
    factory = WorkbenchFactory()
    try:
        wb = factory(project, apps=["api", "guestbook", "clock"], timeout=60)
        yield wb.http
    finally:
        factory.close()


@pytest.mark.parametrize("backend", ["granian", "uvicorn", "hypercorn"])
def test_units_serve_the_bundled_project_behind_the_exported_nginx(
        backend: str, tmp_path: Path, workbench: httpx.Client) -> None:
    need(NGINX, "nginx")
    port = free_port()
    project = validate_text(ROOT / "workbench.toml",
                            bundled_project(backend, port, free_port_range()), environ={})
    out = tmp_path / "systemd"
    result = export_files(project, "systemd", out)
    write_export(result, out)
    units = Units(out)
    server = None
    try:
        for unit in sorted(result.files):
            if unit.endswith(".service") and not unit.endswith("-nginx.service"):
                units.start(unit)
        conf = (out / "nginx.conf").read_text()
        conf = re.sub(r"proxy_cache_path \S+", f"proxy_cache_path {tmp_path}/cache", conf)
        (tmp_path / "nginx.conf").write_text(conf)
        server = Nginx(tmp_path / "nginx.conf", tmp_path / "nginx")
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=20)
        server.wait_answering(client)
        for path in ("/api/items", "/api", "/api/health", "/guestbook/", "/guestbook",
                     "/clock/", "/clock/health", "/ping", "/style.css", "/deep/link"):
            ours, reference = client.get(path), workbench.get(path)
            assert ours.status_code == reference.status_code, (path, ours.text)
            if path.startswith("/api") and ours.headers.get("content-type", "").startswith(
                    "application/json"):
                mine, theirs = ours.json(), reference.json()
                for answer in (mine, theirs):
                    if isinstance(answer, dict):
                        answer.pop("pid", None)  # another process, of course
                assert mine == theirs, path
            elif not path.startswith("/clock"):  # the clock tells the time
                assert ours.text == reference.text, path
        client.close()
    finally:
        if server is not None:
            server.stop()
        units.stop()
