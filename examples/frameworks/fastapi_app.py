"""A FastAPI API as its own docs write one: items, interactive docs, SSE and a WebSocket.

Nothing in it knows it runs under ``/api``: the gateway tells it (``root_path``), so the
docs page loads ``/api/openapi.json``, ``redirect_slashes`` sends ``/api/items/`` to
``/api/items`` and ``url_for`` builds ``/api/...`` links, as behind nginx with
``uvicorn --root-path /api``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

app = FastAPI(title="Items API", version="1.0")

ITEMS = {1: {"id": 1, "name": "kettle"}, 2: {"id": 2, "name": "teapot"},
         3: {"id": 3, "name": "mug"}}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/items")
async def list_items(request: Request) -> list[dict[str, object]]:
    return [{**item, "url": str(request.url_for("read_item", item_id=item_id))}
            for item_id, item in ITEMS.items()]


@app.get("/items/{item_id}")
async def read_item(item_id: int) -> dict[str, object]:
    if item_id not in ITEMS:
        raise HTTPException(status_code=404, detail="no such item")
    return ITEMS[item_id]


@app.get("/events")
async def events(n: int = 3, gap: float = 0.3) -> StreamingResponse:
    """Server-Sent Events: `n` ticks, `gap` seconds apart."""
    async def ticks() -> AsyncIterator[str]:
        for i in range(n):
            if i:
                await asyncio.sleep(gap)
            yield f"id: {i}\ndata: tick {i}\n\n"

    return StreamingResponse(ticks(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass
