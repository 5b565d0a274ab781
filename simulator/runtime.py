"""What every endpoint of one simulator process shares: settings, clock, engine, faults, stats."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from simulator.engine import Engine, RequestStats
from simulator.faults import FaultConfig, FaultInjector
from simulator.latency import LatencyModel
from simulator.settings import SimulatorSettings

log = logging.getLogger("simulator")

# Exit status of a simulated crash: a plain failure, as when a CUDA error kills the engine.
CRASH_EXIT_CODE = 1


@dataclass
class Runtime:
    settings: SimulatorSettings
    clock: Callable[[], float]
    started: float
    faults: FaultInjector
    engine: Engine
    stats: RequestStats

    @classmethod
    def build(
        cls,
        settings: SimulatorSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> Runtime:
        faults = FaultInjector(
            FaultConfig(
                error_rate=settings.error_rate,
                hang_rate=settings.hang_rate,
                slow_factor=settings.slow_factor,
                crash_after=settings.crash_after,
                abort_stream_after_tokens=settings.abort_stream_after_tokens,
            ),
            settings.seed,
        )
        model = LatencyModel(
            ttft_s=settings.ttft_ms / 1000.0,
            itl_s=settings.itl_ms / 1000.0,
            max_num_seqs=settings.batch_size,
            batch_slowdown=settings.batch_slowdown,
            prefill_s_per_token=settings.prefill_ms_per_token / 1000.0,
            jitter=settings.jitter,
        )
        engine = Engine(model, faults, seed=settings.seed, clock=clock, sleep=sleep)
        return cls(settings, clock, clock(), faults, engine, RequestStats())

    def loaded(self) -> bool:
        return self.clock() - self.started >= self.settings.load_s

    def begin_request(self) -> None:
        """Count an inference request; die here if the crash fault says this is the one."""
        self.stats.received += 1
        if self.faults.must_crash():
            log.critical("simulated crash after %s inference requests: exiting now",
                         self.faults.config.crash_after)
            logging.shutdown()
            os._exit(CRASH_EXIT_CODE)
