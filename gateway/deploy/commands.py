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
from gateway.orchestrator.protocol import PREFIX_ENV
from gateway.orchestrator.runner import command_argv


def proxy_strips(unit: Unit) -> bool:
    """Whether the proxy in front removes the unit's path prefix before passing a request.

    Each server has its own convention for ``--root-path``/``--url-path-prefix``, and the
    app must end up seeing what it sees in the workbench (path with the prefix in front,
    root_path = the prefix; SCRIPT_NAME/PATH_INFO split for WSGI): uvicorn puts the prefix
    back in front of a stripped path itself, granian and hypercorn expect the full path (and
    hypercorn refuses a WSGI request whose path lacks it). A `command` app gets the stripped
    path, as from the gateway.
    """
    if not unit.strip_path or not unit.prefix:
        return False
    return bool(unit.command) or unit.backend == "uvicorn"


def health_path(unit: Unit) -> str:
    """The path to probe on the app's own port: the health path, behind the prefix when
    the app's server expects requests with it (the workbench's probe reaches the app as a
    proxied request would)."""
    if unit.strip_path and unit.prefix and not proxy_strips(unit):
        return unit.prefix + unit.health.path
    return unit.health.path


def unit_argv(unit: Unit, *, host: str, python: str, event_loop: str,
              report: Report) -> list[str]:
    """argv for `unit` listening on host:unit.port; `python` is the interpreter to name."""
    if unit.command:
        return command_argv(unit.command, unit.port, python=python)
    assert unit.app_path is not None  # validated: app_path or command
    if unit.factory_args and (unit.backend != "hypercorn" or _call(unit) is None):
        report.add("factory_args", "no server command line passes keyword arguments to a "
                   "factory (hypercorn's call syntax only takes plain values); it is called "
                   "without them (give them defaults, or read env)", subject=unit.name)
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
    if unit.factory:
        target += _call(unit) or "()"
    return argv + [f"{unit.app_type}:{target}"]


def _call(unit: Unit) -> str | None:
    """hypercorn evaluates ``module:factory(...)``: the keyword arguments as Python
    literals, or None when one is not a plain value."""
    plain = (str, int, float, bool, type(None), list, dict)
    if not all(isinstance(v, plain) for v in unit.factory_args.values()):
        return None
    return "(" + ", ".join(f"{k}={v!r}" for k, v in unit.factory_args.items()) + ")"


def python_path(unit: Unit, place: Callable[[str], str]) -> list[str]:
    """Folders the app imports from, as the runner sets them: its module_path, then the
    project folder; `place` maps a project-relative path to where it lives in the target."""
    out = [place(unit.module_path)] if unit.module_path else []
    return out + [place(".")]


def unit_env(unit: Unit, pythonpath: list[str]) -> dict[str, str]:
    """The environment the workbench gives an app process, for the target: its port, its
    import path, the prefix it is served under (and, for a `command` app, which has no
    server flag to carry it, uvicorn's variable for `--root-path`), then the app's own
    `env`, which wins."""
    env = {"PORT": str(unit.port), "PYTHONPATH": ":".join(pythonpath)}
    if unit.strip_path and unit.prefix:
        env[PREFIX_ENV] = unit.prefix
        if unit.command:
            env["UVICORN_ROOT_PATH"] = unit.prefix
    env.update(unit.env)
    return env
