"""Driving ASGI apps in-process: httpx's ASGITransport does not run the lifespan, so we do."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
    """Run the app's lifespan startup, yield its state, then run shutdown."""
    receive_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    send_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    state: dict[str, Any] = {}
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
    task = asyncio.create_task(app(scope, receive_queue.get, send_queue.put))
    await receive_queue.put({"type": "lifespan.startup"})
    message = await asyncio.wait_for(send_queue.get(), timeout=30)
    if message["type"] == "lifespan.startup.failed":
        await task
        raise RuntimeError(message.get("message", "lifespan startup failed"))
    try:
        yield state
    finally:
        await receive_queue.put({"type": "lifespan.shutdown"})
        message = await asyncio.wait_for(send_queue.get(), timeout=30)
        await task
        if message["type"] == "lifespan.shutdown.failed":
            raise RuntimeError(message.get("message", "lifespan shutdown failed"))


@contextlib.asynccontextmanager
async def asgi_client(
    app: Any, base_url: str = "http://testserver"
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client wired to `app` in-process, with the app's lifespan entered."""
    async with lifespan(app) as state:
        async def with_state(scope: dict[str, Any], receive: Any, send: Any) -> None:
            # uvicorn hands each request a shallow copy of the lifespan state; ASGITransport
            # does not, so this wrapper does what the server would.
            if scope["type"] in ("http", "websocket"):
                scope = {**scope, "state": dict(state)}
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client
