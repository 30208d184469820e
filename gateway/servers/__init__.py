"""Serving backends (granian, uvicorn, hypercorn) behind one small adapter interface."""

from gateway.servers.registry import BackendRegistry, get_backend, resolve_backend_name

__all__ = ["BackendRegistry", "get_backend", "resolve_backend_name"]
