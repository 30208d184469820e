"""`pyserve-tui --no-ui` running two apps: proxying, app output, and how it ends."""

from __future__ import annotations

import os
import signal
import sys

import psutil

from tests.support.harness import TESTS_DIR, poll
from tests.support.integration import (
    ASGI_APP,
    COMING_UP,
    WSGI_APP,
    Project,
    WorkbenchFactory,
    assert_gone,
)


def test_two_apps_serve_through_the_gateway_and_print_their_output(
        project: Project, start_workbench: WorkbenchFactory) -> None:
    project.write(apps=[ASGI_APP, WSGI_APP])
    wb = start_workbench(project, apps=["asgi", "wsgi"])

    r = wb.http.get("/asgi/echo/deep", params={"q": "1"}, headers={"X-Request-ID": "it-echo-1"})
    assert r.status_code == 200
    echo = r.json()
    assert echo["path"] == "/echo/deep" and echo["query"] == "q=1"  # the prefix is stripped
    assert echo["headers"]["x-request-id"] == "it-echo-1" == r.headers["x-request-id"]
    r = wb.http.get("/wsgi/hello", params={"n": "2"})
    assert r.status_code == 200
    assert r.json()["kind"] == "wsgi" and r.json()["path"] == "/hello"
    assert r.json()["query"] == "n=2"
    assert r.json()["pid"] in wb.tree()  # served by a process under the workbench

    mark = len(wb.lines)
    assert wb.http.get("/asgi/log", headers={"X-Request-ID": "it-asgi-log"}).text == "logged"
    assert wb.http.get("/wsgi/log", headers={"X-Request-ID": "it-wsgi-log"}).text == "logged"
    line = wb.wait_output("[asgi] printed inside a request", start=mark)
    assert line.endswith("rid=it-asgi-log"), line
    line = wb.wait_output("[wsgi] wsgi printed inside a request", start=mark)
    assert line.endswith("rid=it-wsgi-log"), line
    access = wb.wait_output("GET /asgi/log 200", start=mark)
    assert "app=asgi" in access and "rid=it-asgi-log" in access

    metrics = wb.metrics()
    assert {name: entry["state"] for name, entry in metrics["apps"].items()} == {
        "asgi": "healthy", "wsgi": "healthy"}
    assert metrics["apps"]["asgi"]["requests"] >= 2
    assert metrics["gateway"]["backend"] == "granian"


def test_sigterm_exits_0_and_leaves_no_app_process(
        project: Project, start_workbench: WorkbenchFactory) -> None:
    project.write(apps=[ASGI_APP, WSGI_APP])
    wb = start_workbench(project, apps=["asgi", "wsgi"])
    app_pids = wb.app_pids()
    tree = wb.tree()
    assert set(app_pids.values()) <= tree  # the apps run under the workbench
    everything = wb.tracker.get(tree - {wb.pid})
    assert len(everything) >= 4  # a guard and a server per app at least

    assert wb.terminate() == 0, "\n".join(wb.errors)
    assert "Traceback" not in "\n".join(wb.errors)
    assert wb.lines[-1].endswith("stopped"), wb.lines[-5:]
    for name in app_pids:
        wb.wait_output(f"app {name}: healthy -> stopped", timeout=1)
    # "stopped" is printed once the apps are gone: nothing may be running by now (the
    # second is for a killed process the kernel has not finished tearing down).
    assert_gone(everything, timeout=1.0, what="the app processes after exit")


def test_sigkill_of_the_workbench_takes_every_app_down(
        project: Project, start_workbench: WorkbenchFactory) -> None:
    project.write(apps=[ASGI_APP, {**WSGI_APP, "workers": 2}])
    wb = start_workbench(project, apps=["asgi", "wsgi"])
    wsgi_pid = wb.app_pids()["wsgi"]
    # The multi-worker server forks its workers once it runs: wait for them to be seen.
    poll(lambda: len(psutil.Process(wsgi_pid).children(recursive=True)) >= 3, 20,
         what="the wsgi server and its two workers", ignore=COMING_UP)
    apps = wb.tracker.get(wb.tree() - {wb.pid})

    wb.kill()
    assert wb.proc.returncode == -signal.SIGKILL
    assert_gone(apps, timeout=5, what="the orphaned app processes")


def test_a_bare_python_command_runs_on_the_workbench_interpreter(
        project: Project, start_workbench: WorkbenchFactory) -> None:
    """A `command` app starting with "python" runs even when no python is on PATH: it is
    the interpreter the workbench itself runs on (a venv's python often is not on PATH)."""
    empty = project.folder / "empty-bin"
    empty.mkdir()
    project.write(apps=[{
        "name": "cmd", "path": "/cmd",
        "command": ["python", str(TESTS_DIR / "apps" / "command_server.py")],
    }])
    wb = start_workbench(project, env={"PATH": str(empty)}, apps=["cmd"])
    r = wb.http.get("/cmd/where")
    assert r.status_code == 200 and r.json()["kind"] == "command"
    server = psutil.Process(r.json()["pid"])
    workbench_python = psutil.Process(wb.pid).cmdline()[0]  # the console script's shebang
    assert server.cmdline()[0] == workbench_python
    assert os.path.samefile(server.exe(), sys.executable)
