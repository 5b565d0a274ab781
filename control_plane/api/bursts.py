"""Admin API for bursts (SPEC §5, INTERFACES.md).

    POST /v1/bursts               {"pool", "replicas", "duration_s"|null, "idle_timeout_s"|null,
                                   "budget_usd"|null} -> 201 the burst
    GET  /v1/bursts               {"data": [burst, ...]} newest first (?pool=, ?active=true)
    GET  /v1/bursts/{id}          the burst: state, progress, cost_usd, events, ...
    POST /v1/bursts/{id}/cancel   the burst, ended (`completed`, end_reason `cancelled`)

Errors: 400 malformed body (unknown field, wrong type, out of range), 404 unknown pool or burst,
409 the pool already has a running burst, 422 no duration_s nor idle_timeout_s, or more replicas
than the pool's max_replicas.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import admin
from control_plane.bursts.records import BurstRequest
from control_plane.errors import BadRequest, NotFound
from control_plane.http import json_response, read_model


@admin
async def create_burst(request: Request) -> Response:
    cp = request.state.cp
    body = await read_model(request, BurstRequest, cp.settings.max_body_bytes)
    record = await cp.bursts.create(body)
    return json_response(record.view(cp.clock()), 201)


@admin
async def list_bursts(request: Request) -> Response:
    cp = request.state.cp
    pool = request.query_params.get("pool")
    active = request.query_params.get("active")
    if active not in (None, "true", "false"):
        raise BadRequest("active must be true or false", param="active")
    now = cp.clock()
    data = [r.view(now) for r in cp.bursts.records()
            if (pool is None or r.pool == pool)
            and (active is None or r.active == (active == "true"))]
    return json_response({"object": "list", "data": data})


@admin
async def get_burst(request: Request) -> Response:
    cp = request.state.cp
    burst_id = request.path_params["burst_id"]
    record = cp.bursts.get(burst_id)
    if record is None:
        raise NotFound(f"no burst {burst_id[:64]}", param="burst_id")
    return json_response(record.view(cp.clock()))


@admin
async def cancel_burst(request: Request) -> Response:
    cp = request.state.cp
    record = await cp.bursts.cancel(request.path_params["burst_id"])
    return json_response(record.view(cp.clock()))


ROUTES = [
    Route("/v1/bursts", create_burst, methods=["POST"]),
    Route("/v1/bursts", list_bursts, methods=["GET"]),
    Route("/v1/bursts/{burst_id}", get_burst, methods=["GET"]),
    Route("/v1/bursts/{burst_id}/cancel", cancel_burst, methods=["POST"]),
]
