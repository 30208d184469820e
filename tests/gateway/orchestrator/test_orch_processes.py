"""Process hygiene: workers, stubborn programs and a killed workbench leave nothing behind."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from gateway.orchestrator import AppState
from tests.support.harness import ROOT, TESTS_DIR, group_members, wait_until
from tests.support.orchestration import app


def group_of(pgid: int) -> list[psutil.Process]:
    return group_members({pgid})


@pytest.mark.parametrize("backend", ["granian", "uvicorn", "hypercorn"])
async def test_multi_worker_app_leaves_no_process(make_orchestrator, backend: str) -> None:
    orch = make_orchestrator([app("multi", workers=2, backend=backend)])
    await orch.start()
    sup = orch.get("multi")
    assert await sup.wait_ready(20)
    pgid = sup.pid
    # guard + server + 2 workers, all in the app's own process group (not ours).
    members = await wait_until(lambda: len(group_of(pgid)) >= 4 and group_of(pgid),
                               10, what="workers to start")
    assert os.getpgid(pgid) != os.getpgrp()
    status = orch.snapshot()[0]
    assert status["rss_bytes"] > 0
    await orch.stop()
    assert sup.state is AppState.STOPPED
    assert not group_of(pgid), [p.pid for p in members]


async def test_sigterm_ignored_means_sigkill_after_shutdown_timeout(make_orchestrator) -> None:
    orch = make_orchestrator([app("stubborn", env={"IGNORE_SIGTERM": "1"},
                                  command=[sys.executable,
                                           str(TESTS_DIR / "apps/command_server.py")])],
                             shutdown_timeout=0.5)
    await orch.start()
    sup = orch.get("stubborn")
    assert await sup.wait_ready(15)
    pgid = sup.pid
    started = time.monotonic()
    await orch.stop_app("stubborn")
    took = time.monotonic() - started
    assert 0.5 <= took < 3.0
    assert not group_of(pgid)


PARENT_SCRIPT = """
import asyncio, sys
from pathlib import Path
sys.path[:0] = [{root!r}]
from gateway.config.schema import (AppConfig, ExtensionConfig, LoggingConfig,
                                   OrchestrationOptions, ProjectConfig, ServerConfig)
from gateway.events import EventBus
from gateway.orchestrator import Orchestrator

async def main():
    apps = [AppConfig(name="orphan", path="/o", app_path="tests.apps.basic:app",
                      module_path={root!r}, workers=2, backend={backend!r})]
    opts = OrchestrationOptions(port_range={ports!r}, apps=apps)
    project = ProjectConfig(path=Path({folder!r}) / "workbench.toml", server=ServerConfig(),
                            logging=LoggingConfig(),
                            extensions=(ExtensionConfig("process_orchestration", opts, 0),))
    orch = Orchestrator(opts, project=project, events=EventBus(), default_backend="auto")
    await orch.start()
    assert await orch.get("orphan").wait_ready(20)
    print(orch.get("orphan").pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.parametrize("backend", ["granian", "uvicorn"])
async def test_killed_workbench_takes_its_apps_down(tmp_path: Path, backend: str) -> None:
    from tests.support.orchestration import port_range

    script = tmp_path / "workbench_stand_in.py"
    script.write_text(PARENT_SCRIPT.format(
        root=str(ROOT), backend=backend,
        ports=port_range(), folder=str(tmp_path)))
    parent = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdout=asyncio.subprocess.PIPE)
    pgid = None
    try:
        assert parent.stdout is not None
        line = await asyncio.wait_for(parent.stdout.readline(), 30)
        pgid = int(line)
        await wait_until(lambda: len(group_of(pgid)) >= 4, 10, what="app workers")
        parent.send_signal(signal.SIGKILL)
        await parent.wait()
        await wait_until(lambda: not group_of(pgid), 10, what="the app group to die")
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
        if pgid is not None:  # never leave anything, even when the test fails
            for proc in group_of(pgid):
                proc.kill()


@pytest.mark.chaos
@pytest.mark.parametrize("backend", ["granian", "uvicorn"])
async def test_killing_any_process_of_the_group_heals(make_orchestrator, backend: str) -> None:
    """SIGKILL the leader, the server or a worker, round after round: the app comes back
    each time (through its exit or its health checks) and nothing is left at the end."""
    orch = make_orchestrator([app("chaos", workers=2, backend=backend, max_restart_count=10)])
    await orch.start()
    sup = orch.get("chaos")
    assert await sup.wait_ready(20)
    leaders: set[int] = set()

    def serving_without(victim: int) -> bool:
        if sup.state is not AppState.HEALTHY or sup.pid is None:
            return False
        members = {p.pid for p in group_of(sup.pid)}
        return len(members) >= 4 and victim not in members

    for round_ in range(4):
        leader = sup.pid
        assert leader is not None
        leaders.add(leader)
        members = await wait_until(lambda: len(group_of(sup.pid or 0)) >= 4
                                   and group_of(sup.pid or 0), 10, what="workers")
        victim = members[round_ % len(members)] if round_ else psutil.Process(leader)
        victim.kill()
        await wait_until(lambda v=victim.pid: serving_without(v), 30,
                         what=f"recovery in round {round_}")
    assert sup.restarts >= 1
    leaders.add(sup.pid or 0)
    await orch.stop()
    assert not group_members(leaders)
