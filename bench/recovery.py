"""Crash to healthy: SIGKILL an orchestrated app and time its way back.

    python bench/recovery.py [--quick]

App start: the app process is started the way the orchestrator starts it
(`gateway.orchestrator.process.spawn`, same runner, backend and app) and timed from the spawn
to its first 200 on the health path, polled every 10 ms; the median of several cold starts.

Crash: a headless gateway runs `bench.apps:plaintext` as an orchestrated app with
`restart_delay = 0.5`. Its process group is SIGKILLed; from that instant two clocks run:
until `/metrics` shows the app healthy again with a new pid (polled every 10 ms), and until
the first 200 through the gateway (a client sending `GET /app/` on new connections, one after
the other; requests arriving while the app restarts are held by the gateway). A fresh gateway
is used for each crash: a second crash within 60 s would double the delay by design.
Target: crash to healthy <= restart_delay + app start + 200 ms.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    HOST,
    Section,
    Target,
    bench_app,
    free_port,
    http_get,
    standalone,
    start_gateway,
)

RESTART_DELAY = 0.5
SLACK = 0.2


def _healthy_now(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as s:
            s.sendall(f"GET /health HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
                      .encode())
            return s.recv(12).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


async def _cold_start(backend: str) -> float:
    from gateway.orchestrator.process import spawn
    from gateway.orchestrator.protocol import ChildSpec, ServerSettings

    port = free_port()
    spec = ChildSpec(app="cold", app_path="bench.apps:plaintext", app_type="asgi",
                     module_path=str(ROOT), sys_path=(str(ROOT),), backend=backend,
                     host=HOST, port=port, cwd=str(ROOT),
                     server=ServerSettings(event_loop="auto", http="auto", backlog=1024,
                                           keep_alive_timeout=5, graceful_timeout=5.0))
    started = time.monotonic()
    proc = await spawn(spec, on_line=lambda *a: None, on_exit=lambda p: None)
    try:
        deadline = started + 30
        while not await asyncio.to_thread(_healthy_now, port):
            if proc.exited or time.monotonic() > deadline:
                raise RuntimeError(f"the cold-start app did not come up: {proc!r}")
            await asyncio.sleep(0.01)
        return time.monotonic() - started
    finally:
        await proc.terminate(10)


def cold_starts(n: int, backend: str = "granian") -> list[float]:
    return [asyncio.run(_cold_start(backend)) for _ in range(n)]


def _ms_since(t: float) -> int:
    return round((time.monotonic() - t) * 1000)


def _answers(statuses: list[tuple[int, int | str]]) -> str:
    """`19x 502 (4-15 ms after the kill)`, per kind of answer."""
    kinds: dict[int | str, list[int]] = {}
    for ms, what in statuses:
        kinds.setdefault(what, []).append(ms)
    return ", ".join(f"{len(times)}x {what} ({min(times)}–{max(times)} ms after the kill)"
                     for what, times in kinds.items()) or "none"


def crash_once(i: int) -> dict[str, Any]:
    gw = start_gateway(f"crash-{i}", backend="granian",
                       apps=[bench_app("app", "/app")],
                       orchestration={"restart_delay": RESTART_DELAY, "hold_requests": 10.0})
    try:
        old_pid = gw.app("app")["pid"]
        statuses: list[tuple[int, int | str]] = []  # (ms after the kill, what came back)
        first_200: list[float] = []
        killed = threading.Event()

        def client() -> None:
            killed.wait()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    status, _ = http_get(gw.port, "/app/", 15)
                except OSError as exc:
                    statuses.append((_ms_since(t_kill), type(exc).__name__))
                    continue
                if status == 200:
                    first_200.append(time.monotonic())
                    return
                statuses.append((_ms_since(t_kill), status))

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        t_kill = time.monotonic()  # set before the client may read it (it waits for killed)
        os.killpg(old_pid, signal.SIGKILL)
        killed.set()
        healthy_at = None
        deadline = t_kill + 30
        while time.monotonic() < deadline:
            app = gw.app("app")
            if app.get("state") == "healthy" and app.get("pid") not in (None, old_pid):
                healthy_at = time.monotonic()
                break
            time.sleep(0.01)
        thread.join(35)
        restarts = gw.app("app").get("restarts")
    finally:
        gw.stop()
    return {"to_healthy_s": healthy_at - t_kill if healthy_at else None,
            "to_first_200_s": first_200[0] - t_kill if first_200 else None,
            "non_200_before": statuses, "restarts": restarts}


def recovery(quick: bool = False) -> Section:
    starts = cold_starts(3 if quick else 5)
    crashes = [crash_once(i) for i in range(2 if quick else 5)]
    app_start = statistics.median(starts)
    budget = RESTART_DELAY + app_start + SLACK
    healthy = [c["to_healthy_s"] for c in crashes if c["to_healthy_s"] is not None]
    first = [c["to_first_200_s"] for c in crashes if c["to_first_200_s"] is not None]
    section = Section("Crash to healthy")
    section.markdown = [
        f"App start (orchestrator's runner, granian, spawn to first 200 on /health, "
        f"{len(starts)} cold starts): median {app_start * 1000:.0f} ms "
        f"(min {min(starts) * 1000:.0f}, max {max(starts) * 1000:.0f}).",
        f"Crash: SIGKILL of the app's process group, restart_delay {RESTART_DELAY} s, "
        f"{len(crashes)} crashes, a fresh gateway each; budget = restart_delay + app start + "
        f"{SLACK * 1000:.0f} ms = {budget * 1000:.0f} ms.", "",
        "| crash | to healthy in /metrics ms | to first 200 via gateway ms | "
        "non-200 answers meanwhile |", "|---|---|---|---|"]
    for n, c in enumerate(crashes, 1):
        h = f"{c['to_healthy_s'] * 1000:.0f}" if c["to_healthy_s"] is not None else "never"
        f = f"{c['to_first_200_s'] * 1000:.0f}" if c["to_first_200_s"] is not None else "never"
        section.markdown.append(f"| {n} | {h} | {f} | {_answers(c['non_200_before'])} |")
    ok = len(healthy) == len(crashes)
    med_h = statistics.median(healthy) if healthy else float("nan")
    med_f = statistics.median(first) if first else float("nan")
    section.targets.append(Target(
        "crash to healthy (/metrics)", f"<= restart_delay + app start + 200 ms "
        f"({budget * 1000:.0f} ms)", f"median {med_h * 1000:.0f} ms, worst "
        f"{max(healthy, default=float('nan')) * 1000:.0f} ms ({med_h / budget:.2f}x budget)",
        ok and med_h <= budget))
    section.targets.append(Target(
        "crash to first 200 (gateway)", f"<= {budget * 1000:.0f} ms",
        f"median {med_f * 1000:.0f} ms ({med_f / budget:.2f}x budget)",
        len(first) == len(crashes) and med_f <= budget))
    section.data = {"restart_delay_s": RESTART_DELAY, "app_start_s": starts,
                    "budget_s": budget, "crashes": crashes}
    return section


if __name__ == "__main__":
    sys.exit(standalone(recovery, "recovery"))
