"""Spot prices per (instance type, zone), from DescribeSpotPriceHistory, cached for `ttl_s`.

Spot prices move slowly (AWS smooths them; changes are at most a few a day), so one lookup every
few minutes is plenty and keeps us far below API limits even with many pools. Asking with
`StartTime=now` returns the price in effect now for every zone that offers the type; the newest
entry per zone wins. A type no zone prices is cached as "unknown" for the same TTL, so a missing
type does not cost a call per launch.

On-demand prices have no EC2 API (the Pricing API is another service with another permission
and a heavy response); the provider takes them from its configuration (`on_demand_prices`), and an
unconfigured type's price is unknown — reported as such, never guessed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

PriceKey = tuple[str, str | None]  # (instance type, zone)
Fetch = Callable[[Sequence[str], datetime], Awaitable[list[dict[str, Any]]]]


class SpotPriceBook:
    def __init__(self, fetch: Fetch, *, ttl_s: float, clock: Callable[[], float]) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._clock = clock
        self._prices: dict[PriceKey, float] = {}
        self._fetched_at: dict[str, float] = {}  # instance type -> when it was last looked up
        self._lock = asyncio.Lock()

    async def prices(self, instance_types: Iterable[str]) -> dict[PriceKey, float]:
        """Current spot price of each (type, zone) that has one, refreshing stale types."""
        wanted = list(dict.fromkeys(instance_types))
        async with self._lock:  # one lookup at a time: concurrent launches share its answer
            now = self._clock()
            stale = [t for t in wanted
                     if now - self._fetched_at.get(t, float("-inf")) >= self._ttl_s]
            if stale:
                rows = await self._fetch(stale, datetime.fromtimestamp(now, UTC))
                self._store(stale, rows, now)
        return {key: price for key, price in self._prices.items() if key[0] in wanted}

    def _store(self, types: Sequence[str], rows: list[dict[str, Any]], now: float) -> None:
        newest: dict[PriceKey, tuple[datetime, float]] = {}
        for row in rows:
            key = (row["InstanceType"], row.get("AvailabilityZone"))
            stamp = row.get("Timestamp") or datetime.fromtimestamp(0, UTC)
            try:
                price = float(row["SpotPrice"])
            except (KeyError, ValueError):
                continue
            if key not in newest or stamp > newest[key][0]:
                newest[key] = (stamp, price)
        for instance_type in types:
            for key in [k for k in self._prices if k[0] == instance_type]:
                del self._prices[key]
            self._fetched_at[instance_type] = now
        for key, (_stamp, price) in newest.items():
            self._prices[key] = price
