"""The command line that serves one unit with its backend, outside the workbench.

In the workbench an app process is ``python -m gateway.orchestrator.runner``, which imports
the app and hands it to the backend's Python API. A deployment runs the backend's own CLI
instead, with the same choices: interface (asgi/wsgi), workers, factory, event loop, and the
path prefix the app is served under (``--url-path-prefix`` for granian, ``--root-path`` for
uvicorn and hypercorn: ASGI ``root_path``, and WSGI ``SCRIPT_NAME`` through it), since the
proxy in front strips that prefix. A ``command`` app runs its own argv, built by the
runner's `command_argv` so ``$PORT`` and a bare ``python`` mean what they mean at run time.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.deploy.plan import Unit
from gateway.deploy.report import Report
from gateway.orchestrator.runner import command_argv


def unit_argv(unit: Unit, *, host: str, python: str, event_loop: str,
              report: Report) -> list[str]:
    """argv for `unit` listening on host:unit.port; `python` is the interpreter to name."""
    if unit.command:
        return command_argv(unit.command, unit.port, python=python)
    assert unit.app_path is not None  # validated: app_path or command
    if unit.factory_args:
        report.add("factory_args", "no server command line passes keyword arguments to a "
                   "factory; it is called without them (give them defaults, or read env)",
                   subject=unit.name)
    prefix = unit.prefix if unit.strip_path else ""
    target = unit.app_path
    loop = event_loop if event_loop in ("uvloop", "asyncio") else None
    if unit.backend == "granian":
        argv = [python, "-m", "granian", "--interface", unit.app_type, "--host", host,
                "--port", str(unit.port), "--workers", str(unit.workers)]
        if loop:
            argv += ["--loop", loop]
        if unit.factory:
            argv.append("--factory")
        if prefix:
            argv += ["--url-path-prefix", prefix]
        return argv + [target]
    if unit.backend == "uvicorn":
        argv = [python, "-m", "uvicorn", "--host", host, "--port", str(unit.port),
                "--workers", str(unit.workers), "--no-server-header"]
        if unit.app_type == "wsgi":
            argv += ["--interface", "wsgi"]
        if loop:
            argv += ["--loop", loop]
        if unit.factory:
            argv.append("--factory")
        if prefix:
            argv += ["--root-path", prefix]
        return argv + [target]
    # hypercorn tells WSGI from ASGI apps itself and calls a factory written as a call.
    argv = [python, "-m", "hypercorn", "--bind", f"{host}:{unit.port}",
            "--workers", str(unit.workers)]
    if loop:
        argv += ["--worker-class", loop]
    if prefix:
        argv += ["--root-path", prefix]
    return argv + [target + "()" if unit.factory else target]


def python_path(unit: Unit, place: Callable[[str], str]) -> list[str]:
    """Folders the app imports from, as the runner sets them: its module_path, then the
    project folder; `place` maps a project-relative path to where it lives in the target."""
    out = [place(unit.module_path)] if unit.module_path else []
    return out + [place(".")]


def unit_env(unit: Unit, pythonpath: list[str]) -> dict[str, str]:
    """The environment the workbench gives an app process, for the target: its port, its
    import path, for a `command` app under a stripped path the prefix (there is no server
    flag to carry it), then the app's own `env`."""
    env = {"PORT": str(unit.port), "PYTHONPATH": ":".join(pythonpath)}
    if unit.command and unit.strip_path and unit.prefix:
        env["SCRIPT_NAME"] = unit.prefix
    env.update(unit.env)
    return env
