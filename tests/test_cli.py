"""The command line as a user runs it: exit codes, messages, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **(env or {})})


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("pyserve-tui ")


def test_check_bundled_project() -> None:
    out = run("check")
    assert out.returncode == 0, out.stderr
    assert "workbench.toml: OK" in out.stdout


def test_check_broken_file_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "workbench.toml").write_text(
        '[server]\nport = 8000\n\n[[extensions]]\ntype = "process_orchestration"\n'
        '[extensions.config]\n[[extensions.config.apps]]\nname = "api"\npath = "/api"\n')
    out = run("check", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == ("pyserve-tui: workbench.toml:7:1: extensions[0].config.apps[0]:"
                                  " 'app_path' is required (or give 'command')")
    assert "Traceback" not in out.stderr


def test_check_missing_file(tmp_path: Path) -> None:
    out = run("check", "-c", "nope.toml", cwd=tmp_path)
    assert out.returncode == 2 and "nope.toml" in out.stderr and "init" in out.stderr


def test_headless_refuses_broken_file_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "w.toml").write_text("[server]\nport = 'x'\n")
    out = run("--no-ui", "-c", "w.toml", cwd=tmp_path)
    assert out.returncode == 2
    assert "w.toml:2:1: server.port: must be an integer" in out.stderr
    assert "Traceback" not in out.stderr


def test_init_writes_a_valid_commented_file_and_never_overwrites(tmp_path: Path) -> None:
    out = run("init", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "workbench.toml").read_text()
    assert text.count("#") > 5
    assert run("check", cwd=tmp_path).returncode == 0
    (tmp_path / "workbench.toml").write_text("# mine\n")
    again = run("init", cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert (tmp_path / "workbench.toml").read_text() == "# mine\n"


def test_control_commands_without_instance_exit_1(tmp_path: Path) -> None:
    run("init", cwd=tmp_path)
    for args in (["status"], ["restart", "api"], ["backend", "uvicorn"], ["reload"]):
        out = run(*args, cwd=tmp_path)
        assert out.returncode == 1, args
        assert "no pyserve-tui instance is running" in out.stderr


def test_usage_error_exit_2() -> None:
    assert run("--port", "notanumber").returncode == 2
    assert run("restart").returncode == 2


def test_env_override_is_validated(tmp_path: Path) -> None:
    run("init", cwd=tmp_path)
    out = run("check", cwd=tmp_path, env={"PYSERVE_TUI_BACKEND": "tornado"})
    assert out.returncode == 2 and "tornado" in out.stderr


def test_status_table_says_how_health_is_judged_and_why_an_app_failed() -> None:
    from workbench.cli import _format_status

    apps = {
        "api": {"state": "healthy", "pid": 10, "port": 9001, "backend": "granian",
                "health_check": "GET /health", "last_error": None,
                "pending": "restart requested"},
        "web": {"state": "failed", "health_check": "any answer < 500 (no /health route)",
                "last_error": "killed by SIGKILL"},
    }
    text = _format_status({"address": ["127.0.0.1", 8000], "backend": "granian",
                           "metrics": {"apps": apps}})
    header, api, web = text.splitlines()[1:]
    assert header.split()[-4:] == ["HEALTH", "CHECK", "LAST", "ERROR"]
    assert "healthy (pending: restart requested)" in api
    assert api.split()[-3:] == ["GET", "/health", "-"]
    assert web.endswith("any answer < 500 (no /health route)  killed by SIGKILL")
