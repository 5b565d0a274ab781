"""Admin API for routes (SPEC §5): which pools and upstream APIs serve a model, in order.

    PUT    /v1/routes/{model}   {"targets": [{"pool": name} | {"upstream", "api_key_env",
                                 "model"}], "stream_resume"?} -> 201 / 200 the route
    GET    /v1/routes           {"data": [route]}
    GET    /v1/routes/{model}   route
    DELETE /v1/routes/{model}   {"id", "object": "route", "deleted": true}

Model ids may contain '/' (`org/model`). Pool targets must name existing pools (422
`unknown_pool`); upstream keys are named by environment variable, never stored.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as Endpoint

from control_plane.api.auth import admin
from control_plane.catalog import route_doc
from control_plane.errors import BadRequest, NotFound
from control_plane.http import json_response, read_model
from fleet.catalog import Route
from fleet.schemas import ID_PATTERN

_MODEL = re.compile(ID_PATTERN)


def model_name(request: Request) -> str:
    model = request.path_params["model"]
    if not _MODEL.fullmatch(model):
        raise BadRequest(f"invalid model id {model[:64]!r}", param="model")
    return model


def route_view(model: str, route: Route) -> dict[str, Any]:
    return {"model": model, "object": "route", **route_doc(route)}


@admin
async def put_route(request: Request) -> Response:
    cp = request.state.cp
    model = model_name(request)
    route = await read_model(request, Route, cp.settings.max_body_bytes)
    previous = await cp.catalog.put_route(model, route)
    verb = "created" if previous is None else "updated"
    cp.events.emit(f"route.{verb}", f"route {model} {verb}: {len(route.targets)} target(s)",
                   subject=model, data=route_doc(route))
    return json_response(route_view(model, route), 201 if previous is None else 200)


@admin
async def list_routes(request: Request) -> Response:
    cp = request.state.cp
    data = [route_view(model, route) for model, route in cp.catalog.routes().items()]
    return json_response({"object": "list", "data": data})


@admin
async def get_route(request: Request) -> Response:
    cp = request.state.cp
    model = model_name(request)
    route = cp.catalog.route(model)
    if route is None:
        raise NotFound(f"no route for model {model}", param="model")
    return json_response(route_view(model, route))


@admin
async def delete_route(request: Request) -> Response:
    cp = request.state.cp
    model = model_name(request)
    route = await cp.catalog.delete_route(model)
    if route is None:
        raise NotFound(f"no route for model {model}", param="model")
    cp.events.emit("route.deleted", f"route {model} deleted", subject=model)
    return json_response({"id": model, "object": "route", "deleted": True})


ROUTES = [
    Endpoint("/v1/routes", list_routes, methods=["GET"]),
    Endpoint("/v1/routes/{model:path}", put_route, methods=["PUT"]),
    Endpoint("/v1/routes/{model:path}", get_route, methods=["GET"]),
    Endpoint("/v1/routes/{model:path}", delete_route, methods=["DELETE"]),
]
