"""The worker API: what agents call (SPEC §5). Authenticated by worker tokens (see tokens.py).

    POST /v1/workers/register                 RegisterRequest -> 201/200 RegisterResponse
    POST /v1/workers/{worker_id}/heartbeat    Heartbeat       -> 200 HeartbeatResponse
    POST /v1/workers/{worker_id}/deregister   Deregister      -> 200 {"worker_id", "deregistered"}

Agent messages are parsed with `allow_unknown=True`: a newer agent may send fields this control
plane does not know yet. Worker ids may contain `/` (agents quote them), hence `:path`.
"""

from __future__ import annotations

import dataclasses

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.errors import ControlPlaneError
from control_plane.http import bearer_token, json_response, read_model
from fleet.schemas import Deregister, Heartbeat, RegisterRequest, RegisterResponse

_RESULTS = {400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "unknown_worker",
            409: "conflict", 413: "too_large", 503: "store_down"}


def _result(exc: ControlPlaneError) -> str:
    if exc.code == "url_refused":
        return "url_refused"
    return _RESULTS.get(exc.status, "error")


async def register(request: Request) -> Response:
    cp = request.state.cp
    try:
        body = await read_model(request, RegisterRequest, cp.settings.max_body_bytes,
                                allow_unknown=True)
        outcome = await cp.registry.register(body, bearer_token(request), cp.clock())
    except ControlPlaneError as exc:
        cp.metrics.registrations.labels(_result(exc)).inc()
        raise
    await cp.writer.committed(cp.settings.store_write_wait_s)
    cp.metrics.registrations.labels("bootstrapped" if outcome.bootstrap_token else "ok").inc()
    reply = RegisterResponse(worker_id=outcome.worker_id,
                             heartbeat_interval_s=cp.settings.heartbeat_interval_s,
                             bootstrap_token=outcome.bootstrap_token)
    return json_response(dataclasses.asdict(reply), 201 if outcome.created else 200,
                         headers={"cache-control": "no-store"})


async def heartbeat(request: Request) -> Response:
    cp = request.state.cp
    try:
        beat = await read_model(request, Heartbeat, cp.settings.max_body_bytes,
                                allow_unknown=True)
        reply = cp.registry.heartbeat(request.path_params["worker_id"], bearer_token(request),
                                      beat, cp.clock())
    except ControlPlaneError as exc:
        cp.metrics.heartbeats.labels(_result(exc)).inc()
        raise
    await cp.writer.committed(cp.settings.store_write_wait_s)
    cp.metrics.heartbeats.labels("ok").inc()
    return json_response({"heartbeat_interval_s": reply.heartbeat_interval_s,
                          "drain": reply.drain})


async def deregister(request: Request) -> Response:
    cp = request.state.cp
    worker_id = request.path_params["worker_id"]
    try:
        body = await read_model(request, Deregister, cp.settings.max_body_bytes,
                                allow_unknown=True, empty={})
        cp.registry.deregister(worker_id, bearer_token(request), body.reason, cp.clock())
    except ControlPlaneError as exc:
        cp.metrics.deregistrations.labels(_result(exc)).inc()
        raise
    await cp.writer.committed(cp.settings.store_write_wait_s)
    cp.metrics.deregistrations.labels("ok").inc()
    return json_response({"worker_id": worker_id, "deregistered": True})


ROUTES = [
    Route("/v1/workers/register", register, methods=["POST"]),
    Route("/v1/workers/{worker_id:path}/heartbeat", heartbeat, methods=["POST"]),
    Route("/v1/workers/{worker_id:path}/deregister", deregister, methods=["POST"]),
]
