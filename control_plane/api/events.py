"""Admin API over the timeline: `GET /v1/events?limit=N` (newest first, 1..1000, default 100)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import admin
from control_plane.errors import BadRequest
from control_plane.http import json_response

MAX_LIMIT = 1000


@admin
async def list_events(request: Request) -> Response:
    cp = request.state.cp
    raw = request.query_params.get("limit", "100")
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest(f"limit must be an integer, got {raw[:32]!r}", param="limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}, got {limit}", param="limit")
    events = await cp.store.recent_events(limit)
    data = [{"time": e.ts, "ts": e.ts, "kind": e.kind, "message": e.message,
             "severity": e.severity, "subject": e.subject, "data": e.data} for e in events]
    return json_response({"object": "list", "data": data})


ROUTES = [Route("/v1/events", list_events, methods=["GET"])]
