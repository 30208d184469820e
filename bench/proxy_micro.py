"""Micro-benchmark of the proxy hot path: ``PooledTransport.http`` in a tight loop.

    python bench/proxy_micro.py                    # raw upstream, 64 callers, 100k requests
    python bench/proxy_micro.py --upstream granian # bench.apps:plaintext under granian
    python bench/proxy_micro.py --profile          # cProfile the client side, top 25
    python bench/proxy_micro.py --compare-httpx    # same loop through httpx, for scale

No ASGI server is involved on the client side: N coroutines call the transport with a fixed
scope and a send() that discards, so the number is the transport's own cost per request (plus
the upstream's). The upstream runs in a subprocess so it does not share our event loop. The
"raw" upstream is an asyncio Protocol answering every request head with fixed bytes: cheap
enough that the client side is the bottleneck, which is what we want to see.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import pstats
import socket
import subprocess
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RAW_RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n"
                b"date: Thu, 01 Jan 2026 00:00:00 GMT\r\nserver: raw\r\n\r\nHello, World!")


class _RawUpstream(asyncio.Protocol):
    """Answers each request head (requests here have no body) with RAW_RESPONSE."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        data = self.tail + data
        n = data.count(b"\r\n\r\n")
        self.tail = data[data.rfind(b"\r\n\r\n") + 4:] if n else data
        if n:
            self.transport.write(RAW_RESPONSE * n)  # type: ignore[attr-defined]


def serve_raw(port: int) -> None:
    _use_uvloop()

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(
            _RawUpstream, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _use_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_upstream(kind: str, port: int) -> subprocess.Popen[bytes]:
    if kind == "granian":
        cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1", "--no-ws", "--log-level", "error",
               "bench.apps:plaintext"]
    else:
        cmd = [sys.executable, __file__, "--serve-raw", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return proc
        if proc.poll() is not None:
            raise SystemExit(f"upstream exited with {proc.returncode}")
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("upstream did not start listening within 15 s")


async def run_transport(port: int, concurrency: int, total: int) -> tuple[float, float]:
    """(requests per second, client CPU microseconds per request)."""
    from gateway.proxy import PooledTransport, UpstreamTarget

    transport = PooledTransport()
    target = UpstreamTarget("127.0.0.1", port, "/plaintext", name="bench")
    scope = {"type": "http", "method": "GET", "scheme": "http", "path": "/plaintext",
             "query_string": b"", "client": ("127.0.0.1", 50000),
             "headers": [(b"host", b"localhost:8080"), (b"user-agent", b"bench/1.0"),
                         (b"accept", b"*/*"), (b"accept-encoding", b"gzip")]}
    request = {"type": "http.request", "body": b"", "more_body": False}
    body_bytes = 0

    async def receive() -> dict:
        return request

    async def send(msg: MutableMapping[str, Any]) -> None:
        nonlocal body_bytes
        if msg["type"] == "http.response.body":
            body_bytes += len(msg["body"])

    async def caller(n: int) -> None:
        for _ in range(n):
            await transport.http(scope, receive, send, target)

    async def burst(n_total: int) -> float:
        per, extra = divmod(n_total, concurrency)
        t0 = time.perf_counter()
        await asyncio.gather(*(caller(per + (i < extra)) for i in range(concurrency)))
        return time.perf_counter() - t0

    await burst(min(total // 10, 5000))  # warm up: open the pool, settle the upstream
    cpu0 = time.process_time()
    elapsed = await burst(total)
    cpu = time.process_time() - cpu0
    assert body_bytes > 0
    await transport.aclose()
    return total / elapsed, cpu / total * 1e6


async def run_httpx(port: int, concurrency: int, total: int) -> float:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:
        url = f"http://127.0.0.1:{port}/plaintext"

        async def caller(n: int) -> None:
            for _ in range(n):
                (await client.get(url)).read()

        await asyncio.gather(*(caller(50) for _ in range(concurrency)))
        per = total // concurrency
        t0 = time.perf_counter()
        await asyncio.gather(*(caller(per) for _ in range(concurrency)))
        return per * concurrency / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", choices=["raw", "granian"], default="raw")
    ap.add_argument("-c", "--concurrency", type=int, default=64)
    ap.add_argument("-n", "--requests", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--compare-httpx", action="store_true")
    ap.add_argument("--serve-raw", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_raw:
        serve_raw(args.serve_raw)
        return

    loop_name = _use_uvloop()
    port = free_port()
    proc = start_upstream(args.upstream, port)
    try:
        print(f"upstream={args.upstream} loop={loop_name} concurrency={args.concurrency} "
              f"requests={args.requests} cpus={os.cpu_count()}")
        rates, cpus = [], []
        for i in range(args.rounds):
            prof = cProfile.Profile() if args.profile and i == args.rounds - 1 else None
            if prof is not None:
                prof.enable()
            rate, cpu_us = asyncio.run(run_transport(port, args.concurrency, args.requests))
            if prof is not None:
                prof.disable()
                pstats.Stats(prof).sort_stats("tottime").print_stats(25)
            rates.append(rate)
            cpus.append(cpu_us)
            print(f"  round {i + 1}: {rate:,.0f} req/s, client CPU {cpu_us:.1f} us/request")
        best = max(rates)
        print(f"PooledTransport: best {best:,.0f} req/s; client CPU {min(cpus):.1f} us/request "
              "(transport + event loop + syscalls, upstream excluded)")
        if args.compare_httpx:
            n = min(args.requests, 20_000)
            rate = asyncio.run(run_httpx(port, args.concurrency, n))
            print(f"httpx.AsyncClient: {rate:,.0f} req/s ({best / rate:.1f}x slower)")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
