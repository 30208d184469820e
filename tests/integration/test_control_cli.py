"""The control commands (`status`, `restart`, `stop`, `start`, `backend`, `reload`) against
one real running instance, shared by the tests of this module.

Each test leaves both apps healthy for the next one.
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from gateway.control import control_socket_path
from tests.support.harness import free_port, free_port_range, poll
from tests.support.integration import (
    ASGI_APP,
    COMING_UP,
    WSGI_APP,
    Project,
    Workbench,
    WorkbenchFactory,
    assert_gone,
    comments,
)

ROUTES = {"=/ping": {"return": "200 pong"}}


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workbench]:
    project = Project(tmp_path_factory.mktemp("cli"), free_port(), free_port_range())
    project.write(apps=[ASGI_APP, WSGI_APP], routes=ROUTES)
    factory = WorkbenchFactory()
    try:
        yield factory(project, apps=["asgi", "wsgi"])
    finally:
        factory.close()


@pytest.fixture
def wb(instance: Workbench) -> Iterator[Workbench]:
    yield instance
    for name in ("asgi", "wsgi"):  # whatever a test did, the next one finds both serving
        if instance.app(name)["state"] != "healthy":
            instance.control("start", name)
            instance.wait_app(name)
    instance.record()


def test_status_prints_the_table_of_apps(wb: Workbench) -> None:
    result = wb.control("status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    gateway = wb.metrics()["gateway"]
    assert lines[0] == (f"gateway {wb.url}  backend {gateway['backend']}"
                        f"  apps on {gateway['apps_backend']}")
    header = lines[1].split()
    assert header[:4] == ["APP", "STATE", "PID", "PORT"] and "RESTARTS" in header
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    apps = wb.metrics()["apps"]
    assert set(rows) == {"asgi", "wsgi"}
    for name, row in rows.items():
        assert row[1] == "healthy"
        assert row[2:4] == [str(apps[name]["pid"]), str(apps[name]["port"])]


def test_restart_gives_the_app_a_new_process(wb: Workbench) -> None:
    before = wb.app("asgi")
    old = wb.tracker.get([before["pid"]])
    result = wb.control("restart", "asgi")
    assert result.returncode == 0, result.stderr
    assert "asgi" in result.stdout
    after = wb.wait_app("asgi", where=lambda e: e["pid"] != before["pid"])
    assert after["restarts"] == before["restarts"] + 1 == 1
    assert_gone(old, what="the replaced asgi process")
    served_by = int(wb.http.get("/asgi/pid").text)  # the server, under the app's guard
    assert served_by in {p.pid for p in psutil.Process(after["pid"]).children(recursive=True)}
    assert wb.app("wsgi")["restarts"] == 0


def test_stop_answers_503_naming_the_app_and_start_brings_it_back(wb: Workbench) -> None:
    old = wb.tracker.get([wb.app("wsgi")["pid"]])
    result = wb.control("stop", "wsgi")
    assert result.returncode == 0, result.stderr
    assert wb.app("wsgi")["state"] == "stopped"  # stop returns once it is done
    assert_gone(old, timeout=2, what="the stopped wsgi process")
    r = wb.http.get("/wsgi/anything")
    assert r.status_code == 503
    assert "wsgi" in r.text and r.headers["x-request-id"] in r.text
    assert wb.http.get("/asgi/pid").status_code == 200  # the other app is untouched

    result = wb.control("start", "wsgi")
    assert result.returncode == 0, result.stderr
    wb.wait_app("wsgi")
    assert wb.http.get("/wsgi/anything").json()["kind"] == "wsgi"


def test_unknown_app_is_exit_1_naming_it(wb: Workbench) -> None:
    for cmd in ("restart", "stop", "start"):
        result = wb.control(cmd, "nosuch")
        assert result.returncode == 1
        assert "'nosuch'" in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert set(wb.metrics()["apps"]) == {"asgi", "wsgi"}


def test_control_socket_is_private_to_the_user(wb: Workbench) -> None:
    path = control_socket_path(wb.project.config)
    mode = path.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert path.parent == wb.project.folder.resolve()


def test_reload_applies_an_edit_before_it_returns(wb: Workbench) -> None:
    project = wb.project
    pids = wb.app_pids()
    project.write(apps=[ASGI_APP, WSGI_APP],
                  routes={**ROUTES, "=/added": {"return": "200 added by reload"}})
    result = wb.control("reload")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"added": [], "removed": [], "changed": [],
                                         "pending": []}
    r = wb.http.get("/added")  # no waiting: reload returns once the edit is applied
    assert (r.status_code, r.text) == (200, "added by reload")
    assert wb.app_pids() == pids  # a routing edit restarts no app

    broken = project.config.read_text().replace('type = "routing"', 'type = "routing"\nport = [')
    project.write(broken)
    result = wb.control("reload")
    assert result.returncode == 1
    assert re.search(r"workbench\.toml:\d+:\d+: invalid TOML", result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    assert wb.http.get("/added").text == "added by reload"  # the running config stays
    assert project.config.read_text() == broken  # and the user's file is not touched
    project.write(apps=[ASGI_APP, WSGI_APP], routes=ROUTES)
    assert wb.control("reload").returncode == 0
    assert wb.http.get("/added").status_code == 404


def test_backend_switch_rolls_the_apps_and_is_written_back(wb: Workbench) -> None:
    config: Path = wb.project.config
    before = config.read_text()
    assert wb.metrics()["gateway"]["backend"] == "granian"
    old = wb.app_pids()

    result = wb.control("backend", "uvicorn")
    assert result.returncode == 0, result.stderr
    metrics = wb.metrics()
    assert metrics["gateway"]["backend"] == "uvicorn"
    for name in ("asgi", "wsgi"):
        entry = metrics["apps"][name]
        assert (entry["state"], entry["backend"]) == ("healthy", "uvicorn")
        assert entry["pid"] != old[name]
    assert_gone(wb.tracker.get(old.values()), what="the granian app processes")
    assert wb.http.get("/asgi/echo").status_code == 200

    after = config.read_text()
    assert after == before.replace('backend = "granian"', 'backend = "uvicorn"', 1)
    assert comments(after) == comments(before)

    # `builtin` re-serves the gateway on its own front; the apps go to what `auto` gives
    # them (granian), and /metrics says which serves what.
    result = wb.control("backend", "builtin")
    assert result.returncode == 0, result.stderr
    poll(lambda: all(e["backend"] == "granian" and e["state"] == "healthy"
                     for e in wb.metrics()["apps"].values()), what="apps on granian")
    gateway = wb.metrics()["gateway"]
    assert (gateway["backend"], gateway["apps_backend"]) == ("builtin", "granian")
    assert wb.http.get("/asgi/echo").status_code == 200

    result = wb.control("backend", "granian")  # leave the instance as it was
    assert result.returncode == 0, result.stderr
    assert config.read_text() == before
    poll(lambda: all(e["backend"] == "granian" and e["state"] == "healthy"
                     for e in wb.metrics()["apps"].values()),
                     what="apps back on granian", ignore=COMING_UP)
