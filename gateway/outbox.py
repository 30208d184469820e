"""Writes made at the end of an event-loop pass instead of at once.

On loopback a `write()` runs the receiver's side of TCP inline and wakes the receiving
process; when the gateway writes each request to its upstream (and each response to its
client) as it finishes it, a peer that is faster than the gateway is woken once per request,
sleeps again, and is woken again, a scheduler round trip per write on both sides (on the
2-core development machine, a third of the gateway's and more than half of the upstream's
system time; bench/README.md, "Writes at the end of the pass"). Gathered instead and written
when the loop has run every callback of the events it polled, the writes of one pass find the
peer awake after the first one, and the peer reads them in one pass of its own. Latency does
not grow: the loop polls again only after the writes, whether it has more to do or not.

Each connection writes through its `Outgoing`, which keeps the order of its own writes and
sends them as one buffer; an `Outbox` (the front's, and one per upstream pool) flushes
every connection of its side written to in the pass. A connection's pending bytes are
bounded (`FLUSH_AT`): past that it writes at once, so the transport's own flow control
(`pause_writing`) sees every byte as before.
Closing a connection flushes it first; aborting drops what is pending, as `abort` drops the
transport's buffer.
"""

from __future__ import annotations

import asyncio

#: Bytes a connection keeps pending before it writes at once.
FLUSH_AT = 64 * 1024


class Outbox:
    """The connections written to in this pass of `loop`, flushed at its end."""

    __slots__ = ("loop", "_dirty")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._dirty: list[Outgoing] = []

    def add(self, out: Outgoing) -> None:
        if not self._dirty:
            self.loop.call_soon(self.flush)
        self._dirty.append(out)

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for out in dirty:
            out.flush()


class Outgoing:
    """One connection's writes of this pass, in order."""

    __slots__ = ("transport", "outbox", "_pending", "_size")

    def __init__(self, transport: asyncio.WriteTransport, outbox: Outbox) -> None:
        self.transport = transport
        self.outbox = outbox
        self._pending: list[bytes] | None = None
        self._size = 0

    def write(self, data: bytes) -> None:
        pending = self._pending
        if pending is None:
            self._pending = [data]
            self._size = len(data)
            self.outbox.add(self)
        else:
            pending.append(data)
            self._size += len(data)
        if self._size >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Write what is pending now (before a close, or when the pass ends)."""
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        if not self.transport.is_closing():
            self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def drop(self) -> None:
        """Forget what is pending (the connection is aborted)."""
        self._pending = None
