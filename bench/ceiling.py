"""What the gateway's process model can reach at best, measured beside the real gateway.

    python bench/ceiling.py [--seconds 4] [--connections 64]

Three configurations, each proxying to its own granian upstream, loaded by wrk in turn:

- `bare`: granian's embedded server (the gateway's serving code path, uvloop) running an
  ASGI app that calls the pooled upstream client directly: no pipeline at all;
- `gateway`: `pyserve-tui --no-ui` with one `proxy_pass` location (the real thing);
- `nginx`: nginx `proxy_pass` with upstream keep-alive, for the ratio.

The difference between `bare` and `gateway` is what the pipeline costs; the ratio of `bare`
to nginx bounds what any pipeline work can win in this process model.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    HOST,
    PYTHON,
    cleanup,
    free_port,
    spawn,
    start_gateway,
    start_nginx,
    start_upstream,
    wait_http,
)
from bench.load import wrk  # noqa: E402


async def serve_bare(port: int, upstream: int) -> None:
    """The `bare` configuration, run in a child process (see `--serve-bare`)."""
    from gateway.config.schema import ServerConfig
    from gateway.proxy.transport import PooledTransport, UpstreamTarget
    from gateway.servers.listener import create_listener
    from gateway.servers.registry import BackendRegistry

    transport = PooledTransport()
    target = UpstreamTarget(HOST, upstream, "/")

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            await transport.http(scope, receive, send, target)

    handle = await BackendRegistry.get("granian").serve_gateway(
        app, create_listener(HOST, port), ServerConfig())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await handle.stop(2)
    await transport.aclose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--serve-bare", nargs=2, type=int, metavar=("PORT", "UPSTREAM"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_bare:
        import uvloop

        uvloop.run(serve_bare(*args.serve_bare))
        return 0

    with cleanup():
        ports = {}
        _, up = start_upstream()
        bare_port = free_port()
        bare = spawn("bare", [PYTHON, __file__, "--serve-bare", str(bare_port), str(up)])
        wait_http(bare_port, proc=bare)
        ports["bare"] = bare_port
        _, up = start_upstream()
        ports["gateway"] = start_gateway("gateway", routes={"/": f"http://{HOST}:{up}"}).port
        _, up = start_upstream()
        ports["nginx"] = start_nginx(up)[1]
        results: dict[str, list[float]] = {name: [] for name in ports}
        for _ in range(args.rounds):
            for name, port in ports.items():
                results[name].append(wrk(port, args.connections, args.seconds)["rps"])
    best = {name: max(r) for name, r in results.items()}
    print(f"| config | req/s (best of {args.rounds}) | vs nginx |\n|---|---|---|")
    for name, rps in best.items():
        print(f"| {name} | {rps:.0f} | {rps / best['nginx']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
