"""What every benchmark needs: processes that are always stopped, ports, project files, probes.

Every process a benchmark starts goes through `spawn`: it gets its own session (so its whole
process group can be signalled, and a Ctrl-C in the terminal reaches only us), its output goes
to a log file in the run's work folder, and it is registered so that `stop_all` (called on the
way out of every entry point, on Ctrl-C, SIGTERM and at exit) stops it: SIGTERM to the group,
SIGKILL after a grace period, then SIGKILL to any descendant that escaped into another group
(the gateway's app processes lead their own groups).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import tomlkit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
HOST = "127.0.0.1"

# --- the run's work folder -----------------------------------------------------------------

_WORKDIR: Path | None = None


def workdir() -> Path:
    """One temporary folder per run for project files and process logs."""
    global _WORKDIR
    if _WORKDIR is None:
        _WORKDIR = Path(tempfile.mkdtemp(prefix="pyserve-bench-"))
    return _WORKDIR


def subdir(name: str) -> Path:
    base = workdir() / name
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def remove_workdir() -> None:
    global _WORKDIR
    if _WORKDIR is not None:
        shutil.rmtree(_WORKDIR, ignore_errors=True)
        _WORKDIR = None


# --- processes -----------------------------------------------------------------------------

_LIVE: list[Proc] = []


@dataclass
class Proc:
    """A process we started, leading its own process group."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path | None = None
    descendants: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def remember_descendants(self) -> None:
        """Note the process's descendants now (app processes lead groups of their own)."""
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                self.descendants.setdefault(child.pid, child)

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM the group, wait up to `grace` s, then SIGKILL; reap escaped descendants."""
        if self.alive():
            self.remember_descendants()
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                print(f"bench: {self.name} (pid {self.pid}) ignored SIGTERM for {grace:g}s; "
                      "killing it", file=sys.stderr)
                self.signal(signal.SIGKILL)
                self.popen.wait()
        self.signal(signal.SIGKILL)  # anything left in its group (workers)
        _kill_leftovers(list(self.descendants.values()))
        with contextlib.suppress(ValueError):
            _LIVE.remove(self)
        return self.popen.returncode

    def tail(self, lines: int = 20) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _kill_leftovers(procs: list[psutil.Process], wait: float = 5.0) -> None:
    """Descendants noted earlier that outlived their parent (is_running() checks that the pid
    still names the same process, so a reused pid is never signalled)."""
    procs = [p for p in procs if _running(p)]
    if not procs:
        return
    _, alive = psutil.wait_procs(procs, timeout=wait)
    for p in alive:
        print(f"bench: killing leftover pid {p.pid}", file=sys.stderr)
        with contextlib.suppress(psutil.Error):
            p.kill()


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def spawn(name: str, argv: Sequence[str], *, cwd: Path | None = None,
          env: Mapping[str, str] | None = None, stdout: Path | None = None) -> Proc:
    """Start `argv` in a new session; output to a log file (stdout to `stdout` if given)."""
    log = workdir() / f"{name}-{time.monotonic_ns()}.log"
    with open(log, "wb") as err, open(stdout or log, "ab") as out:
        popen = subprocess.Popen(list(argv), cwd=cwd or ROOT, env=_env(env),
                                 stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=err if stdout else subprocess.STDOUT,
                                 start_new_session=True)
    proc = Proc(name, popen, log)
    _LIVE.append(proc)
    return proc


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


def run_bounded(name: str, argv: Sequence[str], timeout: float, **kw: Any) -> tuple[int, str]:
    """Run to completion (killed after `timeout` s); (exit code, output)."""
    proc = spawn(name, argv, **kw)
    try:
        proc.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"bench: {name} still running after {timeout:g}s; stopping it", file=sys.stderr)
    code = proc.stop(grace=5)
    assert proc.log is not None
    return (code if code is not None else -1), proc.log.read_text(errors="replace")


def stop_all() -> None:
    for proc in reversed(list(_LIVE)):
        with contextlib.suppress(Exception):
            proc.stop()


@contextlib.contextmanager
def cleanup() -> Iterator[None]:
    """Stop every started process on the way out, whatever the way (Ctrl-C, SIGTERM...)."""
    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {s: signal.signal(s, terminate) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        # A second Ctrl-C while we clean up must not leave processes behind.
        with _ignoring_sigint():
            stop_all()
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _ignoring_sigint() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


atexit.register(stop_all)

# --- ports and HTTP probes -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, bytes]:
    """One GET on a new connection: (status, body). Raises OSError on connection failure."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0,
               interval: float = 0.05, proc: Proc | None = None) -> float:
    """Poll `check` until true; seconds waited. Fails early when `proc` has exited."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if check():
                return time.monotonic() - started
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}) while waiting "
                               f"for {what}:\n{proc.tail()}")
        if time.monotonic() - started > timeout:
            tail = f":\n{proc.tail()}" if proc is not None else ""
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}{tail}")
        time.sleep(interval)


def wait_http(port: int, path: str = "/", timeout: float = 30.0,
              proc: Proc | None = None) -> float:
    return wait_until(lambda: http_get(port, path, 1.0)[0] == 200,
                      f"200 on {HOST}:{port}{path}", timeout, proc=proc)


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def machine_load() -> dict[str, Any]:
    one, five, fifteen = os.getloadavg()
    return {"loadavg": [round(one, 2), round(five, 2), round(fifteen, 2)],
            "cpus": os.cpu_count(), "time": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


# --- the upstream app and nginx -------------------------------------------------------------

def start_upstream(app: str = "bench.apps:plaintext") -> tuple[Proc, int]:
    """`app` served directly by granian (one worker): the ceiling and everyone's upstream."""
    port = free_port()
    proc = spawn("upstream", [PYTHON, "-m", "granian", "--interface", "asgi", "--host", HOST,
                              "--port", str(port), "--workers", "1", "--no-ws",
                              "--log-level", "error", app])
    wait_http(port, proc=proc)
    return proc, port


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


