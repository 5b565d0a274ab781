"""The engine monitor: what the agent knows about its engine, refreshed every poll.

Each poll: health check; once healthy, the model listing until `MODEL_ID` appears; once listed, a
single warm-up request; then a metrics scrape added to the signals window (and a GPU reading).
A failed health check forgets the listing and the warm-up, because an engine that went away and
came back may be a new process (a supervisor restart) that has to prove itself again.

Readiness (what /readyz and the heartbeat's status use) is derived from these facts:

    engine healthy?  ── no ──► "engine unhealthy: <why>"
    MODEL_ID listed? ── no ──► "engine does not list model M (serves: ..)" / "model listing pending"
    warm-up passed?  ── no ──► "warm-up failed: <why>" / "warm-up pending"
    otherwise ready (draining is checked by the caller, which owns that state)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from worker_agent.engines.base import EngineAdapter, EngineSample
from worker_agent.errors import EngineError
from worker_agent.gpu import GpuReading, Gpus
from worker_agent.metrics import AgentMetrics
from worker_agent.signals import EngineSignals, SignalWindow

log = logging.getLogger(__name__)


@dataclass
class EngineState:
    healthy: bool = False
    problem: str | None = "engine not checked yet"
    models: tuple[str, ...] | None = None
    listed: bool = False
    warmed_up: bool = False
    warmup_error: str | None = None
    scrape_ok: bool = False


class EngineMonitor:
    def __init__(
        self,
        adapter: EngineAdapter,
        *,
        window: SignalWindow,
        metrics: AgentMetrics,
        gpus: Gpus | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.adapter = adapter
        self.model_id = adapter.model_id
        self.window = window
        self.metrics = metrics
        self.gpus = gpus
        self.clock = clock
        self.state = EngineState()
        self.gpu_readings: list[GpuReading] = []

    # -- facts -------------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        s = self.state
        if not s.healthy:
            return False, f"engine unhealthy: {s.problem}" if s.problem else "engine unhealthy"
        if not s.listed:
            if s.models is None:
                return False, "model listing pending"
            served = ", ".join(s.models) or "nothing"
            return False, f"engine does not list model {self.model_id} (serves: {served})"
        if not s.warmed_up:
            if s.warmup_error:
                return False, f"warm-up failed: {s.warmup_error}"
            return False, "warm-up pending"
        return True, "ready"

    @property
    def signals(self) -> EngineSignals:
        if not self.state.healthy or not self.state.scrape_ok:
            return EngineSignals()  # stale numbers would mislead the autoscaler and the router
        return self.window.signals()

    def forget(self) -> None:
        """The engine process was replaced: it must prove health, listing and warm-up again."""
        self.state = EngineState(healthy=False, problem="engine restarted")

    # -- polling -----------------------------------------------------------------------------

    async def run(self, interval_s: float) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:
                log.exception("engine poll failed unexpectedly")
            await asyncio.sleep(interval_s)

    async def poll_once(self) -> None:
        if not await self.check_health():
            self.metrics.engine_polls.labels("unhealthy").inc()
            return
        if not self.state.listed:
            await self._list_models()
        if self.state.listed and not self.state.warmed_up:
            await self._warm_up()
        await self._scrape()
        if self.gpus is not None:
            self.gpu_readings = await asyncio.to_thread(self.gpus.sample)

    async def check_health(self) -> bool:
        """Ask the engine now (also what /readyz does); update the facts; True if healthy."""
        try:
            await self.adapter.check_health()
        except EngineError as exc:
            if self.state.healthy or self.state.problem != exc.reason:
                log.warning("engine unhealthy: %s", exc.reason)
            self.state = EngineState(healthy=False, problem=exc.reason)
            return False
        if not self.state.healthy:
            log.info("engine healthy at %s", self.adapter.base_url)
        self.state.healthy = True
        self.state.problem = None
        return True

    async def _list_models(self) -> None:
        try:
            models = tuple(await self.adapter.list_models())
        except EngineError as exc:
            log.warning("engine model listing failed: %s", exc.reason)
            return
        if models != self.state.models and self.model_id not in models:
            log.warning("engine serves %s, not MODEL_ID %s", ", ".join(models) or "nothing",
                        self.model_id)
        self.state.models = models
        self.state.listed = self.model_id in models

    async def _warm_up(self) -> None:
        started = time.monotonic()
        try:
            await self.adapter.warm_up()
        except EngineError as exc:
            if exc.reason != self.state.warmup_error:
                log.warning("engine warm-up failed: %s", exc.reason)
            self.state.warmup_error = exc.reason
            return
        self.state.warmed_up = True
        self.state.warmup_error = None
        log.info("engine warm-up passed in %.2f s; model %s is ready", time.monotonic() - started,
                 self.model_id)

    async def _scrape(self) -> EngineSample | None:
        try:
            sample = await self.adapter.scrape()
        except EngineError as exc:
            if self.state.scrape_ok:
                log.warning("engine metrics scrape failed: %s", exc.reason)
            self.state.scrape_ok = False
            self.metrics.engine_polls.labels("scrape_failed").inc()
            return None
        self.state.scrape_ok = True
        self.window.add(self.clock(), sample)
        self.metrics.engine_polls.labels("ok").inc()
        return sample

    async def in_flight(self) -> int | None:
        """Requests the engine holds right now, from a fresh scrape: 0 when the engine is down
        (nothing it holds can complete any more), None when its metrics cannot tell."""
        sample = await self._scrape()
        if sample is None:
            return 0 if not await self.check_health() else None
        if sample.running is None and sample.waiting is None:
            return None
        return round((sample.running or 0) + (sample.waiting or 0))
