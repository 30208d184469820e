"""Serving backends (granian, uvicorn, hypercorn) behind one small adapter interface."""

from gateway.servers.registry import Backend, BackendRegistry, get_backend, resolve_backend_name

__all__ = ["Backend", "BackendRegistry", "get_backend", "resolve_backend_name"]
