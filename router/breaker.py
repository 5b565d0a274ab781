"""Per-worker circuit breakers, and each worker's success rate.

    state          when                                      new requests
    healthy        last attempt succeeded                    yes
    degraded       1 .. threshold-1 consecutive failures     yes (the policy prefers others on ties)
    circuit_open   threshold consecutive failures            no, until `recovery_s` has passed;
                                                             then exactly one probe request
                                                             (half-open): success closes it,
                                                             failure re-opens it for recovery_s

A failure is what the failover loop retries (connect error, timeout, 5xx, a body that broke off);
a 4xx is a success here: the worker answered. A request the client abandoned is neither.
Breakers are local to a router replica (each replica learns from its own traffic); their states
are published in the replica's report for the dashboard. Time is a parameter (`now`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

HEALTHY = "healthy"
DEGRADED = "degraded"
CIRCUIT_OPEN = "circuit_open"
STATES = (HEALTHY, DEGRADED, CIRCUIT_OPEN)

log = logging.getLogger("router.breaker")

# Weight of the newest outcome in the success rate (an exponentially weighted mean: ~the last
# 1/alpha attempts matter).
_ALPHA = 0.05

Transition = Callable[[str, str, str], None]  # worker id, old state, new state


class CircuitBreaker:
    __slots__ = ("worker_id", "threshold", "recovery_s", "consecutive_failures", "opened_at",
                 "probe_in_flight", "success_rate", "_on_transition")

    def __init__(self, worker_id: str, *, threshold: int, recovery_s: float,
                 on_transition: Transition | None = None) -> None:
        self.worker_id = worker_id
        self.threshold = threshold
        self.recovery_s = recovery_s
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self.probe_in_flight = False
        self.success_rate = 1.0
        self._on_transition = on_transition

    @property
    def state(self) -> str:
        if self.opened_at is not None:
            return CIRCUIT_OPEN
        return DEGRADED if self.consecutive_failures else HEALTHY

    def available(self, now: float) -> bool:
        """May a new request go here? (Does not reserve the half-open probe; `acquire` does.)"""
        if self.opened_at is None:
            return True
        return not self.probe_in_flight and now - self.opened_at >= self.recovery_s

    def acquire(self, now: float) -> bool:
        """Claim this worker for one request; an open circuit past recovery lets one probe in."""
        if self.opened_at is None:
            return True
        if self.probe_in_flight or now - self.opened_at < self.recovery_s:
            return False
        self.probe_in_flight = True
        log.info("circuit half-open, probing", extra={"worker_id": self.worker_id})
        return True

    def record_success(self) -> None:
        self.success_rate += _ALPHA * (1.0 - self.success_rate)
        old = self.state
        self.consecutive_failures = 0
        self.opened_at = None
        self.probe_in_flight = False
        self._changed(old)

    def record_failure(self, now: float) -> None:
        self.success_rate -= _ALPHA * self.success_rate
        old = self.state
        self.consecutive_failures += 1
        if self.probe_in_flight or self.consecutive_failures >= self.threshold:
            self.opened_at = now  # (re)open: a failed probe waits a full recovery again
        self.probe_in_flight = False
        self._changed(old)

    def record_abandoned(self) -> None:
        """The request ended without a verdict (client gone): free the probe slot if held."""
        self.probe_in_flight = False

    def _changed(self, old: str) -> None:
        new = self.state
        if new == old:
            return
        level = logging.WARNING if new == CIRCUIT_OPEN else logging.INFO
        log.log(level, "circuit %s -> %s", old, new,
                extra={"worker_id": self.worker_id, "consecutive_failures":
                       self.consecutive_failures})
        if self._on_transition is not None:
            self._on_transition(self.worker_id, old, new)


class BreakerBoard:
    """The breakers of every worker (and upstream) this replica has sent requests to."""

    def __init__(self, *, threshold: int, recovery_s: float,
                 on_transition: Transition | None = None) -> None:
        self._threshold = threshold
        self._recovery_s = recovery_s
        self._on_transition = on_transition
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, worker_id: str) -> CircuitBreaker:
        breaker = self._breakers.get(worker_id)
        if breaker is None:
            breaker = self._breakers[worker_id] = CircuitBreaker(
                worker_id, threshold=self._threshold, recovery_s=self._recovery_s,
                on_transition=self._on_transition)
        return breaker

    def peek(self, worker_id: str) -> CircuitBreaker | None:
        return self._breakers.get(worker_id)

    def available(self, worker_id: str, now: float) -> bool:
        breaker = self._breakers.get(worker_id)
        return breaker is None or breaker.available(now)

    def states(self) -> dict[str, str]:
        return {worker_id: b.state for worker_id, b in self._breakers.items()}

    def success_rates(self) -> dict[str, float]:
        return {worker_id: b.success_rate for worker_id, b in self._breakers.items()}

    def forget_except(self, keep: Iterable[str]) -> list[str]:
        """Drop breakers of workers that left the fleet (ids are not reused); returns them."""
        keep_set = set(keep)
        gone = [w for w in self._breakers if w not in keep_set]
        for worker_id in gone:
            del self._breakers[worker_id]
        return gone
