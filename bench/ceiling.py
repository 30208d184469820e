"""Where a proxied request's CPU goes: the gateway beside stripped-down servers and nginx.

    python bench/ceiling.py [--seconds 3] [--rounds 3] [--connections 64] [--before PATH]
                            [--configs gateway,lean,...]

Each configuration proxies to a granian upstream of its own (`trivial` has none) and is loaded
by wrk in turn, rounds alternating and rotating; medians are reported. Beside req/s and the
ratio to nginx, the report gives the CPU each request cost the serving process (user + system
time of all its threads, from /proc, over the measured seconds) and its upstream, because on a
small machine the load generator, the upstream and the proxy share the cores: throughput
follows the CPU all of them spend per request, not one thread's.

- `trivial`: granian's embedded server (the gateway's serving path: our adapter, uvloop)
  running an ASGI app that answers at once, no upstream: what serving alone costs;
- `lean`: the same server running the smallest proxy that can be written with the pooled
  upstream client: copy the head, one pooled connection, wait for the whole response, two
  sends. No request id, no context, no routing, no metrics, no request log, no error pages,
  no bodies: the ceiling of any gateway served this way;
- `gateway`: `pyserve-tui --no-ui` with one `proxy_pass` location, `backend = "auto"` (the
  built-in front): the real thing;
- `gateway-granian`: the same on granian's embedded server (`backend = "granian"`);
- `gateway-compiled`: `gateway` on the compiled build (`bench/compiled.py`, mypyc);
- `front`: the real gateway pipeline (`GatewayApp` with the same project) behind a
  *measurement-only* HTTP/1.1 front written here (asyncio Protocol + httptools, GET/HEAD
  without bodies, no limits, no timeouts): the pipeline without granian;
- `lean-front`: the `lean` proxy behind that front: the ceiling without granian;
- `builtin-lean`: the `lean` proxy on the gateway's built-in front (`gateway.servers.front`):
  the floor of the shipped serving path;
- `steps` (with `--steps`): the real pipeline (`GatewayApp`, one `proxy_pass` location) on the
  built-in front in this process, whole (`step-all`) and with one per-request step taken out
  (`step-no-log`: the request log; `step-no-metrics`: the metrics; `step-no-id`: request-id
  generation, a fixed id instead): what each step costs in place;
- `nginx`: nginx `proxy_pass` with upstream keep-alive (`worker_processes auto`);
- `caddy`: Caddy `reverse_proxy` (admin off, plain HTTP, its own temporary storage);
- `before` (with `--before PATH`): the gateway again (`backend = "auto"`), its code imported
  from PATH (a checkout of another commit, e.g. `git worktree add /tmp/before HEAD~1`), to
  measure a change in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httptools
import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import compiled as bench_compiled  # noqa: E402
from bench.harness import (  # noqa: E402
    HOST,
    PYTHON,
    Proc,
    cleanup,
    free_port,
    proxy_gateway_app,
    spawn,
    start_caddy,
    start_gateway,
    start_nginx,
    start_upstream,
    wait_http,
)
from bench.load import wrk  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")
_HELLO = [(b"content-type", b"text/plain"), (b"content-length", b"13")]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of every thread of `pid` so far (0 if it is gone)."""
    total = 0
    for stat in glob.glob(f"/proc/{pid}/task/*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


def family(proc: Proc) -> list[int]:
    """`proc` and its descendants (granian's and nginx's workers)."""
    return [proc.pid] + [child.pid for child in psutil.Process(proc.pid).children(True)]


# -- the servers, each run in a child process (`--serve KIND PORT UPSTREAM`) -----------------

async def _granian(app: Any, port: int) -> Any:
    from gateway.config.schema import ServerConfig
    from gateway.servers.listener import create_listener
    from gateway.servers.registry import BackendRegistry

    return await BackendRegistry.get("granian").serve_gateway(
        app, create_listener(HOST, port), ServerConfig())


def _trivial_app() -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _HELLO})
        await send({"type": "http.response.body", "body": b"Hello, World!"})

    return app


