"""Health probes: an HTTP GET through one shared client, or a TCP connect."""

from __future__ import annotations

import asyncio
import contextlib

import httpx


class HealthChecker:
    """Probes app processes. One instance (one connection pool) per orchestrator."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self.probes = 0

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                trust_env=False, follow_redirects=False,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))
        return self._client

    async def http(self, host: str, port: int, path: str, timeout: float) -> tuple[bool, str]:
        """(ok, detail): ok when the app answers 200 within `timeout` seconds."""
        self.probes += 1
        url = f"http://{host}:{port}{path}"
        try:
            response = await self.client.get(url, timeout=timeout)
        except httpx.TimeoutException:
            return False, f"no answer within {timeout:g}s"
        except httpx.HTTPError as exc:
            return False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if response.status_code == 200:
            return True, "200"
        return False, f"status {response.status_code}"

    async def tcp(self, host: str, port: int, timeout: float) -> tuple[bool, str]:
        """(ok, detail): ok when the port accepts a connection."""
        self.probes += 1
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            return False, f"no connection within {timeout:g}s"
        except OSError as exc:
            return False, exc.strerror or str(exc)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True, "accepting connections"

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def __repr__(self) -> str:
        return f"<HealthChecker probes={self.probes} open={self._client is not None}>"
