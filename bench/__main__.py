"""Every benchmark of issue 7 in one command, with each target stated as met or not.

    python -m bench                 # full run (~8 minutes on 2 cores)
    python -m bench --quick         # smoke test (~2 minutes)
    python -m bench --only throughput,recovery --requests 300000

Sections (each also runs alone: python bench/NAME.py [--quick]):

    throughput  bench/run.py       direct granian vs nginx and Caddy vs gateway per backend,
                                   bundled pipeline, TUI open
    looplag     bench/looplag.py   loop lag of the TUI process at ~5k req/s
    recovery    bench/recovery.py  crash to healthy (SIGKILL) vs restart delay + app start
    rollover    bench/rollover.py  failed requests and durations of backend switches and reload
    memory      bench/memory.py    RSS after 10k vs N requests; RSS while moving 400 MiB bodies

Output: the Markdown report on stdout (progress on stderr), and the same Markdown plus JSON in
bench/results/bench-DATE.{md,json}. Everything binds 127.0.0.1, every load is bounded in time
and count, and every process started is stopped (process groups), on Ctrl-C too. A section
that fails is reported as such and the others still run. Needs wrk and nginx
(apt-get install -y nginx wrk). Never part of the test suite.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    Section,
    Target,
    cleanup,
    machine_load,
    remove_workdir,
    require_tools,
    save,
    stop_all,
    targets_table,
    workdir,
)

SECTIONS = ("throughput", "looplag", "recovery", "rollover", "memory")


def runners(args: argparse.Namespace) -> dict[str, Callable[[], Section]]:
    from bench.looplag import looplag
    from bench.memory import memory
    from bench.recovery import recovery
    from bench.rollover import rollover
    from bench.run import throughput

    return {
        "throughput": lambda: throughput(args.quick, backends=args.backends,
                                         rounds=args.rounds, seconds=args.seconds,
                                         compiled=not args.no_compiled),
        "looplag": lambda: looplag(args.quick, args.rate),
        "recovery": lambda: recovery(args.quick),
        "rollover": lambda: rollover(args.quick),
        "memory": lambda: memory(args.quick, args.requests),
    }


def _run_sections(args: argparse.Namespace, chosen: list[str], sections: list[Section],
                  began: float) -> None:
    run = runners(args)
    for name in chosen:
        print(f"== {name} ({time.monotonic() - began:.0f} s in)", file=sys.stderr)
        try:
            sections.append(run[name]())
        except Exception as exc:
            traceback.print_exc()
            sections.append(Section(f"{name}: FAILED", [f"`{exc!r}`; process logs in "
                                                        f"{workdir()}"],
                                    [Target(name, "-", f"failed: {exc}", None)]))
        finally:
            stop_all()  # whatever a section left running


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke test, about 2 minutes")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    ap.add_argument("--backends", help="throughput: backends (default all; --quick: builtin)")
    ap.add_argument("--rounds", type=int, help="throughput: rounds (default 3; --quick: 2)")
    ap.add_argument("--no-compiled", action="store_true",
                    help="throughput: skip the compiled build (built with mypyc, ~1 min)")
    ap.add_argument("--seconds", type=float, help="throughput: seconds per wrk run")
    ap.add_argument("--rate", type=float, default=5000.0, help="looplag: req/s (default 5000)")
    ap.add_argument("--requests", type=int,
                    help="memory: requests (default 1,000,000; --quick: 100,000)")
    args = ap.parse_args()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := set(chosen) - set(SECTIONS):
        ap.error(f"unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    if problem := require_tools():
        print(problem, file=sys.stderr)
        return 1

    load_before = machine_load()
    began = time.monotonic()
    sections: list[Section] = []
    try:
        with cleanup():
            _run_sections(args, chosen, sections, began)
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped", file=sys.stderr)
        remove_workdir()
        return 130
    failed = any(t.met is None for s in sections for t in s.targets)
    elapsed = time.monotonic() - began
    load_after = machine_load()
    targets = [t for s in sections for t in s.targets]
    mode = "--quick" if args.quick else "full"
    text = "\n".join([
        f"## pyserve-tui benchmarks ({mode} run, {load_before['time']})", "",
        f"{load_before['cpus']} CPUs; load average {load_before['loadavg']} before, "
        f"{load_after['loadavg']} after; {elapsed / 60:.1f} minutes.", "",
        "### Targets", "", *targets_table(targets), "",
        *(s.render() for s in sections)])
    print(text)
    out = save("bench", {"mode": mode, "machine_before": load_before,
                         "machine_after": load_after, "seconds": elapsed,
                         "targets": [t.__dict__ for t in targets],
                         "sections": {s.title: s.data for s in sections}}, text)
    print(f"Markdown: {out.with_suffix('.md')}\nJSON: {out}", file=sys.stderr)
    if not failed:
        remove_workdir()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
