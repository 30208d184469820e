"""`pyserve-tui export` and `pyserve-tui import` as a user runs them, and imported projects
that really run.

The seed documents' pyserve examples (their Extensions reference and Orchestration guide,
in tests/deploy/seeds/) import, pass `check`, and serve: their `myapp` package is written
here as the guide describes it, and the imported project runs in a real workbench.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_config
from tests.support.harness import ROOT
from tests.support.integration import Project, WorkbenchFactory, clean_env, cli_argv

SEEDS = Path(__file__).parent / "seeds"
FULL = Path(__file__).parent / "projects" / "full" / "workbench.toml"


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli_argv(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env=clean_env(), stdin=subprocess.DEVNULL)


# --- export ---------------------------------------------------------------------------------

def test_export_writes_files_and_prints_the_report(tmp_path: Path) -> None:
    out = run("export", "compose", "-c", str(ROOT / "workbench.toml"), "-o",
              str(tmp_path / "c"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("# pyserve-tui export compose: report")
    assert f"wrote 4 files to {tmp_path / 'c'}" in out.stdout
    written = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert written == [".pyserve-export", "Dockerfile", "REPORT.md", "compose.yaml",
                       "nginx.conf"]


def test_export_defaults_to_deploy_target_in_the_current_folder(tmp_path: Path) -> None:
    shutil.copy(FULL, tmp_path / "workbench.toml")
    out = run("export", "systemd", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "deploy" / "systemd" / "nginx.conf").is_file()


def test_strict_export_fails_with_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    out = run("export", "kubernetes", "--strict", "-c", str(FULL), "-o", str(tmp_path / "k"))
    assert out.returncode == 2
    assert "have no faithful equivalent" in out.stderr.splitlines()[-1]
    assert "restart_delay, max_restart_count" in out.stderr
    assert not (tmp_path / "k").exists()
    assert "Traceback" not in out.stderr


def test_export_of_a_broken_project_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "workbench.toml").write_text("[server]\nport = 'x'\n")
    out = run("export", "systemd", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == ("pyserve-tui: workbench.toml:2:1: server.port: must be an "
                                  "integer, not a string ('x')")


def test_export_of_an_unknown_target_is_a_usage_error(tmp_path: Path) -> None:
    out = run("export", "nomad", cwd=tmp_path)
    assert out.returncode == 2 and "invalid choice: 'nomad'" in out.stderr


# --- import ---------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", ["extensions_reference.yaml", "orchestration_guide.yaml"])
def test_pyserve_examples_import_and_pass_check(seed: str, tmp_path: Path) -> None:
    shutil.copy(SEEDS / seed, tmp_path / seed)
    out = run("import", seed, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    target = tmp_path / "workbench.toml"
    assert f"wrote {target} (pyserve YAML config)" in out.stdout
    assert run("check", "-c", str(target)).returncode == 0
    text = target.read_text()
    assert text.startswith(f"# Imported from {seed}")
    # Never overwrites: the second import is refused like `init`'s.
    again = run("import", seed, cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.strip() == f"pyserve-tui: {target} already exists; not overwriting it"
    assert target.read_text() == text


def test_import_lists_what_it_could_not_carry_over(tmp_path: Path) -> None:
    (tmp_path / "pyserve.yaml").write_text(
        "server:\n  host: 127.0.0.1\n  port: 8000\n  default_root: ./www\n"
        "http:\n  static_dir: ./static\n"
        "extensions:\n"
        "  - type: routing\n    config:\n      regex_locations:\n"
        "        '=/x': {return: '200 x', weird: 1}\n"
        "        '~(unclosed': {return: '200 y'}\n"
        "  - type: process_orchestration\n    config:\n      apps:\n"
        "        - {name: api, path: /api, app_path: myapp.api:app, workers: 'four'}\n")
    out = run("import", "pyserve.yaml", "-o", "out.toml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    dropped = out.stdout.split("not carried over:")[1]
    for what in ("server.default_root", "section 'http'", "weird", "'~(unclosed'", "workers"):
        assert what in dropped, what
    project = load_config(tmp_path / "out.toml", environ={})
    assert [a.name for a in project.apps] == ["api"] and project.apps[0].workers == 1


def test_procfile_becomes_command_apps_under_their_names(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text(
        "# processes\n"
        "web: python -m http.server $PORT --bind 127.0.0.1\n"
        "clock: GREETING=hi python tick.py --every 5\n"
        "shell: cd sub && exec python serve.py --port ${PORT}\n"
        "release: python manage.py migrate\n")
    out = run("import", "Procfile", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    project = load_config(tmp_path / "workbench.toml", environ={})
    apps = {a.name: a for a in project.apps}
    assert list(apps) == ["web", "clock", "shell"]
    assert apps["web"].path == "/web"
    assert apps["web"].command == ["python", "-m", "http.server", "$PORT", "--bind",
                                   "127.0.0.1"]
    assert apps["clock"].env == {"GREETING": "hi"}
    assert apps["clock"].command == ["python", "tick.py", "--every", "5"]
    assert apps["shell"].command == ["sh", "-c", "cd sub && exec python serve.py --port ${PORT}"]
    assert "release" in out.stdout.split("not carried over:")[1]


def test_import_of_neither_format_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("just some text\nwithout structure\n")
    out = run("import", "notes.txt", cwd=tmp_path)
    assert out.returncode == 2
    assert "neither a pyserve YAML config" in out.stderr and "Traceback" not in out.stderr
    missing = run("import", "nope.yaml", cwd=tmp_path)
    assert missing.returncode == 2 and "nope.yaml: no such file" in missing.stderr


MYAPP_API = '''
"""The guide's FastAPI example, as a plain ASGI app (no FastAPI needed in the tests)."""
import json


