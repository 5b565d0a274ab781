"""Admin API for router API keys (SPEC §5).

    POST   /v1/keys        {"name", "models": [..]|null, "rpm": int|null, "tpm": int|null}
                           -> 201 {"id", "key", "name", ...}   the raw key appears this once
    GET    /v1/keys        {"data": [{"id", "name", "prefix", "models", "rpm", "tpm", ...}]}
    DELETE /v1/keys/{id}   {"id", "object": "api_key", "deleted": true}
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import admin
from control_plane.errors import NotFound
from control_plane.http import json_response, read_model
from fleet.catalog import CreateKeyRequest


@admin
async def create_key(request: Request) -> Response:
    cp = request.state.cp
    body = await read_model(request, CreateKeyRequest, cp.settings.max_body_bytes)
    record, raw = await cp.keys.create(body)
    cp.events.emit("key.created", f"api key {record.id} ({record.name}) created",
                   subject=record.id, data={"name": record.name, "models": record.models})
    return json_response({**record.public(), "key": raw}, 201,
                         headers={"cache-control": "no-store"})


@admin
async def list_keys(request: Request) -> Response:
    cp = request.state.cp
    return json_response({"object": "list", "data": [r.public() for r in cp.keys.records()]})


@admin
async def delete_key(request: Request) -> Response:
    cp = request.state.cp
    key_id = request.path_params["key_id"]
    record = await cp.keys.delete(key_id)
    if record is None:
        raise NotFound(f"no api key {key_id}", param="key_id")
    cp.events.emit("key.deleted", f"api key {record.id} ({record.name}) deleted",
                   subject=record.id)
    return json_response({"id": record.id, "object": "api_key", "deleted": True})


ROUTES = [
    Route("/v1/keys", create_key, methods=["POST"]),
    Route("/v1/keys", list_keys, methods=["GET"]),
    Route("/v1/keys/{key_id}", delete_key, methods=["DELETE"]),
]
