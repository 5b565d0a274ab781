"""A tiny closed-loop fleet for policy tests: decisions applied, replicas boot, load offered.

Replicas launched by a decision are `booting` for `boot_s`, then `ready`; drained ones leave at
once.
The total queue depth is the offered load (requests in the system) while any replica serves, so the
queue-depth recommendation is ceil(load / target_queue_depth). Time only moves by `tick_s` steps.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from control_plane.autoscaling.policy import Autoscaler, ScaleDecision
from control_plane.autoscaling.signals import PoolSignals, Replica
from fleet.catalog import Pool

_ids = itertools.count()


@dataclass
class SimFleet:
    spec: Pool
    boot_s: float = 30.0
    price: float | None = 1.0
    # instance id -> (launched at, instance type, zone)
    replicas: dict[str, tuple[float, str, str]] = field(default_factory=dict)
    decisions: list[ScaleDecision] = field(default_factory=list)

    def add(self, now: float, count: int, ready: bool = False) -> None:
        zones = ["a", "b", "c"]
        for _ in range(count):
            n = next(_ids)
            self.replicas[f"i{n}"] = (now - (self.boot_s if ready else 0), "g5", zones[n % 3])

    def signals(self, now: float, load: float, **extra) -> PoolSignals:
        replicas = []
        for instance_id, (launched, itype, zone) in self.replicas.items():
            state = "ready" if now - launched >= self.boot_s else "booting"
            replicas.append(Replica(instance_id, state, worker_id=f"w-{instance_id}"
                                    if state == "ready" else None, instance_type=itype, zone=zone,
                                    price_per_hour=self.price, launched_at=launched))
        serving = [r for r in replicas if r.state == "ready"]
        values = dict(pool="p", spec=self.spec, at=now, replicas=tuple(replicas),
                      queue_depth=float(load) if serving else None,
                      idle_s=0.0 if load > 0 else extra.pop("idle_s", 0.0),
                      next_price_per_hour=self.price)
        values.update(extra)
        return PoolSignals(**values)

    def step(self, policy: Autoscaler, now: float, load: float, **extra) -> ScaleDecision:
        decision = policy.decide(self.signals(now, load, **extra), now)
        self.decisions.append(decision)
        self.add(now, decision.launch)
        for order in decision.drain:
            del self.replicas[order.instance_id]
        return decision

    def run(self, policy: Autoscaler, load: Callable[[float], float], *, start: float,
            end: float, tick_s: float = 10.0) -> list[ScaleDecision]:
        t = start
        out = []
        while t <= end:
            out.append(self.step(policy, t, load(t)))
            t += tick_s
        return out


def changes(decisions: list[ScaleDecision]) -> list[tuple[float, int, int]]:
    return [(d.at, d.current, d.target) for d in decisions if d.target != d.current]


@dataclass
class FlowFleet(SimFleet):
    """SimFleet driven by flows: `load(t)` is the arrival rate (req/s), each ready replica
    completes up to `per_replica_rps`, a request takes `service_s` in the engine. What is not
    served waits: the backlog integrates arrivals - service between ticks, as on a real pool
    whose new replicas are still booting. The queue depth is backlog + requests in service
    (Little's law); routers report the arrival rate, busy ready replicas their completion rate.
    """

    per_replica_rps: float = 4.0
    service_s: float = 1.0
    backlog: float = 0.0
    last_t: float | None = None

    def signals(self, now: float, load: float, **extra) -> PoolSignals:
        def ready_at(t: float) -> int:
            return sum(1 for launched, _t, _z in self.replicas.values()
                       if t - launched >= self.boot_s)

        if self.last_t is not None:  # the replicas ready since the last tick served meanwhile
            served_meanwhile = ready_at(self.last_t) * self.per_replica_rps
            self.backlog = max(0.0, self.backlog + (load - served_meanwhile)
                               * (now - self.last_t))
        self.last_t = now
        ready = ready_at(now)
        capacity = ready * self.per_replica_rps
        served = min(capacity, load + self.backlog / (self.service_s or 1.0))
        in_service = min(load, capacity) * self.service_s
        per_replica = served / ready if ready and served > 0 else None
        values = dict(arrival_rate=float(load), served_per_replica=per_replica)
        values.update(extra)
        return super().signals(now, self.backlog + in_service, **values)