def start_nginx(upstream: int, workers: str = "auto") -> tuple[Proc, int]:
    """nginx `proxy_pass` with upstream keep-alive, generated config, on 127.0.0.1."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    tmp = subdir("nginx")
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, upstream=upstream, workers=workers))
    proc = spawn("nginx", [nginx, "-c", str(conf), "-p", str(tmp)])
    wait_http(port, proc=proc)
    return proc, port


CADDYFILE = """
{{
  admin off
  auto_https off
  storage file_system {tmp}/storage
}}
http://127.0.0.1:{port} {{
  bind 127.0.0.1
  reverse_proxy 127.0.0.1:{upstream}
}}
"""


def start_caddy(upstream: int) -> tuple[Proc, int]:
    """Caddy `reverse_proxy` (its own keep-alive pool upstream), admin API off, plain HTTP on
    127.0.0.1, config and storage in a temporary folder of its own."""
    caddy = shutil.which("caddy") or "/usr/bin/caddy"
    tmp = subdir("caddy")
    port = free_port()
    conf = tmp / "Caddyfile"
    conf.write_text(CADDYFILE.format(tmp=tmp, port=port, upstream=upstream))
    env = {"HOME": str(tmp), "XDG_DATA_HOME": str(tmp / "data"),
           "XDG_CONFIG_HOME": str(tmp / "config")}
    proc = spawn("caddy", [caddy, "run", "--config", str(conf), "--adapter", "caddyfile"],
                 env=env)
    wait_http(port, proc=proc)
    return proc, port


def require_tools() -> str | None:
    for tool in ("wrk", "nginx", "caddy"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is required: apt-get install -y {tool}"
    return None


# --- the gateway ------------------------------------------------------------------------------

def project_file(folder: Path, *, port: int, backend: str = "granian",
                 routes: Mapping[str, str] | None = None,
                 apps: Sequence[Mapping[str, Any]] = (),
                 orchestration: Mapping[str, Any] | None = None,
                 extensions: Sequence[Mapping[str, Any]] = (),
                 level: str = "warning") -> Path:
    """A workbench.toml: `extensions` first, then orchestrated `apps` and routing `routes`
    (location -> proxy_pass URL).

    `level = "warning"` keeps the access log off: we measure the proxy, not stdout.
    """
    doc: dict[str, Any] = {
        "server": {"host": HOST, "port": port, "backend": backend, "graceful_timeout": 5.0},
        "logging": {"level": level},
        "extensions": [dict(e) for e in extensions],
    }
    if apps:
        doc["extensions"].append({"type": "process_orchestration", "config": {
            "port_range": [20000, 29999], **(orchestration or {}),
            "apps": [dict(a) for a in apps]}})
    if routes:
        doc["extensions"].append({"type": "routing", "config": {"regex_locations": {
            loc: {"proxy_pass": url} for loc, url in routes.items()}}})
    path = folder / "workbench.toml"
    path.write_text(tomlkit.dumps(doc))
    return path


@dataclass
class Gateway:
    """A running gateway process (headless `pyserve-tui --no-ui`, or bench/ui_gateway.py)."""

    proc: Proc
    port: int
    config: Path
    lag_file: Path | None = None

    def metrics(self) -> dict[str, Any]:
        status, body = http_get(self.port, "/metrics", 5.0)
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        result: dict[str, Any] = json.loads(body)
        return result

    def app(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.metrics()["apps"][name]
        return result

    def requests(self) -> int:
        return int(self.metrics()["gateway"]["requests"])

    def rss(self) -> int:
        return rss(self.proc.pid)

    def control(self, *args: str, timeout: float = 120.0) -> tuple[int, str, float]:
        """`pyserve-tui ARGS -c CONFIG`: (exit code, output, seconds it took)."""
        started = time.monotonic()
        code, out = run_bounded("control", [*pyserve_tui(), *args, "-c", str(self.config)],
                                timeout)
        return code, out.strip(), time.monotonic() - started

    def lag_dump(self, timeout: float = 10.0) -> dict[str, Any]:
        """bench/ui_gateway.py's loop-lag samples, [(wall time, lateness ms)] (SIGUSR1)."""
        assert self.lag_file is not None, "only bench/ui_gateway.py probes its loop"
        self.lag_file.unlink(missing_ok=True)
        os.kill(self.proc.pid, signal.SIGUSR1)
        wait_until(lambda: self.lag_file is not None and self.lag_file.exists(),
                   "the loop-lag dump", timeout, proc=self.proc)
        result: dict[str, Any] = json.loads(self.lag_file.read_text())
        return result

    def stop(self) -> int | None:
        self.proc.remember_descendants()
        return self.proc.stop()


