"""`flotilla sim` / `python -m simulator`: run one simulated engine until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

from fleet.logs import configure_logging
from fleet.serving import run
from fleet.settings import SettingsError, describe, load_settings
from simulator.app import SimulatorApp
from simulator.httpserver import HttpServer
from simulator.settings import SimulatorSettings

log = logging.getLogger("simulator")


async def serve(settings: SimulatorSettings, *, stop: asyncio.Event | None = None) -> int:
    """Serve until a signal (or `stop`); returns the process exit status."""
    app = SimulatorApp(settings)
    server = HttpServer(app, keepalive_timeout_s=settings.keepalive_timeout_s)
    try:
        await server.listen(settings.host, settings.port)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", settings.host, settings.port, exc)
        return 1
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    log.info("%s simulator serving %r on http://%s:%s (pid %s)", settings.kind, settings.model,
             settings.host, settings.port, os.getpid(), extra={"settings": describe(settings)})
    try:
        await stop.wait()
        log.info("shutting down: %d request(s) in flight", len(server.in_flight()))
        await server.shutdown(settings.shutdown_grace_s)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    return 0


def main(argv: list[str]) -> int:
    try:
        settings = load_settings(SimulatorSettings, argv, os.environ, prog="flotilla sim",
                                 description="A vLLM / TEI compatible engine simulator.")
    except SettingsError as exc:
        print(f"flotilla sim: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    status = 0

    async def _main() -> None:
        nonlocal status
        status = await serve(settings)

    run(_main)
    return status
