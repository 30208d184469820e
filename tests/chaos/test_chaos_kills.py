"""Random SIGKILLs of app processes while clients keep the gateway busy.

The contract under test (SPEC §3, §4): every request is answered within its timeout, with
200 or, while its app is down, 502/503 naming the request id; no connection is dropped
without an answer; every app comes back to healthy; no process of a killed generation
survives it; and when the workbench stops nothing of ours is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import psutil
import pytest

from tests.support.chaos import (
    CHAOS_SECONDS,
    HeadlessGateway,
    LoadClient,
    LoadStats,
    StartGateway,
    answer_problem,
    project_text,
    report,
)
from tests.support.harness import BrokenResponse, TruncatedBody, wait_until

pytestmark = pytest.mark.chaos

#: One app per backend, one of them with two workers (a worker is a separate victim).
APPS: list[dict[str, Any]] = [
    {"name": "alpha", "backend": "granian"},
    {"name": "beta", "backend": "uvicorn", "workers": 2},
    {"name": "gamma", "backend": "hypercorn"},
]
NAMES = [a["name"] for a in APPS]
PROXY_TIMEOUT = 10.0
HOLD = 5.0
#: No request may take longer than its app's longest legitimate wait (held while the app
#: restarts, then proxied) plus slack for a loaded 2-core machine.
CLIENT_TIMEOUT = HOLD + PROXY_TIMEOUT + 5.0
CONCURRENCY = 6
RECOVERY_TIMEOUT = 30.0
APP_ALLOWED = frozenset({200, 502, 503})
BUILTIN_ALLOWED = frozenset({200})


@dataclass
class Kill:
    app: str
    pid: int
    role: str  # leader (the guard), server, worker
    at: float
    recovered_after: float | None = None


async def load_worker(gw: HeadlessGateway, n: int, stop_at: float, stats: LoadStats,
                      builtin_latency: list[float]) -> None:
    """Keep one keep-alive connection busy with app and built-in requests until `stop_at`."""
    loop = asyncio.get_running_loop()
    rng = random.Random(n)
    client = LoadClient(gw.port)
    i = 0
    try:
        while loop.time() < stop_at:
            i += 1
            rid = f"chaos-{n}-{i}"
            app = rng.choice(NAMES)
            roll = rng.random()
            if roll < 0.1:
                method, path, body = "GET", "/health", b""
            elif roll < 0.15:  # a streamed (chunked) response, cut if its app dies
                method, path, body = "GET", f"/{app}/sse?n=2&gap=0.02", b""
            elif roll < 0.3:
                method, path, body = "POST", f"/{app}/echo", b"x" * rng.randrange(1, 4096)
            else:
                method, path, body = "GET", f"/{app}/echo?i={i}", b""
            started = loop.time()
            try:
                response = await client.request(method, path, rid=rid, body=body,
                                                timeout=CLIENT_TIMEOUT)
            except TimeoutError:
                stats.add("timeout", loop.time() - started,
                          f"{method} {path} [{rid}]: no answer within {CLIENT_TIMEOUT:g}s")
                continue
            except TruncatedBody as exc:
                # The app died while its body was on the way: once a head has gone out,
                # cutting the connection is all a proxy can do (SPEC §3, proxy/http.py).
                problem = None if exc.response.status == 200 and not path.startswith(
                    "/health") else f"{method} {path} [{rid}]: {exc}"
                stats.add("truncated", loop.time() - started, problem)
                continue
            except (BrokenResponse, OSError) as exc:
                stats.add("broken", loop.time() - started,
                          f"{method} {path} [{rid}]: {type(exc).__name__}: {exc}")
                continue
            latency = loop.time() - started
            builtin = path == "/health"
            if builtin:
                builtin_latency.append(latency)
            problem = answer_problem(response, rid,
                                     BUILTIN_ALLOWED if builtin else APP_ALLOWED)
            if problem is None and response.status == 200 and "/echo" in path:
                echoed = json.loads(response.body)
                if echoed["headers"].get("x-request-id") != rid or (
                        method == "POST" and len(echoed["body"]) != len(body)):
                    problem = f"wrong echo for {rid}: {response.body[:200]!r}"
            stats.add(str(response.status), latency,
                      None if problem is None else f"{method} {path}: {problem}")
    finally:
        client.close()


def role_of(proc: psutil.Process, leader: int) -> str:
    if proc.pid == leader:
        return "leader"
    try:
        return "server" if proc.ppid() == leader else "worker"
    except psutil.Error:
        return "gone"


async def watch_recovery(gw: HeadlessGateway, kill: Kill, victim: psutil.Process) -> None:
    """How long until the victim is gone, its app healthy and answering through the gateway."""
    loop = asyncio.get_running_loop()
    deadline = kill.at + RECOVERY_TIMEOUT
    while loop.time() < deadline:
        if _gone(victim):
            app = (await gw.metrics())["apps"][kill.app]
            if app["state"] == "healthy":
                probe = await gw.get(f"/{kill.app}/health", timeout=RECOVERY_TIMEOUT)
                if probe.status == 200:
                    kill.recovered_after = loop.time() - kill.at
                    return
        await asyncio.sleep(0.1)


async def killer(gw: HeadlessGateway, stop_at: float, kills: list[Kill],
                 watchers: list[asyncio.Task[None]]) -> None:
    """SIGKILL a random process of a random app (leader, server or worker), at a steady
    pace over the load window; only processes of the groups our gateway started."""
    assert gw.ledger is not None
    loop = asyncio.get_running_loop()
    rng = random.Random()
    count = max(3, int(CHAOS_SECONDS))
    interval = (stop_at - loop.time()) / (count + 1)
    next_at = loop.time() + interval
    while next_at < stop_at:
        await asyncio.sleep(max(0.0, next_at - loop.time()))  # pacing, not waiting
        next_at += interval
        apps = (await gw.metrics())["apps"]
        live = [n for n in NAMES if apps[n]["state"] == "healthy" and apps[n]["pid"]]
        if not live:
            continue
        name = rng.choice(live)
        leader = int(apps[name]["pid"])
        members = await asyncio.to_thread(gw.ledger.members, leader)
        if not members:
            continue
        victim = rng.choice(members)
        kill = Kill(name, victim.pid, role_of(victim, leader), loop.time())
        try:
            victim.kill()
        except psutil.NoSuchProcess:
            continue
        kills.append(kill)
        watchers.append(asyncio.create_task(watch_recovery(gw, kill, victim)))


async def test_random_sigkills_under_load(start_gateway: StartGateway) -> None:
    gw = await start_gateway(project_text(
        apps=APPS, orchestration={"proxy_timeout": PROXY_TIMEOUT, "hold_requests": HOLD}))
    assert gw.ledger is not None
    await gw.wait_apps(NAMES, 60)
    loop = asyncio.get_running_loop()
    stats = LoadStats()
    builtin_latency: list[float] = []
    kills: list[Kill] = []
    watchers: list[asyncio.Task[None]] = []
    started = loop.time()
    stop_at = started + CHAOS_SECONDS
    await asyncio.gather(
        killer(gw, stop_at, kills, watchers),
        *(load_worker(gw, n, stop_at, stats, builtin_latency) for n in range(CONCURRENCY)))
    await asyncio.gather(*watchers)
    apps = await gw.wait_apps(NAMES, RECOVERY_TIMEOUT)

    # No process of a killed generation outlives it: only the current groups are left (the
    # sweep of a group whose leader just died may take a moment).
    current = {int(apps[n]["pid"]) for n in NAMES} | {gw.pid}

    async def orphans() -> list[str]:
        assert gw.ledger is not None
        await asyncio.to_thread(gw.ledger.sample)
        left = await asyncio.to_thread(gw.ledger.leftovers)
        return [f"{p.pid} {_name(p)} (group {_group(p)})" for p in left
                if _group(p) not in current]

    with contextlib.suppress(AssertionError):
        await wait_until(lambda: _none(orphans()), 5.0, what="orphans to go")
    left_over = await orphans()

    recovery = [k.recovered_after for k in kills if k.recovered_after is not None]
    summary = stats.summary()
    report("sigkill_under_load", **summary, kills=len(kills),
           kills_by_role=dict(Counter(k.role for k in kills)),
           recovery_max_s=round(max(recovery, default=0.0), 3),
           recovery_mean_s=round(sum(recovery) / len(recovery), 3) if recovery else 0.0,
           restarts={n: apps[n]["restarts"] for n in NAMES},
           builtin_max_s=round(max(builtin_latency, default=0.0), 3),
           failure_samples=stats.failures[:10], orphans=left_over)

    assert kills, "nothing was killed"
    assert stats.requests > CONCURRENCY * 5, summary
    assert not stats.failures, (len(stats.failures), stats.failures[:10], summary)
    unrecovered = [k for k in kills if k.recovered_after is None]
    assert not unrecovered, unrecovered
    assert not left_over, left_over
    assert stats.by_status["200"] > stats.requests // 2, summary
    assert max(builtin_latency, default=0.0) < 2.0, "the gateway's /health was slow"


def _gone(proc: psutil.Process) -> bool:
    """Dead or a zombie; a process reaped between two looks is gone too."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return "(exited)"


def _group(proc: psutil.Process) -> int:
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return -1


async def _none(items: Awaitable[list[str]]) -> bool:
    return not await items
