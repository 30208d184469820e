"""Event-loop lag of the workbench process with the TUI open, under a fixed ~5k req/s.

    python bench/looplag.py [--quick] [--rate 5000]

bench/ui_gateway.py (the TUI, headless Textual, around a real Engine on one loop) proxies to
`bench.apps:plaintext` under granian. Its loop-lag probe is due every 10 ms; the lateness of
each tick during the load (the first second excluded) gives p50/p99/max. The load is the
paced client (bench/load.py; plain wrk has no fixed-rate mode) at `--rate` requests/s over 64
keep-alive connections; the achieved rate is reported, and the target is judged on it. The
same is then measured for the engine alone (ui_gateway.py --no-ui), for comparison.
Target: loop lag p99 < 50 ms with the UI open.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    Section,
    Target,
    lag_summary,
    standalone,
    start_gateway,
    start_upstream,
)
from bench.load import Paced  # noqa: E402

RATE = 5000.0
CONNECTIONS = 64


def measure(name: str, upstream_port: int, ui: bool, rate: float, seconds: float
            ) -> dict[str, Any]:
    gw = start_gateway(name, ui=ui, probe=not ui, backend="auto",
                       routes={"/": f"http://127.0.0.1:{upstream_port}"})
    try:
        load = Paced(gw.port, "/", rate, seconds + 1, connections=CONNECTIONS).result()
        start = load["started"] + 1.0
        dump = gw.lag_dump()
    finally:
        gw.stop()
    lag = lag_summary(dump["samples"], [(start, load["started"] + load["seconds"])])
    facts = {k: v for k, v in dump.items() if k != "samples"}
    return {"lag": lag, "load": {k: v for k, v in load.items() if k != "failure_times"},
            "facts": facts}


def looplag(quick: bool = False, rate: float = RATE, seconds: float | None = None) -> Section:
    seconds = seconds or (8.0 if quick else 30.0)
    upstream, port = start_upstream()
    try:
        ui = measure("looplag-ui", port, True, rate, seconds)
        alone = measure("looplag-engine", port, False, rate, seconds)
    finally:
        upstream.stop()
    section = Section("Event-loop lag with the TUI open, under a fixed rate")
    rows = [("TUI open", ui), ("engine alone (no TUI)", alone)]
    section.markdown = [
        f"Paced client: target {rate:.0f} req/s, {CONNECTIONS} connections, {seconds:g} s "
        "measured "
        "(after 1 s); probe due every 10 ms on the workbench's loop.", "",
        "| process | achieved req/s | failed | client p50 ms | client p99 ms | lag p50 ms "
        "| lag p99 ms | lag max ms | probe samples |",
        "|---|---|---|---|---|---|---|---|---|"]
    for label, r in rows:
        lag, load = r["lag"], r["load"]
        section.markdown.append(
            f"| {label} | {load['rate']:.0f} | {load['failed']} | {load['p50_ms']:.2f} | "
            f"{load['p99_ms']:.2f} | {lag['p50_ms']:.1f} | {lag['p99_ms']:.1f} | "
            f"{lag['max_ms']:.1f} | {lag['samples']} |")
    if ui["facts"]:
        section.markdown.append(f"\nThe TUI was live: {ui['facts'].get('request_log_rows')} "
                                "rows in its request log, its last metrics poll showed "
                                f"{ui['facts'].get('ui_seen_requests')} gateway requests.")
    achieved = ui["load"]["rate"]
    note = "" if achieved >= 0.9 * rate else f" (only {achieved:.0f} req/s achieved)"
    section.targets.append(Target(
        "loop lag p99, TUI open", f"< 50 ms at ~{rate:.0f} req/s",
        f"{ui['lag']['p99_ms']:.1f} ms at {achieved:.0f} req/s{note}",
        ui["lag"]["p99_ms"] < 50))
    section.data = {"rate": rate, "seconds": seconds, "ui": ui, "engine_alone": alone}
    return section


if __name__ == "__main__":
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--rate", type=float, default=RATE)
    known, rest = ap.parse_known_args()
    sys.argv[1:] = rest
    sys.exit(standalone(lambda quick: looplag(quick, known.rate), "looplag"))
