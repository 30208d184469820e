"""The project file: every key validated, one positioned message per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.loader import validate_text
from gateway.config.schema import BackendName
from gateway.errors import ConfigError

BASE = """\
[server]
port = 8000   # a comment

[[extensions]]
type = "process_orchestration"
[extensions.config]
port_range = [9000, 9999]
health_check_retries = 2

[[extensions.config.apps]]
name = "api"
path = "/api"
app_path = "examples.api:app"

[[extensions.config.apps]]
name = "web"
path = "/web"
app_path = "examples.web:app"
restart_delay = 0.25

[[extensions]]
type = "routing"
[extensions.config.regex_locations]
"=/ping" = { return = "200 pong", content_type = "text/plain" }
"__default__" = { root = "./static" }
"""


def load(text: str, tmp_path: Path, **kw) -> object:
    path = tmp_path / "workbench.toml"
    path.write_text(text)
    return validate_text(path, text, environ=kw.pop("environ", {}), **kw)


def error(text: str, tmp_path: Path, **kw) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(text, tmp_path, **kw)
    return info.value


def test_valid_file_has_defaults_and_overrides(tmp_path: Path) -> None:
    project = load(BASE, tmp_path)
    assert project.server.host == "127.0.0.1"
    assert project.server.backend is BackendName.AUTO
    assert project.logging.request_log_size == 10000
    orch = project.orchestration
    assert [a.name for a in orch.apps] == ["api", "web"]
    api, web = orch.apps
    assert api.workers == 1 and api.health_check_path is None and api.strip_path
    assert orch.effective(api, "restart_delay") == 1.0
    assert orch.effective(web, "restart_delay") == 0.25
    assert orch.effective(web, "health_check_retries") == 2
    assert orch.effective(api, "hold_requests") == 5.0
    assert project.resolve("./static") == tmp_path / "static"


def test_missing_required_key_points_at_the_table(tmp_path: Path) -> None:
    text = BASE.replace('app_path = "examples.web:app"\n', "")
    exc = error(text, tmp_path)
    assert str(exc).endswith("workbench.toml:15:1: extensions[0].config.apps[1]: "
                             "'app_path' is required (or give 'command')")
    assert (exc.line, exc.col) == (15, 1)


def test_unknown_key_names_known_ones(tmp_path: Path) -> None:
    exc = error(BASE.replace("health_check_retries = 2", "health_check_retrys = 2"), tmp_path)
    assert exc.line == 8 and exc.col == 1
    assert "unknown key 'health_check_retrys'" in str(exc)
    assert "health_check_retries" in str(exc)


def test_wrong_type_in_inline_table_has_column(tmp_path: Path) -> None:
    exc = error(BASE.replace('return = "200 pong"', "return = 200"), tmp_path)
    assert (exc.line, exc.col) == (24, 14)
    assert "must be a string" in str(exc)


def test_toml_syntax_error_has_position(tmp_path: Path) -> None:
    exc = error(BASE.replace("port = 8000", "port = = 8000"), tmp_path)
    assert exc.line == 2 and "invalid TOML" in str(exc)


def test_unknown_extension_type_lists_known(tmp_path: Path) -> None:
    exc = error(BASE.replace('type = "routing"', 'type = "routin"'), tmp_path)
    assert "unknown extension type 'routin'" in str(exc)
    assert "routing" in str(exc) and "process_orchestration" in str(exc)
    assert exc.line == 22


@pytest.mark.parametrize(("old", "new", "fragment"), [
    ('path = "/api"', 'path = "api"', "must start with /"),
    ("port_range = [9000, 9999]", "port_range = [9999, 9000]", "port_range"),
    ("port = 8000", 'port = "8000"', "must be an integer"),
    ('name = "web"', 'name = "api"', "duplicate app name"),
    ('restart_delay = 0.25', 'depends_on = ["nope"]', "unknown app 'nope'"),
    ('"=/ping"', '"~(unclosed"', "bad regex"),
    ('[server]', '[servr]', "unknown section"),
    ('app_path = "examples.api:app"', 'app_path = "examples.api"', "module:attribute"),
])
def test_rules(tmp_path: Path, old: str, new: str, fragment: str) -> None:
    assert old in BASE
    exc = error(BASE.replace(old, new), tmp_path)
    assert fragment in str(exc)
    assert exc.line > 0


def test_two_apps_on_one_path_are_refused_at_the_second(tmp_path: Path) -> None:
    exc = error(BASE.replace('path = "/web"', 'path = "/api/"'), tmp_path)
    assert str(exc).endswith(
        "workbench.toml:17:1: extensions[0].config.apps[1].path: '/api/' is already the path "
        "of app 'api' (extensions[0].config.apps[0])")


def test_an_app_and_a_mount_on_one_path_are_refused(tmp_path: Path) -> None:
    text = BASE + """
[[extensions]]
type = "asgi"
[[extensions.config.mounts]]
path = "/web"
app_path = "examples.api:app"
"""
    exc = error(text, tmp_path)
    assert "extensions[2].config.mounts[0].path: '/web' is already the path of app 'web'" \
        in str(exc)
    assert (exc.line, exc.col) == (30, 1)


def test_app_type_may_be_left_out(tmp_path: Path) -> None:
    api = load(BASE, tmp_path).orchestration.apps[0]
    assert api.app_type is None  # the loaded object is inspected
    exc = error(BASE.replace('name = "api"', 'name = "api"\napp_type = "asgi3"'), tmp_path)
    assert "must be one of 'asgi', 'wsgi'" in str(exc)


def test_dependency_cycle(tmp_path: Path) -> None:
    text = BASE.replace('app_path = "examples.api:app"',
                        'app_path = "examples.api:app"\ndepends_on = ["web"]')
    text = text.replace("restart_delay = 0.25", 'depends_on = ["api"]')
    assert "dependency cycle" in str(error(text, tmp_path))


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    env = {"PYSERVE_TUI_PORT": "8100", "PYSERVE_TUI_HOST": "127.0.0.2"}
    project = load(BASE, tmp_path, environ=env)
    assert project.server.port == 8100 and project.server.host == "127.0.0.2"
    project = load(BASE, tmp_path, environ=env, overrides={"port": 8200})
    assert project.server.port == 8200 and project.server.host == "127.0.0.2"
    assert load(BASE, tmp_path).server.port == 8000


def test_bad_backend_value(tmp_path: Path) -> None:
    exc = error(BASE, tmp_path, overrides={"backend": "tornado"})
    assert "'granian'" in str(exc) and "tornado" in str(exc)


def test_bundled_project_is_valid() -> None:
    root = Path(__file__).resolve().parents[3]
    text = (root / "workbench.toml").read_text()
    project = validate_text(root / "workbench.toml", text, environ={})
    assert {a.name for a in project.apps} == {"api", "guestbook", "clock"}


def test_frameworks_example_is_valid() -> None:
    """`pyserve-tui check -c examples/frameworks/workbench.toml` (the README's second command);
    tests/integration/test_frameworks.py runs the same apps."""
    path = Path(__file__).resolve().parents[3] / "examples" / "frameworks" / "workbench.toml"
    project = validate_text(path, path.read_text(), environ={})
    assert {a.name: a.path for a in project.apps} == {
        "fastapi": "/api", "flask": "/flask", "django": "/django"}
    assert all(a.app_type is None for a in project.apps)  # each found out from the object
