"""Throughput and latency: direct granian vs nginx and Caddy vs our gateway per backend,
headless, with the bundled pipeline and with the TUI open.

    python bench/run.py                     # 64 and 256 connections, 3 rounds of 5 s, all backends
    python bench/run.py --quick             # 2 rounds of 2 s, the built-in front only
    python bench/run.py --no-ui --backends builtin,granian --rounds 5

Every configuration serves the same plain-text app (`bench.apps:plaintext`): "direct" is that
app under granian (one worker) on 127.0.0.1, the ceiling; every other configuration proxies
to an identical upstream of its own (one shared upstream runs out of connections): nginx
`proxy_pass` with upstream keep-alive (generated config), Caddy `reverse_proxy`, our gateway
headless (`pyserve-tui --no-ui`, one `proxy_pass` location) on each backend, the gateway with
the bundled project's pipeline (security, monitoring, process orchestration, routing) in
front of an orchestrated app (`gateway-builtin-bundled`), and the gateway with the workbench
TUI open (bench/ui_gateway.py: Textual headless, real Engine, same loop) whose loop-lag probe
is read for the measurement windows. Load comes from wrk (bounded by duration), 1 s warm-up
then the measurement; configurations alternate within each round (and the order rotates
between rounds) because the machine is shared and noisy; the table shows medians. The UI and
pipeline costs are medians of per-round ratios to the headless routing-only run just before.

Issue 17's goals are judged on the build `pip install .` gives: the request path compiled by
setup.py (`gateway-compiled*`, built by bench/compiled.py). The editable install runs the same
code interpreted (`gateway-builtin*`, this checkout); it is measured against the same goals
for reference ("reference: met/not met").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import compiled as bench_compiled  # noqa: E402
from bench.harness import (  # noqa: E402
    Section,
    Target,
    bench_app,
    cleanup,
    lag_summary,
    machine_load,
    remove_workdir,
    require_tools,
    save,
    start_caddy,
    start_gateway,
    start_nginx,
    start_upstream,
)
from bench.load import wrk  # noqa: E402

ALL_BACKENDS = "builtin,granian,uvicorn,hypercorn"
MAIN = "gateway-builtin"  # what `backend = "auto"` serves the gateway with
UI_CONFIG = "gateway-builtin-ui"
BUNDLED = "gateway-builtin-bundled"
#: The same on the compiled build (setup.py, bench/compiled.py).
COMPILED = "gateway-compiled"
#: Each routing-only gateway the goals are measured on, with its bundled-pipeline and
#: TUI-open runs (compared round by round with it).
VARIANTS = {MAIN: (BUNDLED, UI_CONFIG),
            COMPILED: (f"{COMPILED}-bundled", f"{COMPILED}-ui")}
#: The bundled project's pipeline in front of an orchestrated app (see workbench.toml).
BUNDLED_EXTENSIONS = [
    {"type": "security", "config": {"blocked_ips": ["10.0.0.50", "192.168.0.0/16"]}},
    {"type": "monitoring", "config": {"enable_metrics": True}},
]
#: What issue 17 asks of the gateway (routing-only, built-in front), the same run.
GOAL_NGINX, GOAL_CADDY, GOAL_P99, GOAL_PIPELINE, GOAL_UI = 0.6, 1.8, 1.5, 0.15, 0.10


def throughput(quick: bool = False, *, backends: str | None = None, rounds: int | None = None,
               seconds: float | None = None, connections: str = "64,256", ui: bool = True,
               nginx_workers: str = "auto", compiled: bool = True) -> Section:
    backend_list = [b for b in (backends or ("builtin" if quick else ALL_BACKENDS)).split(",")
                    if b]
    rounds = rounds or (2 if quick else 3)  # one round alone is too noisy on a shared box
    seconds = seconds or (2 if quick else 5)
    conns = [int(c) for c in connections.split(",")]

    # Each configuration has an upstream of its own: a granian worker accepts at most
    # `backpressure` (= backlog, 1024) connections, and the idle keep-alive pools of five
    # proxies sharing one upstream exhaust that at 256 connections each: new connections
    # then hang (seen as 0 req/s for "direct" and seconds-long p99s).
    ports: dict[str, int] = {}
    _, ports["direct"] = start_upstream()
    _, ports["nginx"] = start_nginx(start_upstream()[1], nginx_workers)
    _, ports["caddy"] = start_caddy(start_upstream()[1])
    gateways = {}
    names = [f"gateway-{b}" for b in backend_list]
    if MAIN in names:
        if compiled:
            names.append(COMPILED)
        for base in (MAIN, COMPILED):
            if base in names:
                bundled, with_ui = VARIANTS[base]
                names += [bundled] + ([with_ui] if ui else [])
    paths = {name: "/" for name in names}
    build = bench_compiled.env() if compiled and COMPILED in names else None
    for name in names:
        env = build if name.startswith(COMPILED) else None
        if name in (BUNDLED, VARIANTS[COMPILED][0]):
            gateways[name] = start_gateway(name, backend="auto", extensions=BUNDLED_EXTENSIONS,
                                           apps=[bench_app("app", "/app")], env=env)
            paths[name] = "/app/"
            continue
        routes = {"/": f"http://127.0.0.1:{start_upstream()[1]}"}
        backend = name.split("-")[1]
        gateways[name] = start_gateway(name, ui=name in (UI_CONFIG, VARIANTS[COMPILED][1]),
                                       backend="auto" if backend in ("builtin", "compiled")
                                       else backend, routes=routes, env=env)
    ports.update({name: gw.port for name, gw in gateways.items()})

    results: dict[str, dict[int, list[dict[str, float]]]] = {n: {c: [] for c in conns}
                                                            for n in ports}
    windows: dict[int, list[tuple[float, float]]] = {c: [] for c in conns}
    # The TUI-open run always follows the headless granian run: their per-round ratio (the
    # UI cost) then compares runs seconds apart, whatever else the machine is doing.
    followers = {n for pair in VARIANTS.values() for n in pair}
    units = [[n] for n in ports if n not in followers]
    for base, pair in VARIANTS.items():
        for paired in pair:
            if paired in ports:
                next(u for u in units if u[0] == base).append(paired)
    for rnd in range(rounds):
        k = rnd % len(units)
        order = [n for unit in units[k:] + units[:k] for n in unit]
        for c in conns:
            for name in order:
                path = paths.get(name, "/")
                wrk(ports[name], c, 1, path=path)  # warm the pools
                began = time.time()
                r = wrk(ports[name], c, seconds, path=path)
                if name == UI_CONFIG:
                    windows[c].append((began, time.time()))
                results[name][c].append(r)
                print(f"round {rnd + 1}/{rounds} c={c} {name}: {r['rps']:.0f} req/s "
                      f"p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms", file=sys.stderr)
    lag: dict[int, dict[str, float]] = {}
    ui_facts: dict[str, Any] = {}
    if ui:
        dump = gateways[UI_CONFIG].lag_dump()
        lag = {c: lag_summary(dump["samples"], windows[c]) for c in conns}
        ui_facts = {k: v for k, v in dump.items() if k != "samples"}
    for gw in gateways.values():
        gw.stop()
    return report(results, conns, backend_list, lag, ui_facts,
                  {"rounds": rounds, "seconds": seconds, "backends": backend_list})


def report(results: dict[str, dict[int, list[dict[str, float]]]], conns: list[int],
           backends: list[str], lag: dict[int, dict[str, float]], ui_facts: dict[str, Any],
           params: dict[str, Any]) -> Section:
    section = Section("Throughput: direct, nginx, Caddy, gateway (per backend, bundled "
                      "pipeline, TUI open)")
    section.markdown = [
        f"`bench.apps:plaintext` under granian; wrk -t2, {params['rounds']} round(s) of "
        f"{params['seconds']} s after 1 s warm-up, configurations alternating; medians "
        "(req/s range over rounds in brackets; errors: non-2xx and socket errors summed over "
        "the rounds). Each configuration proxies to an upstream of its own.", "",
        "| config | conns | req/s | p50 ms | p99 ms | vs nginx | vs Caddy | p99 vs nginx "
        "| vs direct | errors |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for c in conns:
        med = {n: {k: statistics.median(r[k] for r in runs[c]) for k in runs[c][0]}
               for n, runs in results.items()}
        for name, m in med.items():
            rps = [r["rps"] for r in results[name][c]]
            m["rps_min"], m["rps_max"] = min(rps), max(rps)
            m["ratio_nginx"] = m["rps"] / med["nginx"]["rps"]
            m["ratio_caddy"] = m["rps"] / med["caddy"]["rps"]
            m["p99_ratio_nginx"] = m["p99_ms"] / med["nginx"]["p99_ms"]
            m["ratio_direct"] = m["rps"] / med["direct"]["rps"]
            spread = f" [{m['rps_min']:.0f}–{m['rps_max']:.0f}]" if len(rps) > 1 else ""
            m["errors_total"] = sum(r["non2xx"] + r["socket_errors"] for r in results[name][c])
            section.markdown.append(
                f"| {name} | {c} | {m['rps']:.0f}{spread} | {m['p50_ms']:.2f} | "
                f"{m['p99_ms']:.2f} | {m['ratio_nginx']:.2f}x | {m['ratio_caddy']:.2f}x | "
                f"{m['p99_ratio_nginx']:.2f}x | "
                f"{m['ratio_direct']:.2f}x | {int(m['errors_total'])} |")
            summary.setdefault(name, {})[str(c)] = m
        for base, (bundled, with_ui) in VARIANTS.items():
            if base not in med:
                continue
            # What `pip install .` gives (a compiled wheel, setup.py) is judged; the editable
            # install's interpreted build is measured against the same goals for reference.
            reference = base != COMPILED
            build = "editable install, interpreted" if reference else "pip install, compiled"
            m = med[base]
            section.targets.append(Target(
                f"gateway ({build}) throughput, c={c}", f">= {GOAL_NGINX}x nginx",
                f"{m['ratio_nginx']:.2f}x ({m['rps']:.0f} vs {med['nginx']['rps']:.0f} req/s)",
                m["ratio_nginx"] >= GOAL_NGINX, reference))
            section.targets.append(Target(
                f"gateway ({build}) throughput vs Caddy, c={c}", f">= {GOAL_CADDY}x Caddy",
                f"{m['ratio_caddy']:.2f}x ({m['rps']:.0f} vs {med['caddy']['rps']:.0f} req/s)",
                m["ratio_caddy"] >= GOAL_CADDY, reference))
            section.targets.append(Target(
                f"gateway ({build}) p99, c={c}", f"<= {GOAL_P99}x nginx",
                f"{m['p99_ratio_nginx']:.2f}x ({m['p99_ms']:.1f} vs "
                f"{med['nginx']['p99_ms']:.1f} ms)", m["p99_ratio_nginx"] <= GOAL_P99,
                reference))
            for name, label, goal in ((bundled, "bundled pipeline cost", GOAL_PIPELINE),
                                      (with_ui, "UI cost", GOAL_UI)):
                if name not in med:
                    continue
                paired = [1 - u["rps"] / h["rps"] for u, h in zip(
                    results[name][c], results[base][c], strict=True) if h["rps"]]
                cost = statistics.median(paired)
                section.targets.append(Target(
                    f"{label} ({build}, throughput), c={c}",
                    f"<= {goal * 100:.0f}% of routing-only",
                    f"{cost * 100:.1f}% (median of per-round pairs: " + ", ".join(
                        f"{p * 100:.0f}%" for p in paired) + ")", cost <= goal, reference))
                summary[name][str(c)]["cost"] = cost
                summary[name][str(c)]["cost_per_round"] = paired
    if lag:
        section.markdown += ["", "Loop lag of the TUI process during its wrk runs (saturated, "
                             "not a target; see the loop-lag section for ~5k req/s): " + "; ".join(
                                 f"c={c}: p50 {v['p50_ms']:.1f} ms, p99 {v['p99_ms']:.1f} ms, "
                                 f"max {v['max_ms']:.1f} ms" for c, v in lag.items()) + "."]
    if ui_facts:
        section.markdown.append(f"The TUI was live: {ui_facts.get('request_log_rows')} rows in "
                                f"its request log, its last metrics poll showed "
                                f"{ui_facts.get('ui_seen_requests')} gateway requests.")
    section.data = {"params": params, "results": summary,
                    "ui_lag_saturated": {str(c): v for c, v in lag.items()},
                    "ui_facts": ui_facts}
    return section


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", default="64,256")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--backends", help=f"default {ALL_BACKENDS} (--quick: granian)")
    ap.add_argument("--no-ui", action="store_true", help="skip the TUI-open configuration")
    ap.add_argument("--ui", action="store_true", help=argparse.SUPPRESS)  # the default now
    ap.add_argument("--nginx-workers", default="auto")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-compiled", action="store_true",
                    help="skip the compiled build (gateway-compiled*)")
    args = ap.parse_args()
    if problem := require_tools():
        print(problem, file=sys.stderr)
        return 1
    try:
        with cleanup():
            load = machine_load()
            section = throughput(args.quick, backends=args.backends, rounds=args.rounds,
                                 seconds=args.seconds, connections=args.connections,
                                 ui=not args.no_ui, nginx_workers=args.nginx_workers,
                                 compiled=not args.no_compiled)
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped", file=sys.stderr)
        remove_workdir()
        return 130
    text = section.render()
    print(text)
    out = save("throughput", {"machine": load, "args": vars(args), **section.data}, text)
    print(f"JSON: {out}", file=sys.stderr)
    remove_workdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
