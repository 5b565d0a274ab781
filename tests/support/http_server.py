"""Serve an ASGI app over real HTTP on a free loopback port, inside the test's event loop.

For fakes of what cannot run here (the EC2 metadata service): agent processes and in-process
clients reach them over TCP exactly as they would reach the real thing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from tests.support.ports import free_port


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield  # the test process keeps its own signal handling


@contextlib.asynccontextmanager
async def serve_http(app: Any, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Yield the base URL of `app` served by uvicorn; stop it on exit."""
    port = free_port(host)
    config = uvicorn.Config(app, host=host, port=port, lifespan="off", log_config=None,
                            access_log=False, loop="none")
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(400):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
        if not server.started:
            raise TimeoutError("test HTTP server did not start")
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)