def pyserve_tui() -> list[str]:
    script = Path(PYTHON).with_name("pyserve-tui")
    return [str(script)] if script.exists() else [PYTHON, "-m", "workbench.cli"]


def start_gateway(name: str, *, ui: bool = False, probe: bool = False,
                  wait_apps: bool = True, env: Mapping[str, str] | None = None,
                  **project: Any) -> Gateway:
    """A gateway on a fresh port with a generated project file; ready when this returns.

    `ui`: the workbench TUI runs too (bench/ui_gateway.py). `probe`: bench/ui_gateway.py
    with its loop-lag probe but `--no-ui` (the engine alone), for comparison.
    """
    folder = subdir(name)
    port = free_port()
    config = project_file(folder, port=port, **project)
    lag_file = None
    if ui or probe:
        lag_file = folder / "lag.json"
        argv = [PYTHON, str(ROOT / "bench" / "ui_gateway.py"), str(config), str(lag_file)]
        if not ui:
            argv.append("--no-ui")
    else:
        argv = [*pyserve_tui(), "--no-ui", "-c", str(config)]
    proc = spawn(name, argv, cwd=folder, env=env)
    gw = Gateway(proc, port, config, lag_file)
    try:
        wait_http(port, "/health", 60, proc=proc)
        if wait_apps and project.get("apps"):
            wait_until(lambda: all(a.get("state") == "healthy"
                                   for a in gw.metrics()["apps"].values()),
                       f"{name}: every app healthy", 60, proc=proc)
    except BaseException:
        gw.stop()
        raise
    proc.remember_descendants()
    return gw


#: The bundled project's security and monitoring extensions, as project-file text (the same
#: settings as `run.BUNDLED_EXTENSIONS`).
BUNDLED_EXTENSIONS_TOML = (
    '[[extensions]]\ntype = "security"\n'
    '[extensions.config]\nblocked_ips = ["10.0.0.50", "192.168.0.0/16"]\n'
    '[[extensions]]\ntype = "monitoring"\n[extensions.config]\nenable_metrics = true\n')


