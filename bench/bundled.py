"""The bundled pipeline's cost, per process: routing-only against the bundled project.

    python bench/bundled.py                          # the compiled build of this checkout
    python bench/bundled.py --rounds 5 --interpreted # the checkout as it is (editable)
    python bench/bundled.py --build before=/tmp/before/bench/.compiled/KEY --build now=...

For each build, two gateways (`harness.start_gateway`): routing-only (one `proxy_pass`
location to a plain granian upstream) and the bundled project's pipeline (security,
monitoring, process orchestration, routing) in front of an orchestrated app. Each round runs
`wrk -c64` for 1 s (warm-up) and 4 s on each gateway in turn, and reads the CPU time of the
gateway process and of its upstream (granian, or the app's process group) from `/proc`:
CPU per request is that time over the requests served. Prints medians over the rounds and
the bundled cost per round (1 - bundled / routing-only throughput, the figure `run.py`
judges). Builds measured in the same rounds compare; runs apart do not (the machine is
shared). Everything binds 127.0.0.1; every load is bounded.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import compiled as bench_compiled  # noqa: E402
from bench.ceiling import cpu_seconds, family  # noqa: E402
from bench.harness import (  # noqa: E402
    Gateway,
    Proc,
    bench_app,
    cleanup,
    start_gateway,
    start_upstream,
)
from bench.load import wrk  # noqa: E402
from bench.run import BUNDLED_EXTENSIONS  # noqa: E402


def _measure(gw: Gateway, upstream: Proc | None, path: str, seconds: float
             ) -> tuple[float, float, float]:
    """req/s, gateway CPU µs per request, upstream CPU µs per request."""
    gateway_pid = gw.proc.pid
    others = family(upstream) if upstream is not None else \
        [p for p in family(gw.proc) if p != gateway_pid]  # the app's processes
    wrk(gw.port, 64, 1, path=path)
    g0, u0 = cpu_seconds(gateway_pid), sum(cpu_seconds(p) for p in others)
    result = wrk(gw.port, 64, seconds, path=path)
    g1, u1 = cpu_seconds(gateway_pid), sum(cpu_seconds(p) for p in others)
    served = max(1.0, result["rps"] * seconds)
    return result["rps"], (g1 - g0) / served * 1e6, (u1 - u0) / served * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", action="append", default=[], metavar="NAME=PYTHONPATH",
                    help="a build to measure (repeatable); default: this checkout compiled")
    ap.add_argument("--interpreted", action="store_true",
                    help="measure this checkout as it is (no compiled build)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    builds: dict[str, dict[str, str] | None] = {}
    for spec in args.build:
        name, _, path = spec.partition("=")
        builds[name] = {"PYTHONPATH": path}
    if not builds:
        builds = {"interpreted": None} if args.interpreted else \
            {"compiled": bench_compiled.env()}
    with cleanup():
        runs: dict[tuple[str, str], tuple[Gateway, Proc | None, str]] = {}
        for name, env in builds.items():
            up, port = start_upstream()
            runs[(name, "routing-only")] = (start_gateway(
                f"{name}-routing", backend="auto",
                routes={"/": f"http://127.0.0.1:{port}"}, env=env), up, "/")
            runs[(name, "bundled")] = (start_gateway(
                f"{name}-bundled", backend="auto", extensions=BUNDLED_EXTENSIONS,
                apps=[bench_app("app", "/app")], env=env), None, "/app/")
        found: dict[tuple[str, str], list[tuple[float, float, float]]] = {k: [] for k in runs}
        for rnd in range(args.rounds):
            for key, (gw, upstream, path) in runs.items():
                found[key].append(_measure(gw, upstream, path, args.seconds))
                print(f"round {rnd + 1}/{args.rounds} {key[0]} {key[1]}: "
                      f"{found[key][-1][0]:.0f} req/s", file=sys.stderr)
    print("| build | config | req/s | gateway CPU/request | upstream CPU/request |")
    print("|---|---|---|---|---|")
    for (name, config), rows in found.items():
        rps, gw_us, up_us = (statistics.median(r[i] for r in rows) for i in range(3))
        print(f"| {name} | {config} | {rps:.0f} | {gw_us:.1f} µs | {up_us:.1f} µs |")
    print()
    for name in builds:
        pairs = [1 - b[0] / r[0] for r, b in zip(found[(name, "routing-only")],
                                                  found[(name, "bundled")], strict=True)]
        print(f"{name}: bundled pipeline cost {statistics.median(pairs) * 100:.1f}% "
              "(per round: " + ", ".join(f"{p * 100:.0f}%" for p in pairs) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
