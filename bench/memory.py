"""Memory of the gateway: RSS after many requests, and while moving large bodies.

    python bench/memory.py [--quick] [--requests N]

A headless gateway (`backend = "auto"`) runs `bench.apps:bodies` as an orchestrated app on `/app`.

* Requests: the paced client (bench/load.py, 64 connections, unpaced, stops at a count) sends
  10k `GET /app/` (the request log ring buffer of 10000 is then full: the baseline); then wrk
  (64 connections) in bounded chunks, the gateway's own request count read from `/metrics`
  between chunks, until N (default 1,000,000; `--quick` 100,000).
  The RSS of the gateway process is sampled after every chunk. Target (flat memory): RSS after
  N is at most 10% above RSS after 10k.
* Bodies: 400 MiB moved through the gateway on fresh connections, two 100 MiB uploads
  (`POST /app/upload`, streamed, discarded by the app) and two 100 MiB downloads
  (`GET /app/download?mb=100`, streamed by the app, discarded by the client), while a thread
  samples the gateway's RSS every 10 ms. A proxy that held a whole body would grow by 100 MiB.
  Target: peak growth under 25 MiB (a quarter of one body).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    Gateway,
    Section,
    Target,
    bench_app,
    mib,
    rss,
    standalone,
    start_gateway,
)
from bench.load import Paced, transfer, wrk  # noqa: E402

BASELINE = 10_000
BODY_MB = 100
BODY_GROWTH_LIMIT = 25 * 2**20


def requests_rss(gw: Gateway, total: int) -> dict[str, Any]:
    """Load in wrk chunks until the gateway has answered `total` requests (bounded in time)."""
    curve: list[tuple[int, int]] = []
    began = time.monotonic()
    count = gw.requests()
    if count < BASELINE:  # exactly up to the baseline: the paced client stops at a count
        Paced(gw.port, "/app/", 50_000, 60, connections=64,
              max_requests=BASELINE - count).result()
        count = gw.requests()
    at_baseline = (count, gw.rss())
    rate = max(1000.0, count / (time.monotonic() - began))
    budget = time.monotonic() + max(120.0, 4 * total / rate)  # never load for ever
    curve.append(at_baseline)
    started = time.monotonic()
    first = True
    while count < total and time.monotonic() < budget:
        # The first chunk is short: it measures wrk's rate, which sizes the next ones.
        seconds = 2.0 if first else min(10.0, max(1.0, (total - count) / rate))
        first = False
        wrk(gw.port, 64, seconds, "/app/")
        count = gw.requests()
        curve.append((count, gw.rss()))
        rate = max(1000.0, (count - at_baseline[0]) / (time.monotonic() - started))
    return {"baseline": at_baseline, "final": curve[-1], "curve": curve,
            "seconds": time.monotonic() - started, "rate": rate}


def bodies_rss(gw: Gateway) -> dict[str, Any]:
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(rss(gw.proc.pid))
            time.sleep(0.01)

    before = gw.rss()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    moves = []
    size = BODY_MB * 2**20
    try:
        for direction in ("upload", "download", "upload", "download"):
            if direction == "upload":
                status, got, secs = transfer(gw.port, "POST", "/app/upload", upload=size)
                ok = status == 200
            else:
                status, got, secs = transfer(gw.port, "GET", f"/app/download?mb={BODY_MB}")
                ok = status == 200 and got == size
            moves.append({"direction": direction, "status": status, "bytes": size,
                          "received": got, "seconds": secs, "ok": ok,
                          "mib_per_s": size / 2**20 / secs})
    finally:
        stop.set()
        sampler.join(5)
    time.sleep(0.5)
    return {"before": before, "peak": max(samples, default=before), "after": gw.rss(),
            "moves": moves}


def memory(quick: bool = False, total: int | None = None) -> Section:
    total = total or (100_000 if quick else 1_000_000)
    gw = start_gateway("memory", backend="auto",
                       apps=[bench_app("app", "/app", "bench.apps:bodies")])
    try:
        reqs = requests_rss(gw, total)
        bodies = bodies_rss(gw)
    finally:
        gw.stop()
    section = Section("Gateway memory (RSS)")
    (n0, r0), (n1, r1) = reqs["baseline"], reqs["final"]
    growth = (r1 - r0) / r0
    curve = ", ".join(f"{n // 1000}k: {r / 2**20:.0f}" for n, r in reqs["curve"][::max(
        1, len(reqs["curve"]) // 10)])
    moved = sum(m["bytes"] for m in bodies["moves"])
    body_growth = bodies["peak"] - bodies["before"]
    section.markdown = [
        f"Requests: `GET /app/` through the gateway to an orchestrated app, wrk -c64; "
        f"{n1 - n0:,} requests after the baseline in {reqs['seconds']:.0f} s "
        f"({reqs['rate']:.0f} req/s).", "",
        "| after requests | RSS |", "|---|---|",
        f"| {n0:,} | {mib(r0)} |", f"| {n1:,} | {mib(r1)} |", "",
        f"RSS (MiB) along the way: {curve}.", "",
        f"Bodies: {moved / 2**20:.0f} MiB moved through the gateway (" + ", ".join(
            f"{m['direction']} {m['mib_per_s']:.0f} MiB/s{'' if m['ok'] else ' FAILED'}"
            for m in bodies["moves"]) + f"); RSS before {mib(bodies['before'])}, peak "
        f"{mib(bodies['peak'])}, after {mib(bodies['after'])}."]
    section.targets.append(Target(
        f"RSS after {n1 // 1000}k vs after {n0 // 1000}k requests", "flat: <= +10%",
        f"{growth * 100:+.1f}% ({mib(r0)} -> {mib(r1)})", growth <= 0.10 and n1 >= total))
    section.targets.append(Target(
        f"RSS growth moving {moved / 2**20:.0f} MiB of bodies",
        f"< {mib(BODY_GROWTH_LIMIT)} peak", f"{mib(body_growth)} peak, "
        f"{mib(bodies['after'] - bodies['before'])} after",
        body_growth < BODY_GROWTH_LIMIT and all(m["ok"] for m in bodies["moves"])))
    section.data = {"requests": reqs, "bodies": bodies, "target_requests": total}
    return section


if __name__ == "__main__":
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--requests", type=int)
    known, rest = ap.parse_known_args()
    sys.argv[1:] = rest
    sys.exit(standalone(lambda quick: memory(quick, known.requests), "memory"))
