"""Saving the project file applies the difference live (SPEC §4), through the file watcher.

Nobody runs `reload` here: the running `pyserve-tui --no-ui` notices each save by itself.
"""

from __future__ import annotations

import re

import pytest

from tests.support.harness import poll
from tests.support.integration import (
    ASGI_APP,
    COMING_UP,
    WSGI_APP,
    Project,
    Workbench,
    WorkbenchFactory,
    assert_gone,
)

EXTRA_APP = {**ASGI_APP, "name": "extra", "path": "/extra"}


@pytest.fixture
def wb(project: Project, start_workbench: WorkbenchFactory) -> Workbench:
    project.write(apps=[ASGI_APP, WSGI_APP])
    return start_workbench(project, apps=["asgi", "wsgi"])


def test_added_app_starts_and_removed_app_stops(wb: Workbench) -> None:
    project = wb.project
    pids = wb.app_pids()
    mark = len(wb.lines)
    project.write(apps=[ASGI_APP, WSGI_APP, EXTRA_APP])
    extra = wb.wait_app("extra")
    wb.wait_output("config applied: added=['extra'] removed=[] changed=[]", start=mark)
    assert wb.http.get("/extra/echo").json()["path"] == "/echo"
    assert wb.app_pids() == {**pids, "extra": extra["pid"]}  # the others kept their process
    extra_processes = wb.app_processes("extra")

    mark = len(wb.lines)
    project.write(apps=[ASGI_APP, WSGI_APP], atomic=True)  # saved by rename, as vim does
    poll(lambda: "extra" not in wb.metrics()["apps"], what="app 'extra' to be removed",
         ignore=COMING_UP)
    wb.wait_output("config applied: added=[] removed=['extra'] changed=[]", start=mark)
    assert_gone(extra_processes, what="the removed app's processes")
    assert wb.http.get("/extra/echo").status_code == 404
    assert wb.app_pids() == pids


def test_changed_app_restarts_and_the_untouched_one_keeps_its_process(wb: Workbench) -> None:
    project = wb.project
    before = wb.app_pids()
    old = wb.app_processes("asgi")
    assert wb.http.get("/asgi/env", params={"name": "GREETING"}).json() == {"value": None}
    project.write(apps=[{**ASGI_APP, "env": {"GREETING": "changed"}}, WSGI_APP])
    wb.wait_app("asgi", where=lambda e: e["pid"] != before["asgi"])
    assert wb.http.get("/asgi/env", params={"name": "GREETING"}).json() == {"value": "changed"}
    assert wb.app_pids()["wsgi"] == before["wsgi"]
    assert_gone(old, what="the old asgi processes")
    wb.wait_output("config applied: added=[] removed=[] changed=['asgi']")


def test_routing_change_is_served_without_restarting_anything(wb: Workbench) -> None:
    project = wb.project
    pids = wb.app_pids()
    uptime = wb.metrics()["gateway"]["uptime_s"]
    assert wb.http.get("/gone").status_code == 404
    project.write(apps=[ASGI_APP, WSGI_APP],
                  routes={"=/ping": {"return": "200 pong v2"},
                          "^~/gone": {"return": "410 moved away"}})
    poll(lambda: wb.http.get("/ping").text == "pong v2", what="the edited route", ignore=COMING_UP)
    r = wb.http.get("/gone/for/good")
    assert (r.status_code, r.text) == (410, "moved away")
    assert wb.http.get("/asgi/echo").status_code == 200
    assert wb.proc.poll() is None and wb.metrics()["gateway"]["uptime_s"] > uptime
    assert wb.app_pids() == pids


def test_invalid_file_is_refused_and_left_as_written(wb: Workbench) -> None:
    project = wb.project
    pids = wb.app_pids()
    good = project.config.read_text()
    mark = len(wb.lines)
    invalid = good.replace('app_path = "tests.apps.wsgi_app:app"', 'app_path = 42')
    project.write(invalid)
    line = wb.wait_output("config refused, running config kept", start=mark)
    assert re.search(r"workbench\.toml:\d+:\d+: .*app_path", line), line
    assert wb.http.get("/wsgi/x").json()["kind"] == "wsgi"  # the running config serves on
    assert wb.app_pids() == pids

    broken = good + "\n[[extensions]\n"  # not even TOML
    project.write(broken)
    line = wb.wait_output("config refused", "invalid TOML", start=mark)
    assert re.search(r"workbench\.toml:\d+:\d+: invalid TOML", line), line
    assert wb.http.get("/asgi/echo").status_code == 200
    assert project.config.read_text() == broken  # never rewritten or lost

    project.write(good.replace('"200 pong"', '"200 fixed"'))
    poll(lambda: wb.http.get("/ping").text == "fixed", what="the corrected file to apply",
         ignore=COMING_UP)
    assert wb.app_pids() == pids


def test_half_written_file_is_applied_once_complete(wb: Workbench) -> None:
    project = wb.project
    pids = wb.app_pids()
    full = project.text(apps=[ASGI_APP, WSGI_APP, EXTRA_APP],
                        routes={"=/ping": {"return": "200 complete"}})
    cut = full.index('path = "/extra"')  # mid-table: the new app has a name but no path
    mark = len(wb.lines)
    with project.config.open("w", encoding="utf-8") as fh:
        fh.write(full[:cut])
        fh.flush()
        wb.wait_output("config refused", start=mark)  # the saved half is refused...
        assert "extra" not in wb.metrics()["apps"]
        assert wb.http.get("/ping").text == "pong"
        fh.write(full[cut:])  # ...and the rest arrives later in the same write
    wb.wait_app("extra")
    assert wb.http.get("/ping").text == "complete"
    assert wb.http.get("/extra/echo").status_code == 200
    assert {k: v for k, v in wb.app_pids().items() if k != "extra"} == pids
    assert project.config.read_text() == full



def test_emptied_file_is_waited_for_not_applied(wb: Workbench) -> None:
    """Saving in place truncates the file first; the empty moment must not stop every app."""
    project = wb.project
    pids = wb.app_pids()
    good = project.config.read_text()
    mark = len(wb.lines)
    with project.config.open("w", encoding="utf-8") as fh:  # truncated, nothing written yet
        wb.wait_output("workbench.toml is empty", start=mark)
        assert wb.http.get("/ping").text == "pong"
        fh.write(good.replace('"200 pong"', '"200 rewritten"'))
    poll(lambda: wb.http.get("/ping").text == "rewritten", what="the rewritten file to apply",
         ignore=COMING_UP)
    assert wb.app_pids() == pids
    assert not [ln for ln in wb.lines[mark:] if "removed=['" in ln]


def test_backend_edited_in_the_file_is_switched_live(wb: Workbench) -> None:
    project = wb.project
    old = wb.app_pids()
    mark = len(wb.lines)
    project.write(project.config.read_text().replace('backend = "granian"',
                                                     'backend = "hypercorn"'))
    wb.wait_output("backend: granian -> hypercorn", start=mark)
    metrics = wb.metrics()
    assert metrics["gateway"]["backend"] == "hypercorn"
    for name, entry in metrics["apps"].items():
        assert (entry["state"], entry["backend"]) == ("healthy", "hypercorn")
        assert entry["pid"] != old[name]
    assert wb.http.get("/wsgi/x").json()["kind"] == "wsgi"
