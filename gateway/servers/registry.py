"""Backends by name, imported only when chosen, so each stays an optional install.

One place decides what serves what (SPEC §5): `BackendRegistry.resolve_gateway` for the
gateway, `BackendRegistry.resolve` for app processes. `auto` serves the gateway on the built-in
front where the `[server]` settings allow it (plain HTTP/1.1) and apps on the first installed
ASGI server (granian, uvicorn, hypercorn); `builtin` names the front for the gateway, and apps
that inherit it run on what `auto` gives them.
"""

from __future__ import annotations

import importlib
import importlib.util
from enum import StrEnum

from gateway.config.schema import ServerConfig
from gateway.errors import BackendNotInstalled, StartupError
from gateway.servers.base import ServerAdapter

BUILTIN = "builtin"

# name -> (adapter import string, module that must be importable, pip package)
BACKENDS: dict[str, tuple[str, str, str]] = {
    BUILTIN: ("gateway.servers.front:FrontAdapter", "httptools", "httptools"),
    "granian": ("gateway.servers.granian_adapter:GranianAdapter", "granian", "granian"),
    "uvicorn": ("gateway.servers.uvicorn_adapter:UvicornAdapter", "uvicorn", "uvicorn"),
    "hypercorn": ("gateway.servers.hypercorn_adapter:HypercornAdapter", "hypercorn",
                  "hypercorn"),
}
#: The ASGI servers that run apps, in `auto` order.
AUTO_ORDER = ("granian", "uvicorn", "hypercorn")


class Backend(StrEnum):
    """A backend that is installed, as `BackendRegistry` resolved it (never `auto`).

    Holding one means the choice is made: layers below the one that resolved a name (the
    gateway's server, the orchestrator, a supervisor) pass it on instead of deciding again.
    `BUILTIN` (the gateway's own front) only ever serves the gateway.
    """

    BUILTIN = BUILTIN
    GRANIAN = "granian"
    UVICORN = "uvicorn"
    HYPERCORN = "hypercorn"


def _installed(name: str) -> bool:
    return importlib.util.find_spec(BACKENDS[name][1]) is not None


class BackendRegistry:
    @staticmethod
    def installed() -> list[str]:
        """The app servers installed, in `auto` order."""
        return [name for name in AUTO_ORDER if _installed(name)]

    @staticmethod
    def gateway_choices() -> list[str]:
        """Everything that can serve the gateway: the built-in front, then the app servers."""
        return ([BUILTIN] if _installed(BUILTIN) else []) + BackendRegistry.installed()

    @staticmethod
    def resolve(name: str) -> Backend:
        """The ASGI server an app runs on, for `name` as written: `auto` and `builtin` are the
        first installed in AUTO_ORDER. A decided app server comes back as it is. Raises
        BackendNotInstalled naming the package to install."""
        if name in ("auto", BUILTIN):
            found = BackendRegistry.installed()
            if not found:
                raise BackendNotInstalled("auto", "granian")
            return Backend(found[0])
        return BackendRegistry._checked(name)

    @staticmethod
    def resolve_gateway(name: str, settings: ServerConfig) -> Backend:
        """What serves the gateway for `name`: `auto` is the built-in front unless the
        settings need TLS or HTTP/2, then the first installed app server; `builtin` with
        those settings is a StartupError saying so."""
        if name == "auto":
            if _installed(BUILTIN) and not cannot_serve(settings):
                return Backend.BUILTIN
            return BackendRegistry.resolve("auto")
        if name == BUILTIN and cannot_serve(settings):
            raise StartupError(
                f"the built-in front serves plain HTTP/1.1 and cannot honour "
                f"{', '.join(cannot_serve(settings))}; choose granian or hypercorn "
                f"(or backend = \"auto\")")
        return BackendRegistry._checked(name)

    @staticmethod
    def _checked(name: str) -> Backend:
        if isinstance(name, Backend):
            return name
        if name not in BACKENDS:
            raise BackendNotInstalled(name, name)
        if not _installed(name):
            raise BackendNotInstalled(name, BACKENDS[name][2])
        return Backend(name)

    @staticmethod
    def get(name: str) -> ServerAdapter:
        """The adapter of `name` (`auto` gives the app servers' first)."""
        backend = BackendRegistry.resolve(name) if name == "auto" else \
            BackendRegistry._checked(name)
        module, _, attr = BACKENDS[backend][0].partition(":")
        cls = getattr(importlib.import_module(module), attr)
        adapter: ServerAdapter = cls()
        return adapter


def cannot_serve(settings: ServerConfig) -> list[str]:
    """The `[server]` keys the built-in front cannot honour as set (TLS, HTTP/2)."""
    from gateway.servers.front import cannot_serve as front_cannot_serve

    return front_cannot_serve(settings)


def resolve_backend_name(name: str) -> Backend:
    """The ASGI server an app runs on (see `BackendRegistry.resolve`)."""
    return BackendRegistry.resolve(name)


def get_backend(name: str) -> ServerAdapter:
    return BackendRegistry.get(name)


def unsupported_settings(backend: str, settings: ServerConfig) -> list[str]:
    """The [server] keys `settings` sets that `backend` cannot honour, for `check` to warn
    about (e.g. ``["max_concurrent_connections"]`` for granian). Only keys that differ from
    their default count. Raises BackendNotInstalled when the backend (for `auto`: every
    backend) is missing.
    """
    return BackendRegistry.get(str(backend)).unsupported_in(settings)
