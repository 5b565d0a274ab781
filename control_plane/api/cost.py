"""Admin API for cost: what the fleet's instances have cost so far and cost per hour.

    GET /v1/cost   {"per_hour_usd", "total_usd", "since", "complete",
                    "pools": {name: {"per_hour_usd", "total_usd", "instances",
                                     "unpriced_instances"}}}

Prices are those recorded at launch (Spot price then, or the operator's on-demand figure);
instances of unknown price are listed in `unpriced_instances` and `complete` is false.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import admin
from control_plane.http import json_response


@admin
async def get_cost(request: Request) -> Response:
    return json_response(request.state.cp.costs.summary())


ROUTES = [Route("/v1/cost", get_cost, methods=["GET"])]
