"""Which replicas leave on a scale-down, and how: drain first, release after.

Order of preference (one at a time, so each choice sees the previous ones):

    1. booting   (no worker yet: nothing to drain, release the instance at once)
    2. starting  (registered, not serving: drains instantly)
    3. ready     by load (queue depth + in-flight): the least loaded drains fastest
    then, among equals: from the most crowded (type, zone) capacity pool, then the most crowded
    zone (what stays is spread, so one interruption wave takes fewer replicas), then the most
    expensive, then the newest.

Workers enrolled by hand (unmanaged) and replicas already draining are never chosen.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from control_plane.autoscaling.signals import Replica

_STATE_RANK = {"booting": 0, "starting": 1, "ready": 2}


def _preference(r: Replica, pools: collections.Counter[tuple[str | None, str | None]],
                zones: collections.Counter[str | None]) -> tuple[float, ...]:
    return (_STATE_RANK[r.state], r.queue_depth + r.inflight, -pools[(r.instance_type, r.zone)],
            -zones[r.zone], -(r.price_per_hour or 0.0), -(r.launched_at or 0.0))


@dataclass(frozen=True, slots=True)
class DrainOrder:
    instance_id: str
    worker_id: str | None
    reason: str
    release_now: bool  # no worker to drain (booting): release the instance directly

    def as_dict(self) -> dict[str, object]:
        return {"instance_id": self.instance_id, "worker_id": self.worker_id,
                "reason": self.reason, "release_now": self.release_now}


def choose_victims(replicas: Sequence[Replica], count: int, *,
                   reason: str = "scale_down") -> list[DrainOrder]:
    remaining = [r for r in replicas if r.managed and r.live]
    orders: list[DrainOrder] = []
    while remaining and len(orders) < count:
        pools = collections.Counter((r.instance_type, r.zone) for r in remaining)
        zones = collections.Counter(r.zone for r in remaining)
        victim = min(remaining, key=functools.partial(_preference, pools=pools, zones=zones))
        remaining.remove(victim)
        orders.append(DrainOrder(victim.instance_id, victim.worker_id, reason,
                                 release_now=victim.state == "booting"))
    return orders
