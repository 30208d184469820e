"""The repository's own `workbench.toml` and `examples/`, run as a new user would run them."""

from __future__ import annotations

import re
import shutil
import time

import tomlkit

from tests.support.harness import ROOT
from tests.support.integration import Project, WorkbenchFactory

APPS = ("api", "guestbook", "clock")


def copy_bundled_project(project: Project) -> None:
    """workbench.toml + examples/ into the test's folder, on a free port and port range
    (changed with tomlkit, so everything else is the file as shipped)."""
    shutil.copytree(ROOT / "examples", project.folder / "examples",
                    ignore=shutil.ignore_patterns("__pycache__"))
    doc = tomlkit.parse((ROOT / "workbench.toml").read_text(encoding="utf-8"))
    doc["server"]["port"] = project.port  # type: ignore[index]
    for ext in doc["extensions"]:  # type: ignore[union-attr]
        if ext["type"] == "process_orchestration":
            ext["config"]["port_range"] = list(project.port_range)
    project.write(tomlkit.dumps(doc))


def test_bundled_project_runs_all_three_apps(project: Project,
                                             start_workbench: WorkbenchFactory) -> None:
    copy_bundled_project(project)
    # No python on PATH: the `clock` app's ["python", ...] must still run (on our interpreter).
    empty = project.folder / "no-python-here"
    empty.mkdir()
    # Started from another folder: relative paths in the file resolve against the file's.
    wb = start_workbench(project, env={"PATH": str(empty)}, cwd=empty)
    began = time.monotonic()
    for name in APPS:
        wb.wait_app(name, timeout=max(1.0, 10.0 - (time.monotonic() - began)))
    assert set(wb.metrics()["apps"]) == set(APPS)

    r = wb.http.get("/api/items")
    assert r.status_code == 200
    assert r.json() and all("name" in item for item in r.json())
    r = wb.http.get("/guestbook/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    r = wb.http.get("/clock")
    assert r.status_code == 200 and re.fullmatch(r"\d\d:\d\d:\d\d\n", r.text), r.text
    r = wb.http.get("/ping")
    assert (r.status_code, r.text) == (200, "pong")
    r = wb.http.get("/")
    index = (project.folder / "examples" / "static" / "index.html").read_bytes()
    assert r.status_code == 200 and r.content == index
    assert r.headers["content-type"].startswith("text/html")
    r = wb.http.get("/style.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    assert r.content == (project.folder / "examples" / "static" / "style.css").read_bytes()
    r = wb.http.get("/some/client/route")  # spa_fallback: the index again
    assert r.status_code == 200 and r.content == index

