"""Upstream I/O: the one seam through which the gateway talks to apps.

``PooledTransport`` is the default :class:`Transport`: pooled HTTP/1.1 connections on asyncio
Protocols with httptools' parser for HTTP, ``websockets`` for websocket sessions.
"""

from gateway.proxy.transport import PooledTransport, Transport, UpstreamTarget

__all__ = ["PooledTransport", "Transport", "UpstreamTarget"]
