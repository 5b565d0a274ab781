"""Noticing that the fleet store lost its data, and rewriting it from memory.

The control plane sets the store's epoch at start. If Redis is flushed or restarts empty, the epoch
is gone; within one check period the guard rewrites everything the control plane holds (worker
records and ready sets, API keys, worker-token hashes; pools and routes when their modules add
themselves with `add()`), sets the epoch back LAST (routers that see no epoch keep their last
snapshot instead of trusting a half-written store), publishes every topic so routers refresh, and
records `store.reseeded`. The timeline (events) and counters are not held in memory and start
afresh.

A different epoch than ours means another control plane claimed this store (one control plane per
store is the supported setup): it is logged, recorded as `store.epoch_changed`, and adopted
rather than fought over.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from control_plane.events import EventLog
from control_plane.metrics import ControlPlaneMetrics
from fleet import secrets
from fleet.store import FleetStore, FleetStoreError

log = logging.getLogger("flotilla.control_plane.store_guard")


class Reseedable(Protocol):
    @property
    def name(self) -> str: ...

    async def reseed(self) -> int: ...


class StoreGuard:
    def __init__(self, store: FleetStore, events: EventLog, metrics: ControlPlaneMetrics,
                 *, topics: Sequence[str]) -> None:
        self.store = store
        self.events = events
        self.metrics = metrics
        self.topics = list(topics)
        self.parts: list[Reseedable] = []
        self.epoch: str | None = None

    def add(self, part: Reseedable) -> None:
        self.parts.append(part)

    async def claim(self) -> str:
        """At start: adopt the store's epoch, or set a new one on an empty store."""
        self.epoch, created = await self.store.ensure_epoch(secrets.new_id("epoch"))
        log.info("fleet store epoch %s (%s)", self.epoch, "new" if created else "existing")
        return self.epoch

    async def check(self) -> bool:
        """One check; True when the store was reseeded."""
        try:
            current = await self.store.get_epoch()
        except FleetStoreError as exc:
            self.metrics.store_errors.labels("get_epoch").inc()
            log.debug("epoch check failed: %s", exc)
            return False
        if current is not None and current == self.epoch:
            return False
        if current is not None:
            log.error("the fleet store's epoch changed from %s to %s: another control plane "
                      "is writing to it; adopting it", self.epoch, current)
            self.events.emit("store.epoch_changed",
                             f"fleet store epoch changed from {self.epoch} to {current}",
                             severity="error", data={"previous": self.epoch, "current": current})
            self.epoch = current
            return False
        await self.reseed()
        return True

    async def reseed(self) -> None:
        assert self.epoch is not None, "claim() first"
        counts: dict[str, int] = {}
        try:
            for part in self.parts:
                counts[part.name] = await part.reseed()
            self.epoch, _ = await self.store.ensure_epoch(self.epoch)
            for topic in self.topics:
                await self.store.publish(topic)
        except FleetStoreError as exc:
            self.metrics.store_errors.labels("reseed").inc()
            log.warning("reseeding the fleet store failed (%s); retrying at the next check", exc)
            return
        self.metrics.store_reseeds.inc()
        summary = ", ".join(f"{count} {name}" for name, count in counts.items())
        self.events.emit("store.reseeded",
                         f"the fleet store had lost its data; rewrote {summary}",
                         severity="warning", data=counts)
