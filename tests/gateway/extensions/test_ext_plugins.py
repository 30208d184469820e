"""Third-party extensions: the example package installed for real and found by entry point."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config.loader import validate_text
from gateway.errors import ConfigError
from gateway.extensions import registry
from tests.support.extensions import gateway

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "plugin_example"
DIST = "pyserve-hello"


def _installed() -> bool:
    try:
        importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                   check=True, timeout=300, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def hello_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Install the example into this interpreter's environment (CI starts fresh), then remove
    it again if it was not there before."""
    was_installed = _installed()
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the repo.
    source = tmp_path_factory.mktemp("plugin") / "plugin_example"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    offline = (importlib.util.find_spec("setuptools") is not None
               and importlib.util.find_spec("wheel") is not None)
    _pip("install", "--no-deps", *(["--no-build-isolation"] if offline else []), str(source))
    importlib.invalidate_caches()
    registry.refresh_plugins()
    try:
        yield
    finally:
        if not was_installed:
            _pip("uninstall", "-y", DIST)
            sys.modules.pop("pyserve_hello", None)
            importlib.invalidate_caches()
        registry.refresh_plugins()


def _validate(tmp_path: Path, text: str):
    return validate_text(tmp_path / "workbench.toml", text, environ={})


def test_unknown_type_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _validate(tmp_path, '[[extensions]]\ntype = "nope"\n')
    message = str(info.value)
    assert "unknown extension type 'nope'" in message and ":2:" in message
    for name in ("security", "caching", "monitoring", "cors", "rate_limit", "compression"):
        assert name in message


@pytest.mark.slow
def test_installed_plugin_is_a_known_type_with_checked_options(
        hello_plugin: None, tmp_path: Path) -> None:
    assert "hello" in registry.known_extension_types()
    with pytest.raises(ConfigError) as info:
        _validate(tmp_path, '[[extensions]]\ntype = "nope"\n')
    assert "hello" in str(info.value)
    config = _validate(tmp_path, '[[extensions]]\ntype = "hello"\n'
                                 '[extensions.config]\ngreeting = "Hi"\n')
    assert config.extensions[0].options.greeting == "Hi"
    with pytest.raises(ConfigError, match="must start with /"):
        _validate(tmp_path, '[[extensions]]\ntype = "hello"\n[extensions.config]\npath = "x"\n')
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        _validate(tmp_path, '[[extensions]]\ntype = "hello"\n[extensions.config]\ncolour = 1\n')


@pytest.mark.slow
async def test_installed_plugin_runs_in_the_pipeline(
        hello_plugin: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = ('[[extensions]]\ntype = "hello"\n[extensions.config]\n'
              'greeting = "Hello from the plugin"\n')
    async with gateway(config, tmp_path, monkeypatch) as (_, upstream, client):
        r = await client.get("/hello")
        assert r.status_code == 200 and r.text == "Hello from the plugin\n"
        assert upstream.calls == []
        r = await client.get("/elsewhere")
        assert r.status_code == 200 and r.headers["x-hello"] == "Hello from the plugin"
        assert upstream.calls == ["GET /elsewhere"]
        metrics = (await client.get("/metrics")).json()["extensions"]
        assert metrics["hello"] == {"greeted": 1, "tagged": 1}
