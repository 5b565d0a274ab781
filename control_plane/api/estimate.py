"""`POST /v1/estimate`: a job's time and cost per instance type vs a paid API (see
control_plane/estimates.py for the inputs and where each comes from).

    {"tokens": int, "output_tokens"?: int, "pool"?: str, "model_id"?: str,
     "instance_types"?: [..], "replicas"?: int,
     "upstream_price_per_mtok"?: number | {"input", "output"}, "upstream"?: str}
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import admin
from control_plane.errors import NotFound
from control_plane.estimates import EstimateRequest, build_estimate
from control_plane.http import json_response, read_model


@admin
async def estimate(request: Request) -> Response:
    cp = request.state.cp
    body = await read_model(request, EstimateRequest, cp.settings.max_body_bytes)
    table = cp.estimate_table
    model_id = body.model_id
    pool_types: list[str] = []
    if body.pool is not None:
        pool = cp.catalog.pool(body.pool)
        if pool is None:
            raise NotFound(f"no pool {body.pool}", param="pool", code="pool_not_found")
        model_id = model_id or pool.model_id
        pool_types = list(pool.instance_types)
    types = list(body.instance_types or pool_types or table.instance_types(model_id))
    result = build_estimate(body, table, model_id=model_id, instance_types=types,
                            prices=cp.estimate_prices(body.pool))
    return json_response(result)


ROUTES = [Route("/v1/estimate", estimate, methods=["POST"])]
