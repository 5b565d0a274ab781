"""Running ASGI apps on uvicorn the same way in every service.

uvloop + httptools are the fast pair the benchmarks were measured with; `serve_apps` runs several
apps in one event loop (what `flotilla up` does with the control plane and the router) and turns
SIGINT/SIGTERM into one graceful shutdown of all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn


@dataclass(frozen=True)
class Listener:
    app: Any
    host: str
    port: int
    name: str = "app"


class _Server(uvicorn.Server):
    # Signals are handled once for all servers by `serve_apps`, not by each server.
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


def _config(listener: Listener, *, timeout_graceful_shutdown: int | None) -> uvicorn.Config:
    return uvicorn.Config(
        listener.app,
        host=listener.host,
        port=listener.port,
        loop="none",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
        timeout_keep_alive=75,
        backlog=4096,
    )


async def serve_apps(
    listeners: Sequence[Listener],
    *,
    timeout_graceful_shutdown: int | None = 30,
    on_signal: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
) -> None:
    """Serve every listener until SIGINT/SIGTERM (or `stop` is set), then shut all down.

    `handle_signals=False` leaves SIGINT/SIGTERM to the caller, which then ends serving by
    setting `stop` (the worker agent drains on SIGTERM and keeps answering probes meanwhile).
    """
    servers = [
        _Server(_config(item, timeout_graceful_shutdown=timeout_graceful_shutdown))
        for item in listeners
    ]
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()

    def _handle(signum: int) -> None:
        if on_signal is not None:
            on_signal(signum)
        stop.set()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM) if handle_signals else ():
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, _handle, signum)
            installed.append(signum)

    tasks = [asyncio.create_task(s.serve(), name=f"serve-{item.name}")
             for s, item in zip(servers, listeners, strict=True)]
    stopper = asyncio.create_task(stop.wait())
    try:
        # Whichever comes first - a signal, `stop`, or one server ending (a failed bind) - ends all.
        await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        for server in servers:
            server.should_exit = True
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if any(not s.started for s in servers):
            raise SystemExit(1)  # uvicorn already logged why (port in use, lifespan failure)
    finally:
        stopper.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(stopper, *tasks, return_exceptions=True)
        for signum in installed:
            loop.remove_signal_handler(signum)


def run(main: Callable[[], Any]) -> None:
    """Run an async entry point on uvloop."""
    import uvloop

    uvloop.run(main())
