"""Port allocation for app processes: free on 127.0.0.1 and not promised to another app."""

from __future__ import annotations

import errno
import socket

from gateway.errors import AppError


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if a listening socket could be bound on host:port right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the servers use, so a port in TIME_WAIT counts as free, as it is to them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
                return False
            raise
    return True


class PortAllocator:
    """Hands out ports from `port_range`, skipping ones in use or already given out.

    The search starts after the last port handed out, so a port released a moment ago is
    not reused at once (a client may still hold connections to the old process).
    """

    def __init__(self, port_range: tuple[int, int]) -> None:
        self.port_range = (int(port_range[0]), int(port_range[1]))
        self._taken: dict[int, str] = {}
        self._cursor = self.port_range[0]

    def allocate(self, owner: str, fixed: int | None = None) -> int:
        if fixed is not None:
            holder = self._taken.get(fixed)
            if holder is not None and holder != owner:
                raise AppError(f"app {owner!r}: port {fixed} is already used by app {holder!r}")
            if not port_is_free(fixed):
                raise AppError(f"app {owner!r}: port {fixed} is already in use")
            self._taken[fixed] = owner
            return fixed
        lo, hi = self.port_range
        size = hi - lo + 1
        start = self._cursor if lo <= self._cursor <= hi else lo
        for i in range(size):
            port = lo + (start - lo + i) % size
            if port in self._taken or not port_is_free(port):
                continue
            self._taken[port] = owner
            self._cursor = port + 1
            return port
        raise AppError(f"app {owner!r}: no free port in port_range [{lo}, {hi}]")

    def release(self, port: int | None) -> None:
        if port is not None:
            self._taken.pop(port, None)

    def set_range(self, port_range: tuple[int, int]) -> None:
        self.port_range = (int(port_range[0]), int(port_range[1]))

    def __repr__(self) -> str:
        lo, hi = self.port_range
        return f"<PortAllocator [{lo}, {hi}] taken={sorted(self._taken)}>"
