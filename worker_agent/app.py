"""The agent's HTTP surface: `/healthz`, `/readyz`, `/metrics` (Starlette, thin handlers).

    GET /healthz   200 {"status": "ok"} while the process answers
    GET /readyz    200 {"ready": true, ...} only when the engine is healthy (checked now), lists
                   MODEL_ID, passed its warm-up, and the worker is not draining; otherwise 503
                   {"ready": false, "reason": "...", ...}. Enrollment is not a condition: the
                   control plane ANDs this probe with heartbeat freshness itself, and an agent
                   that cannot reach the control plane still serves traffic it is sent.
    GET /metrics   Prometheus text: flotilla_agent_* (state, derived engine signals, GPUs)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker_agent.agent import Agent
from worker_agent.settings import AgentSettings


def create_app(settings: AgentSettings, *, agent: Agent | None = None) -> Starlette:
    agent = agent if agent is not None else Agent(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with agent:
            yield {"agent": agent}

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        current: Agent = request.state.agent
        ready, reason = await current.readiness(live=True)
        body = {"ready": ready, "reason": reason, "status": current.status(),
                "model_id": settings.model_id, "engine": settings.engine}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        current: Agent = request.state.agent
        return Response(generate_latest(current.metrics.registry),
                        media_type=CONTENT_TYPE_LATEST)

    app = Starlette(routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ], lifespan=lifespan)
    app.state.agent = agent
    return app
