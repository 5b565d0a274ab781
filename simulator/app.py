"""The simulator's request handler: the kind's routes plus the shared metrics and admin routes.

    GET    /metrics         Prometheus text, the imitated engine's metric names
    GET    /admin/faults    the faults in force
    PUT    /admin/faults    change some of them: {"error_rate": 0.5} leaves the others as they are
    DELETE /admin/faults    back to the faults given at start
    GET    /admin/stats     {received, completed, errors, cancelled, aborted, hanging,
                             running, waiting}

The admin routes have no authentication: the simulator is a test double, bound to loopback by
default; do not expose it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Protocol

import orjson

from fleet.logs import request_id_var
from simulator.errors import RequestError, vllm_error_body
from simulator.httpserver import Exchange, Handler, Request
from simulator.metrics import CONTENT_TYPE, Registry
from simulator.runtime import Runtime
from simulator.settings import SimulatorSettings

log = logging.getLogger("simulator")
access_log = logging.getLogger("simulator.access")
# Paths whose requests the access log leaves out: scrapes and probes, many per second.
_QUIET_PATHS = frozenset({"/metrics", "/health", "/admin/stats"})

Route = Handler


class EngineKind(Protocol):
    """One imitated engine: its routes and its metrics."""

    routes: dict[tuple[str, str], Route]
    registry: Registry


class SimulatorApp:
    def __init__(self, settings: SimulatorSettings, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.settings = settings
        self.runtime = Runtime.build(settings, clock=clock, sleep=sleep)
        self.kind = _make_kind(settings.kind, self.runtime)
        routes: dict[tuple[str, str], Route] = {
            ("GET", "/metrics"): self.metrics,
            ("GET", "/admin/faults"): self.get_faults,
            ("PUT", "/admin/faults"): self.put_faults,
            ("DELETE", "/admin/faults"): self.reset_faults,
            ("GET", "/admin/stats"): self.get_stats,
            **self.kind.routes,
        }
        self._routes: dict[str, dict[str, Route]] = {}
        for (method, path), route in routes.items():
            self._routes.setdefault(path, {})[method] = route

    async def __call__(self, request: Request, exchange: Exchange) -> None:
        methods = self._routes.get(request.path)
        if methods is None:
            exchange.send(404, b'{"detail":"Not Found"}')
            return
        route = methods.get(request.method)
        if route is None:
            allow = ", ".join(sorted(methods)).encode()
            exchange.send(405, b'{"detail":"Method Not Allowed"}', headers=((b"allow", allow),))
            return
        if not self.settings.access_log or request.path in _QUIET_PATHS:
            await route(request, exchange)
            return
        # Like vLLM, which takes the caller's X-Request-Id as the request's id: the router's id
        # then appears in both services' logs. Each request runs in its own task, so the
        # context variable is this request's alone.
        request_id_var.set(request.headers.get("x-request-id") or None)
        started = time.perf_counter()
        try:
            await route(request, exchange)
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000.0, 3)
            access_log.info("%s %s %d %.1f ms", request.method, request.path, exchange.status,
                            duration_ms, extra={"method": request.method, "path": request.path,
                                                "status": exchange.status,
                                                "duration_ms": duration_ms})

    async def metrics(self, request: Request, exchange: Exchange) -> None:
        exchange.send(200, self.kind.registry.render(), content_type=CONTENT_TYPE)

    async def get_faults(self, request: Request, exchange: Exchange) -> None:
        exchange.send(200, orjson.dumps(self.runtime.faults.config.to_json()))

    async def put_faults(self, request: Request, exchange: Exchange) -> None:
        try:
            try:
                patch = orjson.loads(request.body)
            except orjson.JSONDecodeError as exc:
                raise RequestError(400, f"Invalid JSON body: {exc}") from None
            config = self.runtime.faults.update(patch)
        except RequestError as error:
            exchange.send(error.status, vllm_error_body(error))
            return
        log.info("faults changed: %s", config.to_json())
        exchange.send(200, orjson.dumps(config.to_json()))

    async def reset_faults(self, request: Request, exchange: Exchange) -> None:
        config = self.runtime.faults.reset()
        log.info("faults reset: %s", config.to_json())
        exchange.send(200, orjson.dumps(config.to_json()))

    async def get_stats(self, request: Request, exchange: Exchange) -> None:
        engine = self.runtime.engine
        stats = {**asdict(self.runtime.stats), "running": engine.running,
                 "waiting": engine.waiting}
        exchange.send(200, orjson.dumps(stats))


def _make_kind(kind: str, runtime: Runtime) -> EngineKind:
    # Imported here so that each kind pulls only what it needs (numpy is TEI's alone).
    if kind == "vllm":
        from simulator.vllm_app import VllmKind

        return VllmKind(runtime)
    if kind == "tei":
        from simulator.tei_app import TeiKind

        return TeiKind(runtime)
    raise ValueError(f"unknown simulator kind {kind!r}")
