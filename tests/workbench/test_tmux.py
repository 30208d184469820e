"""The real console script in a real terminal: tmux runs `pyserve-tui -c workbench.toml`,
we wait for the apps to show healthy, press r, then q, and check that nothing is left."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.harness import free_port, free_port_range, left_running, poll
from tests.support.wb import real_project_text

pytestmark = pytest.mark.slow

TMUX = shutil.which("tmux")
SCRIPT = Path(sys.executable).with_name("pyserve-tui")


def tmux(*args: str) -> str:
    assert TMUX is not None
    done = subprocess.run([TMUX, *args], capture_output=True, text=True, timeout=10)
    return done.stdout


def wait_for(predicate: Callable[[], bool], what: str, timeout: float, screen: Callable[[], str]
             ) -> None:
    """`harness.poll`, showing the terminal's screen when time runs out."""
    try:
        poll(predicate, timeout, interval=0.2, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; screen:\n{screen()}") from None


@pytest.fixture
def session(tmp_path: Path) -> Iterator[str]:
    name = f"pyserve-tui-test-{tmp_path.name}"
    yield name
    subprocess.run([TMUX or "tmux", "kill-session", "-t", name], capture_output=True,
                   timeout=10)


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed")
@pytest.mark.skipif(not SCRIPT.exists(), reason="the pyserve-tui console script is not "
                    "installed (pip install -e .)")
def test_pyserve_tui_in_tmux_restart_then_quit(tmp_path: Path, session: str) -> None:
    config = tmp_path / "workbench.toml"
    config.write_text(real_project_text(free_port(), free_port_range()), encoding="utf-8")
    command = f"cd {tmp_path} && exec {SCRIPT} -c {config}"
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", command)

    def screen() -> str:
        return tmux("capture-pane", "-p", "-t", session)

    def server_pid() -> int | None:
        out = tmux("list-panes", "-t", session, "-F", "#{pane_pid}").strip()
        return int(out) if out.isdigit() else None

    wait_for(lambda: screen().count("healthy") >= 2, "two healthy apps", 60, screen)
    workbench = psutil.Process(server_pid() or 0)
    app_procs = workbench.children(recursive=True)
    assert app_procs, "the apps run as children of the workbench"

    def restarts_of_api() -> str:
        for line in screen().splitlines():
            cells = line.replace("│", " ").split()
            if cells[:1] == ["api"]:
                return " ".join(cells)
        return ""

    tmux("send-keys", "-t", session, "r")
    wait_for(lambda: "restarting" in screen() or "restart 1" in screen()
             or " 1 " in restarts_of_api(), "the restart to show", 30, screen)
    wait_for(lambda: screen().count("healthy") >= 2, "healthy again after r", 60, screen)
    all_procs = {p.pid: p for p in workbench.children(recursive=True) + app_procs}

    tmux("send-keys", "-t", session, "q")
    wait_for(lambda: not workbench.is_running() or workbench.status() == psutil.STATUS_ZOMBIE,
             "pyserve-tui to exit", 60, screen)
    poll(lambda: not left_running(all_procs.values()), 15, interval=0.2,
         what=f"every process to be gone: {all_procs}")
