"""Health probes: an HTTP GET through one shared client, or a TCP connect.

Every HTTP probe uses a new connection and says ``Connection: close``, as Kubernetes'
kubelet does (its HTTP prober disables keep-alive). A pooled connection would sit idle for a
whole probe interval, and an app that closes idle connections after about that long (5 s is
a common keep-alive timeout, and was our example's interval) closes it just as the next
probe is written on it: "Server disconnected without sending a response", reported as ill
health of a perfectly healthy app. A probe on a fresh connection cannot meet that race.

How an answer is judged:

* an explicit ``health_check_path``: healthy only when it answers 200;
* no ``health_check_path`` (``/health`` is probed): any answer below 500 is healthy, so an
  app without a health route (most Flask and Django apps) is judged by whether it answers
  at all; the rule in force is reported (``any answer < 500 (no /health route)``);
* health checks disabled: the port accepting a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import httpx

#: The path probed when an app sets none.
DEFAULT_HEALTH_PATH = "/health"
TCP_RULE = "TCP connect"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    #: What happened, ready to show as a cause: "GET /health -> 500", "... timed out after 5s".
    detail: str
    #: How this answer was judged, for the UI: "GET /health", "any answer < 500 (...)".
    rule: str
    #: Judged by the lenient rule (no health_check_path, and the app's /health is not 200).
    lenient: bool = False


def lenient_rule(path: str, status: int) -> str:
    if status == 404:
        return f"any answer < 500 (no {path} route)"
    return f"any answer < 500 ({path} answers {status})"


class HealthChecker:
    """Probes app processes. One instance (one client) per orchestrator."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self.probes = 0

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                trust_env=False, follow_redirects=False,
                headers={"connection": "close", "user-agent": "pyserve-tui-health"},
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=0))
        return self._client

    async def http(self, host: str, port: int, path: str | None,
                   timeout: float) -> ProbeResult:
        """GET `path` (None: the default path, judged leniently) within `timeout` seconds."""
        self.probes += 1
        shown = path or DEFAULT_HEALTH_PATH
        try:
            response = await self.client.get(f"http://{host}:{port}{shown}", timeout=timeout)
        except httpx.TimeoutException:
            return ProbeResult(False, f"GET {shown} timed out after {timeout:g}s",
                               f"GET {shown}")
        except httpx.HTTPError as exc:
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return ProbeResult(False, f"GET {shown}: {why}", f"GET {shown}")
        status = response.status_code
        detail = f"GET {shown} -> {status}"
        if path is not None or status == 200:
            return ProbeResult(status == 200, detail, f"GET {shown}")
        return ProbeResult(status < 500, detail, lenient_rule(shown, status), lenient=True)

    async def tcp(self, host: str, port: int, timeout: float) -> ProbeResult:
        """Healthy when the port accepts a connection."""
        self.probes += 1
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            return ProbeResult(False, f"TCP connect timed out after {timeout:g}s", TCP_RULE)
        except OSError as exc:
            return ProbeResult(False, f"TCP connect: {exc.strerror or exc}", TCP_RULE)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return ProbeResult(True, "accepting connections", TCP_RULE)

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def __repr__(self) -> str:
        return f"<HealthChecker probes={self.probes} open={self._client is not None}>"
