"""Machinery shared by the chaos tests: a real headless gateway, raw HTTP, a process ledger.

Everything here talks to the gateway the way a hostile or unlucky client would: over raw
sockets on 127.0.0.1, with bounded waits. Intensity comes from the environment so CI runs a
short version and `bench/chaos.py` a long one:

    PYSERVE_CHAOS_SECONDS   seconds of load per load scenario (default 5)
    PYSERVE_CHAOS_REPORT    a JSON Lines file each scenario appends its summary to
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.support.harness import (
    ROOT,
    BrokenResponse,
    RawResponse,
    TruncatedBody,
    project_file,
    read_response,
    wait_until,
)

CHAOS_SECONDS = max(1.0, float(os.environ.get("PYSERVE_CHAOS_SECONDS", "5")))
REPORT_PATH = os.environ.get("PYSERVE_CHAOS_REPORT")

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")
HOST = "127.0.0.1"


def report(scenario: str, **data: Any) -> None:
    """Append one scenario's summary to $PYSERVE_CHAOS_REPORT (read by bench/chaos.py)."""
    if not REPORT_PATH:
        return
    with open(REPORT_PATH, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"scenario": scenario, "seconds": CHAOS_SECONDS, **data},
                            default=str) + "\n")


def app_port_range(width: int = 200) -> tuple[int, int]:
    """A port range for app processes in 30000-40000, at a random offset per call."""
    base = random.SystemRandom().randrange(30000, 40000 - width, 10)
    return base, base + width - 1


# --- raw HTTP/1.1 ----------------------------------------------------------------------------

def request_bytes(method: str, path: str, *, headers: dict[str, str] | None = None,
                  body: bytes = b"", close: bool = False) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def open_connection(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(HOST, port, limit=1 << 20)


def close_writer(writer: asyncio.StreamWriter) -> None:
    """Drop a connection now (RST if unread data is left: the point of some tests)."""
    with contextlib.suppress(Exception):
        writer.transport.abort()


@dataclass
class Exchange:
    """What one raw exchange with the gateway came to."""

    response: RawResponse | None = None
    closed: bool = False  # the server ended the connection (after any response)
    timed_out: bool = False  # neither an answer nor the end of the connection in time
    error: str = ""  # a send cut off, a broken or truncated response
    extra: bytes = b""  # bytes after the first response: an answer to a smuggled request?

    def __repr__(self) -> str:
        what = repr(self.response) if self.response else "no response"
        flags = " closed" if self.closed else ""
        flags += " timed-out" if self.timed_out else ""
        flags += f" error={self.error!r}" if self.error else ""
        flags += f" extra={self.extra[:60]!r}" if self.extra else ""
        return f"<Exchange {what}{flags}>"


async def exchange(port: int, data: bytes, *, timeout: float = 10.0, half_close: bool = False,
                   linger: float = 0.0) -> Exchange:
    """Send `data` on a new connection, read one response, then what follows it.

    After a response that keeps the connection open, up to `linger` seconds are spent
    watching for the end of the connection (and for any further answer, kept in `extra`);
    after one that says `close`, or none, up to `timeout` seconds.
    """
    out = Exchange()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    reader, writer = await open_connection(port)
    try:
        async with asyncio.timeout_at(deadline):
            try:
                writer.write(data)
                await writer.drain()
                if half_close and writer.can_write_eof():
                    writer.write_eof()
            except ConnectionError as exc:
                out.error = type(exc).__name__  # the server cut us off mid-send
            try:
                out.response = await read_response(reader)
            except TruncatedBody as exc:
                out.response, out.error = exc.response, str(exc)
            except BrokenResponse as exc:
                out.error = str(exc)
        settled = out.response is None or bool(out.error) or out.response.closes
        watch_until = deadline if settled else min(deadline, loop.time() + linger)
        rest = bytearray()
        try:
            async with asyncio.timeout_at(watch_until):
                while chunk := await reader.read(65536):
                    rest += chunk
            out.closed = True
        except ConnectionError:
            out.closed = True
        except TimeoutError:
            if settled:
                out.timed_out = True
        out.extra = bytes(rest)
    except TimeoutError:
        out.timed_out = True
    finally:
        close_writer(writer)
    return out


# --- checking answers --------------------------------------------------------------------

def answer_problem(response: RawResponse, rid: str, allowed: frozenset[int]) -> str | None:
    """Why `response` to a request sent with X-Request-ID `rid` breaks the contract, or None."""
    if response.status not in allowed:
        return f"status {response.status}: {response.body[:200]!r}"
    echoed = response.all("x-request-id")
    if echoed != [rid]:
        return f"status {response.status} with x-request-id {echoed!r}, sent {rid!r}"
    if response.status >= 500 and rid.encode() not in response.body:
        return f"status {response.status} without the request id in {response.body[:200]!r}"
    return None


@dataclass
class LoadStats:
    """Outcomes of a stream of requests: statuses, latencies, and every broken promise."""

    by_status: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.by_status.values())

    def add(self, outcome: str, latency: float, problem: str | None = None) -> None:
        self.by_status[outcome] += 1
        self.latencies.append(latency)
        if problem is not None:
            self.failures.append(problem)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def pct(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 4) \
                if ordered else 0.0

        return {"requests": self.requests, "by_status": dict(sorted(self.by_status.items())),
                "failures": len(self.failures), "p50_s": pct(0.5), "p99_s": pct(0.99),
                "max_s": round(ordered[-1], 4) if ordered else 0.0}


