"""Each serving backend, embedded as the gateway runs it, on one plain-text ASGI app.

    python bench/backends.py                        # 5 s per backend, 64 connections
    python bench/backends.py --duration 3 --connections 128 --loop asyncio
    python bench/backends.py --backends granian,uvicorn --client python

The app (`bench.apps:plaintext`) is served through `serve_gateway` on a listening socket made
by `gateway.servers.listener`, in an event loop of this process (uvloop unless `--loop`), the
way the workbench serves its gateway. The server process does nothing else. Load comes from
`wrk` when it is installed (`apt-get install -y wrk`), otherwise from a keep-alive client in a
separate Python process; either is bounded by `--duration`. Everything binds 127.0.0.1.
Output: a Markdown table (req/s, p50, p99, errors per backend) on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.apps import plaintext  # noqa: E402
from gateway.config.schema import ServerConfig  # noqa: E402
from gateway.servers.listener import create_listener  # noqa: E402
from gateway.servers.loops import loop_factory, resolve_loop  # noqa: E402
from gateway.servers.registry import AUTO_ORDER, BackendRegistry  # noqa: E402


@dataclass
class Result:
    backend: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int

    def row(self) -> str:
        return (f"| {self.backend} | {self.requests_per_s:,.0f} | {self.p50_ms:.2f} | "
                f"{self.p99_ms:.2f} | {self.errors} |")


# --- load from wrk ------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip()).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


async def load_with_wrk(url: str, duration: float, connections: int, threads: int) -> dict:
    proc = await asyncio.create_subprocess_exec(
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
        url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out = (await proc.communicate())[0].decode()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (rps and p50 and p99):
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    return {"rps": float(rps.group(1)), "p50": _ms(p50.group(1)), "p99": _ms(p99.group(1)),
            "errors": errors}


# --- load from Python (when wrk is missing), run in its own process -----------------------

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


async def _keep_alive_client(host: str, port: int, until: float, latencies: list[float],
                             errors: list[int]) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        errors.append(1)
        return
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if not head.startswith(b"HTTP/1.1 200") or length is None:
                errors.append(1)
                return
            await reader.readexactly(int(length.group(1)))
            latencies.append(time.perf_counter() - started)
    except (OSError, asyncio.IncompleteReadError):
        errors.append(1)
    finally:
        writer.close()


async def _python_load(host: str, port: int, duration: float, connections: int) -> dict:
    latencies: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    until = started + duration
    await asyncio.gather(*(_keep_alive_client(host, port, until, latencies, errors)
                           for _ in range(connections)))
    elapsed = time.perf_counter() - started
    if not latencies:
        return {"rps": 0.0, "p50": 0.0, "p99": 0.0, "errors": len(errors)}
    cuts = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "p50": cuts[49] * 1000, "p99": cuts[98] * 1000,
            "errors": len(errors)}


async def load_with_python(port: int, duration: float, connections: int) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--load-only", str(port), str(duration), str(connections),
        stdout=asyncio.subprocess.PIPE)
    out = (await proc.communicate())[0]
    result: dict = json.loads(out)
    return result


# --- the run ------------------------------------------------------------------------------

async def bench_backend(name: str, args: argparse.Namespace, client: str) -> Result:
    settings = ServerConfig(host="127.0.0.1", port=0, backlog=4096)
    sock = create_listener(settings.host, 0, backlog=settings.backlog)
    port = sock.getsockname()[1]
    handle = await BackendRegistry.get(name).serve_gateway(plaintext, sock, settings)
    try:
        if client == "wrk":
            await load_with_wrk(f"http://127.0.0.1:{port}/", 1, args.connections, args.threads)
            numbers = await load_with_wrk(f"http://127.0.0.1:{port}/", args.duration,
                                          args.connections, args.threads)
        else:
            await load_with_python(port, 1, args.connections)
            numbers = await load_with_python(port, args.duration, args.connections)
    finally:
        await handle.stop(5)
        sock.close()
    return Result(name, numbers["rps"], numbers["p50"], numbers["p99"], numbers["errors"])


async def main(args: argparse.Namespace) -> None:
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    loop_name = resolve_loop(args.loop)
    results = [await bench_backend(name, args, client) for name in backends]
    print(f"Embedded gateway serving `bench.apps:plaintext`, {loop_name} loop, load from "
          f"{client}: {args.connections} connections, {args.duration:g} s per backend "
          f"(after 1 s warm-up), 127.0.0.1.\n")
    print("| backend | req/s | p50 ms | p99 ms | errors |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for result in results:
        print(result.row())


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(AUTO_ORDER))
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--loop", default="auto", choices=["auto", "uvloop", "asyncio"])
    parser.add_argument("--client", default="auto", choices=["auto", "wrk", "python"])
    return parser.parse_args(argv)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--load-only"]:
        port_, duration_, connections_ = sys.argv[2:5]
        print(json.dumps(asyncio.run(_python_load("127.0.0.1", int(port_), float(duration_),
                                                  int(connections_)))))
    else:
        arguments = parse(sys.argv[1:])
        with asyncio.Runner(loop_factory=loop_factory(arguments.loop)) as runner:
            runner.run(main(arguments))
