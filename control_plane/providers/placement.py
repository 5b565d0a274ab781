"""Where the next replica goes: an ordered list of (instance type, zone) capacity pools.

Pure functions shared by the providers. A *slot* is one capacity pool on one market: an instance
type in a zone (with the subnet that puts it there). For each replica, `order_slots` ranks the
eligible slots by

    1. penalty from the DemotionTracker (clean, then suspect, then demoted pools)
    2. replicas of this pool already in that same (type, zone)   -> spreads over capacity pools
    3. the type's priority (the order the operator listed them)  -> prefers the first types
    4. replicas of this pool already in that zone                 -> spreads over zones
    5. the zone's order                                           -> deterministic

so a pool of six replicas over two types and three zones lands one per (type, zone): interruptions,
which come per type and zone together, then take one replica at a time. The launcher walks the list:
the first slot that launches wins; a slot that answers "no capacity" is dropped for the rest of the
launch, and the next one is tried.

`eligible_slots` applies the spending ceiling: a slot whose price is above `max_price_per_hour`, or
unknown while a ceiling is set, is skipped and reported (never silently dropped).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from control_plane.providers.base import LaunchAttempt, Market

PRICE_ABOVE_CAP = "PriceAboveCap"
PRICE_UNKNOWN = "PriceUnknown"


@dataclass(frozen=True, slots=True)
class Slot:
    instance_type: str
    zone: str | None
    market: Market
    subnet_id: str | None = None
    price_per_hour: float | None = None

    @property
    def pool_key(self) -> tuple[str, str | None]:
        return (self.instance_type, self.zone)


def eligible_slots(
    instance_types: Sequence[str],
    zones: Sequence[tuple[str | None, str | None]],
    market: Market,
    prices: Mapping[tuple[str, str | None], float | None],
    max_price_per_hour: float | None,
) -> tuple[list[Slot], list[LaunchAttempt]]:
    """Every (type, zone) slot on `market` within the ceiling, and the ones skipped for price.

    `zones` pairs a zone name with the subnet that places an instance there (or None).
    `prices` maps (type, zone) to $/h; a missing or None entry means the price is unknown.
    """
    slots: list[Slot] = []
    skipped: list[LaunchAttempt] = []
    for instance_type in dict.fromkeys(instance_types):
        for zone, subnet_id in zones:
            price = prices.get((instance_type, zone))
            if max_price_per_hour is not None:
                if price is None:
                    skipped.append(LaunchAttempt(
                        instance_type, zone, market, PRICE_UNKNOWN,
                        f"no known {market} price while a ceiling of "
                        f"${max_price_per_hour:.4f}/h is set"))
                    continue
                if price > max_price_per_hour:
                    skipped.append(LaunchAttempt(
                        instance_type, zone, market, PRICE_ABOVE_CAP,
                        f"{market} price ${price:.4f}/h is above the ceiling "
                        f"${max_price_per_hour:.4f}/h"))
                    continue
            slots.append(Slot(instance_type, zone, market, subnet_id, price))
    return slots, skipped


def order_slots(
    slots: Iterable[Slot],
    existing: Iterable[tuple[str, str | None]],
    *,
    type_priority: Sequence[str],
    zone_order: Sequence[str | None],
    penalty: Callable[[str, str | None], int] = lambda _t, _z: 0,
) -> list[Slot]:
    """Rank `slots` for the next replica given the (type, zone) of the pool's live replicas."""
    per_pool = collections.Counter(existing)
    per_zone: collections.Counter[str | None] = collections.Counter()
    for (_type, zone), count in per_pool.items():
        per_zone[zone] += count
    type_rank = {t: i for i, t in enumerate(type_priority)}
    zone_rank = {z: i for i, z in enumerate(zone_order)}

    def key(slot: Slot) -> tuple[int, int, int, int, int]:
        return (
            penalty(slot.instance_type, slot.zone),
            per_pool[slot.pool_key],
            type_rank.get(slot.instance_type, len(type_rank)),
            per_zone[slot.zone],
            zone_rank.get(slot.zone, len(zone_rank)),
        )

    return sorted(slots, key=key)
