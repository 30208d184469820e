"""Helpers of the integration tests: real `pyserve-tui` processes on 127.0.0.1, driven the
way a user does. (Not in conftest.py: several exist, and `from conftest import` would pick
whichever pytest loaded first.)

A test gets a project folder with a `workbench.toml` (free gateway port, free `port_range`),
starts `pyserve-tui --no-ui` on it, talks HTTP to the gateway and runs the control commands.
Every process a test starts is recorded (the workbench, its process tree, the app pids the
gateway reports); afterwards the fixtures kill only those, and a test fails if any was left.
Nothing sleeps blindly: `poll` waits for a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import tomlkit

from tests.support import harness
from tests.support.harness import ROOT, live, poll

T = TypeVar("T")

#: Orchestrator timings short enough for a test's patience, long enough for a slow CI box.
FAST_ORCHESTRATION = {
    "health_check_interval": 0.5, "health_check_timeout": 2.0, "health_check_retries": 3,
    "restart_delay": 0.1, "shutdown_timeout": 5.0, "hold_requests": 10.0,
}

#: The two fixture apps most tests run: raw ASGI and plain WSGI, from tests/apps.
ASGI_APP = {"name": "asgi", "path": "/asgi", "app_path": "tests.apps.basic:app",
            "module_path": str(ROOT)}
WSGI_APP = {"name": "wsgi", "path": "/wsgi", "app_path": "tests.apps.wsgi_app:app",
            "app_type": "wsgi", "module_path": str(ROOT)}


# --- waiting ----------------------------------------------------------------------------------

#: For `harness.poll(..., ignore=COMING_UP)`: connection errors and missing keys count as
#: "not yet" (the thing is still coming up).
COMING_UP = (httpx.HTTPError, OSError, KeyError, ValueError)


# --- ports ------------------------------------------------------------------------------------




# --- the project file -------------------------------------------------------------------------

def toml_value(value: Any) -> str:
    """One value in TOML syntax (tables inline), as a person would write it."""
    if isinstance(value, Mapping):
        table = tomlkit.inline_table()
        table.update(value)
        return table.as_string()
    return tomlkit.item(value).as_string()


def project_text(*, port: int, port_range: tuple[int, int],
                 apps: Sequence[Mapping[str, Any]] = (),
                 routes: Mapping[str, Mapping[str, Any]] | None = None,
                 backend: str = "granian", orchestration: Mapping[str, Any] | None = None,
                 ) -> str:
    """A commented `workbench.toml`: orchestrated `apps`, then routing `routes`."""
    lines = [
        "# integration test project: comments must survive every write by the workbench",
        "[server]",
        'host = "127.0.0.1"  # loopback only',
        f"port = {port}",
        f'backend = "{backend}"  # switched live by the tests',
        "graceful_timeout = 5.0  # short drains keep the tests quick",
        "",
        "[logging]",
        'level = "info"  # the access log is info level',
        "",
        "# apps run in their own processes",
        "[[extensions]]",
        'type = "process_orchestration"',
        "[extensions.config]",
        f"port_range = {toml_value(list(port_range))}",
    ]
    for key, value in {**FAST_ORCHESTRATION, **(orchestration or {})}.items():
        lines.append(f"{key} = {toml_value(value)}")
    for app in apps:
        lines += ["", f"# app {app['name']}", "[[extensions.config.apps]]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in app.items()]
    lines += ["", "# routing after the apps", "[[extensions]]", 'type = "routing"',
              "[extensions.config.regex_locations]"]
    routes = routes if routes is not None else {"=/ping": {"return": "200 pong"}}
    lines += [f"{toml_value(pattern)} = {toml_value(action)}  # route {pattern}"
              for pattern, action in routes.items()]
    return "\n".join(lines) + "\n"


def comments(text: str) -> list[str]:
    """Every comment in a TOML text, in order (a `#` inside a string is not one here)."""
    found = []
    for line in text.splitlines():
        if "#" in line:
            found.append(line[line.index("#"):].strip())
    return found


@dataclass
class Project:
    """A project folder of one test: a free gateway port and a free app port range."""

    folder: Path
    port: int
    port_range: tuple[int, int]

    @property
    def config(self) -> Path:
        return self.folder / "workbench.toml"

    def text(self, **kw: Any) -> str:
        return project_text(port=self.port, port_range=self.port_range, **kw)

    def write(self, text: str | None = None, *, atomic: bool = False, **kw: Any) -> str:
        """Write the project file (in place, as most editors do, or by rename)."""
        text = text if text is not None else self.text(**kw)
        if atomic:
            tmp = self.folder / ".workbench.toml.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.config)
        else:
            self.config.write_text(text, encoding="utf-8")
        return text


# --- processes --------------------------------------------------------------------------------

def cli_argv() -> list[str]:
    """How a user runs the program: the console script beside this interpreter."""
    script = Path(sys.executable).with_name("pyserve-tui")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "workbench.cli"]  # not installed: the same code


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without PYSERVE_TUI_* overrides (they would beat the file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSERVE_TUI_")}
    env["PYTHONUNBUFFERED"] = "1"
    if len(cli_argv()) > 1:  # not installed: run the code of this checkout
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


@dataclass
class ProcessTracker:
    """Every process a test started or was told about; `check` fails if one is left."""

    processes: dict[int, psutil.Process] = field(default_factory=dict)
    #: Process groups of app runners (each app runs in its own group).
    groups: set[int] = field(default_factory=set)

    def add(self, pid: int | None, *, group: bool = False) -> None:
        if not pid:
            return
        with contextlib.suppress(psutil.Error):
            self.processes.setdefault(pid, psutil.Process(pid))
        if group:
            self.groups.add(pid)

    def get(self, pids: Iterable[int]) -> list[psutil.Process]:
        """The recorded processes of `pids` (each must have been recorded while it ran)."""
        return [self.processes[pid] for pid in pids]

    def leftovers(self) -> list[psutil.Process]:
        return harness.left_running(self.processes.values(), self.groups)

    def check(self, timeout: float = 10.0) -> None:
        """Wait for everything recorded to be gone; kill what is not, then fail."""
        deadline = time.monotonic() + timeout
        while (left := self.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            described = [f"{p.pid} {_cmdline(p)}" for p in left]
            for p in left:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            raise AssertionError(f"processes left behind: {described}")


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:160]
    except psutil.Error:
        return "?"


class Workbench:
    """One `pyserve-tui --no-ui` process; its stdout and stderr are collected line by line."""

    def __init__(self, project: Project, tracker: ProcessTracker,
                 args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.project = project
        self.tracker = tracker
        self.proc = subprocess.Popen(
            [*cli_argv(), "--no-ui", "-c", str(project.config), *args],
            cwd=cwd or project.folder, env=clean_env(env), text=True, bufsize=1,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        tracker.add(self.proc.pid)
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.errors),
                             daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self.http = httpx.Client(base_url=self.url, trust_env=False, timeout=30)

    @staticmethod
    def _read(stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))

    def __repr__(self) -> str:
        return f"<Workbench pid={self.pid} {self.url} rc={self.proc.poll()}>"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.project.port}"

    # --- observing ---

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_output(self, *needles: str, timeout: float = 20.0, start: int = 0) -> str:
        """The first stdout line from index `start` on holding every one of `needles`."""
        def found() -> str | None:
            line = next((ln for ln in self.lines[start:] if all(n in ln for n in needles)),
                        None)
            if line is None and self.proc.poll() is not None:
                self._join()  # it has ended: read what is left, then look once more
                line = next((ln for ln in self.lines[start:]
                             if all(n in ln for n in needles)), None)
                if line is None:
                    self._check_running()
            return line
        return poll(found, timeout, what=f"an output line with {needles}", ignore=COMING_UP)

    def _check_running(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise AssertionError(f"pyserve-tui exited with {code}:\n{self.output()}\n"
                                 + "\n".join(self.errors))

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            self._check_running()
            return self.http.get("/health", timeout=2).status_code == 200
        poll(ready, timeout, what=f"the gateway on {self.url}", ignore=COMING_UP)

    def metrics(self) -> dict[str, Any]:
        """/metrics as JSON; the app pids it names are recorded."""
        response = self.http.get("/metrics")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        for entry in data["apps"].values():
            self._adopt(entry.get("pid"))
        return data

    def _adopt(self, pid: int | None) -> None:
        """Record an app's pid (its process group), if it really is a child of ours."""
        if not pid or pid in self.tracker.processes:
            return
        try:
            proc = psutil.Process(pid)
            if proc.ppid() != self.pid:  # gone, and the pid is someone else's by now
                return
        except psutil.Error:
            return
        self.tracker.processes[pid] = proc
        self.tracker.groups.add(pid)

    def app(self, name: str) -> dict[str, Any]:
        entry: dict[str, Any] = self.metrics()["apps"][name]
        return entry

    def wait_app(self, name: str, state: str = "healthy", timeout: float = 30.0,
                 where: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        """The app's /metrics entry once it is in `state` (and `where` holds)."""
        last: dict[str, Any] = {}

        def reached() -> dict[str, Any] | None:
            self._check_running()
            entry = last[name] = self.app(name)
            if entry["state"] == state and (where is None or where(entry)):
                return entry
            return None
        try:
            return poll(reached, timeout, what=f"app {name!r} to be {state}", ignore=COMING_UP)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; it is {last.get(name)}") from None

    def app_pids(self) -> dict[str, int]:
        """The pid of every running app (its process group leader), recorded."""
        return {name: entry["pid"] for name, entry in self.metrics()["apps"].items()
                if entry.get("pid")}

    def app_processes(self, name: str) -> list[psutil.Process]:
        """The app's process group as it runs now: its guard, server and workers."""
        pid = self.app_pids()[name]
        root = self.tracker.get([pid])[0]
        procs = [root, *root.children(recursive=True)]
        for p in procs:
            self.tracker.add(p.pid)
        return procs

    def tree(self) -> set[int]:
        """The workbench and every process under it (app runners, servers, workers)."""
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return set()
        for p in procs:
            self.tracker.add(p.pid)
        return {p.pid for p in procs}

    def record(self) -> None:
        """Remember every process this workbench runs now, for the leftover check."""
        with contextlib.suppress(AssertionError, httpx.HTTPError, ValueError):
            if self.proc.poll() is None:
                self.app_pids()
        self.tree()

    # --- acting ---

    def control(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return control(self.project.config, *args, timeout=timeout)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, as a service manager would; the exit code."""
        self.record()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._join()
        return code

    def kill(self) -> None:
        """SIGKILL the workbench process alone (its apps must follow by themselves)."""
        self.record()
        self.proc.kill()
        self.proc.wait(30)
        self._join()

    def _join(self) -> None:
        for reader in self._readers:
            reader.join(5)

    def close(self) -> None:
        """Teardown: kill the workbench's own group if it still runs."""
        if self.proc.poll() is None:
            self.record()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.http.close()
        self._join()


def control(config: Path, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run `pyserve-tui ARGS -c CONFIG` (status, restart APP, backend NAME...)."""
    return subprocess.run([*cli_argv(), *args, "-c", str(config)], capture_output=True,
                          text=True, timeout=timeout, env=clean_env(), stdin=subprocess.DEVNULL)


class WorkbenchFactory:
    """Starts workbenches for one scope and cleans up after them."""

    def __init__(self) -> None:
        self.tracker = ProcessTracker()
        self.started: list[Workbench] = []

    def __call__(self, project: Project, *args: str, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None, apps: Sequence[str] = (),
                 timeout: float = 30.0) -> Workbench:
        """Start one (in the project folder unless `cwd`) and wait until the gateway
        answers and `apps` are healthy."""
        wb = Workbench(project, self.tracker, args, env, cwd)
        self.started.append(wb)
        wb.wait_ready(timeout)
        for name in apps:
            wb.wait_app(name, timeout=timeout)
        wb.record()
        return wb

    def close(self) -> None:
        for wb in self.started:
            wb.close()
        self.tracker.check()


def assert_gone(procs: Iterable[psutil.Process], timeout: float = 10.0,
                what: str = "the processes") -> None:
    """Every one of `procs` (taken while they ran, so a reused pid is no false alarm) has
    ended within `timeout` seconds."""
    procs = list(procs)
    poll(lambda: all(not live(p) for p in procs), timeout,
         what=f"{what} {sorted(p.pid for p in procs)} to end", ignore=COMING_UP)


# --- load -------------------------------------------------------------------------------------

class ClientLoop:
    """Clients sending GETs round `paths` until stopped (at most `limit` each), counting
    every outcome: `clients` on keep-alive connections, `fresh` opening one per request.

    In an async test, ``async with ClientLoop(...)`` runs them in the test's loop; in a
    sync test, ``with ClientLoop(...)`` runs them in a thread of their own.
    """

    def __init__(self, url: str, paths: Sequence[str], *, clients: int = 2, fresh: int = 1,
                 limit: int = 50_000) -> None:
        self.url = url
        self.paths = list(paths)
        self.outcomes: Counter[str] = Counter()
        #: Successes per kind of connection ("fresh" or "keep-alive").
        self.served: Counter[str] = Counter()
        self.failures: list[str] = []
        self.bodies: list[str] = []
        self._plan = [False] * clients + [True] * fresh
        self._limit = limit
        self._stopped = False
        self._tasks: list[asyncio.Task[None]] = []
        self._thread: threading.Thread | None = None

    @property
    def ok(self) -> int:
        return self.outcomes["200"]

    async def _run(self, fresh: bool) -> None:
        limits = httpx.Limits(max_keepalive_connections=0 if fresh else 1)
        async with httpx.AsyncClient(base_url=self.url, trust_env=False, timeout=30,
                                     limits=limits) as http:
            for i in range(self._limit):
                if self._stopped:
                    return
                path = self.paths[i % len(self.paths)]
                try:
                    r = await http.get(path)
                except httpx.HTTPError as exc:
                    self.outcomes[type(exc).__name__] += 1
                    self.failures.append(f"{path}: {type(exc).__name__}: {exc}")
                    continue
                self.outcomes[str(r.status_code)] += 1
                if r.status_code == 200:
                    self.served["fresh" if fresh else "keep-alive"] += 1
                    self.bodies.append(r.text)
                else:
                    self.failures.append(f"{path}: {r.status_code} {r.text[:200]}")

    async def _all(self) -> None:
        await asyncio.gather(*(self._run(fresh) for fresh in self._plan))

    # in the test's event loop
    async def until(self, count: int, timeout: float = 60.0) -> None:
        """Wait for `count` more successful requests from now."""
        target = self.ok + count
        async with asyncio.timeout(timeout):
            while self.ok < target:  # noqa: ASYNC110 - counters, nothing to await on
                await asyncio.sleep(0.01)

    async def __aenter__(self) -> ClientLoop:
        self._tasks = [asyncio.create_task(self._run(fresh)) for fresh in self._plan]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopped = True
        await asyncio.gather(*self._tasks)

    # in a thread
    def wait(self, count: int, timeout: float = 60.0) -> None:
        """Block until `count` more successful requests from now."""
        target = self.ok + count
        poll(lambda: self.ok >= target or (self._thread is not None
                                           and not self._thread.is_alive()
                                           and "client loop ended"),
             timeout, interval=0.01, what=f"{count} more answered requests", ignore=COMING_UP)
        assert self.ok >= target, (self.outcomes, self.failures[:5])

    def __enter__(self) -> ClientLoop:
        self._thread = threading.Thread(target=asyncio.run, args=(self._all(),), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped = True
        assert self._thread is not None
        self._thread.join(60)
