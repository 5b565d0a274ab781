"""The enrollment and heartbeat loop: register, then report every interval, whatever happens.

    not enrolled ── register ──ok──► enrolled ── heartbeat every interval ──ok──► (follow the
         ▲             │                 │        reply's heartbeat_interval_s; drain if asked)
         │          failure              ├── 401/404: the control plane forgot us ──► forget ──┐
         │             ▼                 ├── 403: another instance's token: log, back off      │
         └──── wait backoff.next_delay() ◄── unreachable (connect, timeout, 5xx): back off ◄────┘

Serving never depends on this loop: the engine keeps answering the router while the control
plane is away, and every failure is followed by a jittered, growing wait (never a tight loop).
`wake()` sends the next heartbeat at once (a drain starting must be reported immediately).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from fleet.schemas import Heartbeat
from worker_agent.backoff import Backoff
from worker_agent.control_plane_client import ControlPlaneClient
from worker_agent.enrollment import Enrollment
from worker_agent.errors import (
    ControlPlaneRejected,
    ControlPlaneUnreachable,
    TokenFileError,
)
from worker_agent.metrics import AgentMetrics

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.05
MAX_INTERVAL_S = 300.0


def _bounded(interval: float) -> float:
    return min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, interval))


class HeartbeatLoop:
    def __init__(
        self,
        enrollment: Enrollment,
        client: ControlPlaneClient,
        *,
        build: Callable[[], Heartbeat],
        on_drain_requested: Callable[[], None],
        interval_s: float,
        backoff: Backoff,
        metrics: AgentMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.enrollment = enrollment
        self.client = client
        self.build = build
        self.on_drain_requested = on_drain_requested
        self.interval_s = _bounded(interval_s)
        self.backoff = backoff
        self.metrics = metrics
        self.clock = clock
        self.last_ok_at: float | None = None
        self._wake = asyncio.Event()
        self._unreachable_since: float | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            delay = await self.beat_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()

    async def beat_once(self) -> float:
        """One step (register if needed, then heartbeat); returns the wait before the next."""
        phase = "register"
        try:
            if not self.enrollment.enrolled:
                await self._register()
            phase = "heartbeat"
            reply = await self.client.heartbeat(self.enrollment.worker_id or "", self.build(),
                                                self.enrollment.token)
        except ControlPlaneRejected as exc:
            self.metrics.count_control_plane_call(phase, "rejected")
            self._rejected(phase, exc)
            return self.backoff.next_delay()
        except ControlPlaneUnreachable as exc:
            self.metrics.count_control_plane_call(phase, "unreachable")
            if self._unreachable_since is None:
                self._unreachable_since = self.clock()
                log.warning("control plane unreachable (%s); the engine keeps serving, "
                            "retrying with backoff", exc)
            else:
                log.debug("control plane still unreachable: %s", exc)
            return self.backoff.next_delay()
        except TokenFileError as exc:
            log.error("worker token file problem: %s; retrying with backoff", exc)
            return self.backoff.next_delay()
        self.metrics.count_control_plane_call("heartbeat", "ok")
        if self._unreachable_since is not None:
            log.info("control plane reachable again after %.1f s",
                     self.clock() - self._unreachable_since)
            self._unreachable_since = None
        self.backoff.reset()
        self.last_ok_at = self.clock()
        self.interval_s = _bounded(reply.heartbeat_interval_s)
        if reply.drain:
            self.on_drain_requested()
        return self.interval_s

    async def _register(self) -> None:
        response = await self.enrollment.register()
        self.metrics.count_control_plane_call(
            "register", "bootstrapped" if response.bootstrap_token else "ok")
        self.interval_s = _bounded(response.heartbeat_interval_s)
        log.info("registered with the control plane as worker %s (heartbeat every %g s)",
                 response.worker_id, self.interval_s)

    def _rejected(self, phase: str, exc: ControlPlaneRejected) -> None:
        if phase == "heartbeat" and exc.status in (401, 404):
            log.warning("the control plane no longer knows worker %s (%d: %s); registering again",
                        self.enrollment.worker_id, exc.status, exc.message)
            self.enrollment.forget()
        elif exc.status == 403:
            log.error("the control plane refused this worker's token on %s (403: %s): it is "
                      "bound to another instance. Check INSTANCE_ID, WORKER_AUTH_TOKEN and the "
                      "token file; retrying with backoff", phase, exc.message)
        elif exc.status == 401:
            log.error("the control plane refused the %s (401: %s): the worker token is wrong "
                      "or revoked; retrying with backoff", phase, exc.message)
        else:
            log.error("the control plane rejected the %s (%d: %s); retrying with backoff",
                      phase, exc.status, exc.message)
