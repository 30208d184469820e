"""What a supervisor tells listeners: every state change carries `AppState` members, never
strings, so listeners compare against the enum (the TUI, headless logging)."""

from __future__ import annotations

from collections.abc import Callable

from gateway.events import AppStateChanged
from gateway.orchestrator import Orchestrator
from gateway.orchestrator.states import AppState
from tests.support.orchestration import Recorder, app


async def test_state_changes_carry_the_enum(make_orchestrator: Callable[..., Orchestrator],
                                            recorder: Recorder) -> None:
    orch = make_orchestrator([app("api")])
    await orch.start()
    assert await orch.get("api").wait_ready(30)
    await orch.stop_app("api")
    changes = recorder.of(AppStateChanged)
    assert [(e.old, e.new) for e in changes] == [
        (AppState.STOPPED, AppState.STARTING), (AppState.STARTING, AppState.HEALTHY),
        (AppState.HEALTHY, AppState.STOPPED)]
    assert all(type(e.old) is AppState and type(e.new) is AppState for e in changes)