def _lean_app(upstream: int) -> Any:
    from gateway.proxy.client import UpstreamPool
    from gateway.proxy.transport import UpstreamTarget

    pool = UpstreamPool(HOST, upstream, max_idle=512, connect_timeout=5)
    target = UpstreamTarget(HOST, upstream, "/")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        parts = [scope["method"].encode(), b" ", scope["raw_path"], b" HTTP/1.1\r\n"]
        for name, value in scope["headers"]:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        conn = pool.pop_idle() or await pool.connect(target)
        conn.begin(target, False)
        conn.transport.write(b"".join(parts))
        while not conn.complete and conn.error is None:
            await conn.wait()
        body = conn.take()
        await send({"type": "http.response.start", "status": conn.status,
                    "headers": conn.headers})
        await send({"type": "http.response.body", "body": body})
        pool.release(conn)

    return app


class _FrontConnection(asyncio.Protocol):
    """One client connection of the measurement-only front (see the module docstring)."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.transport: Any = None
        self.client: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.client = transport.get_extra_info("peername")[:2]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_message_complete(self) -> None:
        parsed = httptools.parse_url(self.url)
        scope = {"type": "http", "http_version": "1.1", "scheme": "http",
                 "method": self.parser.get_method().decode(),
                 "path": parsed.path.decode("latin-1"), "raw_path": parsed.path,
                 "query_string": parsed.query or b"", "headers": self.headers,
                 "client": self.client, "server": (HOST, 0)}
        self.loop.create_task(self._run(scope))

    async def _run(self, scope: dict[str, Any]) -> None:
        head: list[bytes] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                head.append(b"HTTP/1.1 %d X\r\n" % message["status"])
                for name, value in message.get("headers", ()):
                    head.append(b"%s: %s\r\n" % (name, value))
                head.append(b"\r\n")
            elif not message.get("more_body", False):
                self.transport.write(b"".join(head) + message.get("body", b""))

        await self.app(scope, receive, send)


STEPS = ["step-all", "step-no-log", "step-no-metrics", "step-no-id"]


def _step_app(kind: str, upstream: int) -> Any:
    """The real gateway app with one per-request step taken out (see the docstring)."""
    import gateway.pipeline

    gw = proxy_gateway_app(upstream)
    if kind == "step-no-log":
        gw.services.request_log.add = lambda raw: None
    elif kind == "step-no-metrics":
        gw.services.metrics.record = lambda app, status, ms: None
    elif kind == "step-no-id":
        gateway.pipeline.new_request_id = lambda: "00000000-0000-4000-8000-000000000000"
    return gw


async def serve(kind: str, port: int, upstream: int) -> None:
    from gateway.engine import settle_heap

    loop = asyncio.get_running_loop()
    handle = server = None
    if kind == "trivial":
        handle = await _granian(_trivial_app(), port)
    elif kind == "lean":
        handle = await _granian(_lean_app(upstream), port)
    elif kind == "builtin-lean" or kind.startswith("step-"):
        from gateway.config.schema import ServerConfig
        from gateway.servers.listener import create_listener
        from gateway.servers.registry import BackendRegistry

        app = _lean_app(upstream) if kind == "builtin-lean" else _step_app(kind, upstream)
        handle = await BackendRegistry.get("builtin").serve_gateway(
            app, create_listener(HOST, port), ServerConfig())
    else:
        from gateway.servers.listener import create_listener

        app = proxy_gateway_app(upstream) if kind == "front" else _lean_app(upstream)
        server = await loop.create_server(lambda: _FrontConnection(app, loop),
                                          sock=create_listener(HOST, port))
    settle_heap()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    if handle is not None:
        await handle.stop(2)
    if server is not None:
        server.close()


# -- the run -------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--caddy", action=argparse.BooleanOptionalAction, default=True,
                    help="run Caddy beside nginx (default: yes)")
    ap.add_argument("--configs", metavar="LIST",
                    help="comma-separated subset to run (nginx is always run: the baseline)")
    ap.add_argument("--steps", action="store_true",
                    help="also run the pipeline with one step taken out at a time")
    ap.add_argument("--before", metavar="PATH",
                    help="also run the gateway from this checkout (PYTHONPATH=PATH)")
    ap.add_argument("--serve", nargs=3, metavar=("KIND", "PORT", "UPSTREAM"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        import uvloop

        uvloop.run(serve(args.serve[0], int(args.serve[1]), int(args.serve[2])))
        return 0

    with cleanup():
        servers: dict[str, tuple[Proc, int, Proc | None]] = {}
        kinds = ["trivial", "lean", "gateway", "gateway-compiled", "gateway-granian", "front",
                 "lean-front", "builtin-lean", "nginx", "caddy"]
        if args.steps:
            kinds[-2:-2] = STEPS
        if not args.caddy:
            kinds.remove("caddy")
        if args.before:
            kinds.insert(2, "before")
        if args.configs:
            wanted = set(args.configs.split(",")) | {"nginx"} | (
                {"caddy"} if args.caddy else set())
            if args.before:
                wanted.add("before")
            unknown = wanted - set(kinds)
            if unknown:
                ap.error(f"unknown configs: {', '.join(sorted(unknown))}")
            kinds = [kind for kind in kinds if kind in wanted]
        for kind in kinds:
            upstream, up = start_upstream() if kind != "trivial" else (None, 0)
            if kind in ("gateway", "gateway-granian", "gateway-compiled", "before"):
                env = {"PYTHONPATH": str(Path(args.before).resolve())} if kind == "before" \
                    else bench_compiled.env() if kind == "gateway-compiled" else None
                backend = "granian" if kind == "gateway-granian" else "auto"
                gw = start_gateway(kind, routes={"/": f"http://{HOST}:{up}"}, env=env,
                                   backend=backend)
                servers[kind] = (gw.proc, gw.port, upstream)
            elif kind == "nginx":
                proc, port = start_nginx(up)
                servers[kind] = (proc, port, upstream)
            elif kind == "caddy":
                proc, port = start_caddy(up)
                servers[kind] = (proc, port, upstream)
            else:
                port = free_port()
                proc = spawn(kind, [PYTHON, __file__, "--serve", kind, str(port), str(up)])
                wait_http(port, proc=proc)
                servers[kind] = (proc, port, upstream)
        for _, port, _ in servers.values():
            wrk(port, args.connections, 1)  # warm-up: pools filled, code paths hot
        rps: dict[str, list[float]] = {kind: [] for kind in servers}
        p99: dict[str, list[float]] = {kind: [] for kind in servers}
        cpu: dict[str, list[tuple[float, float]]] = {kind: [] for kind in servers}
        for r in range(args.rounds):
            for kind in kinds[r % len(kinds):] + kinds[:r % len(kinds)]:
                proc, port, upstream = servers[kind]
                pids = family(proc)
                up_pids = family(upstream) if upstream else []
                before = sum(cpu_seconds(pid) for pid in pids)
                up_before = sum(cpu_seconds(pid) for pid in up_pids)
                started = time.monotonic()
                result = wrk(port, args.connections, args.seconds)
                elapsed = time.monotonic() - started
                served = result["rps"] * elapsed
                mine = sum(cpu_seconds(pid) for pid in pids) - before
                theirs = sum(cpu_seconds(pid) for pid in up_pids) - up_before
                rps[kind].append(result["rps"])
                p99[kind].append(result["p99_ms"])
                cpu[kind].append((mine / served * 1e6, theirs / served * 1e6))

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    nginx = median(rps["nginx"])
    caddy = median(rps["caddy"]) if "caddy" in rps else None
    print(f"wrk -c {args.connections}, {args.seconds:g} s x {args.rounds} rounds, medians; "
          f"CPU per request in microseconds (user + system, all threads)\n")
    caddy_head = " vs Caddy |" if caddy else ""
    print(f"| config | req/s | p99 ms | vs nginx |{caddy_head} CPU/request, server | "
          f"CPU/request, upstream |")
    print("|---|---|---|---|" + ("---|" if caddy else "") + "---|---|")
    for kind in kinds:
        own = median([c[0] for c in cpu[kind]])
        ups = median([c[1] for c in cpu[kind]])
        upstream_cell = f"{ups:.0f}" if kind != "trivial" else "-"
        caddy_cell = f" {median(rps[kind]) / caddy:.2f}x |" if caddy else ""
        print(f"| {kind} | {median(rps[kind]):.0f} | {median(p99[kind]):.2f} | "
              f"{median(rps[kind]) / nginx:.2f}x |{caddy_cell} {own:.0f} | {upstream_cell} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
