"""The running engine: the batch scheduler and latency model of `latency.py` on a real clock.

A request enters with `await engine.enter()` (at once if the batch has room, else after waiting
its turn in FIFO order), pauses with `engine.pause(engine.ttft(...))` and `engine.pause(
engine.itl())`, and always leaves with `engine.leave(seq)` - including when it is cancelled while
waiting, which frees its place in the queue. When the model is instant no pause ever sleeps, so a
request that finds room in the batch runs from start to end without yielding to the loop.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from simulator.faults import FaultInjector
from simulator.latency import BatchScheduler, LatencyModel


@dataclass
class RequestStats:
    """What `/admin/stats` reports; tests use it to prove cancellation and faults."""

    received: int = 0   # inference requests that reached a handler
    completed: int = 0  # answered in full
    errors: int = 0     # answered with an error status (bad input, injected 500, 429, 503)
    cancelled: int = 0  # the client went away before the end (in the queue, hung or streaming)
    aborted: int = 0    # streams cut by the abort_stream_after_tokens fault
    hanging: int = 0    # hung right now


@dataclass(frozen=True)
class Seq:
    seq_id: int
    arrived: float
    queued_s: float


class Engine:
    def __init__(
        self,
        model: LatencyModel,
        faults: FaultInjector,
        *,
        seed: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.model = model
        self.faults = faults
        self.scheduler = BatchScheduler(model.max_num_seqs)
        self.clock = clock
        self._sleep = sleep
        self._ids = itertools.count(1)
        self._waiters: dict[int, asyncio.Future[float]] = {}
        self._rng = random.Random(f"latency:{seed}")

    @property
    def running(self) -> int:
        return self.scheduler.running

    @property
    def waiting(self) -> int:
        return self.scheduler.waiting

    @property
    def kv_cache_usage(self) -> float:
        return self.scheduler.running / self.scheduler.max_num_seqs

    async def enter(self) -> Seq:
        """Join the batch, waiting in the FIFO queue while it is full."""
        seq_id = next(self._ids)
        now = self.clock()
        if self.scheduler.submit(seq_id, now):
            return Seq(seq_id, now, 0.0)
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters[seq_id] = waiter
        try:
            queued_s = await waiter
        except BaseException:
            # Cancelled while waiting, or just after being admitted: give the place back.
            self._waiters.pop(seq_id, None)
            self._release(seq_id)
            raise
        return Seq(seq_id, now, queued_s)

    def leave(self, seq: Seq) -> None:
        self._release(seq.seq_id)

    def _release(self, seq_id: int) -> None:
        for admission in self.scheduler.finish(seq_id, self.clock()):
            waiter = self._waiters.pop(admission.seq_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(admission.queued_s)

    def ttft(self, prompt_tokens: int) -> float:
        if self.model.instant:
            return 0.0
        return self.model.ttft(self.scheduler.running, prompt_tokens,
                               slow_factor=self.faults.config.slow_factor, rng=self._rng)

    def itl(self) -> float:
        if self.model.itl_s == 0:
            return 0.0
        return self.model.itl(self.scheduler.running, slow_factor=self.faults.config.slow_factor,
                              rng=self._rng)

    async def pause(self, seconds: float) -> None:
        if seconds > 0:
            await self._sleep(seconds)


async def hang_forever() -> None:
    """Wait until cancelled: an accepted request the engine never answers."""
    await asyncio.get_running_loop().create_future()
