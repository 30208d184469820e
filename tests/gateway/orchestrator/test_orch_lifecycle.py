"""App processes under supervision: crashes, health failures, import errors, dependencies,
live configuration. Real processes on 127.0.0.1; nothing is mocked."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from gateway.errors import AppError
from gateway.events import AppOutput, EngineMessage
from gateway.orchestrator import AppState
from tests.support.harness import wait_until
from tests.support.orchestration import Recorder, app


async def get(sup, path: str) -> httpx.Response:
    host, port = sup.upstream()
    async with httpx.AsyncClient(trust_env=False) as client:
        return await client.get(f"http://{host}:{port}{path}", timeout=5)


async def test_start_serves_and_reports(make_orchestrator, recorder: Recorder) -> None:
    orch = make_orchestrator([app("a")])
    await orch.start()
    sup = orch.get("a")
    assert await sup.wait_ready(15)
    assert sup.state is AppState.HEALTHY
    assert recorder.states("a") == ["starting", "healthy"]
    status = orch.snapshot()[0]
    assert status["pid"] == sup.pid and status["port"] == sup.port
    assert status["health"] == "ok" and status["restarts"] == 0
    assert status["backend"] in ("granian", "uvicorn", "hypercorn")
    assert status["rss_bytes"] > 0 and status["cpu_percent"] is not None
    r = await get(sup, "/log")
    assert r.status_code == 200
    assert "healthy" in repr(sup) and str(sup.pid) in repr(sup)


@pytest.mark.parametrize("backend", ["granian", "uvicorn", "hypercorn"])
async def test_request_id_reaches_app_log_lines(make_orchestrator, recorder: Recorder,
                                                backend: str) -> None:
    orch = make_orchestrator([app("a"), app("w", app_path="tests.apps.wsgi_app:app",
                                            app_type="wsgi")], backend=backend)
    await orch.start()
    for name in ("a", "w"):
        sup = orch.get(name)
        assert await sup.wait_ready(15)
        host, port = sup.upstream()
        async with httpx.AsyncClient(trust_env=False) as client:
            r = await client.get(f"http://{host}:{port}/log",
                                 headers={"x-request-id": f"rid-{name}"})
        assert r.status_code == 200

        def tagged(name: str = name) -> list:
            return [ln for ln in orch.logs(name) if ln.request_id == f"rid-{name}"]

        lines = await wait_until(tagged, what=f"tagged log lines of {name}")
        assert all("\x02" not in ln.line and "\x03" not in ln.line for ln in lines)
        assert any("printed inside a request" in ln.line for ln in lines)
    a_lines = [ln.line for ln in orch.logs("a") if ln.request_id == "rid-a"]
    assert "logged inside a request" in a_lines  # logging output carries the id too
    assert any(isinstance(e, AppOutput) and e.request_id == "rid-a" for e in recorder.events)
    assert {s["backend"] for s in orch.snapshot()} == {backend}
    merged = orch.logs()
    assert [ln.time for ln in merged] == sorted(ln.time for ln in merged)
    with pytest.raises(AppError, match="'zzz'"):
        orch.logs("zzz")


async def test_sigkill_is_noticed_and_restarted(make_orchestrator, recorder: Recorder) -> None:
    orch = make_orchestrator([app("a", health_check_interval=30.0)])
    await orch.start()
    sup = orch.get("a")
    assert await sup.wait_ready(15)
    old_pid = sup.pid
    os.kill(old_pid, signal.SIGKILL)
    # The probe interval is 30 s: only the exit itself can make this quick.
    await wait_until(lambda: sup.state is AppState.HEALTHY and sup.pid not in (None, old_pid), 10,
                     what="a new healthy process")
    assert sup.restarts == 1
    assert "killed by SIGKILL" in (recorder.of(type(recorder.events[0])) and [
        e.reason for e in recorder.events if getattr(e, "new", "") == "restarting"][0])
    assert recorder.states("a") == ["starting", "healthy", "restarting", "starting", "healthy"]


async def test_failing_health_checks_restart_the_app(make_orchestrator, tmp_path: Path,
                                                     recorder: Recorder) -> None:
    flag = tmp_path / "sick"
    orch = make_orchestrator([app("a", env={"BAD_HEALTH_FILE": str(flag)})])
    await orch.start()
    sup = orch.get("a")
    assert await sup.wait_ready(15)
    old_pid = sup.pid
    flag.write_text("x")
    await wait_until(lambda: sup.state is AppState.UNHEALTHY, 5, what="unhealthy")
    assert orch.snapshot()[0]["health"] == "failing"
    await wait_until(lambda: sup.state is AppState.RESTARTING, 5, what="restarting")
    flag.unlink()
    assert await sup.wait_ready(15)
    assert sup.pid != old_pid and sup.restarts == 1
    restart = [e for e in recorder.events if getattr(e, "new", "") == "restarting"][0]
    assert "health checks failed" in restart.reason and "GET /health -> 500" in restart.reason


async def test_import_error_fails_after_max_restarts(make_orchestrator,
                                                     recorder: Recorder) -> None:
    orch = make_orchestrator([app("broken", app_path="tests.apps.broken:app", max_restart_count=2),
                              app("good")])
    await orch.start()
    broken, good = orch.get("broken"), orch.get("good")
    await wait_until(lambda: broken.state is AppState.FAILED, 20, what="broken to fail")
    assert broken.restarts == 2
    assert "No module named 'this_module_does_not_exist_anywhere'" in broken.last_error
    assert "cannot import 'tests.apps.broken'" in broken.last_error
    assert not await broken.wait_ready(0.1)
    messages = [e.text for e in recorder.of(EngineMessage) if e.app == "broken"]
    assert any("did not start" in m and "this_module_does_not_exist" in m for m in messages)
    assert any("gave up" in m for m in messages)
    # Shown once per distinct cause, not once per attempt.
    assert sum("did not start" in m for m in messages) == 1
    assert recorder.states("broken")[-1] == "failed"
    assert orch.snapshot()[0]["last_error"] == broken.last_error
    # The other app never noticed.
    assert good.state is AppState.HEALTHY and good.restarts == 0
    # A failed app can be started again (and fails again, with a fresh streak).
    await orch.start_app("broken")
    assert broken.state is AppState.STARTING
    await wait_until(lambda: broken.state is AppState.FAILED, 20, what="failing again")
    assert broken.restarts == 4


async def test_stop_start_restart_by_name(make_orchestrator) -> None:
    orch = make_orchestrator([app("a")])
    await orch.start()
    sup = orch.get("a")
    assert await sup.wait_ready(15)
    pid = sup.pid
    await orch.stop_app("a")
    assert sup.state is AppState.STOPPED and sup.pid is None and sup.upstream() is None
    assert not await sup.wait_ready(1)
    await orch.start_app("a")
    assert await sup.wait_ready(15)
    assert sup.pid != pid
    pid = sup.pid
    await orch.restart_app("a")
    assert await sup.wait_ready(15)
    assert sup.pid != pid and sup.restarts == 1
    with pytest.raises(AppError, match="'ghost'"):
        await orch.restart_app("ghost")
    with pytest.raises(AppError, match="'ghost'"):
        await orch.stop_app("ghost")
    with pytest.raises(AppError, match="'ghost'"):
        await orch.start_app("ghost")


async def test_depends_on_order(make_orchestrator, recorder: Recorder) -> None:
    orch = make_orchestrator([
        app("web", depends_on=["api"]),
        app("api", depends_on=["db"]),
        app("db"),
    ])
    await orch.start()
    for name in ("db", "api", "web"):
        assert await orch.get(name).wait_ready(15)
    changes = [(e.app, e.new) for e in recorder.events if hasattr(e, "new")]
    assert changes.index(("db", "healthy")) < changes.index(("api", "healthy")) \
        < changes.index(("web", "healthy"))
    # Each process was launched only once its dependency was healthy. Both sides are read
    # on CLOCK_BOOTTIME: /proc/<pid>/stat counts a process's start in clock ticks since boot
    # (psutil's create_time adds a boot time with whole-second resolution, and time.time()
    # is another clock). One tick of tolerance; a launch beside the dependency would be
    # ~0.2 s earlier.
    tick = 1 / os.sysconf("SC_CLK_TCK")

    def launched(name: str) -> float:
        with open(f"/proc/{orch.get(name).pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[19]) * tick  # field 22, counted after "pid (comm)"

    def healthy_at(name: str) -> float:
        return recorder.boottimes[changes_all.index((name, "healthy"))]

    changes_all = [(getattr(e, "app", None), getattr(e, "new", None)) for e in recorder.events]
    assert launched("api") >= healthy_at("db") - tick
    assert launched("web") >= healthy_at("api") - tick
    reasons = {e.app: e.reason for e in recorder.events if getattr(e, "new", "") == "starting"}
    assert reasons["web"] == "waiting for its dependencies"
    recorder.events.clear()
    await orch.stop()
    stops = [e.app for e in recorder.events if getattr(e, "new", "") == "stopped"]
    assert stops == ["web", "api", "db"]


async def test_dependency_failure_fails_the_dependent(make_orchestrator,
                                                          recorder: Recorder) -> None:
    orch = make_orchestrator([app("broken", app_path="tests.apps.broken:app", max_restart_count=0),
                              app("web", depends_on=["broken"])])
    await orch.start()
    web = orch.get("web")
    assert web.state is AppState.STARTING  # waiting: requests for it are held meanwhile
    await wait_until(lambda: web.state is AppState.FAILED, what="web to fail")
    assert orch.get("broken").state is AppState.FAILED
    assert web.last_error == "dependency 'broken' is failed" and web.pid is None
    assert recorder.states("web") == ["starting", "failed"]
    messages = [e.text for e in recorder.of(EngineMessage) if e.app == "web"]
    assert messages == ["app 'web' not started: dependency 'broken' is failed"]


async def test_apply_adds_removes_changes_and_keeps_untouched(make_orchestrator,
                                                              tmp_path: Path) -> None:
    keep, change, drop = app("keep"), app("change", env={"V": "1"}), app("drop")
    orch = make_orchestrator([keep, change, drop])
    await orch.start()
    for name in ("keep", "change", "drop"):
        assert await orch.get(name).wait_ready(15)
    pids = {s["name"]: s["pid"] for s in orch.snapshot()}
    drop_pid = pids["drop"]

    new_options = dataclasses.replace(orch.options, apps=[
        keep,
        app("change", env={"V": "2"}),
        app("added"),
        dataclasses.replace(app("moved"), path="/moved"),
    ])
    plan = await orch.apply(new_options, orch.project)
    assert (plan.added, plan.removed, plan.changed) == (("added", "moved"), ("drop",),
                                                         ("change",))
    assert plan.roll == ("change",)
    assert list(orch.supervisors) == ["keep", "change", "added", "moved"]
    assert orch.get("keep").pid == pids["keep"]
    change_sup = orch.get("change")
    assert change_sup.state is AppState.HEALTHY and change_sup.pid != pids["change"]
    r = await get(change_sup, "/env?name=V")
    assert r.json() == {"value": "2"}
    assert await orch.get("added").wait_ready(15)
    assert orch.resolve("/drop/x") is None
    with pytest.raises(ProcessLookupError):
        os.kill(drop_pid, 0)

    # A change that only affects routing keeps the process...
    keep_pid = orch.get("keep").pid
    routed = dataclasses.replace(new_options, apps=[
        dataclasses.replace(keep, hold_requests=1.0), *new_options.apps[1:]])
    plan = await orch.apply(routed, orch.project)
    assert (plan.added, plan.removed, plan.in_place, plan.roll) == ((), (), ("keep",), ())
    assert orch.get("keep").pid == keep_pid
    # ...but a new `path` is a new prefix the app is told (its root_path), like
    # `uvicorn --root-path`: the app rolls over to a process that knows it.
    moved = dataclasses.replace(new_options, apps=[
        dataclasses.replace(keep, path="/kept", hold_requests=1.0), *new_options.apps[1:]])
    plan = await orch.apply(moved, orch.project)
    assert (plan.added, plan.removed, plan.in_place, plan.roll) == ((), (), (), ("keep",))
    assert orch.resolve("/kept/a")[0].name == "keep"
    assert orch.get("keep").pid != keep_pid
    assert (await get(orch.get("keep"), "/echo")).json()["root_path"] == "/kept"


async def test_health_checks_off_means_healthy_once_the_port_accepts(make_orchestrator) -> None:
    # python -m http.server answers 404 on /health: only a TCP check can call it healthy.
    orch = make_orchestrator([app("files", command=[sys.executable, "-m", "http.server",
                                                     "--bind", "127.0.0.1", "$PORT"],
                                  health_check_enabled=False)])
    await orch.start()
    sup = orch.get("files")
    assert await sup.wait_ready(15)
    r = await get(sup, "/")
    assert r.status_code == 200 and "Directory listing" in r.text
    assert (await get(sup, "/health")).status_code == 404
    await wait_until(lambda: orch.health.probes >= 1, what="a probe")
    assert sup.state is AppState.HEALTHY and orch.snapshot()[0]["backend"] == "command"
