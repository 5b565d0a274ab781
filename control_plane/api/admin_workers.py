"""Admin API over the fleet: workers, their drain, and worker tokens.

    GET    /v1/workers                          {"data": [worker, ...]}  (?model_id=, ?pool=)
    GET    /v1/workers/{worker_id}              worker
    POST   /v1/workers/{worker_id}/drain        worker (now draining; its next heartbeat says so)
    GET    /v1/worker-tokens                    {"data": [{instance_id, state, issued_at, ..}]}
    DELETE /v1/worker-tokens/{instance_id}      revoke: token refused, workers removed, locked
    POST   /v1/worker-tokens/{instance_id}/readmit   a revoked instance may bootstrap again

A worker is shown with its facts (`WorkerRecord`) plus `ready`, `reason`, `draining` and
`heartbeat_age_s`; the lists and single reads add `circuits` ({router id: breaker state}, from the
routers' reports: control_plane/circuits.py); token hashes are never shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import admin
from control_plane.circuits import read_circuits
from control_plane.errors import NotFound
from control_plane.http import json_response, read_model
from fleet.validation import rule


@dataclass(frozen=True, slots=True)
class DrainRequest:
    reason: str = rule("control_plane", pattern=r"[a-z][a-z0-9_]{0,39}")


@admin
async def list_workers(request: Request) -> Response:
    cp = request.state.cp
    now = cp.clock()
    model_id = request.query_params.get("model_id")
    pool = request.query_params.get("pool")
    circuits = await read_circuits(cp.store, now)
    data = [{**cp.registry.view(record, now), "circuits": circuits.get(record.worker_id, {})}
            for record in cp.registry.records()
            if (model_id is None or record.model_id == model_id)
            and (pool is None or record.pool == pool)]
    return json_response({"object": "list", "data": data})


@admin
async def get_worker(request: Request) -> Response:
    cp = request.state.cp
    worker_id = request.path_params["worker_id"]
    record = cp.registry.get(worker_id)
    if record is None:
        raise NotFound(f"unknown worker {worker_id}", param="worker_id")
    now = cp.clock()
    circuits = await read_circuits(cp.store, now)
    return json_response({**cp.registry.view(record, now),
                          "circuits": circuits.get(worker_id, {})})


@admin
async def drain_worker(request: Request) -> Response:
    cp = request.state.cp
    body = await read_model(request, DrainRequest, cp.settings.max_body_bytes, empty={})
    now = cp.clock()
    record = cp.registry.request_drain(request.path_params["worker_id"], now, body.reason)
    return json_response(cp.registry.view(record, now))


@admin
async def list_tokens(request: Request) -> Response:
    cp = request.state.cp
    return json_response({"object": "list", "data": cp.tokens.list_public()})


@admin
async def revoke_token(request: Request) -> Response:
    cp = request.state.cp
    instance_id = request.path_params["instance_id"]
    now = cp.clock()
    if not await cp.tokens.revoke(instance_id, now):
        raise NotFound(f"no worker token for instance {instance_id}", param="instance_id")
    removed = cp.registry.remove_instance(instance_id, "its worker token was revoked", now)
    cp.events.emit("worker_token.revoked", f"worker token of instance {instance_id} revoked",
                   severity="warning", subject=instance_id, now=now,
                   data={"workers_removed": removed})
    return json_response({**cp.tokens.public(instance_id, cp.tokens.docs.get(instance_id)),
                          "workers_removed": removed})


@admin
async def readmit(request: Request) -> Response:
    cp = request.state.cp
    instance_id = request.path_params["instance_id"]
    if not await cp.tokens.readmit(instance_id):
        raise NotFound(f"no worker token for instance {instance_id}", param="instance_id")
    cp.events.emit("worker_token.readmitted",
                   f"instance {instance_id} may register for a new worker token",
                   subject=instance_id)
    return json_response(cp.tokens.public(instance_id, cp.tokens.docs.get(instance_id)))


ROUTES = [
    Route("/v1/workers", list_workers, methods=["GET"]),
    Route("/v1/workers/{worker_id:path}/drain", drain_worker, methods=["POST"]),
    Route("/v1/workers/{worker_id:path}", get_worker, methods=["GET"]),
    Route("/v1/worker-tokens", list_tokens, methods=["GET"]),
    Route("/v1/worker-tokens/{instance_id:path}/readmit", readmit, methods=["POST"]),
    Route("/v1/worker-tokens/{instance_id:path}", revoke_token, methods=["DELETE"]),
]
