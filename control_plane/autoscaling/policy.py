"""Autoscaling policies: `decide(signals, now) -> ScaleDecision`, decisions as data.

A policy only *recommends* how many serving replicas its metrics call for (`recommend`); the shared
pipeline in `Autoscaler.decide` turns that into a target every policy obeys the same way:

    1. recommendation   the policy's metrics (None: no opinion -> hold)
    2. floor            min_replicas; one replica while traffic flows; scale from zero on cold
                        demand; never below the last target while replacing interrupted replicas
    3. ceiling          max_replicas
    4. stabilization    windows + consecutive periods (stabilization.py); scale from zero, raising
                        to a floor and scale-to-zero after the idle time are not delayed
    4b. pending         replicas starting count as capacity; a backlog the fleet drains before a
                        new replica could boot launches nothing (pending.py; never below a floor)
    5. step limit       at most max(4, 100% of current) more per decision (the HPA default)
    6. spending cap     live spend + new replicas x next price <= the pool's max_price_per_hour;
                        a burst whose budget is spent does not grow; over the cap, shed replicas
    7. victims          on scale-down, which replicas drain (victims.py)

The decision carries its inputs and a human-readable reason; the executor (control plane) applies
it: launch `launch` replicas, drain `drain` through the heartbeat reply, release after the drain.

Policies register by name (`Autoscaler.make("target_tracking")`), like SkyServe's autoscalers.
`decide` does no I/O and reads no clock: given the same signals, times and history (the stabilizer's
recorded recommendations), it returns the same decision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from control_plane.autoscaling.pending import PendingCapacity
from control_plane.autoscaling.signals import PoolSignals
from control_plane.autoscaling.stabilization import (
    StabilizationConfig,
    Stabilized,
    Stabilizer,
)
from control_plane.autoscaling.victims import DrainOrder, choose_victims
from fleet.schemas import Event

Action = Literal["scale_up", "scale_down", "hold"]
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Recommendation:
    replicas: int | None  # serving replicas the metrics call for; None: no opinion
    reason: str
    inputs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    pool: str
    policy: str
    at: float
    current: int  # live managed replicas (booting + starting + ready)
    target: int
    launch: int
    drain: tuple[DrainOrder, ...]
    reason: str
    inputs: Mapping[str, Any]

    @property
    def action(self) -> Action:
        if self.target > self.current:
            return "scale_up"
        if self.target < self.current:
            return "scale_down"
        return "hold"

    def event(self) -> Event:
        return Event(
            ts=self.at, kind=f"autoscaler.{self.action}", subject=self.pool,
            message=f"{self.pool}: {self.current} -> {self.target}: {self.reason}",
            data={"policy": self.policy, "current": self.current, "target": self.target,
                  "launch": self.launch, "drain": [d.as_dict() for d in self.drain],
                  "inputs": dict(self.inputs)})


@dataclass(frozen=True)
class AutoscalerConfig:
    stabilization: StabilizationConfig = StabilizationConfig()
    tolerance: float = 0.1  # ratios within 10% of target change nothing (HPA's default)
    latency_headroom: float = 0.8  # latency above 80% of the SLO blocks scaling down
    max_step_up: int = 4  # per decision: at most max(max_step_up, current) more replicas
    count_pending_capacity: bool = True  # pending.py: no scale-up for backlog while booting


class Autoscaler:
    name: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type[Autoscaler]]] = {}

    def __init_subclass__(cls, *, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name is not None:
            if name in Autoscaler._registry:
                raise ValueError(f"autoscaler {name!r} is registered twice")
            cls.name = name
            Autoscaler._registry[name] = cls

    @classmethod
    def make(cls, name: str, **options: Any) -> Autoscaler:
        try:
            policy = Autoscaler._registry[name]
        except KeyError:
            known = ", ".join(sorted(Autoscaler._registry))
            raise KeyError(f"unknown autoscaler {name!r} (known: {known})") from None
        return policy(**options)

    @classmethod
    def registered(cls) -> list[str]:
        return sorted(Autoscaler._registry)

    def __init__(self, config: AutoscalerConfig | None = None) -> None:
        self.config = config or AutoscalerConfig()
        self.stabilizer = Stabilizer(self.config.stabilization)
        self.pending = PendingCapacity(tolerance=self.config.tolerance)

    def recommend(self, signals: PoolSignals) -> Recommendation:
        raise NotImplementedError

    def forget(self, pool: str) -> None:
        self.stabilizer.forget(pool)
        self.pending.forget(pool)

    def decide(self, signals: PoolSignals, now: float) -> ScaleDecision:
        spec = signals.spec
        current = len(signals.live)
        self.pending.observe(signals, now)
        rec = self.recommend(signals)
        notes: list[str] = []
        raw = current if rec.replicas is None else max(0, rec.replicas - signals.unmanaged_ready)

        idle = (spec.scale_to_zero_after_s is not None
                and signals.idle_s >= spec.scale_to_zero_after_s)
        floor = spec.min_replicas
        if current == 0 and signals.cold_demand and floor < 1:
            floor = 1
            notes.append("cold demand: scaling from zero")
        elif current > 0 and not idle and floor < 1:
            floor = 1
        elif current > 0 and idle:
            # Idle means no request, queue or in-flight work for the whole idle time: what the
            # smoothed signals still remember of earlier traffic is residue, not load.
            raw = min(raw, spec.min_replicas)
            notes.append(f"idle for {signals.idle_s:.0f}s (scale to zero after "
                         f"{spec.scale_to_zero_after_s:.0f}s)")
        last = self.stabilizer.last_target(signals.pool)
        if signals.interrupted and last is not None and last > floor:
            floor = last
            notes.append(f"replacing {signals.interrupted} interrupted replica(s)")
        bounded = min(max(raw, floor), spec.max_replicas)
        if raw > spec.max_replicas:
            notes.append(f"capped at max_replicas {spec.max_replicas}")

        stabilized = self.stabilizer.apply(
            signals.pool, current, bounded, now,
            bypass_up=floor > current,
            bypass_down=(idle and bounded <= spec.min_replicas) or current > spec.max_replicas)
        target = stabilized.target
        if stabilized.held_by:
            notes.append(f"held: {stabilized.held_by}")
        if self.config.count_pending_capacity:
            target = max(self.pending.limit(signals, current, target, notes),
                         min(floor, spec.max_replicas, target))
        step = max(self.config.max_step_up, current)
        if target > current + step:
            target = current + step
            notes.append(f"step limited to +{step}")
        target = self._spending_cap(signals, current, target, notes)
        self.stabilizer.record_target(signals.pool, target)
        return self._decision(signals, now, current, target, rec, stabilized, notes)

    def _spending_cap(self, s: PoolSignals, current: int, target: int, notes: list[str]) -> int:
        if target > current and s.budget_remaining_usd is not None \
                and s.budget_remaining_usd <= 0:
            notes.append("budget spent: not growing")
            return current
        cap = s.spec.max_price_per_hour
        if cap is None:
            return target
        # A live replica of unknown price is assumed to cost what the next one would.
        spend = sum(r.price_per_hour if r.price_per_hour is not None
                    else (s.next_price_per_hour or 0.0) for r in s.live)
        if target > current:
            price = s.next_price_per_hour
            if price is None:
                notes.append(f"price of a new replica unknown under a ${cap:.2f}/h cap")
                return current
            if price > 0:
                room = max(0, math.floor((cap - spend) / price + _EPS))
                if target > current + room:
                    notes.append(f"spending cap ${cap:.2f}/h: ${spend:.2f}/h spent, next "
                                 f"replica ${price:.2f}/h")
                    return current + room
            return target
        if spend > cap + _EPS:
            keep, total = current, spend
            for price in sorted((r.price_per_hour or 0.0 for r in s.live), reverse=True):
                if total <= cap + _EPS:
                    break
                total -= price
                keep -= 1
            if keep < target:
                notes.append(f"over the spending cap ${cap:.2f}/h (${spend:.2f}/h): shedding")
                return keep
        return target

    def _decision(self, s: PoolSignals, now: float, current: int, target: int,
                  rec: Recommendation, stabilized: Stabilized, notes: list[str]) -> ScaleDecision:
        drain: tuple[DrainOrder, ...] = ()
        if target < current:
            drain = tuple(choose_victims(s.replicas, current - target))
        inputs: dict[str, Any] = {
            "live": current, "ready": len(s.ready), "unmanaged_ready": s.unmanaged_ready,
            "interrupted": s.interrupted, "queue_depth": s.queue_depth,
            "latency_p95_ms": s.latency_p95_ms, "gpu_util": s.gpu_util,
            "cold_requests": s.cold_requests, "cold_recent": s.cold_recent,
            "waiting": s.waiting, "idle_s": s.idle_s, "recommended": rec.replicas,
            "up_recommendation": stabilized.up_recommendation,
            "down_recommendation": stabilized.down_recommendation,
            "spend_per_hour": s.spend_per_hour, "next_price_per_hour": s.next_price_per_hour,
            "max_price_per_hour": s.spec.max_price_per_hour,
            "budget_remaining_usd": s.budget_remaining_usd, "starting": s.starting,
            "arrival_rate": s.arrival_rate, "served_per_replica": s.served_per_replica,
            "boot_s": self.pending.boot_s(s.pool), **rec.inputs}
        reason = "; ".join([rec.reason, *notes])
        return ScaleDecision(s.pool, self.name, now, current, target, max(0, target - current),
                             drain, reason, inputs)
