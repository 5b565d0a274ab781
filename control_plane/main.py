"""`flotilla control-plane` / `python -m control_plane`: the control plane alone, on Redis."""

from __future__ import annotations

import logging
import os
import sys

from control_plane.app import create_app
from control_plane.settings import ControlPlaneSettings
from fleet.logs import configure_logging
from fleet.serving import Listener, run, serve_apps
from fleet.settings import SettingsError, describe, load_settings

log = logging.getLogger("flotilla.control_plane")


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings(ControlPlaneSettings, sys.argv[1:] if argv is None else argv,
                                 os.environ, prog="flotilla control-plane",
                                 description="Flotilla control plane: worker registry, admin API")
        if not settings.redis_url:
            raise SettingsError("REDIS_URL (or --redis-url) is required for the control plane")
    except SettingsError as exc:
        print(f"flotilla control-plane: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    log.info("starting the control plane on %s:%d with %s", settings.host, settings.port,
             describe(settings))
    app = create_app(settings)

    async def serve() -> None:
        await serve_apps([Listener(app, settings.host, settings.port, "control-plane")])

    try:
        run(serve)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
