"""`POST /v1/estimate`: a job's time and cost per instance type vs a paid API (see
control_plane/estimates.py for the inputs and where each comes from).

    {"tokens": int, "output_tokens"?: int, "pool"?: str, "model_id"?: str,
     "instance_types"?: [..], "replicas"?: int,
     "upstream_price_per_mtok"?: number | {"input", "output"}, "upstream"?: str}
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import admin
from control_plane.errors import NotFound
from control_plane.estimates import EstimateRequest, PriceLookup, build_estimate
from control_plane.http import json_response, read_model
from control_plane.throughput import Measurement
from fleet.catalog import Pool

log = logging.getLogger("flotilla.control_plane.estimate")

PRICE_TIMEOUT_S = 5.0  # a provider's price lookup (AWS: DescribeSpotPriceHistory, cached)


@admin
async def estimate(request: Request) -> Response:
    cp = request.state.cp
    body = await read_model(request, EstimateRequest, cp.settings.max_body_bytes)
    table = cp.estimate_table
    model_id = body.model_id
    pool: Pool | None = None
    if body.pool is not None:
        pool = cp.catalog.pool(body.pool)
        if pool is None:
            raise NotFound(f"no pool {body.pool}", param="pool", code="pool_not_found")
        model_id = model_id or pool.model_id
    types = list(body.instance_types or (pool.instance_types if pool else None)
                 or table.instance_types(model_id))
    prices = [_launch_prices(cp, body.pool), await _provider_prices(cp, pool, types),
              _table_prices(table.prices)]
    now = cp.clock()

    def measured(instance_type: str) -> Measurement | None:
        if body.pool is None:
            return None
        return cp.throughput.best(body.pool, instance_type, now)

    result = build_estimate(body, table, model_id=model_id, instance_types=types,
                            prices=prices, measured=measured)
    return json_response(result)


def _launch_prices(cp: Any, pool: str | None) -> PriceLookup:
    """What the pool's running instances of a type were launched at."""
    launched: dict[str, float] = {}
    if pool is not None:
        for instance in cp.capacity.pool_view(pool).instances:
            if instance.price_per_hour is not None and instance.state != "terminated":
                launched.setdefault(instance.instance_type, instance.price_per_hour)

    def lookup(instance_type: str) -> tuple[float, str] | None:
        price = launched.get(instance_type)
        return None if price is None else (price, "running instance")
    return lookup


async def _provider_prices(cp: Any, pool: Pool | None, types: list[str]) -> PriceLookup:
    """The pool's provider's current price per type (Spot price for AWS, configured for local)."""
    provider = cp.capacity.providers.get(pool.provider) if pool is not None else None
    found: dict[str, float] = {}
    if provider is not None:
        async def one(instance_type: str) -> None:
            try:
                async with asyncio.timeout(PRICE_TIMEOUT_S):
                    price = await provider.price(instance_type)
            except Exception as exc:  # a price we cannot get is unknown, not an error
                log.info("price of %s unavailable: %s", instance_type, exc)
                return
            if price is not None:
                found[instance_type] = price
        await asyncio.gather(*(one(t) for t in types))

    def lookup(instance_type: str) -> tuple[float, str] | None:
        price = found.get(instance_type)
        return None if price is None else (price, f"provider {pool.provider if pool else ''}")
    return lookup


def _table_prices(prices: dict[str, float]) -> PriceLookup:
    def lookup(instance_type: str) -> tuple[float, str] | None:
        price = prices.get(instance_type)
        return None if price is None else (price, "estimate table")
    return lookup


ROUTES = [Route("/v1/estimate", estimate, methods=["POST"])]
