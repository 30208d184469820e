"""Entry point of an app process: ``python -m gateway.orchestrator.runner``.

Reads the app description from the environment, arms the no-orphans machinery, imports the
app before any server starts (so an import error is one clear line on stderr and exit code
`EXIT_IMPORT_ERROR`, not a traceback per worker), then hands the app to the serving backend,
or replaces itself with the app's `command`.

No orphans: PR_SET_PDEATHSIG kills this process when the workbench dies, and a small guard
process forked first (before any thread exists) watches the lifeline pipe; at EOF, or when
this process is gone, it SIGKILLs the whole process group, workers included.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys
from typing import Any

from gateway.orchestrator.protocol import (
    EXIT_IMPORT_ERROR,
    IMPORT_ERROR_PREFIX,
    LIFELINE_ENV,
    PARENT_PID_ENV,
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


def arm_parent_death_signal() -> bool:
    """Die with the workbench; False if it is already gone."""
    _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    parent = os.environ.get(PARENT_PID_ENV)
    return not parent or os.getppid() == int(parent)


def start_guard(lifeline_fd: int) -> None:
    """Fork the guard that takes the process group down when the workbench or we vanish."""
    runner_pid = os.getpid()
    if os.fork() != 0:
        os.close(lifeline_fd)  # only the guard watches it
        return
    try:
        _prctl(PR_SET_NAME, GUARD_NAME)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)  # the workbench sees EOF on output without waiting for us
        poller = select.poll()
        poller.register(lifeline_fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while os.getppid() == runner_pid:
            if poller.poll(250) and not os.read(lifeline_fd, 64):
                break  # EOF: the workbench is gone
    except BaseException:
        pass
    finally:
        with contextlib.suppress(BaseException):
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os._exit(0)


def _server_settings(spec: dict[str, Any]) -> Any:
    from gateway.config.schema import BackendName, LoopName, ServerConfig

    raw = dict(spec.get("server") or {})
    if "event_loop" in raw:
        raw["event_loop"] = LoopName(raw["event_loop"])
    return ServerConfig(host=spec["host"], port=spec["port"],
                        backend=BackendName(spec["backend"]), **raw)


def _fail(message: str) -> int:
    print(IMPORT_ERROR_PREFIX + message, file=sys.stderr, flush=True)
    return EXIT_IMPORT_ERROR


def main() -> int:
    from gateway.orchestrator.apploader import AppLoadError, child_app, read_spec

    spec = read_spec()
    if not arm_parent_death_signal():
        return 1
    lifeline = os.environ.pop(LIFELINE_ENV, None)
    if lifeline:
        start_guard(int(lifeline))
    command = spec.get("command")
    if command:
        try:
            os.execvp(command[0], list(command))
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
        backend = get_backend(spec["backend"])
    except GatewayError as exc:
        return _fail(str(exc))
    backend.run_app("gateway.orchestrator.apploader:app", host=spec["host"], port=spec["port"],
                    workers=int(spec.get("workers") or 1), settings=_server_settings(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