async def _json(send, data):
    body = json.dumps(data).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    # Under a prefix, path starts with root_path (as behind `uvicorn --root-path`).
    path = scope["path"][len(scope.get("root_path", "")):] or "/"
    if path == "/health":
        await _json(send, {"status": "ok"})
    elif path == "/users":
        await _json(send, [{"id": 1, "name": "Alice"}])
    else:
        await _json(send, {"path": path})


def create_app(debug=False, **settings):
    return app
'''
MYAPP_ADMIN = '''
"""The guide's Flask example, as a plain WSGI app."""
import json


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    body = json.dumps({"status": "ok"} if path == "/health" else {"page": path}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
'''


def test_the_imported_orchestration_guide_runs(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    (folder / "myapp").mkdir(parents=True)
    (folder / "myapp" / "__init__.py").write_text("")
    (folder / "myapp" / "api.py").write_text(MYAPP_API)
    (folder / "myapp" / "admin.py").write_text(MYAPP_ADMIN)
    text = (SEEDS / "orchestration_guide.yaml").read_text()
    # The guide's gateway port and port range, made free for this run.
    from tests.support.harness import free_port, free_port_range

    port, (lo, hi) = free_port(), free_port_range()
    text = text.replace("port: 8000", f"port: {port}").replace("[9000, 9999]", f"[{lo}, {hi}]")
    (folder / "pyserve.yaml").write_text(text)
    assert run("import", "pyserve.yaml", cwd=folder).returncode == 0
    factory = WorkbenchFactory()
    try:
        wb = factory(Project(folder, port, (lo, hi)), apps=["api", "admin", "factory"],
                     timeout=60)
        assert wb.http.get("/api/users").json() == [{"id": 1, "name": "Alice"}]
        assert wb.http.get("/admin/dashboard").json() == {"page": "/dashboard"}
        assert wb.http.get("/factory/health").json() == {"status": "ok"}
        env = wb.http.get("/api/health")
        assert env.status_code == 200
    finally:
        factory.close()


def test_the_imported_extensions_reference_runs(tmp_path: Path) -> None:
    """Its apps are in-process mounts (one a factory with arguments) beside routing,
    security, caching and monitoring."""
    folder = tmp_path / "project"
    (folder / "myapp").mkdir(parents=True)
    (folder / "myapp" / "__init__.py").write_text("")
    (folder / "myapp" / "api.py").write_text(MYAPP_API)
    (folder / "myapp" / "admin.py").write_text(MYAPP_ADMIN)
    (folder / "static").mkdir()
    (folder / "static" / "index.html").write_text("home\n")
    from tests.support.harness import free_port

    port = free_port()
    text = (SEEDS / "extensions_reference.yaml").read_text().replace("port: 8000",
                                                                   f"port: {port}")
    (folder / "pyserve.yaml").write_text(text)
    assert run("import", "pyserve.yaml", cwd=folder).returncode == 0
    factory = WorkbenchFactory()
    try:
        wb = factory(Project(folder, port, (9000, 9999)), timeout=60)
        assert wb.http.get("/api/users").json() == [{"id": 1, "name": "Alice"}]
        assert wb.http.get("/admin/dashboard").json() == {"page": "/dashboard"}
        assert wb.http.get("/api/v2/health").json() == {"status": "ok"}
        assert wb.http.get("/index.html").text == "home\n"
        assert wb.http.get("/").headers["x-frame-options"] == "DENY"
    finally:
        factory.close()


def test_a_procfile_import_runs(tmp_path: Path) -> None:
    from tests.support.harness import free_port, free_port_range

    (tmp_path / "Procfile").write_text(
        f"web: {sys.executable} -m http.server $PORT --bind 127.0.0.1\n")
    assert run("import", "Procfile", cwd=tmp_path).returncode == 0
    port, (lo, hi) = free_port(), free_port_range()
    config = tmp_path / "workbench.toml"
    text = config.read_text().replace("[9000, 9999]", f"[{lo}, {hi}]")
    config.write_text(f"[server]\nport = {port}\n\n{text}")
    (tmp_path / "hello.txt").write_text("hello from the Procfile\n")
    factory = WorkbenchFactory()
    try:
        wb = factory(Project(tmp_path, port, (lo, hi)), apps=["web"], timeout=60)
        assert wb.http.get("/web/hello.txt").text == "hello from the Procfile\n"
    finally:
        factory.close()
