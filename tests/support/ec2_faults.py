"""A fault-injecting HTTP proxy between aioboto3 and moto_server, for what moto cannot do.

moto never runs out of capacity and prices every Spot type the same (FACTS). This proxy sits on
its own loopback port, forwards every AWS query-protocol request to moto unchanged, and

- answers RunInstances for chosen instance types (optionally only on the Spot market) with EC2's
  own error document and status, e.g. HTTP 500 `InsufficientInstanceCapacity`;
- answers DescribeSpotPriceHistory with chosen prices per type (every listed zone);
- records every request's action and parameters, so tests can check what was (not) sent.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web

from tests.support.ports import free_port

# Status codes EC2 uses for these errors (InsufficientInstanceCapacity is a "server" error).
ERROR_STATUS = {"InsufficientInstanceCapacity": 500, "InsufficientCapacity": 500}


@dataclass
class Refusal:
    code: str = "InsufficientInstanceCapacity"
    market: str | None = None  # "spot", "on-demand", or None for both


@dataclass
class Ec2FaultProxy:
    upstream: str
    zones: tuple[str, ...] = ("us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d",
                              "us-east-1e", "us-east-1f")
    refuse: dict[str, Refusal] = field(default_factory=dict)  # instance type -> refusal
    spot_prices: dict[str, float] = field(default_factory=dict)  # instance type -> $/h
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def actions(self, name: str) -> list[dict[str, str]]:
        return [params for action, params in self.requests if action == name]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        params = dict(parse_qsl(body.decode(), keep_blank_values=True)) if body else {}
        params.update(request.query)
        action = params.get("Action", "")
        self.requests.append((action, params))
        if action == "RunInstances":
            refusal = self.refuse.get(params.get("InstanceType", ""))
            market = ("spot" if params.get("InstanceMarketOptions.MarketType") == "spot"
                      else "on-demand")
            if refusal is not None and refusal.market in (None, market):
                return _error(refusal.code, f"We currently do not have sufficient "
                              f"{params.get('InstanceType')} capacity in the Availability Zone "
                              "you requested.")
        if action == "DescribeSpotPriceHistory" and self.spot_prices:
            return _spot_prices(params, self.spot_prices, self.zones)
        return await self._forward(request, body)

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length", "transfer-encoding")}
        async with self._session.request(request.method, self.upstream + request.path_qs,
                                         data=body, headers=headers) as upstream:
            payload = await upstream.read()
            keep = {k: v for k, v in upstream.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                         "content-encoding", "server", "date")}
            return web.Response(status=upstream.status, body=payload, headers=keep)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Ec2FaultProxy]:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self.port = free_port()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        try:
            yield self
        finally:
            await runner.cleanup()
            await self._session.close()


def _error(code: str, message: str) -> web.Response:
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
           f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error></Errors>"
           f"<RequestID>{uuid.uuid4()}</RequestID></Response>")
    return web.Response(status=ERROR_STATUS.get(code, 400), text=xml, content_type="text/xml")


def _spot_prices(params: dict[str, str], prices: dict[str, float],
                 zones: tuple[str, ...]) -> web.Response:
    wanted = [v for k, v in params.items() if k.startswith("InstanceType.")]
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    items = []
    for instance_type in wanted:
        if instance_type not in prices:
            continue
        for zone in zones:
            items.append(
                f"<item><instanceType>{escape(instance_type)}</instanceType>"
                f"<productDescription>Linux/UNIX</productDescription>"
                f"<spotPrice>{prices[instance_type]:.6f}</spotPrice>"
                f"<timestamp>{stamp}</timestamp><availabilityZone>{zone}</availabilityZone></item>")
    xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<DescribeSpotPriceHistoryResponse '
           'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
           f"<requestId>{uuid.uuid4()}</requestId><spotPriceHistorySet>{''.join(items)}"
           "</spotPriceHistorySet><nextToken></nextToken></DescribeSpotPriceHistoryResponse>")
    return web.Response(status=200, text=xml, content_type="text/xml")
