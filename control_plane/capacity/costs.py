"""The cost ledger: what every launched instance has cost, so far and per hour.

One document per instance in the store collection `cost_ledger` (doc id = instance id):
`{instance_id, pool, instance_type, market, price_per_hour, started_at, ended_at}`. The price is
the one recorded at launch (pricing.py explains why that is an estimate, not the bill); an
instance of unknown price is counted in `unpriced` and left out of the sums, never guessed.
Held in memory and added to the store guard, so a flushed store keeps its history; entries are
never rewritten once ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from control_plane.held import HeldCollection
from control_plane.pricing import SECONDS_PER_HOUR, Usage, cost_so_far
from control_plane.providers.base import Instance
from fleet.store import FleetStore

COST_LEDGER = "cost_ledger"


class CostLedger:
    def __init__(self, store: FleetStore, clock: Callable[[], float]) -> None:
        self.docs = HeldCollection(store, COST_LEDGER)
        self.clock = clock
        self.created_at = clock()

    async def load(self) -> int:
        return await self.docs.load()

    async def start(self, instance: Instance) -> None:
        if self.docs.get(instance.instance_id) is not None:
            return
        await self.docs.put(instance.instance_id, {
            "instance_id": instance.instance_id, "pool": instance.pool,
            "instance_type": instance.instance_type, "market": instance.market,
            "price_per_hour": instance.price_per_hour, "started_at": instance.launched_at,
            "ended_at": None})

    async def end(self, instance_id: str, at: float | None = None) -> None:
        doc = self.docs.get(instance_id)
        if doc is not None and doc.get("ended_at") is None:
            await self.docs.put(instance_id, doc | {"ended_at": self.clock() if at is None
                                                    else at})

    # the hooks bursts and the API read ------------------------------------------------------------
    def spent_usd(self, pool: str | None = None, since: float = 0.0) -> float:
        """$ spent by `pool` (every pool: None) since `since` (Unix time), known prices only."""
        now = self.clock()
        total = 0.0
        for doc in self._docs(pool):
            price = doc.get("price_per_hour")
            if price is None:
                continue
            start = max(float(doc["started_at"]), since)
            end = now if doc.get("ended_at") is None else min(float(doc["ended_at"]), now)
            total += price * max(0.0, end - start) / SECONDS_PER_HOUR
        return total

    def rate_usd_per_hour(self, pool: str | None = None) -> float:
        """$/h of the running instances (of `pool`) whose price is known."""
        return sum(doc.get("price_per_hour") or 0.0 for doc in self._docs(pool)
                   if doc.get("ended_at") is None)

    def summary(self) -> dict[str, Any]:
        """GET /v1/cost."""
        now = self.clock()
        pools: dict[str, dict[str, Any]] = {}
        for name in sorted({str(doc.get("pool")) for doc in self._docs(None)}):
            usages = [self._usage(doc) for doc in self._docs(name)]
            summary = cost_so_far(usages, now)
            pools[name] = {"per_hour_usd": round(summary.per_hour_now, 6),
                           "total_usd": round(summary.total_usd, 6),
                           "instances": summary.running,
                           "unpriced_instances": list(summary.unpriced)}
        total = cost_so_far([self._usage(doc) for doc in self._docs(None)], now)
        starts = [float(doc["started_at"]) for doc in self._docs(None)]
        return {"object": "cost", "per_hour_usd": round(total.per_hour_now, 6),
                "total_usd": round(total.total_usd, 6),
                "since": min(starts, default=self.created_at), "complete": total.complete,
                "pools": pools}

    def _docs(self, pool: str | None) -> list[dict[str, Any]]:
        return [doc for _, doc in self.docs.items() if pool is None or doc.get("pool") == pool]

    @staticmethod
    def _usage(doc: dict[str, Any]) -> Usage:
        return Usage(doc["instance_id"], doc.get("price_per_hour"), float(doc["started_at"]),
                     doc.get("ended_at"))
