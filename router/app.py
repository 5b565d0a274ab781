"""The router's Starlette app: lifespan, endpoints (thin), OpenAI-shaped 404/405.

    POST /v1/chat/completions, /v1/completions, /v1/embeddings   proxy.py (raw ASGI)
    GET  /v1/models        models a client may ask for (filtered by the key's allow-list)
    GET  /healthz          the process answers
    GET  /readyz           200 while the fleet snapshot is fresh (store reachable, or unreachable
                           for less than max_snapshot_age_s); says which
    GET  /metrics          Prometheus text

`create_app(settings, store=None)`: with no store the app opens its own from `REDIS_URL`; an
injected store (`flotilla up`, tests) is used and left open.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fleet.errors import error_response
from fleet.store import FleetStore
from router.edge import EdgeMiddleware
from router.errors import RouterError
from router.inbound import ENDPOINTS
from router.proxy import ProxyEndpoint, header
from router.runtime import RouterRuntime
from router.settings import RouterSettings


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def create_app(settings: RouterSettings, *, store: FleetStore | None = None,
               registry: CollectorRegistry | None = None) -> Starlette:
    rt = RouterRuntime(settings, store, registry=registry)
    proxy = ProxyEndpoint(rt)

    async def models(request: Request) -> Response:
        principal = None
        if rt.keys is not None:
            try:
                principal = await rt.keys.authenticate(header(request.scope, b"authorization"))
            except RouterError as exc:
                return Response(exc.body(), status_code=exc.status, headers=exc.headers,
                                media_type="application/json")
        snapshot = rt.keeper.snapshot()
        names = rt.planner.models(snapshot)
        if principal is not None:
            names = [n for n in names if principal.may_use(n)]
        created = int(rt.reporter.started_at)
        return _json({"object": "list", "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "flotilla"}
            for name in names]})

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok", "router_id": settings.router_id})

    async def readyz(request: Request) -> Response:
        keeper = rt.keeper
        age = keeper.age()
        snapshot = keeper.snapshot()
        ready = keeper.fresh()
        body = {
            "status": "ready" if ready else "not_ready",
            "router_id": settings.router_id,
            "store": "ok" if keeper.store_ok else "unreachable",
            "store_error": keeper.last_error,
            "epoch_missing": keeper.epoch_missing,
            "snapshot_age_s": None if age is None else round(age, 3),
            "max_snapshot_age_s": settings.max_snapshot_age_s,
            "serving_from_snapshot": not keeper.store_ok or keeper.epoch_missing,
            "models": len(snapshot.by_model),
            "workers": sum(len(v) for v in snapshot.by_model.values()),
            "routes": len(snapshot.routes),
            "peers": len(rt.reporter.peers),
            "inflight_shared": rt.inflight.shared,
        }
        if age is None:
            body["reason"] = "no fleet snapshot yet: the store has not answered"
        elif not ready:
            body["reason"] = f"fleet snapshot is {age:.0f} s old (store unreachable)"
        return _json(body, 200 if ready else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(404, f"Unknown path {request.url.path}.", code="unknown_url")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        allow = exc.headers.get("Allow", "") if isinstance(exc, HTTPException) and exc.headers \
            else ""
        return error_response(405, f"Method {request.method} is not allowed on "
                                   f"{request.url.path}.", headers={"allow": allow} if allow
                              else None)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            await rt.start(stack)
            yield {"runtime": rt}

    routes = [Route(path, proxy, methods=["POST"]) for path in ENDPOINTS]
    routes += [Route("/v1/models", models, methods=["GET"]),
               Route("/healthz", healthz, methods=["GET"]),
               Route("/readyz", readyz, methods=["GET"]),
               Route("/metrics", metrics, methods=["GET"])]
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(EdgeMiddleware,
                                           hot={path: proxy for path in ENDPOINTS})],
                    exception_handlers={404: not_found, 405: not_allowed})
    app.state.runtime = rt
    app.state.started_at = time.time()
    return app
