"""Python CPU per request on the direct path, without sockets or syscalls.

    python bench/direct_micro.py [--requests N] [--compiled] [--bundled] [--profile]

Feeds the built-in front (`H1Connection`) a raw GET and the pooled upstream connection
(`UpstreamConnection`) a raw response, synchronously, through the real `GatewayApp` of a
one-`proxy_pass` project (`harness.proxy_gateway_app`): every parser callback, the plan,
the request head, the response head, metrics and the request log, with fake transports that
only keep what is written. What remains is the Python (or, with `--compiled`, the compiled
build of `bench/compiled.py`) a request costs; best of 5 runs. `--bundled` puts the bundled
project's security and monitoring extensions in front of routing. `--profile` prints a
cProfile of the interpreted build.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REQUEST = (b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n"
           b"Accept: */*\r\n\r\n")
RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n"
            b"server: granian\r\ndate: Sat, 05 Dec 2026 20:06:45 GMT\r\n\r\nHello, World!")


class FakeTransport(asyncio.Transport):
    """Keeps the last write and counts writes; never pauses, never closes."""

    def __init__(self, peer: tuple[str, int]) -> None:
        super().__init__()
        self.peer = peer
        self.writes = 0
        self.last = b""

    def write(self, data: Any) -> None:
        self.writes += 1
        self.last = bytes(data)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name in ("peername", "sockname") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--compiled", action="store_true",
                    help="run the compiled build (bench/compiled.py builds it)")
    ap.add_argument("--bundled", action="store_true",
                    help="the bundled project's security and monitoring in front of routing")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    if args.compiled:
        from bench import compiled

        sys.path.insert(0, str(compiled.folder()))
    import uvloop

    from bench.harness import BUNDLED_EXTENSIONS_TOML, proxy_gateway_app
    from gateway.config.schema import ServerConfig
    from gateway.proxy.client import UpstreamConnection
    from gateway.servers.front import FrontServer
    from gateway.servers.h1 import H1Connection

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    gateway = proxy_gateway_app(1, BUNDLED_EXTENSIONS_TOML if args.bundled else "")
    front = FrontServer(gateway, ServerConfig(), loop)
    client = FakeTransport(("127.0.0.1", 5555))
    conn = H1Connection(front)
    conn.connection_made(client)
    pool = gateway.services.transport.pool("127.0.0.1", 1)  # type: ignore[attr-defined]
    upstream = FakeTransport(("127.0.0.1", 1))
    up = UpstreamConnection(pool, loop)
    up.connection_made(upstream)
    pool.release(up)  # idle in the pool, as after a first request
    box = pool.outbox(loop)

    def one() -> None:
        conn.data_received(REQUEST)
        box.flush()  # the request head reaches the upstream at the end of the pass
        up.data_received(RESPONSE)
        front.outbox.flush()

    def run(n: int) -> None:
        for i in range(n):
            one()
            if i % 1000 == 999:
                loop.run_until_complete(asyncio.sleep(0))  # the loop's own callbacks

    run(2000)
    if not client.last.endswith(b"Hello, World!") or gateway.direct_started != 2000:
        print(f"not the direct path: {gateway.direct_started} started, last write "
              f"{client.last[:80]!r}", file=sys.stderr)
        return 1
    per_run = max(1, args.requests // 5)
    best = min(_timed(run, per_run) for _ in range(5))
    build = ("compiled" if args.compiled else "interpreted") + (", bundled" if args.bundled
                                                                else "")
    print(f"{best * 1e6 / per_run:.2f} µs per request ({build}, best of 5 x {per_run})")
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(run, 20_000)
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    loop.close()
    return 0


def _timed(run: Any, n: int) -> float:
    started = time.perf_counter()
    run(n)
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
