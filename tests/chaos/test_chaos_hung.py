"""A hung app: requests to it end in 504 after its proxy_timeout, and nothing else waits.

Two kinds of hang: the app accepts a request and never answers it (its process stays
healthy), and the whole process group freezes (SIGSTOP: the kernel still accepts
connections, nobody reads them, health checks time out). Meanwhile the gateway's own
/health, another app and the control channel must answer promptly; the frozen app must be
replaced (a stopped process ignores SIGTERM, so this needs the SIGKILL) and leave nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from tests.support.chaos import (
    CHAOS_SECONDS,
    Bystander,
    HeadlessGateway,
    LoadClient,
    StartGateway,
    answer_problem,
    project_text,
    pyserve_command,
    report,
)

pytestmark = pytest.mark.chaos

PROXY_TIMEOUT = 1.5
#: What "promptly" means for the gateway and a healthy app on a loaded 2-core CI machine
#: (typically a few milliseconds).
PROMPT = 1.0
#: A 504 must come after proxy_timeout, and not much later.
LATE = 3.0
HUNG = {"name": "hung", "proxy_timeout": PROXY_TIMEOUT, "shutdown_timeout": 1.0,
        "health_check_interval": 0.5, "health_check_timeout": 1.0, "health_check_retries": 3}


def others(gw: HeadlessGateway) -> Bystander:
    """The gateway's own /health and a healthy app, asked every 20 ms meanwhile."""
    return Bystander(gw.port, ("/health", "/other/echo"), prompt=PROMPT)


async def hung_request(gw: HeadlessGateway, path: str, rid: str,
                       timeout: float = 20.0) -> tuple[int, float, str | None]:
    """(status, seconds, what is wrong or None) for one request (status 0: no answer)."""
    loop = asyncio.get_running_loop()
    client = LoadClient(gw.port)
    started = loop.time()
    try:
        response = await client.request("GET", path, rid=rid, timeout=timeout)
    except Exception as exc:  # a timeout or a cut connection
        return 0, loop.time() - started, f"{path}: {exc!r}"
    finally:
        client.close()
    took = loop.time() - started
    return response.status, took, answer_problem(response, rid,
                                                 frozenset({200, 502, 503, 504}))


async def control_status(gw: HeadlessGateway) -> tuple[int, float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    proc = await asyncio.create_subprocess_exec(
        *pyserve_command(), "status", "-c", str(gw.path), cwd=gw.folder,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(20):
            await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode if proc.returncode is not None else -1, loop.time() - started


async def test_hung_app_times_out_and_the_workbench_stays_responsive(
        start_gateway: StartGateway) -> None:
    gw = await start_gateway(project_text(apps=[HUNG, {"name": "other"}]))
    apps = await gw.wait_apps(["hung", "other"], 60)
    other_pid = apps["other"]["pid"]
    frozen_pid = int(apps["hung"]["pid"])
    concurrent = 10 if CHAOS_SECONDS <= 10 else 50

    # 1. The app takes requests and never answers them: waves of them, for half the time.
    loop = asyncio.get_running_loop()
    hang_until = loop.time() + CHAOS_SECONDS / 2
    answers: list[tuple[int, float, str | None]] = []
    async with others(gw) as prompt:
        status_task = asyncio.create_task(control_status(gw))
        while not answers or loop.time() < hang_until:
            answers += await asyncio.gather(*(
                hung_request(gw, "/hung/slow?s=600", f"hang-{len(answers) + i}")
                for i in range(concurrent)))
        status_code, status_took = await status_task
    for status, took, problem in answers:
        assert problem is None and status == 504, (status, problem)
        assert PROXY_TIMEOUT - 0.1 <= took <= PROXY_TIMEOUT + LATE, took
    assert status_code == 0 and status_took < 10, (status_code, status_took)
    after = (await gw.metrics())["apps"]
    assert after["hung"]["state"] == "healthy" and after["hung"]["pid"] == frozen_pid
    hang_summary = {"hung_requests": len(answers), "prompt": prompt.stats.summary(),
                    "control_status_s": round(status_took, 3)}

    # 2. The whole process group freezes: connections are accepted by the kernel, never read.
    assert gw.ledger is not None
    members = await asyncio.to_thread(gw.ledger.members, frozen_pid)
    assert members
    async with others(gw) as prompt:
        os.killpg(frozen_pid, signal.SIGSTOP)  # an app group our gateway started
        frozen_at = loop.time()
        first_wave = await asyncio.gather(*(
            hung_request(gw, "/hung/echo", f"frozen-{i}") for i in range(concurrent)))
        apps = await gw.wait_apps(["hung"], 30)
        recovered_after = loop.time() - frozen_at
    for status, took, problem in first_wave:
        assert problem is None and status == 504, (status, problem)
        assert PROXY_TIMEOUT - 0.1 <= took <= PROXY_TIMEOUT + LATE, took
    assert int(apps["hung"]["pid"]) != frozen_pid
    assert apps["other"]["pid"] == other_pid  # untouched by all of this
    # The stopped processes were killed (SIGTERM stays pending on a stopped process).
    left = await asyncio.to_thread(gw.ledger.members, frozen_pid)
    assert not left, [p.pid for p in left]
    response = await gw.get("/hung/echo")
    assert response.status == 200
    report("hung_app", **hang_summary, frozen_requests=len(first_wave),
           frozen_prompt=prompt.stats.summary(), frozen_recovered_s=round(recovered_after, 3),
           states=gw.app_states("hung"))

