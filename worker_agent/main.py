"""`flotilla agent` / `python -m worker_agent`: read settings, find the instance id, serve, drain.

Exit codes: 0 after a drain (or a clean stop), 2 for bad settings, another non-zero code if serving
could not start (uvicorn's: port in use, engine command not found).
SIGTERM and SIGINT start a drain (the agent keeps answering probes meanwhile); the same signal a
second time cuts the wait for in-flight requests short.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import httpx

from fleet.logs import configure_logging
from fleet.serving import Listener, run, serve_apps
from fleet.settings import SettingsError, describe, load_settings
from worker_agent.agent import Agent
from worker_agent.app import create_app
from worker_agent.errors import ImdsError
from worker_agent.imds import fetch_instance_id
from worker_agent.settings import AgentSettings

log = logging.getLogger("worker_agent")

DESCRIPTION = "Worker agent: readiness, metrics, enrollment, heartbeats and drain for one engine."


async def resolve_instance_id(settings: AgentSettings) -> AgentSettings:
    """INSTANCE_ID if set; else the EC2 instance id from IMDS; else a SettingsError."""
    if settings.instance_id:
        return settings
    if not settings.imds_url:
        raise SettingsError("INSTANCE_ID is required when IMDS_URL is empty")
    async with httpx.AsyncClient(trust_env=False) as http:
        try:
            instance_id = await fetch_instance_id(settings.imds_url, http)
        except ImdsError as exc:
            raise SettingsError(f"INSTANCE_ID is not set and IMDS could not tell it ({exc}); "
                                "set INSTANCE_ID") from None
    log.info("INSTANCE_ID not set: using the EC2 instance id %s", instance_id)
    return settings.with_instance_id(instance_id)


async def serve(settings: AgentSettings) -> int:
    try:
        settings = await resolve_instance_id(settings)
        agent = Agent(settings)
    except SettingsError as exc:
        log.error("%s", exc)
        return 2
    app = create_app(settings, agent=agent)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, agent.on_signal, signum)
    try:
        await serve_apps([Listener(app, settings.host, settings.port, "agent")],
                         stop=agent.drain.finished, handle_signals=False)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings(AgentSettings, sys.argv[1:] if argv is None else argv,
                                 os.environ, prog="flotilla agent", description=DESCRIPTION)
    except SettingsError as exc:
        print(f"flotilla agent: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    # httpx logs every request at INFO and httpcore every socket step at DEBUG: heartbeats would
    # flood the log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.INFO)
    log.info("starting with %s", describe(settings))
    result: list[int] = []

    async def entry() -> None:
        result.append(await serve(settings))

    try:
        run(entry)
    except SystemExit as exc:
        return int(exc.code or 0)
    return result[0] if result else 1
