"""Editing an app's source while clients keep sending requests: the app rolls over to a
new process running the new code, and no request fails (SPEC §2 `reload` / `watch`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.integration import ClientLoop, Project, WorkbenchFactory, assert_gone

HOT_APP = '''\
import os

VERSION = {version}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"][len(scope.get("root_path", "")):] == "/health":  # under any prefix
        body = b"ok"
    else:
        body = b"version %d pid %d" % (VERSION, os.getpid())
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]}})
    await send({{"type": "http.response.body", "body": body}})
'''


def write_app(folder: Path, version: int) -> None:
    """Write the new source beside the old and rename it in, as editors and git do."""
    tmp = folder / "hot.py.new"
    tmp.write_text(HOT_APP.format(version=version))
    tmp.replace(folder / "hot.py")


@pytest.mark.parametrize("how", [
    pytest.param({"watch": ["app_dir/*.py"]}, id="watch-globs"),
    pytest.param({"reload": True}, id="reload-module-path"),
])
def test_source_edit_rolls_over_without_failing_a_request(
        project: Project, start_workbench: WorkbenchFactory, how: dict[str, Any]) -> None:
    app_dir = project.folder / "app_dir"
    app_dir.mkdir()
    write_app(app_dir, 1)
    project.write(apps=[{"name": "hot", "path": "/hot", "app_path": "hot:app",
                         "module_path": "app_dir", **how}])
    wb = start_workbench(project, apps=["hot"])
    assert wb.http.get("/hot/").text.startswith("version 1 ")

    with ClientLoop(wb.url, ["/hot/", "/ping"]) as load:
        load.wait(50)
        for version in (2, 3):
            old = wb.app_processes("hot")
            old_pid = old[0].pid
            write_app(app_dir, version)
            entry = wb.wait_app("hot", where=lambda e: e["pid"] != old_pid)  # noqa: B023 - used at once
            assert_gone(old, what=f"the processes running version {version - 1}")
            mark = len(load.bodies)
            load.wait(50)  # from now on only the new code answers
            versions = {b.split(" pid ")[0] for b in load.bodies[mark:] if b != "pong"}
            assert versions == {f"version {version}"}
            assert entry["restarts"] == 0  # a reload is a rollover, not a crash

    assert load.failures == [], (load.outcomes, load.failures[:5])
    assert load.served["fresh"] >= 20 and load.served["keep-alive"] >= 20, load.served
    assert wb.http.get("/hot/x").text.startswith("version 3 ")
    assert "app 'hot': " in wb.output() and "changed; reloading" in wb.output()

    # Broken code: version 3 serves on, the reload is pending with its cause, until fixed.
    serving = wb.app("hot")["pid"]
    break_app(app_dir)
    entry = wb.wait_app("hot", where=lambda e: e.get("pending") == "files changed")
    assert entry["pid"] == serving and "no_such_module_for_hot" in entry["last_error"]
    assert wb.http.get("/hot/x").text.startswith("version 3 ")
    write_app(app_dir, 4)
    entry = wb.wait_app("hot", where=lambda e: e["pid"] != serving)
    assert entry["pending"] is None and wb.http.get("/hot/x").text.startswith("version 4 ")


def break_app(folder: Path) -> None:
    (folder / "hot.py.new").write_text("import no_such_module_for_hot\n")
    (folder / "hot.py.new").replace(folder / "hot.py")


def test_restart_onto_broken_code_keeps_serving_and_a_save_or_reload_retries_it(
        project: Project, start_workbench: WorkbenchFactory) -> None:
    app_dir = project.folder / "app_dir"
    app_dir.mkdir()
    write_app(app_dir, 1)
    project.write(apps=[{"name": "hot", "path": "/hot", "app_path": "hot:app",
                         "module_path": "app_dir"}])
    wb = start_workbench(project, apps=["hot"])
    pid = wb.app("hot")["pid"]
    break_app(app_dir)

    result = wb.control("restart", "hot")
    assert result.returncode == 1
    assert "old one keeps serving" in result.stderr and "no_such_module_for_hot" in result.stderr
    assert wb.http.get("/hot/x").text.startswith("version 1 ")  # never a 503
    status = wb.control("status").stdout
    assert "healthy (pending: restart requested)" in status and "no_such_module_for_hot" in status

    # Saving the project file, unchanged, retries what is pending.
    write_app(app_dir, 2)
    project.config.write_text(project.config.read_text())
    entry = wb.wait_app("hot", where=lambda e: e["pid"] != pid)
    assert entry["pending"] is None and wb.http.get("/hot/x").text.startswith("version 2 ")

    # So does `reload`, which says so.
    pid = entry["pid"]
    break_app(app_dir)
    assert wb.control("restart", "hot").returncode == 1
    write_app(app_dir, 3)
    result = wb.control("reload")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"added": [], "removed": [], "changed": ["hot"],
                                         "pending": []}
    entry = wb.app("hot")
    assert entry["pid"] != pid and entry["pending"] is None
    assert wb.http.get("/hot/x").text.startswith("version 3 ")