class LoadClient:
    """One keep-alive client connection that reconnects when the server closed it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.reconnects = 0

    async def request(self, method: str, path: str, *, rid: str, body: bytes = b"",
                      timeout: float) -> RawResponse:
        """Send one request and read its answer within `timeout` s (TimeoutError if not).

        Raises BrokenResponse when the server cut the connection without a full answer.
        """
        async with asyncio.timeout(timeout):
            if self._conn is None:
                self._conn = await open_connection(self.port)
                self.reconnects += 1
            reader, writer = self._conn
            try:
                writer.write(request_bytes(method, path, headers={"X-Request-ID": rid},
                                           body=body))
                await writer.drain()
                response = await read_response(reader, head_request=method == "HEAD")
            except BaseException:
                self.close()
                raise
            if response is None:
                self.close()
                raise BrokenResponse("connection closed without a response")
            if response.closes:
                self.close()
            return response

    def close(self) -> None:
        if self._conn is not None:
            close_writer(self._conn[1])
            self._conn = None


class Bystander:
    """A well-behaved client that keeps asking `paths` (one after the other, then a 20 ms
    pause) while something else goes on; every answer must be 200 within `prompt` seconds.

    Use as ``async with Bystander(port, paths) as b:``; leaving the block stops it and
    asserts that nothing went wrong (its `stats` stay readable).
    """

    def __init__(self, port: int, paths: tuple[str, ...], *, prompt: float = 1.0) -> None:
        self.port = port
        self.paths = paths
        self.prompt = prompt
        self.stats = LoadStats()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        client = LoadClient(self.port)
        i = 0
        try:
            while not self._stop.is_set():
                for path in self.paths:
                    i += 1
                    rid = f"bystander-{i}"
                    started = loop.time()
                    try:
                        response = await client.request("GET", path, rid=rid, timeout=10.0)
                    except Exception as exc:  # a timeout or a cut connection: all failures
                        self.stats.add("error", loop.time() - started, f"{path}: {exc!r}")
                        continue
                    took = loop.time() - started
                    problem = answer_problem(response, rid, frozenset({200}))
                    if problem is None and took > self.prompt:
                        problem = f"{path} took {took:.2f}s"
                    self.stats.add(str(response.status), took, problem)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.02):
                        await self._stop.wait()
        finally:
            client.close()

    async def __aenter__(self) -> Bystander:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        if exc[0] is None:
            assert not self.stats.failures, self.stats.failures[:5]
            assert self.stats.requests >= len(self.paths), self.stats.summary()


# --- processes ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Seen:
    pid: int
    create_time: float
    pgid: int
    name: str


class ProcessLedger:
    """Every process of the groups we started, as seen over time.

    `root` is a process we started in its own session. The ledger notes its descendants and
    their process groups while the test runs. A live (not zombie) process is ours if it was
    noted itself, or belongs to a noted group whose leader is still the one we noted (or, once
    the leader is gone, is no older than it was): a group id freed and reused by someone else
    has a different leader.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, Seen] = {}
        #: pgid -> create time of its leader when we noted it
        self.groups: dict[int, float] = {}
        self._own_group = os.getpgrp()
        with contextlib.suppress(psutil.Error):
            self.note(psutil.Process(root))

    def sample(self) -> None:
        try:
            children = psutil.Process(self.root).children(recursive=True)
        except psutil.Error:
            children = []
        for proc in children:
            self.note(proc)
        # Processes of a noted group whose parent died are no descendants any more.
        for proc in psutil.process_iter(["pid"]):
            if proc.pid not in self.seen and self._ours(proc):
                self.note(proc)

    def note(self, proc: psutil.Process) -> None:
        with contextlib.suppress(psutil.Error, OSError):
            pgid = os.getpgid(proc.pid)
            if pgid == self._own_group:
                return  # never ours to judge (or to kill): it is the test runner's group
            if proc.pid not in self.seen:
                self.seen[proc.pid] = Seen(proc.pid, proc.create_time(), pgid, proc.name())
            if pgid not in self.groups:
                leader = self.seen.get(pgid)
                if leader is None:
                    with contextlib.suppress(psutil.Error):
                        leader_proc = psutil.Process(pgid)
                        leader = Seen(pgid, leader_proc.create_time(), pgid,
                                      leader_proc.name())
                self.groups[pgid] = leader.create_time if leader else proc.create_time()

    def _ours(self, proc: psutil.Process) -> bool:
        try:
            created = proc.create_time()
            seen = self.seen.get(proc.pid)
            if seen is not None and abs(seen.create_time - created) < 0.01:
                return True
            pgid = os.getpgid(proc.pid)
        except (psutil.Error, OSError):
            return False
        leader_created = self.groups.get(pgid)
        if leader_created is None or pgid == self._own_group:
            return False
        try:
            leader_now = psutil.Process(pgid).create_time()
        except psutil.Error:
            leader_now = None
        if leader_now is not None:
            return abs(leader_now - leader_created) < 0.01
        return created >= leader_created - 0.01

    def members(self, pgid: int) -> list[psutil.Process]:
        """Live processes of our group `pgid` (zombies excluded)."""
        out = []
        for proc in psutil.process_iter(["pid", "status"]):
            with contextlib.suppress(psutil.Error, OSError):
                if proc.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                if os.getpgid(proc.pid) == pgid and self._ours(proc):
                    out.append(proc)
        return out

    def leftovers(self) -> list[psutil.Process]:
        """Live processes that are ours (see the class docstring)."""
        left = []
        for proc in psutil.process_iter(["pid", "status"]):
            with contextlib.suppress(psutil.Error, OSError):
                if proc.info["status"] != psutil.STATUS_ZOMBIE and self._ours(proc):
                    left.append(proc)
        return left

    def kill_leftovers(self) -> None:
        """Last resort after a failure: SIGKILL our live processes, one by one."""
        for proc in self.leftovers():
            with contextlib.suppress(psutil.Error):
                proc.kill()


