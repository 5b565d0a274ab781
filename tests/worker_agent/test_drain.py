"""The drain sequence: announce, wait for the engine to empty (bounded), finish exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from worker_agent.drain import Drain, DrainController


class Recorder:
    def __init__(self, in_flight: Iterable[int | None]) -> None:
        self.counts = list(in_flight)
        self.announced = 0
        self.polls = 0
        self.finished: list[Drain] = []

    def announce(self) -> None:
        self.announced += 1

    async def in_flight(self) -> int | None:
        self.polls += 1
        return self.counts.pop(0) if len(self.counts) > 1 else self.counts[0]

    async def finish(self, drain: Drain) -> None:
        self.finished.append(drain)


def controller(rec: Recorder, **overrides: float) -> DrainController:
    options = {"timeout_s": 30.0, "deadline_margin_s": 5.0, "settle_s": 0.0,
               "poll_interval_s": 0.01, **overrides}
    return DrainController(announce=rec.announce, in_flight=rec.in_flight, finish=rec.finish,
                           **options)


async def test_drain_announces_at_once_and_finishes_when_the_engine_is_empty() -> None:
    rec = Recorder([3, 2, 0, 0])
    drain = controller(rec)
    drain.request("sigterm")
    assert drain.active and rec.announced == 1
    await asyncio.wait_for(drain.finished.wait(), 10)
    assert [d.reason for d in rec.finished] == ["sigterm"]
    assert rec.polls == 4  # idle twice in a row before declaring it empty


async def test_a_single_idle_poll_between_busy_ones_is_not_enough() -> None:
    rec = Recorder([0, 1, 0, 0])
    drain = controller(rec)
    drain.request("control_plane")
    await asyncio.wait_for(drain.finished.wait(), 10)
    assert rec.polls == 4


async def test_a_busy_engine_is_waited_for_only_until_the_deadline_minus_margin() -> None:
    rec = Recorder([5])
    drain = controller(rec, deadline_margin_s=10.0)
    started = time.monotonic()
    drain.request("spot_interruption", deadline=time.time() + 10.3)
    await asyncio.wait_for(drain.finished.wait(), 10)
    assert time.monotonic() - started < 5  # bound: 0.3 s from now, not the 30 s timeout
    assert rec.finished[0].deadline is not None


async def test_without_deadline_the_drain_timeout_bounds_the_wait() -> None:
    rec = Recorder([None])  # metrics cannot tell: wait, but not forever
    drain = controller(rec, timeout_s=0.2)
    drain.request("rebalance")
    await asyncio.wait_for(drain.finished.wait(), 10)
    assert rec.polls >= 2 and len(rec.finished) == 1


async def test_a_later_notice_with_an_earlier_deadline_tightens_the_drain() -> None:
    rec = Recorder([4])
    drain = controller(rec, deadline_margin_s=0.0, timeout_s=60)
    drain.request("rebalance")
    await asyncio.sleep(0.05)
    drain.request("rebalance")  # repeated notices change nothing
    assert rec.announced == 1
    drain.request("spot_interruption", deadline=time.time() + 0.2)
    assert rec.announced == 2
    assert drain.current is not None and drain.current.reason == "spot_interruption"
    await asyncio.wait_for(drain.finished.wait(), 10)
    assert len(rec.finished) == 1


async def test_hurry_skips_the_rest_of_the_wait() -> None:
    rec = Recorder([7])
    drain = controller(rec, timeout_s=60, settle_s=30)
    drain.request("sigterm")
    await asyncio.sleep(0.05)
    drain.hurry()
    await asyncio.wait_for(drain.finished.wait(), 10)
    assert rec.polls == 0 and len(rec.finished) == 1


async def test_a_failing_finish_still_lets_the_process_exit() -> None:
    rec = Recorder([0])

    async def broken(drain: Drain) -> None:
        raise RuntimeError("control plane gone")

    drain = DrainController(announce=rec.announce, in_flight=rec.in_flight, finish=broken,
                            timeout_s=1, deadline_margin_s=0, settle_s=0, poll_interval_s=0.01)
    drain.request("sigterm")
    await asyncio.wait_for(drain.finished.wait(), 10)
