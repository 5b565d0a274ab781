"""Draining: leave the fleet without dropping a request, before the machine goes away.

Triggers: a Spot interruption notice (deadline = the notice's time), a rebalance recommendation,
SIGTERM/SIGINT, or the control plane's heartbeat reply `drain: true`. The sequence:

    t0          draining: /readyz answers 503 "draining", heartbeat sent at once with status
                `draining`, the reason and the deadline (the router stops sending new requests)
    t0+settle   DRAIN_SETTLE_S later, start checking the engine: done when it reports no running
                or waiting request on two polls in a row
    bound       never later than deadline - DRAIN_DEADLINE_MARGIN_S (Spot), or t0 + DRAIN_TIMEOUT_S
                when there is no deadline; a later notice with an earlier deadline tightens it;
                a second SIGTERM/SIGINT skips the rest of the wait
    then        `finish`: stop heartbeats, deregister, stop a supervised engine; then exit 0

Deadlines are Unix times (what IMDS and the heartbeat carry); `clock` is injected for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from fleet.schemas import DrainReason

log = logging.getLogger(__name__)

# A notice's deadline beats no deadline; between two deadlines the earlier wins.
_URGENCY: dict[str, int] = {"control_plane": 0, "scale_down": 0, "rebalance": 1, "sigterm": 2,
                            "spot_interruption": 3}


@dataclass(frozen=True, slots=True)
class Drain:
    reason: DrainReason
    started_at: float
    deadline: float | None = None  # Unix time the machine goes away, if known


class DrainController:
    def __init__(
        self,
        *,
        announce: Callable[[], None],
        in_flight: Callable[[], Awaitable[int | None]],
        finish: Callable[[Drain], Awaitable[None]],
        timeout_s: float,
        deadline_margin_s: float,
        settle_s: float,
        poll_interval_s: float,
        on_start: Callable[[Drain], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.announce = announce
        self.in_flight = in_flight
        self.finish = finish
        self.timeout_s = timeout_s
        self.deadline_margin_s = deadline_margin_s
        self.settle_s = settle_s
        self.poll_interval_s = poll_interval_s
        self.on_start = on_start
        self.clock = clock
        self.current: Drain | None = None
        self.finished = asyncio.Event()
        self._hurry = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self.current is not None

    def request(self, reason: DrainReason, deadline: float | None = None) -> None:
        """Start draining, or tighten a drain under way with a more urgent notice."""
        if self.current is None:
            self.current = Drain(reason, self.clock(), deadline)
            log.warning("draining (%s)%s", reason, _deadline_text(deadline, self.clock()))
            if self.on_start is not None:
                self.on_start(self.current)
            self.announce()
            self._task = asyncio.create_task(self._run(), name="drain")
            return
        tighter = deadline is not None and (self.current.deadline is None
                                            or deadline < self.current.deadline)
        if tighter:
            self.current = replace(self.current, deadline=deadline,
                                   reason=reason if _URGENCY[reason] >=
                                   _URGENCY[self.current.reason] else self.current.reason)
            log.warning("drain deadline moved earlier (%s)%s", reason,
                        _deadline_text(deadline, self.clock()))
            self.announce()

    def hurry(self) -> None:
        """Stop waiting for in-flight requests (a second SIGTERM): finish now."""
        if self.current is not None and not self._hurry.is_set():
            log.warning("asked again to stop: not waiting for in-flight requests any longer")
            self._hurry.set()

    def wait_bound(self) -> float:
        """Unix time after which the drain stops waiting for the engine to empty."""
        assert self.current is not None
        if self.current.deadline is not None:
            return self.current.deadline - self.deadline_margin_s
        return self.current.started_at + self.timeout_s

    async def _run(self) -> None:
        assert self.current is not None
        try:
            emptied = await self._wait_for_idle()
            if not emptied:
                log.warning("drain wait ended with requests possibly still in flight")
            await self.finish(self.current)
        except Exception:
            log.exception("drain failed; exiting anyway")
        finally:
            self.finished.set()

    async def _wait_for_idle(self) -> bool:
        await self._pause(self.settle_s)
        idle_polls = 0
        while not self._hurry.is_set():
            if self.clock() >= self.wait_bound():
                log.warning("drain bound reached")
                return False
            count = await self.in_flight()
            if count == 0:
                idle_polls += 1
                if idle_polls >= 2:
                    log.info("engine is idle after %.1f s of draining",
                             self.clock() - self.current.started_at)  # type: ignore[union-attr]
                    return True
            else:
                idle_polls = 0
                log.debug("drain: %s request(s) still in flight",
                          "unknown" if count is None else count)
            await self._pause(self.poll_interval_s)
        return False

    async def _pause(self, seconds: float) -> None:
        """Sleep, cut short by hurry() and by the wait bound."""
        remaining = max(0.0, min(seconds, self.wait_bound() - self.clock()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._hurry.wait(), timeout=remaining)

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _deadline_text(deadline: float | None, now: float) -> str:
    if deadline is None:
        return ""
    return f"; the machine goes away in {deadline - now:.0f} s"
