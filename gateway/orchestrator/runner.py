"""Entry point of an app process: ``python -m gateway.orchestrator.runner``.

The process the workbench starts (the leader of a new process group) forks at once:

* the child serves the app. It imports the app before any server starts (so an import
  error is one clear line on stderr and exit code `EXIT_IMPORT_ERROR`, not a traceback per
  worker), then hands it to the serving backend, or replaces itself with the app's
  `command`. PR_SET_PDEATHSIG kills it if the leader vanishes.
* the leader stays as a small guard: it ignores SIGTERM (the workbench's SIGTERM to the group
  reaches the server and its workers directly), reaps the server and exits with the same
  status, so the workbench sees the server's exit. If the lifeline pipe from the workbench
  reads EOF (the workbench died, even by SIGKILL) it SIGKILLs the whole group, workers
  included.

The guard is the server's parent, so a finished server never waits for init to reap it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys
from collections.abc import Sequence
from typing import Any

from gateway.orchestrator.protocol import (
    EXIT_IMPORT_ERROR,
    IMPORT_ERROR_PREFIX,
    LIFELINE_ENV,
    ChildSpec,
)

PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1
GUARD_NAME = b"pyserve-guard"


def _prctl(option: int, value: int | bytes) -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(option, value, 0, 0, 0)


def _exit_like(status: int) -> None:
    """Leave with the same exit code or death signal as the server."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        # SIGKILL and SIGSTOP have no handler to reset (signal.signal raises for them): the
        # reset is attempted on its own so the kill below still happens, and the workbench
        # sees "killed by SIGKILL", not an exit code 137 that reads like the app's own.
        with contextlib.suppress(OSError, ValueError):
            signal.signal(-code, signal.SIG_DFL)
        with contextlib.suppress(OSError, ValueError):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [-code])
            os.kill(os.getpid(), -code)
        os._exit(128 - code)
    os._exit(code)


def guard(server_pid: int, lifeline_fd: int | None) -> None:
    """Run as the group leader until the server exits (or the workbench goes); never returns."""
    try:
        _prctl(PR_SET_NAME, GUARD_NAME)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        poller = select.poll()
        if lifeline_fd is not None:
            poller.register(lifeline_fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        try:
            pidfd: int | None = os.pidfd_open(server_pid)
        except (AttributeError, OSError):
            pidfd = None  # old kernel: look for the exit every 100 ms instead
        if pidfd is not None:
            poller.register(pidfd, select.POLLIN)
        while True:
            for fd, _ in poller.poll(None if pidfd is not None else 100):
                if fd == lifeline_fd and not os.read(lifeline_fd, 64):
                    os.killpg(os.getpgrp(), signal.SIGKILL)  # the workbench is gone
            pid, status = os.waitpid(server_pid, os.WNOHANG)
            if pid:
                _exit_like(status)
    except BaseException:
        with contextlib.suppress(BaseException):
            os.killpg(os.getpgrp(), signal.SIGKILL)
    os._exit(1)


def _server_settings(spec: ChildSpec) -> Any:
    from gateway.config.schema import BackendName, LoopName, ServerConfig

    raw = spec.server.given()
    if "event_loop" in raw:
        raw["event_loop"] = LoopName(raw["event_loop"])
    return ServerConfig(host=spec.host, port=spec.port, backend=BackendName(spec.backend),
                        **raw)


def _fail(message: str) -> int:
    print(IMPORT_ERROR_PREFIX + message, file=sys.stderr, flush=True)
    return EXIT_IMPORT_ERROR


#: Program names in a `command` that mean "the Python the workbench runs on".
PYTHON_NAMES = frozenset({"python", "python3"})


def command_argv(command: Sequence[Any], port: int, python: str | None = None) -> list[str]:
    """The argv to exec for a `command` app.

    $PORT / ${PORT} in an argument become the port (there is no shell to do it). A bare
    ``python`` or ``python3`` as the program runs with the workbench's own interpreter
    (`sys.executable`; this runner is started with it): a virtualenv's python is often not
    on PATH (the workbench was started by its full path or its console script), and a
    ``python`` found on PATH may be another installation without the project's packages.
    """
    text = str(port)
    argv = [str(a).replace("${PORT}", text).replace("$PORT", text) for a in command]
    if argv and argv[0] in PYTHON_NAMES:
        argv[0] = python or sys.executable
    return argv


def serve(spec: ChildSpec) -> int:
    """The server side: load the app, then serve it (or exec the command)."""
    from gateway.orchestrator.apploader import AppLoadError, child_app

    command = spec.command
    if command:
        argv = command_argv(command, spec.port)
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            return _fail(f"cannot run {command[0]!r}: {exc.strerror or exc}")
    try:
        child_app()
    except AppLoadError as exc:
        return _fail(str(exc))
    except Exception as exc:  # anything the app's import did that AppLoadError missed
        return _fail(f"{type(exc).__name__}: {exc}")

    from gateway.errors import GatewayError
    from gateway.servers import get_backend

    try:
        backend = get_backend(spec.backend)
    except GatewayError as exc:
        return _fail(str(exc))
    backend.run_app("gateway.orchestrator.childapp:app", host=spec.host, port=spec.port,
                    workers=spec.workers or 1, settings=_server_settings(spec))
    return 0


def main() -> int:
    from gateway.orchestrator.apploader import read_spec

    spec = read_spec()
    raw_fd = os.environ.pop(LIFELINE_ENV, None)
    lifeline = int(raw_fd) if raw_fd else None
    leader = os.getpid()
    server = os.fork()
    if server != 0:
        guard(server, lifeline)
    if lifeline is not None:
        os.close(lifeline)
    _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != leader:  # the guard died before we armed the signal
        return 1
    return serve(spec)


if __name__ == "__main__":
    sys.exit(main())
