"""The attempt loop: pick an endpoint, try it, on a retryable failure try another.

    pick      the first target of the plan with an endpoint that is ready, not circuit-open and
              not yet tried by this request; within it, the balancing policy chooses
    attempt   relay.py; UpstreamError (connect, timeout, 5xx, broken before the first byte)
              means: mark the endpoint tried, pick again at once (another worker, or the route's
              next target - e.g. the paid API when the whole pool fails)
    round     when every candidate was tried once, wait an exponential backoff with jitter
              (`backoff_base_s` x 2^(round-1), capped at `backoff_max_s`, "equal jitter": half
              fixed, half random) and start a new round with the circuits as they now are
    bounds    at most `max_attempts` attempts, and none starts after `retry_deadline_s` since
              the request arrived; then 502 (unreachable), 504 (timeouts) or the engine's own
              5xx, with `x-should-retry: false` so the SDK does not multiply our retries
    cold      no target has any candidate (pools with no ready worker, or every circuit open)
              and nothing was tried: record demand and wait for the snapshot to change, up to
              `cold_start_wait_s`, then 503 with `retry-after`
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

import orjson

from router.balancing import Endpoint
from router.call import Call
from router.errors import (
    NoCapacity,
    UpstreamError,
    UpstreamFailed,
    UpstreamStatusError,
    UpstreamTimeout,
    normalise_error_body,
    retry_after_headers,
)
from router.relay import Exchange
from router.routing import Plan, Target
from router.runtime import RouterRuntime

log = logging.getLogger("router.failover")

_NO_RETRY = {"x-should-retry": "false"}
_CAPACITY_POLL_S = 0.5  # circuits re-open for a probe with time, not with snapshot changes


class Backoff:
    def __init__(self, base_s: float, max_s: float,
                 rand: Callable[[], float] = random.random) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self._rand = rand

    def delay(self, round_: int) -> float:
        """Delay before round `round_` (1 = the first repeat)."""
        ceiling = min(self.max_s, self.base_s * (2 ** max(0, round_ - 1)))
        return ceiling / 2 + self._rand() * ceiling / 2


def _failure(plan: Plan, attempts: int, error: UpstreamError) -> UpstreamFailed:
    summary = f"{attempts} attempt{'s' if attempts > 1 else ''} for model `{plan.model}` failed"
    if isinstance(error, UpstreamStatusError):
        body = orjson.loads(normalise_error_body(error.status, error.body))
        detail = body["error"]["message"]
        headers = dict(_NO_RETRY)
        if error.status == 503:
            headers.update(retry_after_headers(1.0))
        return UpstreamFailed(error.status, f"{summary}; the last answered {error.status}: "
                              f"{detail}", code="upstream_error", headers=headers)
    if isinstance(error, UpstreamTimeout):
        return UpstreamFailed(504, f"{summary}; the last timed out: {error.message}",
                              code="upstream_timeout", headers=dict(_NO_RETRY))
    return UpstreamFailed(502, f"{summary}; the last could not be reached: {error.message}",
                          code="upstream_unreachable", headers=dict(_NO_RETRY))


class Forwarder:
    def __init__(self, rt: RouterRuntime, exchange: Exchange) -> None:
        self.rt = rt
        self.exchange = exchange
        self.backoff = Backoff(rt.settings.backoff_base_s, rt.settings.backoff_max_s)

    def pick(self, plan: Plan, tried: set[str], now: float) -> tuple[Target, Endpoint] | None:
        breakers = self.rt.breakers
        for target in plan.targets:
            candidates = [e for e in target.endpoints
                          if e.key not in tried and breakers.available(e.key, now)]
            if not candidates:
                continue
            chosen = (candidates[0] if len(candidates) == 1
                      else self.rt.policy.choose(candidates, self.rt.inflight))
            if chosen is not None and breakers.get(chosen.key).acquire(now):
                return target, chosen
        return None

    def _record_demand(self, plan: Plan, now: float) -> None:
        """Every pool target the request reaches in route order, up to the first that can serve."""
        breakers = self.rt.breakers
        for target in plan.targets:
            if target.pool is None:
                return  # an upstream serves (or fails) from here on
            cold = not target.endpoints
            self.rt.demand.request(target.pool, cold=cold, now=now)
            if cold:
                self.rt.metrics.cold_requests.labels(target.pool).inc()
            elif any(breakers.available(e.key, now) for e in target.endpoints):
                return

    async def forward(self, call: Call) -> None:
        rt = self.rt
        settings = rt.settings
        model = call.request.model
        deadline = call.arrived + settings.retry_deadline_s
        tried: set[str] = set()
        rounds = 0
        last_error: UpstreamError | None = None
        cold_until: float | None = None
        first_label: str | None = None
        failover_counted = False
        while True:
            now = time.monotonic()
            plan = rt.planner.plan(rt.keeper.snapshot(), model,
                                   rt.keeper.known_models).pick(call.choice)
            if first_label is None:
                first_label = plan.targets[0].label if plan.targets else ""
                self._record_demand(plan, time.time())
            if call.attempts and (call.attempts >= settings.max_attempts or now >= deadline):
                break
            picked = self.pick(plan, tried, now)
            if picked is None:
                if tried:
                    rounds += 1
                    tried.clear()
                    await asyncio.sleep(self.backoff.delay(rounds))
                    continue
                if last_error is not None:
                    break  # what could serve has failed, and nothing else can
                if cold_until is None:
                    cold_until = now + settings.cold_start_wait_s
                if now >= cold_until:
                    raise self._no_capacity(plan)
                await self._wait_for_capacity(plan, min(cold_until - now, _CAPACITY_POLL_S))
                continue
            target, endpoint = picked
            call.attempts += 1
            if last_error is not None:
                rt.metrics.retries.labels(last_error.reason).inc()
            if target.label != first_label and not failover_counted:
                rt.metrics.failovers.labels(target.label).inc()
                failover_counted = True
            try:
                await self.exchange.attempt(call, target, endpoint)
                return
            except UpstreamError as exc:
                last_error = exc
                tried.add(endpoint.key)
        assert last_error is not None
        raise _failure(plan, call.attempts, last_error)

    def _no_capacity(self, plan: Plan) -> NoCapacity:
        wait = max(1.0, self.rt.settings.cold_start_wait_s)
        headers = retry_after_headers(wait)
        if all(not t.endpoints for t in plan.targets):
            pools = ", ".join(t.label for t in plan.targets) or "none"
            return NoCapacity(503, f"No ready worker for model `{plan.model}` yet (targets: "
                                   f"{pools}); capacity is starting, retry shortly.",
                              code="no_capacity", headers=headers)
        return NoCapacity(503, f"Every worker for model `{plan.model}` is unavailable (circuit "
                               "open after repeated failures); retry shortly.",
                          code="no_healthy_worker", headers=headers)

    async def _wait_for_capacity(self, plan: Plan, timeout: float) -> None:
        pools = [t.pool for t in plan.targets if t.pool is not None and not t.endpoints]
        for pool in pools:
            self.rt.demand.wait_started(pool)
        try:
            await self.rt.keeper.wait_changed(timeout)
        finally:
            for pool in pools:
                self.rt.demand.wait_ended(pool)
