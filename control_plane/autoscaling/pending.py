"""Pending capacity: replicas on their way, and a backlog the fleet will drain, are no reason to
launch more.

Queue depth and latency are *stocks*: while new replicas boot (tens of seconds to minutes on real
GPUs) the replicas already serving fall further behind, so the backlog - and with it every
stock-based recommendation - keeps growing although the capacity that answers it is already
starting. Left alone, a plateau that needs 2 replicas launches 6, and the backlog a router releases
after a scale from zero launches 5 more. Production autoscalers guard against this the same way:
the cluster autoscaler places pending pods on upcoming nodes before it adds any, KEDA and SkyServe
count pending replicas toward the target, the HPA treats not-yet-ready pods as adding no load.

The guard compares *flows*, which do not pile up during a boot:

    need = ceil(arrival rate / requests/s one busy replica completes)    (within 10% tolerance)

1. Replicas starting (booting or starting): they count as capacity. A scale-up is limited to
   `need` - only arrivals beyond what current + starting replicas serve add replicas; a real surge
   still scales up at once.
2. Nothing starting: what exceeds `target_queue_depth` per replica is backlog. If the spare
   capacity (current x per-replica rate - arrivals) drains it before a new replica could be ready
   (the pool's observed boot time, median of the last 16), launching is pure waste: hold.
   Otherwise the scale-up is limited to the replicas that serve the arrivals *and* drain the
   backlog within one more boot time: ceil((arrivals + backlog / boot) / per-replica rate).
   Before any boot was observed, the arrivals alone size it.
3. Arrivals known, serving replicas, none with anything running or waiting (so no completion rate
   either): whatever asks for more (a p95 of a past window, a smoothed queue) is residue, not
   queueing - more replicas would take nothing: hold.

A replica busy but with no completion rate yet (just ready: its rate window is empty) is taken
to serve the pool's last measured rate. Without both rates (no router report yet, no rate ever
measured for the pool) the
guard has no evidence and changes nothing; the step limit still applies. Errors in the rates err
toward scaling up: a replica that is not saturated reports less than it could serve, which raises
`need`.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

from control_plane.autoscaling.signals import PoolSignals

_EPS = 1e-9


@dataclass
class _Boots:
    unready: set[str] = field(default_factory=set)  # instances seen booting or starting
    served: float | None = None  # the last requests/s a busy replica of the pool completed
    durations: deque[float] = field(default_factory=lambda: deque(maxlen=16))


class PendingCapacity:
    """Per pool: the boot times observed, and the limit the guard puts on a scale-up."""

    def __init__(self, *, tolerance: float = 0.1) -> None:
        self.tolerance = tolerance
        self._pools: dict[str, _Boots] = {}

    def forget(self, pool: str) -> None:
        self._pools.pop(pool, None)

    def observe(self, s: PoolSignals, now: float) -> None:
        """Learn boot times: launch -> first seen ready, for replicas seen before they served."""
        boots = self._pools.setdefault(s.pool, _Boots())
        unready = set()
        for r in s.live:
            if r.state == "ready":
                if r.instance_id in boots.unready and r.launched_at is not None:
                    boots.durations.append(max(0.0, now - r.launched_at))
            else:
                unready.add(r.instance_id)
        boots.unready = unready
        if s.served_per_replica:
            boots.served = s.served_per_replica

    def boot_s(self, pool: str) -> float | None:
        boots = self._pools.get(pool)
        if boots is None or not boots.durations:
            return None
        return statistics.median(boots.durations)

    def limit(self, s: PoolSignals, current: int, target: int, notes: list[str]) -> int:
        """The target after counting pending capacity (only ever lowers a scale-up)."""
        if target <= current or s.arrival_rate is None:
            return target
        served, measured = s.served_per_replica, "per replica"
        if not served and any(r.queue_depth or r.inflight for r in s.ready):
            # Busy, but no completion rate yet (a replica just ready, its rate window empty - the
            # backlog a router releases after a scale from zero): the pool's last measured rate.
            boots = self._pools.get(s.pool)
            served, measured = (boots.served if boots else None), "per replica (last measured)"
        if not served:
            ready = s.ready
            if ready and not any(r.queue_depth or r.inflight for r in ready):
                # Serving replicas with nothing running or waiting: what asks for more (a p95 of
                # a past window, a smoothed queue) is residue - new replicas would take nothing.
                notes.append(f"no ready replica has work queued ({s.arrival_rate:.1f} req/s "
                             "arriving): holding")
                return current
            return target
        rate, per_replica = s.arrival_rate, served
        need = self._replicas_for(rate, per_replica)
        flows = f"{rate:.1f} req/s arriving, {per_replica:.1f} req/s {measured}"
        starting = s.starting
        if starting:
            limited = max(current, min(target, need))
            if limited < target:
                notes.append(f"{starting} replica(s) starting count as capacity: {flows} -> "
                             f"{need}" + (f" <= {current} live: holding" if limited == current
                                          else ""))
            return limited
        boot = self.boot_s(s.pool)
        if boot is None or boot <= 0:
            # No boot observed yet, so no horizon to size a backlog drain by: the arrivals alone
            # size the scale-up; once these replicas are ready, the backlog left is judged.
            limited = max(current, min(target, need))
            if limited < target:
                notes.append(f"sized by flows (no boot time observed yet): {flows} -> {need}")
            return limited
        backlog = max(0.0, (s.queue_depth or 0.0) - current * s.spec.target_queue_depth)
        spare = current * per_replica - rate
        if spare > 0 and backlog / spare <= boot:
            notes.append(f"backlog {backlog:.0f} drains in {backlog / spare:.0f}s at current "
                         f"capacity ({flows}), before a new replica is ready (boot "
                         f"~{boot:.0f}s): holding")
            return current
        # Enough replicas for the arrivals plus the backlog drained within one more boot time.
        drain = self._replicas_for(rate + backlog / boot, per_replica)
        limited = max(current, min(target, drain))
        if limited < target:
            notes.append(f"sized by flows: {flows}, backlog {backlog:.0f} drained within "
                         f"~{boot:.0f}s -> {drain}")
        return limited

    def _replicas_for(self, rate: float, per_replica: float) -> int:
        if rate <= 0:
            return 0
        return math.ceil(rate / (per_replica * (1 + self.tolerance)) - _EPS)
