"""CPU per request of the gateway pipeline vs the bare proxy client, without an ASGI server.

    python bench/pipeline_micro.py [--requests N] [--profile]

Drives `GatewayApp` (request id, context, routing `proxy_pass`, metrics, request log) and,
for comparison, `PooledTransport.http` alone, with fake ASGI receive/send against a raw
asyncio upstream on 127.0.0.1 that answers a fixed response. Prints req/s and process CPU
per request of each (the upstream's own cost is included in both, so the difference is the
pipeline's). `--profile` prints a cProfile of the pipeline run.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import proxy_gateway_app  # noqa: E402
from gateway.proxy.transport import UpstreamTarget  # noqa: E402
from gateway.servers.loops import loop_factory  # noqa: E402

RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\nHello, World!"
HEADERS = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")]


class Upstream(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(RESPONSE * data.count(b"\r\n\r\n"))  # type: ignore[attr-defined]


async def measure(requests: int, concurrency: int, profile: bool) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    app = proxy_gateway_app(port)
    services = app.services
    target = UpstreamTarget("127.0.0.1", port, "/")

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: object) -> None:
        pass

    def scope() -> dict[str, object]:
        return {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http",
                "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "",
                "headers": list(HEADERS), "client": ("127.0.0.1", 5555),
                "server": ("127.0.0.1", 8000)}

    async def pipeline_worker(n: int) -> None:
        for _ in range(n):
            await app(scope(), receive, send)

    async def bare_worker(n: int) -> None:
        for _ in range(n):
            await services.transport.http(scope(), receive, send, target)

    for name, worker in (("bare client", bare_worker), ("pipeline", pipeline_worker)):
        await asyncio.gather(*(worker(100) for _ in range(concurrency)))  # warm the pool
        prof = cProfile.Profile() if profile and name == "pipeline" else None
        wall, cpu = time.perf_counter(), time.process_time()
        if prof:
            prof.enable()
        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
        if prof:
            prof.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"{name:12s} {requests / wall:8.0f} req/s  {cpu / requests * 1e6:6.1f} us CPU "
              f"per request (upstream included)")
        if prof:
            pstats.Stats(prof).sort_stats("tottime").print_stats(20)
    await services.transport.aclose()
    server.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=50_000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    with asyncio.Runner(loop_factory=loop_factory("auto")) as runner:
        runner.run(measure(args.requests, args.concurrency, args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
