"""Spawning and stopping one app process group, and reading its output line by line.

Each app process is started in a new session (its own process group, pgid == pid) running
``python -m gateway.orchestrator.runner``, whose leader guards the server it forks. The
workbench keeps the write end of a lifeline pipe; the guard kills the group when it reads
EOF, so the apps die with the workbench even if it is SIGKILLed. Only groups this module
created are ever signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from gateway.orchestrator.lease import InFlight
from gateway.orchestrator.protocol import (
    EXIT_IMPORT_ERROR,
    IMPORT_ERROR_PREFIX,
    LIFELINE_ENV,
    PREFIX_ENV,
    SPEC_ENV,
    ChildSpec,
    split_request_id,
)
from gateway.sanitize import printable

log = logging.getLogger("pyserve.orchestrator")

MAX_LINE = 16 * 1024
_READ_CHUNK = 64 * 1024
_GATEWAY_ROOT = str(Path(__file__).resolve().parent.parent.parent)
#: The last line of a Python traceback ("ValueError: ...", "pkg.mod.SomeError: ...").
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Fault)\b")
#: Routine log lines that never explain an exit.
_ROUTINE_LINE = re.compile(r"\b(?:INFO|DEBUG)\b")
#: How recent an ordinary stderr line (an exception line) must be to explain an exit.
_EXIT_LINE_AGE = 5.0
_EXCEPTION_LINE_AGE = 60.0

#: (process, stream, line, request id): the line is printable (see gateway.sanitize) and
#: without the request-id marker.
LineHandler = Callable[["AppProcess", str, str, str | None], None]
ExitHandler = Callable[["AppProcess"], None]


class AppProcess:
    """One running app process group: its pid, port, in-flight requests and exit."""

    def __init__(self, proc: asyncio.subprocess.Process, *, spec: ChildSpec,
                 lifeline: int, on_line: LineHandler, on_exit: ExitHandler) -> None:
        self.proc = proc
        self.pid: int = proc.pid
        self.pgid: int = proc.pid  # start_new_session: the runner leads its own group
        self.port: int = spec.port
        self.backend: str = spec.backend
        self.started_at = time.time()
        #: Requests being proxied to this process right now (for draining).
        self.flight = InFlight()
        #: Recent stderr lines written outside any request: (time, line).
        self._stderr_tail: deque[tuple[float, str]] = deque(maxlen=50)
        self._exited_at: float | None = None
        #: The cause the runner printed when the app could not be loaded.
        self.load_error: str | None = None
        self.returncode: int | None = None
        #: The spec it was made from, without the port (see `AppSupervisor.process_key`).
        self.key: ChildSpec = spec.without_port()
        self._lifeline: int | None = lifeline
        self._pidfd = _open_pidfd(proc.pid)
        self._term_sent = False
        self._on_line = on_line
        self._on_exit = on_exit
        self._readers = [
            asyncio.create_task(self._read(proc.stdout, "stdout")),
            asyncio.create_task(self._read(proc.stderr, "stderr")),
        ]
        self._waiter = asyncio.create_task(self._wait(), name=f"wait-{spec.app}-{self.pid}")

    @property
    def exited(self) -> bool:
        return self._waiter.done()

    @property
    def inflight(self) -> int:
        """Requests being proxied to this process right now (`Lease`s held)."""
        return self.flight.count

    async def drained(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for no request in flight (or the exit)."""
        idle = asyncio.ensure_future(self.flight.idle.wait())
        try:
            await asyncio.wait({idle, self._waiter}, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            idle.cancel()
        return self.inflight <= 0

    async def wait_exit(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the exit; True if it has exited."""
        done, _ = await asyncio.wait({self._waiter}, timeout=timeout)
        return bool(done)

    async def wait(self) -> int:
        """The exit code, once the process has exited and its output has been read."""
        return await asyncio.shield(self._waiter)

    async def _gone(self) -> None:
        """Return as soon as the leader has exited (before asyncio sees its pipes close)."""
        if self._pidfd is not None:
            loop = asyncio.get_running_loop()
            ready: asyncio.Future[None] = loop.create_future()

            def exited() -> None:
                if not ready.done():
                    ready.set_result(None)

            loop.add_reader(self._pidfd, exited)
            try:
                await ready
            finally:
                loop.remove_reader(self._pidfd)
                os.close(self._pidfd)
                self._pidfd = None
            return
        waiter = asyncio.ensure_future(self.proc.wait())
        try:
            while self.proc.returncode is None and not waiter.done():
                await asyncio.wait({waiter}, timeout=0.1)
        finally:
            waiter.cancel()

    async def _wait(self) -> int:
        # Python's Process.wait() also waits for the output pipes to close, which orphaned
        # workers would hold open forever: notice the leader's exit first, then sweep our
        # group, and report the exit only once the group is gone, so "stopped" means no
        # process is left.
        await self._gone()
        self._exited_at = time.time()
        self.kill_group(signal.SIGKILL)
        code = await self.proc.wait()
        for _ in range(100):
            if not self.group_alive():
                break
            await asyncio.sleep(0.01)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await asyncio.gather(*self._readers, return_exceptions=True)
        for task in self._readers:
            task.cancel()
        self.close_lifeline()
        self.returncode = code
        try:
            self._on_exit(self)
        except Exception:
            log.exception("exit handler failed for pid %s", self.pid)
        return code

    async def _read(self, stream: asyncio.StreamReader | None, name: str) -> None:
        if stream is None:
            return
        pending = b""
        while True:
            chunk = await stream.read(_READ_CHUNK)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                self._line(name, raw[:MAX_LINE])
            while len(pending) > MAX_LINE:  # a very long line without newline: cut it
                self._line(name, pending[:MAX_LINE])
                pending = pending[MAX_LINE:]
        if pending:
            self._line(name, pending)

    def _line(self, stream: str, raw: bytes) -> None:
        rid, text = split_request_id(raw.decode("utf-8", "replace").rstrip("\r"))
        text = printable(text)
        if stream == "stderr" and rid is None:
            if text.startswith(IMPORT_ERROR_PREFIX):
                self.load_error = text[len(IMPORT_ERROR_PREFIX):]
            elif text.strip():
                self._stderr_tail.append((time.time(), text))
        try:
            self._on_line(self, stream, text, rid)
        except Exception:
            log.exception("output handler failed")

    def exit_line(self) -> str | None:
        """The stderr line that best explains a failed exit: the last exception line
        (a traceback's end), else the last ordinary line written just before the exit.
        Lines written while serving a request are about that request, never the exit."""
        tail = list(self._stderr_tail)
        end = self._exited_at or time.time()
        for at, text in reversed(tail):
            if end - at > _EXCEPTION_LINE_AGE:
                break
            if _EXCEPTION_LINE.match(text.lstrip()):
                return text.strip()
        for at, text in reversed(tail):
            if end - at > _EXIT_LINE_AGE:
                break
            if not _ROUTINE_LINE.search(text[:40]):
                return text.strip()
        return None

    def kill_group(self, sig: int) -> None:
        """Signal our process group; a group that is already gone is fine."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)

    def group_alive(self) -> bool:
        """True while a process of our group still runs (zombies awaiting init don't count)."""
        return group_has_live_members(self.pgid)

    def close_lifeline(self) -> None:
        if self._lifeline is not None:
            with contextlib.suppress(OSError):
                os.close(self._lifeline)
            self._lifeline = None

    async def terminate(self, timeout: float) -> int:
        """SIGTERM the group, SIGKILL it after `timeout` seconds; returns the exit code."""
        if not self.exited:
            if not self._term_sent:  # a second SIGTERM makes some servers skip their drain
                self._term_sent = True
                self.kill_group(signal.SIGTERM)
            try:
                async with asyncio.timeout(max(0.0, timeout)):
                    return await self.wait()
            except TimeoutError:
                log.warning("pid %s did not stop within %.1fs; killing it", self.pid, timeout)
                self.kill_group(signal.SIGKILL)
        return await self.wait()

    def describe_exit(self) -> str:
        code = self.returncode
        if code is None:
            return "running"
        if code == EXIT_IMPORT_ERROR and self.load_error:
            return self.load_error
        if code < 0:  # a signal says it all; what the app last printed is unrelated
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        what = f"exited with code {code}"
        line = self.exit_line() if code != 0 else None
        return f"{what}: {line[:300]}" if line else what

    def __repr__(self) -> str:
        status = "running" if self.returncode is None else f"exit={self.returncode}"
        return (f"<AppProcess pid={self.pid} port={self.port} backend={self.backend} "
                f"{status} inflight={self.inflight}>")


def group_has_live_members(pgid: int) -> bool:
    try:
        entries = os.listdir("/proc")
    except OSError:  # no procfs: ask the kernel, which counts zombies too
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _open_pidfd(pid: int) -> int | None:
    """A pidfd for our (unreaped) child, or None where the kernel or Python lack them."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def child_environment(spec: ChildSpec, lifeline_fd: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in spec.env.items()})
    paths = [*spec.sys_path, _GATEWAY_ROOT]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
    env["PYTHONUNBUFFERED"] = "1"
    env["PORT"] = str(spec.port)
    prefix = spec.prefix
    if prefix:
        env[PREFIX_ENV] = prefix
        if spec.command:
            # uvicorn reads every option from UVICORN_* (`--root-path` included), so
            # `uvicorn app:app --port $PORT` learns its prefix as behind nginx with
            # `--root-path`. SCRIPT_NAME is left alone: gunicorn reads it too and then
            # refuses every request whose path does not start with it (a stripped one).
            env.setdefault("UVICORN_ROOT_PATH", prefix)
    env[SPEC_ENV] = spec.to_json()
    env[LIFELINE_ENV] = str(lifeline_fd)
    return env


async def spawn(spec: ChildSpec, *, on_line: LineHandler,
                on_exit: ExitHandler) -> AppProcess:
    """Start the runner for `spec` in a new process group."""
    read_end, write_end = os.pipe()  # both non-inheritable; pass_fds hands over read_end
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.orchestrator.runner",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=spec.cwd,
            env=child_environment(spec, read_end), start_new_session=True,
            pass_fds=(read_end,),
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return AppProcess(proc, spec=spec, lifeline=write_end, on_line=on_line, on_exit=on_exit)
