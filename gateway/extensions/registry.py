"""Extension types by name: built-ins as import strings, plugins from entry points.

Built-ins are imported only when a project uses them; third-party extensions register in the
``pyserve_tui.extensions`` entry-point group of their package.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "pyserve_tui.extensions"

BUILTIN: dict[str, str] = {
    "security": "gateway.extensions.security:SecurityExtension",
    "routing": "gateway.extensions.routing:RoutingExtension",
    "caching": "gateway.extensions.caching:CachingExtension",
    "monitoring": "gateway.extensions.monitoring:MonitoringExtension",
    "asgi": "gateway.extensions.asgi_mounts:AsgiMountsExtension",
    "process_orchestration": "gateway.extensions.orchestration:OrchestrationExtension",
    "cors": "gateway.extensions.cors:CorsExtension",
    "rate_limit": "gateway.extensions.rate_limit:RateLimitExtension",
    "compression": "gateway.extensions.compression:CompressionExtension",
    "auth": "gateway.extensions.auth:AuthExtension",
}


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@cache
def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_extension_types() -> list[str]:
    return sorted(set(BUILTIN) | set(_plugins()))


def extension_class(type_: str) -> Any:
    """The class for `type_`; LookupError when no built-in or plugin has that name."""
    if type_ in BUILTIN:
        return _import(BUILTIN[type_])
    ep = _plugins().get(type_)
    if ep is None:
        raise LookupError(type_)
    return ep.load()


def plugin_options_class(type_: str) -> type:
    return getattr(extension_class(type_), "Options", dict)


def refresh_plugins() -> None:
    """Forget the cached entry points (after installing a plugin in a running process)."""
    importlib.invalidate_caches()
    _plugins.cache_clear()
