"""`flotilla router` / `python -m router`: the router alone, against the fleet store in Redis."""

from __future__ import annotations

import logging
import os
import sys

from fleet.logs import configure_logging
from fleet.serving import Listener, run, serve_apps
from fleet.settings import SettingsError, describe, load_settings
from router.settings import RouterSettings

log = logging.getLogger("router")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        settings = load_settings(RouterSettings, argv, os.environ, prog="flotilla router",
                                 description="Flotilla's OpenAI-compatible router")
        if not settings.redis_url:
            raise SettingsError("REDIS_URL is required (the fleet store the control plane "
                                "writes); `flotilla up` runs a router without it")
    except SettingsError as exc:
        print(f"flotilla router: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    log.info("settings: %s", describe(settings))

    from router.app import create_app

    app = create_app(settings)

    async def serve() -> None:
        await serve_apps([Listener(app, settings.host, settings.port, name="router")])

    run(serve)
    return 0
