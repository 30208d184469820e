"""Gateway throughput and latency against nginx and a direct baseline, in one run.

    python bench/run.py                     # default: 64 and 256 connections, 3 rounds, 5 s each
    python bench/run.py --quick             # one round, 3 s, 64 connections

Every configuration proxies to the same upstream: a plain-text ASGI app served directly by
granian on 127.0.0.1. Configurations are run in alternating rounds (the machine is shared and
noisy) and the median of each is compared with nginx `proxy_pass` (upstream keep-alive) and
with the upstream itself. Load comes from wrk, bounded by duration. Everything binds
127.0.0.1. Output: a Markdown table on stdout and JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str = "/", timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                if s.recv(12).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered 200 on 127.0.0.1:{port}{path} in {timeout}s")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    extra: list[Path] = field(default_factory=list)

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait()


def spawn(name: str, argv: list[str], **kw: object) -> Proc:
    popen = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
    return Proc(name, popen)


def start_upstream(port: int) -> Proc:
    return spawn("upstream", [sys.executable, "-m", "granian", "--interface", "asgi",
                              "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                              "--no-ws", "--log-level", "error", "bench.apps:plaintext"],
                 cwd=ROOT)


NGINX_CONF = """
worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log error;
daemon off;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  upstream app {{ server 127.0.0.1:{upstream}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{port} backlog=1024;
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
"""


def start_nginx(port: int, upstream: int, workers: str) -> Proc:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    tmp = Path(tempfile.mkdtemp(prefix="pyserve-bench-nginx-"))
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, upstream=upstream, workers=workers))
    return spawn("nginx", [nginx, "-c", str(conf), "-p", str(tmp)])


GATEWAY_TOML = """
[server]
host = "127.0.0.1"
port = {port}
backend = "{backend}"
graceful_timeout = 2.0

[logging]
level = "warning"     # no per-request access line: we measure the proxy, not stdout

[[extensions]]
type = "routing"
[extensions.config.regex_locations]
"/" = {{ proxy_pass = "http://127.0.0.1:{upstream}" }}
"""


def start_gateway(port: int, upstream: int, backend: str, ui: bool) -> Proc:
    tmp = Path(tempfile.mkdtemp(prefix="pyserve-bench-gw-"))
    (tmp / "workbench.toml").write_text(GATEWAY_TOML.format(port=port, upstream=upstream,
                                                            backend=backend))
    argv = [sys.executable, str(ROOT / "bench" / "ui_gateway.py"), str(tmp / "workbench.toml")] \
        if ui else [sys.executable, "-m", "workbench.cli", "--no-ui", "-c",
                    str(tmp / "workbench.toml")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return spawn(f"gateway-{backend}{'-ui' if ui else ''}", argv, cwd=tmp, env=env)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        return float("nan")
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(port: int, connections: int, seconds: int, threads: int = 2) -> dict[str, float]:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
                          "--latency", "--timeout", "5s", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock_err = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                         out)
    return {"rps": rps, "p50_ms": _ms(lat.get("50", "nan")), "p99_ms": _ms(lat.get("99", "nan")),
            "non2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sum(map(int, sock_err.groups())) if sock_err else 0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", default="64,256")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--backends", default="granian,uvicorn,hypercorn")
    ap.add_argument("--ui", action="store_true", help="also measure with the TUI running")
    ap.add_argument("--nginx-workers", default="auto")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.connections, args.rounds, args.seconds, args.backends = "64", 1, 3, "granian"
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            print(f"{tool} is required: apt-get install -y {tool}", file=sys.stderr)
            return 1

    upstream_port = free_port()
    procs: dict[str, tuple[Proc, int]] = {}
    upstream = start_upstream(upstream_port)
    try:
        wait_http(upstream_port)
        configs = [("direct", None), ("nginx", None)]
        configs += [(f"gateway-{b}", b) for b in args.backends.split(",")]
        if args.ui:
            configs.append(("gateway-granian-ui", "granian"))
        for name, backend in configs:
            port = free_port()
            if name == "nginx":
                proc = start_nginx(port, upstream_port, args.nginx_workers)
            elif name == "direct":
                proc, port = upstream, upstream_port
            else:
                proc = start_gateway(port, upstream_port, backend or "granian", name.endswith("-ui"))
            wait_http(port)
            procs[name] = (proc, port)

        results: dict[str, dict[int, list[dict[str, float]]]] = {n: {} for n in procs}
        conns = [int(c) for c in args.connections.split(",")]
        for rnd in range(args.rounds):
            for c in conns:
                for name, (_, port) in procs.items():
                    run_wrk(port, c, 1)  # warm the pools
                    r = run_wrk(port, c, args.seconds)
                    results[name].setdefault(c, []).append(r)
                    print(f"round {rnd + 1} c={c} {name}: {r['rps']:.0f} req/s "
                          f"p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms", file=sys.stderr)
    finally:
        for proc, _ in procs.values():
            proc.stop()
        upstream.stop()

    table = ["| config | conns | req/s | p50 ms | p99 ms | vs nginx | p99 vs nginx | vs direct |",
             "|---|---|---|---|---|---|---|---|"]
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for c in conns:
        med = {n: {k: statistics.median(r[k] for r in runs[c]) for k in runs[c][0]}
               for n, runs in results.items()}
        for name, m in med.items():
            ratio = m["rps"] / med["nginx"]["rps"]
            p99r = m["p99_ms"] / med["nginx"]["p99_ms"]
            direct = m["rps"] / med["direct"]["rps"]
            table.append(f"| {name} | {c} | {m['rps']:.0f} | {m['p50_ms']:.2f} | "
                         f"{m['p99_ms']:.2f} | {ratio:.2f}x | {p99r:.2f}x | {direct:.2f}x |")
            summary.setdefault(name, {})[str(c)] = {**m, "ratio_nginx": ratio,
                                                   "p99_ratio_nginx": p99r,
                                                   "ratio_direct": direct}
    print("\n".join(table))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"throughput-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"args": vars(args), "results": summary}, indent=1))
    print(f"\nJSON: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
