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
from chaos_support import (
    CHAOS_SECONDS,
    HeadlessGateway,
    LoadClient,
    LoadStats,
    answer_problem,
    project_text,
    pyserve_command,
    report,
)
from conftest import StartGateway

pytestmark = pytest.mark.chaos

PROXY_TIMEOUT = 1.5
#: What "promptly" means for the gateway and a healthy app on a loaded 2-core CI machine
#: (typically a few milliseconds).
PROMPT = 1.0
#: A 504 must come after proxy_timeout, and not much later.
LATE = 3.0
HUNG = {"name": "hung", "proxy_timeout": PROXY_TIMEOUT, "shutdown_timeout": 1.0,
        "health_check_interval": 0.5, "health_check_timeout": 1.0, "health_check_retries": 3}


class Responsiveness:
    """Keeps asking the gateway's /health and a healthy app, noting the slowest answer."""

    def __init__(self, gw: HeadlessGateway) -> None:
        self.gw = gw
        self.stats = LoadStats()
        self.slowest = 0.0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        client = LoadClient(self.gw.port)
        i = 0
        try:
            while not self._stop.is_set():
                for path in ("/health", "/other/echo"):
                    i += 1
                    rid = f"prompt-{i}"
                    started = loop.time()
                    try:
                        response = await client.request("GET", path, rid=rid, timeout=10.0)
                    except Exception as exc:  # a timeout, a cut connection: all failures
                        self.stats.add("error", loop.time() - started, f"{path}: {exc!r}")
                        continue
                    took = loop.time() - started
                    self.slowest = max(self.slowest, took)
                    problem = answer_problem(response, rid, frozenset({200}))
                    if problem is None and took > PROMPT:
                        problem = f"{path} took {took:.2f}s"
                    self.stats.add(str(response.status), took, problem)
                # A probe every 20 ms: often enough to see a stall, light on the CPU.
                try:
                    async with asyncio.timeout(0.02):
                        await self._stop.wait()
                except TimeoutError:
                    pass
        finally:
            client.close()

    def __enter__(self) -> Responsiveness:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    async def finish(self) -> LoadStats:
        self._stop.set()
        if self._task is not None:
            await self._task
        return self.stats


async def hung_request(gw: HeadlessGateway, path: str, rid: str,
                       timeout: float = 20.0) -> tuple[int | str, float, str | None]:
    """(status or what went wrong, seconds, problem or None) for one request."""
    loop = asyncio.get_running_loop()
    client = LoadClient(gw.port)
    started = loop.time()
    try:
        response = await client.request("GET", path, rid=rid, timeout=timeout)
    except Exception as exc:
        return type(exc).__name__, loop.time() - started, f"{path}: {exc!r}"
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
    concurrent = max(10, int(CHAOS_SECONDS * 4))

    # 1. The app takes requests and never answers them.
    with Responsiveness(gw) as prompt:
        results = await asyncio.gather(*(
            hung_request(gw, "/hung/slow?s=600", f"hang-{i}") for i in range(concurrent)),
            control_status(gw))
        answers, (status_code, status_took) = results[:-1], results[-1]
        stats = await prompt.finish()
    for status, took, problem in answers:  # type: ignore[misc]
        assert problem is None and status == 504, (status, problem)
        assert PROXY_TIMEOUT - 0.1 <= took <= PROXY_TIMEOUT + LATE, took
    assert status_code == 0 and status_took < 10, (status_code, status_took)
    assert not stats.failures, stats.failures[:5]
    assert stats.requests >= 10
    after = (await gw.metrics())["apps"]
    assert after["hung"]["state"] == "healthy" and after["hung"]["pid"] == frozen_pid
    hang_summary = {"hung_requests": len(answers), "prompt": stats.summary(),
                    "control_status_s": round(status_took, 3)}

    # 2. The whole process group freezes: connections are accepted by the kernel, never read.
    assert gw.ledger is not None
    members = await asyncio.to_thread(gw.ledger.members, frozen_pid)
    assert members
    loop = asyncio.get_running_loop()
    with Responsiveness(gw) as prompt:
        os.killpg(frozen_pid, signal.SIGSTOP)  # an app group our gateway started
        frozen_at = loop.time()
        first_wave = await asyncio.gather(*(
            hung_request(gw, "/hung/echo", f"frozen-{i}") for i in range(concurrent)))
        apps = await gw.wait_apps(["hung"], 30)
        recovered_after = loop.time() - frozen_at
        stats = await prompt.finish()
    for status, took, problem in first_wave:
        assert problem is None and status == 504, (status, problem)
        assert PROXY_TIMEOUT - 0.1 <= took <= PROXY_TIMEOUT + LATE, took
    assert not stats.failures, stats.failures[:5]
    assert int(apps["hung"]["pid"]) != frozen_pid
    assert apps["other"]["pid"] == other_pid  # untouched by all of this
    # The stopped processes were killed (SIGTERM stays pending on a stopped process).
    left = await asyncio.to_thread(gw.ledger.members, frozen_pid)
    assert not left, [p.pid for p in left]
    response = await gw.get("/hung/echo")
    assert response.status == 200
    report("hung_app", **hang_summary, frozen_requests=len(first_wave),
           frozen_prompt=stats.summary(), frozen_recovered_s=round(recovered_after, 3),
           states=gw.app_states("hung"))