def proxy_gateway_app(upstream: int, extensions: str = "") -> Any:
    """The gateway's real `GatewayApp` for a project of one `proxy_pass` location to
    127.0.0.1:`upstream`, built in this process (no server, no engine): what the in-process
    measurements (`pipeline_micro.py`, `ceiling.py`) drive. Its services are `.services`.
    `extensions`: more ``[[extensions]]`` tables (project-file text), ahead of routing."""
    from gateway.config.loader import validate_text
    from gateway.events import EventBus
    from gateway.metrics import MetricsRegistry
    from gateway.pipeline import GatewayApp, Pipeline
    from gateway.proxy.transport import PooledTransport
    from gateway.requestlog import RequestLog
    from gateway.services import Services

    text = (f'[logging]\nlevel = "warning"\n{extensions}[[extensions]]\ntype = "routing"\n'
            f'[extensions.config.regex_locations]\n'
            f'"/" = {{ proxy_pass = "http://{HOST}:{upstream}" }}\n')
    project = validate_text(Path(tempfile.gettempdir()) / "workbench.toml", text, environ={})
    events = EventBus()
    services = Services(project=project, events=events, metrics=MetricsRegistry(),
                        request_log=RequestLog(events, 10000), transport=PooledTransport())
    return GatewayApp(Pipeline(project.extensions, services), services)


def bench_app(name: str, path: str, app_path: str = "bench.apps:plaintext",
              **extra: Any) -> dict[str, Any]:
    """An orchestrated app entry importing from this repository."""
    return {"name": name, "path": path, "app_path": app_path, "module_path": str(ROOT),
            "health_check_path": "/health", **extra}


# --- results -----------------------------------------------------------------------------------

@dataclass
class Target:
    """One target of issue 7, stated as met or not with what was measured."""

    name: str
    goal: str
    measured: str
    met: bool | None  # None: could not be measured
    #: Measured against the goal for comparison, not judged by it (a build users do not
    #: get from `pip install`): the verdict column says "reference: would be met/not met".
    reference: bool = False

    def row(self) -> str:
        verdict = {True: "met", False: "**not met**", None: "not measured"}[self.met]
        if self.reference and self.met is not None:
            verdict = f"reference: {'met' if self.met else 'not met'}"
        return f"| {self.name} | {self.goal} | {self.measured} | {verdict} |"


@dataclass
class Section:
    """What one benchmark found: Markdown for people, data for the JSON file."""

    title: str
    markdown: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        out = [f"### {self.title}", "", *self.markdown]
        if self.targets:
            out += ["", *targets_table(self.targets)]
        return "\n".join(out).rstrip() + "\n"


def targets_table(targets: Sequence[Target]) -> list[str]:
    return ["| target | goal | measured | verdict |", "|---|---|---|---|",
            *(t.row() for t in targets)]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def lag_summary(samples: Sequence[tuple[float, float]],
                windows: Sequence[tuple[float, float]]) -> dict[str, float]:
    """p50/p99/max lateness (ms) of the probe samples taken within any of `windows`."""
    late = [max(0.0, ms) for t, ms in samples if any(a <= t <= b for a, b in windows)]
    return {"samples": len(late), "p50_ms": percentile(late, 50), "p99_ms": percentile(late, 99),
            "max_ms": max(late, default=float("nan"))}


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def save(kind: str, payload: Mapping[str, Any], markdown: str | None = None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"{kind}-{stamp}.json"
    out.write_text(json.dumps(payload, indent=1, default=str))
    if markdown is not None:
        out.with_suffix(".md").write_text(markdown)
    return out


def standalone(run: Callable[[bool], Section | list[Section]], kind: str) -> int:
    """Entry point of one benchmark script: `--quick`, print Markdown, save JSON."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    try:
        with cleanup():
            load = machine_load()
            result = run(args.quick)
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped", file=sys.stderr)
        remove_workdir()
        return 130
    sections = result if isinstance(result, list) else [result]
    text = "\n".join(s.render() for s in sections)
    print(text)
    out = save(kind, {"machine": load, "quick": args.quick,
                      "sections": {s.title: s.data for s in sections}}, text)
    print(f"JSON: {out}", file=sys.stderr)
    remove_workdir()
    return 0
