"""The orchestrator's pure parts: state table, backoff, ports, logs, routing, markers."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gateway.errors import AppError
from gateway.events import EventBus
from gateway.orchestrator import Orchestrator
from gateway.orchestrator.backoff import BackoffPolicy
from gateway.orchestrator.logs import LogBuffer, LogLine, merge_by_time
from gateway.orchestrator.ports import PortAllocator, port_is_free
from gateway.orchestrator.protocol import (
    RID_END,
    RID_START,
    ChildSpec,
    split_request_id,
)
from gateway.orchestrator.states import (
    TRANSITIONS,
    AppState,
    InvalidTransition,
    check_transition,
)
from tests.support.orchestration import app, make_project, port_range


def test_every_state_has_transitions_and_can_stop() -> None:
    assert set(TRANSITIONS) == set(AppState)
    for state, targets in TRANSITIONS.items():
        if state is not AppState.STOPPED:
            assert AppState.STOPPED in targets, state
    check_transition("a", AppState.STOPPED, AppState.STARTING)
    with pytest.raises(InvalidTransition, match="cannot go from stopped to healthy"):
        check_transition("a", AppState.STOPPED, AppState.HEALTHY)
    with pytest.raises(InvalidTransition):
        check_transition("a", AppState.FAILED, AppState.HEALTHY)


def test_backoff_doubles_caps_and_gives_up() -> None:
    policy = BackoffPolicy(1.0, 7, jitter=0.0)
    delays = [policy.failure(now=0.0) for _ in range(7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert policy.failure(now=0.0) is None  # the 8th failure in a row: give up


def test_backoff_jitter_is_small_and_capped() -> None:
    policy = BackoffPolicy(1.0, 10, jitter=0.1)
    for n in range(1, 10):
        base = min(30.0, 2 ** (n - 1))
        assert base <= policy.delay_for(n) <= min(30.0, base * 1.1)


def test_backoff_streak_resets_after_healthy_period_and_on_reset() -> None:
    policy = BackoffPolicy(0.5, 2, jitter=0.0)
    assert policy.failure(now=0.0) == 0.5
    assert policy.failure(now=1.0) == 1.0
    policy.healthy(now=2.0)
    assert policy.failure(now=30.0) is None  # healthy for only 28 s: the streak stands
    policy.healthy(now=100.0)
    assert policy.failure(now=160.0) == 0.5  # 60 s healthy: counting starts again
    policy.reset()
    assert policy.streak == 0


def test_ports_skip_taken_and_in_use() -> None:
    lo, hi = port_range()  # below the ephemeral range: nobody else hands these out
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", lo))
        busy.listen()
        assert not port_is_free(lo)
        ports = PortAllocator((lo, hi))
        first = ports.allocate("a")
        assert lo < first <= hi
        second = ports.allocate("b")
        assert second != first and lo < second <= hi
        with pytest.raises(AppError, match="already used by app 'a'"):
            ports.allocate("c", fixed=first)
        with pytest.raises(AppError, match="already in use"):
            ports.allocate("c", fixed=lo)
        assert ports.allocate("a", fixed=first) == first  # its own port again is fine
        ports.release(first)
        assert ports.allocate("c", fixed=first) == first
        assert f"[{lo}, {hi}]" in repr(ports)


def test_ports_exhausted_names_the_app() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        used = busy.getsockname()[1]
        ports = PortAllocator((used, used))
        with pytest.raises(AppError, match="app 'x': no free port"):
            ports.allocate("x")


def test_log_buffer_is_bounded_and_merges_by_time() -> None:
    a, b = LogBuffer("a", maxlen=3), LogBuffer("b")
    for i in range(5):
        a.append(LogLine(float(i * 2), "a", "stdout", f"a{i}"))
    b.append(LogLine(5.0, "b", "stderr", "b0"))
    assert [ln.line for ln in a.lines()] == ["a2", "a3", "a4"]
    assert [ln.line for ln in merge_by_time([a, b])] == ["a2", "b0", "a3", "a4"]


def test_request_id_marker_round_trip() -> None:
    assert split_request_id(f"{RID_START}abc-1{RID_END}hello") == ("abc-1", "hello")
    assert split_request_id("plain line") == (None, "plain line")
    assert split_request_id(f"{RID_START}unterminated") == (None, f"{RID_START}unterminated")


def test_child_spec_round_trips_and_its_key_ignores_the_port(tmp_path: Path) -> None:
    apps = [app("api", "/api", env={"A": "1"}),
            app("cmd", "/cmd", command=["python", "-m", "x", "$PORT"])]
    opts, project = make_project(tmp_path, apps)
    orch = Orchestrator(opts, project=project, events=EventBus(), default_backend="uvicorn")
    for name in ("api", "cmd"):
        sup = orch.get(name)
        spec = sup.child_spec(4321, sup.config)
        assert ChildSpec.from_json(spec.to_json()) == spec
        assert spec.without_port() == sup.process_key() != spec
        assert spec.prefix == f"/{name}" and spec.backend == ("command" if name == "cmd"
                                                              else "uvicorn")
    assert orch.get("api").process_key() != orch.get("api").process_key(
        app("api", "/api", env={"A": "2"}))
    with pytest.raises(ValueError, match="not an app process spec"):
        ChildSpec.from_json('{"app": "x", "surprise": 1}')


def test_resolve_longest_prefix_at_segment_boundary(tmp_path: Path) -> None:
    apps = [app("root", "/"), app("api", "/api"), app("v2", "/api/v2/"),
            app("keep", "/keep", strip_path=False)]
    opts, project = make_project(tmp_path, apps)
    orch = Orchestrator(opts, project=project, events=EventBus(), default_backend="auto")

    def where(path: str) -> tuple[str, str] | None:
        found = orch.resolve(path)
        return (found[0].name, found[1]) if found else None

    assert where("/api") == ("api", "/")
    assert where("/api/") == ("api", "/")
    assert where("/api/users") == ("api", "/users")
    assert where("/apix") == ("root", "/apix")
    assert where("/api/v2") == ("v2", "/")
    assert where("/api/v2/x/y") == ("v2", "/x/y")
    assert where("/api/v22") == ("api", "/v22")
    assert where("/keep/a") == ("keep", "/keep/a")
    assert where("/") == ("root", "/")
    assert orch.get("api").name == "api"
    with pytest.raises(AppError, match="no app named 'nope'"):
        orch.get("nope")
    assert "api=stopped" in repr(orch)
    assert "'api' stopped" in repr(orch.get("api"))


def test_resolve_without_catch_all(tmp_path: Path) -> None:
    opts, project = make_project(tmp_path, [app("api", "/api")])
    orch = Orchestrator(opts, project=project, events=EventBus(), default_backend="auto")
    assert orch.resolve("/other") is None
    assert orch.snapshot()[0]["state"] == "stopped"
    assert orch.snapshot()[0]["health"] == "-"
