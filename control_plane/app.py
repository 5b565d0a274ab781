"""The control plane's Starlette app: endpoints assembled from `control_plane.api` modules, the
services of `ControlPlane` entered in the lifespan, errors shaped like OpenAI's in one place.

`create_app(settings, store=None, http=None, metrics_registry=None, clock=time.time)`: with no
store the app opens (and closes) one from `settings.redis_url`; an injected store belongs to the
caller (`flotilla up` shares one `MemoryFleetStore` between the router and the control plane), and
so does an injected `http` (the aiohttp session of the readiness probes).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from control_plane.api import (
    admin_workers,
    bursts,
    cost,
    discovery,
    estimate,
    events,
    health,
    keys,
    pools,
    routes,
    workers,
)
from control_plane.errors import ControlPlaneError
from control_plane.middleware import RequestIdMiddleware
from control_plane.providers.base import CapacityProvider
from control_plane.services import ControlPlane
from control_plane.settings import ControlPlaneSettings
from fleet.errors import error_response
from fleet.store import FleetStore, FleetStoreError, open_store

log = logging.getLogger("flotilla.control_plane")

# Worker routes first: POST /v1/workers/register must not be taken for a worker id.
API_MODULES = (health, workers, admin_workers, keys, pools, routes, cost, bursts, estimate,
               events, discovery)


def create_app(settings: ControlPlaneSettings, *, store: FleetStore | None = None,
               http: aiohttp.ClientSession | None = None,
               metrics_registry: CollectorRegistry | None = None,
               clock: Callable[[], float] = time.time,
               providers: Mapping[str, CapacityProvider] | None = None) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with contextlib.AsyncExitStack() as stack:
            fleet_store = store
            if fleet_store is None:
                if not settings.redis_url:
                    raise RuntimeError("REDIS_URL is required when no store is given")
                fleet_store = open_store(settings.redis_url, prefix=settings.store_prefix)
                stack.push_async_callback(fleet_store.aclose)
            cp = ControlPlane(settings, fleet_store, http=http,
                              metrics_registry=metrics_registry, clock=clock,
                              providers=providers)
            stack.push_async_callback(cp.aclose)
            await cp.start()
            app.state.cp = cp  # for tests and embedding; handlers use request.state
            log.info("control plane ready")
            yield {"cp": cp}

    endpoints = [route for module in API_MODULES for route in module.ROUTES]
    return Starlette(
        routes=endpoints,
        lifespan=lifespan,
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={
            ControlPlaneError: _control_plane_error,
            FleetStoreError: _store_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
    )


async def _control_plane_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ControlPlaneError)
    return error_response(exc.status, exc.message, param=exc.param, code=exc.code,
                          headers=exc.headers)


async def _store_error(request: Request, exc: Exception) -> Response:
    log.warning("fleet store unavailable: %s", exc)
    return error_response(503, "the fleet store is unavailable; retry later",
                          code="store_unavailable", headers={"retry-after": "1"})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: f"no such endpoint: {request.method} {request.url.path}",
               405: f"method {request.method} not allowed on {request.url.path}"}.get(
        exc.status_code, str(exc.detail))
    return error_response(exc.status_code, message,
                          headers=dict(exc.headers) if exc.headers else None)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal error in the control plane")
