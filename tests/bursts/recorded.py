"""Recorded capacity observations for the burst manager's tests: pool views played back as the
capacity manager reported them, floors and costs recorded. The end-to-end test uses the real
capacity manager; these keep the manager's own tests to milliseconds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from control_plane.bursts.manager import BurstManager
from control_plane.events import EventLog
from control_plane.metrics import ControlPlaneMetrics
from control_plane.writer import WorkerWriter
from fleet.catalog import Pool
from fleet.store import FleetStore


@dataclass(frozen=True)
class RecordedInstance:
    instance_id: str
    state: str
    instance_type: str = "sim-gpu"
    price_per_hour: float | None = None


@dataclass(frozen=True)
class RecordedView:
    desired: int = 0
    ready: int = 0
    starting: int = 0
    instances: tuple[RecordedInstance, ...] = ()
    waiting_capacity: bool = False
    last_error: str | None = None


@dataclass
class RecordedCapacity:
    views: dict[str, RecordedView] = field(default_factory=dict)
    floors: dict[tuple[str, str], int] = field(default_factory=dict)

    def set_floor(self, pool: str, owner: str, replicas: int) -> None:
        self.floors[(pool, owner)] = replicas

    def clear_floor(self, pool: str, owner: str) -> None:
        self.floors.pop((pool, owner), None)

    def pool_view(self, pool: str) -> RecordedView:
        return self.views.get(pool, RecordedView())


@dataclass
class RecordedCosts:
    spent: dict[str, float] = field(default_factory=dict)
    calls: list[tuple[str | None, float]] = field(default_factory=list)

    def spent_usd(self, pool: str | None = None, since: float = 0) -> float:
        self.calls.append((pool, since))
        return self.spent.get(pool or "", 0.0)


@dataclass
class Clock:
    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    manager: BurstManager
    capacity: RecordedCapacity
    costs: RecordedCosts
    clock: Clock
    pools: dict[str, Pool]
    writer: WorkerWriter

    def view(self, pool: str, **fields: Any) -> None:
        self.capacity.views[pool] = dataclasses.replace(RecordedView(), **fields)


def make_harness(store: FleetStore, *, clock: Clock | None = None,
                 capacity: RecordedCapacity | None = None,
                 pools: dict[str, Pool] | None = None,
                 capacity_timeout_s: float = 1800.0) -> Harness:
    clock = clock or Clock()
    capacity = capacity or RecordedCapacity()
    costs = RecordedCosts()
    pools = pools if pools is not None else {"p": Pool(model_id="m1", max_replicas=4)}
    metrics = ControlPlaneMetrics(CollectorRegistry())
    writer = WorkerWriter(store, metrics, coalesce_s=0.0)
    manager = BurstManager(store, EventLog(writer, metrics, clock), capacity, costs,
                           pools=pools.get, workers=list, clock=clock,
                           capacity_timeout_s=capacity_timeout_s)
    return Harness(manager, capacity, costs, clock, pools, writer)
