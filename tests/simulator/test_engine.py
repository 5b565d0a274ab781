"""The async engine: FIFO admission on a real loop, with injected clock and sleep (no waiting)."""

from __future__ import annotations

import asyncio

from simulator.engine import Engine
from simulator.faults import FaultConfig, FaultInjector
from simulator.latency import LatencyModel


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def make_engine(time: FakeTime, *, max_num_seqs: int = 1, ttft_s: float = 0.0,
                itl_s: float = 0.0, faults: FaultConfig | None = None) -> Engine:
    model = LatencyModel(ttft_s=ttft_s, itl_s=itl_s, max_num_seqs=max_num_seqs)
    return Engine(model, FaultInjector(faults or FaultConfig(), 0), seed=0, clock=time.clock,
                  sleep=time.sleep)


async def test_requests_beyond_the_batch_wait_and_enter_in_order() -> None:
    time = FakeTime()
    engine = make_engine(time)
    first = await engine.enter()
    second = asyncio.create_task(engine.enter())
    third = asyncio.create_task(engine.enter())
    await asyncio.sleep(0)
    assert (engine.running, engine.waiting) == (1, 2)
    time.now += 2.5
    engine.leave(first)
    admitted = await second
    assert admitted.queued_s == 2.5
    assert not third.done() and engine.waiting == 1
    engine.leave(admitted)
    engine.leave(await third)
    assert (engine.running, engine.waiting) == (0, 0)


async def test_a_waiter_cancelled_in_the_queue_gives_its_place_back() -> None:
    time = FakeTime()
    engine = make_engine(time)
    first = await engine.enter()
    quitter = asyncio.create_task(engine.enter())
    patient = asyncio.create_task(engine.enter())
    await asyncio.sleep(0)
    quitter.cancel()
    await asyncio.gather(quitter, return_exceptions=True)
    assert engine.waiting == 1
    engine.leave(first)
    engine.leave(await patient)
    assert (engine.running, engine.waiting) == (0, 0)


async def test_pauses_follow_the_model_and_the_slow_factor_fault() -> None:
    time = FakeTime()
    engine = make_engine(time, max_num_seqs=4, ttft_s=0.1, itl_s=0.01,
                         faults=FaultConfig(slow_factor=3.0))
    seq = await engine.enter()
    await engine.pause(engine.ttft(0))
    await engine.pause(engine.itl())
    assert time.slept == [0.1 * 3.0, 0.01 * 3.0]
    engine.leave(seq)


async def test_an_instant_engine_never_sleeps() -> None:
    time = FakeTime()
    engine = make_engine(time, max_num_seqs=2)
    seq = await engine.enter()
    await engine.pause(engine.ttft(500))
    await engine.pause(engine.itl())
    engine.leave(seq)
    assert time.slept == []
    assert engine.kv_cache_usage == 0.0
