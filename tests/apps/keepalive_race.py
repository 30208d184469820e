"""A `command` app that loses every keep-alive race: run with ``python keepalive_race.py PORT``.

Real servers close a keep-alive connection after it has been idle for a while (5 s is
common). A client that writes its next request just as that happens gets "Server
disconnected without sending a response". Hitting that moment by timing is luck; this
server makes it certain: it answers the first request on a connection and keeps the
connection open (HTTP/1.1 keep-alive), but closes it, unanswered, when a second request
arrives on it, exactly as a server whose idle timer fires at that instant would. A request
that says ``Connection: close`` is answered and the connection closed, as any server does.

Every path answers 200 ``ok``.
"""

from __future__ import annotations

import asyncio
import sys


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    answered = 0
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if answered:  # the idle timer "fired" as this request came in
                return
            close = b"connection: close" in head.lower()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n"
                         + (b"connection: close\r\n" if close else b"") + b"\r\nok")
            await writer.drain()
            answered += 1
            if close:
                return
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print(f"keepalive_race listening on {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
