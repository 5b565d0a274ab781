"""Admin API for pools (SPEC §5).

    PUT    /v1/pools/{name}          Pool body -> 201 (created) / 200 (replaced) the pool
    GET    /v1/pools                 {"data": [pool + "status"]}
    GET    /v1/pools/{name}          pool + "status"
    DELETE /v1/pools/{name}          {"id", "object": "pool", "deleted": true}; its capacity is
                                     drained then released; 409 while a route names it
    POST   /v1/pools/{name}/scale    {"replicas": n} -> the pool, desired count set by hand

A pool as shown: its spec, `name`, `object: "pool"` and `status` (desired / ready / starting
replicas, queue depth, TTFT p95, cost per hour, last autoscaler decision).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import admin
from control_plane.catalog import pool_doc
from control_plane.errors import BadRequest, NotFound
from control_plane.http import json_response, read_model
from fleet.catalog import NAME_PATTERN, Pool
from fleet.validation import rule

_NAME = re.compile(NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class ScaleRequest:
    replicas: int = rule(ge=0, le=1000)


def pool_name(request: Request) -> str:
    name = request.path_params["name"]
    if not _NAME.fullmatch(name):
        raise BadRequest(f"invalid pool name {name[:64]!r}: letters, digits, '_', '.', '-' "
                         "(1-64, starting with a letter or digit)", param="name")
    return name


def pool_view(cp: Any, name: str, pool: Pool) -> dict[str, Any]:
    return {"name": name, "object": "pool", **pool_doc(pool),
            "status": cp.capacity.status(name)}


@admin
async def put_pool(request: Request) -> Response:
    cp = request.state.cp
    name = pool_name(request)
    pool = await read_model(request, Pool, cp.settings.max_body_bytes)
    previous = await cp.catalog.put_pool(name, pool)
    cp.capacity.pool_changed(name)
    kind = "pool.created" if previous is None else "pool.updated"
    cp.events.emit(kind, f"pool {name} ({pool.model_id}, {pool.provider}, "
                         f"{pool.min_replicas}..{pool.max_replicas} replicas) "
                         f"{'created' if previous is None else 'updated'}",
                   subject=name, data=pool_doc(pool))
    return json_response(pool_view(cp, name, pool), 201 if previous is None else 200)


@admin
async def list_pools(request: Request) -> Response:
    cp = request.state.cp
    data = [pool_view(cp, name, pool) for name, pool in cp.catalog.pools().items()]
    return json_response({"object": "list", "data": data})


@admin
async def get_pool(request: Request) -> Response:
    cp = request.state.cp
    name = pool_name(request)
    pool = cp.catalog.pool(name)
    if pool is None:
        raise NotFound(f"no pool {name}", param="name")
    return json_response(pool_view(cp, name, pool))


@admin
async def delete_pool(request: Request) -> Response:
    cp = request.state.cp
    name = pool_name(request)
    pool = await cp.catalog.delete_pool(name)
    if pool is None:
        raise NotFound(f"no pool {name}", param="name")
    released = cp.capacity.pool_deleted(name)
    cp.events.emit("pool.deleted", f"pool {name} deleted; releasing {released} instance(s)",
                   subject=name, data={"instances": released})
    return json_response({"id": name, "object": "pool", "deleted": True,
                          "releasing_instances": released})


@admin
async def scale_pool(request: Request) -> Response:
    cp = request.state.cp
    name = pool_name(request)
    body = await read_model(request, ScaleRequest, cp.settings.max_body_bytes)
    pool = cp.catalog.pool(name)
    if pool is None:
        raise NotFound(f"no pool {name}", param="name")
    await cp.capacity.scale(name, body.replicas)
    return json_response(pool_view(cp, name, pool))


ROUTES = [
    Route("/v1/pools", list_pools, methods=["GET"]),
    Route("/v1/pools/{name}/scale", scale_pool, methods=["POST"]),
    Route("/v1/pools/{name}", put_pool, methods=["PUT"]),
    Route("/v1/pools/{name}", get_pool, methods=["GET"]),
    Route("/v1/pools/{name}", delete_pool, methods=["DELETE"]),
]
