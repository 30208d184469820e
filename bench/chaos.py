"""The chaos suite, long: the scenarios of tests/chaos with minutes of load instead of seconds.

    python bench/chaos.py                    # 60 s of load per scenario
    python bench/chaos.py --seconds 300      # longer: more kills, edits, slow clients
    python bench/chaos.py -k kills           # only the SIGKILL scenario (a pytest -k filter)

It runs pytest on tests/chaos with PYSERVE_CHAOS_SECONDS set, collects what each scenario
reports (PYSERVE_CHAOS_REPORT), prints a summary (requests, outcomes by status, latencies,
kills and recovery times, slow-client verdicts) and saves it as JSON in bench/results/.
The exit code is pytest's: 0 when every rule held for the whole run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def run_suite(seconds: float, extra: list[str], report: Path) -> int:
    env = {**os.environ, "PYSERVE_CHAOS_SECONDS": str(seconds),
           "PYSERVE_CHAOS_REPORT": str(report)}
    # Every scenario scales with the seconds; give each test room beyond its load time.
    timeout = int(seconds * 3 + 180)
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "chaos"), "-m", "chaos",
           "-q", "-rfE", "-o", f"timeout={timeout}", *extra]
    print("$", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT, env=env)


def load_reports(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def _statuses(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or "-"


def summarize(rows: list[dict[str, Any]]) -> str:
    """One paragraph per scenario, in the order they ran."""
    out: list[str] = []
    for row in rows:
        name = row["scenario"]
        out.append(f"\n== {name} ({row['seconds']:g} s of load) ==")
        if name == "sigkill_under_load":
            out.append(f"requests {row['requests']}  [{_statuses(row['by_status'])}]  "
                       f"failures {row['failures']}")
            out.append(f"latency p50 {row['p50_s'] * 1000:.1f} ms  p99 {row['p99_s'] * 1000:.1f}"
                       f" ms  max {row['max_s'] * 1000:.0f} ms;  gateway /health max "
                       f"{row['builtin_max_s'] * 1000:.0f} ms")
            out.append(f"kills {row['kills']}  {row['kills_by_role']}  restarts "
                       f"{row['restarts']}")
            out.append(f"recovery mean {row['recovery_mean_s']:.2f} s  max "
                       f"{row['recovery_max_s']:.2f} s;  orphans {len(row['orphans'])}")
            for sample in row.get("failure_samples", []):
                out.append(f"  ! {sample}")
        elif name == "hung_app":
            prompt, frozen = row["prompt"], row["frozen_prompt"]
            out.append(f"hung requests {row['hung_requests']} (504 each);  others meanwhile: "
                       f"{prompt['requests']} answered, max {prompt['max_s'] * 1000:.0f} ms;  "
                       f"control channel {row['control_status_s'] * 1000:.0f} ms")
            out.append(f"frozen app (SIGSTOP): {row['frozen_requests']} requests 504;  others "
                       f"max {frozen['max_s'] * 1000:.0f} ms;  replaced after "
                       f"{row['frozen_recovered_s']:.1f} s ({' -> '.join(row['states'])})")
        elif name.startswith("malformed_"):
            counts: dict[str, int] = {}
            for per_status in row["outcomes"].values():
                for status, n in per_status.items():
                    counts[status] = counts.get(status, 0) + n
            out.append(f"{len(row['outcomes'])} kinds of malformed request x {row['rounds']}"
                       f" rounds: {_statuses(counts)}")
        elif name.startswith("request_ids_"):
            out.append(f"{row['cases']} injected request ids: {_statuses(row['statuses'])}")
        elif name.startswith("slowloris_"):
            for kind, verdicts in row["outcomes"].items():
                out.append(f"{kind:13} {_statuses(verdicts):30} longest {row['longest_s'][kind]}"
                           f" s")
            by = row["bystander"]
            out.append(f"bystander: {by['requests']} requests [{_statuses(by['by_status'])}], "
                       f"max {by['max_s'] * 1000:.0f} ms")
        elif name == "config_live_edits":
            steps: dict[str, int] = {}
            for step in row["steps"]:
                steps[step] = steps.get(step, 0) + 1
            out.append(f"edits {len(row['steps'])} {steps};  refused {row['rejected']}, "
                       f"applied {row['applied']}")
            out.append(f"requests meanwhile {row['requests']} [{_statuses(row['by_status'])}]")
        else:
            out.append(json.dumps(row, default=str))
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0,
                    help="seconds of load per scenario (default 60)")
    ap.add_argument("-k", dest="keyword", help="only the tests matching this pytest -k filter")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = ap.parse_args()

    extra = ["-k", args.keyword] if args.keyword else []
    with tempfile.TemporaryDirectory(prefix="pyserve-chaos-") as tmp:
        report = Path(tmp) / "report.jsonl"
        started = time.monotonic()
        code = run_suite(args.seconds, extra, report)
        took = time.monotonic() - started
        rows = load_reports(report)
    print(summarize(rows))
    verdict = "all rules held" if code == 0 else f"FAILED (pytest exit {code})"
    print(f"\nchaos run: {len(rows)} scenario reports in {took:.0f} s: {verdict}")
    if not args.no_save and rows:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / time.strftime("chaos-%Y%m%d-%H%M%S.json")
        path.write_text(json.dumps({"seconds": args.seconds, "exit_code": code,
                                    "took_s": round(took, 1), "scenarios": rows},
                                   indent=2, default=str) + "\n", encoding="utf-8")
        print(f"saved {path.relative_to(ROOT)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
