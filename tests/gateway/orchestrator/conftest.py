"""Fixtures for orchestrator tests: real app processes on 127.0.0.1, always cleaned up.

Every process group an orchestrator starts is recorded (through its state events and
snapshots); after each test the fixture stops the orchestrators and asserts that no process
of those groups is left.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config.schema import AppConfig
from gateway.events import EventBus
from gateway.orchestrator import Orchestrator
from tests.support.harness import group_members
from tests.support.orchestration import Recorder, make_project


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """Records events and pids; afterwards, no process of those groups may be left."""
    rec = Recorder()
    yield rec
    left = group_members(rec.pids)
    assert not left, f"processes left behind: {left}"


@pytest.fixture
async def make_orchestrator(tmp_path: Path, recorder: Recorder
                            ) -> AsyncIterator[Callable[..., Orchestrator]]:
    """Build orchestrators for this test; they are stopped and checked for leftovers after."""
    made: list[Orchestrator] = []

    def build(apps: list[AppConfig], *, backend: str = "auto", **options: Any) -> Orchestrator:
        opts, project = make_project(tmp_path, apps, **options)
        events = EventBus()
        events.subscribe(recorder)
        orch = Orchestrator(opts, project=project, events=events, default_backend=backend)
        made.append(orch)
        return orch

    yield build
    for orch in made:
        for status in orch.snapshot():
            if status["pid"]:
                recorder.pids.add(status["pid"])
        await orch.stop()
