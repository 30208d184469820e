"""Choosing a backend and an event loop; the listening socket; settings a backend ignores."""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Callable
from typing import Any

import pytest

from gateway.config.schema import ServerConfig
from gateway.errors import BackendNotInstalled, StartupError
from gateway.servers import loops, registry
from gateway.servers.listener import create_listener
from gateway.servers.registry import Backend, BackendRegistry, unsupported_settings


def hide_modules(monkeypatch: pytest.MonkeyPatch, *hidden: str) -> None:
    """Make `find_spec` report `hidden` modules as not installed."""
    real: Callable[..., Any] = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        if name in hidden:
            return None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_auto_takes_granian_first() -> None:
    assert registry.AUTO_ORDER == ("granian", "uvicorn", "hypercorn")
    assert BackendRegistry.resolve("auto") == "granian"
    assert BackendRegistry.installed() == ["granian", "uvicorn", "hypercorn"]


def test_a_resolved_backend_is_not_decided_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # The engine resolves a name once per switch and hands the `Backend` down; the gateway's
    # server, the orchestrator and the supervisors pass it on without looking again.
    resolved = BackendRegistry.resolve("auto")
    assert resolved is Backend.GRANIAN
    hide_modules(monkeypatch, "granian", "uvicorn", "hypercorn")
    assert BackendRegistry.resolve(resolved) is Backend.GRANIAN
    with pytest.raises(BackendNotInstalled):
        BackendRegistry.resolve("granian")  # a name is still checked


@pytest.mark.parametrize(("hidden", "expected"), [
    (("granian",), "uvicorn"),
    (("granian", "uvicorn"), "hypercorn"),
    (("uvicorn",), "granian"),
])
def test_auto_cascades_in_order(monkeypatch: pytest.MonkeyPatch, hidden: tuple[str, ...],
                                expected: str) -> None:
    hide_modules(monkeypatch, *hidden)
    assert BackendRegistry.resolve("auto") == expected


def test_auto_with_nothing_installed_names_a_package(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_modules(monkeypatch, "granian", "uvicorn", "hypercorn")
    with pytest.raises(BackendNotInstalled, match="pip install granian"):
        BackendRegistry.resolve("auto")


@pytest.mark.parametrize("name", ["granian", "uvicorn", "hypercorn"])
def test_missing_backend_names_the_pip_package(monkeypatch: pytest.MonkeyPatch,
                                               name: str) -> None:
    hide_modules(monkeypatch, name)
    with pytest.raises(BackendNotInstalled) as info:
        BackendRegistry.get(name)
    assert info.value.package == name
    assert f"pip install {name}" in str(info.value)
    assert isinstance(info.value, StartupError)


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(BackendNotInstalled, match="'tornado' is not installed"):
        BackendRegistry.get("tornado")


@pytest.mark.parametrize("name", ["granian", "uvicorn", "hypercorn"])
def test_adapters_load_by_name(name: str) -> None:
    adapter = BackendRegistry.get(name)
    assert adapter.name == name
    assert adapter.package == name
    assert name in repr(adapter)


def test_event_loop_auto_prefers_uvloop() -> None:
    assert loops.AUTO_LOOP_ORDER == ("uvloop", "asyncio")
    assert loops.resolve_loop("auto") == "uvloop"
    assert loops.resolve_loop("asyncio") == "asyncio"


def test_event_loop_auto_falls_back_to_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_modules(monkeypatch, "uvloop")
    assert loops.resolve_loop("auto") == "asyncio"


def test_explicit_uvloop_missing_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_modules(monkeypatch, "uvloop")
    with pytest.raises(BackendNotInstalled) as info:
        loops.resolve_loop("uvloop")
    assert (info.value.name, info.value.package) == ("uvloop", "uvloop")


def test_loop_factory_builds_the_chosen_loop() -> None:
    loop = loops.loop_factory("uvloop")()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()


def test_unsupported_settings_only_reports_what_is_set() -> None:
    assert unsupported_settings("granian", ServerConfig()) == []
    assert unsupported_settings("uvicorn", ServerConfig()) == []
    assert unsupported_settings("hypercorn", ServerConfig()) == []
    capped = ServerConfig(max_concurrent_connections=100, http="2")
    assert unsupported_settings("granian", capped) == ["max_concurrent_connections"]
    assert unsupported_settings("hypercorn", capped) == ["max_concurrent_connections"]
    assert unsupported_settings("uvicorn", capped) == ["http"]
    assert unsupported_settings("builtin", ServerConfig()) == []
    assert unsupported_settings("builtin", capped) == ["http"]
    bounded = ServerConfig(max_body_size=1024)
    assert unsupported_settings("builtin", bounded) == []
    for name in ("granian", "uvicorn", "hypercorn"):
        assert unsupported_settings(name, bounded) == ["max_body_size"]
    assert unsupported_settings("uvicorn", ServerConfig(http="1")) == []
    # granian applies it as hyper's header read timeout, to the gateway and app processes
    assert unsupported_settings("granian", ServerConfig(keep_alive_timeout=30)) == []
    assert unsupported_settings("auto", capped) == ["max_concurrent_connections"]


def test_listener_is_bound_listening_and_reusable() -> None:
    sock = create_listener("127.0.0.1", 0, backlog=16)
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        assert not sock.get_inheritable()
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()


def test_listener_on_a_port_in_use_is_a_one_line_startup_error() -> None:
    taken = create_listener("127.0.0.1", 0)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(StartupError) as info:
            create_listener("127.0.0.1", port)
        assert str(info.value) == f"127.0.0.1:{port} is already in use"
    finally:
        taken.close()
