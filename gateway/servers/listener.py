"""The gateway's listening socket, created by the engine and lent to whichever backend serves.

Owning the socket outside the backend is what makes a live backend switch lossless: the
kernel keeps queueing connections in this socket's backlog while one server hands over to
the next, so a client never meets a closed port.
"""

from __future__ import annotations

import errno
import socket

from gateway.errors import StartupError


def display_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def create_listener(host: str, port: int, *, backlog: int = 1024) -> socket.socket:
    """Bind and listen on host:port (port 0 picks a free one); non-blocking, not inherited.

    A port already in use is a `StartupError("127.0.0.1:8000 is already in use")`.
    """
    where = display_address(host, port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {where}: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # SO_REUSEADDR lets a restarted engine bind while old connections sit in TIME_WAIT;
        # it does not let two live listeners share the port (that would be SO_REUSEPORT).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"{where} is already in use") from exc
        if exc.errno == errno.EACCES:
            raise StartupError(f"no permission to listen on {where}") from exc
        raise StartupError(f"cannot listen on {where}: {exc.strerror}") from exc
    sock.setblocking(False)
    sock.set_inheritable(False)
    return sock


def bound_port(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port
