"""What a pool holds right now: the `PoolView` bursts and the admin API read.

Instance states are derived from facts (the instance document, the worker record, the registry's
readiness), never stored:

    launching     launched, no worker has registered yet (machine booting, engine loading)
    starting      its worker registered, not ready yet
    ready         its worker is ready (fresh heartbeat, probe passed, not draining)
    draining      draining: scale-down, release, SIGTERM
    interrupted   draining because of a Spot interruption notice or rebalance recommendation
    terminated    released recently (kept in the view for `TERMINATED_KEPT_S`)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from control_plane.autoscaling.signals import INTERRUPTION_REASONS
from control_plane.providers.base import Instance, Market
from fleet.schemas import WorkerRecord

InstanceState = Literal["launching", "starting", "ready", "draining", "interrupted", "terminated"]
TERMINATED_KEPT_S = 600.0


@dataclass(frozen=True, slots=True)
class InstanceView:
    instance_id: str
    instance_type: str
    market: Market
    zone: str | None
    state: InstanceState
    price_per_hour: float | None
    launched_at: float
    ready_at: float | None
    provider: str = "local"
    worker_id: str | None = None
    terminated_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PoolView:
    pool: str
    desired: int
    ready: int
    starting: int  # launching + starting
    instances: tuple[InstanceView, ...] = ()
    waiting_capacity: bool = False  # the last launch found no capacity; retrying
    last_error: str | None = None
    floors: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["instances"] = [i.as_dict() for i in self.instances]
        return out


def instance_state(worker: WorkerRecord | None, ready: bool, draining_noted: bool,
                   drain_reason: str | None) -> InstanceState:
    if worker is None:
        return "draining" if draining_noted else "launching"
    reason = worker.drain_reason or drain_reason
    if worker.drain_requested_at is not None or worker.status == "draining" or draining_noted:
        return "interrupted" if reason in INTERRUPTION_REASONS else "draining"
    return "ready" if ready else "starting"


def instance_view(instance: Instance, doc: dict[str, Any], worker: WorkerRecord | None,
                  ready: bool) -> InstanceView:
    state = instance_state(worker, ready, doc.get("drain_started_at") is not None,
                           doc.get("drain_reason"))
    return InstanceView(
        instance_id=instance.instance_id, instance_type=instance.instance_type,
        market=instance.market, zone=instance.zone, state=state,
        price_per_hour=instance.price_per_hour, launched_at=instance.launched_at,
        ready_at=doc.get("ready_at"), provider=instance.provider,
        worker_id=worker.worker_id if worker else None)
