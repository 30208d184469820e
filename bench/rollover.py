"""Backend switches and a code reload under steady load: failed requests and durations.

    python bench/rollover.py [--quick]

A headless gateway (`backend = "auto"`: the built-in front, the app on granian) runs one
orchestrated app that inherits the backend and has `reload = true` (its module lives in the
run's work folder). The paced client
(bench/load.py) sends `GET /app/` at a steady rate over 16 keep-alive connections, through
the gateway to the app, for the whole run. Meanwhile, two seconds apart:

* `pyserve-tui backend NAME -c PROJECT` switches the serving backend (the gateway is
  re-served and the app rolled over to the new backend): auto -> uvicorn -> auto
  (full mode: auto -> granian -> uvicorn -> hypercorn -> auto). Duration: the command's wall time
  (it returns once the switch is done); the CLI's own start-up is measured with `status` and
  reported too.
* the app's module is edited (written to a temporary name, then renamed, as editors do), so
  the watcher rolls it over to a new process: the duration is from the edit until the first
  response carrying the new code, seen from outside.

Every request that does not get a 200 is a failure (bench/load.py says which kinds count).
Target: 0 failed requests across every switch and the reload.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    Section,
    Target,
    http_get,
    standalone,
    start_gateway,
    subdir,
    wait_until,
)
from bench.load import Paced  # noqa: E402

APP_SOURCE = '''"""The app the reload benchmark edits: it answers its version."""

VERSION = b"{version}"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(VERSION)).encode())]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": HEADERS}})
    await send({{"type": "http.response.body", "body": VERSION}})
'''


def write_app(folder: Path, version: str) -> None:
    target = folder / "reloadapp.py"
    tmp = folder / ".reloadapp.py.tmp"
    tmp.write_text(APP_SOURCE.format(version=version))
    tmp.replace(target)


def rollover(quick: bool = False) -> Section:
    switches = ["uvicorn", "auto"] if quick else ["granian", "uvicorn", "hypercorn", "auto"]
    rate = 500.0 if quick else 1000.0
    source = subdir("reload-src")
    write_app(source, "v1")
    gw = start_gateway("rollover", backend="auto", apps=[{
        "name": "app", "path": "/app", "app_path": "reloadapp:app",
        "module_path": str(source), "reload": True}])
    events: list[dict[str, Any]] = []
    try:
        code, _, cli_s = gw.control("status")
        assert code == 0, "pyserve-tui status failed"
        load = Paced(gw.port, "/app/", rate, 180, connections=16)
        time.sleep(2.0)
        for name in switches:
            began = time.time()
            code, out, took = gw.control("backend", name)
            events.append({"what": f"switch to {name}", "start": began, "end": time.time(),
                           "seconds": took, "ok": code == 0, "output": out,
                           "backend_after": gw.metrics()["gateway"].get("backend"),
                           "app_backend": gw.app("app").get("backend")})
            time.sleep(2.0)
        began = time.time()
        write_app(source, "v2")
        took = wait_until(lambda: http_get(gw.port, "/app/")[1] == b"v2",
                          "the reloaded code to answer", 60, interval=0.01, proc=gw.proc)
        events.append({"what": "reload (edit to first v2)", "start": began,
                       "end": time.time(), "seconds": took, "ok": True,
                       "pid_after": gw.app("app").get("pid")})
        time.sleep(2.0)
        result = load.result(wait=False)
    finally:
        gw.stop()
    return report(result, events, rate, cli_s)


def _outcome(ev: dict[str, Any]) -> str:
    if not ev["ok"]:
        return f"FAILED: {ev.get('output', '')}"
    if "backend_after" in ev:
        return f"gateway on {ev['backend_after']}, app on {ev['app_backend']}"
    return f"new pid {ev.get('pid_after')}"


def report(load: dict[str, Any], events: list[dict[str, Any]], rate: float,
           cli_s: float) -> Section:
    first_v2 = dict(load["bodies"]).get("v2")
    section = Section("Backend switch and code reload under steady load")
    section.markdown = [
        f"Paced client on `/app/` (gateway -> orchestrated app): target {rate:.0f} req/s, "
        f"achieved {load['rate']:.0f} req/s over {load['seconds']:.0f} s, {load['requests']} "
        f"requests, {load['failed']} failed, p99 {load['p99_ms']:.1f} ms, "
        f"max {load['max_ms']:.0f} ms. `pyserve-tui status` (CLI start-up and one round "
        f"trip) takes {cli_s * 1000:.0f} ms, included in the switch times.", "",
        "| event | duration ms | outcome | failed requests during it (+2 s after) |",
        "|---|---|---|---|"]
    total_failed = 0
    for ev in events:
        failed = [kind for t, kind in load["failure_times"]
                  if ev["start"] <= t <= ev["end"] + 2.0]
        total_failed += len(failed)
        detail = f"{len(failed)}" + (f" ({', '.join(sorted(set(failed)))})" if failed else "")
        section.markdown.append(f"| {ev['what']} | {ev['seconds'] * 1000:.0f} | "
                                f"{_outcome(ev)} | "
                                f"{detail} |")
    if first_v2 is not None:
        reload_ev = events[-1]
        section.markdown.append(f"\nThe paced client saw the new code "
                                f"{(first_v2 - reload_ev['start']) * 1000:.0f} ms after the "
                                "edit.")
    if load["failures"]:
        section.markdown.append(f"Failures by kind: {load['failures']}.")
    section.targets.append(Target(
        "failed requests across switches and reload", "0",
        f"{load['failed']} of {load['requests']} "
        f"({len(events) - 1} switches, 1 reload)", load["failed"] == 0 and all(
            e["ok"] for e in events)))
    section.data = {"load": load, "events": events, "cli_status_s": cli_s}
    return section


if __name__ == "__main__":
    sys.exit(standalone(rollover, "rollover"))