# --- the headless gateway ----------------------------------------------------------------

def pyserve_command() -> list[str]:
    """`pyserve-tui` as installed next to this interpreter, else the module."""
    script = Path(sys.executable).with_name("pyserve-tui")
    if script.exists():
        return [str(script)]
    found = shutil.which("pyserve-tui")
    return [found] if found else [sys.executable, "-m", "workbench.cli"]


class HeadlessGateway:
    """`pyserve-tui --no-ui --log-format json` on a project file, in its own session.

    Its JSON log lines are read as they come (the pipe never fills); `events` keeps the
    parsed ones. The gateway listens on a port the kernel picks (`port = 0`), learnt from
    the "gateway on http://..." line.
    """

    def __init__(self, folder: Path, project_text: str) -> None:
        self.folder = folder
        self.path = folder / "workbench.toml"
        self.path.write_text(project_text, encoding="utf-8")
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.events: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self.ledger: ProcessLedger | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sampler: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout: float = 30.0) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for key in ("PYSERVE_TUI_HOST", "PYSERVE_TUI_PORT", "PYSERVE_TUI_BACKEND"):
            env.pop(key, None)
        self.proc = await asyncio.create_subprocess_exec(
            *pyserve_command(), "--no-ui", "--log-format", "json", "-c", str(self.path),
            cwd=self.folder, env=env, start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=1 << 20)
        self.ledger = ProcessLedger(self.proc.pid)
        self._tasks = [asyncio.create_task(self._read_stdout()),
                       asyncio.create_task(self._read_stderr())]
        self._sampler = asyncio.create_task(self._sample_processes())
        exited = asyncio.create_task(self.proc.wait())
        listening = asyncio.create_task(self._listening.wait())
        try:
            done, _ = await asyncio.wait({exited, listening}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            listening.cancel()
            if not exited.done():
                exited.cancel()
        if not self._listening.is_set():
            raise AssertionError(f"the gateway did not start (exit {self.proc.returncode}): "
                                 f"{self.stderr[-5:]}")

    async def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.events.append(event)
            match = re.search(r"gateway on http://[^\s]*:(\d+) ", event.get("message", ""))
            if match and not self._listening.is_set():
                self.port = int(match.group(1))
                self._listening.set()

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.stderr.append(raw.decode("utf-8", "replace").rstrip())

    async def _sample_processes(self) -> None:
        assert self.ledger is not None
        while True:
            await asyncio.to_thread(self.ledger.sample)
            await asyncio.sleep(0.2)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def app_states(self, app: str) -> list[str]:
        return [e["new"] for e in self.events if e.get("kind") == "app_state"
                and e.get("app") == app]

    async def get(self, path: str, *, timeout: float = 10.0,
                  headers: dict[str, str] | None = None) -> RawResponse:
        out = await exchange(self.port, request_bytes("GET", path, headers=headers,
                                                      close=True), timeout=timeout)
        if out.response is None:
            raise AssertionError(f"GET {path}: {out!r}")
        return out.response

    async def metrics(self) -> dict[str, Any]:
        response = await self.get("/metrics", timeout=10.0)
        assert response.status == 200, response
        data: dict[str, Any] = json.loads(response.body)
        return data

    async def wait_apps(self, names: list[str], timeout: float, state: str = "healthy"
                        ) -> dict[str, Any]:
        async def ready() -> dict[str, Any] | None:
            apps = (await self.metrics())["apps"]
            ok = all(apps.get(n, {}).get("state") == state for n in names)
            return apps if ok else None

        result: dict[str, Any] = await wait_until(ready, timeout,
                                                  what=f"apps {names} to be {state}", interval=0.1)
        return result

    async def stop(self, timeout: float = 40.0) -> int:
        """SIGTERM, wait for the exit (its code), then make sure nothing of ours is left."""
        assert self.proc is not None and self.ledger is not None
        await asyncio.to_thread(self.ledger.sample)
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout):
                    await self.proc.wait()
            except TimeoutError:
                await self.kill()
                await self.proc.wait()
                raise AssertionError(f"the gateway did not stop within {timeout:g}s "
                                     f"of SIGTERM") from None
        await self._finish_readers()
        return self.proc.returncode if self.proc.returncode is not None else -1

    async def _finish_readers(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await asyncio.gather(*self._tasks, return_exceptions=True)
        for task in self._tasks:
            task.cancel()

    async def leftovers(self, timeout: float = 5.0) -> list[str]:
        """Processes of ours still alive once they had `timeout` s to go."""
        assert self.ledger is not None
        ledger = self.ledger
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = await asyncio.to_thread(ledger.leftovers)
            if not left or loop.time() >= deadline:
                return [_describe(proc) for proc in left]
            await asyncio.sleep(0.1)

    async def kill(self) -> None:
        """After a failure: SIGKILL the gateway and whatever the ledger says is ours."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        if self.ledger is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.ledger.sample)
                await asyncio.to_thread(self.ledger.kill_leftovers)
        await self._finish_readers()


#: The `start_gateway` fixture (conftest.py): project text -> a started gateway.
StartGateway = Callable[[str], Awaitable[HeadlessGateway]]


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {proc.name()} {' '.join(proc.cmdline())[:120]}"
    except psutil.Error:
        return str(proc.pid)


def project_text(*, backend: str = "auto", apps: list[dict[str, Any]] | None = None,
                 orchestration: dict[str, Any] | None = None,
                 extensions: list[dict[str, Any]] | None = None,
                 level: str = "warning") -> str:
    """A project file (`harness.project_file`): the gateway on a kernel-picked port, and
    apps from tests/apps restarted at once and for ever."""
    return project_file(
        server={"host": HOST, "port": 0, "backend": backend, "graceful_timeout": 5.0},
        logging={"level": level, "format": "json"}, extensions=extensions or [], apps=apps,
        orchestration={"port_range": list(app_port_range()), "health_check_interval": 0.5,
                       "health_check_timeout": 2.0, "health_check_retries": 2,
                       "restart_delay": 0.0, "max_restart_count": 1000,
                       "shutdown_timeout": 3.0, "hold_requests": 5.0, "proxy_timeout": 10.0,
                       **(orchestration or {})})

