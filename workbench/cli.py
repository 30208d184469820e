"""The `pyserve-tui` command line (SPEC §1).

Only the interactive mode imports Textual; `--no-ui` and the subcommands run without it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from gateway import __version__, build
from gateway.errors import GatewayError

SUBCOMMANDS = ("check", "init", "status", "restart", "stop", "start", "backend", "reload",
               "export", "import")
DEFAULT_CONFIG = "workbench.toml"

STARTER = '''\
# pyserve-tui project file. `pyserve-tui check` validates it; `pyserve-tui` runs it.
# The workbench rewrites this file (e.g. when you switch the backend) and keeps comments.

[server]
host = "127.0.0.1"      # the gateway's address; loopback by default
port = 8000
backend = "auto"        # auto | builtin | granian | uvicorn | hypercorn
                        # (auto: the gateway on its own front, apps on granian)
event_loop = "auto"     # auto | uvloop | asyncio
graceful_timeout = 30.0 # seconds to drain in-flight requests on shutdown or switch

[logging]
level = "info"          # debug | info | warning | error
format = "text"         # text | json (headless mode)
request_log_size = 10000

# Extensions run in the order they are listed.
[[extensions]]
type = "security"
[extensions.config]
blocked_ips = []        # addresses or CIDR blocks, e.g. "192.168.0.0/16"

# Ask for a password everywhere but the listed paths (make a hash: htpasswd -nB alice).
# [[extensions]]
# type = "auth"
# [extensions.config]
# method = "basic"              # basic | jwt | forward
# users = { alice = "$2y$05$..." }
# exclude_paths = ["/ping"]

# Every app runs in its own process on a port picked from port_range.
[[extensions]]
type = "process_orchestration"
[extensions.config]
port_range = [9000, 9999]

# [[extensions.config.apps]]
# name = "api"
# path = "/api"                  # requests under /api go to this app (prefix stripped,
#                                # the app told it: root_path / SCRIPT_NAME)
# app_path = "myproject.api:app" # module:attribute, imported from this folder; ASGI or
#                                # WSGI is found out from the object
# health_check_path = "/health"  # must answer 200; unset, any answer < 500 counts

[[extensions]]
type = "routing"
[extensions.config.regex_locations]
"=/ping" = { return = "200 pong", content_type = "text/plain" }
# "__default__" = { root = "./static", index_file = "index.html", spa_fallback = true }
'''


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, metavar="PATH",
                   help="project file (default: ./workbench.toml)")


def _main_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pyserve-tui",
        description="Run and inspect local web apps behind one gateway. Subcommands: "
                    + ", ".join(SUBCOMMANDS) + " (pyserve-tui SUBCOMMAND -h).")
    _config_arg(p)
    p.add_argument("--host", help="gateway address (env PYSERVE_TUI_HOST)")
    p.add_argument("--port", type=int, help="gateway port (env PYSERVE_TUI_PORT)")
    p.add_argument("--backend", choices=["auto", "builtin", "granian", "uvicorn", "hypercorn"],
                   help="serving backend (env PYSERVE_TUI_BACKEND)")
    p.add_argument("--no-ui", action="store_true", help="run headless, logging to stdout")
    p.add_argument("--log-format", choices=["text", "json"], help="headless log format")
    p.add_argument("--version", action="version",
                   version=f"pyserve-tui {__version__} ({build()} request path)")
    return p


def _sub_parser(cmd: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"pyserve-tui {cmd}")
    if cmd == "init":
        p.add_argument("path", nargs="?", default=DEFAULT_CONFIG)
        return p
    if cmd == "import":
        p.description = ("Turn a pyserve YAML config or a Procfile into a commented "
                         "workbench.toml. Never overwrites.")
        p.add_argument("file", help="pyserve YAML config or Procfile")
        p.add_argument("-o", "--output", metavar="PATH",
                       help="project file to write (default: workbench.toml beside FILE)")
        return p
    _config_arg(p)
    if cmd in ("restart", "stop", "start"):
        p.add_argument("app", help="app name")
    elif cmd == "backend":
        p.add_argument("name", choices=["auto", "builtin", "granian", "uvicorn", "hypercorn"])
    elif cmd == "export":
        from gateway.deploy import TARGETS

        p.description = "Write deployable configuration for a real engine, with nginx in front."
        p.add_argument("target", choices=TARGETS)
        p.add_argument("-o", "--output", metavar="DIR",
                       help="folder to write into (default: ./deploy/TARGET)")
        p.add_argument("--strict", action="store_true",
                       help="fail (exit 2) if anything has no faithful equivalent")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in (("host", args.host), ("port", args.port),
                              ("backend", args.backend)) if v is not None}


def cmd_check(path: str) -> int:
    from gateway.config.loader import load_config
    from gateway.servers.registry import BackendRegistry, unsupported_settings

    project = load_config(path)
    warnings = []
    try:
        backend = BackendRegistry.resolve_gateway(project.server.backend.value,
                                                  project.server)
        warnings = [f"{path}: [server] {key} is not supported by {backend}; it is ignored"
                    for key in unsupported_settings(backend, project.server)]
    except (ImportError, GatewayError) as exc:
        if isinstance(exc, GatewayError):
            warnings.append(f"{path}: {exc}")
    from gateway.extensions.auth import order_warnings

    warnings += order_warnings(project)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    n_apps = len(project.apps)
    print(f"{path}: OK ({len(project.extensions)} extensions, {n_apps} apps)")
    return 0


def cmd_init(path: str) -> int:
    target = Path(path)
    if target.is_dir():
        target = target / DEFAULT_CONFIG
    try:
        with open(target, "x", encoding="utf-8") as fh:
            fh.write(STARTER)
    except FileExistsError:
        print(f"pyserve-tui: {target} already exists; not overwriting it", file=sys.stderr)
        return 1
    print(f"wrote {target}; run `pyserve-tui check -c {target}` then `pyserve-tui -c {target}`")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from gateway.config.loader import load_config
    from gateway.deploy import export_files, write_export

    project = load_config(args.config)
    out = Path(args.output or Path("deploy") / args.target)
    result = export_files(project, args.target, out)
    report = result.report
    if args.strict and report.items:
        print(report.text(), file=sys.stderr, end="")
        print(f"pyserve-tui: export {args.target} --strict: {len(report.items)} feature(s) "
              "have no faithful equivalent (listed above); nothing written", file=sys.stderr)
        return 2
    write_export(result, out)
    print(report.text(), end="")
    print(f"\nwrote {len(result.files)} files to {out}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from gateway.deploy.importer import import_file

    source = Path(args.file)
    target = Path(args.output) if args.output else source.resolve().parent / DEFAULT_CONFIG
    if target.is_dir():
        target = target / DEFAULT_CONFIG
    result = import_file(source, target)
    try:
        with open(target, "x", encoding="utf-8") as fh:
            fh.write(result.text)
    except FileExistsError:
        print(f"pyserve-tui: {target} already exists; not overwriting it", file=sys.stderr)
        return 1
    print(f"wrote {target} ({result.kind}); check it with `pyserve-tui check -c {target}`")
    if result.dropped:
        print("not carried over:")
        for line in result.dropped:
            print(f"  - {line}")
    return 0


def _format_status(answer: dict[str, Any]) -> str:
    host, port = answer["address"]
    lines = [f"gateway http://{host}:{port}  backend {answer['backend']}"
             f"  apps on {answer.get('apps_backend', answer['backend'])}"]
    header = ("APP", "STATE", "PID", "PORT", "BACKEND", "RESTARTS", "REQS", "P50 MS", "P99 MS",
              "HEALTH CHECK", "LAST ERROR")
    rows = [header]
    for name, a in sorted(answer["metrics"]["apps"].items()):
        lat = a.get("latency_ms") or {}
        state = str(a.get("state", "-"))
        if a.get("pending"):
            state += f" (pending: {a['pending']})"
        rows.append((name, state, str(a.get("pid") or "-"),
                     str(a.get("port") or "-"), str(a.get("backend") or "-"),
                     str(a.get("restarts", 0)), str(a.get("requests", 0)),
                     f"{lat.get('p50', 0):.1f}", f"{lat.get('p99', 0):.1f}",
                     str(a.get("health_check") or "-"), str(a.get("last_error") or "-")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def cmd_control(cmd: str, args: argparse.Namespace) -> int:
    from gateway.control import send_command

    request: dict[str, Any] = {"cmd": cmd}
    if cmd in ("restart", "stop", "start"):
        request["app"] = args.app
    elif cmd == "backend":
        request["name"] = args.name
    answer = send_command(args.config, request)
    if not answer.get("ok"):
        print(f"pyserve-tui: {answer.get('error', 'failed')}", file=sys.stderr)
        return 1
    print(_format_status(answer) if cmd == "status" else answer.get("message", "ok"))
    return 0


def _run_headless(args: argparse.Namespace) -> int:
    from gateway.config.loader import load_config
    from gateway.headless import run_headless
    from gateway.servers.loops import loop_factory

    # Validated once, here: a broken file exits 2 before anything starts; the engine runs
    # what was validated.
    project = load_config(args.config, overrides=_overrides(args))
    with asyncio.Runner(loop_factory=loop_factory(project.server.event_loop.value)) as runner:
        return runner.run(run_headless(Path(args.config), _overrides(args), args.log_format,
                                       project=project))


def _run_ui(args: argparse.Namespace) -> int:
    from gateway.config.loader import load_config

    project = load_config(args.config, overrides=_overrides(args))  # exit 2 before the UI
    from workbench.runner import run

    return run(Path(args.config), _overrides(args), project=project)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            cmd = argv[0]
            args = _sub_parser(cmd).parse_args(argv[1:])
            if cmd == "check":
                return cmd_check(args.config)
            if cmd == "init":
                return cmd_init(args.path)
            if cmd == "export":
                return cmd_export(args)
            if cmd == "import":
                return cmd_import(args)
            return cmd_control(cmd, args)
        args = _main_parser().parse_args(argv)
        return _run_headless(args) if args.no_ui else _run_ui(args)
    except GatewayError as exc:
        print(f"pyserve-tui: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
