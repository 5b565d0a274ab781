"""`flotilla up`: the whole stack on one machine, in one process.

    router (:8000) ──┐
                     ├── one event loop, one fleet store (embedded, or Redis with REDIS_URL)
    control plane ───┘     (:8003) ── local provider ── agent + simulator processes on demand

With no pool configured it sets up a demo so that an OpenAI SDK call works at once: pool `demo`
(the simulator serving model `demo`, 0..1 replicas, to zero after 5 idle minutes) and a route
for the model. The first request finds the pool cold: the router holds it (up to
`ROUTER_COLD_START_WAIT_S`, 60 s here) while the control plane starts a simulated worker.
`--no-demo` skips it; `--model`/`--pool`/`--min-replicas`/`--max-replicas` shape it.

It prints the router URL, an API key created for this run, the admin token and the dashboard
URL. SIGINT/SIGTERM stop both services; the local provider then stops every worker it started
(drain, then SIGKILL after `CONTROL_PLANE_LOCAL_TERMINATE_GRACE_S`, 10 s here).

Every router and control-plane environment variable still applies (CONTROL_PLANE_*, ROUTER_*);
the defaults below differ from the standalone services' only to make one machine responsive
(2 s heartbeats, probes and decisions), and only when the variable is not set.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from control_plane.app import create_app as create_control_plane
from control_plane.catalog import FleetCatalog
from control_plane.keys import ApiKeys
from control_plane.settings import ControlPlaneSettings
from fleet import secrets
from fleet.catalog import CreateKeyRequest, Pool, PoolTarget, Route
from fleet.logs import configure_logging
from fleet.serving import Listener, run, serve_apps
from fleet.settings import SettingsError, load_settings, option
from fleet.store import FleetStore, open_store
from router.settings import RouterSettings

log = logging.getLogger("flotilla.up")

# Defaults for one machine, applied only where the environment does not set the variable.
CONTROL_PLANE_DEFAULTS: dict[str, tuple[str, Any]] = {
    "heartbeat_interval_s": ("HEARTBEAT_INTERVAL_S", 2.0),
    "probe_interval_s": ("CONTROL_PLANE_PROBE_INTERVAL_S", 2.0),
    "autoscale_interval_s": ("CONTROL_PLANE_AUTOSCALE_INTERVAL_S", 2.0),
    "autoscale_interval_at_zero_s": ("CONTROL_PLANE_AUTOSCALE_INTERVAL_AT_ZERO_S", 0.5),
    "local_terminate_grace_s": ("CONTROL_PLANE_LOCAL_TERMINATE_GRACE_S", 10.0),
    "drain_timeout_s": ("CONTROL_PLANE_DRAIN_TIMEOUT_S", 30.0),
    "local_agent_args": ("CONTROL_PLANE_LOCAL_AGENT_ARGS",
                         "--engine-poll-interval-s 0.5 --drain-settle-s 0 "
                         "--drain-timeout-s 10 --engine-stop-grace-s 5 --backoff-max-s 2"),
    "local_simulator_args": ("CONTROL_PLANE_LOCAL_SIMULATOR_ARGS", "--load-s 0.5"),
}
ROUTER_DEFAULTS: dict[str, tuple[str, Any]] = {
    "cold_start_wait_s": ("ROUTER_COLD_START_WAIT_S", 60.0),
}


@dataclass(frozen=True)
class UpSettings:
    host: str = option("127.0.0.1", flag="--host", env="FLOTILLA_UP_HOST",
                       help="address both services listen on")
    router_port: int = option(8000, flag="--router-port", env="ROUTER_PORT", minimum=1,
                              maximum=65535, help="router port")
    control_plane_port: int = option(8003, flag="--control-plane-port",
                                     env="CONTROL_PLANE_PORT", minimum=1, maximum=65535,
                                     help="control plane (admin API, dashboard) port")
    redis_url: str | None = option(None, flag="--redis-url", env="REDIS_URL", secret=True,
                                   help="fleet store (default: embedded, in this process)")
    no_demo: bool = option(False, flag="--no-demo", env="FLOTILLA_UP_NO_DEMO",
                           help="start with no demo pool and route")
    model: str = option("demo", flag="--model", env="FLOTILLA_UP_MODEL",
                        help="model id the demo pool serves (the simulator answers as it)")
    pool: str = option("demo", flag="--pool", env="FLOTILLA_UP_POOL", help="demo pool name")
    min_replicas: int = option(0, flag="--min-replicas", env="FLOTILLA_UP_MIN_REPLICAS",
                               minimum=0, maximum=1000, help="demo pool minimum")
    max_replicas: int = option(1, flag="--max-replicas", env="FLOTILLA_UP_MAX_REPLICAS",
                               minimum=0, maximum=1000, help="demo pool maximum")
    scale_to_zero_after_s: float = option(300.0, flag="--scale-to-zero-after",
                                          env="FLOTILLA_UP_SCALE_TO_ZERO_AFTER_S", minimum=0.0,
                                          help="demo pool: idle time before scaling to zero")
    log_level: str = option("info", flag="--log-level", env="LOG_LEVEL",
                            choices=("debug", "info", "warning", "error", "critical"))
    log_format: str = option("text", flag="--log-format", env="LOG_FORMAT",
                             choices=("text", "json"))


def service_settings(up: UpSettings, environ: Mapping[str, str], admin_token: str
                     ) -> tuple[ControlPlaneSettings, RouterSettings]:
    env = {k: v for k, v in environ.items()
           if k not in ("ROUTER_PORT", "CONTROL_PLANE_PORT", "ROUTER_HOST", "CONTROL_PLANE_HOST")}
    cp = load_settings(ControlPlaneSettings, [], env)
    cp = dataclasses.replace(cp, **_defaults(CONTROL_PLANE_DEFAULTS, environ),
                             host=up.host, port=up.control_plane_port, redis_url=up.redis_url,
                             admin_token=admin_token, log_level=up.log_level,
                             log_format=up.log_format)
    router = load_settings(RouterSettings, [], env)
    router = dataclasses.replace(router, **_defaults(ROUTER_DEFAULTS, environ), host=up.host,
                                 port=up.router_port, redis_url=up.redis_url,
                                 log_level=up.log_level, log_format=up.log_format)
    return cp, router


def _defaults(table: dict[str, tuple[str, Any]], environ: Mapping[str, str]) -> dict[str, Any]:
    return {name: value for name, (env, value) in table.items() if env not in environ}


async def seed(store: FleetStore, up: UpSettings) -> tuple[str, list[str]]:
    """An API key for this run, and the demo pool and route when asked and missing."""
    _, key = await ApiKeys(store, time.time).create(
        CreateKeyRequest(name="flotilla-up"))
    notes = []
    if not up.no_demo:
        catalog = FleetCatalog(store)
        await catalog.load()
        if catalog.pool(up.pool) is None:
            await catalog.put_pool(up.pool, Pool(
                model_id=up.model, engine="vllm", provider="local",
                min_replicas=min(up.min_replicas, up.max_replicas),
                max_replicas=up.max_replicas, scale_to_zero_after_s=up.scale_to_zero_after_s))
            notes.append(f"created pool {up.pool!r} (simulator serving {up.model!r}, "
                         f"{min(up.min_replicas, up.max_replicas)}..{up.max_replicas} "
                         "replicas)")
        if catalog.route(up.model) is None:
            await catalog.put_route(up.model, Route(targets=[PoolTarget(up.pool)]))
            notes.append(f"created route {up.model!r} -> pool {up.pool!r}")
    return key, notes


def banner(up: UpSettings, key: str, admin_token: str, notes: list[str]) -> str:
    host = "127.0.0.1" if up.host in ("0.0.0.0", "::") else up.host
    router_url = f"http://{host}:{up.router_port}/v1"
    cp_url = f"http://{host}:{up.control_plane_port}"
    lines = ["", "Flotilla is up.", f"  router (OpenAI base URL): {router_url}",
             f"  API key:                  {key}",
             f"  dashboard:                {cp_url}/",
             f"  admin API:                {cp_url}/v1 (Authorization: Bearer {admin_token})",
             f"  fleet store:              {'Redis' if up.redis_url else 'embedded'}"]
    lines += [f"  {note}" for note in notes]
    if not up.no_demo:
        lines += ["", "Try it:", f"  OPENAI_BASE_URL={router_url} OPENAI_API_KEY={key} \\",
                  "  python -c \"import openai; print(openai.OpenAI().chat.completions.create("
                  f"model='{up.model}', messages=[{{'role': 'user', 'content': 'hi'}}])"
                  ".choices[0].message.content)\""]
    lines.append("Stop with Ctrl-C: every worker process is stopped too.")
    return "\n".join(lines) + "\n"


async def serve(up: UpSettings, environ: Mapping[str, str]) -> None:
    admin_token = environ.get("ADMIN_TOKEN") or secrets.new_id("admin") + secrets.new_id("t")
    cp_settings, router_settings = service_settings(up, environ, admin_token)
    store = open_store(up.redis_url, prefix=cp_settings.store_prefix)
    try:
        key, notes = await seed(store, up)
        from router.app import create_app as create_router

        cp_app = create_control_plane(cp_settings, store=store)
        router_app = create_router(router_settings, store=store)
        announced = asyncio.create_task(_announce(cp_app, banner(up, key, admin_token, notes)))
        try:
            await serve_apps([Listener(cp_app, up.host, up.control_plane_port, "control-plane"),
                              Listener(router_app, up.host, up.router_port, "router")])
        finally:
            announced.cancel()
            await asyncio.gather(announced, return_exceptions=True)
    finally:
        await store.aclose()


async def _announce(cp_app: Any, text: str) -> None:
    while getattr(cp_app.state, "cp", None) is None:
        await asyncio.sleep(0.05)
    sys.stdout.write(text)
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    try:
        up = load_settings(UpSettings, sys.argv[1:] if argv is None else argv, os.environ,
                           prog="flotilla up",
                           description="Router + control plane + simulated GPU workers on one "
                                       "machine")
        if up.router_port == up.control_plane_port:
            raise SettingsError("--router-port and --control-plane-port must differ")
        cp_settings, _ = service_settings(up, os.environ, "x" * 16)
    except SettingsError as exc:
        print(f"flotilla up: {exc}", file=sys.stderr)
        return 2
    configure_logging(up.log_level, up.log_format)
    log.info("starting: router on %s:%d, control plane on %s:%d, local workers in %s",
             up.host, up.router_port, up.host, up.control_plane_port, cp_settings.local_workdir)
    try:
        run(lambda: serve(up, os.environ))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
