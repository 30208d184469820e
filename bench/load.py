"""Load generators: wrk (saturation), a paced client (fixed rate, every failure counted), and
streaming body transfers.

Plain wrk has no `-R` (that is wrk2), so fixed-rate load comes from `paced`, a keep-alive
HTTP/1.1 client on raw sockets and httptools, run in its own process:

    python -m bench.load --port 8000 --path /app/ --rate 5000 --seconds 10 --connections 32

It stops after `--seconds`, `--max-requests` or SIGTERM/SIGINT, whichever comes first, and
prints one JSON object: requests, ok, failed (by kind, with the first failure times),
achieved rate, latency percentiles, and each distinct response body with the time it was
first seen (how a code reload is seen from outside). A failed request is anything but a 200:
another status, a refused connection, a connection closed before the whole response, or a
timeout. A response with `Connection: close` is not a failure; the client reconnects.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import HOST, PYTHON, Proc, percentile, spawn, workdir  # noqa: E402

# --- wrk ------------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def wrk(port: int, connections: int, seconds: float, path: str = "/",
        threads: int = 2) -> dict[str, float]:
    """wrk for `seconds` (bounded: killed 30 s after that): req/s, p50/p99 ms, errors."""
    from bench.harness import run_bounded

    seconds = max(1, round(seconds))
    code, out = run_bounded("wrk", ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
                                    "--latency", "--timeout", "5s",
                                    f"http://{HOST}:{port}{path}"], seconds + 30)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if code != 0 or not rps or not total:
        raise RuntimeError(f"wrk failed ({code}):\n{out}")
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(rps.group(1)), "requests": int(total.group(1)),
            "p50_ms": _ms(lat.get("50", "")), "p99_ms": _ms(lat.get("99", "")),
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(map(int, sock.groups())) if sock else 0}


# --- the paced client, driven from the bench ---------------------------------------------------

class Paced:
    """`python -m bench.load` in the background; `result()` stops it and reads its JSON."""

    def __init__(self, port: int, path: str, rate: float, seconds: float,
                 connections: int = 16, max_requests: int = 10**9) -> None:
        self.out = workdir() / f"paced-{time.monotonic_ns()}.json"
        self.seconds = seconds
        self.proc: Proc = spawn("paced", [
            PYTHON, "-m", "bench.load", "--port", str(port), "--path", path,
            "--rate", str(rate), "--seconds", str(seconds), "--connections", str(connections),
            "--max-requests", str(max_requests)], stdout=self.out)
        self.started = time.time()

    def result(self, wait: bool = True) -> dict[str, Any]:
        """Its numbers; stops it now unless `wait` (then waits for its own end)."""
        if wait:
            with contextlib.suppress(Exception):
                self.proc.popen.wait(self.seconds + 30)
        if self.proc.alive():
            self.proc.signal(signal.SIGTERM)
            with contextlib.suppress(Exception):
                self.proc.popen.wait(15)
        self.proc.stop(grace=5)
        text = self.out.read_text()
        if not text.strip():
            raise RuntimeError(f"the paced client printed nothing:\n{self.proc.tail()}")
        result: dict[str, Any] = json.loads(text)
        return result


# --- the paced client itself (its own process) ---------------------------------------------------

class _Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.ok = 0
        self.failures: Counter[str] = Counter()
        self.failure_times: list[tuple[float, str]] = []
        self.bodies: dict[str, float] = {}

    def fail(self, kind: str) -> None:
        self.failures[kind] += 1
        if len(self.failure_times) < 200:
            self.failure_times.append((time.time(), kind))


class _Response:
    """httptools callbacks for one response."""

    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpResponseParser(self)
        self.body = bytearray()
        self.done = False
        self.close = False
        self.started = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"connection" and value.lower() == b"close":
            self.close = True

    def on_body(self, body: bytes) -> None:
        if len(self.body) < 256:
            self.body += body[:256]

    def on_message_complete(self) -> None:
        self.done = True


async def _connection(port: int, path: str, interval: float, offset: float, until: float,
                      budget: list[int], stats: _Stats, stop: asyncio.Event) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    loop = asyncio.get_running_loop()
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    next_at = loop.time() + offset
    try:
        while not stop.is_set() and budget[0] > 0:
            now = loop.time()
            if now >= until:
                break
            if next_at > now:
                await asyncio.sleep(next_at - now)  # a timer, not a task: cheap at 5k/s
                if stop.is_set():
                    break
            # Behind schedule: go now, but do not bank the missed slots (no catch-up bursts).
            next_at = max(next_at + interval, loop.time())
            budget[0] -= 1
            started = time.perf_counter()
            reused = writer is not None
            response = None
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(HOST, port)
                assert reader is not None
                response = _Response()
                writer.write(request)
                async with asyncio.timeout(10):
                    while not response.done:
                        data = await reader.read(65536)
                        if not data:
                            raise ConnectionResetError("closed before the whole response")
                        response.started = True
                        response.parser.feed_data(data)
            except ConnectionRefusedError:
                stats.fail("refused")
                _close(writer)
                writer = None
                continue
            except TimeoutError:
                stats.fail("timeout")
                _close(writer)
                writer = None
                continue
            except Exception as exc:  # reset, EOF, parse error: the request failed
                idle = reused and response is not None and not response.started
                stats.fail(type(exc).__name__ + (" (reused connection, no answer)" if idle else ""))
                _close(writer)
                writer = None
                continue
            status = response.parser.get_status_code()
            if status == 200:
                stats.ok += 1
                stats.latencies.append(time.perf_counter() - started)
                body = bytes(response.body[:64]).decode("latin-1")
                if body not in stats.bodies and len(stats.bodies) < 20:
                    stats.bodies[body] = time.time()
            else:
                stats.fail(f"status {status}")
            if response.close or not response.parser.should_keep_alive():
                _close(writer)
                writer = None
    finally:
        _close(writer)


def _close(writer: asyncio.StreamWriter | None) -> None:
    """Close `writer` if open (the caller then forgets it)."""
    if writer is not None:
        writer.close()


async def paced(port: int, path: str, rate: float, seconds: float, connections: int,
                max_requests: int) -> dict[str, Any]:
    stats = _Stats()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    interval = connections / rate
    budget = [max_requests]
    started, wall = loop.time(), time.time()
    until = started + seconds
    await asyncio.gather(*(_connection(port, path, interval, i * interval / connections, until,
                                       budget, stats, stop) for i in range(connections)))
    elapsed = loop.time() - started
    lat = [x * 1000 for x in stats.latencies]
    failed = sum(stats.failures.values())
    return {"target_rate": rate, "seconds": round(elapsed, 3), "started": wall,
            "requests": stats.ok + failed, "ok": stats.ok, "failed": failed,
            "failures": dict(stats.failures), "failure_times": stats.failure_times,
            "rate": (stats.ok + failed) / elapsed if elapsed else 0.0,
            "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
            "max_ms": max(lat, default=float("nan")),
            "bodies": sorted(stats.bodies.items(), key=lambda kv: kv[1])}


# --- streaming bodies (blocking, in the bench process) -------------------------------------------

CHUNK = 1 << 20


def transfer(port: int, method: str, path: str, upload: int = 0,
             timeout: float = 120.0) -> tuple[int, int, float]:
    """One request on a new connection, streaming `upload` bytes up and reading the response
    body as it comes, keeping none of it: (status, body bytes received, seconds)."""
    import httptools

    class Sink:
        def __init__(self) -> None:
            self.received = 0
            self.done = False

        def on_body(self, body: bytes) -> None:
            self.received += len(body)

        def on_message_complete(self) -> None:
            self.done = True

    sink = Sink()
    parser = httptools.HttpResponseParser(sink)
    started = time.monotonic()
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
    if upload:
        head += f"Content-Type: application/octet-stream\r\nContent-Length: {upload}\r\n"
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall((head + "\r\n").encode())
        chunk = memoryview(b"\x5a" * CHUNK)
        left = upload
        while left > 0:
            n = min(left, CHUNK)
            s.sendall(chunk[:n])
            left -= n
        buf = bytearray(CHUNK)
        while not sink.done:
            n = s.recv_into(buf)
            if not n:
                break
            parser.feed_data(bytes(buf[:n]))
        status = parser.get_status_code() if sink.done else 0
    return status, sink.received, time.monotonic() - started


def main() -> None:
    ap = argparse.ArgumentParser(description="fixed-rate keep-alive HTTP client; prints JSON")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/")
    ap.add_argument("--rate", type=float, default=1000.0, help="requests per second, overall")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--max-requests", type=int, default=10**9)
    args = ap.parse_args()
    factory: Any = asyncio.new_event_loop
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(paced(args.port, args.path, args.rate, args.seconds,
                                  args.connections, args.max_requests))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
