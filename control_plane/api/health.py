"""Process health, readiness (the fleet store answers) and Prometheus metrics."""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.http import json_response
from fleet.store import FleetStoreError

READYZ_STORE_TIMEOUT_S = 2.0


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    cp = request.state.cp
    try:
        async with asyncio.timeout(READYZ_STORE_TIMEOUT_S):
            await cp.store.ping()
    except (FleetStoreError, TimeoutError) as exc:
        return json_response({"status": "not_ready", "reason": f"fleet store: {exc}"}, 503)
    return json_response({"status": "ready", "workers": len(cp.registry)})


async def metrics(request: Request) -> Response:
    cp = request.state.cp
    return Response(generate_latest(cp.metrics.registry), media_type=CONTENT_TYPE_LATEST)


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
