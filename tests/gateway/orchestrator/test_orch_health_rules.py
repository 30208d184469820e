"""How health is judged (with and without a health route) and probes that never lose a
keep-alive race: real app processes, real probes."""

from __future__ import annotations

import sys

from gateway.events import EngineMessage
from gateway.orchestrator import AppState
from tests.support.harness import TESTS_DIR, wait_until
from tests.support.orchestration import Recorder, app

#: A plain file server: it has no /health route and answers 404 there.
FILE_SERVER = [sys.executable, "-m", "http.server", "$PORT", "--bind", "127.0.0.1"]


async def test_without_a_health_route_any_answer_below_500_is_healthy(
        make_orchestrator, recorder: Recorder) -> None:
    orch = make_orchestrator([app("plain", command=FILE_SERVER)])
    # The same server with the path set explicitly: a 404 there stays a failure.
    strict_orch = make_orchestrator([app("strict", command=FILE_SERVER,
                                         health_check_path="/health", max_restart_count=0)])
    strict_orch.start_timeout = 3.0
    await orch.start()
    await strict_orch.start()
    plain, strict = orch.get("plain"), strict_orch.get("strict")
    assert await plain.wait_ready(15)
    assert orch.snapshot()[0]["health_check"] == "any answer < 500 (no /health route)"
    assert strict_orch.snapshot()[0]["health_check"] == "GET /health"
    said = [e.text for e in recorder.of(EngineMessage) if e.app == "plain"]
    assert any("GET /health -> 404" in t and "set health_check_path" in t for t in said), said

    await wait_until(lambda: strict.state is AppState.FAILED, 15, what="strict app failed")
    assert strict.last_error == "not healthy within 3s (GET /health -> 404)"
    probes = orch.health.probes  # the lenient app keeps passing its probes
    await wait_until(lambda: orch.health.probes >= probes + 3, what="more probes")
    assert plain.state is AppState.HEALTHY and "unhealthy" not in recorder.states("plain")


async def test_probes_never_lose_a_keep_alive_race(make_orchestrator,
                                                   recorder: Recorder) -> None:
    # The app closes a kept-alive connection the moment a second request arrives on it,
    # as one closing idle connections after N s does when the probe interval is N s. A
    # probe on a pooled connection lost that race ("Server disconnected without sending a
    # response") and one failure (retries = 1) restarted a healthy app.
    racy = [sys.executable, str(TESTS_DIR / "apps" / "keepalive_race.py"), "$PORT"]
    orch = make_orchestrator([app("racy", command=racy, health_check_path="/health",
                                  health_check_interval=0.05, health_check_retries=1)])
    await orch.start()
    sup = orch.get("racy")
    assert await sup.wait_ready(15)
    probes = orch.health.probes
    await wait_until(lambda: orch.health.probes >= probes + 10, what="ten more probes")
    assert sup.state is AppState.HEALTHY, sup.last_error
    assert recorder.states("racy") == ["starting", "healthy"], sup.last_error
    assert sup.last_error is None
