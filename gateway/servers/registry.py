"""Backends by name, imported only when chosen, so each stays an optional install."""

from __future__ import annotations

import importlib
import importlib.util
from enum import StrEnum

from gateway.config.schema import ServerConfig
from gateway.errors import BackendNotInstalled
from gateway.servers.base import ServerAdapter

# name -> (adapter import string, module that must be importable, pip package)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "granian": ("gateway.servers.granian_adapter:GranianAdapter", "granian", "granian"),
    "uvicorn": ("gateway.servers.uvicorn_adapter:UvicornAdapter", "uvicorn", "uvicorn"),
    "hypercorn": ("gateway.servers.hypercorn_adapter:HypercornAdapter", "hypercorn",
                  "hypercorn"),
}
AUTO_ORDER = ("granian", "uvicorn", "hypercorn")


class Backend(StrEnum):
    """A backend that is installed, as `BackendRegistry.resolve` found it (never `auto`).

    Holding one means the choice is made: layers below the one that resolved a name (the
    gateway's server, the orchestrator, a supervisor) pass it on instead of deciding again.
    """

    GRANIAN = "granian"
    UVICORN = "uvicorn"
    HYPERCORN = "hypercorn"


class BackendRegistry:
    @staticmethod
    def installed() -> list[str]:
        return [n for n in AUTO_ORDER if importlib.util.find_spec(BACKENDS[n][1]) is not None]

    @staticmethod
    def resolve(name: str) -> Backend:
        """The installed backend `name` means: `auto` is the first installed in AUTO_ORDER.
        The one place that decides; a `Backend` is already decided and comes back as it is.
        Raises BackendNotInstalled naming the package to install."""
        if isinstance(name, Backend):
            return name
        if name == "auto":
            found = BackendRegistry.installed()
            if not found:
                raise BackendNotInstalled("auto", "granian")
            return Backend(found[0])
        if name not in BACKENDS:
            raise BackendNotInstalled(name, name)
        if importlib.util.find_spec(BACKENDS[name][1]) is None:
            raise BackendNotInstalled(name, BACKENDS[name][2])
        return Backend(name)

    @staticmethod
    def get(name: str) -> ServerAdapter:
        name = BackendRegistry.resolve(name)
        module, _, attr = BACKENDS[name][0].partition(":")
        cls = getattr(importlib.import_module(module), attr)
        adapter: ServerAdapter = cls()
        return adapter


def resolve_backend_name(name: str) -> Backend:
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
